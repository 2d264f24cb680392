"""/api/kernels and /api/sessions through a live daphne, with real ipykernels."""

import asyncio
import json
import re
import uuid

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from accounts.models import AuditEvent
from contents.storage import user_root
from kernels.models import Kernel, Session
from tests.e2e.test_daphne import Browser
from tests.factories import make_user
from tests.kernels.conftest import KernelSocket

pytestmark = [pytest.mark.kernel, pytest.mark.e2e, pytest.mark.timeout(180)]

MODEL_KEYS = {"id", "name", "last_activity", "execution_state", "connections"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def test_kernel_lifecycle_models_and_status_codes(api_for):
    api = await api_for("rest-life")
    status, headers, model = await api.call("POST", "api/kernels", {"name": "python3"})
    assert status == 201
    api.kernels.append(model["id"])
    assert set(model) == MODEL_KEYS
    assert model["name"] == "python3" and model["connections"] == 0
    assert model["execution_state"] in ("starting", "idle")
    assert ISO.match(model["last_activity"])
    assert headers["Location"] == f"/api/kernels/{model['id']}"
    kernel_id = model["id"]
    for _ in range(100):  # the server's own kernel_info makes it idle
        _, _, model = await api.call("GET", f"api/kernels/{kernel_id}")
        if model["execution_state"] == "idle":
            break
        await asyncio.sleep(0.1)
    assert model["execution_state"] == "idle"
    status, _, listing = await api.call("GET", "api/kernels")
    assert status == 200 and [k["id"] for k in listing] == [kernel_id]
    status, _, body = await api.call("GET", "api/status")
    assert body["kernels"] == 1
    status, _, body = await api.call("DELETE", f"api/kernels/{kernel_id}")
    assert status == 204 and body is None
    status, _, body = await api.call("GET", f"api/kernels/{kernel_id}")
    assert status == 404
    assert body == {"message": f"Kernel does not exist: {kernel_id}", "reason": None}
    status, _, again = await api.call("DELETE", f"api/kernels/{kernel_id}")
    assert (status, again) == (404, body)
    assert not await Kernel.objects.filter(pk=kernel_id).aexists()


async def test_no_body_starts_the_default_kernel_and_rows_keep_the_key_secret(api_for):
    api = await api_for("rest-default")
    status, _, model = await api.call("POST", "api/kernels")
    assert status == 201
    api.kernels.append(model["id"])
    assert model["name"] == "python3"
    row = await Kernel.objects.aget(pk=model["id"])
    key = row.connection_info["key"]
    assert len(key) >= 32
    for path in ("api/kernels", f"api/kernels/{model['id']}", "api/sessions"):
        _, _, body = await api.call("GET", path)
        assert key not in str(body)


async def test_client_kernel_id_path_and_env(api_for):
    api = await api_for("rest-options")
    root = await sync_to_async(user_root)(
        await User.objects.aget(username="rest-options")
    )
    (root / "project" / "data").mkdir(parents=True)
    kernel_id = str(uuid.uuid4())
    status, _, model = await api.call(
        "POST",
        "api/kernels",
        {
            "kernel_id": kernel_id,
            "path": "project/data/missing.ipynb",
            "env": {"KERNEL_USERNAME": "ada", "PATH": "/evil", "LD_PRELOAD": "x.so"},
        },
    )
    assert status == 201 and model["id"] == kernel_id
    api.kernels.append(kernel_id)
    # The same id again answers the running kernel.
    status, _, again = await api.call("POST", "api/kernels", {"kernel_id": kernel_id})
    assert status == 201 and again["id"] == kernel_id
    sock = await KernelSocket.open(api, kernel_id)
    try:
        run = await sock.execute(
            "import os; (os.getcwd(), os.environ.get('KERNEL_USERNAME'), "
            "os.environ.get('LD_PRELOAD'), os.environ.get('PATH') == '/evil')"
        )
        cwd, username, preload, evil_path = eval(run.result())  # noqa: S307
        assert cwd == str(root / "project" / "data")
        assert username == "ada" and preload is None and evil_path is False
    finally:
        await sock.close()


async def test_bad_requests_are_clear_errors(api_for):
    api = await api_for("rest-bad")
    status, _, body = await api.call("POST", "api/kernels", raw=b"{not json")
    assert status == 400 and body["message"] == "Invalid JSON in body of request"
    status, _, body = await api.call("POST", "api/kernels", [1, 2])
    assert status == 400
    status, _, body = await api.call("POST", "api/kernels", {"name": "no-such-kernel"})
    assert status == 500 and "no-such-kernel" in body["message"]
    status, _, body = await api.call("POST", "api/kernels", {"kernel_id": "nope"})
    assert status == 400 and "Invalid kernel id" in body["message"]
    status, _, body = await api.call("POST", "api/kernels", {"name": 3})
    assert status == 400
    status, _, body = await api.call("POST", "api/kernels", {"path": "../../etc"})
    assert status == 404
    missing = str(uuid.uuid4())
    for method, path in (
        ("GET", f"api/kernels/{missing}"),
        ("DELETE", f"api/kernels/{missing}"),
        ("POST", f"api/kernels/{missing}/interrupt"),
        ("POST", f"api/kernels/{missing}/restart"),
    ):
        status, _, body = await api.call(method, path)
        assert status == 404, (method, path)
        assert body["message"] == f"Kernel does not exist: {missing}"
    status, _, _ = await api.call("PUT", "api/kernels")
    assert status == 405
    assert await Kernel.objects.acount() == 0


async def test_users_cannot_see_or_touch_each_others_kernels_or_sessions(api_for):
    alice, bob = await api_for("iso-alice"), await api_for("iso-bob")
    status, _, session = await alice.call(
        "POST", "api/sessions", {"path": "secret.ipynb", "type": "notebook"}
    )
    assert status == 201
    kernel_id, session_id = session["kernel"]["id"], session["id"]
    _, _, kernels = await bob.call("GET", "api/kernels")
    _, _, sessions = await bob.call("GET", "api/sessions")
    assert kernels == [] and sessions == []
    for method, path in (
        ("GET", f"api/kernels/{kernel_id}"),
        ("DELETE", f"api/kernels/{kernel_id}"),
        ("POST", f"api/kernels/{kernel_id}/interrupt"),
        ("POST", f"api/kernels/{kernel_id}/restart"),
        ("GET", f"api/sessions/{session_id}"),
        ("PATCH", f"api/sessions/{session_id}"),
        ("DELETE", f"api/sessions/{session_id}"),
    ):
        body = {"path": "stolen.ipynb"} if method == "PATCH" else None
        status, _, _ = await bob.call(method, path, body)
        assert status == 404, (method, path)
    # Bob cannot attach a session to Alice's kernel, nor start one with its id.
    status, _, body = await bob.call(
        "POST",
        "api/sessions",
        {"path": "x.ipynb", "type": "notebook", "kernel": {"id": kernel_id}},
    )
    assert status == 400
    status, _, body = await bob.call("POST", "api/kernels", {"kernel_id": kernel_id})
    assert status == 400
    # Nor open its WebSocket.
    with pytest.raises(Exception) as refused:
        await KernelSocket.open(bob, kernel_id)
    assert "403" in str(refused.value)
    # Alice's kernel is untouched.
    sock = await KernelSocket.open(alice, kernel_id)
    try:
        assert (await sock.execute("'alive'")).result() == "'alive'"
    finally:
        await sock.close()


async def test_sessions_api(api_for):
    api = await api_for("rest-sessions")
    status, headers, model = await api.call(
        "POST",
        "api/sessions",
        {
            "path": "nb/a.ipynb",
            "type": "notebook",
            "name": "a.ipynb",
            "kernel": {"name": "python3"},
        },
    )
    assert status == 201
    assert headers["Location"] == f"/api/sessions/{model['id']}"
    assert set(model) == {"id", "path", "name", "type", "kernel", "notebook"}
    assert model["notebook"] == {"path": "nb/a.ipynb", "name": "a.ipynb"}
    assert set(model["kernel"]) == MODEL_KEYS
    first_kernel = model["kernel"]["id"]
    # One session per path: the same one comes back.
    status, _, again = await api.call(
        "POST", "api/sessions", {"path": "nb/a.ipynb", "type": "notebook"}
    )
    assert status == 201 and again["id"] == model["id"]
    # A console attached to the same kernel by id; no notebook mirror.
    status, _, console = await api.call(
        "POST",
        "api/sessions",
        {"path": "console-1", "type": "console", "kernel": {"id": first_kernel}},
    )
    assert status == 201 and console["kernel"]["id"] == first_kernel
    assert "notebook" not in console
    status, _, listing = await api.call("GET", "api/sessions")
    assert {s["id"] for s in listing} == {model["id"], console["id"]}
    # Rename.
    status, _, patched = await api.call(
        "PATCH", f"api/sessions/{model['id']}", {"path": "nb/b.ipynb", "name": "b"}
    )
    assert status == 200 and patched["path"] == "nb/b.ipynb" and patched["name"] == "b"
    # Change kernel by name: a new kernel, the old one shut down (and the
    # console that shared it disappears with it).
    status, _, patched = await api.call(
        "PATCH", f"api/sessions/{model['id']}", {"kernel": {"name": "python3"}}
    )
    assert status == 200 and patched["kernel"]["id"] != first_kernel
    status, _, _ = await api.call("GET", f"api/kernels/{first_kernel}")
    assert status == 404
    status, _, listing = await api.call("GET", "api/sessions")
    assert [s["id"] for s in listing] == [model["id"]]
    # Errors.
    status, _, body = await api.call(
        "PATCH", f"api/sessions/{model['id']}", {"kernel": {"id": str(uuid.uuid4())}}
    )
    assert status == 400 and body["message"].startswith("No such kernel: ")
    status, _, body = await api.call("PATCH", f"api/sessions/{model['id']}")
    assert status == 400 and body["message"] == "No JSON data provided"
    status, _, body = await api.call(
        "POST",
        "api/sessions",
        {"path": "c.ipynb", "type": "notebook", "kernel": {"name": "nope"}},
    )
    assert status == 501
    assert body["message"].startswith("The 'nope' kernel is not available.")
    assert body["short_message"] == "nope not found"
    status, _, body = await api.call("POST", "api/sessions")
    assert (status, body["message"]) == (400, "No JSON data provided")
    status, _, body = await api.call("POST", "api/sessions", {"type": "notebook"})
    assert (status, body["message"]) == (400, "Missing field in JSON data: path")
    status, _, body = await api.call("POST", "api/sessions", {"path": "x"})
    assert (status, body["message"]) == (400, "Missing field in JSON data: type")
    missing = str(uuid.uuid4())
    status, _, body = await api.call("GET", f"api/sessions/{missing}")
    assert (
        status == 404
        and body["message"] == f"Session not found: session_id='{missing}'"
    )
    # Legacy body.
    status, _, legacy = await api.call(
        "POST", "api/sessions", {"notebook": {"path": "old.ipynb"}}
    )
    assert (
        status == 201 and legacy["type"] == "notebook" and legacy["path"] == "old.ipynb"
    )
    # Delete: the session and its kernel go.
    status, _, _ = await api.call("DELETE", f"api/sessions/{legacy['id']}")
    assert status == 204
    status, _, _ = await api.call("GET", f"api/kernels/{legacy['kernel']['id']}")
    assert status == 404
    status, _, _ = await api.call("GET", f"api/sessions/{legacy['id']}")
    assert status == 404


async def test_session_disappears_when_its_kernel_is_shut_down(api_for):
    api = await api_for("rest-vanish")
    _, _, session = await api.call(
        "POST", "api/sessions", {"path": "v.ipynb", "type": "notebook"}
    )
    status, _, _ = await api.call("DELETE", f"api/kernels/{session['kernel']['id']}")
    assert status == 204
    _, _, listing = await api.call("GET", "api/sessions")
    assert listing == []
    assert not await Session.objects.filter(pk=session["id"]).aexists()


async def test_kernel_session_name_reaches_the_kernel(api_for):
    api = await api_for("rest-jpy")
    _, _, session = await api.call(
        "POST", "api/sessions", {"path": "dir/n.ipynb", "type": "notebook"}
    )
    sock = await KernelSocket.open(api, session["kernel"]["id"])
    try:
        run = await sock.execute("import os; os.environ['JPY_SESSION_NAME']")
        assert run.result() == "'dir/n.ipynb'"
    finally:
        await sock.close()


async def test_admin_lists_and_acts_on_every_users_kernels(api_for, kernel_server):
    alice = await api_for("adm-alice")
    _, _, session = await alice.call(
        "POST", "api/sessions", {"path": "work.ipynb", "type": "notebook"}
    )
    kernel_id = session["kernel"]["id"]
    await sync_to_async(make_user)("adm-staff", staff=True)
    await sync_to_async(make_user)("adm-plain")
    await asyncio.sleep(2.5)  # the host writes live state to the row in batches

    def as_browser(username):
        browser = Browser(kernel_server.url)
        status, _, _ = browser.login(username)
        assert status == 302
        return browser

    plain = await asyncio.to_thread(as_browser, "adm-plain")
    status, headers, _ = await asyncio.to_thread(
        plain.request, "GET", "admin/kernels/kernel/"
    )
    assert status == 302 and "login" in headers["Location"]

    staff = await asyncio.to_thread(as_browser, "adm-staff")
    status, _, page = await asyncio.to_thread(
        staff.request, "GET", "admin/kernels/kernel/"
    )
    assert status == 200
    assert kernel_id in page and "adm-alice" in page and "work.ipynb" in page
    assert re.search(r"\d+(\.\d+)?\xa0(MB|KB)", page), "memory column"
    status, _, page = await asyncio.to_thread(
        staff.request, "GET", f"admin/kernels/kernel/{kernel_id}/change/"
    )
    assert status == 200 and "work.ipynb" in page

    def act(action):
        _, _, listing = staff.request("GET", "admin/kernels/kernel/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', listing)[1]
        return staff.request(
            "POST",
            "admin/kernels/kernel/",
            form=[
                ("csrfmiddlewaretoken", csrf),
                ("action", action),
                ("_selected_action", kernel_id),
                ("index", "0"),
            ],
            headers={"Referer": kernel_server.url + "admin/kernels/kernel/"},
        )

    sock = await KernelSocket.open(alice, kernel_id)
    try:
        msg_id = await sock.submit("import time; time.sleep(60)")
        await sock.wait_for(lambda ch, m: m["msg_type"] == "execute_input")
        status, _, _ = await asyncio.to_thread(act, "interrupt_kernels")
        assert status == 302
        run = await sock.collect(msg_id, timeout=20)
        assert run.reply["content"]["ename"] == "KeyboardInterrupt"
        status, _, _ = await asyncio.to_thread(act, "restart_kernels")
        assert status == 302
        assert (await sock.execute("'after restart'")).result() == "'after restart'"
        status, _, _ = await asyncio.to_thread(act, "shutdown_kernels")
        assert status == 302
    finally:
        await sock.close()
    status, _, _ = await alice.call("GET", f"api/kernels/{kernel_id}")
    assert status == 404
    actions = [
        e.action
        async for e in AuditEvent.objects.filter(
            actor__username="adm-staff", action__startswith="admin.kernel."
        ).order_by("at")
    ]
    assert actions == [
        "admin.kernel.interrupt",
        "admin.kernel.restart",
        "admin.kernel.shutdown",
    ]


async def test_kernel_actions_reach_the_owners_event_sockets_only(api_for):
    api, other = await api_for("events-kernels"), await api_for("events-other")
    subscribe = api.base.replace("http", "ws", 1) + "api/events/subscribe?token="
    schema = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
    async with websockets.connect(subscribe + api.token) as mine:
        async with websockets.connect(subscribe + other.token) as theirs:
            kernel = await api.start()
            kernel_id = kernel["id"]
            # Once it is up (a SIGINT while ipykernel imports kills it, which
            # is restarted: one more event).
            await (await KernelSocket.open(api, kernel_id, v1=True)).close()
            status, _, _ = await api.call("POST", f"api/kernels/{kernel_id}/interrupt")
            assert status == 204
            status, _, _ = await api.call("POST", f"api/kernels/{kernel_id}/restart")
            assert status == 200
            status, _, _ = await api.call("DELETE", f"api/kernels/{kernel_id}")
            assert status == 204
            events = [
                json.loads(await asyncio.wait_for(mine.recv(), 10)) for _ in range(4)
            ]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(theirs.recv(), 0.5)
    done = {"start": "started", "interrupt": "interrupted"}
    done |= {"restart": "restarted", "shutdown": "shutdown"}
    assert events == [
        {
            "schema_id": schema,
            "kernel_name": "python3",
            "action": action,
            "status": "success",
            "msg": f"Kernel {kernel_id} was {done[action]}.",
            "kernel_id": kernel_id,
        }
        for action in ("start", "interrupt", "restart", "shutdown")
    ]
