"""Regression tests of the node's hardening against kademlia 2.2.3 / rpcudp 5.0.1 weaknesses (DESIGN.md,
"Node and transport"; the list of overrides is in komrade_dht/node/protocol.py's docstring).

Every test runs real UDP sockets on 127.0.0.1 with ports picked by the OS. "Attackers" and scripted peers are
plain asyncio datagram endpoints (:class:`Peer`) that speak the wire format by hand, so they can send what an
honest node never would. Nothing on the network is mocked. Each test's docstring names the library behaviour
it guards against: with our override removed, the test fails.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import pickle
import socket
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgpack
import pytest
from kademlia.node import Node
from kademlia.utils import digest

from komrade_dht import codec
from komrade_dht import envelope as env
from komrade_dht import records
from komrade_dht.identity import Identity
from komrade_dht.errors import NetworkError
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.node import protocol as proto
from komrade_dht.node import wire
from komrade_dht.storage import Store

LOCAL = "127.0.0.1"
#: Short timeouts: every test that waits for a silent peer stays well under a second per wait.
FAST = NodeConfig(wait_timeout=0.4, id_bits=0)  # ids placed on purpose: no id puzzle
TEST_DEADLINE = 20.0


# ----------------------------------------------------------------------------------------------- helpers


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass (fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {getattr(predicate, '__name__', predicate)}")
        await asyncio.sleep(interval)


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an ``async def`` test in a fresh loop (pytest-asyncio is not used). The loop gets an exception handler
    that records every call; the test fails if anything reached it (an exception escaping a callback or task:
    what rpcudp does with a bad datagram)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        loop_errors: list[dict[str, Any]] = []

        async def main() -> None:
            asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
            try:
                await asyncio.wait_for(fn(*args, **kwargs), TEST_DEADLINE)
            finally:
                gc.collect()  # "Task exception was never retrieved" is reported when the task is collected
                await asyncio.sleep(0)

        asyncio.run(main())
        gc.collect()
        assert loop_errors == [], f"exceptions reached the event loop: {loop_errors}"

    return wrapper


def make_envelope(
    size: int = 256, ttl: int = 3600, version: int = env.VERSION, work: bool = True, slot: bytes = env.NO_SLOT
) -> bytes:
    """A structurally valid public envelope (what relays check: size class, version, kind, expiry), with the
    default proof of work unless ``work`` is False (for envelopes put straight into a store, or refused)."""
    head = struct.pack(">BBI16s8sB", version, env.KIND_PUBLIC, int(time.time()) + ttl, os.urandom(16), bytes(8), 0)
    data = head + os.urandom(size - len(head))
    return env.mint_pow(data, env.PowParams(), slot) if work else data


def contacts(node: KomradeNode) -> list[Node]:
    """Every contact in the node's routing table (replacement lists excluded)."""
    assert node.protocol is not None
    return [n for bucket in node.protocol.router.buckets for n in bucket.nodes.values()]


def xor_id(base: bytes, bit: int) -> bytes:
    """``base`` with bit ``bit`` (0 = least significant) flipped: at XOR distance exactly 2**bit from base."""
    return (int.from_bytes(base, "big") ^ (1 << bit)).to_bytes(20, "big")


class Peer(asyncio.DatagramProtocol):
    """A hand-driven UDP endpoint: records everything it receives and answers requests through ``handler``
    (``handler(request) -> (ok, value)`` or None to stay silent). By default it answers ping with its id."""

    def __init__(self, node_id: bytes | None = None, handler: Callable[[wire.Request], Any] | None = None) -> None:
        self.node_id = node_id or os.urandom(20)
        self.handler = handler if handler is not None else self.answer_ping
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.requests: list[tuple[wire.Request, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def answer_ping(self, msg: wire.Request) -> tuple[bool, Any] | None:
        return (True, self.node_id) if msg.method == "ping" else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))
        try:
            msg = wire.decode(data)
        except wire.BadMessage:
            return
        if isinstance(msg, wire.Request):
            self.requests.append((msg, addr))
            answer = self.handler(msg)
            if answer is not None:
                assert self.transport is not None
                self.transport.sendto(wire.encode_response(msg.msg_id, *answer), addr)

    @property
    def addr(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def reply_to(self, msg_id: bytes) -> bytes | None:
        for data, _ in self.received:
            if data[:1] == wire.RESPONSE and data[1:21] == msg_id:
                return data
        return None

    async def ask(self, addr: tuple[str, int], data: bytes, timeout: float = 3.0) -> bytes:
        """Send a raw request datagram and return the raw reply datagram (matched by msg id)."""
        self.send(data, addr)
        return await wait_for(lambda: self.reply_to(data[1:21]), timeout)

    async def request(
        self, addr: tuple[str, int], method: str, *args: Any, sender_id: bytes | None = None, pad_to: int = 0
    ) -> tuple[bytes, bytes, wire.Response]:
        """Send a well-formed request; returns (request bytes, reply bytes, decoded reply)."""
        data = wire.encode_request(os.urandom(20), method, sender_id, list(args), pad_to)
        reply = await self.ask(addr, data)
        decoded = wire.decode(reply)
        assert isinstance(decoded, wire.Response)
        return data, reply, decoded


class Net:
    """Nodes and peers of one test, all stopped at the end (``async with Net(tmp_path) as net``)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.nodes: list[KomradeNode] = []
        self.peers: list[Peer] = []
        self._count = 0

    async def node(
        self, *, store: bool = True, cls: type[KomradeNode] = KomradeNode, config: NodeConfig = FAST, **kw: Any
    ) -> KomradeNode:
        self._count += 1
        st = Store(self.tmp_path / f"node{self._count}.sqlite") if store else None
        node = cls(st, config=config, **kw)
        await node.listen(0, LOCAL)
        self.nodes.append(node)
        return node

    async def peer(self, **kw: Any) -> Peer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(lambda: Peer(**kw), local_addr=(LOCAL, 0))
        self.peers.append(peer)
        return peer

    async def stop(self, node: KomradeNode) -> None:
        self.nodes.remove(node)
        await node.stop_async()

    async def __aenter__(self) -> Net:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for node in list(self.nodes):
            await self.stop(node)
        for peer in self.peers:
            if peer.transport is not None:
                peer.transport.close()


async def introduce(peer: Peer, node: KomradeNode) -> None:
    """``peer`` pings ``node`` with its id and answers ``node``'s check ping, so ``node`` adds it to its table."""
    _, _, reply = await peer.request(node.address, "ping", sender_id=peer.node_id)
    assert reply.ok and reply.value == node.node.id
    await wait_for(lambda: any(n.id == peer.node_id for n in contacts(node)))


async def honest_ping(net: Net, node: KomradeNode) -> None:
    """An honest komrade node pings ``node`` and gets its id back."""
    other = await net.node()
    assert other.protocol is not None
    assert await other.protocol.call(node.address, "ping") == (True, node.node.id)


def req(method: Any, args: Any, *, sender: Any = None, pad: Any = b"", msg_id: bytes | None = None) -> bytes:
    """A request datagram built by hand, without the checks of wire.encode_request."""
    return wire.REQUEST + (msg_id or os.urandom(20)) + codec.pack([method, sender, args, pad])


# ---------------------------------------------------------------------------------------- bad datagrams


def bad_datagrams() -> list[tuple[bytes, str]]:
    """(datagram, the reason it must be dropped for)."""
    mid = os.urandom(20)
    deep = b"\x91" * 100 + b"\xc0"  # [[[[...nil...]]]] 100 levels
    deeper = b"\x91" * 1150 + b"\xc0"  # past msgpack's own stack limit, still under 1232 bytes
    ext = msgpack.packb(["ping", None, [msgpack.ExtType(5, b"abc")], b""], use_bin_type=True)
    timestamp = msgpack.packb(["ping", None, [], msgpack.Timestamp(1, 0)], datetime=False)
    empty_ext = msgpack.packb(["find_node", None, [msgpack.ExtType(5, b"")], b""], use_bin_type=True)
    valid = req("ping", [])
    return [
        (b"\x00" * 5, "truncated"),
        (wire.REQUEST + mid, "truncated"),
        (req("ping", [], pad=bytes(1300)), "oversized"),
        (os.urandom(5000), "oversized"),
        (wire.REQUEST + mid + b"\xc1\xc1\xc1", "malformed"),
        (wire.REQUEST + mid + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "malformed"),
        (valid[:-3], "malformed"),  # truncated msgpack
        (valid + b"\x00", "malformed"),  # trailing bytes
        (wire.REQUEST + mid + deep, "malformed"),
        (wire.REQUEST + mid + deeper, "malformed"),
        (wire.REQUEST + mid + ext, "malformed"),
        (wire.REQUEST + mid + timestamp, "malformed"),
        (wire.REQUEST + mid + codec.pack({1: 2}), "malformed"),  # non-string map key
        (wire.REQUEST + mid + b"\x94\xa2\xff\xfe\xc0\x90\xc4\x00", "malformed"),  # invalid UTF-8 method name
        (wire.REQUEST + mid + b"\xdd\xff\xff\xff\xff", "malformed"),  # array claiming 4G elements
        (wire.REQUEST + mid + b"\xdb\xff\xff\xff\xff", "malformed"),  # str claiming 4 GB
        (wire.REQUEST + mid + codec.pack(["ping", None, []]), "bad_request_shape"),
        (req(5, []), "bad_request_shape"),  # method not a string
        (req("ping", {"a": 1}), "bad_request_shape"),  # args not a list
        (req("ping", [], pad="pad"), "bad_request_shape"),
        (req("x" * 40, []), "bad_request_shape"),
        (req("find_node", ["not an id"]), "bad_args"),
        (req("find_node", [b"short"]), "bad_args"),
        (req("find_node", []), "bad_args"),
        (req("ping", [1]), "bad_args"),
        (req("store", [os.urandom(20), "not bytes"]), "bad_args"),
        (req("slot_page", [os.urandom(20), -1, 10]), "bad_args"),
        (req("slot_page", [os.urandom(20), 0, 10_000]), "bad_args"),
        (req("slot_page", [os.urandom(20), True, 10]), "bad_args"),
        (wire.REQUEST + mid + empty_ext, "malformed"),  # a zero-length ext type (max_ext_len=0 alone admits it)
        (req("stun", []), "unknown_method"),  # kademlia's rpc_stun: not part of our protocol
        (req("no_such_method", []), "unknown_method"),
        (req("__init__", []), "unknown_method"),
        (req("_drop", ["x", "y"]), "unknown_method"),
        (req("rpc_ping", []), "unknown_method"),
        (req("welcome_if_new", []), "unknown_method"),
        (wire.encode_response(os.urandom(20), True, b"x"), "unexpected_reply"),
        (wire.encode_response(os.urandom(20), False, "nope"), "unexpected_reply"),
        (wire.RESPONSE + mid + codec.pack([7, 1]), "bad_response_shape"),
        (wire.RESPONSE + mid + codec.pack([1, 12345]), "bad_response_shape"),
        (b"\x02" + mid + codec.pack([]), "unknown_kind"),
        (b"\xff" * 64, "malformed"),
    ]


@async_test
async def test_bad_datagrams_are_dropped_counted_and_harmless(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Guards against rpcudp's ``datagram_received``: it decodes with umsgpack without size/depth limits, in a
    task whose exceptions (MalformedMessage, umsgpack errors, TypeError from wrong args) escape into the event
    loop, logs a line (or a traceback) per bad datagram, dispatches any ``rpc_*`` name (``stun``) and trusts
    replies for any id. Here each one is dropped, counted by reason, never raised, never logged with a
    traceback, and the node keeps answering honest peers."""
    caplog.set_level(logging.DEBUG)
    async with Net(tmp_path) as net:
        node = await net.node()
        attacker = await net.peer()
        bad = bad_datagrams()
        for data, _ in bad:
            attacker.send(data, node.address)
        # asyncio's sendto silently skips empty datagrams: send the zero-length one from a plain socket
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind((LOCAL, 0))
            raw.sendto(b"", node.address)
        bad.append((b"", "truncated"))
        counters = node.protocol.counters
        await wait_for(lambda: counters["datagrams_in"] >= len(bad))
        expected = Counter(reason for _, reason in bad)
        assert counters["dropped"] == len(bad)
        for reason, count in expected.items():
            assert counters[f"dropped_{reason}"] == count, reason
        assert counters["handler_error"] == 0 and counters["task_error"] == 0
        # Requests refused for their method or arguments get an error code back, never a traceback;
        # everything else gets no answer at all.
        await wait_for(lambda: len(attacker.received) >= expected["bad_args"] + expected["unknown_method"])
        codes = Counter(wire.decode(d).value for d, _ in attacker.received)
        assert codes == Counter({"bad_args": expected["bad_args"], "unknown_method": expected["unknown_method"]})
        assert contacts(node) == []
        await honest_ping(net, node)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@async_test
async def test_bad_datagram_logging_is_rate_limited(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Guards against rpcudp logging every bad datagram (a warning per short datagram, an error with a
    traceback per undecodable one), which lets any peer fill the disk. 1000 bad datagrams of 3 kinds give
    at most one warning per drop reason."""
    caplog.set_level(logging.DEBUG)
    async with Net(tmp_path) as net:
        node = await net.node()
        attacker = await net.peer()
        kinds = [b"\x00" * 5, wire.REQUEST + os.urandom(20) + b"\xc1", bytes(1300)]
        counters = node.protocol.counters
        sent = 0
        for _batch in range(10):  # batches, so the kernel's receive buffer never overflows
            for i in range(100):
                attacker.send(kinds[i % 3], node.address)
            sent += 100
            await wait_for(lambda: counters["datagrams_in"] >= sent)
        assert counters["dropped"] == 1000
        reasons = [k for k, v in counters.items() if k.startswith("dropped_") and v]
        await honest_ping(net, node)
    # 3 kinds of garbage, plus "rate_limited" if the per-peer request limit kicked in first: one line per reason
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= len(reasons) <= 4, [r.getMessage() for r in warnings]


# ------------------------------------------------------------------------------- replies and addresses


@async_test
async def test_spoofed_reply_from_another_address_is_ignored(tmp_path: Path) -> None:
    """Guards against rpcudp's ``_accept_response`` matching replies by message id only: anyone who sees (or
    guesses) a msg id can answer in the real peer's place. A reply with the right id from another ip:port is
    dropped; the real peer's reply, arriving later, is the one accepted."""
    async with Net(tmp_path) as net:
        node = await net.node()
        real = await net.peer(handler=lambda msg: None)  # answers by hand, below
        spoofer = await net.peer()
        call = asyncio.ensure_future(node.protocol.call(real.addr, "ping"))
        msg, _ = (await wait_for(lambda: real.requests))[0]
        spoofer.send(wire.encode_response(msg.msg_id, True, b"S" * 20), node.address)
        counters = node.protocol.counters
        await wait_for(lambda: counters["dropped_reply_from_wrong_address"] == 1)
        assert not call.done()
        real.send(wire.encode_response(msg.msg_id, True, real.node_id), node.address)
        assert await call == (True, real.node_id)


@async_test
async def test_spoofed_reply_alone_leads_to_timeout(tmp_path: Path) -> None:
    """Same weakness as above (rpcudp matches by msg id only): when only the spoofer answers, the call times
    out as if nobody had answered, and a spoofed ping reply does not get a fake id into the routing table."""
    async with Net(tmp_path) as net:
        node = await net.node()
        silent = await net.peer(handler=lambda msg: None)
        spoofer = await net.peer()
        fake_id = os.urandom(20)
        call = asyncio.ensure_future(node.protocol.call_ping(Node(fake_id, *silent.addr)))
        msg, _ = (await wait_for(lambda: silent.requests))[0]
        spoofer.send(wire.encode_response(msg.msg_id, True, fake_id), node.address)
        assert await call == (False, None)
        assert node.protocol.counters["dropped_reply_from_wrong_address"] == 1
        assert node.protocol.counters["timeouts"] == 1
        assert contacts(node) == []


# ----------------------------------------------------------------------------------------------- node ids


@async_test
async def test_requests_with_wrong_node_ids_are_refused(tmp_path: Path) -> None:
    """Guards against kademlia accepting node ids of any type and length (``Node(nodeid, ...)`` straight from
    the datagram, into the routing table; a 21-byte id even has no bucket). Such requests are dropped as
    ``bad_node_id``, unanswered, and nothing enters the table; a proper 20-byte id does."""
    async with Net(tmp_path) as net:
        node = await net.node()
        attacker = await net.peer()
        bad_ids: list[Any] = [b"x" * 19, b"x" * 21, b"", b"x" * 40, "a" * 20, 12345, [b"x" * 20], True]
        for bad in bad_ids:
            attacker.send(req("ping", [], sender=bad), node.address)
            attacker.send(req("find_node", [os.urandom(20)], sender=bad), node.address)
        counters = node.protocol.counters
        await wait_for(lambda: counters["datagrams_in"] >= 2 * len(bad_ids))
        assert counters["dropped_bad_node_id"] == 2 * len(bad_ids)
        assert contacts(node) == []
        assert attacker.received == []
        await introduce(attacker, node)
        assert [(n.id, n.ip, n.port) for n in contacts(node)] == [(attacker.node_id, *attacker.addr)]


@async_test
async def test_ping_reply_with_wrong_node_id_is_refused(tmp_path: Path) -> None:
    """Guards against kademlia's ``bootstrap_node`` / ``call_ping`` taking whatever the peer answers as its id
    (``Node(result[1], ...)``): a 19-byte or 21-byte id in a ping reply, or an id other than the one we know
    the contact by, is refused and not added to the routing table."""
    async with Net(tmp_path) as net:
        node = await net.node()
        for bad in (b"s" * 19, b"l" * 21, "text id", None):
            liar = await net.peer(handler=lambda msg, bad=bad: (True, bad))
            assert await node.bootstrap([liar.addr]) == []
        impostor = await net.peer()
        claimed = Node(os.urandom(20), *impostor.addr)  # the table knows it by another id than it answers with
        assert await node.protocol.call_ping(claimed) == (False, "wrong_id")
        assert contacts(node) == []


BOGUS_CONTACTS: dict[str, Callable[[bytes, tuple[str, int]], Any]] = {
    "short_id": lambda rid, a: [rid[:19], a[0], a[1]],
    "long_id": lambda rid, a: [rid + b"x", a[0], a[1]],
    "str_id": lambda rid, a: [rid.hex()[:20], a[0], a[1]],
    "int_id": lambda rid, a: [int.from_bytes(rid[:8], "big"), a[0], a[1]],
    "hostname": lambda rid, a: [rid, "localhost", a[1]],
    "bad_ipv4": lambda rid, a: [rid, "999.1.1.1", a[1]],
    "not_an_ip": lambda rid, a: [rid, "not an ip", a[1]],
    "ip_as_bytes": lambda rid, a: [rid, a[0].encode(), a[1]],
    "long_ip": lambda rid, a: [rid, "1" * 100, a[1]],
    "port_zero": lambda rid, a: [rid, a[0], 0],
    "port_too_big": lambda rid, a: [rid, a[0], 70000],
    "port_negative": lambda rid, a: [rid, a[0], -1],
    "port_str": lambda rid, a: [rid, a[0], str(a[1])],
    "port_bool": lambda rid, a: [rid, a[0], True],
    "four_fields": lambda rid, a: [rid, a[0], a[1], "extra"],
    "two_fields": lambda rid, a: [rid, a[0]],
    "map": lambda rid, a: {"id": rid, "ip": a[0], "port": a[1]},
    "nil": lambda rid, a: None,
}


@async_test
async def test_bogus_contacts_in_find_node_replies_are_rejected(tmp_path: Path) -> None:
    """Guards against kademlia's crawler turning every find_node reply entry into ``Node(*entry)`` unchecked
    (ids of any length, any "ip", any port) and then contacting and adding them. A reply holding one bogus
    contact is refused whole (``bad_reply``); the contact is never contacted nor added to the routing table,
    whether asked directly or during an iterative lookup."""
    async with Net(tmp_path) as net:
        honest = await net.peer()
        honest.handler = lambda msg: (True, [] if msg.method == "find_node" else honest.node_id)
        for name, make in BOGUS_CONTACTS.items():
            node = await net.node()
            counters = node.protocol.counters
            good = [os.urandom(20), honest.addr[0], honest.addr[1]]
            reply = [good, make(os.urandom(20), honest.addr)]

            liar = await net.peer()
            liar.handler = lambda msg, liar=liar, reply=reply: (True, liar.node_id if msg.method == "ping" else reply)
            before = counters["bad_reply"]
            direct = await node.protocol.call_find_node(Node(liar.node_id, *liar.addr), Node(os.urandom(20)))
            assert direct == (False, "bad_reply"), name
            assert counters["bad_reply"] == before + 1, name
            await introduce(liar, node)
            found = await node.closest(os.urandom(20))
            assert found == [], name
            assert counters["bad_reply"] == before + 2, name
            assert honest.requests == [], name  # the "good" half of a bad reply was not used either
            assert [(n.id, n.ip, n.port) for n in contacts(node)] == [(liar.node_id, *liar.addr)], name


# ------------------------------------------------------------------------------------------------ storage


@async_test
async def test_store_refuses_values_that_do_not_hash_to_their_key(tmp_path: Path) -> None:
    """Guards against kademlia's ``rpc_store`` (``self.storage[key] = value``: anyone stores anything under any
    key, and overwrites whatever was there). STORE of a value under a key it does not hash to is refused
    (``id_mismatch``), so a stored envelope can never be replaced by a different value."""
    async with Net(tmp_path) as net:
        node = await net.node()
        attacker = await net.peer()
        original = make_envelope()
        key = env.envelope_id(original)
        _, _, reply = await attacker.request(node.address, "store", os.urandom(20), original)
        assert (reply.ok, reply.value) == (False, "id_mismatch")
        _, _, reply = await attacker.request(node.address, "store", key, original)
        assert (reply.ok, reply.value) == (True, True)
        for replacement in (make_envelope(), make_envelope(1024, work=False), b"evil"):
            _, _, reply = await attacker.request(node.address, "store", key, replacement)
            assert (reply.ok, reply.value) == (False, "id_mismatch")
        assert node.store.get_blob(key) == original
        _, _, reply = await attacker.request(node.address, "get_blob", key, pad_to=proto.PAD_TO["get_blob"])
        assert reply.value == original
        assert node.store.stats().blobs == 1


@async_test
async def test_store_and_append_refuse_non_envelopes(tmp_path: Path) -> None:
    """Guards against kademlia storing any value: STORE and APPEND take only structurally valid envelopes
    (size class, version, kind, expiry), even when the key matches the value's hash (``bad_envelope``)."""
    async with Net(tmp_path) as net:
        node = await net.node()
        attacker = await net.peer()
        slot = os.urandom(20)
        not_envelopes = [
            b"hello",
            b"",
            bytes(256),
            make_envelope(300, work=False),  # not a size class
            make_envelope(version=2, work=False),
            make_envelope(ttl=-10, work=False),  # expired
            make_envelope(ttl=90 * 86400, work=False),  # expires too far ahead
        ]
        for value in not_envelopes:
            _, _, reply = await attacker.request(node.address, "store", env.envelope_id(value), value)
            assert (reply.ok, reply.value) == (False, "bad_envelope"), value[:8]
            _, _, reply = await attacker.request(node.address, "append", slot, value)
            assert (reply.ok, reply.value) == (False, "bad_envelope"), value[:8]
        assert node.store.stats().blobs == 0
        assert node.store.read_slot(slot) == ([], 0)
        good = make_envelope(slot=slot)
        _, _, reply = await attacker.request(node.address, "append", slot, good)
        assert (reply.ok, reply.value) == (True, True)
        assert node.store.read_slot(slot)[0] == [env.envelope_id(good)]


@async_test
async def test_store_refused_far_from_the_key(tmp_path: Path) -> None:
    """Guards against kademlia storing anything *anywhere*: a node that knows k nodes closer to a key than
    itself refuses to hold envelopes for it (``not_close``), so one peer cannot fill every node's disk."""
    async with Net(tmp_path) as net:
        node = await net.node(config=NodeConfig(ksize=2, wait_timeout=0.4, id_bits=0))
        value = make_envelope()
        key = env.envelope_id(value)
        # two peers much closer to the key than the node (node ids are random: we pick the peers' next to key)
        for bit in (0, 1):
            await introduce(await net.peer(node_id=xor_id(key, bit)), node)
        assert node.node.distance_to(Node(key)) > 2
        attacker = await net.peer()
        _, _, reply = await attacker.request(node.address, "store", key, value)
        assert (reply.ok, reply.value) == (False, "not_close")
        _, _, reply = await attacker.request(node.address, "append", key, value)
        assert (reply.ok, reply.value) == (False, "not_close")
        assert node.store.stats().blobs == 0


@async_test
async def test_server_set_is_refused(tmp_path: Path) -> None:
    """Guards against kademlia's ``Server.set`` (arbitrary string keys, SHA-1 hashed, any value, overwriting):
    komrade nodes store envelopes only, so ``set`` raises NotImplementedError and sends nothing."""
    async with Net(tmp_path) as net:
        node = await net.node()
        peer = await net.peer()
        await introduce(peer, node)
        sent = node.protocol.counters["datagrams_out"]
        with pytest.raises(NotImplementedError):
            await node.set("key", "value")
        with pytest.raises(NotImplementedError):
            await node.set(b"k" * 20, make_envelope())
        assert node.protocol.counters["datagrams_out"] == sent


# ------------------------------------------------------------------------------------------ amplification


@async_test
async def test_replies_never_exceed_three_times_the_request(tmp_path: Path) -> None:
    """Guards against kademlia answering a ~60-byte find_node with k contacts (~800 bytes) and find_value /
    STORE'd values of any size: a reflection amplifier for spoofed-source UDP. For every RPC in wire.ARGS (and
    refused ones), with a node that knows 40 peers, holds a 1024-byte envelope and a slot of 60 entries, the
    reply to a minimal (unpadded) request is at most 3x its size; padded requests (as our nodes send them) get
    full answers, still within 3x and 1232 bytes."""
    async with Net(tmp_path) as net:
        node = await net.node()
        peers = [await net.peer() for _ in range(40)]
        await asyncio.gather(*(introduce(p, node) for p in peers))
        assert len(contacts(node)) >= 20
        big = make_envelope(1024, work=False)
        big_id = env.envelope_id(big)
        node.store.put_blob(big_id, big, env.parse_outer(big).expires_at)
        slot = os.urandom(20)
        owner = Identity.generate()
        record = records.make_record(owner, b"profile", 1, os.urandom(700), int(time.time()) + 600)
        record_key = records.record_key(owner.verify_key, b"profile")
        node.store.put_record(record_key, 1, record, int(time.time()) + 600)
        entries = [make_envelope(work=False) for _ in range(60)]
        for e in entries:
            node.store.append(slot, e, env.parse_outer(e).expires_at)
        attacker = await net.peer()
        small, gossiped = make_envelope(slot=slot), make_envelope(slot=slot)
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("ping", ()),
            ("find_node", (os.urandom(20),)),
            ("find_value", (os.urandom(20),)),
            ("find_value", (big_id,)),
            ("get_blob", (big_id,)),
            ("get_blob", (os.urandom(20),)),
            ("slot_page", (slot, 0, 256)),
            ("store", (env.envelope_id(small), small)),
            ("append", (slot, small)),
            ("x", ()),
            ("find_node", (b"",)),
            ("burn", (big_id, bytes(16))),
            ("gossip", (slot, gossiped, 0)),
            ("slot_digest", (slot,)),
            ("get_heads", ([env.envelope_id(e) for e in entries[:16]],)),
            ("put_record", (os.urandom(20), os.urandom(600))),
            ("stem", (slot, gossiped, 2)),
            ("get_record", (record_key,)),
        ]
        # one-way requests (a flood's copies) get no reply at all: test_gossip checks that nothing comes back
        missing = set(wire.ARGS) - wire.ONE_WAY - {method for method, _ in calls}
        assert not missing, f"RPCs without an amplification check: add them to this test: {missing}"
        replies: dict[tuple[str, int], wire.Response] = {}
        for i, (method, args) in enumerate(calls):
            for sender in (None, attacker.node_id):
                request, reply, decoded = await attacker.request(node.address, method, *args, sender_id=sender)
                assert len(reply) <= wire.AMPLIFICATION * len(request), (method, len(request), len(reply))
                replies[(method, i)] = decoded
        # unpadded find_node: a few contacts, not an error and not all of them
        few = replies[("find_node", 1)]
        assert few.ok and 1 <= len(few.value) < 20
        # unpadded requests for big values: refused rather than amplified
        assert (replies[("find_value", 3)].ok, replies[("find_value", 3)].value) == (False, "reply_too_large")
        assert (replies[("get_blob", 4)].ok, replies[("get_blob", 4)].value) == (False, "reply_too_large")
        assert node.protocol.counters["reply_too_large"] >= 4
        page = replies[("slot_page", 6)]
        assert page.ok and 1 <= len(page.value[0]) < 60
        # padded as our nodes pad them: full answers
        for method, args, check in [
            ("find_node", (os.urandom(20),), lambda v: len(v) == 20),
            ("find_value", (big_id,), lambda v: v == {"value": big}),
            ("get_blob", (big_id,), lambda v: v == big),
            ("slot_page", (slot, 0, 256), lambda v: len(v[0]) > len(page.value[0])),
            ("get_heads", ([env.envelope_id(e) for e in entries[:16]],), lambda v: len(v) >= 10),
            ("get_record", (record_key,), lambda v: v == record),
        ]:
            request, reply, decoded = await attacker.request(
                node.address, method, *args, sender_id=attacker.node_id, pad_to=proto.PAD_TO[method]
            )
            assert decoded.ok and check(decoded.value), method
            assert len(reply) <= min(wire.MAX_DATAGRAM, wire.AMPLIFICATION * len(request)), method
        # everything anyone received in this test fits one 1232-byte datagram
        for peer in net.peers:
            assert all(len(d) <= wire.MAX_DATAGRAM for d, _ in peer.received)


@async_test
async def test_lookups_send_padded_requests_within_the_datagram_limit(tmp_path: Path) -> None:
    """Guards the other half of the 3x rule (kademlia sends unpadded requests, so with the rule alone its
    lookups would get truncated answers): our lookups pad find_node to PAD_TO bytes, so that a full reply of
    k contacts fits 3x that, and every request the node sends is <= 1232 bytes."""
    async with Net(tmp_path) as net:
        node = await net.node()
        spy = await net.peer()
        spy.handler = lambda msg: (True, [] if msg.method == "find_node" else spy.node_id)
        await introduce(spy, node)
        await node.closest(os.urandom(20))
        sizes = [len(d) for d, _ in spy.received if d[:1] == wire.REQUEST]
        find_nodes = [m for m, _ in spy.requests if m.method == "find_node"]
        assert find_nodes and all(m.size == proto.PAD_TO["find_node"] for m in find_nodes)
        assert all(s <= wire.MAX_DATAGRAM for s in sizes)


# ------------------------------------------------------------------------------------------------ hand-off


def handoff_layout() -> tuple[bytes, bytes, bytes, bytes]:
    """(slot, holder id, newcomer id, far id) with holder < newcomer < far in distance to the slot, and the slot
    chosen so that the same comparison made against digest(slot), as kademlia does, would NOT hand it over."""
    while True:
        slot = os.urandom(20)
        holder, newcomer, far = xor_id(slot, 0), xor_id(slot, 100), xor_id(slot, 150)
        hashed = Node(digest(slot))
        # Kademlia 2.5 hands over only if the holder is closer than every other node it knows; measured to
        # digest(slot), the holder must here be farther than ``far``, so a re-hashing rule refuses.
        if Node(holder).distance_to(hashed) > Node(far).distance_to(hashed):
            return slot, holder, newcomer, far


@async_test
async def test_welcome_if_new_hands_slots_over_under_their_real_id(tmp_path: Path) -> None:
    """Guards against kademlia's ``welcome_if_new`` deciding who gets a key by its distance to ``digest(key)``
    (keys are digested a second time, so hand-offs go to the wrong nodes). The slot here is chosen so that
    the re-hashed rule would not hand it over while the rule on the real id does: the holder (closest to the
    slot among the nodes it knows) sees a newcomer, appends the slot's entries to it, and the newcomer then
    serves them under the slot id (and holds nothing under digest(slot))."""
    slot, holder_id, newcomer_id, far_id = handoff_layout()
    async with Net(tmp_path) as net:
        holder = await net.node(node_id=holder_id)
        far = await net.node(node_id=far_id)
        await far.bootstrap([holder.address])
        await wait_for(lambda: any(n.id == far_id for n in contacts(holder)))
        # the entry arrives after ``far`` joined, so only the holder has it to hand over
        entry = make_envelope(slot=slot)
        holder.store.append(slot, entry, env.parse_outer(entry).expires_at)
        newcomer = await net.node(node_id=newcomer_id)
        await newcomer.bootstrap([holder.address])
        await wait_for(lambda: newcomer.store.read_slot(slot)[0])
        assert newcomer.store.read_slot(slot)[0] == [env.envelope_id(entry)]
        assert newcomer.store.slot_ids() == [slot]  # under the real id, not digest(slot)
        # (far may legitimately receive the slot from the newcomer too: it is among the k closest)
        assert digest(slot) not in far.store.slot_ids()
        ok, page = await holder.protocol.call_slot_page(Node(newcomer_id, *newcomer.address), slot, 0, 256)
        assert ok and page[0] == [env.envelope_id(entry)]


@async_test
async def test_welcome_if_new_hands_slot_to_a_closer_newcomer(tmp_path: Path) -> None:
    """Guards the hand-off itself (kademlia section 2.5, as kademlia's ``welcome_if_new`` does it but on the
    real slot id): a node holding a slot entry, when a new node closer to that slot appears, appends the entry
    to the newcomer, which then serves it by ``read_slot(slot_id)``. (Regression: the decision was once taken
    after the newcomer was in the table, so it compared the newcomer with itself and never handed over.)"""
    slot = os.urandom(20)
    async with Net(tmp_path) as net:
        holder = await net.node(node_id=xor_id(slot, 150))
        entry = make_envelope(slot=slot)
        holder.store.append(slot, entry, env.parse_outer(entry).expires_at)
        newcomer = await net.node(node_id=xor_id(slot, 0))
        await newcomer.bootstrap([holder.address])
        await wait_for(lambda: newcomer.store.read_slot(slot)[0])
        assert newcomer.store.read_slot(slot)[0] == [env.envelope_id(entry)]
        ok, page = await holder.protocol.call_slot_page(Node(newcomer.node.id, *newcomer.address), slot, 0, 256)
        assert ok and page[0] == [env.envelope_id(entry)]


# ------------------------------------------------------------------------------------------------- refresh


class CountingNode(KomradeNode):
    """Counts runs of the periodic refresh job (and still does the real work)."""

    refreshes = 0

    async def _refresh_table(self) -> None:
        self.refreshes += 1
        await super()._refresh_table()


@async_test
async def test_refresh_keeps_running_at_its_interval(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Guards against kademlia's ``refresh_table``, which reschedules itself with ``call_later(interval,
    self.refresh_table)`` and so drops its interval (back to the default after the first round). With
    refresh_interval=0.2 the job runs again and again, and never fails."""
    async with Net(tmp_path) as net:
        node = await net.node(cls=CountingNode, config=NodeConfig(refresh_interval=0.2, wait_timeout=0.4, id_bits=0))
        await introduce(await net.peer(), node)
        await wait_for(lambda: node.refreshes >= 3, timeout=3.0)
    assert not [r for r in caplog.records if "periodic job" in r.getMessage()]


# ---------------------------------------------------------------------------------------------------- state


class PickleBomb:
    """Unpickling this creates ``path`` (stands for arbitrary code execution)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (str(self.path), "w"))


@async_test
async def test_state_is_saved_as_json_and_reloaded(tmp_path: Path) -> None:
    """Guards against kademlia's ``save_state``/``load_state`` (pickle: loading a planted file runs code). On
    stop the routing table is written to routing.json as JSON, and a new node in the same directory
    bootstraps from it."""
    state = tmp_path / "state"
    state.mkdir()
    async with Net(tmp_path) as net:
        other = await net.node()
        node = await net.node(state_dir=state)
        assert [n.id for n in await node.bootstrap([other.address])] == [other.node.id]
        await net.stop(node)
        raw = (state / "routing.json").read_bytes()
        assert raw[:1] != b"\x80"
        data = json.loads(raw)
        assert [*other.address] in data["peers"]
        assert sorted(p.name for p in state.iterdir()) == ["routing.json"]
        again = await net.node(state_dir=state)
        assert other.node.id in [n.id for n in await again.bootstrap([])]


@async_test
async def test_pickle_state_methods_are_refused(tmp_path: Path) -> None:
    """Guards against kademlia's ``Server.save_state`` (pickle.dump) and ``Server.load_state`` (pickle.load
    of a file: code execution for whoever can write it): both raise NotImplementedError, write nothing and
    unpickle nothing."""
    marker = tmp_path / "pwned"
    planted = tmp_path / "state.pickle"
    planted.write_bytes(pickle.dumps({"ksize": 20, "alpha": 3, "id": b"x" * 20, "neighbors": [PickleBomb(marker)]}))
    async with Net(tmp_path) as net:
        node = await net.node()
        await introduce(await net.peer(), node)
        with pytest.raises(NotImplementedError):
            node.save_state(tmp_path / "saved.pickle")
        assert not (tmp_path / "saved.pickle").exists()
        with pytest.raises(NotImplementedError):
            await KomradeNode.load_state(planted, 0, LOCAL)
    assert not marker.exists()


DAMAGED_ROUTING: dict[str, Callable[[Path], bytes]] = {
    "pickle": lambda marker: pickle.dumps(PickleBomb(marker)),
    "truncated json": lambda marker: b'{"version": 1, "peers": [["127.0',
    "empty": lambda marker: b"",
    "binary": lambda marker: os.urandom(200),
    "a list": lambda marker: b"[1, 2, 3]",
    "peers not a list": lambda marker: b'{"peers": 5}',
    "no peers": lambda marker: b'{"version": 1}',
    "hostname": lambda marker: b'{"peers": [["evil.example", 9475]]}',
    "port zero": lambda marker: b'{"peers": [["127.0.0.1", 0]]}',
    "port text": lambda marker: b'{"peers": [["127.0.0.1", "9475"]]}',
    "three fields": lambda marker: b'{"peers": [["127.0.0.1", 9475, 1]]}',
    "too large": lambda marker: b'{"peers": [], "x": "' + b"a" * 70_000 + b'"}',
}


@async_test
async def test_damaged_routing_json_is_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Guards against kademlia's ``load_state`` (an unreadable state file is an exception at start; a pickle is
    code execution): a damaged routing.json, including a pickle planted in its place, is ignored with a
    warning; the node starts as the first node of its network and keeps answering."""
    caplog.set_level(logging.INFO)
    marker = tmp_path / "pwned"
    async with Net(tmp_path) as net:
        for index, (name, make) in enumerate(DAMAGED_ROUTING.items()):
            state = tmp_path / f"state{index}"
            state.mkdir()
            (state / "routing.json").write_bytes(make(marker))
            caplog.clear()
            node = await net.node(state_dir=state)
            assert await node.bootstrap([]) == [], name
            assert any(
                r.levelno == logging.WARNING and "damaged routing cache" in r.getMessage() for r in caplog.records
            ), name
            await honest_ping(net, node)
    assert not marker.exists()


@async_test
async def test_routing_json_with_numeric_host_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Guards the JSON loader: a routing.json whose host is a JSON number (``ipaddress.ip_address(1)`` is
    0.0.0.1, so an ip_address() check alone lets it through to getaddrinfo, which raises TypeError) is ignored
    like any other damage, with a warning, not a crash at start-up."""
    state = tmp_path / "state"
    state.mkdir()
    async with Net(tmp_path) as net:
        for host in ("1", "true", "2130706433", "null", "[127, 0, 0, 1]"):
            (state / "routing.json").write_text('{"version": 1, "peers": [[%s, 9475]]}' % host)
            caplog.clear()
            node = await net.node(state_dir=state)
            assert await node.bootstrap([]) == [], host
            assert any("damaged routing cache" in r.getMessage() for r in caplog.records), host


# ------------------------------------------------------------------------------------- everyone times out


async def silent_contacts(net: Net, node: KomradeNode, count: int = 3) -> list[Peer]:
    """``count`` peers that introduce themselves to ``node`` (answering its one check ping) and then never answer
    anything."""
    peers = []
    for _ in range(count):
        state: dict[str, Any] = {"answered": False}

        def once(msg: wire.Request, state: dict[str, Any] = state) -> tuple[bool, Any] | None:
            if msg.method == "ping" and not state["answered"]:
                state["answered"] = True
                return True, state["id"]
            return None

        peer = await net.peer(handler=once)
        state["id"] = peer.node_id
        peers.append(peer)
    for peer in peers:
        await introduce(peer, node)
    assert len(contacts(node)) == count
    return peers


@async_test
async def test_set_digest_when_every_contact_times_out(tmp_path: Path) -> None:
    """Guards against kademlia's ``set_digest``: when the lookup finds no live node it computes
    ``max([])`` and raises ValueError. Ours returns False."""
    async with Net(tmp_path) as net:
        node = await net.node()
        await silent_contacts(net, node)
        value = make_envelope()
        assert await node.set_digest(env.envelope_id(value), value) is False
        assert node.protocol.counters["retransmits"] >= 1  # the contacts were asked, again, and stayed silent


@async_test
async def test_publish_when_every_contact_times_out(tmp_path: Path) -> None:
    """Guards against kademlia's ``set_digest`` ``max([])`` ValueError on the publish path: a (read-only) node
    whose contacts all time out gets a NetworkError that says nobody acknowledged, not a ValueError."""
    async with Net(tmp_path) as net:
        node = await net.node(store=False)
        await silent_contacts(net, node)
        with pytest.raises(NetworkError):
            await node.publish(os.urandom(20), make_envelope())
        assert node.protocol.counters["retransmits"] >= 1  # the contacts were asked, again, and stayed silent


# ----------------------------------------------------------------------------------------- misc overrides


@async_test
async def test_unknown_protocol_attributes_raise_attribute_error(tmp_path: Path) -> None:
    """Guards against rpcudp's ``RPCProtocol.__getattr__``, which turns every unknown attribute (a typo, or
    the bare ``ping``/``store`` names kademlia calls) into a function sending that RPC over the network. Here
    they raise AttributeError and nothing is sent."""
    async with Net(tmp_path) as net:
        node = await net.node()
        sent = node.protocol.counters["datagrams_out"]
        for name in ("no_such_method", "ping", "find_node", "find_value", "stun", "rpc_no_such"):
            with pytest.raises(AttributeError):
                getattr(node.protocol, name)
            assert not hasattr(node.protocol, name)
        assert node.protocol.counters["datagrams_out"] == sent


@async_test
async def test_one_node_id_per_address(tmp_path: Path) -> None:
    """Guards against kademlia keying the routing table by node id only: one ip:port announcing 50 ids would
    take 50 entries (and could fill whole buckets with fakes). Here the address holds one entry, the latest
    id (that answered the node's check) replacing the previous one; ids announced in a burst are checked once."""
    async with Net(tmp_path) as net:
        node = await net.node()
        claimed: list[bytes] = []
        attacker = await net.peer(handler=lambda msg: (True, claimed[-1]) if msg.method == "ping" else None)
        for node_id in (os.urandom(20) for _ in range(50)):  # a burst: one check, answered with the last id
            claimed.append(node_id)
            attacker.send(req("ping", [], sender=node_id), node.address)
        await wait_for(lambda: node.protocol.counters["datagrams_in"] >= 51)
        assert node.protocol.counters["verify_ping"] <= 2
        ids = [os.urandom(20) for _ in range(10)]
        for node_id in ids:  # one at a time: each is checked and replaces the previous one
            claimed.append(node_id)
            attacker.send(req("ping", [], sender=node_id), node.address)
            await wait_for(lambda: node_id in [n.id for n in contacts(node)])
        mine = [n for n in contacts(node) if (n.ip, n.port) == attacker.addr]
        assert [n.id for n in mine] == [ids[-1]]
        assert len(contacts(node)) == 1
        assert node.protocol.counters["id_changed_at_address"] >= len(ids) - 1


@async_test
async def test_node_without_reachable_bootstrap_peer_starts(tmp_path: Path) -> None:
    """Guards against kademlia's ``bootstrap`` (``self.protocol.ping(...)`` through rpcudp's ``__getattr__``,
    a crawl over whatever comes back, failures propagating): with only a silent peer and a closed port to
    bootstrap from, or nobody at all, bootstrap returns [] quickly and the node answers pings."""
    async with Net(tmp_path) as net:
        node = await net.node()
        silent = await net.peer(handler=lambda msg: None)
        closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closed.bind((LOCAL, 0))
        closed_addr = closed.getsockname()
        closed.close()
        start = time.monotonic()
        assert await node.bootstrap([silent.addr, closed_addr, node.address]) == []
        assert await node.bootstrap([]) == []
        assert time.monotonic() - start < 3 * FAST.wait_timeout + 1.0
        assert contacts(node) == []
        await honest_ping(net, node)


@async_test
async def test_retransmission_follows_measured_round_trips(tmp_path: Path) -> None:
    """Calls are timed from the peer's measured round trips (node/rtt.py): a reply to a retransmitted request gives
    no sample (Karn's rule), replies to requests sent once do, and the measured schedule never waits longer than
    ``wait_timeout``; a timeout backs the peer's interval off."""
    async with Net(tmp_path) as net:
        node = await net.node(config=NodeConfig(wait_timeout=3.0, id_bits=0))
        seen: set[bytes] = set()

        def second_copy(msg: wire.Request) -> tuple[bool, Any] | None:
            if msg.msg_id in seen:
                return True, peer.node_id
            seen.add(msg.msg_id)
            return None  # the first copy is "lost"

        peer = await net.peer(handler=second_copy)
        rtt = node.protocol.rtt
        assert await node.protocol.call(peer.addr, "ping") == (True, peer.node_id)
        assert node.protocol.counters["retransmits"] == 1 and not rtt.measured(peer.addr)
        peer.handler = peer.answer_ping
        for _ in range(3):
            assert await node.protocol.call(peer.addr, "ping") == (True, peer.node_id)
        assert rtt.measured(peer.addr) and node.protocol.counters["retransmits"] == 1
        resend, timeout = rtt.schedule(peer.addr, 2)
        assert len(resend) == 2 and timeout <= 3.0 + 1e-9
        before = rtt.rto(peer.addr)
        peer.handler = lambda msg: None
        assert await node.protocol.call(peer.addr, "ping") == (False, None)
        assert rtt.rto(peer.addr) == min(2 * before, rtt.max_rto)
        assert node.protocol._sent_once == {}, "nothing left behind once every call is over"


@async_test
async def test_a_read_goes_on_without_a_silent_holder_once_it_is_overdue(tmp_path: Path) -> None:
    """A slot read asks every holder for its digest, but once one answered it stops waiting for holders unanswered
    past their first retransmission (reader.py, issue 12), and still returns what the live holder has."""
    from komrade_dht.node.reader import ReadLimits, SlotRead

    async with Net(tmp_path) as net:
        reader, holder = await net.node(), await net.node()
        silent = await net.peer(handler=lambda msg: None)
        slot = os.urandom(20)
        envelope = make_envelope(slot=slot)
        assert holder.store is not None
        holder.store.append_many([(slot, envelope, int.from_bytes(envelope[2:6], "big"), 0)])
        holders = [Node(holder.node.id, *holder.address), Node(silent.node_id, *silent.addr)]
        read = SlotRead(reader.protocol, slot, env.PowParams(), ReadLimits(), set(), lambda head: True)
        result = await read.run(holders, [])
        assert result.wanted == [envelope]
        assert result.overdue_holders == 1
        assert len(silent.requests) >= 2, "the silent holder was asked again before the read went on without it"
