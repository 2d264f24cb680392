"""The kernel host: the one owner of this process's kernels.

One ``KernelHost`` per event loop (daphne's, in production) owns every kernel
this process runs: their processes (started through ``kernels/launcher.py``),
their ZMQ sockets, their output, their rows in the database. Views, the
WebSocket consumer and admin actions go through it and never touch a kernel
process or socket themselves.

Per kernel (``LiveKernel``) the host holds one set of ZMQ sockets, shared by
every WebSocket connected to it:

- one iopub SUB socket, always listening: it tracks ``execution_state`` and
  ``last_activity`` the way jupyter_server does, fans each message out to the
  connected clients, and journals it for clients that disconnected (replayed
  when they come back with the same ``session_id``, bounded in bytes);
- one DEALER each for shell, control and stdin, with one identity, so the
  kernel sends a request's ``input_request`` where the request came from.
  Replies are routed to the connection whose session sent the request (the
  ``session`` of their ``parent_header``), never to the others.

Every socket is read by its own task, so a flood on iopub never delays a
reply on shell; readers only queue, and each connection writes its own queue,
so a slow client never slows the kernel or another client.

The ``Kernel`` row in the database mirrors the live state (in batches, every
``FLUSH_SECONDS``): the admin and the sessions read it; the key stays in it.
"""

import asyncio
import collections
import contextlib
import contextvars
import datetime
import functools
import json
import logging
import os
import re
import socket
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import zmq
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db import close_old_connections
from django.utils import timezone
from zmq.utils import monitor as zmq_monitor

from accounts import audit
from contents import storage
from jserver import events
from jserver.errors import (
    BadRequest,
    JupyterError,
    NotFound,
    NotImplementedByServer,
    TooManyRequests,
)
from kernels import launcher, protocol, sandbox, specs
from kernels.models import Kernel, KernelLimits

log = logging.getLogger(__name__)

HOST_ID = f"{socket.gethostname()}:{os.getpid()}"
FLUSH_SECONDS = 2.0
# A stale client's replay buffers kept per kernel, oldest dropped first.
MAX_REPLAY_SESSIONS = 8
# Raised ZMQ receive high-water marks: a flood of output waits in the socket
# rather than being dropped by ZMQ (iopub is PUB/SUB: past the mark, lost).
RCVHWM = 0  # unlimited: the readers drain continuously
NUDGE_INTERVAL = 0.5
# Messages read from one socket before the reader yields to the event loop.
READ_BURST = 64
# How often a send is retried while the kernel's queue is full (it is not reading).
SEND_RETRY_SECONDS = 0.01

# The events of kernel actions, as jupyter_server emits them (/api/events).
KERNEL_ACTIONS_SCHEMA = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
_DONE = {
    "start": "started",
    "shutdown": "shutdown",
    "restart": "restarted",
    "interrupt": "interrupted",
}

# jupyter_server's MappingKernelManager.untracked_message_types.
UNTRACKED = frozenset(
    {
        "comm_info_request",
        "comm_info_reply",
        "kernel_info_request",
        "kernel_info_reply",
        "shutdown_request",
        "shutdown_reply",
        "interrupt_request",
        "interrupt_reply",
        "debug_request",
        "debug_reply",
        "stream",
        "display_data",
        "update_display_data",
        "execute_input",
        "execute_result",
        "error",
        "status",
        "clear_output",
        "debug_event",
        "input_request",
        "input_reply",
    }
)


def _spawn(coroutine) -> asyncio.Task:
    """Start a task that outlives the request that started it.

    A fresh context: the request's (asgiref's executor for its sync parts,
    its worker thread) must not leak into kernel-long tasks.
    """
    return asyncio.get_running_loop().create_task(
        coroutine, context=contextvars.Context()
    )


_MSG_TYPE = re.compile(rb'"msg_type"\s*:\s*"([^"\\]*)"')


def _msg_type(header: bytes) -> str:
    """Return a header's ``msg_type`` without decoding the whole header."""
    match = _MSG_TYPE.search(header)
    if match is not None:
        return match.group(1).decode("utf-8", "replace")
    return str(protocol.header_fields(header).get("msg_type", ""))


def action_event(
    owner_id: int,
    kernel_id: str,
    kernel_name: str,
    action: str,
    error: BaseException | None = None,
) -> None:
    """Emit the ``kernel_actions`` event of ``action`` (failed with ``error``)
    to the owner's event sockets, without waiting for it to go out."""
    data: dict = {"kernel_name": kernel_name, "action": action}
    if error is None:
        data["status"] = "success"
        data["msg"] = f"Kernel {kernel_id} was {_DONE[action]}."
    else:
        data["status"] = "error"
        data["msg"] = getattr(error, "message", None) or str(error)
        if isinstance(error, JupyterError):
            data["status_code"] = error.status
    data["kernel_id"] = kernel_id
    _spawn(_emit_quietly(owner_id, data))


async def _emit_quietly(owner_id: int, data: dict) -> None:
    try:
        await events.emit_to(owner_id, KERNEL_ACTIONS_SCHEMA, data)
    except Exception:
        log.warning("could not emit a kernel action event", exc_info=True)


def _tracked(msg_type: str | None) -> bool:
    return msg_type not in UNTRACKED


class Outgoing:
    """One kernel message on its way to clients; encodings made once, shared."""

    __slots__ = ("channel", "parts", "msg_type", "_v1", "_legacy", "size")

    def __init__(self, channel: str, parts: list[bytes], msg_type: str) -> None:
        self.channel, self.parts, self.msg_type = channel, parts, msg_type
        self._v1: bytes | None = None
        self._legacy: str | bytes | None = None
        self.size = sum(len(part) for part in parts)

    def v1(self) -> bytes:
        if self._v1 is None:
            self._v1 = protocol.build_v1(self.channel, self.parts)
        return self._v1

    def v1_pieces(self) -> list[bytes]:
        """The v1 frame in pieces, to be written one after the other."""
        return protocol.v1_pieces(self.channel, self.parts)

    def legacy_payload(self) -> tuple[bytes, bool]:
        """The legacy frame as bytes, and whether it is binary (else UTF-8 text)."""
        frame = self.legacy()
        if isinstance(frame, bytes):
            return frame, True
        encoded = frame.encode()
        return encoded, False

    def legacy(self) -> str | bytes:
        if self._legacy is None:
            self._legacy = protocol.build_legacy(
                self.channel, protocol.parts_to_msg(self.parts)
            )
        return self._legacy


class Connection(Protocol):
    """What the host needs of one kernel WebSocket (the consumer)."""

    session_id: str

    def deliver(self, message: Outgoing) -> None:
        """Queue ``message`` for the client; never blocks."""

    def replaced(self) -> list["Outgoing"]:
        """A newer connection took this one's session_id: close; return the unsent."""

    def kernel_gone(self) -> None:
        """The kernel was shut down or is dead: close."""


@dataclass
class ReplayBuffer:
    """What a disconnected client missed, in order."""

    created: float = field(default_factory=time.monotonic)
    messages: collections.deque = field(default_factory=collections.deque)
    size: int = 0
    dropped: int = 0


def _now() -> datetime.datetime:
    return timezone.now()


class LiveKernel:
    """A kernel this process runs: its process, sockets, state and clients."""

    def __init__(
        self,
        host: "KernelHost",
        *,
        kernel_id: str,
        owner: User,
        spec: specs.KernelSpec,
        root: Path,
        cwd: Path,
        env: dict[str, str],
    ) -> None:
        self.host = host
        self.id = kernel_id
        self.owner_id = owner.pk
        self.owner_name = owner.get_username()
        self.owner_root = root
        self.spec = spec
        self.name = spec.name
        self.cwd = cwd
        self.env = env
        self.started = _now()
        self.last_activity = self.started
        self.execution_state = "starting"
        self.reason = ""
        self.process: launcher.KernelProcess | None = None
        self.info: dict = {}
        self.key = b""
        self.session = uuid.uuid4().hex  # the host's own messages (nudges)
        self.connections: dict[str, Connection] = {}
        self.routes: dict[str, str] = {}  # header.session -> connection session_id
        self.replay: dict[str, ReplayBuffer] = {}
        self.replay_size = 0
        self.ready = asyncio.Event()
        self.gone = False
        self._sockets: dict[str, zmq.Socket] = {}
        self._readers: dict[str, _Reader] = {}
        self._monitors: dict[str, tuple[zmq.Socket, _Reader]] = {}
        self._linked: set[str] = set()  # DEALERs connected to the kernel
        self._all_linked = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._watcher: asyncio.Task | None = None
        self._intentional = False  # the current process is being stopped on purpose
        self._restarts = 0
        self._launched_at = 0.0
        self._iopub_seen = asyncio.Event()
        self._info_reply = asyncio.Event()
        self._lifecycle = asyncio.Lock()
        self.dirty = True

    # ---- model

    def model(self) -> dict:
        model = {
            "id": self.id,
            "name": self.name,
            "last_activity": self.last_activity,
            "execution_state": self.execution_state,
            "connections": len(self.connections),
        }
        if self.reason:
            model["reason"] = self.reason
        return model

    def memory(self) -> int | None:
        return self.process.memory() if self.process is not None else None

    # ---- process and sockets

    async def launch(self) -> None:
        """Start the process (again, on the same sockets, after the first time)."""
        self._iopub_seen.clear()
        self._info_reply.clear()
        self.ready.clear()
        limits, _ = await user_limits(self.owner_id)
        self.process, self.info = await launcher.launch(
            self.spec,
            kernel_id=self.id,
            owner_id=self.owner_id,
            owner_root=self.owner_root,
            cwd=self.cwd,
            env=self.env,
            info=self.info or None,
            limits=limits,
        )
        self.key = self.info["key"].encode()
        self._launched_at = time.monotonic()
        self._intentional = False
        if not self._sockets:
            self._connect_sockets()
        self._watcher = _spawn(self._watch(self.process))
        self._tasks.append(_spawn(self._nudge()))

    def _connect_sockets(self) -> None:
        context = self.host.context
        identity = uuid.uuid4().hex.encode()
        for channel, kind in (
            ("shell", zmq.DEALER),
            ("control", zmq.DEALER),
            ("stdin", zmq.DEALER),
            ("iopub", zmq.SUB),
        ):
            sock = context.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, RCVHWM)
            if kind == zmq.DEALER:
                sock.setsockopt(zmq.IDENTITY, identity)
            else:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(launcher.endpoint(self.info, channel))
            self._sockets[channel] = sock
            handle = self._on_iopub if channel == "iopub" else self._on_reply
            self._readers[channel] = _Reader(
                self.host.loop,
                sock,
                functools.partial(self._handle, channel, handle),
            )
            if kind == zmq.DEALER:
                # The kernel's ROUTER drops what it sends to a peer it has
                # not met yet (an input_request on stdin, say): the kernel is
                # ready only once every DEALER completed its handshake.
                monitor = sock.get_monitor_socket(
                    zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                )
                self._monitors[channel] = (
                    monitor,
                    _Reader(
                        self.host.loop,
                        monitor,
                        functools.partial(self._on_monitor, channel),
                    ),
                )

    def _on_monitor(self, channel: str, frames: list[bytes]) -> None:
        event = zmq_monitor.parse_monitor_message(frames)["event"]
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._linked.add(channel)
        elif event == zmq.EVENT_DISCONNECTED:
            self._linked.discard(channel)
        if self._linked >= self._monitors.keys():
            self._all_linked.set()
        else:
            self._all_linked.clear()

    def _handle(self, channel: str, handle: Callable, frames: list[bytes]) -> None:
        try:
            handle(channel, protocol.from_zmq(self.key, frames))
        except protocol.FrameError as exc:
            log.warning(
                "kernel %s: dropped a bad %s message: %s", self.id, channel, exc
            )
        except Exception:
            log.exception("kernel %s: failed to handle a %s message", self.id, channel)

    async def _nudge(self) -> None:
        """Ask for kernel_info until the kernel answered, iopub delivers and
        every DEALER is connected.

        The SUB socket only receives once its subscription reached the kernel
        (ZMQ's slow joiner); a kernel_info_request makes the kernel publish
        status messages, so the first one seen proves iopub is live. The
        DEALERs retry their connections on their own timers, so stdin may
        meet the kernel after shell has.
        """
        try:
            async with asyncio.timeout(settings.KERNEL_INFO_TIMEOUT):
                while not (
                    self._info_reply.is_set()
                    and self._iopub_seen.is_set()
                    and self._all_linked.is_set()
                ):
                    if self.process is None or not self.process.alive():
                        return
                    await self._kernel_info()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(NUDGE_INTERVAL):
                            await self._info_reply.wait()
                            await self._iopub_seen.wait()
                            await self._all_linked.wait()
        except TimeoutError:
            log.warning("kernel %s did not answer kernel_info in time", self.id)
            self.reason = "The kernel did not answer kernel_info_request in time"
            return
        self.ready.set()

    async def _kernel_info(self) -> None:
        """Send the host's own ``kernel_info_request`` (its reply is not routed)."""
        message = protocol.new_message("kernel_info_request", {}, session=self.session)
        await self.send("shell", protocol.msg_to_parts(message))

    # ---- kernel -> clients

    def _on_iopub(self, channel: str, parts: list[bytes]) -> None:
        msg_type = _msg_type(parts[0])
        if not self._iopub_seen.is_set():
            if msg_type == "status":
                self._iopub_seen.set()
            elif msg_type == "iopub_welcome":
                # The subscription is live, but the status messages of the
                # kernel_info already answered went out before it: ask again
                # now, or the kernel would stay "starting" until a client
                # sends something.
                self._tasks.append(_spawn(self._kernel_info()))
        self._record_activity(msg_type, parts)
        message = Outgoing("iopub", parts, msg_type)
        for connection in list(self.connections.values()):
            connection.deliver(message)
        if self.replay:
            for session_id in self.replay:
                self._journal(session_id, message)

    def _record_activity(self, msg_type: str, parts: list[bytes]) -> None:
        tracked = _tracked(msg_type)
        parent_type = None
        if msg_type == "status" or not (tracked or self.execution_state == "busy"):
            # Only then does the parent's type matter (not per output of a flood).
            parent_type = _msg_type(parts[1]) if len(parts[1]) > 2 else None
        if tracked or self.execution_state == "busy" or _tracked(parent_type):
            self.last_activity = _now()
            self.dirty = True
        if msg_type == "status":
            try:
                state = json.loads(parts[3])["execution_state"]
            except (ValueError, KeyError, TypeError):
                return
            if _tracked(parent_type):
                self.execution_state = state
            elif self.execution_state == "starting" and state != "starting":
                self.execution_state = "idle"
            self.dirty = True

    def _on_reply(self, channel: str, parts: list[bytes]) -> None:
        parent = protocol.header_fields(parts[1]) if len(parts[1]) > 2 else {}
        client_session = parent.get("session")
        if client_session == self.session:  # the host's own request
            if parent.get("msg_type") == "kernel_info_request":
                self._info_reply.set()
            return
        target = self.routes.get(client_session, client_session)
        msg_type = _msg_type(parts[0])
        message = Outgoing(channel, parts, msg_type)
        connection = self.connections.get(target)
        if connection is not None:
            connection.deliver(message)
        elif target in self.replay:
            self._journal(target, message)

    def _journal(self, session_id: str, message: Outgoing) -> None:
        buffer = self.replay[session_id]
        if self.replay_size + message.size > settings.KERNEL_REPLAY_BYTES:
            buffer.dropped += 1
            return
        buffer.messages.append(message)
        buffer.size += message.size
        self.replay_size += message.size

    def broadcast_status(self, state: str) -> None:
        """Send a server-made iopub status to every client, as jupyter_server does."""
        for connection in list(self.connections.values()):
            message = protocol.new_message(
                "status", {"execution_state": state}, session=connection.session_id
            )
            message["parent_header"] = {}
            connection.deliver(
                Outgoing("iopub", protocol.msg_to_parts(message), "status")
            )

    # ---- clients -> kernel

    async def send(self, channel: str, parts: list[bytes]) -> None:
        """Sign ``parts`` and send them to the kernel on ``channel``.

        While the kernel does not take its messages (ZMQ's send queue is
        full), the send is retried every ``SEND_RETRY_SECONDS``; it is dropped
        if the socket closes meanwhile (the kernel was shut down).
        """
        sock = self._sockets.get(channel)
        if sock is None:
            return
        frames = protocol.to_zmq(self.key, parts)
        try:
            while True:
                try:
                    sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
                    return
                except zmq.Again:
                    await asyncio.sleep(SEND_RETRY_SECONDS)
                    if self._sockets.get(channel) is not sock:
                        return
                except zmq.ZMQError:  # closed under us
                    return
        finally:
            # A send may consume the socket's readable signal (see _Reader).
            reader = self._readers.get(channel)
            if reader is not None:
                reader.schedule()

    def attach(self, connection: Connection) -> None:
        """Register a client; replay what its session missed, then go live.

        Synchronous: nothing the kernel sends can fall between the replay and
        the live messages, or be sent twice.
        """
        stale = self.connections.pop(connection.session_id, None)
        if stale is not None:
            log.info(
                "kernel %s: replacing stale connection %s",
                self.id,
                connection.session_id,
            )
            for message in stale.replaced():  # what it never got, first
                connection.deliver(message)
        buffer = self.replay.pop(connection.session_id, None)
        if buffer is not None:
            self.replay_size -= buffer.size
            for message in buffer.messages:
                connection.deliver(message)
            if buffer.dropped:
                notice = protocol.new_message(
                    "stream",
                    {
                        "name": "stderr",
                        "text": (
                            f"[jserver] {buffer.dropped} output messages of this "
                            "kernel were dropped while this client was disconnected "
                            "(the replay buffer is full).\n"
                        ),
                    },
                    session=connection.session_id,
                )
                connection.deliver(
                    Outgoing("iopub", protocol.msg_to_parts(notice), "stream")
                )
        self.connections[connection.session_id] = connection
        self.routes.setdefault(connection.session_id, connection.session_id)
        self.dirty = True

    def route(self, client_session: str, connection: Connection) -> None:
        """Remember that replies to ``client_session`` go to ``connection``."""
        if self.routes.get(client_session) != connection.session_id:
            if len(self.routes) > 4096:
                self.routes.clear()
            self.routes[client_session] = connection.session_id

    def detach(self, connection: Connection, unsent: list["Outgoing"] = ()) -> None:
        """Unregister a client; keep what it missed until it comes back.

        ``unsent``: what was queued for it and never written, first in line.
        """
        if self.connections.get(connection.session_id) is not connection:
            return
        del self.connections[connection.session_id]
        self.dirty = True
        if self.gone:
            return
        if len(self.replay) >= MAX_REPLAY_SESSIONS:
            oldest = min(self.replay, key=lambda key: self.replay[key].created)
            self.replay_size -= self.replay.pop(oldest).size
        self.replay[connection.session_id] = ReplayBuffer()
        for message in unsent:
            self._journal(connection.session_id, message)

    def expire_replay(self, now: float) -> None:
        for session_id, buffer in list(self.replay.items()):
            if now - buffer.created > settings.KERNEL_REPLAY_SECONDS:
                self.replay_size -= self.replay.pop(session_id).size

    # ---- lifecycle

    def _action_event(self, action: str, error: BaseException | None = None) -> None:
        action_event(self.owner_id, self.id, self.name, action, error)

    @contextlib.contextmanager
    def _reported(self, action: str):
        """Emit the action's event once the block succeeded or failed."""
        try:
            yield
        except Exception as exc:
            self._action_event(action, exc)
            raise
        self._action_event(action)

    async def interrupt(self) -> None:
        with self._reported("interrupt"):
            if self.spec.interrupt_mode == "message":
                message = protocol.new_message(
                    "interrupt_request", {}, session=self.session
                )
                await self.send("control", protocol.msg_to_parts(message))
            elif self.process is not None:
                self.process.interrupt()

    async def _stop_process(self, *, restart: bool) -> None:
        """Ask the kernel to shut down, then kill it if it does not exit."""
        process = self.process
        if process is None:
            return
        self._intentional = True
        if process.alive():
            message = protocol.new_message(
                "shutdown_request", {"restart": restart}, session=self.session
            )
            with contextlib.suppress(zmq.ZMQError):
                await self.send("control", protocol.msg_to_parts(message))
            try:
                async with asyncio.timeout(settings.KERNEL_SHUTDOWN_WAIT):
                    await asyncio.shield(process.process.wait())
            except TimeoutError:
                log.warning("kernel %s did not shut down in time: killing it", self.id)
        await process.kill()
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()  # (not when the watcher itself is declaring it dead)

    async def restart(self) -> None:
        """Restart on the same sockets; return once the new kernel answered."""
        with self._reported("restart"):
            async with self._lifecycle:
                if self.gone:
                    raise NotFound(f"Kernel does not exist: {self.id}")
                await self._stop_process(restart=True)
                self.execution_state = "starting"
                self.dirty = True
                await self.launch()
            await self.wait_ready()
            self._restarts = 0

    async def wait_ready(self) -> None:
        try:
            async with asyncio.timeout(settings.KERNEL_INFO_TIMEOUT):
                while not self.ready.is_set():
                    if self.gone or self.process is None or not self.process.alive():
                        raise JupyterError(f"Kernel {self.id} died while starting")
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.25):
                            await self.ready.wait()
        except TimeoutError:
            raise JupyterError(
                f"Timeout waiting for kernel {self.id} to start"
            ) from None

    async def _watch(self, process: launcher.KernelProcess) -> None:
        """Restart the kernel when it dies by itself (bounded), else declare it dead."""
        code = await process.process.wait()
        if self._intentional or self.gone:
            return
        async with self._lifecycle:
            if self._intentional or self.gone or self.process is not process:
                return
            await process.wait()
            log.warning("kernel %s died (exit code %s)", self.id, code)
            if time.monotonic() - self._launched_at > settings.KERNEL_STABLE_SECONDS:
                self._restarts = 0
            self._restarts += 1
            if self._restarts > settings.KERNEL_RESTART_LIMIT:
                await self._declare_dead("The kernel died and restarting it failed")
                return
            self.execution_state = "restarting"
            self.dirty = True
            self.broadcast_status("restarting")
            try:
                await self.launch()
            except Exception as exc:
                log.exception("kernel %s could not be restarted", self.id)
                self._action_event("restart", exc)
                await self._declare_dead(f"The kernel could not be restarted: {exc}")
                return
            self._action_event("restart")

    async def _declare_dead(self, reason: str) -> None:
        self.execution_state = "dead"
        self.reason = reason
        self.broadcast_status("dead")
        await self.host.remove(self, action="kernel.died")

    async def close(self) -> None:
        """Stop the process, the sockets and the tasks; tell the clients."""
        self.gone = True
        await self._stop_process(restart=False)
        for task in self._tasks:
            task.cancel()
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        for channel, (monitor, reader) in self._monitors.items():
            reader.close()
            with contextlib.suppress(zmq.ZMQError):
                self._sockets[channel].disable_monitor()
            monitor.close(linger=0)
        self._monitors.clear()
        for sock in self._sockets.values():
            sock.close(linger=0)
        self._sockets.clear()
        for connection in list(self.connections.values()):
            connection.kernel_gone()
        self.connections.clear()
        self.replay.clear()
        if self.process is not None:
            await asyncio.to_thread(
                launcher.remove_runtime_dir, self.process.runtime_dir
            )


class _Reader:
    """Reads one kernel socket from the event loop, without a task or futures.

    ZMQ signals a socket's descriptor when its state changed, not while a
    message waits, and any operation on the socket (a send included) may take
    that signal. So a read drains the socket until it is empty, at most
    ``READ_BURST`` messages per turn of the loop (the rest on the next turn,
    so that other sockets, kernels and clients run), and every send on the
    socket schedules a drain. The callbacks run in a context of their own,
    not the one of the request that started the kernel.
    """

    __slots__ = ("loop", "sock", "on_frames", "fd", "context", "scheduled", "closed")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket,
        on_frames: Callable[[list[bytes]], None],
    ) -> None:
        self.loop, self.sock, self.on_frames = loop, sock, on_frames
        self.fd = sock.getsockopt(zmq.FD)
        self.context = contextvars.Context()
        self.scheduled = self.closed = False
        self.context.run(loop.add_reader, self.fd, self.drain)
        self.schedule()  # the descriptor may have been signalled already

    def schedule(self) -> None:
        """Drain on the next turn of the loop (once, however often asked)."""
        if not self.scheduled and not self.closed:
            self.scheduled = True
            self.loop.call_soon(self._scheduled, context=self.context)

    def _scheduled(self) -> None:
        self.scheduled = False
        self.drain()

    def drain(self) -> None:
        recv = self.sock.recv_multipart
        for _ in range(READ_BURST):
            if self.closed:
                return
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:  # closed
                self.close()
                return
            self.on_frames(frames)
        self.schedule()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.fd)


class KernelHost:
    """Every kernel this process runs, on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.context = zmq.Context()
        self.kernels: dict[str, LiveKernel] = {}
        self._starting: dict[int, int] = collections.Counter()
        self._housekeeper: asyncio.Task | None = None
        self._last_cull = time.monotonic()
        self.closed = False

    # ---- lookups (scoped to an owner: another user's kernel does not exist)

    def get(self, owner: User, kernel_id: str) -> LiveKernel:
        kernel = self.kernels.get(str(kernel_id))
        if kernel is None or kernel.owner_id != owner.pk or kernel.gone:
            raise NotFound(f"Kernel does not exist: {kernel_id}")
        return kernel

    def owned(self, owner: User) -> list[LiveKernel]:
        return [
            kernel
            for kernel in self.kernels.values()
            if kernel.owner_id == owner.pk and not kernel.gone
        ]

    # ---- lifecycle

    async def start(
        self,
        owner: User,
        *,
        name: str | None = None,
        path: str | None = None,
        kernel_id: str | None = None,
        env: dict[str, str] | None = None,
    ) -> LiveKernel:
        """Start a kernel for ``owner`` (their running ``kernel_id``: that one)."""
        self._ensure_housekeeping()
        if kernel_id is not None:
            try:
                kernel_id = str(uuid.UUID(str(kernel_id)))
            except ValueError:
                raise BadRequest(f"Invalid kernel id: {kernel_id}") from None
            existing = self.kernels.get(kernel_id)
            if existing is not None and not existing.gone:
                if existing.owner_id != owner.pk:
                    raise BadRequest(f"Kernel id already in use: {kernel_id}")
                return existing
            if await Kernel.objects.filter(pk=kernel_id).aexists():
                raise BadRequest(f"Kernel id already in use: {kernel_id}")
        else:
            kernel_id = str(uuid.uuid4())
        spec_name = name or await asyncio.to_thread(specs.default_name)
        try:
            spec = await asyncio.to_thread(specs.get_spec, spec_name)
        except specs.NoSuchKernel:
            raise NoSuchKernelSpec(spec_name) from None
        _, allowed = await user_limits(owner.pk)
        running = len(self.owned(owner)) + self._starting[owner.pk]
        if running >= allowed:
            raise TooManyRequests(
                f"Kernel limit reached: at most {allowed} running kernels per "
                "user. Shut one down to start another."
            )
        self._starting[owner.pk] += 1
        try:
            root, cwd = await asyncio.to_thread(
                lambda: (storage.user_root(owner), storage.kernel_cwd(owner, path))
            )
            kernel = LiveKernel(
                self,
                kernel_id=kernel_id,
                owner=owner,
                spec=spec,
                root=root,
                cwd=cwd,
                env=env or {},
            )
            try:
                await kernel.launch()
            except Exception as exc:
                kernel._action_event("start", exc)
                raise
        finally:
            self._starting[owner.pk] -= 1
        self.kernels[kernel_id] = kernel
        try:
            await Kernel.objects.acreate(
                id=kernel_id,
                owner_id=owner.pk,
                name=spec.name,
                execution_state=kernel.execution_state,
                started=kernel.started,
                last_activity=kernel.last_activity,
                host=HOST_ID,
                pid=kernel.process.pid,
                cwd=str(cwd),
                sandboxed=kernel.process.sandboxed,
                connection_info=kernel.info,
            )
        except BaseException:
            await self.remove(kernel, action=None)
            raise
        await audit.arecord(
            "kernel.start", actor=owner, target=kernel_id, kernel_name=spec.name
        )
        kernel._action_event("start")
        return kernel

    async def shutdown(self, kernel: LiveKernel, *, actor: User | None = None) -> None:
        await self.remove(kernel, action="kernel.shutdown", actor=actor)

    async def remove(
        self, kernel: LiveKernel, *, action: str | None, actor: User | None = None
    ) -> None:
        """Stop ``kernel`` and forget it (its row and sessions go with it)."""
        if self.kernels.get(kernel.id) is not kernel:
            return
        del self.kernels[kernel.id]
        await kernel.close()
        await Kernel.objects.filter(pk=kernel.id).adelete()
        if action in ("kernel.shutdown", "kernel.culled"):
            kernel._action_event("shutdown")
        if action is not None:
            await audit.arecord(
                action,
                actor=actor,
                actor_name="" if actor else "jserver",
                target=kernel.id,
                owner=kernel.owner_name,
                reason=kernel.reason,
            )

    async def shutdown_all(self) -> None:
        """Shut every kernel down (the server is stopping)."""
        self.closed = True
        if self._housekeeper is not None:
            self._housekeeper.cancel()
        kernels = list(self.kernels.values())
        await asyncio.gather(
            *(self.remove(kernel, action=None) for kernel in kernels),
            return_exceptions=True,
        )
        self.context.term()

    def kill_all_now(self) -> None:
        """Last resort at interpreter exit: SIGKILL every kernel's process group."""
        for kernel in self.kernels.values():
            process = kernel.process
            if process is not None and process.alive():
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, 9)

    # ---- housekeeping: state to the database, culling, replay expiry

    def _ensure_housekeeping(self) -> None:
        if self._housekeeper is None or self._housekeeper.done():
            self._housekeeper = _spawn(self._housekeeping())

    async def _housekeeping(self) -> None:
        while not self.closed:
            await asyncio.sleep(min(FLUSH_SECONDS, max(settings.CULL_INTERVAL, 0.1)))
            try:
                await self._flush()
                now = time.monotonic()
                for kernel in list(self.kernels.values()):
                    kernel.expire_replay(now)
                if (
                    settings.CULL_IDLE_TIMEOUT > 0
                    and now - self._last_cull >= settings.CULL_INTERVAL
                ):
                    self._last_cull = now
                    await self.cull()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kernel housekeeping failed")

    async def _flush(self) -> None:
        dirty = [kernel for kernel in self.kernels.values() if kernel.dirty]
        if not dirty:
            return
        rows = []
        for kernel in dirty:
            kernel.dirty = False
            rows.append(
                Kernel(
                    id=kernel.id,
                    execution_state=kernel.execution_state,
                    last_activity=kernel.last_activity,
                    connections=len(kernel.connections),
                    reason=kernel.reason,
                    pid=kernel.process.pid if kernel.process else None,
                )
            )
        await sync_to_async(_bulk_update)(rows)

    async def cull(self) -> None:
        """Shut down idle kernels, with jupyter_server's rules."""
        now = _now()
        for kernel in list(self.kernels.values()):
            if kernel.gone:
                continue
            idle = (now - kernel.last_activity).total_seconds()
            timeout = kernel.spec.metadata.get(
                "cull_idle_timeout", settings.CULL_IDLE_TIMEOUT
            )
            dead = kernel.execution_state == "dead"
            connected = bool(kernel.connections)
            busy = kernel.execution_state == "busy"
            if dead or (
                idle > timeout
                and (settings.CULL_CONNECTED or not connected)
                and (settings.CULL_BUSY or not busy)
            ):
                log.info(
                    "culling kernel %s (%s, idle %.0f s, %d connections)",
                    kernel.id,
                    kernel.execution_state,
                    idle,
                    len(kernel.connections),
                )
                await self.remove(kernel, action="kernel.culled")


async def user_limits(owner_id: int) -> tuple[sandbox.Limits, int]:
    """Return a user's sandbox limits and kernel allowance (staff may override)."""
    defaults = sandbox.default_limits()
    row = await KernelLimits.objects.filter(owner_id=owner_id).afirst()
    if row is None:
        return defaults, settings.KERNELS_PER_USER
    limits = sandbox.Limits(
        memory_bytes=row.memory_bytes or defaults.memory_bytes,
        max_processes=row.max_processes or defaults.max_processes,
        max_open_files=row.max_open_files or defaults.max_open_files,
        max_file_bytes=row.max_file_bytes or defaults.max_file_bytes,
    )
    allowed = (
        row.max_kernels if row.max_kernels is not None else settings.KERNELS_PER_USER
    )
    return limits, allowed


def _bulk_update(rows: list[Kernel]) -> None:
    close_old_connections()
    Kernel.objects.bulk_update(
        rows, ["execution_state", "last_activity", "connections", "reason", "pid"]
    )


class NoSuchKernelSpec(NotImplementedByServer):
    """jupyter_server's 501 for a kernel name it does not have."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"The '{name}' kernel is not available. Please pick another "
            "suitable kernel instead, or install that kernel.",
            short_message=f"{name} not found",
        )


# ---- one host per event loop

_hosts: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, KernelHost]" = (
    weakref.WeakKeyDictionary()
)


def host() -> KernelHost:
    """Return the kernel host of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    current = _hosts.get(loop)
    if current is None or current.closed:
        current = _hosts[loop] = KernelHost(loop)
    return current


def hosts() -> list[KernelHost]:
    return [h for h in _hosts.values() if not h.closed]


def run_on_host(coroutine_factory: Callable, timeout: float) -> object:
    """Run ``coroutine_factory(host)`` on the host's loop from a worker thread.

    For sync callers (admin actions, management commands) in a process whose
    kernels live on another thread's loop.
    """
    running = hosts()
    if not running:
        raise NotFound("No kernel is running in this server process")
    target = running[0]
    future = asyncio.run_coroutine_threadsafe(coroutine_factory(target), target.loop)
    return future.result(timeout)


async def status_counts(*, owner: User) -> tuple[int, int]:
    """Return ``(running kernels, open kernel WebSockets)`` of ``owner``."""
    kernels = host().owned(owner)
    return len(kernels), sum(len(kernel.connections) for kernel in kernels)


# ---- the server process's start and stop


async def shutdown_all_hosts() -> None:
    """Shut down every kernel of this process (the server is stopping)."""
    await asyncio.gather(
        *(running.shutdown_all() for running in hosts()), return_exceptions=True
    )


def kill_all_now() -> None:
    """At interpreter exit: kill whatever kernel a clean shutdown left running."""
    for running in list(_hosts.values()):
        running.kill_all_now()


def reap_orphans() -> int:
    """Forget kernels that a previous, dead server process on this machine ran.

    Their processes are killed (if one still runs with its runtime directory in
    its command line, so a reused pid is never hit), their rows and sessions
    deleted, their runtime directories removed. Returns how many were found.
    Blocking: run it before serving.
    """
    hostname = socket.gethostname()
    found = 0
    for row in Kernel.objects.filter(host__startswith=f"{hostname}:"):
        owner_pid = int(row.host.rsplit(":", 1)[1])
        if owner_pid != os.getpid() and _pid_alive(owner_pid):
            continue
        found += 1
        prefix = str(row.connection_info.get("ip", ""))
        if row.pid and prefix and _cmdline_mentions(row.pid, Path(prefix).parent):
            with contextlib.suppress(OSError):
                os.killpg(row.pid, 9)
        if prefix:
            launcher.remove_runtime_dir(Path(prefix).parent)
        log.warning("forgot kernel %s of a server process that is gone", row.pk)
        row.delete()
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline_mentions(pid: int, path: Path) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return str(path).encode() in handle.read()
    except OSError:
        return False
