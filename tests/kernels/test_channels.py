"""The kernel WebSocket through a live daphne, with real ipykernels, both framings."""

import asyncio
import os
import signal
import struct

import pytest
import websockets
from asgiref.sync import sync_to_async

from kernels import protocol
from tests.conftest import start_daphne, stop_daphne
from tests.kernels.conftest import (
    KernelSocket,
    kernel_processes,
    make_api,
    wait_no_kernel_processes,
)

pytestmark = [pytest.mark.kernel, pytest.mark.e2e, pytest.mark.timeout(180)]

FRAMINGS = [pytest.param(True, id="v1"), pytest.param(False, id="legacy")]


@pytest.mark.parametrize("v1", FRAMINGS)
async def test_execute_result_stream_and_error(api_for, v1):
    api = await api_for("chan-basic")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"], v1=v1)
    try:
        run = await sock.execute("1+1")
        assert run.status == "ok" and run.result() == "2"
        run = await sock.execute(
            "print('hello'); import sys; print('oops', file=sys.stderr)"
        )
        assert run.stream("stdout") == "hello\n"
        assert run.stream("stderr") == "oops\n"
        run = await sock.execute("1/0")
        assert run.status == "error"
        assert run.reply["content"]["ename"] == "ZeroDivisionError"
        errors = [m for m in run.outputs if m["msg_type"] == "error"]
        assert errors and errors[0]["content"]["ename"] == "ZeroDivisionError"
        # kernel_info as a client asks for it after connecting.
        msg_id = await sock.send("shell", "kernel_info_request", {})
        _, reply = await sock.wait_for(
            lambda ch, m: ch == "shell" and m["parent_header"].get("msg_id") == msg_id
        )
        assert reply["msg_type"] == "kernel_info_reply"
        assert reply["content"]["language_info"]["name"] == "python"
    finally:
        await sock.close()


@pytest.mark.parametrize("v1", FRAMINGS)
async def test_stdin_input_request_and_reply(api_for, v1):
    api = await api_for("chan-stdin")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"], v1=v1)
    try:
        msg_id = await sock.submit(
            "x = input('name? '); print('hi', x)", allow_stdin=True
        )
        channel, request = await sock.wait_for(lambda ch, m: ch == "stdin")
        assert request["msg_type"] == "input_request"
        assert request["content"]["prompt"] == "name? "
        await sock.send("stdin", "input_reply", {"value": "Ada"})
        run = await sock.collect(msg_id)
        assert run.stream() == "hi Ada\n"
    finally:
        await sock.close()


async def test_input_right_after_start_and_restart(api_for):
    # The kernel's stdin ROUTER drops an input_request to a peer it has not
    # met: a kernel is ready only once stdin is connected too, also after a
    # restart. Without that, about one start in five lost its input_request.
    api = await api_for("chan-stdin-early")

    async def ask(sock) -> None:
        msg_id = await sock.submit("print(input('n? '))", allow_stdin=True)
        await sock.wait_for(lambda ch, m: ch == "stdin", timeout=10)
        await sock.send("stdin", "input_reply", {"value": "early"})
        assert (await sock.collect(msg_id)).stream() == "early\n"

    for _ in range(6):
        kernel = await api.start()
        sock = await KernelSocket.open(api, kernel["id"], v1=True)
        try:
            await ask(sock)
        finally:
            await sock.close()
        status, _, _ = await api.call("DELETE", f"api/kernels/{kernel['id']}")
        assert status == 204
    kernel = await api.start()
    for _ in range(2):
        status, _, _ = await api.call("POST", f"api/kernels/{kernel['id']}/restart")
        assert status == 200
        sock = await KernelSocket.open(api, kernel["id"], v1=True)
        try:
            await ask(sock)
        finally:
            await sock.close()


@pytest.mark.parametrize("v1", FRAMINGS)
async def test_comm_messages_carry_binary_buffers(api_for, v1):
    api = await api_for("chan-comm")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"], v1=v1)
    try:
        # A kernel-side comm that echoes what it receives, buffers included.
        setup = (
            "from ipykernel.comm import Comm\n"
            "comm = Comm(target_name='echo', data={'hello': 1},\n"
            "            buffers=[b'\\x00\\x01ab'])\n"
            "@comm.on_msg\n"
            "def _echo(msg):\n"
            "    comm.send({'got': msg['content']['data']}, buffers=msg['buffers'])\n"
        )
        run = await sock.execute(setup)
        assert run.status == "ok", run.reply
        opened = [m for m in run.outputs if m["msg_type"] == "comm_open"]
        assert opened and bytes(opened[0]["buffers"][0]) == b"\x00\x01ab"
        comm_id = opened[0]["content"]["comm_id"]
        payload = bytes(range(256)) * 4
        await sock.send(
            "shell",
            "comm_msg",
            {"comm_id": comm_id, "data": {"n": 7}},
            buffers=[payload],
        )
        _, echoed = await sock.wait_for(
            lambda ch, m: m["msg_type"] == "comm_msg"
            and m["content"]["data"].get("got")
        )
        assert echoed["content"]["data"]["got"] == {"n": 7}
        assert bytes(echoed["buffers"][0]) == payload
    finally:
        await sock.close()


async def test_interrupt_stops_a_long_sleep(api_for):
    api = await api_for("chan-interrupt")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"])
    try:
        msg_id = await sock.submit("import time; time.sleep(60)")
        await sock.wait_for(lambda ch, m: m["msg_type"] == "execute_input")
        _, _, model = await api.call("GET", f"api/kernels/{kernel['id']}")
        assert model["execution_state"] == "busy"
        status, _, body = await api.call(
            "POST", f"api/kernels/{kernel['id']}/interrupt"
        )
        assert status == 204 and body is None
        run = await sock.collect(msg_id, timeout=20)
        assert run.status == "error"
        assert run.reply["content"]["ename"] == "KeyboardInterrupt"
        assert (await sock.execute("'still here'")).result() == "'still here'"
    finally:
        await sock.close()


async def test_rest_restart_keeps_the_socket_usable(api_for):
    api = await api_for("chan-restart")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"])
    try:
        await sock.execute("x = 41")
        status, _, model = await api.call("POST", f"api/kernels/{kernel['id']}/restart")
        assert status == 200
        assert model["id"] == kernel["id"] and model["execution_state"] in (
            "idle",
            "starting",
        )
        run = await sock.execute("x = globals().get('x', 'gone'); x")
        assert run.result() == "'gone'"  # a new kernel process
        assert (await sock.execute("1+2")).result() == "3"
    finally:
        await sock.close()


async def test_killed_kernel_is_restarted_and_clients_see_restarting(api_for):
    api = await api_for("chan-killed")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"])
    try:
        run = await sock.execute("import os; os.getpid()")
        pid = int(run.result())
        # The kernel's own pid as the server sees it: kill the process inside
        # whatever sandbox it runs in.
        candidates = [p for p in kernel_processes() if _is_python_kernel(p)]
        host_pid = next(p for p in candidates if _ns_pid(p) == pid)
        os.kill(host_pid, signal.SIGKILL)
        _, status = await sock.wait_for(
            lambda ch, m: m["msg_type"] == "status"
            and m["content"]["execution_state"] == "restarting",
            timeout=30,
        )
        assert status["parent_header"] == {}
        assert status["header"]["session"] == sock.session_id
        for _ in range(100):
            _, _, model = await api.call("GET", f"api/kernels/{kernel['id']}")
            if model["execution_state"] == "idle":
                break
            await asyncio.sleep(0.2)
        run = await sock.execute("'back'", timeout=60)
        assert run.result() == "'back'"
    finally:
        await sock.close()


def _is_python_kernel(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return (
        b"ipykernel" in b" ".join(argv)
        and b"-f" in argv
        and argv[0].endswith((b"python", b"python3", b"python3.11"))
    )


def _ns_pid(pid: int) -> int:
    """Return ``pid`` as its own PID namespace sees it (the innermost NSpid)."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return pid


async def test_reconnect_with_the_same_session_replays_what_was_missed(api_for):
    api = await api_for("chan-replay")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"])
    session_id = sock.session_id
    msg_id = await sock.submit(
        "import time\nfor i in range(20):\n    print(i, flush=True)\n"
        "    time.sleep(0.05)\n"
    )
    await sock.wait_for(lambda ch, m: m["msg_type"] == "stream")
    seen_before = "0\n"
    await sock.close()
    await asyncio.sleep(1.5)  # the loop finishes while nobody is connected
    again = await KernelSocket.open(api, kernel["id"], session_id=session_id)
    try:
        run = await again.collect(msg_id, timeout=20)
        text = seen_before + run.stream()
        # Every line exactly once, in order (the first one arrived live).
        assert "".join(f"{i}\n" for i in range(20)).startswith(text[: len(text)])
        assert run.stream().endswith("19\n")
        numbers = [int(n) for n in text.split()]
        assert numbers == sorted(set(numbers))
        assert numbers[-1] == 19 and run.status == "ok"
    finally:
        await again.close()


async def test_new_session_does_not_get_another_sessions_replay(api_for):
    api = await api_for("chan-replay-other")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"])
    await sock.execute("1")
    await sock.close()
    await asyncio.sleep(0.3)
    other = await KernelSocket.open(api, kernel["id"])
    try:
        run = await other.execute("'fresh'")
        assert run.result() == "'fresh'"
        assert not [m for _, m in run.other if m["msg_type"] == "execute_result"]
    finally:
        await other.close()


async def test_replies_reach_only_the_connection_that_asked(api_for):
    api = await api_for("chan-two-tabs")
    kernel = await api.start()
    first = await KernelSocket.open(api, kernel["id"])
    second = await KernelSocket.open(api, kernel["id"])
    try:
        _, _, model = await api.call("GET", f"api/kernels/{kernel['id']}")
        assert model["connections"] == 2
        run = await first.execute("'mine'")
        assert run.result() == "'mine'"
        # The second tab sees the iopub traffic, never the shell reply.
        seen = []
        while True:
            try:
                seen.append(await second.recv(timeout=1))
            except TimeoutError:
                break
        assert any(
            ch == "iopub" and m["msg_type"] == "execute_result" for ch, m in seen
        )
        assert not [m for ch, m in seen if ch == "shell"]
    finally:
        await first.close()
        await second.close()


async def test_same_session_id_replaces_the_stale_connection(api_for):
    api = await api_for("chan-stale")
    kernel = await api.start()
    old = await KernelSocket.open(api, kernel["id"])
    new = await KernelSocket.open(api, kernel["id"], session_id=old.session_id)
    try:
        await assert_closed(old)
        await old.close()
        assert (await new.execute("2*3")).result() == "6"
        _, _, model = await api.call("GET", f"api/kernels/{kernel['id']}")
        assert model["connections"] == 1
    finally:
        await new.close()


async def assert_closed(sock: KernelSocket, timeout: float = 10) -> None:
    """Read until the server closes ``sock``; fail if it stays open."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with pytest.raises(websockets.ConnectionClosed):
        while loop.time() < deadline:
            await sock.recv(timeout=max(deadline - loop.time(), 0.01))
        raise AssertionError("the socket stayed open")


HOSTILE = {
    "huge offset count": struct.pack("<Q", 2**62),
    "offsets past the end": struct.pack("<7Q", 6, 56, 61, 62, 63, 64, 10_000)
    + b"shell{}{}{}{}",
    "unknown channel": protocol.build_v1("shell", [b"{}", b"{}", b"{}", b"{}"]).replace(
        b"shell", b"xhell"
    ),
    "non-JSON header": protocol.build_v1("shell", [b"nope", b"{}", b"{}", b"{}"]),
    "seven bytes": b"\x01" * 7,
}


@pytest.mark.parametrize("name", HOSTILE)
async def test_a_hostile_frame_closes_only_its_own_socket(api_for, name):
    api = await api_for("chan-hostile")
    kernel = await api.start()
    victim = await KernelSocket.open(api, kernel["id"])
    bystander = await KernelSocket.open(api, kernel["id"])
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await victim.ws.send(HOSTILE[name])
        await assert_closed(victim)
        assert loop.time() - started < 5
        assert (await bystander.execute("'ok'")).result() == "'ok'"
        status, _, _ = await api.call("GET", "api/kernels")
        assert status == 200
    finally:
        await victim.close()
        await bystander.close()


async def test_text_frame_on_v1_and_garbage_legacy_close_the_socket(api_for):
    api = await api_for("chan-garbage")
    kernel = await api.start()
    for v1, frame in ((True, "not binary"), (False, "{not json")):
        sock = await KernelSocket.open(api, kernel["id"], v1=v1)
        await sock.ws.send(frame)
        await assert_closed(sock)
        await sock.close()


async def test_frame_over_the_size_limit_is_refused(api_for):
    api = await api_for("chan-big")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"])
    try:  # the server may close while the frame is still being sent
        await sock.ws.send(b"\x00" * (11 * 1024 * 1024))
    except websockets.ConnectionClosed:
        pass
    await assert_closed(sock)
    await sock.close()
    again = await KernelSocket.open(api, kernel["id"])
    try:
        assert (await again.execute("'fine'")).result() == "'fine'"
    finally:
        await again.close()


async def test_output_flood_is_delivered_whole_with_the_final_idle(api_for):
    api = await api_for("chan-flood")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"])
    try:
        run = await sock.execute(
            "for i in range(10000):\n    print(i, flush=True)\n", timeout=120
        )
        assert run.status == "ok" and run.idle
        lines = run.stream().split()
        assert lines == [str(i) for i in range(10000)]
        _, _, model = await api.call("GET", f"api/kernels/{kernel['id']}")
        assert model["execution_state"] == "idle"
    finally:
        await sock.close()


@pytest.mark.timeout(300)
@pytest.mark.django_db(transaction=True)
async def test_a_slow_client_slows_nobody_and_loses_nothing(django_db_setup, tmp_path):
    # Its own server: daphne would rightly close a client that answers no ping
    # for 30 s, and this one stalls for as long as the flood lasts.
    live = await asyncio.to_thread(
        start_daphne, tmp_path, JSERVER_WEBSOCKET_PING_SECONDS="3600"
    )
    try:
        await _slow_client_case(live)
    finally:
        await asyncio.to_thread(stop_daphne, live)
    assert not await asyncio.to_thread(wait_no_kernel_processes)


async def _slow_client_case(live):
    api = await sync_to_async(make_api)(live, "chan-slow")
    kernel = await api.start()
    fast = await KernelSocket.open(api, kernel["id"])
    # A client that stops reading: its library buffers one message, then TCP
    # fills up and the server has to hold (and merge) what it cannot send.
    slow_ws = await websockets.connect(
        api.ws_url(kernel["id"], "slow-client"),
        subprotocols=[protocol.V1_SUBPROTOCOL],
        additional_headers={"Authorization": f"token {api.token}"},
        compression=None,
        max_queue=1,
        max_size=None,
        ping_interval=None,  # it could not read the pong while it stalls
    )
    slow = KernelSocket(slow_ws, v1=True, session_id="slow-client")
    lines = 10000
    code = f"for i in range({lines}):\n    print('x' * 60, i, flush=True)\n"
    try:
        slow_ws.transport.pause_reading()
        loop = asyncio.get_running_loop()
        started = loop.time()
        run = await fast.execute(code, timeout=120)
        assert run.status == "ok"
        fast_lines = run.stream().splitlines()
        assert [int(line.split()[1]) for line in fast_lines] == list(range(lines))
        fast_seconds = loop.time() - started
        # The kernel is idle for everyone who reads.
        _, _, model = await api.call("GET", f"api/kernels/{kernel['id']}")
        assert model["execution_state"] == "idle"
        # Now the slow client reads: everything, in order, ending in idle.
        slow_ws.transport.resume_reading()
        text, messages = [], 0
        while True:
            channel, message = await slow.recv(timeout=60)
            if message["parent_header"].get("msg_id") != run.msg_id:
                continue
            if message["msg_type"] == "stream":
                messages += 1
                text.append(message["content"]["text"])
            if (
                message["msg_type"] == "status"
                and message["content"]["execution_state"] == "idle"
            ):
                break
        numbers = [int(line.split()[1]) for line in "".join(text).splitlines()]
        assert numbers == list(range(lines))
        assert messages < lines, "stream outputs were merged while it lagged"
        assert fast_seconds < 100
    finally:
        await fast.close()
        await slow.close()
        await api.call("DELETE", f"api/kernels/{kernel['id']}")


@pytest.mark.django_db(transaction=True)
async def test_iopub_rate_limit_when_enabled(django_db_setup, tmp_path):
    live = await asyncio.to_thread(
        start_daphne,
        tmp_path,
        JSERVER_IOPUB_LIMIT_RATE="1",
        JSERVER_IOPUB_MSG_RATE_LIMIT="50",
        JSERVER_IOPUB_RATE_WINDOW="1",
    )
    try:
        api = await sync_to_async(make_api)(live, "chan-ratelimit")
        kernel = await api.start()
        sock = await KernelSocket.open(api, kernel["id"])
        try:
            run = await sock.execute(
                "for i in range(2000):\n    print(i, flush=True)\n", timeout=120
            )
            assert run.status == "ok" and run.idle  # status is never dropped
            stderr = run.stream("stderr")
            assert "IOPub message rate exceeded" in stderr
            assert len(run.stream().split()) < 2000
            # The next execution starts with a fresh window.
            assert (await sock.execute("'after'")).result() == "'after'"
        finally:
            await sock.close()
            await api.call("DELETE", f"api/kernels/{kernel['id']}")
    finally:
        await asyncio.to_thread(stop_daphne, live)
    assert not await asyncio.to_thread(wait_no_kernel_processes)


@pytest.mark.parametrize("v1", FRAMINGS)
async def test_output_larger_than_the_message_limit_is_delivered(api_for, v1):
    api = await api_for("chan-huge-output")
    kernel = await api.start()
    sock = await KernelSocket.open(api, kernel["id"], v1=v1)
    try:
        size = 12 * 1024 * 1024  # over the 10 MiB WebSocket message limit
        run = await sock.execute(
            f"import sys; sys.stdout.write('x' * {size}); sys.stdout.flush()",
            timeout=120,
        )
        assert run.status == "ok"
        assert run.stream() == "x" * size
        assert (await sock.execute("'still open'")).result() == "'still open'"
    finally:
        await sock.close()
