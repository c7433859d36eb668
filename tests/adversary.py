"""Attack tooling for the slot layer (issue 9): hostile nodes, attacker sockets, junk, and the attack scenarios.

Everything here runs on real UDP sockets on 127.0.0.1 (ports picked by the OS), real SQLite stores and real
crypto; nothing is mocked. The scenarios are shared by ``tests/test_slot_attacks.py`` (which asserts on their
figures) and ``fuzz/slot_attacks.py`` (which prints them, bigger and longer).

Where the node's API changes, fix it here, in one place:

- proof of work: :func:`mint`, :func:`check`, :func:`pow_value`, :func:`pow_target`, :func:`cheap_pow`,
  :func:`seal` (the work binds the slot an envelope is appended to, ``env.NO_SLOT`` for an id-only blob);
- hostile protocols: :func:`make_node` (``KomradeNode.protocol_class``, or a fallback when it is not honoured),
  and the ``rpc_*`` overrides of :class:`LyingHolder`, :class:`Sybil`, :class:`HopSpy`;
- node ids next to a target: :func:`sybil_ids` (free ids where the network has no id puzzle; where it has one,
  proofs minted until they land next to the target, kept in the node's store where the node finds its proof:
  :func:`start_node`); :func:`net_config` sets the test networks' puzzle (cheap, like their work);
- planting state in a relay: :func:`plant`, :func:`no_fsync`;
- protocol internals read by the scenarios: :func:`outstanding_to`, :func:`busy`, :func:`honest_errors`.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Awaitable, Callable

from kademlia.node import Node
from nacl import bindings

from komrade_dht import envelope as env
from komrade_dht.errors import NetworkError
from komrade_dht.gossip import GossipConfig
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.node import wire
from komrade_dht.node.protocol import KomradeProtocol
from komrade_dht.slots import SlotParams, slot_id
from komrade_dht.social import send_dm, sync_inbox
from komrade_dht.storage import Store, StoreLimits

from .support import account, wait_for

try:  # node ids that cost work (S/Kademlia's static puzzle), where the node has them
    from komrade_dht.node import nodeid as _nodeid
except ImportError:  # pragma: no cover - older nodes: ids are free
    _nodeid = None  # type: ignore[assignment]

LOCAL = "127.0.0.1"
NO_SLOT = getattr(env, "NO_SLOT", bytes(20))

# ------------------------------------------------------------------------------------ proof of work (API shim)


def _has_param(fn: Callable[..., Any], name: str) -> bool:
    return name in inspect.signature(fn).parameters


def pow_params(trials_per_byte: float) -> env.PowParams:
    """Proof-of-work params with ``trials_per_byte`` and the cheapest hash settings the params allow (Argon2id's
    8 KiB minimum where the trial is Argon2id), so a test pays in trials, not in memory bandwidth."""
    names = {f.name for f in fields(env.PowParams)}
    extra: dict[str, Any] = {}
    if "memlimit" in names:
        extra["memlimit"] = bindings.crypto_pwhash_argon2id_MEMLIMIT_MIN
    return env.PowParams(trials_per_byte=trials_per_byte, **extra)


def cheap_pow() -> env.PowParams:
    """The test networks' proof of work: 0.01 trials per byte (real work, a few dozen trials per envelope)."""
    return pow_params(0.01)


def mint(data: bytes, params: env.PowParams, slot: bytes, now: float | None = None) -> bytes:
    """``data`` with a nonce meeting ``params`` for ``slot``."""
    if _has_param(env.mint_pow, "slot"):
        return env.mint_pow(data, params, slot=slot, now=now)
    return env.mint_pow(data, params, now=now)


def check(data: bytes, params: env.PowParams, slot: bytes, now: float | None = None) -> bool:
    """What every node checks before it holds ``data`` in ``slot``."""
    if _has_param(env.check_pow, "slot"):
        return env.check_pow(data, params, slot=slot, now=now)
    return env.check_pow(data, params, now=now)


def pow_value(data: bytes, params: env.PowParams, slot: bytes) -> int:
    """The 64-bit work value of ``data`` for ``slot`` (lower is more work)."""
    sig = inspect.signature(env.pow_value).parameters
    kwargs: dict[str, Any] = {}
    if "slot" in sig:
        kwargs["slot"] = slot
    if "params" in sig:
        kwargs["params"] = params
    return env.pow_value(data, **kwargs)


def pow_target(params: env.PowParams, length: int, ttl: float, headers: int = 1) -> int:
    """The highest acceptable work value for an envelope of ``length`` bytes living ``ttl`` more seconds, priced
    as if it carried ``headers`` recipient headers (where the params price headers at all)."""
    if len(inspect.signature(params.target).parameters) >= 3:
        return params.target(length, ttl, headers)
    return params.target(length, ttl)


def mint_in_band(data: bytes, params: env.PowParams, slot: bytes, low: int, high: int) -> bytes:
    """``data`` with a nonce whose work value lies in ``(low, high]``: exactly "this much work, not more"."""
    nonce = int.from_bytes(os.urandom(8), "big")
    while True:
        candidate = data[:22] + nonce.to_bytes(8, "big") + data[30:]
        if low < pow_value(candidate, params, slot) <= high:
            return candidate
        nonce = (nonce + 1) % 2**64


def seal(sender: Identity, recipient: Any, body: bytes, *, slot: bytes, pow: env.PowParams, ttl: int = 3600) -> bytes:
    """``env.seal`` with the work bound to ``slot``."""
    if _has_param(env.seal, "slot"):
        return env.seal(sender, recipient, body, ttl=ttl, pow=pow, slot=slot)
    return env.seal(sender, recipient, body, ttl=ttl, pow=pow)


def raw_envelope(*, size: int = 256, ttl: int = 3600, headers: int = 1) -> bytes:
    """A sealed envelope that passes every outer check (size class, version, kind, headers, expiry) and is for
    nobody: random recipient headers and body, as a junk sender makes them. No work yet (nonce zero)."""
    head = struct.pack(">BBI16s8sB", env.VERSION, env.KIND_SEALED, int(time.time()) + ttl, os.urandom(16), bytes(8),
                       headers)
    return head + os.urandom(size - len(head))


def multi_recipient_envelope(recipients: list[Identity], *, size: int = 1024, ttl: int = 3600) -> bytes:
    """A sealed envelope with one real ``crypto_box_seal`` header per recipient (what a group post costs a reader
    who is not among them: one X25519 per header). No work yet."""
    key = os.urandom(32)
    head = struct.pack(">BBI16s8sB", env.VERSION, env.KIND_SEALED, int(time.time()) + ttl, os.urandom(16), bytes(8),
                       len(recipients))
    headers = b"".join(bindings.crypto_box_seal(key, r.public.box_public_key) for r in recipients)
    nonce = os.urandom(24)
    room = size - len(head) - len(headers) - 24 - 16
    body = nonce + bindings.crypto_secretbox(bytes(room), nonce, key)
    out = head + headers + body
    assert len(out) == size
    return out


def junk(slot: bytes, params: env.PowParams, count: int, *, size: int = 256, ttl: int = 3600,
         threads: int = 2) -> list[bytes]:
    """``count`` distinct valid junk envelopes for ``slot`` (random content, real work), minted on ``threads``
    threads (the Argon2id trial runs in C without the GIL)."""
    def one(_: int) -> bytes:
        return mint(raw_envelope(size=size, ttl=ttl), params, slot)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count), chunksize=64))


# ------------------------------------------------------------------------------------ ids next to a target


def node_id_near(target: bytes, shared_bits: int = 144) -> bytes:
    """An id (node id or slot id) sharing its first ``shared_bits`` bits with ``target``, random below. A node can
    take such an id only on a network without id puzzles: see :func:`sybil_ids`."""
    free = 160 - shared_bits
    noise = int.from_bytes(os.urandom(20), "big") & ((1 << free) - 1)
    mask = ((1 << 160) - 1) ^ ((1 << free) - 1)
    return ((int.from_bytes(target, "big") & mask) | noise).to_bytes(20, "big")


def id_bits(config: NodeConfig) -> int:
    """Leading zero bits a node id's proof must show on a network with ``config`` (0: ids are free)."""
    return int(getattr(config, "id_bits", 0) or 0) if _nodeid is not None else 0


class Placed:
    """A node id an attacker placed, with the proof the network asks for (None where ids are free)."""

    def __init__(self, node_id: bytes, proof: bytes | None) -> None:
        self.node_id, self.proof = node_id, proof

    def __repr__(self) -> str:
        return f"Placed({self.node_id.hex()[:12]}, proof={'yes' if self.proof else 'no'})"


def sybil_ids(target: bytes, count: int, config: NodeConfig, *, beat: list[bytes] = [],  # noqa: B006 (read only)
              shared_bits: int = 144, max_proofs: int = 200_000) -> list[Placed]:
    """``count`` distinct node ids next to ``target`` (a slot id), as an attacker places them around a slot.

    Where ids are free (no puzzle), they share ``shared_bits`` bits with ``target``. Where a node id needs a proof
    (``config.id_bits`` > 0, :mod:`komrade_dht.node.nodeid`), the attacker mints proofs, paying what an honest
    node pays per proof, until ``count`` of them land closer to ``target`` than every id in ``beat`` (the honest
    nodes near the slot, which any lookup shows); at most ``max_proofs`` proofs, then it keeps the closest it has.
    """
    bits = id_bits(config)
    if bits == 0:
        out: set[bytes] = set()
        while len(out) < count:
            candidate = node_id_near(target, shared_bits)
            if candidate != target:
                out.add(candidate)
        return [Placed(i, None) for i in sorted(out)]
    assert _nodeid is not None
    bound = min((xor_distance(b, target) for b in beat), default=1 << 160)
    best: list[tuple[int, bytes, bytes]] = []
    for _ in range(max_proofs):
        proof = _nodeid.mint(bits)
        node_id = _nodeid.node_id(proof)
        best.append((xor_distance(node_id, target), node_id, proof))
        if sum(1 for d, _, _ in best if d < bound) >= count:
            break
    best.sort()
    return [Placed(node_id, proof) for _, node_id, proof in best[:count]]


def shared_prefix(a: bytes, b: bytes) -> int:
    """Leading bits ``a`` and ``b`` have in common."""
    return 160 - xor_distance(a, b).bit_length()


def xor_distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


# ------------------------------------------------------------------------------------ hostile protocols


def fake_head() -> bytes:
    """The head (fixed fields and recipient header) of an envelope that does not exist: well formed, for nobody.
    Costs a liar nothing (work is over the whole envelope, which the liar never has to produce)."""
    data = raw_envelope(size=1024, ttl=86400)
    return env.head(data) if hasattr(env, "head") else data[: env.FIXED_LEN + env.HEADER_LEN]


class LyingHolder(KomradeProtocol):
    """Issue 9, attack 1: a holder that lies about every slot. Its digest claims 20,000 entries (a digest of its
    own, so a reader that groups holders by digest pages it); each ``slot_page`` lists 50 random ids with an
    ever-rising cursor; ``get_heads`` has nothing for them (``fake_heads``: well-formed heads of envelopes that do
    not exist, so a reader trial-decrypts each); appends and stores are acked and not kept; no blob to give."""

    fake_heads = False

    def rpc_slot_digest(self, sender: Any, slot: bytes, *args: Any, **kw: Any) -> tuple[bool, Any]:
        self.counters["lies"] += 1
        return True, [20_000, hashlib.blake2b(slot + self.source_node.id, digest_size=16).digest()]

    def rpc_slot_page(self, sender: Any, slot: bytes, cursor: int, limit: int, **kw: Any) -> tuple[bool, Any]:
        budget = kw.get("budget", wire.MAX_DATAGRAM)
        fit = max(1, min(50, (budget - 1 - 21 - 16) // 22))
        self.counters["lies"] += 1
        return True, [[os.urandom(20) for _ in range(fit)], cursor + 1]

    def rpc_get_heads(self, sender: Any, ids: list[bytes], *args: Any, **kw: Any) -> tuple[bool, Any]:
        self.counters["lies"] += 1
        budget = kw.get("budget", wire.MAX_DATAGRAM)
        out: list[bytes | None] = []
        size = 1 + 21 + 8
        for _ in ids:
            item = fake_head() if self.fake_heads else None
            cost = 3 + (len(item) if item is not None else 0)
            if size + cost > budget:
                break
            size += cost
            out.append(item)
        return True, out

    def rpc_append(self, sender: Any, *args: Any, **kw: Any) -> tuple[bool, Any]:
        self.counters["fake_acks"] += 1
        return True, True

    def rpc_store(self, sender: Any, *args: Any, **kw: Any) -> tuple[bool, Any]:
        self.counters["fake_acks"] += 1
        return True, True

    def rpc_get_blob(self, sender: Any, *args: Any, **kw: Any) -> tuple[bool, Any]:
        return True, None


class LyingHolderFakeHeads(LyingHolder):
    """:class:`LyingHolder` that also fabricates a well-formed head for every id it lists."""

    fake_heads = True


class Sybil(KomradeProtocol):
    """Issue 9, attack 6: one of eight ids next to a slot. Acks appends, stores and gossip, keeps nothing, lists
    nothing (an empty slot, an empty digest)."""

    def rpc_append(self, sender: Any, *args: Any, **kw: Any) -> tuple[bool, Any]:
        self.counters["fake_acks"] += 1
        return True, True

    rpc_store = rpc_append

    def rpc_gossip(self, sender: Any, *args: Any, **kw: Any) -> tuple[bool, Any]:
        self.counters["fake_acks"] += 1
        return True, True

    def rpc_slot_page(self, sender: Any, slot: bytes, cursor: int, *args: Any, **kw: Any) -> tuple[bool, Any]:
        return True, [[], cursor]

    def rpc_get_blob(self, sender: Any, *args: Any, **kw: Any) -> tuple[bool, Any]:
        return True, None

    def rpc_find_value(self, sender: Any, key: bytes, **kw: Any) -> tuple[bool, Any]:
        return True, self._contacts(key, sender, kw.get("budget", wire.MAX_DATAGRAM))


class HopSpy(KomradeProtocol):
    """An honest node that records the hop budget of every gossip request it receives: (sender, hops)."""

    def rpc_gossip(self, sender: Any, slot: bytes, value: bytes, hops: int, **kw: Any) -> tuple[bool, Any]:
        if not hasattr(self, "hops_seen"):
            self.hops_seen: list[tuple[tuple[str, int], int]] = []
        self.hops_seen.append((sender, hops))
        return super().rpc_gossip(sender, slot, value, hops, **kw)


def make_node(store: Store | None, *, protocol: type[KomradeProtocol] | None = None, config: NodeConfig = NodeConfig(),
              node_id: bytes | None = None, state_dir: Path | None = None) -> KomradeNode:
    """A ``KomradeNode`` whose protocol is ``protocol`` (a subclass of ``KomradeProtocol``). Uses
    ``KomradeNode.protocol_class``; if the node does not honour it, the protocol built by the node is turned into
    ``protocol`` after construction (and its dispatch table rebound)."""
    if protocol is None:
        return KomradeNode(store, config=config, node_id=node_id, state_dir=state_dir)
    wanted = protocol

    class Hostile(KomradeNode):
        protocol_class = wanted

        def _create_protocol(self) -> KomradeProtocol:  # type: ignore[override]
            built = super()._create_protocol()
            if not isinstance(built, wanted):
                built.__class__ = wanted
                handlers = built.__dict__.get("_handlers")
                if isinstance(handlers, dict):
                    for name in list(handlers):
                        handlers[name] = getattr(built, "rpc_" + name)
            return built

    return Hostile(store, config=config, node_id=node_id, state_dir=state_dir)


# ------------------------------------------------------------------------------------ networks


#: Node-id puzzle of the test networks (where the node has one): cheap, like their proof of work; the attacker
#: pays it as honest nodes do.
TEST_ID_BITS = 8


def net_config(**kw: Any) -> NodeConfig:
    """The test networks' node configuration: cheap envelope work and a cheap node-id puzzle, the rest as deployed
    unless ``kw`` says otherwise."""
    kw.setdefault("pow", cheap_pow())
    if "id_bits" in {f.name for f in fields(NodeConfig)}:
        kw.setdefault("id_bits", TEST_ID_BITS)
    return NodeConfig(**kw)


async def start_network(tmp: Path, count: int, config: NodeConfig, *, limits: StoreLimits = StoreLimits(),
                        protocol: type[KomradeProtocol] | None = None) -> list[KomradeNode]:
    """``count`` relays (SQLite stores with ``limits``) on 127.0.0.1, joined through the first."""
    relays = []
    for _ in range(count):
        relays.append(await start_node(tmp, config, limits=limits, protocol=protocol))
    for node in relays[1:]:
        await node.bootstrap([relays[0].address])
    return relays


_counter = 0


def no_fsync(store: Store) -> Store:
    """Turn off the store's fsync (``PRAGMA synchronous=OFF``). Durability is not under test here (tests/test_hostile.py
    kills relays for that), and on a shared disk each fsync costs 1-3 ms: thousands of junk appends would measure
    the disk, not the node. Skipped silently if the store's connection is not where it used to be."""
    conn = getattr(store, "_conn", None)
    if conn is not None:
        conn.execute("PRAGMA synchronous = OFF")
    return store


async def start_node(tmp: Path, config: NodeConfig, *, limits: StoreLimits = StoreLimits(),
                     protocol: type[KomradeProtocol] | None = None, placed: Placed | None = None,
                     store: bool = True) -> KomradeNode:
    """One listening node with its own store under ``tmp`` (no store: read-only), at the id ``placed`` if given
    (with its proof: a node keeps its proof in its store, where the node finds it)."""
    global _counter
    _counter += 1
    home = tmp / f"n{_counter}-{os.urandom(3).hex()}"
    home.mkdir(parents=True)
    st = no_fsync(Store(home / "node.sqlite", limits)) if store else None
    node_id = None
    if placed is not None and placed.proof is not None and st is not None:
        st.set_meta("id_proof", placed.proof)
    elif placed is not None:
        node_id = placed.node_id
    node = make_node(st, protocol=protocol, config=config, node_id=node_id, state_dir=home if store else None)
    if placed is not None:
        assert node.node.id == placed.node_id, "the node did not take the placed id (has the proof moved?)"
    await node.listen(0, LOCAL)
    return node


async def client(peer: tuple[str, int], config: NodeConfig) -> KomradeNode:
    """A read-only node (what `komrade send` and `komrade inbox` run), joined through ``peer``."""
    node = KomradeNode(None, config=config)
    await node.listen(0, LOCAL)
    assert await node.bootstrap([peer]), "client could not join"
    return node


async def join(node: KomradeNode, relays: list[KomradeNode]) -> None:
    """Make ``node`` known: it bootstraps through a few relays, and every relay looks it up once."""
    await node.bootstrap([r.address for r in relays[:3]])
    await asyncio.gather(*(r.bootstrap_node(node.address) for r in relays))


def outstanding_to(node: KomradeNode, addr: tuple[str, int]) -> int:
    """How many of ``node``'s requests to ``addr`` await a reply (protocol internals: msg id -> (future, timers,
    address))."""
    pending = getattr(node.protocol, "_outstanding", {})
    return sum(1 for entry in pending.values() if tuple(entry[2]) == tuple(addr))


def busy(node: KomradeNode) -> bool:
    """Whether ``node``'s protocol still runs tasks it spawned (forwards, hand-offs)."""
    return any(not t.done() for t in getattr(node.protocol, "_tasks", ()))


def honest_errors(nodes: list[KomradeNode]) -> int:
    """Handler exceptions and failed background tasks on honest nodes (what a hostile answer must never cause)."""
    return sum(n.protocol.counters["handler_error"] + n.protocol.counters["task_error"] for n in nodes
               if n.protocol is not None)


def contact_count(node: KomradeNode) -> int:
    assert node.protocol is not None
    return sum(len(bucket) for bucket in node.protocol.router.buckets)


def closest(nodes: list[KomradeNode], key: bytes, count: int) -> list[KomradeNode]:
    return sorted(nodes, key=lambda n: xor_distance(n.node.id, key))[:count]


def slot_of(acct: Any, now: float | None = None) -> bytes:
    """The account's slot for the current epoch (what a sender appends to)."""
    now = time.time() if now is None else now
    return slot_id(acct.identity.verify_key, acct.width, SlotParams().epoch(now))


def slot_holds(node: KomradeNode, slot: bytes, key: bytes) -> bool:
    """Whether ``node``'s store lists envelope ``key`` in ``slot``."""
    if node.store is None:
        return False
    cursor = 0
    while True:
        ids, cursor = node.store.read_slot(slot, cursor, 1000)
        if not ids:
            return False
        if key in ids:
            return True


def plant(node: KomradeNode, slot: bytes, envelopes: list[bytes], chunk: int = 500) -> int:
    """Put ``envelopes`` straight into ``node``'s store under ``slot`` (the state a slot is in after that many
    accepted appends: a flood that got through, without the flood's minutes), through the store's group commit, in
    chunks. Returns how many it took (quota refusals are refused, as the append would be)."""
    assert node.store is not None
    taken = 0
    for start in range(0, len(envelopes), chunk):
        batch = [(slot, d, env.parse_outer(d).expires_at, 0) for d in envelopes[start:start + chunk]]
        taken += sum(result is True for result in node.store.append_many(batch))
    return taken


async def shutdown(nodes: list[Any], accounts: tuple[Any, ...] = ()) -> None:
    for node in nodes:
        try:
            await node.stop_async()  # nodes, and RawSender sockets
        except Exception:  # a node the test already stopped
            pass
    for acct in accounts:
        acct.close()


# ------------------------------------------------------------------------------------ attacker sockets


class Counting(asyncio.DatagramProtocol):
    """A UDP socket that never answers: it counts what it receives (the victim of a reflection)."""

    def __init__(self) -> None:
        self.datagrams = 0
        self.bytes = 0
        self.methods: dict[str, int] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams += 1
        self.bytes += len(data)
        try:
            msg = wire.decode(data)
        except wire.BadMessage:
            return
        name = msg.method if isinstance(msg, wire.Request) else "reply"
        self.methods[name] = self.methods.get(name, 0) + 1

    @property
    def addr(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def counting_socket() -> Counting:
    _, proto = await asyncio.get_running_loop().create_datagram_endpoint(Counting, local_addr=(LOCAL, 0))
    return proto


async def attacker_nodes(count: int, config: NodeConfig) -> list[KomradeNode]:
    """``count`` read-only nodes, each its own ip:port (its own per-peer budget at every relay)."""
    nodes = []
    for _ in range(count):
        node = KomradeNode(None, config=config)
        await node.listen(0, LOCAL)
        nodes.append(node)
    return nodes


class RawSender(asyncio.DatagramProtocol):
    """An attacker socket that speaks the wire format by hand, in batches: cheaper per request than a node's
    ``call`` (no timers per request), so a test can push thousands of appends without the attacker's own
    bookkeeping dominating the run. Requests carry no sender id (as read-only nodes send them)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        #: msg id -> (the batch's event, the batch's unanswered msg ids)
        self._pending: dict[bytes, tuple[asyncio.Event, set[bytes]]] = {}
        self.results: dict[str, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        entry = self._pending.pop(data[1:21], None) if data[:1] == wire.RESPONSE else None
        if entry is None:
            return
        try:
            msg = wire.decode(data)
            key = "ok" if isinstance(msg, wire.Response) and msg.ok else str(getattr(msg, "value", "bad"))
        except wire.BadMessage:
            key = "bad_reply"
        self.results[key] = self.results.get(key, 0) + 1
        done, waiting = entry
        waiting.discard(data[1:21])
        if not waiting:
            done.set()

    async def batch(self, addr: tuple[str, int], method: str, calls: list[list[Any]], *, timeout: float = 1.0,
                    attempts: int = 3) -> None:
        """Send one request per argument list in ``calls`` to ``addr`` at once; resend the unanswered ones (same
        msg id) up to ``attempts`` times, ``timeout`` seconds apart. Replies are tallied in ``results``."""
        assert self.transport is not None
        done = asyncio.Event()
        waiting: set[bytes] = set()
        datagrams = {}
        for args in calls:
            msg_id = os.urandom(20)
            datagrams[msg_id] = wire.encode_request(msg_id, method, None, args)
            self._pending[msg_id] = (done, waiting)
            waiting.add(msg_id)
        try:
            for _ in range(attempts):
                for msg_id in list(waiting):
                    self.transport.sendto(datagrams[msg_id], addr)
                try:
                    await asyncio.wait_for(done.wait(), timeout)
                    return
                except asyncio.TimeoutError:
                    continue
            self.results["unanswered"] = self.results.get("unanswered", 0) + len(waiting)
        finally:
            for msg_id in datagrams:
                self._pending.pop(msg_id, None)

    async def stop_async(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def raw_senders(count: int) -> list[RawSender]:
    loop = asyncio.get_running_loop()
    return [(await loop.create_datagram_endpoint(RawSender, local_addr=(LOCAL, 0)))[1] for _ in range(count)]


async def flood_appends(senders: list[RawSender], targets: list[KomradeNode], slot: bytes, envelopes: list[bytes],
                        *, batch: int = 16, in_flight: int = 256) -> dict[str, Any]:
    """Append every envelope to ``slot`` on every target: envelope i goes out from sender i mod len(senders), in
    batches of ``batch`` per (sender, target), at most ``in_flight`` requests outstanding in all (the relays share
    this process's event loop: more would only queue in socket buffers and come back as retransmissions).
    Returns per-target acknowledgements (from the targets' own counts of slot entries) and the reply codes."""
    before = {t.address: t.store.stats().slot_entries for t in targets}
    share = [envelopes[i::len(senders)] for i in range(len(senders))]
    gate = asyncio.Semaphore(max(1, in_flight // batch))

    async def pair(sender: RawSender, target: KomradeNode, mine: list[bytes]) -> None:
        for start in range(0, len(mine), batch):
            async with gate:
                await sender.batch(target.address, "append", [[slot, d] for d in mine[start:start + batch]],
                                   timeout=2.0)

    await asyncio.gather(*(pair(s, t, share[i]) for i, s in enumerate(senders) for t in targets))
    codes: dict[str, int] = {}
    for sender in senders:
        for key, n in sender.results.items():
            codes[key] = codes.get(key, 0) + n
        sender.results.clear()
    return {"accepted": sorted(t.store.stats().slot_entries - before[t.address] for t in targets), "replies": codes}


# ------------------------------------------------------------------------------------ measuring a sync


async def measured(node: KomradeNode, work: Awaitable[Any], *, timeout: float,
                   abort_datagrams: int | None = None) -> dict[str, Any]:
    """Run ``work`` (a sync on ``node``) and measure it: seconds, datagrams and bytes ``node`` sent, its routing table
    before and after. Stops it at ``timeout`` seconds, or as soon as it has sent more than ``abort_datagrams``
    datagrams (a sync past its bound has failed already; no need to let it run for minutes)."""
    assert node.protocol is not None
    counters = node.protocol.counters
    before_out, before_bytes = counters["datagrams_out"], counters["bytes_out"]
    before_timeouts = counters["timeouts"]
    table_before = contact_count(node)
    started = time.monotonic()
    task = asyncio.ensure_future(work)
    stopped = ""
    while not task.done():
        await asyncio.wait({task}, timeout=0.02)
        if task.done():
            break
        if time.monotonic() - started > timeout:
            stopped = f"still running after {timeout:.0f} s"
        elif abort_datagrams is not None and counters["datagrams_out"] - before_out > abort_datagrams:
            stopped = f"sent more than {abort_datagrams} datagrams"
        if stopped:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            break
    elapsed = time.monotonic() - started
    result: Any = None
    error = None
    if not stopped:
        try:
            result = task.result()
        except Exception as exc:  # reported, the caller asserts
            error = repr(exc)
    # requests the sync left behind time out (and evict peers) after it returns: count the table once they are done
    settle = time.monotonic() + node.config.wait_timeout + 1.0
    while getattr(node.protocol, "_outstanding", None) and time.monotonic() < settle:
        await asyncio.sleep(0.05)
    table_after = contact_count(node)
    return {
        "finished": not stopped and error is None,
        "stopped": stopped or None,
        "error": error,
        "seconds": round(elapsed, 2),
        "datagrams_out": counters["datagrams_out"] - before_out,
        "bytes_out": counters["bytes_out"] - before_bytes,
        "timeouts": counters["timeouts"] - before_timeouts,
        "routing_before": table_before,
        "routing_after": table_after,
        "routing_kept": round(table_after / table_before, 3) if table_before else None,
        "result": result,
    }


# ------------------------------------------------------------------------------------ scenarios


async def dm_scenario(tmp: Path, *, relays: int, config: NodeConfig, hostile: Callable[..., Awaitable[Any]] | None,
                      timeout: float, abort_datagrams: int | None,
                      limits: StoreLimits = StoreLimits()) -> dict[str, Any]:
    """The story every slot attack is measured against: ``relays`` honest relays (stores with ``limits``);
    ``hostile(tmp, net, slot, extra)`` sets the attack up around Bob's slot for today (its nodes and sockets go in
    ``extra``, stopped at the end); Alice, on a read-only node, sends Bob a DM; Bob, on a fresh read-only node,
    syncs (see :func:`measured`). Returns the sync's figures, whether the DM was delivered, what the attack set-up
    reported, and what the hostile nodes were asked."""
    net = await start_network(tmp / "relays", relays, config, limits=limits)
    alice, bob = account(tmp, "Alice"), account(tmp, "Bob")
    extra: list[Any] = []
    figures: dict[str, Any] = {}
    try:
        slot = slot_of(bob)
        if hostile is not None:
            figures["attack"] = await hostile(tmp, net, slot, extra)
        text = "the real DM " + os.urandom(4).hex()
        alice_node = await client(net[1].address, config)
        extra.append(alice_node)
        try:
            key = await send_dm(alice, alice_node, bob.address.text, text)
            figures["send"] = "ok"
            figures["holders_with_dm"] = sum(slot_holds(r, slot, key) for r in net)
        except NetworkError as exc:
            figures["send"] = f"refused: {exc}"
        bob_node = await client(net[-1].address, config)
        extra.append(bob_node)
        sync = await measured(bob_node, sync_inbox(bob, bob_node), timeout=timeout, abort_datagrams=abort_datagrams)
        messages = sync.pop("result") or []
        sync["delivered"] = any(m.text == text for m in messages)
        figures.update(sync)
        hostile_nodes = [n for n in extra if isinstance(getattr(n, "protocol", None), (LyingHolder, Sybil))]
        figures["hostile"] = {
            "answers_lied": sum(n.protocol.counters["lies"] for n in hostile_nodes),
            "slot_requests": sum(n.protocol.counters[f"rpc_{m}"] for n in hostile_nodes
                                 for m in ("slot_digest", "slot_page", "get_heads")),
            "fake_acks": sum(n.protocol.counters["fake_acks"] for n in hostile_nodes),
        }
        figures["relays"] = relays
        figures["honest_errors"] = honest_errors([*net, alice_node, bob_node])
        return figures
    finally:
        await shutdown([*extra, *net], (alice, bob))


async def lying_holder(tmp: Path, net: list[KomradeNode], slot: bytes, extra: list[Any],
                       protocol: type[LyingHolder] = LyingHolder) -> dict[str, Any]:
    """Attack 1's set-up: one node, placed closer to ``slot`` than every honest relay (:func:`sybil_ids`), runs
    ``protocol`` (:class:`LyingHolder`)."""
    config = net[0].config
    [placed] = sybil_ids(slot, 1, config, beat=[r.node.id for r in net])
    liar = await start_node(tmp / "liar", config, protocol=protocol, placed=placed)
    extra.append(liar)
    await join(liar, net)
    return {
        "liar_known_to_relays": sum(not r.protocol.router.is_new_node(liar.node) for r in net),
        "liar_closest_to_slot": min(net + [liar], key=lambda n: xor_distance(n.node.id, slot)) is liar,
        "liar_shared_bits": shared_prefix(liar.node.id, slot),
    }


async def lying_holder_fake_heads(tmp: Path, net: list[KomradeNode], slot: bytes,
                                  extra: list[Any]) -> dict[str, Any]:
    """Attack 1, harder: the liar also fabricates a well-formed head for every id it lists."""
    return await lying_holder(tmp, net, slot, extra, protocol=LyingHolderFakeHeads)


def sybils(count: int = 8, shared_bits: int = 144) -> Callable[..., Awaitable[Any]]:
    """Attack 6's set-up: ``count`` :class:`Sybil` nodes with ids next to the slot (closer than every honest relay,
    paying the id puzzle where there is one), known to the network."""

    async def setup(tmp: Path, net: list[KomradeNode], slot: bytes, extra: list[Any]) -> dict[str, Any]:
        nodes = []
        started = time.monotonic()
        placed = sybil_ids(slot, count, net[0].config, beat=[r.node.id for r in net], shared_bits=shared_bits)
        placing_s = time.monotonic() - started
        for one in placed:
            node = await start_node(tmp / "sybils", net[0].config, protocol=Sybil, placed=one)
            extra.append(node)
            nodes.append(node)
        for node in nodes:
            await join(node, net)
        ranked = sorted(net + nodes, key=lambda n: xor_distance(n.node.id, slot))
        return {
            "sybils": count,
            "id_bits": id_bits(net[0].config),
            "placing_s": round(placing_s, 2),
            "sybils_among_8_closest": sum(1 for n in ranked[:8] if n in nodes),
            "min_shared_bits": min(shared_prefix(n.node.id, slot) for n in nodes),
            "sybils_known_to_relays": sum(not r.protocol.router.is_new_node(n.node) for r in net for n in nodes),
        }

    return setup


def junk_in_slot(count: int, *, holders: int = 8, sockets: int = 20) -> Callable[..., Awaitable[Any]]:
    """Attack 2's set-up: ``count`` valid junk envelopes for the slot (real work for the network's params),
    appended over UDP from ``sockets`` attacker sockets to the slot's ``holders`` closest relays (the ones a
    reader asks)."""

    async def setup(tmp: Path, net: list[KomradeNode], slot: bytes, extra: list[Any]) -> dict[str, Any]:
        started = time.monotonic()
        envelopes = await asyncio.to_thread(junk, slot, net[0].config.pow, count)
        minted = time.monotonic() - started
        senders = await raw_senders(sockets)
        extra.extend(senders)
        started = time.monotonic()
        result = await flood_appends(senders, closest(net, slot, holders), slot, envelopes)
        result.update(junk=count, mint_s=round(minted, 1), append_s=round(time.monotonic() - started, 1))
        return result

    return setup


def fill_from_one_source(count: int, sockets: int = 1) -> Callable[..., Awaitable[Any]]:
    """Attack 2b's set-up: ``sockets`` attacker sockets (one source each, one by default) append ``count`` junk
    envelopes in all to the slot on every relay (the test makes ``count`` larger than the per-slot quota)."""

    async def setup(tmp: Path, net: list[KomradeNode], slot: bytes, extra: list[Any]) -> dict[str, Any]:
        envelopes = await asyncio.to_thread(junk, slot, net[0].config.pow, count)
        senders = await raw_senders(sockets)
        extra.extend(senders)
        result = await flood_appends(senders, net, slot, envelopes)
        result.update(junk=count, sockets=sockets)
        return result

    return setup


async def flood_while_pinging(relay: KomradeNode, honest: KomradeNode, attacker: Counting,
                              make_request: Callable[[], bytes], *, seconds: float, rate: float, burst: int,
                              ping_every: float) -> dict[str, Any]:
    """For ``seconds``: ``attacker`` sends ``make_request()`` datagrams to ``relay``, ``burst`` at once then ``rate``
    per second; ``honest`` pings ``relay`` every ``ping_every`` seconds on a fixed schedule (whether the previous
    ping was answered or not). Returns what was sent and the honest pings' fate and latency."""
    pings: list[float | None] = []

    async def one_ping() -> None:
        t0 = time.monotonic()
        ok, _ = await honest.protocol.call(relay.address, "ping")
        pings.append(time.monotonic() - t0 if ok else None)

    async def ping_loop() -> None:
        tasks = []
        t0 = time.monotonic()
        for i in range(int(seconds / ping_every)):
            await asyncio.sleep(max(0.0, t0 + i * ping_every - time.monotonic()))
            tasks.append(asyncio.ensure_future(one_ping()))
        await asyncio.gather(*tasks)

    async def flood() -> int:
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            due = burst + int((time.monotonic() - t0) * rate)
            while sent < due:
                attacker.send(make_request(), relay.address)
                sent += 1
            await asyncio.sleep(0.01)
        return sent

    sent, _ = await asyncio.gather(flood(), ping_loop())
    answered = sorted(p for p in pings if p is not None)
    return {
        "requests_sent": sent,
        "pings": len(pings),
        "pings_answered": len(answered),
        "ping_p50_ms": round(1000 * answered[len(answered) // 2], 1) if answered else None,
        "ping_max_ms": round(1000 * answered[-1], 1) if answered else None,
    }


async def digest_flood(tmp: Path, *, entries: int, seconds: float, rate: float, burst: int,
                       ping_every: float = 0.2, honest_timeout: float = 3.0) -> dict[str, Any]:
    """Attack 4: a relay holds a slot of ``entries`` entries; one socket sends ``slot_digest`` for it at ``rate``
    per second after a ``burst`` (the per-peer limit), for ``seconds``; an honest node pings it every
    ``ping_every`` seconds meanwhile. Returns the digest's cost and the honest pings' fate."""
    config = net_config()
    relay = await start_node(tmp, config)
    honest = KomradeNode(no_fsync(Store(tmp / "honest.sqlite")), config=replace(config, wait_timeout=honest_timeout))
    await honest.listen(0, LOCAL)
    attacker = await counting_socket()
    slot = os.urandom(20)
    try:
        started = time.monotonic()
        # Straight into the store, without work: the store does not check work, and the slot is then in the state
        # that many accepted appends leave it in (the digest's cost depends on the entries, not on their work).
        planted = plant(relay, slot, [raw_envelope(size=256) for _ in range(entries)])
        setup_s = time.monotonic() - started
        # the cost of one digest request, measured alone
        solo = KomradeNode(None, config=config)
        await solo.listen(0, LOCAL)
        costs = []
        for _ in range(5):
            t0 = time.perf_counter()
            await solo.protocol.call(relay.address, "slot_digest", slot)
            costs.append(time.perf_counter() - t0)
        await solo.stop_async()
        request = wire.encode_request(os.urandom(20), "slot_digest", None, [slot])
        before = relay.protocol.counters["rpc_slot_digest"]
        figures = await flood_while_pinging(
            relay, honest, attacker, lambda: request[:1] + os.urandom(20) + request[21:],  # a fresh msg id each
            seconds=seconds, rate=rate, burst=burst, ping_every=ping_every)
        figures.update(
            entries=planted,
            setup_s=round(setup_s, 1),
            digest_ms_alone=round(1000 * sorted(costs)[len(costs) // 2], 2),
            digest_requests_served=relay.protocol.counters["rpc_slot_digest"] - before,
            honest_errors=honest_errors([relay, honest]),
        )
        return figures
    finally:
        attacker.close()
        await shutdown([honest, relay])


async def fresh_id_pings(tmp: Path, *, slots: int, seconds: float, rate: float = 20.0, ping_every: float = 0.1,
                         honest_timeout: float = 3.0, relays: int = 12) -> dict[str, Any]:
    """Attack 3's sequel: a relay of a network of ``relays`` holds ``slots`` slots (one entry each, ids next to its
    own, so it is their closest holder); a socket that never answers sends ``rate`` pings per second, each with a
    never-seen node id next to one of those slots (a newcomer the relay would hand data to), while an honest node
    pings every ``ping_every`` seconds. Returns the honest pings' fate and latency, and what reached the silent
    socket."""
    config = net_config(gossip=GossipConfig(anti_entropy_interval=0))
    net = await start_network(tmp, relays, config)  # the relay has a routing table of its size, as in the issue
    relay = net[0]
    honest = KomradeNode(no_fsync(Store(tmp / "honest.sqlite")), config=replace(config, wait_timeout=honest_timeout))
    await honest.listen(0, LOCAL)
    attacker = await counting_socket()
    try:
        started = time.monotonic()
        held = [node_id_near(relay.node.id, 120) for _ in range(slots)]
        data = raw_envelope(size=256)
        assert relay.store is not None
        for slot in held:
            relay.store.append(slot, data, env.parse_outer(data).expires_at)
        setup_s = time.monotonic() - started
        pick = iter(range(10**9))

        def fresh_ping() -> bytes:
            near = held[next(pick) % len(held)]
            return wire.encode_request(os.urandom(20), "ping", node_id_near(near, 150), [])

        figures = await flood_while_pinging(relay, honest, attacker, fresh_ping, seconds=seconds, rate=rate, burst=0,
                                            ping_every=ping_every)
        figures.update(slots=slots, relays=relays, setup_s=round(setup_s, 1),
                       silent_socket_received_bytes=attacker.bytes, honest_errors=honest_errors([*net, honest]))
        return figures
    finally:
        attacker.close()
        await shutdown([honest, *net])


async def reflection(tmp: Path, *, relays: int, wait_timeout: float = 1.0, deadline: float = 60.0) -> dict[str, Any]:
    """Attack 5: from a socket that never answers, one ping carrying a fresh node id, to one relay of a network.
    The id is next to a slot that relay holds, so it is a newcomer worth handing data to; then every relay looks
    the id up once (as any lookup passing by would). Returns the bytes and datagrams that reached the silent
    address, once no node has a request to it outstanding."""
    config = net_config(wait_timeout=wait_timeout, gossip=GossipConfig(anti_entropy_interval=0))
    net = await start_network(tmp, relays, config)
    victim = await counting_socket()
    try:
        first = net[0]
        held = node_id_near(first.node.id, 140)
        data = mint(raw_envelope(size=1024), config.pow, held)
        assert first.protocol is not None
        first.store.append(held, data, env.parse_outer(data).expires_at)
        fresh = node_id_near(held, 150)
        ping = wire.encode_request(os.urandom(20), "ping", fresh, [])
        victim.send(ping, first.address)
        await wait_for(lambda: victim.datagrams >= 1 or first.protocol.counters["rpc_ping"] > 0, timeout=10)
        # lookups passing by: for the slot the fresh id is next to (as a publisher to it makes), and for the id
        await asyncio.gather(*(r.closest(held) for r in net), *(r.closest(fresh) for r in net))

        def outstanding() -> int:
            return sum(outstanding_to(r, victim.addr) for r in net)

        quiet_checks = [0]

        def quiet() -> bool:
            # no request to the victim outstanding anywhere, twice in a row a retransmission step apart
            if outstanding():
                quiet_checks[0] = 0
                return False
            quiet_checks[0] += 1
            return quiet_checks[0] >= 2

        await wait_for(quiet, timeout=deadline, interval=wait_timeout / 3)
        return {
            "relays": relays,
            "ping_bytes": len(ping),
            "received_bytes": victim.bytes,
            "received_datagrams": victim.datagrams,
            "ratio": round(victim.bytes / len(ping), 1),
            "by_method": victim.methods,
            "relays_with_contact": sum(not r.protocol.router.is_new_node(Node(fresh, *victim.addr)) for r in net),
            "honest_errors": honest_errors(net),
        }
    finally:
        victim.close()
        await shutdown(net)


async def stuffing(tmp: Path, *, relays: int, slots_per_relay: int, targets: int = 3,
                   trials: int = 20_000) -> dict[str, Any]:
    """Attack 3: one envelope (256 bytes, one day to live, work for one slot) appended from one attacker socket to
    ``slots_per_relay`` made-up slot ids next to each of ``targets`` relays, then to the slot its work was done for.
    The network's work is ``trials`` expected trials for that envelope: where work binds the slot, a made-up slot
    passes by luck with probability 1/trials (20,000: two lucky passes among 200 slots, ~5e-5). Returns how many
    appends each relay accepted."""
    ttl = 86400
    params = pow_params(trials / ((256 + 1000) * (1 + ttl / 2**16)))
    config = net_config(pow=params, gossip=GossipConfig(anti_entropy_interval=0))
    net = await start_network(tmp, relays, config)
    attacker = (await attacker_nodes(1, config))[0]
    try:
        victims = net[:targets]
        real_slot = node_id_near(victims[0].node.id, 120)
        started = time.monotonic()
        data = await asyncio.to_thread(mint, raw_envelope(size=256, ttl=ttl), params, real_slot)
        mint_s = time.monotonic() - started
        accepted = []
        entries = []
        for relay in victims:
            made_up = [node_id_near(relay.node.id, 120) for _ in range(slots_per_relay)]
            before = relay.store.stats().slot_entries
            replies = await asyncio.gather(*(attacker.protocol.call(relay.address, "append", s, data) for s in made_up))
            accepted.append(sum(1 for ok, _ in replies if ok))
            entries.append(relay.store.stats().slot_entries - before)
        ok, why = await attacker.protocol.call(victims[0].address, "append", real_slot, data)
        return {"slots_tried_per_relay": slots_per_relay, "accepted": accepted, "slot_entries_added": entries,
                "own_slot_accepted": ok, "own_slot_refusal": None if ok else why, "mint_s": round(mint_s, 2),
                "honest_errors": honest_errors(net)}
    finally:
        await shutdown([attacker, *net])


async def hop_budget(tmp: Path, *, relays: int, asked_hops: int = 8, hops: int = 3, fanout: int = 3,
                     deadline: float = 20.0) -> dict[str, Any]:
    """Attack 7: a gossip request asking ``asked_hops`` hops, sent to one relay of a network of :class:`HopSpy`
    relays configured with ``hops``. Returns the hop budgets the relays' forwards carried and how many relays
    ended up writing the envelope."""
    config = net_config(gossip=GossipConfig(fanout=fanout, hops=hops, anti_entropy_interval=0))
    net = await start_network(tmp, relays, config, protocol=HopSpy)
    attacker = (await attacker_nodes(1, config))[0]
    try:
        slot = os.urandom(20)
        data = mint(raw_envelope(size=1024), config.pow, slot)
        ok, why = await attacker.protocol.call(net[0].address, "gossip", slot, data, asked_hops)
        forwarded = lambda: sum(r.protocol.counters["gossip_forwarded"] for r in net)  # noqa: E731
        received = lambda: sum(  # noqa: E731
            1 for r in net for s, _ in getattr(r.protocol, "hops_seen", []) if s != attacker.address)
        await wait_for(lambda: received() >= forwarded() and not any(busy(r) for r in net), timeout=deadline)
        relayed = [h for r in net for s, h in getattr(r.protocol, "hops_seen", []) if s != attacker.address]
        key = env.envelope_id(data)
        return {
            "accepted": ok,
            "refusal": None if ok else why,
            "asked_hops": asked_hops,
            "configured_hops": hops,
            "max_forwarded_hops": max(relayed, default=None),
            "forwards": len(relayed),
            "relays_holding": sum(r.store.has_blob(key) for r in net),
            "relays": relays,
            "honest_errors": honest_errors(net),
        }
    finally:
        await shutdown([attacker, *net])
