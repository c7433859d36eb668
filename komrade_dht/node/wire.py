"""The wire format of one datagram, and the checks every argument and reply goes through. Pure, no I/O.

A request is ``0x00 | msg id (20) | msgpack([method, sender id or nil, args, padding])`` and a reply is
``0x01 | msg id (20) | msgpack([status, value])`` with status 0 (ok) or 1 (error, value = a short code).
The sender id is nil for read-only nodes (BEP 43): they may ask, but nobody adds them to a routing table.
Requests whose replies can be large carry padding, because a node never answers with more than three times
the bytes it was sent (the anti-amplification rule QUIC applies before address validation).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

from .. import codec
from ..errors import CodecError

REQUEST, RESPONSE = b"\x00", b"\x01"
ID_LEN = 20
OK, ERROR = 0, 1
#: Most envelope heads one ``get_heads`` request may ask for.
MAX_HEADS = 16
#: A reply may be at most this many times the size of the request it answers.
AMPLIFICATION = 3
MAX_DATAGRAM = codec.MAX_DATAGRAM


class BadMessage(Exception):
    """A datagram or reply that fails validation; ``reason`` is a short code for counters and logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Request:
    msg_id: bytes
    method: str
    sender_id: bytes | None
    args: list[Any]
    size: int


@dataclass(frozen=True)
class Response:
    msg_id: bytes
    ok: bool
    value: Any


def is_id(value: Any) -> bool:
    """A node id, envelope id or slot id: exactly 20 bytes."""
    return isinstance(value, bytes) and len(value) == ID_LEN


def is_uint(value: Any, maximum: int = 2**63 - 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def is_contact(value: Any) -> bool:
    """``[node id, ip literal, port]`` as find_node replies carry them."""
    if not (isinstance(value, list) and len(value) == 3 and is_id(value[0])):
        return False
    if not (isinstance(value[1], str) and len(value[1]) <= 45 and is_uint(value[2], 65535) and value[2] > 0):
        return False
    return _is_ip(value[1])


@functools.lru_cache(maxsize=4096)
def _is_ip(text: str) -> bool:
    """Whether ``text`` is an IP literal (cached: find_node replies repeat the same few hundred addresses)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def encode_request(msg_id: bytes, method: str, sender_id: bytes | None, args: list[Any], pad_to: int = 0) -> bytes:
    """Build a request datagram, padded to ``pad_to`` bytes when that is larger than it is."""
    bare = REQUEST + msg_id + codec.pack([method, sender_id, args, b""])
    missing = pad_to - len(bare)
    if missing > 0:
        # a bin8 header grows by one byte past 255 bytes of padding: 256 missing can only be met one byte over
        pad = bytes(missing if missing <= 256 else missing - 1)
        bare = REQUEST + msg_id + codec.pack([method, sender_id, args, pad])
    if len(bare) > MAX_DATAGRAM:
        raise ValueError(f"request {method} of {len(bare)} bytes exceeds the {MAX_DATAGRAM}-byte datagram limit")
    return bare


def encode_response(msg_id: bytes, ok: bool, value: Any) -> bytes:
    return RESPONSE + msg_id + codec.pack([OK if ok else ERROR, value])


def decode(datagram: bytes) -> Request | Response:
    """Parse one datagram, or raise BadMessage with a reason code. Never raises anything else."""
    if len(datagram) > MAX_DATAGRAM:
        raise BadMessage("oversized")
    if len(datagram) < 1 + ID_LEN + 1:
        raise BadMessage("truncated")
    kind, msg_id, body = datagram[:1], datagram[1 : 1 + ID_LEN], datagram[1 + ID_LEN :]
    try:
        obj = codec.unpack(body)
    except CodecError:
        raise BadMessage("malformed") from None
    if kind == REQUEST:
        if not (isinstance(obj, list) and len(obj) == 4):
            raise BadMessage("bad_request_shape")
        method, sender_id, args, pad = obj
        if not (isinstance(method, str) and len(method) <= 32 and isinstance(args, list) and isinstance(pad, bytes)):
            raise BadMessage("bad_request_shape")
        if sender_id is not None and not is_id(sender_id):
            raise BadMessage("bad_node_id")
        return Request(msg_id, method, sender_id, args, len(datagram))
    if kind == RESPONSE:
        if not (isinstance(obj, list) and len(obj) == 2 and obj[0] in (OK, ERROR)):
            raise BadMessage("bad_response_shape")
        if obj[0] == ERROR and not (isinstance(obj[1], str) and len(obj[1]) <= 64):
            raise BadMessage("bad_response_shape")
        return Response(msg_id, obj[0] == OK, obj[1])
    raise BadMessage("unknown_kind")


#: Argument validators per method: the request is refused before any work if one does not hold.
ARGS: dict[str, list[Callable[[Any], bool]]] = {
    "ping": [],
    "find_node": [is_id],
    "find_value": [is_id],
    "get_blob": [is_id],
    "store": [is_id, lambda v: isinstance(v, bytes)],
    "append": [is_id, lambda v: isinstance(v, bytes)],
    "slot_page": [is_id, is_uint, lambda v: is_uint(v, 256)],
    "burn": [is_id, lambda v: isinstance(v, bytes) and len(v) == 16],
    "gossip": [is_id, lambda v: isinstance(v, bytes), lambda v: is_uint(v, 8)],
    "flood": [is_id, lambda v: isinstance(v, bytes), lambda v: is_uint(v, 8)],
    "stem": [is_id, lambda v: isinstance(v, bytes), lambda v: is_uint(v, 8)],
    "slot_digest": [is_id],
    "put_record": [is_id, lambda v: isinstance(v, bytes) and len(v) <= 900],
    "get_record": [is_id],
    "get_heads": [lambda v: isinstance(v, list) and 1 <= len(v) <= MAX_HEADS and all(is_id(i) for i in v)],
}


#: Requests that get no reply, not even an error: a flood's copies (``flood``, the same arguments as ``gossip``, which
#: older nodes still send and get answered). Losing one costs nothing the flood's redundancy and anti-entropy do not
#: cover, and answering each would double the flood's datagrams; a refusal is not sent back either (no reflection).
ONE_WAY = frozenset({"flood"})


def check_args(method: str, args: list[Any]) -> None:
    """Raise BadMessage unless ``method`` is known and ``args`` match its validators."""
    checks = ARGS.get(method)
    if checks is None:
        raise BadMessage("unknown_method")
    if len(args) != len(checks) or not all(check(arg) for check, arg in zip(checks, args)):
        raise BadMessage("bad_args")
