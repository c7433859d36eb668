"""The one place where bytes from outside become Python objects: the C msgpack, with explicit limits.

Every datagram, reply and stored structure goes through :func:`unpack`. Limits keep a hostile input from
costing memory or time: no string, binary, array or map may be larger than the datagram that carried it,
nesting is bounded, ext types and non-string map keys are refused, and trailing bytes are an error.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import CodecError

#: Every datagram we send or accept stays at or under this many bytes (the IPv6-safe size of DNS flag day 2020).
MAX_DATAGRAM = 1232
#: Deepest nesting we accept. Our messages need 4; a little headroom, no more.
MAX_DEPTH = 8


def pack(obj: Any) -> bytes:
    """Serialize with msgpack (bin type for bytes, str for text)."""
    return msgpack.packb(obj, use_bin_type=True)


def _depth(obj: Any, limit: int) -> int:
    """Depth of nested lists/dicts, stopping early past ``limit``; CodecError on a map key that is not a str."""
    if limit < 0:
        return 1
    if isinstance(obj, list):
        return 1 + max((_depth(x, limit - 1) for x in obj), default=0)
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise CodecError("map keys must be strings")
        return 1 + max((_depth(v, limit - 1) for v in obj.values()), default=0)
    return 0


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError("ext types are not accepted")


def unpack(data: bytes, *, max_len: int = MAX_DATAGRAM, max_depth: int = MAX_DEPTH) -> Any:
    """Decode one msgpack object from ``data`` or raise :class:`CodecError`.

    ``max_len`` bounds the input and every string/binary/array/map inside it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("expected bytes")
    if len(data) > max_len:
        raise CodecError(f"input of {len(data)} bytes exceeds the limit of {max_len}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=max_len,
            max_bin_len=max_len,
            max_array_len=max_len,
            max_map_len=max_len // 2,
            max_ext_len=0,
            ext_hook=_refuse_ext,
        )
    except msgpack.ExtraData:
        raise CodecError("trailing bytes after the msgpack object") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError, UnicodeDecodeError) as exc:
        raise CodecError(f"malformed msgpack: {type(exc).__name__}") from None
    if _depth(obj, max_depth) > max_depth:
        raise CodecError(f"nesting deeper than {max_depth}")
    return obj
