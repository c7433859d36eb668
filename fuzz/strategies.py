"""Hypothesis strategies for hostile datagrams: well-framed, malformed, truncated, oversized, deep, type-confused."""

from __future__ import annotations

import msgpack
from hypothesis import strategies as st

from komrade_dht.node import wire

METHODS = sorted(wire.ARGS) + ["", "rpc_ping", "__init__", "x" * 40]
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(allow_nan=True),
    st.binary(max_size=64), st.text(max_size=32), st.binary(min_size=20, max_size=20),
)
value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


framed_request = st.builds(
    lambda msg_id, method, sender, args, pad: wire.REQUEST + msg_id + _pack([method, sender, args, pad]),
    st.binary(min_size=20, max_size=20),
    st.sampled_from(METHODS) | st.text(max_size=8),
    st.none() | st.binary(max_size=24),
    st.lists(value, max_size=5),
    st.binary(max_size=64),
)
framed_response = st.builds(
    lambda msg_id, status, val: wire.RESPONSE + msg_id + _pack([status, val]),
    st.binary(min_size=20, max_size=20), st.integers(-1, 3), value,
)
deep = st.integers(min_value=9, max_value=600).map(lambda n: wire.REQUEST + bytes(20) + b"\x91" * n + b"\xc0")
oversized = st.integers(min_value=1233, max_value=4000).map(lambda n: wire.REQUEST + bytes(n))
ext = st.builds(lambda code, data: wire.REQUEST + bytes(20) + _pack(msgpack.ExtType(code, data)),
                st.integers(0, 127), st.binary(max_size=16))
garbage = st.binary(max_size=1300)


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    data = draw(framed_request)
    return data[: draw(st.integers(0, max(0, len(data) - 1)))]


datagrams = st.one_of(framed_request, framed_response, deep, oversized, ext, garbage, truncated())
