"""The kernel message framings, checked against jupyter_server and jupyter_client.

jupyter_server's own serializers and jupyter_client's ``Session`` are the
oracles: frames built here must be the bytes they build, and each side must
read what the other writes. Hostile frames must fail fast with ``FrameError``.
"""

import json
import re
import struct
import time
from datetime import UTC, datetime, timedelta, timezone

import jupyter_client
import pytest
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from kernels import protocol
from kernels.protocol import FrameError

KEY = b"5ca1ab1e-0000-4000-8000-c0ffee000000"
UNICODE_TEXT = 'héllo ✓ 𝄞 \u2028 "quoted" \\ end'


def make_parts(
    msg_type: str = "execute_request",
    content: dict | None = None,
    buffers: tuple[bytes, ...] = (),
) -> list[bytes]:
    """Return the parts of a client-like message, encoded as jupyter_client does."""
    msg = protocol.new_message(
        msg_type,
        {"code": "1 + 1"} if content is None else content,
        session="client-session",
        parent={"header": {"msg_id": "parent-id", "msg_type": "kernel_info_request"}},
    )
    msg["metadata"] = {"cellId": "c1"}
    msg["buffers"] = list(buffers)
    return protocol.msg_to_parts(msg)


def v1_offsets(frame: bytes) -> list[int]:
    (count,) = struct.unpack_from("<Q", frame)
    return list(struct.unpack_from(f"<{count}Q", frame, 8))


def with_v1_offsets(frame: bytes, offsets: list[int]) -> bytes:
    """Return a copy of a v1 frame with its offsets replaced (same count)."""
    out = bytearray(frame)
    struct.pack_into(f"<{len(offsets)}Q", out, 8, *offsets)
    return bytes(out)


def raw_v1(channel: bytes, parts: list[bytes]) -> bytes:
    """Lay out a v1 frame without any checks, for channels build_v1 refuses."""
    count = len(parts) + 2
    offsets = [8 * (count + 1)]
    for chunk in (channel, *parts):
        offsets.append(offsets[-1] + len(chunk))
    return struct.pack(f"<{count + 1}Q", count, *offsets) + channel + b"".join(parts)


def legacy_binary(json_bytes: bytes, buffers: list[bytes]) -> bytes:
    """Lay out a legacy binary frame without any checks."""
    chunks = [json_bytes, *buffers]
    nbufs = len(chunks)
    offsets = [4 * (nbufs + 1)]
    for chunk in chunks[:-1]:
        offsets.append(offsets[-1] + len(chunk))
    return struct.pack(f">{nbufs + 1}I", nbufs, *offsets) + b"".join(chunks)


def oracle_msg(parts: list[bytes], channel: str) -> dict:
    """Return the dict jupyter_server reserialises for a legacy client."""
    session = Session(key=KEY)
    msg = session.deserialize(protocol.to_zmq(KEY, parts)[1:])
    msg["channel"] = channel
    return msg


# --- v1 ------------------------------------------------------------------------


@pytest.mark.parametrize("channel", protocol.CHANNELS)
@pytest.mark.parametrize(
    "buffers", [(), (b"\x00\x01\x02",), (b"", b"x" * 70_000, bytes(range(256)))]
)
def test_build_v1_is_byte_exact_with_jupyter_server(channel, buffers):
    parts = make_parts(content={"text": UNICODE_TEXT}, buffers=buffers)
    assert protocol.build_v1(channel, parts) == serialize_msg_to_ws_v1(parts, channel)


@pytest.mark.parametrize("buffers", [(), (b"\x00\xff",), (b"a", b"", b"ccc")])
def test_v1_round_trip(buffers):
    parts = make_parts(content={"text": UNICODE_TEXT}, buffers=buffers)
    frame = protocol.build_v1("iopub", parts)
    assert protocol.parse_v1(frame) == ("iopub", parts)
    assert deserialize_msg_from_ws_v1(frame) == ("iopub", parts)


def test_parse_v1_reads_jupyter_servers_frames():
    parts = make_parts(buffers=(b"buf0", b"buf1"))
    frame = serialize_msg_to_ws_v1(parts, "control")
    channel, got = protocol.parse_v1(frame)
    assert (channel, got) == ("control", parts)
    assert all(type(part) is bytes for part in got)


def test_v1_layout_matches_the_reference_example():
    parts = make_parts("kernel_info_reply", content={"status": "ok"})
    frame = protocol.build_v1("shell", parts)
    offsets = v1_offsets(frame)
    assert len(offsets) == 6
    assert offsets[0] == 56
    assert frame[56:61] == b"shell"
    assert offsets[1] == 61
    assert offsets[-1] == len(frame)


def test_build_v1_accepts_memoryview_parts():
    parts = make_parts(buffers=(b"zero-copy",))
    views = [memoryview(part) for part in parts]
    assert protocol.build_v1("iopub", views) == protocol.build_v1("iopub", parts)


def test_parse_v1_accepts_bytearray_and_memoryview_frames():
    parts = make_parts(buffers=(b"b",))
    frame = protocol.build_v1("stdin", parts)
    for view in (bytearray(frame), memoryview(frame)):
        channel, got = protocol.parse_v1(view)
        assert (channel, got) == ("stdin", parts)
        assert all(type(part) is bytes for part in got)


def test_parse_v1_ignores_bytes_after_the_last_offset():
    parts = make_parts()
    frame = protocol.build_v1("shell", parts)
    assert protocol.parse_v1(frame + b"trailing") == ("shell", parts)


def test_parse_v1_does_not_decode_json():
    parts = [b"not json", b"{", b"", b"\xff"]
    frame = protocol.build_v1("shell", parts)
    assert protocol.parse_v1(frame) == ("shell", parts)


def test_build_v1_refuses_unknown_channel_and_short_parts():
    with pytest.raises(ValueError, match="unknown channel"):
        protocol.build_v1("bogus", make_parts())
    with pytest.raises(ValueError, match="4 JSON parts"):
        protocol.build_v1("shell", [b"{}", b"{}", b"{}"])


# --- v1, hostile ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"", "shorter than its 8-byte count"),
        (b"\x06" + b"\x00" * 6, "shorter than its 8-byte count"),
        (struct.pack("<Q", 0), "declares 0 offsets"),
        (struct.pack("<Q", 5) + b"\x00" * 64, "declares 5 offsets"),
        (struct.pack("<Q", 2**63), "but has 8 bytes"),
        (struct.pack("<Q", 2**64 - 1), "but has 8 bytes"),
        (struct.pack("<Q", 6) + b"\x00" * 47, "but has 55 bytes"),
    ],
)
def test_parse_v1_rejects_bad_counts(frame, match):
    with pytest.raises(FrameError, match=match):
        protocol.parse_v1(frame)


@pytest.mark.parametrize("count", [2**60, 2**63, 2**64 - 1, 10**9])
def test_parse_v1_rejects_a_huge_count_instantly(count):
    frame = struct.pack("<Q", count) + b"\x00" * 64
    repetitions = 1000
    started = time.perf_counter()
    for _ in range(repetitions):
        with pytest.raises(FrameError):
            protocol.parse_v1(frame)
    per_frame = (time.perf_counter() - started) / repetitions
    assert per_frame < 0.001  # well under 10 ms, by a wide margin


def test_parse_v1_rejects_offsets_past_the_end():
    frame = protocol.build_v1("shell", make_parts(buffers=(b"abc",)))
    offsets = v1_offsets(frame)
    offsets[-1] = len(frame) + 1
    with pytest.raises(FrameError, match="past its end"):
        protocol.parse_v1(with_v1_offsets(frame, offsets))
    offsets[-1] = 2**64 - 1
    with pytest.raises(FrameError, match="past its end"):
        protocol.parse_v1(with_v1_offsets(frame, offsets))


def test_parse_v1_rejects_decreasing_offsets():
    frame = protocol.build_v1("shell", make_parts())
    offsets = v1_offsets(frame)
    offsets[3] = offsets[2] - 1
    with pytest.raises(FrameError, match="offsets decrease"):
        protocol.parse_v1(with_v1_offsets(frame, offsets))


def test_parse_v1_rejects_a_first_offset_inside_the_offsets():
    frame = protocol.build_v1("shell", make_parts())
    offsets = v1_offsets(frame)
    offsets[0] = 8
    with pytest.raises(FrameError, match="first offset is 8, not 56"):
        protocol.parse_v1(with_v1_offsets(frame, offsets))


@pytest.mark.parametrize(
    ("channel", "match"),
    [
        (b"bogus", "unknown channel 'bogus'"),
        (b"", "unknown channel ''"),
        (b"Shell", "unknown channel 'Shell'"),
        (b"shell\x00", "unknown channel"),
        (b"\xff\xfeshell", r"not UTF-8"),
    ],
)
def test_parse_v1_rejects_bad_channels(channel, match):
    with pytest.raises(FrameError, match=match):
        protocol.parse_v1(raw_v1(channel, make_parts()))


def test_parse_v1_rejects_too_many_buffers():
    frame = protocol.build_v1("shell", make_parts(buffers=(b"a",) * 5))
    assert len(protocol.parse_v1(frame, max_buffers=5)[1]) == 9
    with pytest.raises(FrameError, match="has 5 buffers; at most 4"):
        protocol.parse_v1(frame, max_buffers=4)


def test_parse_v1_count_above_max_buffers_is_rejected_before_reading_offsets():
    count = 6 + 2000
    frame = struct.pack("<Q", count) + b"\x00" * (8 * count)
    with pytest.raises(FrameError, match="at most 1024"):
        protocol.parse_v1(frame)


# --- legacy --------------------------------------------------------------------


def test_build_legacy_text_matches_jupyter_server():
    parts = make_parts("execute_result", content={"data": {"text/plain": UNICODE_TEXT}})
    frame = protocol.build_legacy("iopub", protocol.parts_to_msg(parts))
    assert isinstance(frame, str)
    assert frame == json.dumps(oracle_msg(parts, "iopub"), default=json_default)
    assert json.loads(frame)["buffers"] == []


@pytest.mark.parametrize("buffers", [(b"\x00\x01",), (b"", b"x" * 5000, b"z")])
def test_build_legacy_binary_matches_jupyter_server(buffers):
    parts = make_parts("comm_msg", content={"text": UNICODE_TEXT}, buffers=buffers)
    frame = protocol.build_legacy("iopub", protocol.parts_to_msg(parts))
    assert isinstance(frame, bytes)
    assert frame == serialize_binary_message(oracle_msg(parts, "iopub"))


def test_legacy_text_round_trip():
    parts = make_parts(content={"code": UNICODE_TEXT})
    msg = protocol.parts_to_msg(parts)
    channel, got = protocol.parse_legacy(protocol.build_legacy("shell", msg))
    assert channel == "shell"
    assert got == msg
    assert protocol.msg_to_parts(got) == parts


@pytest.mark.parametrize("buffers", [(b"\xff\x00",), (b"", b"abc", bytes(300))])
def test_legacy_binary_round_trip(buffers):
    parts = make_parts("comm_msg", content={"data": UNICODE_TEXT}, buffers=buffers)
    msg = protocol.parts_to_msg(parts)
    channel, got = protocol.parse_legacy(protocol.build_legacy("control", msg))
    assert channel == "control"
    assert got == msg
    assert got["buffers"] == list(buffers)
    assert protocol.msg_to_parts(got) == parts


def test_parse_legacy_reads_jupyter_servers_binary_frames():
    parts = make_parts("comm_msg", buffers=(b"one", b"two"))
    frame = serialize_binary_message(oracle_msg(parts, "stdin"))
    channel, msg = protocol.parse_legacy(frame)
    assert channel == "stdin"
    assert msg["buffers"] == [b"one", b"two"]
    assert msg["content"] == json.loads(parts[3])
    assert msg["msg_id"] == msg["header"]["msg_id"]


def test_jupyter_server_reads_legacy_binary_frames_built_here():
    parts = make_parts("comm_msg", buffers=(b"one", b"\x00two"))
    frame = protocol.build_legacy("shell", protocol.parts_to_msg(parts))
    msg = deserialize_binary_message(frame)
    assert msg["channel"] == "shell"
    assert [bytes(b) for b in msg["buffers"]] == [b"one", b"\x00two"]
    assert msg["content"] == json.loads(parts[3])


def test_parse_legacy_defaults_channel_to_shell():
    header = {"msg_id": "m", "msg_type": "execute_request"}
    for text in (
        json.dumps({"header": header, "content": {}}),
        json.dumps({"header": header, "channel": None}),
    ):
        channel, msg = protocol.parse_legacy(text)
        assert channel == "shell"
        assert msg == {
            "header": header,
            "msg_id": "m",
            "msg_type": "execute_request",
            "parent_header": {},
            "metadata": {},
            "content": {},
            "buffers": [],
        }


# --- legacy, hostile -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "not JSON"),
        ("not json", "not JSON"),
        ('{"header": {}', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('"header"', "not a JSON object"),
        ("{}", "no header object"),
        ('{"header": "x"}', "no header object"),
        ('{"header": {}, "channel": "bogus"}', "unknown channel 'bogus'"),
        ('{"header": {}, "channel": 3}', "unknown channel 3"),
        ('{"header": {}, "content": [1]}', "content is not an object"),
        ('{"header": {}, "parent_header": "p"}', "parent_header is not an object"),
        ('{"header": {}, "buffers": ["AAAA"]}', "cannot carry buffers"),
    ],
)
def test_parse_legacy_rejects_bad_text(text, match):
    with pytest.raises(FrameError, match=match):
        protocol.parse_legacy(text)


GOOD_JSON = json.dumps({"header": {"msg_id": "m", "msg_type": "comm_msg"}}).encode()


def test_legacy_binary_helper_builds_a_valid_frame():
    frame = legacy_binary(GOOD_JSON, [b"abc", b"de"])
    assert protocol.parse_legacy(frame)[1]["buffers"] == [b"abc", b"de"]


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"", "shorter than its 4-byte count"),
        (b"\x00\x00\x01", "shorter than its 4-byte count"),
        (struct.pack(">I", 0) + GOOD_JSON, "no JSON part"),
        (struct.pack(">I", 2**32 - 1), "but has 4 bytes"),
        (struct.pack(">II", 2, 12), "but has 8 bytes"),
        (legacy_binary(b"\xff{}", []), "not UTF-8"),
        (legacy_binary(b"[]", []), "not a JSON object"),
        (legacy_binary(b"{nope", [b"x"]), "not JSON"),
        (legacy_binary(b"", [b"x"]), "not JSON"),
    ],
)
def test_parse_legacy_rejects_bad_binary(frame, match):
    with pytest.raises(FrameError, match=match):
        protocol.parse_legacy(frame)


def test_parse_legacy_rejects_bad_binary_offsets():
    good = legacy_binary(GOOD_JSON, [b"abc", b"de"])
    nbufs, first, second, third = struct.unpack_from(">4I", good)
    cases = [
        ((first, second, len(good) + 1), "past its end"),
        ((first, third, second), "offsets decrease"),
        ((first + 1, second, third), f"first offset is {first + 1}, not 16"),
        ((0, second, third), "first offset is 0"),
        ((first, 2**32 - 1, third), "offsets decrease"),
    ]
    for offsets, match in cases:
        frame = bytearray(good)
        struct.pack_into(">3I", frame, 4, *offsets)
        with pytest.raises(FrameError, match=match):
            protocol.parse_legacy(bytes(frame))


def test_parse_legacy_rejects_too_many_buffers():
    frame = legacy_binary(GOOD_JSON, [b"x"] * 3)
    assert len(protocol.parse_legacy(frame, max_buffers=3)[1]["buffers"]) == 3
    with pytest.raises(FrameError, match="has 3 buffers; at most 2"):
        protocol.parse_legacy(frame, max_buffers=2)


def test_parse_legacy_rejects_a_huge_count_instantly():
    frame = struct.pack(">I", 2**32 - 1) + b"\x00" * 64
    repetitions = 1000
    started = time.perf_counter()
    for _ in range(repetitions):
        with pytest.raises(FrameError):
            protocol.parse_legacy(frame)
    assert (time.perf_counter() - started) / repetitions < 0.001


# --- message dicts ---------------------------------------------------------------


def test_msg_to_parts_matches_session_serialize():
    session = Session(key=KEY, username="someone")
    msg = session.msg(
        "execute_request",
        content={"code": UNICODE_TEXT, "n": 1.5, "none": None, "raw": b"\x00\xff"},
        parent={"header": {"msg_id": "p", "date": datetime(2024, 5, 6, tzinfo=UTC)}},
        metadata={"cellId": "c"},
    )
    assert isinstance(msg["header"]["date"], datetime)
    expected = session.serialize(msg)
    assert protocol.to_zmq(KEY, protocol.msg_to_parts(msg)) == expected
    header = json.loads(expected[2])
    assert header["date"].endswith("Z")
    assert json.loads(expected[3])["date"] == "2024-05-06T00:00:00Z"
    assert json.loads(expected[5])["raw"] == "AP8="


def test_msg_to_parts_encodes_dates_with_offsets():
    cest = timezone(timedelta(hours=2))
    header = {"date": datetime(2024, 5, 6, 12, 0, 0, 123456, tzinfo=cest)}
    naive = {"date": datetime(2024, 5, 6, 12, 0, 0)}
    parts = protocol.msg_to_parts({"header": header, "parent_header": naive})
    assert json.loads(parts[0]) == {"date": "2024-05-06T12:00:00.123456+02:00"}
    assert json.loads(parts[1]) == {"date": "2024-05-06T12:00:00Z"}
    assert parts[2:] == [b"{}", b"{}"]


def test_msg_to_parts_passes_encoded_parts_and_buffers_through():
    msg = {
        "header": b'{"msg_id": "m"}',
        "parent_header": {},
        "metadata": {},
        "content": b'{"raw": true}',
        "buffers": [b"b1", memoryview(b"b2")],
    }
    parts = protocol.msg_to_parts(msg)
    assert parts[0] == b'{"msg_id": "m"}'
    assert parts[3] == b'{"raw": true}'
    assert parts[4] == b"b1"
    assert bytes(parts[5]) == b"b2"


def test_msg_to_parts_refuses_nan_as_jupyter_client_does():
    with pytest.raises(ValueError):
        protocol.msg_to_parts({"header": {}, "content": {"x": float("nan")}})


def test_parts_to_msg_decodes_and_keeps_buffers():
    parts = make_parts("comm_msg", content={"t": UNICODE_TEXT}, buffers=(b"\x00",))
    view = memoryview(b"\x01")
    msg = protocol.parts_to_msg([*parts, view])
    assert list(msg) == [
        "header",
        "msg_id",
        "msg_type",
        "parent_header",
        "metadata",
        "content",
        "buffers",
    ]
    assert msg["msg_type"] == "comm_msg"
    assert msg["content"] == {"t": UNICODE_TEXT}
    assert msg["parent_header"]["msg_id"] == "parent-id"
    assert msg["buffers"][0] == b"\x00"
    assert msg["buffers"][1] is view


def test_parts_to_msg_reads_memoryview_parts():
    parts = make_parts(content={"t": UNICODE_TEXT})
    views = [memoryview(part) for part in parts]
    assert protocol.parts_to_msg(views) == protocol.parts_to_msg(parts)


def test_parts_to_msg_replaces_invalid_utf8_as_jupyter_client_does():
    msg = protocol.parts_to_msg([b"{}", b"{}", b"{}", b'{"t": "a\xffb"}'])
    assert msg["content"] == {"t": "a\ufffdb"}
    assert msg["msg_id"] is None


@pytest.mark.parametrize(
    ("parts", "match"),
    [
        ([], "got 0 parts"),
        ([b"{}", b"{}", b"{}"], "got 3 parts"),
        ([b"nope", b"{}", b"{}", b"{}"], "header is not JSON"),
        ([b"{}", b"[]", b"{}", b"{}"], "parent_header is not a JSON object"),
        ([b"{}", b"{}", b"null", b"{}"], "metadata is not a JSON object"),
        ([b"{}", b"{}", b"{}", b""], "content is not JSON"),
    ],
)
def test_parts_to_msg_rejects_bad_parts(parts, match):
    with pytest.raises(FrameError, match=match):
        protocol.parts_to_msg(parts)


def test_header_fields():
    assert protocol.header_fields(b'{"msg_type": "status"}') == {"msg_type": "status"}
    assert protocol.header_fields(memoryview(b'{"a": 1}')) == {"a": 1}
    with pytest.raises(FrameError, match="not JSON"):
        protocol.header_fields(b"{")
    with pytest.raises(FrameError, match="not a JSON object"):
        protocol.header_fields(b"[]")


def test_new_message_has_jupyter_clients_shape():
    before = datetime.now(UTC)
    msg = protocol.new_message(
        "status", {"execution_state": "restarting"}, session="ws-session"
    )
    after = datetime.now(UTC)
    header = msg["header"]
    assert list(header) == [
        "msg_id",
        "msg_type",
        "username",
        "session",
        "date",
        "version",
    ]
    assert re.fullmatch(r"[0-9a-f]{32}", header["msg_id"])
    assert header["msg_type"] == msg["msg_type"] == "status"
    assert header["username"] == "jserver"
    assert header["session"] == "ws-session"
    assert header["version"] == jupyter_client.protocol_version
    assert header["date"].endswith("Z")
    assert before <= datetime.fromisoformat(header["date"]) <= after
    assert msg["msg_id"] == header["msg_id"]
    assert msg["parent_header"] == {}
    assert msg["metadata"] == {}
    assert msg["content"] == {"execution_state": "restarting"}
    assert msg["buffers"] == []
    other = protocol.new_message("status", {}, session="ws-session")
    assert other["msg_id"] != msg["msg_id"]


def test_new_message_takes_the_parents_header():
    parent = protocol.new_message("execute_request", {}, session="s")
    by_message = protocol.new_message("stream", {}, session="s", parent=parent)
    by_header = protocol.new_message(
        "stream", {}, session="s", parent=parent["header"], username="u"
    )
    assert by_message["parent_header"] == parent["header"]
    assert by_header["parent_header"] == parent["header"]
    assert by_message["parent_header"] is not parent["header"]
    assert by_header["header"]["username"] == "u"


def test_new_message_is_read_by_session():
    msg = protocol.new_message("kernel_info_request", {}, session="s")
    got = Session(key=KEY).deserialize(
        protocol.to_zmq(KEY, protocol.msg_to_parts(msg))[1:]
    )
    assert got["msg_id"] == msg["msg_id"]
    assert got["header"]["version"] == "5.4"
    assert got["header"]["date"].tzinfo is not None


# --- ZMQ -------------------------------------------------------------------------


def test_sign_matches_session_and_ignores_buffers():
    parts = make_parts(content={"t": UNICODE_TEXT})
    expected = Session(key=KEY).sign(parts[:4])
    assert protocol.sign(KEY, parts) == expected
    assert protocol.sign(KEY, [*parts, b"buffer"]) == expected
    assert protocol.sign(KEY, [memoryview(p) for p in parts]) == expected
    assert re.fullmatch(rb"[0-9a-f]{64}", expected)
    assert protocol.sign(b"other key", parts) != expected
    assert protocol.sign(b"", parts) == b""


def test_to_zmq_is_read_by_session():
    parts = make_parts("comm_msg", content={"t": UNICODE_TEXT}, buffers=(b"b1", b"b2"))
    frames = protocol.to_zmq(KEY, parts)
    assert frames[0] == protocol.DELIM
    assert frames[2:] == parts
    session = Session(key=KEY)
    idents, rest = session.feed_identities([b"client-ident", *frames])
    msg = session.deserialize(rest)
    assert idents == [b"client-ident"]
    assert msg["content"] == {"t": UNICODE_TEXT}
    assert [bytes(b) for b in msg["buffers"]] == [b"b1", b"b2"]


def test_from_zmq_reads_session_messages_with_identities():
    session = Session(key=KEY)
    msg = session.msg("execute_reply", content={"status": "ok", "t": UNICODE_TEXT})
    frames = [b"id-1", b"id-2", *session.serialize(msg), b"buffer"]
    parts = protocol.from_zmq(KEY, frames)
    assert parts == frames[4:]
    assert protocol.parts_to_msg(parts)["content"]["t"] == UNICODE_TEXT
    assert protocol.parts_to_msg(parts)["buffers"] == [b"buffer"]


def test_from_zmq_round_trips_to_zmq():
    parts = make_parts(buffers=(b"x",))
    assert protocol.from_zmq(KEY, protocol.to_zmq(KEY, parts)) == parts
    views = [memoryview(f) for f in protocol.to_zmq(KEY, parts)]
    assert [bytes(p) for p in protocol.from_zmq(KEY, views)] == parts


def test_from_zmq_without_key_does_not_check_signatures():
    parts = make_parts()
    assert protocol.from_zmq(b"", [protocol.DELIM, b"anything", *parts]) == parts
    assert protocol.from_zmq(b"", protocol.to_zmq(b"", parts)) == parts


@pytest.mark.parametrize(
    ("tamper", "match"),
    [
        (lambda f: f[1:], "no <IDS|MSG> delimiter"),
        (lambda f: [], "no <IDS|MSG> delimiter"),
        (lambda f: f[:5], "has 3 parts"),
        (lambda f: f[:1], "has 0 parts"),
        (lambda f: [f[0], b"", *f[2:]], "unsigned"),
        (lambda f: [f[0], f[1].upper(), *f[2:]], "invalid signature"),
        (lambda f: [f[0], f[1], f[2], f[3], f[4], b"{}"], "invalid signature"),
        (lambda f: [f[0], f[1][:-1], *f[2:]], "invalid signature"),
    ],
)
def test_from_zmq_rejects_bad_messages(tamper, match):
    frames = protocol.to_zmq(KEY, make_parts(content={"code": "x = 1"}))
    with pytest.raises(FrameError, match=match):
        protocol.from_zmq(KEY, tamper(frames))


def test_from_zmq_rejects_a_message_signed_with_another_key():
    frames = Session(key=b"other").serialize(Session(key=b"other").msg("status"))
    with pytest.raises(FrameError, match="invalid signature"):
        protocol.from_zmq(KEY, frames)


# --- the bridge's two directions -----------------------------------------------


def test_choose_subprotocol():
    assert protocol.choose_subprotocol([protocol.V1_SUBPROTOCOL]) == protocol.V1
    assert (
        protocol.choose_subprotocol(["other", protocol.V1_SUBPROTOCOL])
        == protocol.V1_SUBPROTOCOL
    )
    assert protocol.choose_subprotocol([]) is None
    assert protocol.choose_subprotocol(["v2.kernel.websocket.jupyter.org"]) is None


@pytest.mark.parametrize("v1", [True, False])
@pytest.mark.parametrize("buffers", [(), (b"\x00", b"\x01\x02")])
def test_to_and_from_websocket_round_trip(v1, buffers):
    parts = make_parts("comm_msg", content={"t": UNICODE_TEXT}, buffers=buffers)
    frame = protocol.to_websocket("iopub", parts, v1=v1)
    assert isinstance(frame, bytes) == (v1 or bool(buffers))
    assert protocol.from_websocket(frame, v1=v1) == ("iopub", parts)


def test_from_websocket_refuses_text_in_v1():
    with pytest.raises(FrameError, match="binary"):
        protocol.from_websocket('{"header": {}}', v1=True)


@pytest.mark.parametrize(
    ("length", "binary", "expected"),
    [
        # RFC 6455 5.2: FIN and the opcode, then the length in 7 bits, or 126
        # and 16 bits, or 127 and 64 bits, network order; no mask from a server.
        (0, True, b"\x82\x00"),
        (125, True, b"\x82\x7d"),
        (126, True, b"\x82\x7e\x00\x7e"),
        (65535, False, b"\x81\x7e\xff\xff"),
        (65536, True, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (50_000_000, False, b"\x81\x7f" + (50_000_000).to_bytes(8, "big")),
    ],
)
def test_websocket_header(length, binary, expected):
    assert protocol.websocket_header(length, binary=binary) == expected


def test_v1_pieces_join_to_the_v1_frame():
    parts = [b'{"msg_type":"x"}', b"{}", b"{}", b'{"a":1}', b"\x00\x01"]
    pieces = protocol.v1_pieces("iopub", parts)
    assert b"".join(pieces) == protocol.build_v1("iopub", parts)
    assert protocol.parse_v1(b"".join(pieces)) == ("iopub", parts)


def test_what_a_partial_send_leaves():
    from kernels.consumers import _unsent

    pieces = [b"ab", b"cde", b"", b"fg"]
    assert b"".join(_unsent(pieces, 0)) == b"abcdefg"
    assert _unsent(pieces, 1) == [b"b", b"cde", b"", b"fg"]
    assert _unsent(pieces, 2) == [b"cde", b"", b"fg"]
    assert _unsent(pieces, 4) == [b"e", b"", b"fg"]
    assert _unsent(pieces, 5) == [b"fg"]
    assert _unsent(pieces, 7) == []
