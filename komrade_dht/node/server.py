"""A komrade node: kademlia's ``Server`` with our protocol, SQLite storage, slot operations and owned tasks."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from kademlia.network import Server
from kademlia.node import Node

from .. import envelope as env
from .. import gossip, records
from ..gossip import StemConfig
from ..errors import EnvelopeError, NetworkError, RecordError
from ..storage import Store
from . import nodeid
from .bootstrap import load_routing, save_routing
from .loadmeter import LoopLag
from .crawling import Lookup
from .reader import ReadLimits, ReadResult, SlotRead
from .ratelimit import RateLimits
from .protocol import KomradeProtocol

log = logging.getLogger(__name__)

#: Socket receive buffer we ask for (bytes).
RECEIVE_BUFFER = 4 * 2**20
#: Pages of a slot's listing the writer's stem check reads (~50 ids each) before it asks a holder by id instead.
WRITER_CHECK_PAGES = 8


@dataclass(frozen=True)
class NodeConfig:
    """Tunables of one node; defaults are the paper's and this project's measured choices."""

    ksize: int = 20
    """k: how many closest nodes hold each slot and blob (Kademlia's replication parameter)."""
    alpha: int = 3
    """Parallel requests per lookup step."""
    wait_timeout: float = 2.0
    """Seconds to wait for a reply before counting the peer as unresponsive."""
    group_commit: bool = True
    """Appends arriving within 2 ms share one transaction and one fsync; each is acknowledged after that commit
    (False: one transaction per append, as benchmarks/relay.py's baseline)."""
    publish_quorum: int = 3
    """``publish`` returns once this many holders acknowledged (each after committing to its disk); the other
    appends finish in the background. Three fsync'd copies is the durability the caller is told about; the k
    closest still all get theirs, and anti-entropy repairs any that did not."""
    read: ReadLimits = ReadLimits()
    """What one slot read may cost this node at most, whatever holders claim (:mod:`.reader`)."""
    refresh_interval: float = 3600.0
    """Seconds between routing-table refreshes (Kademlia section 2.3)."""
    purge_interval: float = 60.0
    """Seconds between purges of expired envelopes."""
    save_interval: float = 600.0
    """Seconds between saves of the routing table to routing.json."""
    pow: env.PowParams = env.PowParams()
    """Proof of work every envelope must carry to be stored or forwarded (the same on every node)."""
    limits: RateLimits = RateLimits()
    """Per-peer request and write rate limits."""
    gossip: gossip.GossipConfig = gossip.GossipConfig()
    """Flooding and anti-entropy."""
    stem: StemConfig | None = StemConfig()
    """Dandelion++ stems for what this node writes (:meth:`KomradeNode.send`) and relays; None: no stems (the
    node publishes its own envelopes directly and refuses to relay others')."""
    id_bits: int = 16
    """Leading zero bits a node id's proof must show (:mod:`.nodeid`, S/Kademlia's static puzzle): what placing an
    id next to a chosen slot costs. 0 accepts any id (test networks that place ids on purpose). Every node of a
    network must agree."""
    max_contacts: int = 0
    """Cap on routing-table contacts (0: kademlia's own bucket limits only). At the cap, a newcomer closer to us
    than our farthest contact replaces it; others are refused."""


class KomradeNode(Server):
    """A DHT node. With a ``store`` it holds envelopes for others (a relay or a full node); without, it is a
    read-only node (BEP 43) that looks things up and publishes but is never added to anyone's routing table."""

    protocol_class = KomradeProtocol

    def __init__(
        self,
        store: Store | None = None,
        *,
        config: NodeConfig = NodeConfig(),
        node_id: bytes | None = None,
        state_dir: Path | None = None,
        id_proof: bytes | None = None,
    ) -> None:
        proof: bytes | None = None
        if id_proof is not None:  # an identity kept elsewhere (a lab restarting a node with an empty store)
            if not nodeid.is_valid(id_proof, config.id_bits):
                raise ValueError(f"id_proof does not show the {config.id_bits} bits of work this network asks for")
            proof, node_id = id_proof, nodeid.node_id(id_proof)
            if store is not None:
                store.set_meta("id_proof", proof)
        elif node_id is None and store is not None and config.id_bits > 0:
            # a node that holds data proves its id (read-only nodes are in nobody's table: they need not)
            proof = store.get_meta("id_proof")
            if proof is None or not nodeid.is_valid(proof, config.id_bits):
                proof = nodeid.mint(config.id_bits)
                store.set_meta("id_proof", proof)
            node_id = nodeid.node_id(proof)
        elif node_id is None and store is not None:
            node_id = store.get_meta("node_id")
        node_id = node_id or os.urandom(20)
        if store is not None and store.get_meta("node_id") != node_id:
            store.set_meta("node_id", node_id)
        self.id_proof = proof
        super().__init__(ksize=config.ksize, alpha=config.alpha, node_id=node_id, storage=None)
        self.config = config
        self.store = store
        self.state_dir = state_dir
        self.started = time.time()
        self.protocol: KomradeProtocol | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._lag: LoopLag | None = None
        self._planner = gossip.AntiEntropyPlanner(config.gossip)
        #: the peers this node joined through: where it rejoins if every contact of its table timed out
        self._joined_through: list[tuple[str, int]] = []
        self._rejoining = asyncio.Lock()

    @property
    def read_only(self) -> bool:
        return self.store is None

    def _create_protocol(self) -> KomradeProtocol:
        return self.protocol_class(
            self.node,
            self.store,
            self.ksize,
            read_only=self.read_only,
            wait_timeout=self.config.wait_timeout,
            pow=self.config.pow,
            limits=self.config.limits,
            gossip_config=self.config.gossip,
            max_contacts=self.config.max_contacts,
            id_bits=self.config.id_bits,
            id_proof=self.id_proof,
            stem_config=self.config.stem,
            group_commit=self.config.group_commit,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) this node is bound to."""
        assert self.transport is not None, "the node is not listening"
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    async def listen(self, port: int = 0, interface: str = "127.0.0.1") -> tuple[str, int]:  # type: ignore[override]
        """Bind the UDP socket (loopback unless asked otherwise) and start the node's periodic tasks."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ipaddress.ip_address(interface).version == 6 else socket.AF_INET
        self.transport, self.protocol = await loop.create_datagram_endpoint(
            self._create_protocol, local_addr=(interface, port), family=family
        )
        self.protocol.on_fluff = self._fluff
        self.protocol.on_churn = lambda node_id: self._planner.newcomer(node_id, time.monotonic()) and None
        self.protocol.on_embargo = self._ensure_held
        self._lag = LoopLag.of(loop)
        self._lag.acquire()
        sock = self.transport.get_extra_info("socket")
        try:  # a sync fans out hundreds of requests; the default ~200 KB buffer drops replies (the kernel caps this)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:
            log.debug("could not raise the socket receive buffer")
        self._every(self.config.refresh_interval, self._refresh_table)
        if self.store is not None:
            self._every(self.config.purge_interval, self._purge)
            if self.config.gossip.anti_entropy_interval > 0:
                self._every(self.config.gossip.anti_entropy_interval, self._anti_entropy)
        if self.state_dir is not None:
            self._every(self.config.save_interval, self._save_state)
        log.info("node %s listening on %s:%d", self.node.id.hex()[:12], *self.address)
        return self.address

    def _every(self, interval: float, job: Callable[[], Awaitable[Any]]) -> None:
        """Run ``job`` every ``interval`` seconds (kademlia's refresh forgets its interval after one round)."""

        async def loop() -> None:
            await asyncio.sleep(random.uniform(0, interval))  # nodes started together do not run in lockstep
            while True:
                try:
                    await job()
                except Exception:
                    log.exception("periodic job %s failed; it will run again", job.__name__)
                await asyncio.sleep(interval * random.uniform(0.9, 1.1))

        self._loops.append(asyncio.get_running_loop().create_task(loop()))

    async def _purge(self) -> None:
        assert self.store is not None
        removed = self.store.purge_expired()
        if removed:
            log.info("purged %d expired envelopes", removed)
        self.store.scrub()  # what was purged or burned since the last run: out of the write-ahead log too

    async def _save_state(self) -> None:
        if self.state_dir is None or self.protocol is None:
            return
        peers = [(n.ip, n.port) for n in self.protocol.router.find_neighbors(self.node)]
        if peers:
            save_routing(self.state_dir / "routing.json", peers)

    def refresh_table(self, interval: int = 3600) -> None:
        """Unused: :meth:`listen` schedules the refresh with its interval kept (see :meth:`_every`)."""

    async def _refresh_table(self) -> None:
        assert self.protocol is not None
        lookups = []
        for node_id in self.protocol.get_refresh_ids():
            node = Node(node_id)
            nearest = self.protocol.router.find_neighbors(node, self.alpha)
            lookups.append(Lookup(self.protocol, node, nearest, self.ksize, self.alpha).find())
        await asyncio.gather(*lookups)

    def _release_lag(self) -> None:
        if self._lag is not None:
            self._lag.release()
            self._lag = None

    async def stop_async(self) -> None:
        """Stop: cancel every task this node owns, save the routing table, close the socket and the store."""
        self._release_lag()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        if self.protocol is not None:
            await self._save_state()
            self.protocol.close()
            await asyncio.sleep(0)  # let the transport finish closing, so the port can be bound again at once
        if self.store is not None:
            self.store.close()

    def stop(self) -> None:  # kademlia's synchronous stop, kept for compatibility
        self._release_lag()
        for task in self._loops:
            task.cancel()
        if self.protocol is not None:
            self.protocol.close()

    # -- bootstrap ---------------------------------------------------------------------------------------
    async def bootstrap(self, addrs: list[tuple[str, int]]) -> list[Node]:  # type: ignore[override]
        """Join through any of ``addrs`` (and the routing table saved last run). If nobody answers, this node is
        the first node of its own network: that is logged, not an error."""
        assert self.protocol is not None
        if self.state_dir is not None:
            addrs = list(addrs) + load_routing(self.state_dir / "routing.json")
        resolved: set[tuple[str, int]] = set()
        loop = asyncio.get_running_loop()
        for host, port in addrs:
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.warning("cannot resolve bootstrap peer %s:%d: %s", host, port, exc)
                continue
            for info in infos[:2]:
                resolved.add((info[4][0], info[4][1]))
        if self.transport is not None:
            resolved.discard(self.address)
        if resolved:
            self._joined_through = sorted(resolved)
        nodes: list[Node] = []
        for attempt in range(3 if resolved else 0):  # a busy peer may miss one round: two more before we give up
            found = await asyncio.gather(*(self.bootstrap_node(a) for a in resolved))
            nodes = [n for n in found if n is not None]
            if nodes:
                break
            self.protocol._failures.clear()  # they are not silent: they may just have been slow
        if not nodes:
            log.info("no bootstrap peer answered (%d tried): this node is the first node of its own network",
                     len(resolved))
            return []
        found = await Lookup(self.protocol, self.node, nodes, self.ksize, self.alpha).find()
        # the peers that answered our ping are live even if every reply to the lookup was lost: we joined through them
        return found or nodes

    async def bootstrap_node(self, addr: tuple[str, int]) -> Node | None:
        assert self.protocol is not None
        ok, answer = await self.protocol.call(addr, "ping")
        node_id = nodeid.id_from_answer(answer, self.config.id_bits) if ok else None
        if node_id is None or node_id == self.node.id:
            return None
        node = Node(node_id, addr[0], addr[1])
        self.protocol.mark_proven(node)
        self.protocol.welcome_if_new(node)
        return node

    # -- what the layers above use ----------------------------------------------------------------------
    async def closest(self, key: bytes) -> list[Node]:
        """The k live nodes closest to ``key`` (an iterative lookup)."""
        assert self.protocol is not None
        node = Node(key)
        nearest = self.protocol.router.find_neighbors(node)
        if not nearest and self._joined_through:
            await self._rejoin()
            nearest = self.protocol.router.find_neighbors(node)
        if not nearest:
            return []
        return await Lookup(self.protocol, node, nearest, self.ksize, self.alpha).find()

    async def _rejoin(self) -> None:
        """Every contact timed out (a suspended laptop, a stalled event loop, a network that went away and came
        back) and the table is empty: join again through the peers we joined through, instead of failing every
        operation until restart. One rejoin at a time; callers that waited find the table filled."""
        assert self.protocol is not None
        async with self._rejoining:
            if any(b.get_nodes() for b in self.protocol.router.buckets):
                return
            log.warning("every contact timed out: rejoining through %d peer(s)", len(self._joined_through))
            for addr in self._joined_through:
                self.protocol._failures.pop(addr, None)  # they get their chance again
            self.protocol.counters["rejoins"] += 1
            await self.bootstrap(self._joined_through)

    async def slot_holders(self, slot: bytes) -> list[Node]:
        """The slot's k closest nodes: found by a lookup, then reused (by reads and anti-entropy) until one of them
        fails, a closer node joins, or ``gossip.holders_ttl`` runs out (the planner's cache), so a reader polling its
        slot does not pay a lookup per poll."""
        holders = self._planner.holders(slot, time.monotonic())
        if holders is None:
            holders = await self.closest(slot)
            if holders:
                self._planner.remember_holders(slot, holders, time.monotonic())
        return list(holders)  # type: ignore[arg-type]

    async def publish(self, slot: bytes, envelope: bytes) -> int:
        """Append ``envelope`` to ``slot`` on the slot's k closest nodes (and here, if we are one), and start its
        gossip flood. Returns how many holders acknowledged the append: each ack means "committed to my disk", not
        "delivered" (a lying holder acks too; readers ask every holder). Raises NetworkError if none did."""
        assert self.protocol is not None
        env.parse_outer(envelope)
        slot_nodes = await self.closest(slot)
        acks = await self._quorum(
            [self.protocol.call_append(n, slot, envelope) for n in slot_nodes], self.config.publish_quorum
        )
        if self.config.gossip.hops > 0:
            # not to the holders just given it: they would take the flood as a duplicate and end it there
            given = {(n.ip, n.port) for n in slot_nodes}
            self.protocol.forward(slot, envelope, self.config.gossip.hops - 1, exclude=given)
        if self.store is not None and self.protocol.is_close_to(slot):
            # held here too, through the same checks and quotas as anyone's append
            acks += self.protocol._hold(self.address, envelope, slot=slot, near=None) is None
        if acks == 0:
            raise NetworkError(
                f"no node acknowledged the envelope ({len(slot_nodes)} slot holders tried): is the network reachable?"
            )
        return acks

    async def _quorum(self, calls: list[Awaitable[tuple[bool, Any]]], quorum: int) -> int:
        """Run ``calls`` at once; return when ``quorum`` succeeded (or all ended) with the successes so far. The
        rest go on as tasks the protocol owns: every holder still gets its copy, the caller just stops waiting."""
        assert self.protocol is not None
        tasks = [self.protocol.spawn(c) for c in calls]
        ok = 0
        for next_done in asyncio.as_completed(tasks):
            success, _ = await next_done
            ok += bool(success)
            if ok >= quorum:
                break
        return ok

    async def send(self, slot: bytes, envelope: bytes) -> int:
        """Publish what this node's user wrote: through a stem when stems are on and a successor exists (returns 1,
        the stem relay's acceptance; the writer checks later that a holder has it and republishes otherwise), else
        directly (:meth:`publish`, returns the holders' acks)."""
        assert self.protocol is not None
        env.parse_outer(envelope)
        stem = self.config.stem
        if stem is not None:
            contacts = [(n.ip, n.port) for b in self.protocol.router.buckets for n in b.get_nodes()]
            successor = self.protocol.stem_route.successor(contacts, time.time())
            if successor is not None:
                ok, _ = await self.protocol.call(successor, "stem", slot, envelope, stem.max_hops)
                if ok:
                    # its writer neither relays its stem nor forwards its flood (a holder would see it come from us)
                    self.protocol.stemmed.add(env.envelope_id(envelope))
                    self.protocol.seen.add(env.envelope_id(envelope))
                    self.protocol.counters["stem_sent"] += 1
                    if self.read_only:
                        # A short-lived sender (`komrade send`) may exit at once: it confirms before it returns.
                        return await self._confirm_held(slot, envelope)
                    delay = stem.sender_check * random.uniform(1.0, 1.5)
                    self.protocol.spawn(self._ensure_held(slot, envelope, delay))
                    return 1
                self.protocol.counters["stem_refused"] += 1
        return await self.publish(slot, envelope)

    async def _confirm_held(self, slot: bytes, envelope: bytes) -> int:
        """Wait (up to the stem's ``sender_check``) until two of the slot's holders have ``envelope``; publish it
        directly if they do not. Returns the acks: 2 when the stem delivered, the holders' acks otherwise."""
        assert self.protocol is not None and self.config.stem is not None
        key = env.envelope_id(envelope)
        holders = (await self.closest(slot))[: self.ksize]
        asked = gossip.pick(holders, 2)
        expires_at = env.parse_outer(envelope).expires_at
        deadline = time.monotonic() + min(self.config.stem.sender_check, expires_at - time.time())
        pause = 0.05
        while time.monotonic() < deadline and asked:
            await asyncio.sleep(pause)
            answers = await asyncio.gather(*(self._holds(n, slot, key) for n in asked))
            held = sum(answers)
            if held:
                return held
            pause = min(pause * 2, 1.0)
        if time.time() >= expires_at:
            raise NetworkError("the envelope expired before any holder confirmed it: send it again, with a longer life")
        self.protocol.counters["stem_republished"] += 1
        return await self.publish(slot, envelope)

    async def _holds(self, node: Node, slot: bytes, key: bytes) -> bool:
        """Whether ``node`` lists ``key`` in ``slot``, asked the way a reader polling the slot asks (its listing,
        which names the slot, not the envelope), so the writer's check does not tell a holder which envelope its
        asker wrote. Only a slot longer than WRITER_CHECK_PAGES pages is asked by id (``get_heads``)."""
        assert self.protocol is not None
        cursor = 0
        for _ in range(WRITER_CHECK_PAGES):
            ok, value = await self.protocol.call_slot_page(node, slot, cursor, 256)
            if not ok:
                return False
            ids, next_cursor = value
            if key in ids:
                return True
            if not ids or next_cursor <= cursor:
                return False
            cursor = next_cursor
        ok, heads = await self.protocol.call_get_heads(node, [key])
        return bool(ok and heads and heads[0] is not None)

    async def _fluff(self, slot: bytes, envelope: bytes) -> None:
        with contextlib.suppress(NetworkError, EnvelopeError):  # EnvelopeError: it expired on the way
            await self.publish(slot, envelope)

    async def _ensure_held(self, slot: bytes, envelope: bytes, delay: float = 0.0) -> bool:
        """Publish ``envelope`` ourselves unless one of two of the slot's closest holders has it (after ``delay``):
        what keeps a black-hole stem relay from swallowing it. True if it was held already."""
        assert self.protocol is not None
        if delay:
            await asyncio.sleep(delay)
        key = env.envelope_id(envelope)
        if int.from_bytes(envelope[2:6], "big") <= time.time() or key in self.protocol.burned:
            return True  # expired or burned by its writer: nothing left to deliver
        holders = (await self.closest(slot))[: self.ksize]
        for node in gossip.pick(holders, 2):
            if await self._holds(node, slot, key):
                return True
        self.protocol.counters["stem_republished"] += 1
        await self._fluff(slot, envelope)
        return False

    async def store_blobs(self, blobs: list[bytes], concurrency: int = 16) -> int:
        """Store each envelope under its own id on the id's k closest nodes (content-addressed chunks, carrying
        proof of work for ``NO_SLOT``), at most ``concurrency`` at a time. Returns how many blobs were acknowledged
        by at least one holder; raises NetworkError naming how many got none."""
        assert self.protocol is not None
        gate = asyncio.Semaphore(concurrency)

        async def one(data: bytes) -> bool:
            async with gate:
                key = env.envelope_id(data)
                nodes = await self.closest(key)
                results = await asyncio.gather(*(self.protocol.call_store(n, key, data) for n in nodes))
                held = any(ok for ok, _ in results)
                if self.store is not None and self.protocol.is_close_to(key):
                    self.store.put_blob(key, data, env.parse_outer(data).expires_at)
                    held = True
                return held

        for data in blobs:
            env.parse_outer(data)
        acked = await asyncio.gather(*(one(b) for b in blobs))
        failed = acked.count(False)
        if failed:
            raise NetworkError(f"{failed} of {len(blobs)} blobs were acknowledged by no node: is the network reachable?")
        return len(blobs)

    async def fetch_blobs(self, ids: list[bytes], concurrency: int = 16) -> dict[bytes, bytes]:
        """The envelopes stored under ``ids`` (by :meth:`store_blobs`), looked up in parallel, each checked against
        its id; ids nobody could produce are absent from the result."""
        gate = asyncio.Semaphore(concurrency)

        async def one(key: bytes) -> tuple[bytes, bytes | None]:
            async with gate:
                return key, await self.get_blob(key)

        return {k: v for k, v in await asyncio.gather(*(one(i) for i in ids)) if v is not None}

    async def put_record(self, data: bytes) -> int:
        """Store a signed mutable record (:mod:`komrade_dht.records`) on the k closest nodes to its key; returns
        how many accepted it. Raises RecordError if it is not valid, NetworkError if nobody accepted it."""
        assert self.protocol is not None
        key = records.key_of(data)
        records.verify_record(key, data)
        nodes = await self.closest(key)
        results = await asyncio.gather(*(self.protocol.call_put_record(n, key, data) for n in nodes))
        acks = sum(1 for ok, _ in results if ok)
        if self.store is not None and self.protocol.is_close_to(key):
            acks += self.protocol.rpc_put_record(self.address, key, data, budget=0)[0]
        if acks == 0:
            refusals = sorted({str(v) for ok, v in results if not ok and v})
            raise NetworkError(f"no node accepted the record ({len(nodes)} tried; refusals: {refusals or 'none'})")
        return acks

    async def get_record(self, key: bytes) -> bytes | None:
        """The newest valid record under ``key`` among its k closest holders (each answer verified; forged,
        misplaced and expired ones ignored); holders that answered with an older one get the newest back."""
        assert self.protocol is not None
        nodes = await self.closest(key)
        answers = await asyncio.gather(*(self.protocol.call_get_record(n, key) for n in nodes))
        found: list[tuple[Node, records.Record | None]] = []
        best: records.Record | None = None
        if self.store is not None and (held := self.store.get_record(key)) is not None:
            with contextlib.suppress(RecordError):
                best = records.verify_record(key, held[1])
        for node, (ok, value) in zip(nodes, answers):
            record = None
            if ok and isinstance(value, bytes):
                try:
                    record = records.verify_record(key, value)
                except RecordError:
                    self.protocol.counters["bad_record"] += 1
            found.append((node, record))
            if record is not None:
                try:
                    best = record if best is None else records.newer(best, record)
                except RecordError:
                    self.protocol.counters["record_conflict"] += 1
        if best is None:
            return None
        for node, record in found:
            if record is None or record.seq < best.seq:
                self.protocol.spawn(self.protocol.call_put_record(node, key, best.data))
        return best.data

    async def burn(self, key: bytes, secret: bytes, slots: list[bytes] = []) -> int:  # noqa: B006 (read only)
        """Ask every holder of envelope ``key`` (near its id and near each of ``slots``) to delete it, proving the
        right to by revealing its burn ``secret``. Returns how many holders deleted a copy."""
        assert self.protocol is not None
        holders: dict[bytes, Node] = {}
        for found in await asyncio.gather(self.closest(key), *(self.closest(s) for s in slots)):
            holders.update((n.id, n) for n in found)
        for target in (key, *slots):  # and the closest we know, even those a busy lookup did not hear from
            holders.update((n.id, n) for n in self.protocol.router.find_neighbors(Node(target)))
        burned = 0
        for _attempt in range(2):  # one more try for those that did not answer
            nodes = list(holders.values())
            results = await asyncio.gather(*(self.protocol.call_burn(n, key, secret) for n in nodes))
            burned += sum(1 for ok, deleted in results if ok and deleted is True)
            holders = {n.id: n for n, (ok, value) in zip(nodes, results) if not ok and value is None}
            if not holders:
                break
        held = self.store.get_blob(key) if self.store is not None else None
        if held is not None and hmac.compare_digest(env.burn_hash(secret), held[6:22]):
            self.store.delete_blob(key)  # type: ignore[union-attr]
            burned += 1
        self.protocol.burned.add(key)  # never republished from here (a stem's check), never taken back
        self.protocol.pass_burn(key, secret)  # and after the copies the flood left on random nodes
        return burned

    async def fetch_slot(self, slot: bytes, known: set[bytes] = frozenset()) -> list[bytes]:  # type: ignore[assignment]
        """Every envelope in ``slot`` whose id is not in ``known`` (see :meth:`read_slot`)."""
        return (await self.read_slot(slot, known)).wanted

    async def read_slot(
        self,
        slot: bytes,
        known: set[bytes] | frozenset[bytes] = frozenset(),
        want: Callable[[bytes], bool] = lambda head: True,
        limits: ReadLimits | None = None,
    ) -> ReadResult:
        """Read ``slot`` at a cost bounded by ``config.read`` (:mod:`.reader`): the envelopes whose ids are not in
        ``known`` and whose head ``want`` accepts, each checked against its id, its head and its proof of work
        (ours, held locally, first). Ids seen and not wanted come back in ``skipped`` with their expiry. ``limits``
        replaces ``config.read`` for this read (a feed's: more pages, only the newest ids)."""
        assert self.protocol is not None
        holders = await self.slot_holders(slot)
        closest = list(holders)
        known_ids = {n.id for n in holders}
        others = [n for b in self.protocol.router.buckets for n in b.get_nodes() if n.id not in known_ids]
        limits = limits or self.config.read
        holders += gossip.pick(others, limits.extra_holders)
        local_ids = self.protocol.slot_ids(slot)
        read = SlotRead(self.protocol, slot, self.config.pow, limits, known, want)
        result = await read.run(holders, local_ids)
        if any(n.id in result.failed for n in closest) or 4 * sum(n.id in result.unanswered for n in closest) > len(
            closest
        ):
            # one of them failed, or more than a quarter are overdue: nodes left, look again next time. (One merely
            # overdue holder is what 20% loss costs most reads: a lookup per poll for it doubled the read's time.)
            self._planner.forget_holders(slot)
        local: list[bytes] = []
        for blob_id in local_ids:
            if blob_id in known or self.store is None:
                continue
            data = self.store.get_blob(blob_id)
            if data is None:
                continue
            if want(env.head(data)):
                local.append(data)
            else:
                result.skipped[blob_id] = env.parse_outer(data).expires_at
        result.wanted[:0] = local
        return result

    async def slot_ids_at(self, node: Node, slot: bytes) -> list[bytes]:
        """Every id ``node`` lists for ``slot``, paging with its cursor (at most ``config.read.pages_per_holder``
        pages, as a read; stops at the first failure)."""
        assert self.protocol is not None
        ids: list[bytes] = []
        cursor = 0
        for _ in range(self.config.read.pages_per_holder):
            ok, value = await self.protocol.call_slot_page(node, slot, cursor, 256)
            if not ok or not value[0]:
                break
            ids.extend(value[0])
            if value[1] <= cursor:
                break
            cursor = value[1]
        return ids

    async def _anti_entropy(self) -> None:
        """One round: the slots the planner says are due (changed here, or their back-off ran out)."""
        assert self.store is not None
        store = self.store
        assert self.protocol is not None
        if self._lag is not None and self._lag.busy:
            self.protocol.counters["ae_skipped_busy"] += 1  # optional work waits while the loop lags (.loadmeter)
            return
        await self.protocol.probe_failed()  # one peer that failed before: is it back? (churn resets the plan)
        now = time.monotonic()
        protocol = self.protocol
        for slot in self._planner.due(store.slot_ids(), now, lambda s: store.slot_digest(s)[1], protocol.is_close_to):
            # a few random partners among the slot's closest in our own table: no lookup, a few digests
            near = self.protocol.router.find_neighbors(Node(slot))
            _, _, matched = await self._reconcile(slot, self._planner.partners(near))
            self._planner.record(slot, store.slot_digest(slot)[1], matched, time.monotonic())

    async def reconcile(self, slot: bytes) -> tuple[int, int]:
        """Anti-entropy for one slot: compare digests with its k closest nodes; where they differ, push what they
        lack and, if we are a holder ourselves, pull what we lack. Returns (pushed, pulled)."""
        pushed, pulled, _ = await self._reconcile(slot, await self.slot_holders(slot))
        return pushed, pulled

    async def _reconcile(self, slot: bytes, holders: list[Node]) -> tuple[int, int, bool]:
        assert self.protocol is not None and self.store is not None
        ours = set(self.protocol.slot_ids(slot))
        digest = self.store.slot_digest(slot)[1]
        close = self.protocol.is_close_to(slot)
        pushed = pulled = 0
        matched = True
        for node in holders:
            ok, value = await self.protocol.call_slot_digest(node, slot)  # type: ignore[arg-type]
            if not ok:
                self._planner.forget_holders(slot)
                continue
            if value[1] == digest:
                continue
            holder = value[2] if len(value) > 2 else True  # a node that does not say so may be one
            if not close and (not holder or value[0] >= len(ours)):
                # A gossip copy holds part of the slot: its digest never matches a holder's. It only repairs
                # holders that have fewer entries than it has (one that restarted empty, say), never another copy.
                continue
            matched = False
            theirs = set(await self.slot_ids_at(node, slot))
            for key in ours - theirs if holder else ():  # a node outside the k closest refuses appends
                data = self.store.get_blob(key)
                if data is not None and (await self.protocol.call_append(node, slot, data))[0]:
                    pushed += 1
            if close:
                for key in theirs - ours:
                    ok, data = await self.protocol.call_get_blob(node, key)
                    if not (ok and isinstance(data, bytes)):
                        continue
                    # the same checks and fair share as an append from that holder
                    refusal = self.protocol._hold((node.ip, node.port), data, slot=slot, near=None)
                    if refusal in ("quota", "slot_share", "write_rate_limited"):
                        break
                    if refusal is None:
                        ours.add(key)
                        pulled += 1
        self.protocol.counters["ae_pushed"] += pushed
        self.protocol.counters["ae_pulled"] += pulled
        return pushed, pulled, matched

    async def get_blob(self, key: bytes) -> bytes | None:
        """Look up an envelope by its id anywhere in the DHT; only a value that hashes to ``key`` is returned."""
        assert self.protocol is not None
        if self.store is not None:
            held = self.store.get_blob(key)
            if held is not None:
                return held
        node = Node(key)
        nearest = self.protocol.router.find_neighbors(node)
        if not nearest:
            return None
        value = await Lookup(self.protocol, node, nearest, self.ksize, self.alpha).find_value()
        return value if isinstance(value, bytes) and self._valid(value) else None

    @staticmethod
    def _valid(value: bytes) -> bool:
        try:
            env.parse_outer(value)
        except EnvelopeError:
            return False
        return True

    async def get(self, key: bytes) -> bytes | None:  # type: ignore[override]
        """kademlia's ``get`` hashes string keys with SHA-1; here keys are envelope ids (see :meth:`get_blob`)."""
        return await self.get_blob(key)

    async def set(self, key: Any, value: Any) -> bool:  # type: ignore[override]
        """Refused: arbitrary key/value writes are what let anyone overwrite anything in plain kademlia."""
        raise NotImplementedError("komrade nodes store envelopes only: use publish()")

    async def set_digest(self, dkey: bytes, value: bytes) -> bool:  # type: ignore[override]
        """Store an envelope under its id on the id's closest nodes; False (not an exception) if none answer."""
        assert self.protocol is not None
        if env.envelope_id(value) != dkey:
            raise ValueError("an envelope is stored under its own BLAKE2b-160 id only")
        nodes = await self.closest(dkey)
        results = await asyncio.gather(*(self.protocol.call_store(n, dkey, value) for n in nodes))
        return any(ok for ok, _ in results)

    def save_state(self, fname: Any) -> None:  # type: ignore[override]
        raise NotImplementedError("state is saved as JSON in the data directory (routing.json), never pickled")

    @classmethod
    async def load_state(cls, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise NotImplementedError("state is loaded from routing.json by bootstrap(), never unpickled")

    def status(self) -> dict[str, Any]:
        """Numbers an operator or the UI wants: peers, stored envelopes and bytes, uptime, datagram counters."""
        assert self.protocol is not None
        peers = sum(len(b) for b in self.protocol.router.buckets)
        out: dict[str, Any] = {
            "node_id": self.node.id.hex(),
            "address": "%s:%d" % self.address,
            "read_only": self.read_only,
            "peers": peers,
            "uptime_s": round(time.time() - self.started, 1),
            "counters": dict(self.protocol.counters),
        }
        if self.store is not None:
            stats = self.store.stats()
            out.update(envelopes=stats.blobs, bytes=stats.bytes, slots=stats.slots)
        return out
