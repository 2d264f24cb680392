"""The Jupyter kernel message framings: WebSocket (v1 and legacy) and ZMQ.

This module alone knows the byte layouts that the kernel WebSocket bridge moves.
A message travels as *parts*, always ``[header, parent_header, metadata,
content, *buffers]``: the four JSON parts as UTF-8 JSON bytes, exactly as the
kernel wrote them, then the binary buffers. The bridge converts between three
wire forms of those parts:

* ZMQ multipart, to and from the kernel (``to_zmq``/``from_zmq``):
  ``[*identities, DELIM, hex HMAC-SHA256 of the four JSON parts, *parts]``
  (jupyter_client's ``Session.serialize``/``Session.deserialize``).
* ``v1.kernel.websocket.jupyter.org`` (``build_v1``/``parse_v1``), one binary
  frame: ``N`` as u64 little-endian, ``N`` u64 little-endian offsets from the
  frame start, then the channel name and the parts, back to back. ``N`` is 2 +
  the number of parts, ``offsets[0]`` is ``8 * (N + 1)``, ``offsets[1]`` ends
  the channel name and each later offset ends a part (jupyter_server's
  ``serialize_msg_to_ws_v1``). Parts pass through without JSON decoding.
* Legacy, no subprotocol (``build_legacy``/``parse_legacy``): a text frame
  holding the whole message as JSON when it has no buffers; otherwise a binary
  frame of ``nbufs`` as u32 big-endian (the JSON counts as one), ``nbufs`` u32
  big-endian offsets from the frame start, the JSON message without
  ``buffers``, then the buffers (jupyter_server's ``serialize_binary_message``).

Everything a client sends is validated before use: a malformed frame raises
``FrameError`` after work proportional to the frame's real size, whatever its
header claims.

Message dicts have jupyter_client's shape: ``header``, ``msg_id``,
``msg_type``, ``parent_header``, ``metadata``, ``content`` and ``buffers``.
Dates stay the strings the kernel wrote; jupyter_client would parse them and
write them back, which can only change how many fraction digits they show.
"""

import hashlib
import hmac
import json
import numbers
import struct
import uuid
from base64 import b64encode
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import pairwise
from typing import Any, Literal

Channel = Literal["shell", "iopub", "stdin", "control"]

CHANNELS: tuple[Channel, ...] = ("shell", "iopub", "stdin", "control")
V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
V1 = V1_SUBPROTOCOL
DELIM = b"<IDS|MSG>"
# jupyter_client.protocol_version (jupyter_client 8.10).
PROTOCOL_VERSION = "5.4"
# A v1 frame's channel name and four JSON parts take five offsets after N.
_V1_MIN_OFFSETS = 6
_JSON_PARTS = ("header", "parent_header", "metadata", "content")
_CHANNEL_BY_BYTES = {name.encode(): name for name in CHANNELS}
_BYTES_BY_CHANNEL = {name: raw for raw, name in _CHANNEL_BY_BYTES.items()}
_U64 = struct.Struct("<Q")
_U32 = struct.Struct(">I")


class FrameError(ValueError):
    """Raised for a malformed frame or message; the text says what is wrong."""


# --- v1.kernel.websocket.jupyter.org ---------------------------------------------


def parse_v1(frame: bytes, *, max_buffers: int = 1024) -> tuple[str, list[bytes]]:
    """Return the channel and parts of a client's v1 frame, without decoding JSON.

    Bytes after the last offset are ignored, as jupyter_server ignores them.
    """
    if not isinstance(frame, bytes):
        frame = memoryview(frame).cast("B")
    size = len(frame)
    if size < 8:
        raise FrameError(f"v1 frame of {size} bytes is shorter than its 8-byte count")
    (count,) = _U64.unpack_from(frame)
    # Checked before any offset is read: a huge count costs nothing.
    if count < _V1_MIN_OFFSETS:
        raise FrameError(
            f"v1 frame declares {count} offsets; a channel and four JSON parts "
            f"need {_V1_MIN_OFFSETS}"
        )
    if 8 * (count + 1) > size:
        raise FrameError(f"v1 frame declares {count} offsets but has {size} bytes")
    if count - _V1_MIN_OFFSETS > max_buffers:
        raise FrameError(
            f"v1 frame has {count - _V1_MIN_OFFSETS} buffers; at most {max_buffers}"
        )
    offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    _check_offsets(offsets, 8 * (count + 1), size, "v1")
    raw_channel = frame[offsets[0] : offsets[1]]
    channel = _CHANNEL_BY_BYTES.get(bytes(raw_channel))
    if channel is None:
        raise FrameError(f"unknown channel {_describe(raw_channel)}")
    parts = [frame[start:end] for start, end in pairwise(offsets[1:])]
    if not isinstance(frame, bytes):
        parts = [bytes(part) for part in parts]
    return channel, parts


def build_v1(channel: str, parts: Sequence[bytes]) -> bytes:
    """Return the v1 frame of a message, byte for byte as jupyter_server makes it.

    ``parts`` may be any bytes-like objects (ZMQ frames received without copy).
    """
    return b"".join(v1_pieces(channel, parts))


def v1_pieces(channel: str, parts: Sequence[bytes]) -> list[bytes]:
    """Return the v1 frame of a message as pieces to be written one after the
    other (its offsets, the channel, the parts), without joining them."""
    raw_channel = _channel_bytes(channel)
    _check_part_count(parts)
    count = len(parts) + 2
    offsets = [8 * (count + 1), 8 * (count + 1) + len(raw_channel)]
    end = offsets[1]
    for part in parts:
        end += memoryview(part).nbytes
        offsets.append(end)
    head = struct.pack(f"<{count + 1}Q", count, *offsets)
    return [head, raw_channel, *parts]


def websocket_header(length: int, *, binary: bool) -> bytes:
    """Return the header of an unmasked, unfragmented WebSocket data frame (a
    server's, binary or text) carrying ``length`` bytes (RFC 6455, 5.2)."""
    first = 0x82 if binary else 0x81  # FIN, opcode 2 (binary) or 1 (text)
    if length <= 125:
        return struct.pack("!BB", first, length)
    if length <= 0xFFFF:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


# --- legacy (no subprotocol) ------------------------------------------------------


def parse_legacy(data: str | bytes, *, max_buffers: int = 1024) -> tuple[str, dict]:
    """Return the channel and message dict of a client's legacy frame.

    ``data`` is a text frame (the message as JSON) or a binary frame (offsets,
    the JSON message, buffers). A missing or null ``channel`` means ``shell``,
    as in jupyter_server. Missing or null ``parent_header``, ``metadata`` and
    ``content`` become ``{}``; ``buffers`` are ``bytes``.
    """
    if isinstance(data, str):
        msg = _loads_object(data, "legacy text frame")
        if msg.get("buffers"):
            raise FrameError("a legacy text frame cannot carry buffers")
        buffers: list[bytes] = []
    else:
        raw_json, buffers = _split_legacy_binary(data, max_buffers)
        try:
            text = str(raw_json, "utf-8")
        except UnicodeDecodeError as e:
            raise FrameError(f"legacy binary frame's JSON is not UTF-8: {e}") from None
        msg = _loads_object(text, "legacy binary frame's JSON")
    channel = msg.get("channel")
    if channel is None:
        channel = "shell"
    elif channel not in _BYTES_BY_CHANNEL:
        raise FrameError(f"unknown channel {channel!r}")
    header = msg.get("header")
    if not isinstance(header, dict):
        raise FrameError("legacy message has no header object")
    result = {
        "header": header,
        "msg_id": header.get("msg_id"),
        "msg_type": header.get("msg_type"),
    }
    for name in _JSON_PARTS[1:]:
        value = msg.get(name)
        if value is None:
            value = {}
        elif not isinstance(value, dict):
            raise FrameError(f"legacy message's {name} is not an object")
        result[name] = value
    result["buffers"] = buffers
    return channel, result


def build_legacy(channel: str, msg: dict) -> str | bytes:
    """Return the legacy frame of a message, as jupyter_server writes it.

    Without buffers it is a text frame: the message as JSON with ``buffers:
    []`` and ``channel``. With buffers it is a binary frame.
    """
    _channel_bytes(channel)
    header = msg["header"]
    out = {
        "header": header,
        "msg_id": msg.get("msg_id", header.get("msg_id")),
        "msg_type": msg.get("msg_type", header.get("msg_type")),
        "parent_header": msg.get("parent_header", {}),
        "metadata": msg.get("metadata", {}),
        "content": msg.get("content", {}),
    }
    buffers = msg.get("buffers") or []
    if not buffers:
        out["buffers"] = []
        out["channel"] = channel
        return json.dumps(out, default=_json_default)
    out["channel"] = channel
    raw_json = json.dumps(out, default=_json_default).encode()
    nbufs = len(buffers) + 1
    offsets = [4 * (nbufs + 1), 4 * (nbufs + 1) + len(raw_json)]
    end = offsets[1]
    for buffer in buffers[:-1]:
        end += memoryview(buffer).nbytes
        offsets.append(end)
    head = struct.pack(f">{nbufs + 1}I", nbufs, *offsets)
    return b"".join((head, raw_json, *buffers))


def _split_legacy_binary(
    data: bytes, max_buffers: int
) -> tuple[bytes | memoryview, list[bytes]]:
    if not isinstance(data, bytes):
        data = memoryview(data).cast("B")
    size = len(data)
    if size < 4:
        raise FrameError(
            f"legacy binary frame of {size} bytes is shorter than its 4-byte count"
        )
    (nbufs,) = _U32.unpack_from(data)
    if nbufs < 1:
        raise FrameError("legacy binary frame declares no JSON part")
    if 4 * (nbufs + 1) > size:
        raise FrameError(
            f"legacy binary frame declares {nbufs} parts but has {size} bytes"
        )
    if nbufs - 1 > max_buffers:
        raise FrameError(
            f"legacy binary frame has {nbufs - 1} buffers; at most {max_buffers}"
        )
    offsets = struct.unpack_from(f">{nbufs}I", data, 4)
    _check_offsets(offsets, 4 * (nbufs + 1), size, "legacy binary")
    ends = (*offsets[1:], size)
    pieces = [data[start:end] for start, end in zip(offsets, ends, strict=True)]
    return pieces[0], [bytes(piece) for piece in pieces[1:]]


# --- message dicts ----------------------------------------------------------------


def parts_to_msg(parts: Sequence[bytes]) -> dict:
    """Decode parts into a message dict; buffers are kept as given.

    Invalid UTF-8 is replaced rather than refused, as jupyter_client's JSON
    unpacker does with what kernels send.
    """
    _check_part_count(parts, FrameError)
    header, parent_header, metadata, content = (
        _loads_object(str(part, "utf-8", "replace"), name)
        for part, name in zip(parts[:4], _JSON_PARTS, strict=True)
    )
    return {
        "header": header,
        "msg_id": header.get("msg_id"),
        "msg_type": header.get("msg_type"),
        "parent_header": parent_header,
        "metadata": metadata,
        "content": content,
        "buffers": list(parts[4:]),
    }


def msg_to_parts(msg: dict) -> list[bytes]:
    """Encode a message dict into parts, as jupyter_client's JSON packer does.

    A JSON part given as bytes is taken as already encoded. Missing or null
    ``parent_header``, ``metadata`` and ``content`` are encoded as ``{}``.
    Datetimes become ISO 8601 with ``Z`` for UTC; a naive one is taken as UTC
    (jupyter_client would take it as local time, with a warning).
    """
    parts = [_pack(msg["header"])]
    for name in _JSON_PARTS[1:]:
        value = msg.get(name)
        parts.append(_pack({} if value is None else value))
    parts.extend(msg.get("buffers") or ())
    return parts


def header_fields(header: bytes) -> dict:
    """Decode a header part (or any JSON part) that must be an object."""
    return _loads_object(str(header, "utf-8", "replace"), "header")


def new_message(
    msg_type: str,
    content: dict,
    *,
    session: str,
    parent: dict | None = None,
    username: str = "jserver",
) -> dict:
    """Return a message made by the server, as jupyter_client's ``Session.msg``.

    ``parent`` is a message or a header; its header becomes ``parent_header``.
    The header's ``date`` is already a string, so the dict is JSON-ready.
    """
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": msg_type,
        "username": username,
        "session": session,
        "date": _isoformat(datetime.now(UTC)),
        "version": PROTOCOL_VERSION,
    }
    if parent is None:
        parent_header = {}
    else:
        parent_header = dict(parent.get("header", parent))
    return {
        "header": header,
        "msg_id": msg_id,
        "msg_type": msg_type,
        "parent_header": parent_header,
        "metadata": {},
        "content": content,
        "buffers": [],
    }


# --- ZMQ --------------------------------------------------------------------------


def sign(key: bytes, parts: Sequence[bytes]) -> bytes:
    """Return the hex HMAC-SHA256 of the four JSON parts; ``b""`` for no key.

    The scheme of jupyter_client's ``Session.sign`` (``hmac-sha256``): buffers
    are not signed.
    """
    if not key:
        return b""
    mac = _hmac_for(bytes(key)).copy()
    for part in parts[:4]:
        mac.update(part)
    return mac.hexdigest().encode()


def to_zmq(key: bytes, parts: Sequence[bytes]) -> list[bytes]:
    """Return the multipart ZMQ message of parts, signed with the kernel's key."""
    _check_part_count(parts)
    return [DELIM, sign(key, parts), *parts]


def from_zmq(key: bytes, frames: Sequence[bytes]) -> list[bytes]:
    """Return the parts of a multipart message received from a kernel socket.

    Identities before the delimiter are dropped. With a key the signature must
    match; with an empty key it is not checked (jupyter_client's behaviour).
    """
    try:
        index = frames.index(DELIM)
    except ValueError:
        raise FrameError("ZMQ message has no <IDS|MSG> delimiter") from None
    signature = frames[index + 1] if index + 1 < len(frames) else b""
    parts = list(frames[index + 2 :])
    if len(parts) < 4:
        raise FrameError(
            f"ZMQ message has {len(parts)} parts after its signature; 4 are needed"
        )
    if key:
        if not signature:
            raise FrameError("ZMQ message is unsigned")
        if not hmac.compare_digest(signature, sign(key, parts)):
            raise FrameError("ZMQ message has an invalid signature")
    return parts


# --- the bridge's two directions ------------------------------------------------


def choose_subprotocol(offered: Iterable[str]) -> str | None:
    """Return the subprotocol to accept: v1 when offered, else none (legacy).

    jupyter_server prefers v1 and ignores any other offered value.
    """
    return V1_SUBPROTOCOL if V1_SUBPROTOCOL in offered else None


def to_websocket(channel: str, parts: Sequence[bytes], *, v1: bool) -> str | bytes:
    """Return the WebSocket frame that carries a kernel message's parts."""
    if v1:
        return build_v1(channel, parts)
    return build_legacy(channel, parts_to_msg(parts))


def from_websocket(
    frame: str | bytes, *, v1: bool, max_buffers: int = 1024
) -> tuple[str, list[bytes]]:
    """Return the channel and parts of a client's WebSocket frame.

    A v1 text frame is a ``FrameError``; legacy messages are re-encoded.
    """
    if v1:
        if isinstance(frame, str):
            raise FrameError("v1 frames are binary, not text")
        return parse_v1(frame, max_buffers=max_buffers)
    channel, msg = parse_legacy(frame, max_buffers=max_buffers)
    return channel, msg_to_parts(msg)


# --- helpers --------------------------------------------------------------------


def _check_offsets(
    offsets: tuple[int, ...], first: int, size: int, framing: str
) -> None:
    if offsets[0] != first:
        raise FrameError(f"{framing} frame's first offset is {offsets[0]}, not {first}")
    if offsets[-1] > size:
        raise FrameError(
            f"{framing} frame's offset {offsets[-1]} is past its end ({size} bytes)"
        )
    for earlier, later in pairwise(offsets):
        if later < earlier:
            raise FrameError(
                f"{framing} frame's offsets decrease ({earlier} then {later})"
            )


def _check_part_count(parts: Sequence[bytes], error: type = ValueError) -> None:
    if len(parts) < 4:
        raise error(f"a message needs 4 JSON parts, got {len(parts)} parts")


def _channel_bytes(channel: str) -> bytes:
    try:
        return _BYTES_BY_CHANNEL[channel]
    except KeyError:
        raise ValueError(f"unknown channel {channel!r}") from None


def _describe(raw: bytes | memoryview) -> str:
    try:
        return repr(str(raw, "utf-8"))
    except UnicodeDecodeError:
        return f"{bytes(raw[:32])!r} (not UTF-8)"


def _loads_object(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise FrameError(f"{what} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise FrameError(f"{what} is not a JSON object")
    return value


def _pack(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    # jupyter_client.session.json_packer's settings.
    return json.dumps(
        value, default=_json_default, ensure_ascii=False, allow_nan=False
    ).encode("utf-8", "surrogateescape")


def _isoformat(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    """Encode what JSON cannot, as jupyter_client.jsonutil.json_default does."""
    if isinstance(value, datetime):
        return _isoformat(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return b64encode(value).decode("ascii")
    if isinstance(value, Iterable):
        return list(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@lru_cache(maxsize=256)
def _hmac_for(key: bytes) -> hmac.HMAC:
    # Copying a keyed HMAC skips re-deriving the padded key for every message.
    return hmac.new(key, digestmod=hashlib.sha256)
