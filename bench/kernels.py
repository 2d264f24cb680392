"""Benchmark jserver's kernels against jupyter_server and a direct ZMQ client.

Run from the repository with jserver's virtualenv::

    .venv/bin/python bench/kernels.py [--quick] [--targets NAMES]
                                      [--reference-python PATH] [--no-write]

Three targets in one run, their measurements interleaved (the order alternates
from one repetition to the next):

- ``jserver``: ``manage.py serve`` (daphne) in its embedded configuration
  (SQLite in a temporary data directory), its kernels launched as by default
  (in its bubblewrap sandbox where bwrap exists, ZMQ over ipc);
- ``jupyter_server`` 2.21.1, found or made as ``bench/contents.py`` does, with
  its iopub rate limits off (``--ZMQChannelsWebsocketConnection.limit_rate=
  False``; jserver's are off by default), its kernels on TCP;
- ``floor``: ipykernels started by jupyter_client's ``AsyncKernelManager`` and
  driven over their ZMQ sockets directly (a DEALER for shell, a SUB for iopub,
  messages signed by ``jupyter_client.session.Session``): no server at all.

The servers are reached with ``websockets`` (compression off, TCP_NODELAY),
with the ``v1.kernel.websocket.jupyter.org`` subprotocol unless a row says
legacy; every client parses the header, parent header and content of every
message it receives. Measured:

1. kernel start: from ``POST /api/kernels`` until the kernel answers a
   ``kernel_info_request`` over a new WebSocket (floor: from
   ``start_kernel()`` until the ``kernel_info_reply``);
2. sequential ``pass`` executions over one connection, from sending the
   ``execute_request`` until both its ``execute_reply`` and its iopub ``idle``
   arrived, with the v1 and with the legacy JSON protocol;
3. iopub throughput over one connection: 200,000 lines printed with a flush
   each, 2,000 ``display_data`` of 10 KB, one 50 MB stream write; every line,
   display and byte is checked, and the final ``idle``;
4. 20 clients on 4 kernels (5 clients each, to spare the 2-core machine 16
   more kernel processes), each running 50 ``pass`` executions, all at once;
5. the server process's resident memory (``VmRSS``) per idle kernel (5
   started, no client) and per idle WebSocket (50 on one kernel); kernels are
   processes of their own and not counted.

The table, with the targets of the kernels issue and whether jserver meets
them, is printed and written to ``bench/RESULTS.md`` between the ``kernels``
markers. A full run takes about fifteen minutes (the 200,000 printed lines
alone take some three minutes per target: the kernel is the limit);
``--quick`` (fewer repetitions, smaller outputs) under three. Every kernel
started is shut down, also on errors and Ctrl-C.
"""

import argparse
import asyncio
import collections
import datetime
import http.client
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import websockets
import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import Session
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("contents_bench", HERE / "contents.py")
contents_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(contents_bench)
Server = contents_bench.Server
free_port = contents_bench.free_port
percentile = contents_bench.percentile

REPO = HERE.parent
RESULTS = REPO / "bench" / "RESULTS.md"
OUT = REPO / "bench" / "out"
BEGIN, END = "<!-- kernels:start -->", "<!-- kernels:end -->"
JSERVER, REFERENCE, FLOOR = "jserver", "jupyter_server", "floor"
TARGETS = (JSERVER, REFERENCE, FLOOR)
V1 = "v1.kernel.websocket.jupyter.org"
DELIMITER = b"<IDS|MSG>"
KERNEL_NAME = "python3"
START_TIMEOUT = 120  # a kernel start on a loaded 2-core machine
EXECUTE_TIMEOUT = 60  # one `pass` execution, even with 20 clients queued
FLOOD_TIMEOUT = 600  # one throughput workload, however slow the server
WARMUP_EXECUTES = 20
DISPLAY_BYTES = 10 * 1024
STREAM_PATTERN = "0123456789"
# Frames websockets buffers before it stops reading the socket (its default,
# 16, throttles a flood of small iopub messages).
WS_MAX_QUEUE = 128
# ZMQ's default receive high-water mark (1000) drops iopub messages (PUB/SUB)
# when the reader falls behind: the floor must lose none.
ZMQ_RCVHWM = 0


@dataclass(frozen=True)
class Sizes:
    starts: int
    executes: int
    lines: int
    displays: int
    stream_bytes: int
    repeats: int  # of the displays, the stream and the concurrent clients
    line_repeats: int  # the printed lines take minutes: fewer
    clients: int = 20
    client_kernels: int = 4
    client_executes: int = 50
    idle_kernels: int = 5
    idle_sockets: int = 50


FULL = Sizes(
    starts=10,
    executes=500,
    lines=200_000,
    displays=2_000,
    stream_bytes=50_000_000,
    repeats=3,
    line_repeats=1,
)
QUICK = Sizes(
    starts=3,
    executes=150,
    lines=5_000,
    displays=500,
    stream_bytes=10_000_000,
    repeats=1,
    line_repeats=1,
    client_executes=20,
)

NOTES = """\
How to read it. The floor is the kernel alone: an ipykernel driven over ZMQ
with no server between (on TCP, as jupyter_server's kernels), so a server's
distance to it is what its WebSocket bridge costs. jserver's kernels run in
its bubblewrap sandbox and speak ZMQ over ipc sockets (the sandbox's own cost
is in `bench/sandbox.py`'s section).

- Kernel start counts until the kernel answers over a new WebSocket. jserver
  answers the `POST` at once and starts the kernel behind it; jupyter_server
  answers once the process is launched; both hold the WebSocket handshake
  until the kernel has answered a `kernel_info_request` of their own.
- jupyter_server never sets TCP_NODELAY on its kernel WebSockets (tornado
  leaves Nagle's algorithm on unless the handler asks), so after the first
  small message of an execution the next ones wait for the client's delayed
  ACK, about 40 ms on Linux: that, not Python, is most of its round trip
  (patched to call `set_nodelay(True)`, the same reference answered in about
  a quarter of the time on this machine). Browsers delay their ACKs the same
  way, so users see it too.
- The printed lines are bounded by the kernel: ipykernel 7 waits for its IO
  thread at every `flush`, so no server goes much faster than the floor's
  lines/s (one run each: the same kernel's rate varies by up to half from
  one kernel process to the next), and "1.5x
  jupyter_server" is only reachable where the reference falls below two
  thirds of the floor. The displays and the stream are repeated each on a
  new kernel, so their medians are over kernels.
- Throughput counts from sending the `execute_request` until its `idle`;
  lines/s and msg/s are the kernel's output messages (one per printed line,
  one per display) over that time, MB/s their payload. jserver merges
  consecutive stream messages while a client is behind
  (`JSERVER_KERNEL_WS_BACKLOG`), so it may send fewer frames than the kernel
  sent messages (frame counts below the table). Delivery is checked on
  content: 100% is the exact text (every line once, in order; every byte),
  every display with its 10 KB, then the `idle`; less is the share of lines,
  displays or leading bytes that arrived intact.
- jupyter_server leaves ZMQ's default high-water marks (1000 messages) on its
  iopub sockets, and PUB/SUB drops what goes past them: when it falls behind
  a flood it loses output, even with its rate limits off (and if the `idle`
  is lost, the run ends in "no idle"). jserver's iopub reader has no mark.
- "Connection closed by the server": the server closed the WebSocket rather
  than send a message. (autobahn, under daphne, applies its message size
  limit to what it sends too; jserver writes kernel messages to the
  transport as WebSocket frames of its own, of any size, as jupyter_server
  sends them, and the limit only bounds what clients send.)
- "Connection refused": the server dropped the WebSocket handshake. jserver
  holds a kernel's handshake until the kernel has answered, for up to
  `JSERVER_KERNEL_INFO_TIMEOUT` (daphne's `websocket_handshake_timeout` is
  set 5 s above it); jupyter_server waits up to its `kernel_info_timeout`.
- Where jserver's time goes on a `pass`: per kernel message one ZMQ read, the
  HMAC check, the activity bookkeeping and one write to the client's socket
  (about 0.2 ms of the server's CPU per message, 0.8 ms per execution of
  four messages, measured from `/proc` over 1,500 executions). On 2 cores
  the server, the kernel and the client compete: the kernel itself runs
  slower beside a server than beside the floor's client alone, which is
  part of the distance to the floor.
- One large write: jserver copies the message out of ZMQ, checks its HMAC
  (as jupyter_client does; jupyter_server's v1 path forwards kernel frames
  without checking them) and hands its parts to the transport, which copies
  them once more into its send buffer; jupyter_server also sends the frames
  it received, and both add a second socket hop that the floor does not
  have, so no server comes close to the floor here.
- The concurrent clients share 4 kernels, so executions queue in the
  kernels; executes/s is the successful executions over the wall time.
- Memory is the change of the server's median VmRSS (5 samples), divided by
  the kernels or sockets added. Python seldom returns freed memory, so memory
  freed by earlier phases is reused and a few KiB per kernel are noise.
- The client, both servers and every kernel share the machine's 2 cores (and
  whatever else runs on it): ratios near 1 change side from run to run."""


# ---- messages


@dataclass(slots=True)
class Message:
    """What a client needs of a received message."""

    channel: str
    msg_type: str
    parent_id: str
    content: dict


def parse_parts(channel: str, parts: Sequence[bytes]) -> Message:
    """Parse ``[header, parent_header, metadata, content]`` (metadata unread)."""
    header = json.loads(parts[0])
    parent = json.loads(parts[1])
    content = json.loads(parts[3])
    return Message(channel, header["msg_type"], parent.get("msg_id", ""), content)


def parse_v1(frame: bytes) -> Message:
    """Parse a ``v1.kernel.websocket.jupyter.org`` frame."""
    count = int.from_bytes(frame[:8], "little")
    offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    channel = frame[offsets[0] : offsets[1]].decode()
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(1, 5)]
    return parse_parts(channel, parts)


def parse_legacy(frame: str | bytes) -> Message:
    """Parse a legacy frame: JSON text, or binary when the message has buffers."""
    if isinstance(frame, bytes):
        count = struct.unpack_from("!I", frame)[0]
        offsets = struct.unpack_from(f"!{count}I", frame, 4)
        end = offsets[1] if count > 1 else len(frame)
        frame = frame[offsets[0] : end]
    msg = json.loads(frame)
    parent_id = msg["parent_header"].get("msg_id", "")
    return Message(msg["channel"], msg["header"]["msg_type"], parent_id, msg["content"])


def v1_frame(channel: str, parts: Sequence[bytes]) -> bytes:
    """Frame ``[header, parent_header, metadata, content]`` for the v1 protocol."""
    name = channel.encode()
    offsets = [8 * (len(parts) + 3)]  # after the count and the offsets
    for part in (name, *parts):
        offsets.append(offsets[-1] + len(part))
    head = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return head + name + b"".join(parts)


def new_header(msg_type: str, session: str) -> dict:
    return {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "username": "bench",
        "session": session,
        "date": datetime.datetime.now(datetime.UTC).isoformat(),
        "version": "5.3",
    }


def execute_content(code: str) -> dict:
    return {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }


# ---- clients


class Client(Protocol):
    async def send(self, msg_type: str, content: dict) -> str: ...

    async def receive(self) -> Message: ...

    async def close(self) -> None: ...


class WebSocketClient:
    """One connection to a server's ``/api/kernels/<id>/channels``."""

    def __init__(self, connection, v1: bool, session: str) -> None:
        self.connection, self.v1, self.session = connection, v1, session

    @classmethod
    async def open(cls, server: Server, kernel_id: str, v1: bool) -> "WebSocketClient":
        session = uuid.uuid4().hex
        url = (
            f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels"
            f"?session_id={session}"
        )
        connection = await connect(
            url,
            additional_headers={"Authorization": f"token {server.token}"},
            subprotocols=[V1] if v1 else None,
            compression=None,
            max_size=None,
            max_queue=WS_MAX_QUEUE,
            ping_interval=None,
            proxy=None,
            open_timeout=START_TIMEOUT,
            close_timeout=5,
        )
        if (connection.subprotocol == V1) != v1:
            await connection.close()
            raise RuntimeError(
                f"{server.name} chose subprotocol {connection.subprotocol}"
            )
        sock = connection.transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(connection, v1, session)

    async def send(self, msg_type: str, content: dict) -> str:
        header = new_header(msg_type, self.session)
        if self.v1:
            head, body = json.dumps(header).encode(), json.dumps(content).encode()
            await self.connection.send(v1_frame("shell", [head, b"{}", b"{}", body]))
        else:
            message = {
                "header": header,
                "parent_header": {},
                "metadata": {},
                "content": content,
                "buffers": [],
                "channel": "shell",
            }
            await self.connection.send(json.dumps(message))
        return header["msg_id"]

    async def receive(self) -> Message:
        frame = await self.connection.recv()
        return parse_v1(frame) if self.v1 else parse_legacy(frame)

    async def close(self) -> None:
        """Close, reading what still arrives: a client that stopped reading
        (websockets' queue full) would not see the server's close frame."""
        closing = asyncio.ensure_future(self.connection.close())
        try:
            async for _ in self.connection:
                pass
        except websockets.ConnectionClosed:
            pass
        await closing


class ZmqClient:
    """A kernel's shell and iopub sockets, used directly: the floor."""

    def __init__(self, context: zmq.asyncio.Context, info: dict) -> None:
        key = info["key"]
        self.session = Session(
            key=key.encode() if isinstance(key, str) else key,
            signature_scheme=info["signature_scheme"],
            username="bench",
        )
        address = f"{info['transport']}://{info['ip']}:"
        self.shell = context.socket(zmq.DEALER)
        self.iopub = context.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.rcvhwm = ZMQ_RCVHWM
        for sock in (self.shell, self.iopub):
            sock.linger = 0
        self.shell.connect(address + str(info["shell_port"]))
        self.iopub.connect(address + str(info["iopub_port"]))
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=1000)
        self.readers = [
            asyncio.create_task(self._read("shell", self.shell)),
            asyncio.create_task(self._read("iopub", self.iopub)),
        ]

    async def _read(self, channel: str, sock: zmq.asyncio.Socket) -> None:
        while True:
            parts = await sock.recv_multipart()
            at = parts.index(DELIMITER)
            await self.queue.put(parse_parts(channel, parts[at + 2 : at + 6]))

    async def settle(self) -> None:
        """Wait until iopub is subscribed (ZMQ's slow joiner): ask for
        ``kernel_info`` until one of the requests' iopub messages arrives."""
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                msg_id = await self.send("kernel_info_request", {})
                try:
                    async with asyncio.timeout(0.5):
                        while True:
                            message = await self.receive()
                            if (
                                message.channel == "iopub"
                                and message.parent_id == msg_id
                            ):
                                return
                except TimeoutError:
                    continue

    async def send(self, msg_type: str, content: dict) -> str:
        message = self.session.msg(msg_type, content)
        await self.shell.send_multipart(self.session.serialize(message))
        return message["header"]["msg_id"]

    async def receive(self) -> Message:
        return await self.queue.get()

    async def close(self) -> None:
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.shell.close()
        self.iopub.close()


class ExecuteError(RuntimeError):
    pass


async def request(
    client: Client,
    msg_type: str,
    content: dict,
    *,
    idle: bool = True,
    on_iopub: Callable[[Message], None] | None = None,
) -> tuple[float, Message]:
    """Send one shell request; wait for its reply and (``idle``) its iopub idle.

    Return the time taken and the reply. Messages of other requests are
    skipped; the other iopub messages of this one go to ``on_iopub``.
    """
    start = time.perf_counter()
    msg_id = await client.send(msg_type, content)
    reply: Message | None = None
    idled = not idle
    while reply is None or not idled:
        message = await client.receive()
        if message.parent_id != msg_id:
            continue
        if message.channel == "shell":
            reply = message
        elif message.channel == "iopub":
            if message.msg_type == "status":
                idled = idled or message.content["execution_state"] == "idle"
            elif on_iopub is not None:
                on_iopub(message)
    return time.perf_counter() - start, reply


async def execute(
    client: Client,
    code: str,
    *,
    within: float = EXECUTE_TIMEOUT,
    on_iopub: Callable[[Message], None] | None = None,
) -> float:
    """Execute ``code``; return the time until its reply and idle both arrived."""
    async with asyncio.timeout(within):
        elapsed, reply = await request(
            client, "execute_request", execute_content(code), on_iopub=on_iopub
        )
    if reply.content.get("status") != "ok":
        raise ExecuteError(
            f"{reply.content.get('ename')}: {reply.content.get('evalue')}"
        )
    return elapsed


# ---- targets


class Target:
    """Somewhere kernels run: a server, or the floor. Remembers its kernels
    until they are shut down, so that none outlives the run."""

    name: str

    async def start_kernel(self) -> str:
        raise NotImplementedError

    async def connect(self, kernel_id: str, *, v1: bool = True) -> Client:
        """Return a client on the kernel, ready to execute."""
        raise NotImplementedError

    async def connect_bare(self, kernel_id: str) -> Client:
        """Return a client on the kernel as fast as possible (kernel start)."""
        return await self.connect(kernel_id)

    async def _shutdown(self, kernel_id: str) -> None:
        raise NotImplementedError

    def running(self) -> list[str]:
        raise NotImplementedError

    async def shutdown_kernels(self, kernel_ids: Sequence[str]) -> None:
        """Shut the kernels down at once; failures are reported, not raised."""
        outcomes = await asyncio.gather(
            *(self._shutdown(k) for k in kernel_ids), return_exceptions=True
        )
        for kernel_id, outcome in zip(kernel_ids, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                print(f"{self.name}: shutting {kernel_id} down: {outcome!r}")

    async def aclose(self) -> None:
        await self.shutdown_kernels(self.running())


class ServerTarget(Target):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.name = server.name
        self.kernels: set[str] = set()

    async def api(self, method: str, path: str, body: dict | None = None):
        """Send one request on the server's keep-alive connection (one at a
        time) and return the decoded answer."""
        data = None if body is None else json.dumps(body).encode()
        answer = await asyncio.to_thread(self.server.request, method, path, data)
        return json.loads(answer) if answer else None

    def _request_alone(self, method: str, path: str) -> None:
        """Send one request on a connection of its own (several at once)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, 120)
        try:
            headers = {"Authorization": f"token {self.server.token}"}
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status}")

    async def start_kernel(self) -> str:
        model = await self.api("POST", "/api/kernels", {"name": KERNEL_NAME})
        self.kernels.add(model["id"])
        return model["id"]

    async def connect(self, kernel_id: str, *, v1: bool = True) -> Client:
        return await WebSocketClient.open(self.server, kernel_id, v1)

    async def _shutdown(self, kernel_id: str) -> None:
        path = f"/api/kernels/{kernel_id}"
        await asyncio.to_thread(self._request_alone, "DELETE", path)
        self.kernels.discard(kernel_id)

    def running(self) -> list[str]:
        return list(self.kernels)

    def rss_bytes(self) -> int:
        return self.server.rss_bytes()


class FloorTarget(Target):
    name = FLOOR

    def __init__(self, workdir: Path) -> None:
        self.cwd = workdir / "floor-root"
        self.runtime = workdir / "floor-runtime"
        self.cwd.mkdir()
        self.runtime.mkdir()
        self.context = zmq.asyncio.Context()
        self.managers: dict[str, AsyncKernelManager] = {}

    async def start_kernel(self) -> str:
        kernel_id = str(uuid.uuid4())
        manager = AsyncKernelManager(
            kernel_name=KERNEL_NAME,
            # In the run's directory, where kill_strays looks for leftovers.
            connection_file=str(self.runtime / f"kernel-{kernel_id}.json"),
        )
        self.managers[kernel_id] = manager
        await manager.start_kernel(
            cwd=str(self.cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return kernel_id

    async def connect_bare(self, kernel_id: str) -> Client:
        return ZmqClient(self.context, self.managers[kernel_id].get_connection_info())

    async def connect(self, kernel_id: str, *, v1: bool = True) -> Client:
        client = await self.connect_bare(kernel_id)
        await client.settle()
        return client

    async def _shutdown(self, kernel_id: str) -> None:
        manager = self.managers[kernel_id]
        if manager.has_kernel:
            await manager.shutdown_kernel(now=False)
        del self.managers[kernel_id]

    def running(self) -> list[str]:
        return list(self.managers)

    async def aclose(self) -> None:
        await super().aclose()
        self.context.destroy(linger=0)


def in_turn(targets: list[Target], run: int) -> list[Target]:
    return targets if run % 2 == 0 else targets[::-1]


async def close_all(clients) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def shutdown_each(targets: list[Target], kernels: dict[str, list[str]]) -> None:
    await asyncio.gather(
        *(t.shutdown_kernels(kernels.get(t.name, [])) for t in targets)
    )


# ---- measurements


async def measure_starts(targets: list[Target], sizes: Sizes) -> dict:
    """Kernel start until ``kernel_info_reply``, and until the start call
    returned; the first round warms up and is not counted."""
    ready: dict[str, list[float]] = {t.name: [] for t in targets}
    returned: dict[str, list[float]] = {t.name: [] for t in targets}
    for run in range(sizes.starts + 1):
        for target in in_turn(targets, run):
            start = time.perf_counter()
            kernel_id = await target.start_kernel()
            called = time.perf_counter() - start
            try:
                client = await target.connect_bare(kernel_id)
                try:
                    async with asyncio.timeout(START_TIMEOUT):
                        await request(client, "kernel_info_request", {}, idle=False)
                    elapsed = time.perf_counter() - start
                finally:
                    await client.close()
            finally:
                await target.shutdown_kernels([kernel_id])
            if run:
                ready[target.name].append(elapsed)
                returned[target.name].append(called)
    return {"ready": ready, "returned": returned}


def settled_rss(target: ServerTarget) -> float:
    samples = []
    for _ in range(5):
        time.sleep(0.2)
        samples.append(target.rss_bytes())
    return statistics.median(samples)


async def wait_started(target: ServerTarget, kernel_ids: list[str]) -> None:
    """Wait until no kernel is ``starting`` (jupyter_server's stay so until a
    client connects: then 5 s, enough for 5 kernels to start here)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        models = await target.api("GET", "/api/kernels")
        states = {m["id"]: m["execution_state"] for m in models}
        if all(states.get(k) not in (None, "starting") for k in kernel_ids):
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(1)


async def measure_memory(targets: list[Target], sizes: Sizes) -> dict:
    """Server RSS per idle kernel and per idle WebSocket."""
    memory: dict[str, dict[str, float]] = {}
    for target in targets:
        if not isinstance(target, ServerTarget):
            continue
        kernel_ids: list[str] = []
        clients: list[Client] = []
        try:
            await asyncio.sleep(1)
            base = await asyncio.to_thread(settled_rss, target)
            for _ in range(sizes.idle_kernels):
                kernel_ids.append(await target.start_kernel())
            await wait_started(target, kernel_ids)
            with_kernels = await asyncio.to_thread(settled_rss, target)
            for _ in range(sizes.idle_sockets):
                client = await target.connect(kernel_ids[0])
                clients.append(client)
                async with asyncio.timeout(START_TIMEOUT):
                    await request(client, "kernel_info_request", {}, idle=False)
            await asyncio.sleep(1)
            with_sockets = await asyncio.to_thread(settled_rss, target)
        finally:
            await close_all(clients)
            await target.shutdown_kernels(kernel_ids)
        memory[target.name] = {
            "kernel": (with_kernels - base) / sizes.idle_kernels,
            "socket": (with_sockets - with_kernels) / sizes.idle_sockets,
            "base": base,
        }
    return memory


async def measure_executes(targets: list[Target], sizes: Sizes) -> dict:
    """Sequential ``pass`` round trips, v1 then legacy, targets in turn."""
    kernels: dict[str, str] = {}
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for target in targets:
            kernels[target.name] = await target.start_kernel()
        for protocol in ("v1", "legacy"):
            clients: dict[str, Client] = {}
            try:
                for target in targets:
                    kernel_id = kernels[target.name]
                    clients[target.name] = await target.connect(
                        kernel_id, v1=protocol == "v1"
                    )
                for _ in range(WARMUP_EXECUTES):
                    for target in targets:
                        await execute(clients[target.name], "pass")
                times: dict[str, list[float]] = {t.name: [] for t in targets}
                for number in range(sizes.executes):
                    for target in in_turn(targets, number):
                        elapsed = await execute(clients[target.name], "pass")
                        times[target.name].append(elapsed)
                results[protocol] = times
            finally:
                await close_all(clients.values())
    finally:
        await shutdown_each(targets, {n: [k] for n, k in kernels.items()})
    return results


@dataclass
class Output:
    """The iopub output of one execution, as received."""

    frames: int = 0
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    displays: list[str] = field(default_factory=list)

    def __call__(self, message: Message) -> None:
        self.frames += 1
        if message.msg_type == "stream":
            name = message.content.get("name")
            (self.stdout if name == "stdout" else self.stderr).append(
                message.content["text"]
            )
        elif message.msg_type == "display_data":
            self.displays.append(message.content["data"].get("text/plain", ""))


@dataclass
class Workload:
    key: str
    label: str
    code: str
    count: int  # what the kernel emits: lines, displays or bytes
    payload_bytes: int
    check: Callable[[Output], int]  # how many of ``count`` arrived intact
    repeats: int


def workloads(sizes: Sizes) -> list[Workload]:
    lines = sizes.lines
    expected_lines = "".join(f"{i}\n" for i in range(lines))

    def check_lines(output: Output) -> int:
        text = "".join(output.stdout)
        if text == expected_lines:
            return lines
        seen = {int(x) for x in text.split("\n") if x.isdigit()}
        return len(seen & set(range(lines)))

    pad = "x" * (DISPLAY_BYTES - 6)

    def check_displays(output: Output) -> int:
        intact = {d[:6] for d in output.displays if d[6:] == pad}
        return len(intact & {f"{i:06d}" for i in range(sizes.displays)})

    stream = STREAM_PATTERN * (sizes.stream_bytes // len(STREAM_PATTERN))

    def check_stream(output: Output) -> int:
        text = "".join(output.stdout)
        if text == stream:
            return len(stream)
        return len(os.path.commonprefix([text, stream]))

    return [
        Workload(
            "lines",
            f"{lines:,} printed lines, a flush each",
            f"for i in range({lines}):\n    print(i, flush=True)",
            lines,
            len(expected_lines),
            check_lines,
            sizes.line_repeats,
        ),
        Workload(
            "displays",
            f"{sizes.displays:,} display_data of 10 KB",
            f"for i in range({sizes.displays}):\n"
            "    display({'text/plain': f'{i:06d}' + PAD}, raw=True)",
            sizes.displays,
            sizes.displays * DISPLAY_BYTES,
            check_displays,
            sizes.repeats,
        ),
        Workload(
            "stream",
            f"one {sizes.stream_bytes / 1e6:.0f} MB stream write",
            "sys.stdout.write(BIG); sys.stdout.flush()",
            len(stream),
            len(stream),
            check_stream,
            sizes.repeats,
        ),
    ]


async def measure_throughput(targets: list[Target], sizes: Sizes) -> dict:
    """Each workload ``repeats`` times per target, each time on a new kernel.

    A kernel's own rate varies by up to half from one kernel process to the
    next (its threads, where they land), and these workloads are bound by
    the kernel: a median over kernels, not over runs of one, ranks servers.
    """
    setup = (
        "import sys\nfrom IPython.display import display\n"
        f"PAD = 'x' * {DISPLAY_BYTES - 6}\n"
        f"BIG = {STREAM_PATTERN!r} * {sizes.stream_bytes // len(STREAM_PATTERN)}\n"
    )
    kernels: dict[str, str] = {}
    clients: dict[str, Client] = {}
    results: dict[str, dict[str, list[dict]]] = {}

    async def fresh_kernel(target: Target) -> None:
        """Give the target a new kernel and connection (the old ones shut)."""
        if target.name in clients:
            await clients.pop(target.name).close()
        if target.name in kernels:
            await target.shutdown_kernels([kernels.pop(target.name)])
        kernels[target.name] = await target.start_kernel()
        clients[target.name] = await target.connect(kernels[target.name])
        await execute(clients[target.name], setup)

    try:
        for target in targets:
            await fresh_kernel(target)
        for work in workloads(sizes):
            runs: dict[str, list[dict]] = {t.name: [] for t in targets}
            for run in range(work.repeats):
                if run:
                    for target in targets:
                        await fresh_kernel(target)
                for target in in_turn(targets, run):
                    output = Output()
                    elapsed, error = None, None
                    try:
                        elapsed = await execute(
                            clients[target.name],
                            work.code,
                            within=FLOOD_TIMEOUT,
                            on_iopub=output,
                        )
                    except websockets.ConnectionClosed as exc:
                        # Delivery failed; the kernel lives on: reconnect.
                        code = exc.rcvd.code if exc.rcvd else "no close frame"
                        error = f"connection closed by the server ({code})"
                        await clients[target.name].close()
                        kernel_id = kernels[target.name]
                        clients[target.name] = await target.connect(kernel_id)
                    except TimeoutError:  # the kernel may still be busy
                        error = f"no idle within {FLOOD_TIMEOUT} s"
                        await fresh_kernel(target)
                    runs[target.name].append(
                        {
                            "seconds": elapsed,
                            "delivered": work.check(output) / work.count,
                            "frames": output.frames,
                            "stderr": len(output.stderr),
                            "error": error,
                        }
                    )
            results[work.key] = runs
    finally:
        await close_all(clients.values())
        await shutdown_each(targets, {n: [k] for n, k in kernels.items()})
    return results


async def run_clients(clients: list[Client], executes: int) -> dict:
    latencies: list[float] = []
    errors = collections.Counter()

    async def one(client: Client) -> None:
        for number in range(executes):
            try:
                latencies.append(await execute(client, "pass"))
            except websockets.ConnectionClosed:
                errors["connection closed"] += executes - number
                return
            except (TimeoutError, ExecuteError) as exc:
                errors[type(exc).__name__] += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(client) for client in clients))
    wall = time.perf_counter() - start
    return {"wall": wall, "latencies": latencies, "errors": dict(errors)}


async def measure_clients(targets: list[Target], sizes: Sizes) -> dict:
    """``clients`` clients on ``client_kernels`` kernels, executing at once."""
    kernels: dict[str, list[str]] = {t.name: [] for t in targets}
    results: dict[str, list[dict]] = {t.name: [] for t in targets}
    try:
        for target in targets:
            for _ in range(sizes.client_kernels):
                kernels[target.name].append(await target.start_kernel())
        for run in range(sizes.repeats):
            for target in in_turn(targets, run):
                ids = kernels[target.name]
                clients: list[Client] = []
                refused = 0
                try:
                    for number in range(sizes.clients):
                        kernel_id = ids[number % len(ids)]
                        try:
                            clients.append(await target.connect(kernel_id))
                        except (OSError, TimeoutError, InvalidHandshake) as exc:
                            print(f"{target.name}: client {number}: {exc!r}")
                            refused += 1
                    outcome = await run_clients(clients, sizes.client_executes)
                finally:
                    await close_all(clients)
                if refused:
                    lost = refused * sizes.client_executes
                    outcome["errors"]["connection refused"] = lost
                results[target.name].append(outcome)
    finally:
        await shutdown_each(targets, kernels)
    return results


PHASES = (
    ("starts", measure_starts),
    ("memory", measure_memory),
    ("executes", measure_executes),
    ("throughput", measure_throughput),
    ("clients", measure_clients),
)


async def measure(servers: list[Server], names: list[str], sizes: Sizes, workdir):
    targets: list[Target] = [ServerTarget(server) for server in servers]
    if FLOOR in names:
        targets.append(FloorTarget(workdir))
    results: dict = {"targets": [t.name for t in targets], "failed": {}}
    try:
        for key, phase in PHASES:
            began = time.monotonic()
            try:
                results[key] = await phase(targets, sizes)
            except Exception as exc:  # the other phases still run
                results["failed"][key] = f"{type(exc).__name__}: {exc}"
                print(f"{key} failed:", flush=True)
                traceback.print_exc()
            print(f"{key}: {time.monotonic() - began:.0f} s", flush=True)
    finally:
        await asyncio.gather(*(target.aclose() for target in targets))
    return results


# ---- servers


def start_reference(python: str, workdir: Path) -> Server:
    root = workdir / "reference-root"
    root.mkdir()
    jupyter = workdir / "reference-jupyter"
    env = {
        **os.environ,
        "JUPYTER_DATA_DIR": str(jupyter / "data"),
        "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
        "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
    }
    port, token = free_port(), secrets.token_hex(16)
    command = [
        python,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.log_level=WARN",
        "--ZMQChannelsWebsocketConnection.limit_rate=False",
    ]
    with open(workdir / "reference.log", "wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,  # Ctrl-C reaches this script, which cleans up
        )
    server = Server(REFERENCE, process, port, token)
    server.wait()
    return server


def start_jserver(workdir: Path) -> Server:
    data = workdir / "jserver-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSERVER_")}
    env.update(
        JSERVER_DATA_DIR=str(data),
        JSERVER_SECRET_KEY=secrets.token_urlsafe(40),
        JSERVER_LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="jserver.settings",
    )
    manage = [sys.executable, "manage.py"]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*manage, *args], env=env, cwd=REPO, check=True, capture_output=True
        )
        return done.stdout.decode().strip().splitlines()[-1]

    run("migrate", "--noinput")
    run(
        "shell",
        "-c",
        "from django.contrib.auth.models import User;"
        "print(User.objects.create_user('bench').pk)",
    )
    token = run("createtoken", "bench")
    port = free_port()
    with open(workdir / "jserver.log", "wb") as log:
        process = subprocess.Popen(
            [*manage, "serve", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    server = Server(JSERVER, process, port, token)
    server.wait()
    return server


def stray_processes(workdir: Path) -> list[int]:
    """Processes whose command line names this run's directory (its kernels)."""
    marker = str(workdir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_strays(workdir: Path) -> None:
    strays = stray_processes(workdir)
    for pid in strays:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if strays:
        print(f"killed {len(strays)} processes left from this run: {strays}")


# ---- report


def seconds(value: float) -> str:
    if value >= 0.9995:
        return f"{value:.3g} s"
    millis = value * 1000
    return f"{millis:.3g} ms" if millis < 100 else f"{millis:.0f} ms"


def rate(value: float, unit: str) -> str:
    for scale, prefix in ((1e6, "M"), (1e3, "k")):
        if value >= 0.9995 * scale:
            return f"{value / scale:.3g}{prefix} {unit}"
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def kib(value: float) -> str:
    return f"{value / 1024:,.0f} KiB"


@dataclass
class Row:
    label: str
    cells: dict[str, str]
    values: dict[str, float]  # what the ratios divide
    target: str = ""
    met: Callable[[dict[str, float]], bool] | None = None


def ratio(values: dict[str, float], top: str, bottom: str) -> str:
    if top not in values or bottom not in values or not values[bottom]:
        return "-"
    return f"{values[top] / values[bottom]:.2f}"


Cell = Callable[[str], tuple[str, float] | None]


def row(
    label: str,
    names: list[str],
    cell: Cell,
    target: str = "",
    met: Callable[[dict[str, float]], bool] | None = None,
) -> Row:
    """Build a row from ``cell(name)``: the text shown and the value compared."""
    cells, values = {}, {}
    for name in names:
        outcome = cell(name)
        if outcome is not None:
            cells[name], values[name] = outcome
    return Row(label, cells, values, target, met)


def start_rows(starts: dict, names: list[str], sizes: Sizes) -> list[Row]:
    def ready(name):
        times = starts["ready"][name]
        median = statistics.median(times)
        return f"{seconds(median)} (p90 {seconds(percentile(times, 0.9))})", median

    def returned(name):
        median = statistics.median(starts["returned"][name])
        return seconds(median), median

    label = f"kernel start until `kernel_info_reply`, median of {sizes.starts}"
    return [
        row(label, names, ready, "≤ 1.10x jupyter_server", within(1.10, REFERENCE)),
        row(
            "… `POST /api/kernels` answered (floor: `start_kernel()`)", names, returned
        ),
    ]


def execute_rows(executes: dict, names: list[str], sizes: Sizes) -> list[Row]:
    rows = []
    for protocol, times in executes.items():
        for label, fraction in (("p50", 0.5), ("p99", 0.99)):

            def cell(name, times=times, fraction=fraction):
                value = percentile(times[name], fraction)
                return seconds(value), value

            title = f"`pass` round trip, {protocol}, {label} of {sizes.executes}"
            rows.append(row(title, names, cell, "≤ 1.3x floor", within(1.3, FLOOR)))
    return rows


def throughput_rows(throughput: dict, names: list[str], sizes: Sizes) -> list[Row]:
    rows = []
    for work in workloads(sizes):
        runs = throughput[work.key]
        unit = {"lines": "lines/s", "displays": "msg/s"}.get(work.key)

        def speed(name, runs=runs, work=work, unit=unit):
            times = [r["seconds"] for r in runs[name] if r["error"] is None]
            if not times:
                return "failed", 0.0
            elapsed = statistics.median(times)
            megabytes = work.payload_bytes / elapsed / 1e6
            if unit is None:
                return f"{megabytes:.3g} MB/s", megabytes
            per_second = work.count / elapsed
            return f"{rate(per_second, unit)}, {megabytes:.3g} MB/s", per_second

        def delivered(name, runs=runs):
            worst = min(r["delivered"] for r in runs[name])
            errors = sorted({r["error"] for r in runs[name] if r["error"]})
            failed = sum(1 for r in runs[name] if r["error"])
            note = f" ({failed} of {len(runs[name])}: {'; '.join(errors)})"
            return f"{worst:.3%}{note if failed else ''}", worst

        title = f"{work.label}, median of {work.repeats}"
        rows.append(row(title, names, speed, "≥ 1.5x jupyter_server", at_least(1.5)))
        label = "… delivered, then `idle` (worst run)"
        rows.append(row(label, names, delivered, "100%", lambda v: v[JSERVER] == 1))
    return rows


def client_rows(clients: dict, names: list[str], sizes: Sizes) -> list[Row]:
    def executes(name):
        per_second = statistics.median(
            len(r["latencies"]) / r["wall"] for r in clients[name]
        )
        return rate(per_second, "executes/s"), per_second

    def latency(name):
        latencies = [x for r in clients[name] for x in r["latencies"]]
        if not latencies:
            return "-", float("inf")
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        return f"{seconds(p50)} / {seconds(p99)}", p99

    def errors(name):
        counts = collections.Counter()
        for r in clients[name]:
            counts.update(r["errors"])
        total = sum(counts.values())
        detail = ", ".join(f"{kind} {count}" for kind, count in counts.items())
        return f"{total}{f' ({detail})' if detail else ''}", total

    title = (
        f"{sizes.clients} clients on {sizes.client_kernels} kernels, "
        f"{sizes.client_executes} executions each, median of {sizes.repeats}"
    )
    return [
        row(title, names, executes, "≥ 2x jupyter_server", at_least(2)),
        row(
            "… latency p50 / p99 (ratios of p99)",
            names,
            latency,
            "p99 < 500 ms",
            lambda v: v[JSERVER] < 0.5,
        ),
        row("… errors", names, errors, "0", lambda v: v[JSERVER] == 0),
    ]


def memory_rows(memory: dict, names: list[str], sizes: Sizes) -> list[Row]:
    rows = []
    for key, label in (
        ("kernel", f"server RSS per idle kernel ({sizes.idle_kernels} started)"),
        ("socket", f"server RSS per idle WebSocket ({sizes.idle_sockets} open)"),
    ):

        def cell(name, key=key):
            if name not in memory:
                return None
            return kib(memory[name][key]), memory[name][key]

        rows.append(row(label, names, cell))
    return rows


def within(factor: float, other: str) -> Callable[[dict[str, float]], bool]:
    return lambda values: values[JSERVER] <= factor * values[other]


def at_least(factor: float) -> Callable[[dict[str, float]], bool]:
    return lambda values: values[JSERVER] >= factor * values[REFERENCE]


SECTIONS = {
    "starts": start_rows,
    "executes": execute_rows,
    "throughput": throughput_rows,
    "clients": client_rows,
    "memory": memory_rows,
}


def rows_of(results: dict, sizes: Sizes) -> list[Row]:
    rows = []
    for key, section in SECTIONS.items():
        if key in results:
            rows += section(results[key], results["targets"], sizes)
        else:
            rows.append(Row(f"{key}: failed ({results['failed'][key]})", {}, {}))
    return rows


def render(results: dict, sizes: Sizes) -> str:
    names = results["targets"]
    titles = {JSERVER: "jserver", REFERENCE: "jupyter_server", FLOOR: "floor (ZMQ)"}
    header = [
        "measurement",
        *(titles[n] for n in TARGETS),
        "jserver / jupyter_server",
        "jserver / floor",
        "jupyter_server / floor",
        "target",
        "met",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * 6 + " --- | --- |",
    ]
    for row in rows_of(results, sizes):
        met = "-"
        if row.met is not None:
            try:
                met = "yes" if row.met(row.values) else "**no**"
            except KeyError:  # a target of the comparison was not run
                met = "-"
        cells = [
            row.label,
            *(row.cells.get(n, "-") for n in TARGETS),
            ratio(row.values, JSERVER, REFERENCE),
            ratio(row.values, JSERVER, FLOOR),
            ratio(row.values, REFERENCE, FLOOR),
            row.target,
            met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    frames = []
    for work in workloads(sizes) if "throughput" in results else ():
        runs = results["throughput"][work.key]
        counts = ", ".join(
            f"{n} {statistics.median(r['frames'] for r in runs[n]):,.0f}" for n in names
        )
        stderr = sum(r["stderr"] for n in names for r in runs[n])
        note = f"; stderr messages: {stderr}" if stderr else ""
        frames.append(f"- {work.label}: {counts}{note}")
    if frames:
        lines += ["", "iopub messages received per run (median):", "", *frames]
    return "\n".join(lines)


def write_results(table: str, sizes: Sizes, quick: bool) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Kernels (`bench/kernels.py`)",
        "",
        f"{now}, commit {commit or 'unknown'}{' (quick run)' if quick else ''}.",
        f"Machine: {contents_bench.machine()}; shared with other work, so expect "
        "noise.",
        f"Reference: jupyter_server {contents_bench.REFERENCE_VERSION} with "
        "`--ZMQChannelsWebsocketConnection.limit_rate=False`; floor: "
        "jupyter_client's `AsyncKernelManager` and a direct ZMQ client. "
        "ipykernel 7.4.0 everywhere. Ratios divide the row's quantity (a time, "
        "a rate or a size); the target column bounds jserver's.",
        "",
        table,
        "",
        NOTES,
        END,
    ]
    section = "\n".join(lines)
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)
    print(f"wrote {RESULTS.relative_to(REPO)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated, of: " + ", ".join(TARGETS),
    )
    parser.add_argument("--reference-python", help="a Python with jupyter_server")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md")
    options = parser.parse_args()
    names = [n for n in TARGETS if n in options.targets.split(",")]
    if not names or set(options.targets.split(",")) - set(TARGETS):
        parser.error(f"--targets: a comma-separated subset of {', '.join(TARGETS)}")
    sizes = QUICK if options.quick else FULL
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="kernels-bench-", dir=OUT))
    servers: list[Server] = []
    try:
        if JSERVER in names:
            servers.append(start_jserver(workdir))
        if REFERENCE in names:
            python = contents_bench.reference_python(options.reference_python)
            servers.append(start_reference(python, workdir))
        results = asyncio.run(measure(servers, names, sizes, workdir))
    finally:
        for server in servers:
            server.stop()
        kill_strays(workdir)
    for log in workdir.glob("*.log"):  # the servers' logs, for what went wrong
        shutil.copy(log, OUT / f"kernels-{log.name}")
    shutil.rmtree(workdir, ignore_errors=True)
    table = render(results, sizes)
    print(table, flush=True)
    if not options.no_write:
        write_results(table, sizes, options.quick)


if __name__ == "__main__":
    main()
