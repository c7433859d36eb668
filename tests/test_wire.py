"""Unit tests of the wire format (komrade_dht.node.wire) and of the one msgpack decoder (komrade_dht.codec).

rpcudp decodes datagrams with pure-Python umsgpack, without any size, depth or type limit, and lets whatever
it raises escape. These tests pin down what replaces it: C msgpack with explicit limits, a shape check of
every request and reply, and a single exception type (``wire.BadMessage`` / ``CodecError``) for bad input.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from komrade_dht import codec
from komrade_dht.errors import CodecError
from komrade_dht.node import protocol as proto
from komrade_dht.node import wire

MID = bytes(range(20))
NODE = bytes(range(100, 120))


def nested(depth: int) -> Any:
    """``depth`` levels of nested lists around nil."""
    obj: Any = None
    for _ in range(depth):
        obj = [obj]
    return obj


def nested_map(depth: int) -> Any:
    obj: Any = None
    for _ in range(depth):
        obj = {"k": obj}
    return obj


# ---------------------------------------------------------------------------------------------------- codec


def test_codec_roundtrip() -> None:
    obj = ["text", b"\x00\xff", 1, -1, 2**63 - 1, 1.5, None, True, {"k": [1, 2]}]
    assert codec.unpack(codec.pack(obj)) == obj


def test_codec_keeps_bytes_and_str_apart() -> None:
    """umsgpack/raw msgpack conflate them; we pack bytes as bin and text as str, and decode them apart."""
    assert codec.unpack(codec.pack([b"abc", "abc"])) == [b"abc", "abc"]
    assert isinstance(codec.unpack(codec.pack("abc")), str)


@pytest.mark.parametrize(
    "data",
    [
        b"",  # nothing at all
        b"\xc1",  # the one never-used byte
        codec.pack([1, 2, 3])[:-1],  # truncated
        codec.pack([1, 2, 3]) + b"\x00",  # trailing bytes
        codec.pack(1) * 2,  # two objects
        b"\xa2\xff\xfe",  # invalid UTF-8 in a str
        b"\xdd\xff\xff\xff\xff",  # array claiming 4G elements
        b"\xdf\xff\xff\xff\xff",  # map claiming 4G pairs
        b"\xdb\xff\xff\xff\xff",  # str claiming 4 GB
        b"\xc6\xff\xff\xff\xff",  # bin claiming 4 GB
        codec.pack({1: "int key"}),
        codec.pack({None: "nil key"}),
        msgpack.packb([msgpack.ExtType(1, b"x")]),  # fixext1
        msgpack.packb(msgpack.ExtType(42, b"abc")),  # ext8
        msgpack.packb(msgpack.ExtType(7, b"y" * 300)),  # ext16
        msgpack.packb(msgpack.Timestamp(1, 2), datetime=False),  # ext -1
        b"\x91" * 2000 + b"\xc0",  # past msgpack's own stack limit: no RecursionError
    ],
    ids=lambda data: data[:12].hex() or "empty",
)
def test_codec_refuses_malformed_input(data: bytes) -> None:
    with pytest.raises(CodecError):
        codec.unpack(data, max_len=10_000)


def test_codec_depth_limit() -> None:
    assert codec.unpack(codec.pack(nested(codec.MAX_DEPTH))) == nested(codec.MAX_DEPTH)
    for obj in (nested(codec.MAX_DEPTH + 1), nested_map(codec.MAX_DEPTH + 1), nested(200)):
        with pytest.raises(CodecError, match="nesting"):
            codec.unpack(codec.pack(obj))
    with pytest.raises(CodecError):
        codec.unpack(codec.pack(nested(3)), max_depth=2)
    # a deep structure inside a wide one is found too
    with pytest.raises(CodecError):
        codec.unpack(codec.pack([1, 2, {"a": [3, nested(codec.MAX_DEPTH)]}]))


def test_codec_length_limits() -> None:
    assert codec.unpack(codec.pack(b"x" * 1500), max_len=2000) == b"x" * 1500
    with pytest.raises(CodecError):
        codec.unpack(codec.pack(b"x" * 1300))  # input over the default 1232
    with pytest.raises(CodecError):
        codec.unpack(codec.pack("x" * 100), max_len=50)
    with pytest.raises(CodecError):
        codec.unpack(codec.pack([None] * 100), max_len=50)
    # a container may not claim more elements than max_len, even with the input itself small enough
    with pytest.raises(CodecError):
        codec.unpack(b"\xdc\x00\x64" + b"\xc0" * 100, max_len=60)


def test_codec_input_types() -> None:
    packed = codec.pack([1, b"x"])
    assert codec.unpack(bytearray(packed)) == [1, b"x"]
    assert codec.unpack(memoryview(packed)) == [1, b"x"]
    for bad in ("text", None, 12, [1]):
        with pytest.raises(CodecError):
            codec.unpack(bad)  # type: ignore[arg-type]


def test_codec_refuses_zero_length_ext() -> None:
    """``max_ext_len=0`` alone still admits an ext of length 0 (ext8 0xc7 0x00 <type>) as ExtType(code, b"")."""
    for data in (b"\xc7\x00\x05", b"\x91\xc7\x00\x05", b"\xc7\x00\xff"):
        with pytest.raises(CodecError):
            codec.unpack(data)


def test_codec_refuses_bytes_map_keys() -> None:
    """``strict_map_key=True`` admits str *and bytes* keys; the module promises str keys only, at any depth."""
    for obj in ({b"k": 1}, [{"a": {b"k": 1}}], {"a": 1, b"b": 2}):
        with pytest.raises(CodecError):
            codec.unpack(codec.pack(obj))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_codec_unpack_raises_only_codec_error(data: bytes) -> None:
    try:
        codec.unpack(data)
    except CodecError:
        pass


# --------------------------------------------------------------------------------------------- wire encode


def test_request_roundtrip() -> None:
    for sender in (None, NODE):
        data = wire.encode_request(MID, "find_node", sender, [NODE])
        msg = wire.decode(data)
        assert msg == wire.Request(MID, "find_node", sender, [NODE], len(data))
        assert data[:1] == wire.REQUEST and data[1:21] == MID


def test_response_roundtrip() -> None:
    for ok, value in ((True, [[NODE, "127.0.0.1", 9475]]), (True, None), (True, {"value": b"x"}), (False, "quota")):
        msg = wire.decode(wire.encode_response(MID, ok, value))
        assert msg == wire.Response(MID, ok, value)


@pytest.mark.parametrize("method", sorted(proto.PAD_TO))
def test_padding_reaches_pad_to_exactly(method: str) -> None:
    """Our requests are padded to PAD_TO bytes, the size the 3x reply budget of the peer is computed from."""
    args: list[Any] = [NODE] if method != "slot_page" else [NODE, 2**40, 256]
    for sender in (None, NODE):
        data = wire.encode_request(MID, method, sender, args, proto.PAD_TO[method])
        assert len(data) == proto.PAD_TO[method]
        assert wire.decode(data).args == args  # type: ignore[union-attr]


def test_padding_never_shrinks_and_never_overshoots() -> None:
    bare = len(wire.encode_request(MID, "ping", None, []))
    assert len(wire.encode_request(MID, "ping", None, [], 0)) == bare
    assert len(wire.encode_request(MID, "ping", None, [], bare - 5)) == bare
    for pad_to in list(range(bare, bare + 300)) + list(range(bare + 258, wire.MAX_DATAGRAM + 1, 37)):
        if pad_to - bare == 256:
            continue  # see test_padding_with_exactly_256_bytes_missing
        data = wire.encode_request(MID, "ping", None, [], pad_to)
        assert len(data) == pad_to, pad_to
        assert wire.decode(data).size == pad_to  # type: ignore[union-attr]


def test_padding_with_exactly_256_bytes_missing() -> None:
    """256 missing bytes cannot be met exactly (255 bytes of padding fit bin8, 256 need bin16's extra header
    byte): the request must come out one byte over, never under (the peer's 3x budget is computed from it)."""
    bare = len(wire.encode_request(MID, "ping", None, []))
    assert len(wire.encode_request(MID, "ping", None, [], bare + 256)) == bare + 257


def test_encode_request_refuses_oversized_datagrams() -> None:
    with pytest.raises(ValueError):
        wire.encode_request(MID, "store", NODE, [NODE, b"x" * 1300])
    with pytest.raises(ValueError):
        wire.encode_request(MID, "ping", None, [], wire.MAX_DATAGRAM + 1)
    assert len(wire.encode_request(MID, "ping", None, [], wire.MAX_DATAGRAM)) == wire.MAX_DATAGRAM


# --------------------------------------------------------------------------------------------- wire decode


def raw_request(body: Any) -> bytes:
    return wire.REQUEST + MID + codec.pack(body)


def raw_response(body: Any) -> bytes:
    return wire.RESPONSE + MID + codec.pack(body)


DECODE_CASES: list[tuple[bytes, str]] = [
    (b"", "truncated"),
    (b"\x00", "truncated"),
    (wire.REQUEST + MID, "truncated"),
    (b"\x00" * (wire.MAX_DATAGRAM + 1), "oversized"),
    (raw_request(["ping", None, [], bytes(1300)]), "oversized"),
    (wire.REQUEST + MID + b"\xc1", "malformed"),
    (raw_request(["ping", None, [], b""]) + b"\x00", "malformed"),
    (raw_request(["ping", None, [], b""])[:-1], "malformed"),
    (wire.REQUEST + MID + codec.pack(nested(20)), "malformed"),
    (wire.REQUEST + MID + msgpack.packb(["ping", None, [msgpack.ExtType(3, b"x")], b""]), "malformed"),
    (wire.REQUEST + MID + codec.pack({1: 1}), "malformed"),
    (raw_request(None), "bad_request_shape"),
    (raw_request("ping"), "bad_request_shape"),
    (raw_request(["ping", None, []]), "bad_request_shape"),
    (raw_request(["ping", None, [], b"", b""]), "bad_request_shape"),
    (raw_request([b"ping", None, [], b""]), "bad_request_shape"),
    (raw_request([1, None, [], b""]), "bad_request_shape"),
    (raw_request(["p" * 33, None, [], b""]), "bad_request_shape"),
    (raw_request(["ping", None, {}, b""]), "bad_request_shape"),
    (raw_request(["ping", None, "args", b""]), "bad_request_shape"),
    (raw_request(["ping", None, [], "pad"]), "bad_request_shape"),
    (raw_request(["ping", None, [], None]), "bad_request_shape"),
    (raw_request(["ping", b"x" * 19, [], b""]), "bad_node_id"),
    (raw_request(["ping", b"x" * 21, [], b""]), "bad_node_id"),
    (raw_request(["ping", b"", [], b""]), "bad_node_id"),
    (raw_request(["ping", "x" * 20, [], b""]), "bad_node_id"),
    (raw_request(["ping", 0, [], b""]), "bad_node_id"),
    (raw_request(["ping", False, [], b""]), "bad_node_id"),
    (raw_response(None), "bad_response_shape"),
    (raw_response([0]), "bad_response_shape"),
    (raw_response([0, 1, 2]), "bad_response_shape"),
    (raw_response([2, None]), "bad_response_shape"),
    (raw_response(["0", None]), "bad_response_shape"),
    (raw_response([1, None]), "bad_response_shape"),  # an error needs a short code
    (raw_response([1, 42]), "bad_response_shape"),
    (raw_response([1, "x" * 65]), "bad_response_shape"),
    (b"\x02" + MID + codec.pack([0, None]), "unknown_kind"),
    (b"\xff" + MID + codec.pack([0, None]), "unknown_kind"),
]


@pytest.mark.parametrize("datagram, reason", DECODE_CASES, ids=[f"{r}-{i}" for i, (_, r) in enumerate(DECODE_CASES)])
def test_decode_refuses_with_a_reason(datagram: bytes, reason: str) -> None:
    with pytest.raises(wire.BadMessage) as info:
        wire.decode(datagram)
    assert info.value.reason == reason


def test_decode_accepts_largest_datagram_and_reports_size() -> None:
    data = wire.encode_request(MID, "ping", NODE, [], wire.MAX_DATAGRAM)
    msg = wire.decode(data)
    assert isinstance(msg, wire.Request) and msg.size == wire.MAX_DATAGRAM
    assert wire.decode(bytearray(data)) == msg


def test_true_and_false_are_not_status_codes() -> None:
    """True == 1 in Python; msgpack keeps bools apart but the status check must still hold for 0/1 only."""
    msg = wire.decode(raw_response([0, "v"]))
    assert isinstance(msg, wire.Response) and msg.ok
    msg = wire.decode(raw_response([1, "code"]))
    assert isinstance(msg, wire.Response) and not msg.ok and msg.value == "code"


# ------------------------------------------------------------------------------------------ argument checks


VALID_ARGS: dict[str, list[Any]] = {
    "ping": [],
    "find_node": [NODE],
    "find_value": [NODE],
    "get_blob": [NODE],
    "store": [NODE, b"value"],
    "append": [NODE, b"value"],
    "slot_page": [NODE, 0, 256],
    "burn": [NODE, bytes(16)],
    "gossip": [NODE, b"value", 3],
    "flood": [NODE, b"value", 3],
    "slot_digest": [NODE],
}

INVALID_ARGS: list[tuple[str, list[Any]]] = [
    ("ping", [None]),
    ("find_node", []),
    ("find_node", [NODE, NODE]),
    ("find_node", [NODE[:19]]),
    ("find_node", [NODE + b"x"]),
    ("find_node", [NODE.hex()[:20]]),
    ("find_value", [None]),
    ("get_blob", [1]),
    ("store", [NODE]),
    ("store", [NODE, "value"]),
    ("store", [NODE[:5], b"value"]),
    ("append", [NODE, None]),
    ("append", [b"", b"value"]),
    ("slot_page", [NODE, 0]),
    ("slot_page", [NODE, -1, 10]),
    ("slot_page", [NODE, 0, 257]),
    ("slot_page", [NODE, 0, -1]),
    ("slot_page", [NODE, True, 10]),
    ("slot_page", [NODE, 0, False]),
    ("slot_page", [NODE, 1.5, 10]),
    ("slot_page", [NODE, 2**63, 10]),
    ("slot_page", [NODE, "0", 10]),
]


def test_check_args_accepts_valid_arguments() -> None:
    for method in wire.ARGS:
        if method in VALID_ARGS:
            wire.check_args(method, VALID_ARGS[method])
    wire.check_args("slot_page", [NODE, 2**63 - 1, 1])


@pytest.mark.parametrize("method", sorted(wire.ARGS))
def test_check_args_refuses_wrong_arity_and_types_for_every_method(method: str) -> None:
    """Every RPC validates every argument: one argument too many, one too few, or all of the wrong type."""
    arity = len(wire.ARGS[method])
    for args in ([None] * (arity + 1), [None] * (arity - 1) if arity else [1], [object()] * arity if arity else [0]):
        with pytest.raises(wire.BadMessage) as info:
            wire.check_args(method, args)
        assert info.value.reason == "bad_args"


@pytest.mark.parametrize("method, args", INVALID_ARGS)
def test_check_args_refuses_bad_arguments(method: str, args: list[Any]) -> None:
    with pytest.raises(wire.BadMessage) as info:
        wire.check_args(method, args)
    assert info.value.reason == "bad_args"


@pytest.mark.parametrize("method", ["stun", "set", "rpc_ping", "__init__", "_handle", "PING", "", "store "])
def test_check_args_refuses_unknown_methods(method: str) -> None:
    """rpcudp dispatches any ``rpc_<name>`` attribute; we only the methods listed in wire.ARGS."""
    with pytest.raises(wire.BadMessage) as info:
        wire.check_args(method, [])
    assert info.value.reason == "unknown_method"


@pytest.mark.parametrize(
    "contact, ok",
    [
        ([NODE, "127.0.0.1", 9475], True),
        ([NODE, "2001:db8::1", 1], True),
        ([NODE, "::ffff:10.0.0.1", 65535], True),
        ((NODE, "127.0.0.1", 9475), False),  # a tuple is not what msgpack gives
        ([NODE[:19], "127.0.0.1", 9475], False),
        ([NODE + b"x", "127.0.0.1", 9475], False),
        ([NODE.hex(), "127.0.0.1", 9475], False),
        ([NODE, "localhost", 9475], False),
        ([NODE, "256.0.0.1", 9475], False),
        ([NODE, "1" * 46, 9475], False),
        ([NODE, b"127.0.0.1", 9475], False),
        ([NODE, 2130706433, 9475], False),  # ipaddress would accept the int
        ([NODE, "127.0.0.1", 0], False),
        ([NODE, "127.0.0.1", 65536], False),
        ([NODE, "127.0.0.1", -1], False),
        ([NODE, "127.0.0.1", True], False),
        ([NODE, "127.0.0.1", "9475"], False),
        ([NODE, "127.0.0.1"], False),
        ([NODE, "127.0.0.1", 9475, 0], False),
        (None, False),
        ({"id": NODE}, False),
    ],
)
def test_is_contact(contact: Any, ok: bool) -> None:
    assert wire.is_contact(contact) is ok


def test_is_id_and_is_uint() -> None:
    assert wire.is_id(NODE) and not wire.is_id(bytearray(NODE)) and not wire.is_id(NODE[:19])
    assert wire.is_uint(0) and wire.is_uint(2**63 - 1) and not wire.is_uint(2**63)
    assert not wire.is_uint(True) and not wire.is_uint(-1) and not wire.is_uint(1.0)
    assert wire.is_uint(256, 256) and not wire.is_uint(257, 256)


# -------------------------------------------------------------------------------------------- properties


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1500))
def test_decode_arbitrary_bytes_raises_only_bad_message(data: bytes) -> None:
    try:
        msg = wire.decode(data)
    except wire.BadMessage as exc:
        assert isinstance(exc.reason, str) and exc.reason
    else:
        assert isinstance(msg, (wire.Request, wire.Response))


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from([wire.REQUEST, wire.RESPONSE, b"\x02"]),
    msg_id=st.binary(min_size=20, max_size=20),
    body=st.one_of(
        msgpack_values,
        st.tuples(
            st.sampled_from(sorted(wire.ARGS) + ["stun", ""]),
            st.one_of(st.none(), st.binary(max_size=24), st.text(max_size=4)),
            st.lists(msgpack_values, max_size=4),
            st.binary(max_size=10),
        ).map(list),
        st.tuples(st.integers(-1, 3), msgpack_values).map(list),
    ),
    tail=st.binary(max_size=3),
)
def test_decode_structured_input_raises_only_bad_message(kind: bytes, msg_id: bytes, body: Any, tail: bytes) -> None:
    """Near-valid datagrams (right framing, well-formed msgpack of any shape) reach the shape checks; they too
    end in a Request/Response or BadMessage, and a decoded Request's args then pass or fail check_args cleanly."""
    data = kind + msg_id + msgpack.packb(body, use_bin_type=True) + tail
    try:
        msg = wire.decode(data)
    except wire.BadMessage:
        return
    assert isinstance(msg, (wire.Request, wire.Response))
    if isinstance(msg, wire.Request):
        try:
            wire.check_args(msg.method, msg.args)
        except wire.BadMessage as exc:
            assert exc.reason in ("unknown_method", "bad_args")


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(sorted(wire.ARGS)),
    sender=st.one_of(st.none(), st.binary(min_size=20, max_size=20)),
    args=st.lists(st.one_of(st.binary(max_size=300), st.integers(0, 2**63 - 1), st.text(max_size=30)), max_size=3),
    pad_to=st.integers(0, wire.MAX_DATAGRAM - 1),
)
def test_encode_decode_roundtrip(method: str, sender: bytes | None, args: list[Any], pad_to: int) -> None:
    msg_id = os.urandom(20)
    data = wire.encode_request(msg_id, method, sender, args, pad_to)
    assert len(data) <= wire.MAX_DATAGRAM
    assert len(data) >= pad_to
    msg = wire.decode(data)
    assert msg == wire.Request(msg_id, method, sender, args, len(data))
