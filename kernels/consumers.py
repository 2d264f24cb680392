"""``/api/kernels/<id>/channels``: a browser's WebSocket to one of its kernels.

The consumer authenticates (``scope["user"]``, from the WebSocket auth
middleware), finds the kernel among its owner's (another user's kernel is
refused like a missing one), waits until the kernel answers, picks the framing
as jupyter_server does (the ``v1.kernel.websocket.jupyter.org`` subprotocol
when offered, else the legacy JSON protocol), and then only moves frames:
client frames are parsed by ``kernels/protocol.py`` and handed to the kernel
host, kernel messages arrive through ``deliver`` into this connection's own
queue, which one task writes to the socket. A malformed frame closes this
socket and no other.
"""

import asyncio
import collections
import contextlib
import functools
import json
import logging
from urllib.parse import parse_qs

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from jserver import activity
from jserver.errors import JupyterError, NotFound
from kernels import manager, protocol
from kernels.ratelimit import IopubRateLimit

log = logging.getLogger(__name__)

# WebSocket close code for a frame the server cannot accept (RFC 6455 1007).
CLOSE_BAD_FRAME = 1007
# Frames up to this size are sent straight to an idle socket (_write_frame).
DIRECT_SEND_BYTES = 64 * 1024


class KernelChannelsConsumer(AsyncWebsocketConsumer):
    """One client connection to one kernel."""

    kernel: manager.LiveKernel | None = None
    session_id = ""
    v1 = False
    flow: "_Flow | None" = None
    wire: object | None = None

    async def __call__(self, scope, receive, send) -> None:
        # No channel layer: a kernel socket is reached through its kernel
        # host, never through a group. Each event from daphne is then one
        # awaited receive, where channels' own loop makes a task and an
        # asyncio.wait per frame (and, on Redis, a channel per socket).
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close()  # before accept(): the handshake answers 403
            return
        kernel_id = self.scope["url_route"]["kwargs"]["kernel_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.session_id = (query.get("session_id") or [""])[0]
        if not self.session_id:
            log.warning("kernel WebSocket without session_id: making one up")
            self.session_id = f"anonymous-{id(self):x}"
        try:
            kernel = manager.host().get(user, kernel_id)
            await kernel.wait_ready()
        except (NotFound, JupyterError) as exc:
            log.warning("refused kernel WebSocket: %s", exc.message)
            await self.close()
            return
        self.v1 = protocol.V1_SUBPROTOCOL in self.scope.get("subprotocols", ())
        self.queue: collections.deque[manager.Outgoing] = collections.deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.closing = False
        self.burst = False
        self.rate_limit = (
            IopubRateLimit(self.session_id) if settings.IOPUB_LIMIT_RATE else None
        )
        await self.accept(subprotocol=protocol.V1_SUBPROTOCOL if self.v1 else None)
        self.wire = _protocol_of(self.base_send)
        self.flow = _Flow.attach(self.wire)
        self.kernel = kernel
        self.user = user
        self.sender = asyncio.create_task(self._send_loop())
        kernel.attach(self)
        activity.touch(user)

    # ---- kernel -> client

    def deliver(self, message: manager.Outgoing) -> None:
        if self.rate_limit is not None:
            allowed, notice = self.rate_limit.check(message)
            if notice is not None:
                self._enqueue(manager.Outgoing("iopub", notice, "stream"))
            if not allowed:
                return
        queue = self.queue
        if not queue and self._write_now(message):
            return
        if (
            len(queue) >= settings.KERNEL_WS_BACKLOG
            and message.msg_type == "stream"
            and queue[-1].msg_type == "stream"
        ):
            merged = _merge_streams(queue[-1], message)
            if merged is not None:
                self.queued_bytes += merged.size - queue[-1].size
                queue[-1] = merged
                return
        self._enqueue(message)

    def _write_now(self, message: manager.Outgoing) -> bool:
        """Write ``message`` at once, when nothing waits before it and the
        client keeps up: the common case of a reply or a status, which then
        skips the queue and the sender task's wake-up. Return ``False`` when
        it must be queued (not under daphne, the client behind, the socket
        closing or closed).
        """
        wire, flow = self.wire, self.flow
        if wire is None or flow is None or self.closing or flow.pending() > flow.LIMIT:
            return False
        return self._put(message)

    def _put(self, message: manager.Outgoing) -> bool:
        """Write ``message`` to the client; ``False`` if the socket is closed."""
        wire = self.wire
        if self.v1:
            pieces, binary = message.v1_pieces(), True
        else:
            payload, binary = message.legacy_payload()
            pieces = [payload]
        if _frames_writable(wire):
            # The first frame of a turn of the event loop may go to the socket
            # at once; those after it in the same turn (a burst of output)
            # wait in the transport's buffer and go out in one write.
            direct = not self.burst
            if direct:
                self.burst = True
                asyncio.get_running_loop().call_soon(self._end_burst)
            _write_frame(wire.transport, pieces, binary=binary, direct=direct)
            return True
        # Not open, or (never under daphne) compressed: autobahn decides.
        data = b"".join(pieces) if binary else b"".join(pieces).decode()
        key = "bytes" if binary else "text"
        try:
            with _outgoing_unlimited(wire, len(data)):
                wire.handle_reply({"type": "websocket.send", key: data})
        except Exception:  # closed meanwhile: queued, so replayed on reconnect
            return False
        return True

    def _end_burst(self) -> None:
        self.burst = False

    def _enqueue(self, message: manager.Outgoing) -> None:
        self.queue.append(message)
        self.queued_bytes += message.size
        self.wake.set()
        if self.queued_bytes > settings.KERNEL_REPLAY_BYTES and not self.closing:
            # A client this far behind is cut off; what it has not received
            # waits in the replay buffer for it to reconnect.
            log.warning(
                "kernel WebSocket %s: %d bytes unsent, closing it",
                self.session_id,
                self.queued_bytes,
            )
            asyncio.ensure_future(self._close_soon())

    async def _send_loop(self) -> None:
        queue, v1, flow = self.queue, self.v1, self.flow
        try:
            while True:
                while not queue:
                    self.wake.clear()
                    await self.wake.wait()
                if flow is not None and flow.pending() > flow.LIMIT:
                    await flow.writable()  # the client is behind
                    continue
                message = queue.popleft()
                self.queued_bytes -= message.size
                if self.wire is not None:
                    if not self._put(message):  # closed: kept for the replay
                        queue.appendleft(message)
                        self.queued_bytes += message.size
                        return
                    continue
                data = message.v1() if v1 else message.legacy()
                if isinstance(data, bytes):
                    await self.send(bytes_data=data)
                else:
                    await self.send(text_data=data)
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("kernel WebSocket %s: sending failed", self.session_id)
            await self._close_soon()

    def replaced(self) -> list[manager.Outgoing]:
        self.kernel = None
        unsent = list(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        self.wake.set()
        asyncio.ensure_future(self._close_soon())
        return unsent

    def kernel_gone(self) -> None:
        self.kernel = None
        asyncio.ensure_future(self._close_soon(flush=True))

    async def _close_soon(self, *, flush: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        if flush:  # let the last messages (status: dead) go out first
            for _ in range(100):
                if not self.queue:
                    break
                await asyncio.sleep(0.01)
        await self.close()

    # ---- client -> kernel

    async def dispatch(self, message) -> None:
        # Channels' dispatch first closes stale database connections, which is
        # a round trip to a worker thread; a client's frame touches no
        # database, so it goes to the kernel without that hop.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        kernel = self.kernel
        if kernel is None:
            return
        try:
            if self.v1:
                if bytes_data is None:
                    raise protocol.FrameError("text frame on the v1 protocol")
                channel, parts = protocol.parse_v1(bytes_data)
                header = protocol.header_fields(parts[0])
            else:
                data = text_data if text_data is not None else bytes_data
                channel, msg = protocol.parse_legacy(data)
                header = msg["header"]
                parts = protocol.msg_to_parts(msg)
            if not isinstance(header, dict):
                raise protocol.FrameError("the header is not a JSON object")
        except protocol.FrameError as exc:
            log.warning("kernel WebSocket %s: bad frame: %s", self.session_id, exc)
            self.kernel = None
            await self.close(code=CLOSE_BAD_FRAME)
            return
        if channel == "iopub":
            return  # nothing to send a subscriber
        msg_type = header.get("msg_type")
        allowed = settings.KERNEL_ALLOWED_MESSAGE_TYPES
        if allowed and msg_type not in allowed:
            log.warning("kernel WebSocket: message type %r is not allowed", msg_type)
            return
        client_session = header.get("session")
        if isinstance(client_session, str) and client_session:
            kernel.route(client_session, self)
        await kernel.send(channel, parts)

    async def disconnect(self, code: int) -> None:
        sender = getattr(self, "sender", None)
        if sender is not None:
            sender.cancel()
        kernel, self.kernel = self.kernel, None
        if kernel is not None:
            # What was queued and never sent is replayed on reconnection.
            kernel.detach(self, unsent=list(self.queue))


class _Flow:
    """Back-pressure from daphne: the bytes waiting in the client's transport.

    daphne hands a WebSocket message to Twisted's transport without waiting,
    so a client that reads slowly would only grow the server's memory. While
    more than ``LIMIT`` bytes wait in the transport, the sender waits (checking
    every ``POLL`` seconds); the queue it leaves behind is where stream outputs
    are merged and, past ``KERNEL_REPLAY_BYTES``, the client is cut off.
    """

    LIMIT = 1024 * 1024
    POLL = 0.01

    def __init__(self, transport) -> None:
        self.transport = transport

    @classmethod
    def attach(cls, wire) -> "_Flow | None":
        transport = getattr(wire, "transport", None)
        for _ in range(3):  # daphne's protocol sits on Twisted's HTTP channel
            if transport is None or hasattr(transport, "dataBuffer"):
                break
            transport = getattr(transport, "transport", None)
        if transport is None or not hasattr(transport, "dataBuffer"):
            return None
        return cls(transport)

    def pending(self) -> int:
        transport = self.transport
        return (
            len(transport.dataBuffer)
            - getattr(transport, "offset", 0)
            + getattr(transport, "_tempDataLen", 0)
        )

    async def writable(self) -> None:
        while self.pending() > self.LIMIT:
            if getattr(self.transport, "disconnecting", False):
                return
            await asyncio.sleep(self.POLL)


def _frames_writable(wire) -> bool:
    """Whether data frames can be written to ``wire``'s transport directly:
    the WebSocket is open and uncompressed (daphne negotiates no compression)."""
    return (
        getattr(wire, "transport", None) is not None
        and getattr(wire, "state", None) == getattr(wire, "STATE_OPEN", object())
        and getattr(wire, "_perMessageCompress", True) is None
    )


def _write_frame(
    transport, pieces: list[bytes], *, binary: bool, direct: bool = True
) -> None:
    """Write one WebSocket data frame made of ``pieces`` to ``transport``.

    The frame autobahn's ``sendMessage`` makes on daphne's server protocol
    (unmasked, unfragmented, uncompressed), without its per-message work and
    without joining the pieces first: a 50 MB output is copied once, by the
    transport, instead of three times. Messages of any size go out, as from
    jupyter_server: the message size limit is for what clients send.

    With ``direct``, a frame of up to ``DIRECT_SEND_BYTES`` meeting an empty
    send buffer (the usual reply or status) goes to the socket at once, in
    one ``sendmsg`` of its pieces; only what the socket does not take is
    buffered. That spares the transport a turn of the event loop and two
    changes of its registration per message.
    """
    length = sum(len(piece) for piece in pieces)
    frame = [protocol.websocket_header(length, binary=binary), *pieces]
    sock = getattr(transport, "socket", None)
    if (
        direct
        and length <= DIRECT_SEND_BYTES
        and sock is not None
        and getattr(transport, "connected", False)
        and not getattr(transport, "disconnecting", True)
        and not getattr(transport, "TLS", True)  # TLS started on it: never raw
        and not transport.dataBuffer
        and not transport._tempDataBuffer
    ):
        try:
            sent = sock.sendmsg(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the transport finds out and closes, as it would
            sent = 0
        if sent == length + len(frame[0]):
            return
        frame = _unsent(frame, sent)
    transport.writeSequence(frame)


def _unsent(pieces: list[bytes], sent: int) -> list[bytes]:
    """Return what is left of ``pieces`` once their first ``sent`` bytes went."""
    for index, piece in enumerate(pieces):
        if sent < len(piece):
            return [piece[sent:], *pieces[index + 1 :]]
        sent -= len(piece)
    return []


def _protocol_of(send) -> object | None:
    """Find daphne's WebSocket protocol behind an ASGI ``send`` (through wrappers)."""
    for _ in range(4):
        if isinstance(send, functools.partial):
            return send.args[0] if send.args else None
        wrapper = getattr(send, "__self__", None)
        send = getattr(wrapper, "real_send", None)
        if send is None:
            return None
    return None


@contextlib.contextmanager
def _outgoing_unlimited(wire, size: int):
    """Let one message larger than the WebSocket message limit go out.

    daphne's limit (``JSERVER_WEBSOCKET_MAX_MESSAGE_SIZE``, jupyter_server's
    10 MiB) is meant for what clients send, but autobahn applies it to what the
    server sends too, and a kernel may well print 50 MB at once. The limit is
    lifted for the one synchronous write and restored before anything is read.
    """
    limit = getattr(wire, "maxMessagePayloadSize", 0)
    if not limit or size <= limit:
        yield
        return
    wire.maxMessagePayloadSize = 0
    try:
        yield
    finally:
        wire.maxMessagePayloadSize = limit


def _merge_streams(
    first: manager.Outgoing, second: manager.Outgoing
) -> manager.Outgoing | None:
    """Return one stream message with both texts, or None if they differ in kind."""
    if first.channel != "iopub" or second.channel != "iopub":
        return None
    try:
        parent_a, parent_b = json.loads(first.parts[1]), json.loads(second.parts[1])
        content_a, content_b = json.loads(first.parts[3]), json.loads(second.parts[3])
    except ValueError:
        return None
    if (
        parent_a.get("msg_id") != parent_b.get("msg_id")
        or content_a.get("name") != content_b.get("name")
        or len(first.parts) > 4
        or len(second.parts) > 4
    ):
        return None
    content_a["text"] = content_a.get("text", "") + content_b.get("text", "")
    parts = list(first.parts)
    parts[3] = json.dumps(content_a).encode()
    return manager.Outgoing("iopub", parts, "stream")
