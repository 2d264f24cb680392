"""Culling, the per-user limit, and kernels at server stop, each on its own daphne."""

import asyncio
import os
import signal
import time

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from accounts.models import AuditEvent
from kernels.models import Kernel
from tests.conftest import start_daphne, stop_daphne
from tests.kernels.conftest import (
    KernelSocket,
    kernel_processes,
    make_api,
    wait_no_kernel_processes,
)

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def server(django_db_setup, tmp_path):
    started = []

    def start(**env):
        live = start_daphne(tmp_path, **env)
        started.append(live)
        return live

    yield start
    for live in started:
        stop_daphne(live)
    assert not wait_no_kernel_processes(), "kernel processes left behind"


async def test_idle_kernels_are_culled_and_connected_ones_spared(server):
    live = await asyncio.to_thread(
        server,
        JSERVER_CULL_IDLE_TIMEOUT="2",
        JSERVER_CULL_INTERVAL="1",
    )
    api = await sync_to_async(make_api)(live, "cull-user")
    idle = await api.start()
    connected = await api.start()
    _, _, session = await api.call(
        "POST",
        "api/sessions",
        {"path": "s.ipynb", "type": "notebook", "kernel": {"id": idle["id"]}},
    )
    sock = await KernelSocket.open(api, connected["id"])
    try:
        for _ in range(100):
            status, _, _ = await api.call("GET", f"api/kernels/{idle['id']}")
            if status == 404:
                break
            await asyncio.sleep(0.2)
        assert status == 404
        _, _, listing = await api.call("GET", "api/kernels")
        assert [k["id"] for k in listing] == [connected["id"]]
        _, _, sessions = await api.call("GET", "api/sessions")
        assert sessions == []
        assert (await sock.execute("'spared'")).result() == "'spared'"
    finally:
        await sock.close()
    culled = AuditEvent.objects.filter(action="kernel.culled", target=idle["id"])
    for _ in range(100):  # recorded once the kernel's process is gone
        if await culled.aexists():
            break
        await asyncio.sleep(0.1)
    assert await culled.aexists()
    # Once nobody is connected, the other one goes too.
    for _ in range(100):
        status, _, _ = await api.call("GET", f"api/kernels/{connected['id']}")
        if status == 404:
            break
        await asyncio.sleep(0.2)
    assert status == 404


async def test_per_user_kernel_limit(server):
    live = await asyncio.to_thread(server, JSERVER_KERNELS_PER_USER="2")
    api = await sync_to_async(make_api)(live, "limit-user")
    other = await sync_to_async(make_api)(live, "limit-other")
    first, second = await api.start(), await api.start()
    status, _, body = await api.call("POST", "api/kernels")
    assert status == 429
    assert "at most 2 running kernels" in body["message"]
    status, _, body = await api.call(
        "POST", "api/sessions", {"path": "third.ipynb", "type": "notebook"}
    )
    assert status == 429
    # Another user has their own allowance.
    third = await other.start()
    # Shutting one down makes room.
    status, _, _ = await api.call("DELETE", f"api/kernels/{first['id']}")
    assert status == 204
    fourth = await api.start()
    for who, kernel in ((api, second), (api, fourth), (other, third)):
        status, _, _ = await who.call("DELETE", f"api/kernels/{kernel['id']}")
        assert status == 204


async def test_stopping_the_server_shuts_every_kernel_down(server):
    live = await asyncio.to_thread(server)
    api = await sync_to_async(make_api)(live, "stop-user")
    for _ in range(3):
        await api.start()
    assert len(kernel_processes()) >= 3
    assert await Kernel.objects.acount() == 3
    started = time.monotonic()
    live.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(live.process.wait, 30)
    assert time.monotonic() - started < 20
    assert not await asyncio.to_thread(wait_no_kernel_processes, 5)
    assert await Kernel.objects.acount() == 0
    assert "Traceback" not in live.server_log()


async def test_kernels_of_a_killed_server_are_cleaned_up(server):
    live = await asyncio.to_thread(
        server,
        JSERVER_SANDBOX_BWRAP="/nonexistent",
        JSERVER_SANDBOX_ALLOW_UNSANDBOXED="1",
    )
    api = await sync_to_async(make_api)(live, "crash-user")
    kernel = await api.start()
    assert kernel_processes()
    os.kill(live.process.pid, signal.SIGKILL)
    await asyncio.to_thread(live.process.wait, 10)
    # Even unsandboxed, a kernel exits when its server dies (JPY_PARENT_PID)...
    assert not await asyncio.to_thread(wait_no_kernel_processes, 15)
    # ...and the next server forgets its row and sessions.
    assert await Kernel.objects.filter(pk=kernel["id"]).aexists()
    await asyncio.to_thread(server)
    assert not await Kernel.objects.filter(pk=kernel["id"]).aexists()


async def test_staff_set_per_user_limits_that_new_kernels_get(api_for, kernel_server):
    from kernels.models import KernelLimits

    api = await api_for("limits-user")
    user = await User.objects.aget(username="limits-user")
    await KernelLimits.objects.acreate(owner=user, max_open_files=123, max_kernels=1)
    kernel = await api.start()
    status, _, body = await api.call("POST", "api/kernels")
    assert status == 429 and "at most 1 running kernels" in body["message"]
    sock = await KernelSocket.open(api, kernel["id"])
    try:
        run = await sock.execute(
            "import resource; resource.getrlimit(resource.RLIMIT_NOFILE)[0]"
        )
        assert run.result() == "123"
    finally:
        await sock.close()


async def test_a_kernel_that_cannot_come_back_is_declared_dead(server):
    live = await asyncio.to_thread(server, JSERVER_KERNEL_RESTART_LIMIT="0")
    api = await sync_to_async(make_api)(live, "dead-user")
    _, _, session = await api.call(
        "POST", "api/sessions", {"path": "d.ipynb", "type": "notebook"}
    )
    kernel_id = session["kernel"]["id"]
    sock = await KernelSocket.open(api, kernel_id)
    try:
        run = await sock.execute("import os; os.getpid()")
        assert run.status == "ok"
        await sock.submit("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        _, dead = await sock.wait_for(
            lambda ch, m: m["msg_type"] == "status"
            and m["content"]["execution_state"] == "dead",
            timeout=30,
        )
        assert dead["parent_header"] == {}
        assert dead["header"]["session"] == sock.session_id
    finally:
        await sock.close()
    status, _, _ = await api.call("GET", f"api/kernels/{kernel_id}")
    assert status == 404
    _, _, sessions = await api.call("GET", "api/sessions")
    assert sessions == []
    died = AuditEvent.objects.filter(action="kernel.died", target=kernel_id)
    for _ in range(100):  # recorded once the kernel's process is gone
        if await died.aexists():
            break
        await asyncio.sleep(0.1)
    assert await died.aexists()
