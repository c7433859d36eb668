"""The Kademlia protocol, hardened: our subclass of kademlia's ``KademliaProtocol`` (itself rpcudp's ``RPCProtocol``).

What we override, and why (DESIGN.md, "Node and transport"):

- ``datagram_received``: rpcudp decodes with pure-Python umsgpack with no limits and lets exceptions escape
  into the event loop. Here every datagram goes through :mod:`.wire` (C msgpack, limits, shape checks); a bad
  one is dropped, counted, and logged at most once a minute per reason.
- ``_accept_response``: rpcudp matches replies by message id only; we also require the reply to come from the
  address the request went to.
- ``__getattr__``: rpcudp turns any unknown attribute into a network call; we dispatch only the methods in
  :data:`.wire.ARGS`, after validating their arguments.
- ``rpc_store``: kademlia stores anything anywhere and overwrites any key; we store only envelopes that hash to
  their key, on nodes plausibly close to it, and never overwrite.
- node ids: kademlia accepts ids of any type and length; we accept exactly 20 bytes.
- replies: never more than 3x the request's bytes (requests that expect big answers are padded).
- ``welcome_if_new``: kademlia hands stored keys to newcomers after hashing them a second time (so they land
  at the wrong place); we hand off slots by their real id, bounded, as owned tasks.
- routing: one node id per address, so a single ip:port cannot fill buckets with fake ids.
"""

from __future__ import annotations

import asyncio
import heapq
import hmac
import ipaddress
import logging
import os
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Collection
from typing import Any, Awaitable, Callable

from kademlia.node import Node
from kademlia.protocol import KademliaProtocol
from kademlia.routing import RoutingTable

from .. import envelope as env
from .. import gossip, records
from ..errors import EnvelopeError, QuotaExceeded, RecordError
from ..storage import Store
from . import nodeid, wire
from .ratelimit import PeerLimiter, RateLimits, TokenBuckets
from .rtt import RttEstimator

log = logging.getLogger(__name__)

#: How many bytes a request pads itself to, by method, so that its reply fits the 3x rule.
PAD_TO = {
    "find_node": 300, "find_value": 380, "get_blob": 380, "slot_page": 380, "get_heads": 420, "get_record": 330
}
#: Consecutive timeouts after which a peer is dropped from the routing table and skipped for the quiet period.
FAILURES_TO_EVICT = 2
#: Retransmissions of an unanswered request within its timeout (spaced by the peer's measured interval: .rtt).
RETRANSMITS = 2
#: Shortest interval between two transmissions to a peer that answers fast (Linux TCP's minimum RTO): below it, a
#: stall of the event loop on a loaded machine would pass for loss and cost duplicate datagrams.
MIN_RTO = 0.2
#: Shortest time a lookup waits for a reply before it asks one more peer meanwhile (a loaded event loop lags tens of
#: milliseconds: below that, every request would look lost).
STALL_FLOOR = 0.05
#: Requests whose reply waits for the peer's disk (a commit, an fsync): their round trip is not the network's, so
#: they keep the fixed schedule (wait_timeout in RETRANSMITS + 1 steps) and give no round-trip sample. Timed from
#: pings and reads, a burst of stores timed out while the holders were still committing, and retransmissions piled
#: onto the backlog.
WRITES = frozenset({"store", "append", "put_record", "burn", "gossip", "stem"})
#: At most this many slot entries handed to one newcomer.
HANDOFF_LIMIT = 256
#: Slots examined between two yields to the event loop during a hand-off scan (keeps pings answered fast).
HANDOFF_CHUNK = 64
#: Seconds between two hand-off scans (newcomers that answered meanwhile are handled together).
HANDOFF_INTERVAL = 1.0
#: A source that added fewer entries than this to a slot may use the slot's reserve when the slot is full.
LIGHT_ENTRIES = 16
#: Entries beyond a slot's quota kept for light sources (so junk from a few sources cannot lock honest senders out).
SLOT_RESERVE = 2000
#: One source may add at most 1/SOURCE_SHARE of a slot's quota.
SOURCE_SHARE = 4
#: Group commit: appends that arrive within this many seconds share one transaction (one fsync) ...
GROUP_COMMIT_WINDOW = 0.002
#: ... or at most this many.
GROUP_COMMIT_MAX = 128
#: How many peers a node remembers per envelope for burns: those it heard a copy from, and (more) those it gave one.
LINKS_HEARD, LINKS_GIVEN = 16, 48
#: Verification pings to newcomers we send per second at most (and burst), whoever asks.
VERIFY_RATE, VERIFY_BURST = 20.0, 50.0


class RateLimitedLog:
    """Logs each reason at most once per ``interval`` seconds, so a hostile peer cannot fill the disk."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._log = logger
        self._interval = interval
        self._last: dict[str, float] = {}

    def warning(self, reason: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -1e9) >= self._interval:
            self._last[reason] = now
            self._log.warning(msg + " (further ones counted, logged at most once a minute)", *args)


class KomradeRoutingTable(RoutingTable):
    """kademlia's table, with two fixes: the ping of a full bucket's head is a task the protocol owns, and
    ``find_neighbors`` returns the k closest contacts by XOR distance. kademlia's ``TableTraverser`` walks buckets
    in numeric order, stops early, and returns nothing at all for some table shapes (the network lab saw a client
    with 24 contacts get none), which made publishes land nowhere and readers miss their slot."""

    def find_neighbors(self, node: Node, k: int | None = None, exclude: Node | None = None) -> list[Node]:
        k = k or self.ksize
        contacts = [
            n
            for bucket in self.buckets
            for n in bucket.nodes.values()
            if n.id != node.id and (exclude is None or not n.same_home_as(exclude))
        ]
        return heapq.nsmallest(k, contacts, key=node.distance_to)

    def add_contact(self, node: Node) -> None:
        index = self.get_bucket_for(node)
        bucket = self.buckets[index]
        if bucket.add_node(node):
            return
        if bucket.has_in_range(self.node) or bucket.depth() % 5 != 0:
            self.split_bucket(index)
            self.add_contact(node)
        else:
            self.protocol.spawn(self.protocol.call_ping(bucket.head()))


class KomradeProtocol(KademliaProtocol):
    """One UDP endpoint of a komrade node. ``store`` is None on read-only nodes (they hold nothing for others)."""

    def __init__(
        self,
        source_node: Node,
        store: Store | None,
        ksize: int,
        *,
        read_only: bool = False,
        wait_timeout: float = 2.0,
        quiet_period: float = 15.0,
        pow: env.PowParams = env.PowParams(),
        limits: RateLimits = RateLimits(),
        gossip_config: gossip.GossipConfig = gossip.GossipConfig(),
        max_contacts: int = 0,
        id_bits: int = 0,
        id_proof: bytes | None = None,
        stem_config: gossip.StemConfig | None = None,
        group_commit: bool = True,
    ) -> None:
        super().__init__(source_node, store, ksize)
        #: leading zero bits a node id's proof must show on this network (:mod:`.nodeid`); our own proof
        self.id_bits = id_bits
        self.id_proof = id_proof
        #: node id -> address of contacts that proved their id to us (answered a ping with a valid proof)
        self._proven: OrderedDict[bytes, tuple[str, int]] = OrderedDict()
        self._wait_timeout = wait_timeout
        #: per-peer round-trip times: a call's retransmissions and timeout follow them (``wait_timeout`` at most)
        self.rtt = RttEstimator(wait_timeout / (RETRANSMITS + 1), min_rto=MIN_RTO)
        #: msg id -> when a request still sent only once left (Karn's rule: only those give round-trip samples)
        self._sent_once: dict[bytes, float] = {}
        self.router = KomradeRoutingTable(self, ksize, source_node)
        self.store = store
        self.read_only = read_only
        self.pow = pow
        self.limiter = PeerLimiter(limits)
        self.gossip = gossip_config
        self.max_contacts = max_contacts
        self.seen = gossip.SeenCache(gossip_config.seen_capacity)
        #: Envelopes deleted by a burn, refused if they come back (from a holder that missed the burn).
        self.burned = gossip.SeenCache(gossip_config.seen_capacity)
        #: Burns that arrived before the copy (the flood or a background append was still on its way): id -> burn
        #: hash. A copy that arrives later is refused if its own burn hash matches, which nobody can forge without
        #: the secret, so a note can only ever stop the envelope it names.
        self.burn_notes: OrderedDict[bytes, bytes] = OrderedDict()
        self.counters: Counter[str] = Counter()
        self._log = RateLimitedLog(log)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._by_addr: dict[tuple[str, int], bytes] = {}
        self._quiet_period = quiet_period
        # consecutive timeouts per address, and when the last one was: (count, monotonic time)
        self._failures: dict[tuple[str, int], tuple[int, float]] = {}
        self._outstanding: dict[bytes, tuple[asyncio.Future[Any], list[asyncio.TimerHandle], tuple[str, int]]] = {}
        #: entries each source added per slot (memory only, bounded): the fair share of a slot's quota
        self._slot_sources: OrderedDict[bytes, Counter[str]] = OrderedDict()
        #: addresses we are checking with a ping before they may enter the routing table
        self._verifying: set[tuple[str, int]] = set()
        self._verify_budget = TokenBuckets(VERIFY_RATE, VERIFY_BURST, 1)
        #: newcomers that answered us, waiting for the next hand-off scan
        self._newcomers: dict[bytes, Node] = {}
        self._handoff_task: asyncio.Task[Any] | None = None
        #: group commit of appends: the batch waiting for its transaction, and the timer that flushes it
        self.group_commit = group_commit
        self._batch: list[tuple[wire.Request, tuple[str, int], bytes, bytes, int, str]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        #: Dandelion++ stems: this epoch's successor, and what the node above does to publish ("fluff") or check
        self.stem_config = stem_config
        self.stem_route = gossip.StemRoute(stem_config or gossip.StemConfig())
        self._stem_rng = random.Random()
        self.on_fluff: Callable[[bytes, bytes], Awaitable[Any]] | None = None
        #: Called with a node id that joined the table or came back after failing (anti-entropy looks again).
        self.on_churn: Callable[[bytes], None] | None = None
        self.stemmed = gossip.SeenCache(gossip_config.seen_capacity // 10)
        #: envelope id -> peers it was flooded to or from: the path a burn takes to the cloud's copies
        self._flood_links: OrderedDict[bytes, list[tuple[str, int]]] = OrderedDict()
        self.on_embargo: Callable[[bytes, bytes], Awaitable[Any]] | None = None
        self._handlers: dict[str, Callable[..., Any]] = {
            "ping": self.rpc_ping,
            "find_node": self.rpc_find_node,
            "find_value": self.rpc_find_value,
            "get_blob": self.rpc_get_blob,
            "store": self.rpc_store,
            "append": self.rpc_append,
            "slot_page": self.rpc_slot_page,
            "burn": self.rpc_burn,
            "gossip": self.rpc_gossip,
            "flood": self.rpc_gossip,
            "slot_digest": self.rpc_slot_digest,
            "get_heads": self.rpc_get_heads,
            "put_record": self.rpc_put_record,
            "stem": self.rpc_stem,
            "get_record": self.rpc_get_record,
        }

    # -- tasks -------------------------------------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task this protocol owns; it is cancelled by :meth:`close`."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.counters["task_error"] += 1
            self._log.warning("task_error", "background task failed: %r", task.exception())

    def close(self) -> None:
        self._flush_batch()  # what was checked and is waiting is committed and acknowledged, not dropped
        for task in list(self._tasks):
            task.cancel()
        for future, timers, _ in self._outstanding.values():
            for timer in timers:
                timer.cancel()
            if not future.done():
                future.set_result((False, None))
        self._outstanding.clear()
        self._sent_once.clear()
        if self.transport is not None:
            self.transport.close()

    def __getattr__(self, name: str) -> Any:
        # rpcudp turns unknown attributes into remote calls; a typo must be an AttributeError instead.
        raise AttributeError(name)

    # -- datagrams ---------------------------------------------------------------------------------------
    def _drop(self, reason: str, addr: Any) -> None:
        self.counters["dropped"] += 1
        self.counters[f"dropped_{reason}"] += 1
        self._log.warning(reason, "dropped a datagram from %s: %s", addr, reason)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.counters["datagrams_in"] += 1
        self.counters["bytes_in"] += len(data)
        if data[:1] == wire.REQUEST and not self.limiter.allow_request((addr[0], addr[1]), time.monotonic()):
            self._drop("rate_limited", addr)  # before decoding: an over-eager peer costs us no parsing
            return
        try:
            msg = wire.decode(data)
        except wire.BadMessage as exc:
            self._drop(exc.reason, addr)
            return
        if isinstance(msg, wire.Response):
            self._accept_response(msg, addr)
            return
        if self._failures and self._failures.pop((addr[0], addr[1]), None) is not None:
            # it is talking to us: back from a restart or a healed partition, not silent
            if msg.sender_id is not None and self.on_churn is not None:
                self.on_churn(msg.sender_id)
        try:
            wire.check_args(msg.method, msg.args)
        except wire.BadMessage as exc:
            self._drop(exc.reason, addr)
            if msg.method not in wire.ONE_WAY:
                self._reply(addr, msg, False, exc.reason)
            return
        self.counters[f"rpc_{msg.method}"] += 1
        if msg.method == "append" and self.group_commit and self.store is not None:
            self._defer_append(msg, (addr[0], addr[1]))
            return
        try:
            ok, value = self._handle(msg, (addr[0], addr[1]))
        except Exception:  # a bug in a handler must not take the node down, nor leak a traceback to the peer
            log.exception("handler for %s failed", msg.method)
            self.counters["handler_error"] += 1
            ok, value = False, "internal_error"
        if msg.method in wire.ONE_WAY:
            if not ok:
                self.counters[f"refused_{msg.method}"] += 1
            return
        self._reply(addr, msg, ok, value)

    def _reply(self, addr: Any, request: wire.Request, ok: bool, value: Any) -> None:
        data = wire.encode_response(request.msg_id, ok, value)
        budget = min(wire.MAX_DATAGRAM, wire.AMPLIFICATION * request.size)
        if len(data) > budget:
            self.counters["reply_too_large"] += 1
            data = wire.encode_response(request.msg_id, False, "reply_too_large")
        self._send(data, addr)

    def _send(self, data: bytes, addr: Any) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.counters["datagrams_out"] += 1
        self.counters["bytes_out"] += len(data)
        self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP errors: not our problem, not a crash either
        self.counters["icmp_error"] += 1

    def _accept_response(self, msg: wire.Response, addr: Any) -> None:
        entry = self._outstanding.get(msg.msg_id)
        if entry is None:
            self._drop("unexpected_reply", addr)
            return
        future, timers, expected = entry
        if (addr[0], addr[1]) != expected:
            self._drop("reply_from_wrong_address", addr)
            return
        if self._failures.pop(expected, None) is not None and self.on_churn is not None and msg.ok:
            node_id = self._by_addr.get(expected)
            if node_id is not None:
                self.on_churn(node_id)  # it answers again
        del self._outstanding[msg.msg_id]
        sent = self._sent_once.pop(msg.msg_id, None)
        if sent is not None:
            self.rtt.sample(expected, time.monotonic() - sent)
        for timer in timers:
            timer.cancel()
        if not future.done():
            future.set_result((True, msg) if msg.ok else (False, msg.value))

    async def probe_failed(self) -> bool:
        """Ping the peer whose last failure is the oldest (one per call, silent or not): a peer back from a restart
        or across a healed partition answers, and is reported as churn (both sides skip each other as silent
        otherwise, and nothing else would bring a healed partition's halves together). True if it answered."""
        if not self._failures:
            return False
        addr = min(self._failures, key=lambda a: self._failures[a][1])
        count, _ = self._failures.pop(addr)
        self.counters["probe_failed_peer"] += 1
        ok, _ = await self.call(addr, "ping")
        if not ok:
            self._failures[addr] = (max(count, self._failures.get(addr, (0, 0.0))[0]) + 1, time.monotonic())
        else:
            # one came back: the network may have healed, so every silent peer gets one more chance (one more
            # failure makes it silent again)
            self._failures = {a: (min(n, FAILURES_TO_EVICT - 1), last) for a, (n, last) in self._failures.items()}
            if self.on_churn is not None and (node_id := self._by_addr.get(addr)) is not None:
                self.on_churn(node_id)
        return ok

    def soft_timeout(self, addr: tuple[str, int]) -> float:
        """Seconds after which a request to ``addr`` is overdue for a lookup: just past its first retransmission."""
        return self.rtt.rto((addr[0], addr[1])) * 1.35

    def stall_timeout(self, addr: tuple[str, int]) -> float:
        """Seconds after which a lookup stops counting a request to ``addr`` against its parallelism: the peer's
        measured round trip plus four deviations (at least STALL_FLOOR). Under 20% loss a third of round trips lose a
        datagram; waiting past the 0.2 s retransmission floor for each made a 100-node lookup take 0.9 s at p50."""
        return self.rtt.late((addr[0], addr[1]), STALL_FLOOR)

    def is_silent(self, addr: tuple[str, int]) -> bool:
        """Whether ``addr`` failed at least FAILURES_TO_EVICT times in a row, the last within the quiet period."""
        count, last = self._failures.get(addr, (0, 0.0))
        return count >= FAILURES_TO_EVICT and time.monotonic() - last < self._quiet_period

    def _retransmit(self, msg_id: bytes, data: bytes, addr: Any) -> None:
        entry = self._outstanding.get(msg_id)
        if entry is not None and not entry[0].done():
            self.counters["retransmits"] += 1
            self._sent_once.pop(msg_id, None)
            self._send(data, addr)

    def _timeout(self, msg_id: bytes) -> None:
        entry = self._outstanding.pop(msg_id, None)
        self._sent_once.pop(msg_id, None)
        if entry is None:
            return
        self.counters["timeouts"] += 1
        self.rtt.timed_out(entry[2])
        # A peer that timed out twice in a row is not asked again for a short while, so lookups that learn of it
        # from others' (stale) tables do not each wait a full timeout on it. (Counted also when the caller stopped
        # waiting.) One timeout is not enough: under 20% loss, 5% of live peers miss all three transmissions.
        if len(self._failures) > 4096:
            self._failures.clear()
        count, _ = self._failures.get(entry[2], (0, 0.0))
        self._failures[entry[2]] = (count + 1, time.monotonic())
        if not entry[0].done():
            entry[0].set_result((False, None))

    async def call(
        self, addr: tuple[str, int], method: str, *args: Any, retransmit: bool = True
    ) -> tuple[bool, Any]:
        """Call ``method`` on the node at ``addr``; (True, value) on success, (False, error code or None) otherwise.
        ``retransmit=False`` sends one datagram only (to addresses that have not yet shown they are a node)."""
        if self.transport is None or self.transport.is_closing():
            return False, "closed"
        if self.is_silent((addr[0], addr[1])):
            self.counters["skipped_silent_peer"] += 1
            return False, "silent"  # not a fresh timeout: the peer stays in the routing table
        msg_id = os.urandom(wire.ID_LEN)
        sender = None if self.read_only else self.source_node.id
        data = wire.encode_request(msg_id, method, sender, list(args), PAD_TO.get(method, 0))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        # Retransmit the same datagram (same id: every RPC is idempotent) twice within the timeout, each after the
        # peer's measured retransmission interval, so one lost datagram costs about a round trip's worth of waiting
        # instead of the whole call; a peer never measured gets wait_timeout / 3 steps.
        peer = (addr[0], addr[1])
        if method in WRITES:
            step = self._wait_timeout / (RETRANSMITS + 1)
            resend_at, timeout = [step * (i + 1) for i in range(RETRANSMITS)], self._wait_timeout
        else:
            resend_at, timeout = self.rtt.schedule(peer, RETRANSMITS)
        if not retransmit:
            resend_at = []
        timers = [loop.call_later(delay, self._retransmit, msg_id, data, addr) for delay in resend_at]
        timers.append(loop.call_later(timeout, self._timeout, msg_id))
        self._outstanding[msg_id] = (future, timers, peer)
        if method not in WRITES:
            self._sent_once[msg_id] = time.monotonic()
        self._send(data, addr)
        ok, value = await future
        if ok:
            return True, value.value
        return False, value

    # -- handlers ----------------------------------------------------------------------------------------
    def _handle(self, msg: wire.Request, addr: tuple[str, int]) -> tuple[bool, Any]:
        if msg.sender_id is not None:
            if msg.sender_id == self.source_node.id:
                return False, "same_node_id"
            self._consider(Node(msg.sender_id, addr[0], addr[1]))
        budget = min(wire.MAX_DATAGRAM, wire.AMPLIFICATION * msg.size)
        return self._handlers[msg.method](addr, *msg.args, budget=budget)

    def rpc_ping(self, sender: tuple[str, int], *, budget: int) -> tuple[bool, Any]:
        return True, self.id_proof if self.id_proof is not None else self.source_node.id

    def _contacts(self, key: bytes, sender: tuple[str, int], budget: int) -> list[list[Any]]:
        exclude = Node(bytes(20), sender[0], sender[1])
        contacts: list[list[Any]] = []
        size = 1 + 21 + 8  # framing, msg id, status and list headers
        for node in self.router.find_neighbors(Node(key), exclude=exclude):
            entry = [node.id, node.ip, node.port]
            cost = 22 + 2 + len(node.ip) + 4
            if size + cost > budget:
                break
            size += cost
            contacts.append(entry)
        return contacts

    def rpc_find_node(self, sender: tuple[str, int], key: bytes, *, budget: int) -> tuple[bool, Any]:
        return True, self._contacts(key, sender, budget)

    def rpc_find_value(self, sender: tuple[str, int], key: bytes, *, budget: int) -> tuple[bool, Any]:
        value = self.store.get_blob(key) if self.store is not None else None
        if value is not None:
            return True, {"value": value}
        return True, self._contacts(key, sender, budget)

    def rpc_get_blob(self, sender: tuple[str, int], key: bytes, *, budget: int) -> tuple[bool, Any]:
        return True, self.store.get_blob(key) if self.store is not None else None

    def _accept_envelope(
        self, sender: tuple[str, int], key: bytes | None, data: bytes, slot: bytes
    ) -> str | None:
        """Why we refuse to hold ``data`` for ``key`` (an error code), or None if we take it. Cheap checks first.
        ``key`` None: a gossiped copy, which any node may hold (no closeness check). ``slot``: what the proof of
        work must be bound to (NO_SLOT for a blob stored under its id only)."""
        if self.store is None or self.read_only:
            return "read_only"
        try:
            env.parse_outer(data)
        except EnvelopeError:
            return "bad_envelope"
        if key is not None and not self.is_close_to(key):
            return "not_close"
        if self.was_burned(env.envelope_id(data), data):
            return "burned"
        if not env.check_pow(data, self.pow, slot):
            return "insufficient_work"
        if not self.limiter.allow_write(sender, len(data), time.monotonic()):
            return "write_rate_limited"
        return None

    def _hold(self, sender: tuple[str, int], value: bytes, *, slot: bytes | None, near: bytes | None) -> str | None:
        """Validate and keep an envelope (in ``slot``, or only under its id); an error code if refused. The ack
        that follows is sent after the store committed it. A slot's quota is shared among sources: one source may
        fill at most 1/SOURCE_SHARE of it, and sources that added little may use a reserve beyond it."""
        refusal = self._accept_envelope(sender, near, value, env.NO_SLOT if slot is None else slot)
        if refusal:
            return refusal
        assert self.store is not None
        expires_at = env.parse_outer(value).expires_at
        try:
            if slot is None:
                self.store.put_blob(env.envelope_id(value), value, expires_at)
            else:
                source, reserve = self._share(slot, sender)
                if reserve < 0:
                    return "slot_share"
                if self.store.append(slot, value, expires_at, reserve=reserve):
                    self._count_source(slot, source)
                self._link(env.envelope_id(value), sender)
        except QuotaExceeded:
            return "quota"
        self.seen.add(env.envelope_id(value))
        return None

    def _defer_append(self, msg: wire.Request, addr: tuple[str, int]) -> None:
        """Group commit: check an append now (the cheap checks, the fair share), keep it for the batch that commits
        within ``GROUP_COMMIT_WINDOW`` (or at ``GROUP_COMMIT_MAX`` entries), and answer when that batch is on disk.
        A busy relay pays one fsync per batch instead of one per envelope; an ack still means "committed"."""
        try:
            if msg.sender_id is not None:
                if msg.sender_id == self.source_node.id:
                    self._reply(addr, msg, False, "same_node_id")
                    return
                self._consider(Node(msg.sender_id, addr[0], addr[1]))
            slot, value = msg.args
            refusal = self._accept_envelope(addr, slot, value, slot)
            source, reserve = self._share(slot, addr)
            if refusal is None and reserve < 0:
                refusal = "slot_share"
        except Exception:
            log.exception("append check failed")
            self.counters["handler_error"] += 1
            refusal = "internal_error"
        if refusal is not None:
            self._reply(addr, msg, False, refusal)
            return
        self._batch.append((msg, addr, slot, value, reserve, source))
        if len(self._batch) >= GROUP_COMMIT_MAX:
            self._flush_batch()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(GROUP_COMMIT_WINDOW, self._flush_batch)

    def _flush_batch(self) -> None:
        """Commit the pending appends in one transaction, then acknowledge each (or say why it was refused)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._batch = self._batch, []
        if not batch or self.store is None:
            return
        burned = [entry for entry in batch if self.was_burned(env.envelope_id(entry[3]), entry[3])]
        for msg, addr, *_ in burned:  # a burn came while the batch waited: it wins
            self._reply(addr, msg, False, "burned")
        batch = [entry for entry in batch if entry not in burned]
        if not batch:
            return
        items = [(slot, value, int.from_bytes(value[2:6], "big"), reserve) for _, _, slot, value, reserve, _ in batch]
        try:
            results: list[Any] = self.store.append_many(items)
        except Exception:
            log.exception("group commit failed; nothing of the batch was acknowledged")
            self.counters["handler_error"] += 1
            results = ["internal_error"] * len(batch)
        self.counters["group_commits"] += 1
        for (msg, addr, slot, value, _, source), result in zip(batch, results):
            if result is True or result is False:
                if result:
                    self._count_source(slot, source)
                self._link(env.envelope_id(value), addr)
                self.seen.add(env.envelope_id(value))
                self._reply(addr, msg, True, True)
            else:
                self._reply(addr, msg, False, "quota" if result != "internal_error" else result)

    def _share(self, slot: bytes, sender: tuple[str, int]) -> tuple[str, int]:
        """``(source, reserve)`` for an append from ``sender`` to ``slot``: the reserve this source may use (the
        slot's reserve while it added fewer than LIGHT_ENTRIES, else 0), or -1 once it used up its share."""
        assert self.store is not None
        source = source_key(sender)
        counts = self._slot_sources.get(slot)
        added = counts[source] if counts is not None else 0
        if added >= self.store.limits.max_entries_per_slot // SOURCE_SHARE:
            return source, -1
        return source, SLOT_RESERVE if added < LIGHT_ENTRIES else 0

    def _count_source(self, slot: bytes, source: str) -> None:
        counts = self._slot_sources.pop(slot, None) or Counter()
        counts[source] += 1
        self._slot_sources[slot] = counts
        if len(self._slot_sources) > 10_000:
            self._slot_sources.popitem(last=False)

    def rpc_store(self, sender: tuple[str, int], key: bytes, value: bytes, *, budget: int) -> tuple[bool, Any]:
        if env.envelope_id(value) != key:
            return False, "id_mismatch"
        refusal = self._hold(sender, value, slot=None, near=key)
        return (False, refusal) if refusal else (True, True)

    def rpc_append(self, sender: tuple[str, int], slot: bytes, value: bytes, *, budget: int) -> tuple[bool, Any]:
        refusal = self._hold(sender, value, slot=slot, near=slot)
        return (False, refusal) if refusal else (True, True)

    def rpc_gossip(
        self, sender: tuple[str, int], slot: bytes, value: bytes, hops: int, *, budget: int
    ) -> tuple[bool, Any]:
        """Accept a flooded envelope into the dust cloud (any node may hold any slot's copies), and forward it
        once, to ``fanout`` random peers, while the hop budget lasts."""
        self._link(env.envelope_id(value), sender)
        if env.envelope_id(value) in self.seen:
            self.counters["gossip_duplicate"] += 1
            return True, False
        refusal = self._hold(sender, value, slot=slot, near=None)
        if refusal:
            return False, refusal
        self.counters["gossip_accepted"] += 1
        hops = min(hops, self.gossip.hops)  # a peer cannot buy a wider flood than our own configuration
        if hops > 0:
            self.forward(slot, value, hops - 1, exclude=(sender,))
        return True, True

    def rpc_stem(
        self, sender: tuple[str, int], slot: bytes, value: bytes, hops: int, *, budget: int
    ) -> tuple[bool, Any]:
        """One hop of a stem: check the envelope as a holder would (without keeping it), then either publish it
        ("fluff", with ``fluff_probability`` or when no hop is left) or pass it to this epoch's successor, and
        publish it ourselves if it has not reached a holder after the embargo."""
        if self.store is None or self.read_only or self.stem_config is None or self.on_fluff is None:
            return False, "no_stems"
        key = env.envelope_id(value)
        if key in self.stemmed or key in self.seen:
            return False, "seen"  # the stem looped back (or it is out already): the one who sent it fluffs it
        try:
            env.parse_outer(value)
        except EnvelopeError:
            return False, "bad_envelope"
        if self.was_burned(key, value):
            return False, "burned"
        if not env.check_pow(value, self.pow, slot):
            return False, "insufficient_work"
        if not self.limiter.allow_write(sender, len(value), time.monotonic()):
            return False, "write_rate_limited"
        self.stemmed.add(key)  # not ``seen``: when the flood comes by, this node takes and forwards it as any other
        self.counters["stem_received"] += 1
        hops = min(hops, self.stem_config.max_hops)
        if gossip.stem_step(self._stem_rng, self.stem_config, hops):
            self.counters["stem_fluffed"] += 1
            self.spawn(self.on_fluff(slot, value))
        else:
            self.send_stem(slot, value, hops - 1, exclude=sender)
        return True, True

    def send_stem(self, slot: bytes, value: bytes, hops: int, exclude: tuple[str, int] | None = None) -> bool:
        """Pass an envelope to this epoch's stem successor (and arm the embargo); False if there is none."""
        contacts = [(n.ip, n.port) for b in self.router.buckets for n in b.get_nodes()]
        successor = self.stem_route.successor(contacts, time.time(), exclude)
        if successor is None:
            return False
        self.counters["stem_forwarded"] += 1

        async def forward() -> None:
            ok, _ = await self.call(successor, "stem", slot, value, hops)
            assert self.stem_config is not None
            if ok:
                await asyncio.sleep(self.stem_config.embargo * random.uniform(1.0, 1.5))
            if self.on_embargo is not None:
                await self.on_embargo(slot, value)

        self.spawn(forward())
        return True

    def forward(self, slot: bytes, value: bytes, hops: int, exclude: Collection[tuple[str, int]] = ()) -> int:
        """Send an envelope to ``fanout`` random peers with ``hops`` left, none of them in ``exclude`` (who sent it
        to us, or the holders its publisher just gave it to: a copy sent to them would stop there as a duplicate);
        returns how many were picked."""
        self.seen.add(env.envelope_id(value))
        contacts = [n for b in self.router.buckets for n in b.get_nodes() if (n.ip, n.port) not in exclude]
        peers = gossip.pick(contacts, self.gossip.fanout)
        for peer in peers:
            self._link(env.envelope_id(value), (peer.ip, peer.port), gave=True)
            self.counters["gossip_forwarded"] += 1
            self.notify((peer.ip, peer.port), "flood", slot, value, hops)
        return len(peers)

    def notify(self, addr: tuple[str, int], method: str, *args: Any) -> bool:
        """Send a one-way request (:data:`wire.ONE_WAY`): one datagram, no reply awaited, no retransmission.
        False if it was not sent (closed, or the peer is silent)."""
        assert method in wire.ONE_WAY
        if self.transport is None or self.transport.is_closing() or self.is_silent((addr[0], addr[1])):
            return False
        sender = None if self.read_only else self.source_node.id
        self._send(wire.encode_request(os.urandom(wire.ID_LEN), method, sender, list(args)), addr)
        return True

    def rpc_slot_digest(self, sender: tuple[str, int], slot: bytes, *, budget: int) -> tuple[bool, Any]:
        """How many entries we hold for ``slot``, an order-free digest of their ids (anti-entropy's probe), and
        whether we count ourselves among its k closest (a gossip copy does not push to a node that is not: it would
        refuse the append). Kept by the store incrementally: the answer costs the same whatever the slot's size."""
        if self.store is None:
            return True, [0, bytes(16), False]
        count, digest = self.store.slot_digest(slot)
        return True, [count, digest, self.is_close_to(slot)]

    def rpc_get_heads(self, sender: tuple[str, int], ids: list[bytes], *, budget: int) -> tuple[bool, Any]:
        """The heads (fixed fields and recipient headers) of the envelopes ``ids``, in order, nil where we hold
        none; as many as fit the reply budget (a reader asks again for the rest)."""
        heads: list[bytes | None] = []
        size = 1 + 21 + 8
        for key in ids:
            data = self.store.get_blob(key) if self.store is not None else None
            item = env.head(data) if data is not None else None
            cost = 3 + (len(item) if item is not None else 0)
            if size + cost > budget:
                break
            size += cost
            heads.append(item)
        return True, heads

    def slot_ids(self, slot: bytes) -> list[bytes]:
        """Every live id we hold in ``slot``."""
        if self.store is None:
            return []
        out: list[bytes] = []
        cursor = 0
        while True:
            ids, cursor = self.store.read_slot(slot, cursor, 1000)
            if not ids:
                return out
            out.extend(ids)

    def rpc_slot_page(
        self, sender: tuple[str, int], slot: bytes, cursor: int, limit: int, *, budget: int
    ) -> tuple[bool, Any]:
        if self.store is None:
            return True, [[], cursor]
        fit = max(1, (budget - 1 - 21 - 16) // 22)
        ids, next_cursor = self.store.read_slot(slot, cursor, min(limit, fit))
        return True, [ids, next_cursor]

    def rpc_put_record(self, sender: tuple[str, int], key: bytes, data: bytes, *, budget: int) -> tuple[bool, Any]:
        """Keep a signed mutable record (BEP 44): only one whose signature verifies under ``key`` and whose ``seq``
        is higher than what we hold; nobody but its owner can write it, nobody can roll it back."""
        if self.store is None or self.read_only:
            return False, "read_only"
        try:
            record = records.verify_record(key, data)
        except RecordError as exc:
            return False, _record_code(exc)
        if not self.is_close_to(key):
            return False, "not_close"
        if not self.limiter.allow_write(sender, len(data), time.monotonic()):
            return False, "write_rate_limited"
        held = self.store.get_record(key)
        if held is not None:
            try:
                if not records.supersedes(records.verify_record(key, held[1]), record):
                    return True, True  # the very record we hold
            except RecordError as exc:  # older (a rollback) or conflicting
                return False, _record_code(exc)
        try:
            stored = self.store.put_record(key, record.seq, data, record.expires_at)
        except QuotaExceeded:
            return False, "quota"
        return (True, True) if stored else (False, "record_stale")

    def rpc_get_record(self, sender: tuple[str, int], key: bytes, *, budget: int) -> tuple[bool, Any]:
        held = self.store.get_record(key) if self.store is not None else None
        return True, None if held is None else held[1]

    def rpc_burn(self, sender: tuple[str, int], key: bytes, secret: bytes, *, budget: int) -> tuple[bool, Any]:
        """Delete an envelope whoever reveals its burn secret: no identity needed, only knowledge of the content."""
        held = self.store.get_blob(key) if self.store is not None else None
        if held is None:
            if self.store is not None and len(secret) <= 64:
                self.burn_notes[key] = env.burn_hash(secret)  # the copy may still be on its way here
                self.burn_notes.move_to_end(key)
                if len(self.burn_notes) > self.gossip.seen_capacity // 10:
                    self.burn_notes.popitem(last=False)
            return True, False
        if not hmac.compare_digest(env.burn_hash(secret), held[6:22]):
            return False, "wrong_burn_secret"
        assert self.store is not None
        self.store.delete_blob(key)
        self.burned.add(key)
        self.counters["burned"] += 1
        self.pass_burn(key, secret, exclude=sender)
        return True, True

    def was_burned(self, key: bytes, data: bytes) -> bool:
        """``data`` (envelope ``key``) was burned here, or a burn for it came before it did."""
        if key in self.burned:
            return True
        note = self.burn_notes.get(key)
        if note is None or not hmac.compare_digest(note, data[6:22]):
            return False
        self.burned.add(key)
        return True

    def pass_burn(self, key: bytes, secret: bytes, exclude: tuple[str, int] | None = None) -> None:
        """A holder that deleted a copy passes the burn on to ``fanout`` random peers, as the flood passed the
        envelope: peers that hold a gossip copy delete it and pass it on in turn; the others answer and stop. It
        follows the copies, once per node (a burned id is not burned twice), with no hop budget to abuse: only a
        node that really held the envelope forwards, and only whoever can read it knows the secret."""
        contacts = [(n.ip, n.port) for b in self.router.buckets for n in b.get_nodes()]
        targets = set(self._flood_links.pop(key, ())) | set(gossip.pick(contacts, self.gossip.fanout))
        for addr in targets - {exclude}:
            self.counters["burn_passed"] += 1
            self.spawn(self.call(addr, "burn", key, secret))

    def _link(self, key: bytes, addr: tuple[str, int], *, gave: bool = False) -> None:
        """Remember that ``addr`` sent us, or got from us (``gave``), a copy of ``key`` (flooded or appended): where a
        burn of it goes next. Those we gave a copy to are always kept (at most ``LINKS_GIVEN``: fanout, holders,
        hand-offs): only we can lead a burn to them; those that sent us one are kept while there is room (a
        popular node hears from many, and each sender is reached through its own links too)."""
        links = self._flood_links.pop(key, [])
        if addr not in links and len(links) < (LINKS_GIVEN if gave else LINKS_HEARD):
            links.append(addr)
        self._flood_links[key] = links
        if len(self._flood_links) > self.gossip.seen_capacity // 10:
            self._flood_links.popitem(last=False)

    def is_close_to(self, key: bytes) -> bool:
        """Plausibly among the k closest to ``key``: fewer than k known nodes are closer than we are."""
        target = Node(key)
        ours = self.source_node.distance_to(target)
        closer = [n for n in self.router.find_neighbors(target) if n.distance_to(target) < ours]
        return len(closer) < self.router.ksize

    # -- routing -----------------------------------------------------------------------------------------
    def _consider(self, node: Node) -> None:
        """A request named ``node`` as its sender. A contact we know is refreshed; a new one enters the routing
        table only after it answers one ping from us (one datagram, rate-limited), so a forged sender address
        never draws traffic (lookups, digests, hand-offs) to a victim."""
        addr = (node.ip, node.port)
        if self._by_addr.get(addr) == node.id and not self.router.is_new_node(node):
            self.router.add_contact(node)
            return
        if addr in self._verifying or len(self._verifying) >= 256:
            return
        if self.max_contacts and self.contact_count() >= self.max_contacts and not self._room_possible(node):
            return
        if not self._verify_budget.take(None, time.monotonic()):
            self.counters["verify_rate_limited"] += 1
            return
        self._verifying.add(addr)
        self.counters["verify_ping"] += 1

        async def verify() -> None:
            try:
                ok, value = await self.call(addr, "ping", retransmit=False)
                if ok and nodeid.id_from_answer(value, self.id_bits) == node.id:
                    self.mark_proven(node)
                    self.welcome_if_new(node)
            finally:
                self._verifying.discard(addr)

        self.spawn(verify())

    def mark_proven(self, node: Node) -> None:
        """``node`` answered a ping with a valid proof of its id, from its address."""
        self._proven.pop(node.id, None)
        self._proven[node.id] = (node.ip, node.port)
        if len(self._proven) > 20_000:
            self._proven.popitem(last=False)

    def proven(self, node: Node) -> bool:
        """Whether ``node`` proved its id from its address (always, on a network with ``id_bits == 0``)."""
        return self.id_bits == 0 or self._proven.get(node.id) == (node.ip, node.port)

    async def prove(self, node: Node) -> bool:
        """Ask ``node`` for the proof of its id (one ping) unless it already gave it; whether it is proven."""
        if self.proven(node):
            return True
        ok, value = await self.call((node.ip, node.port), "ping")
        if ok and nodeid.id_from_answer(value, self.id_bits) == node.id:
            self.mark_proven(node)
            return True
        self.counters["unproven_id"] += 1
        return False

    def welcome_if_new(self, node: Node) -> None:
        """Add ``node`` (which answered us) to the table; if it is new, queue it for the hand-off of slots it
        should hold (Kademlia section 2.5)."""
        addr = (node.ip, node.port)
        previous = self._by_addr.get(addr)
        if previous is not None and previous != node.id:
            # One id per address: a new id from the same ip:port replaces the old one instead of adding to it.
            self.router.remove_contact(Node(previous, node.ip, node.port))
            self.counters["id_changed_at_address"] += 1
        if not self.router.is_new_node(node):
            self.router.add_contact(node)
            return
        if self.max_contacts and self.contact_count() >= self.max_contacts and not self._make_room_for(node):
            self.counters["contact_refused_cap"] += 1
            return
        self._by_addr[addr] = node.id
        self.router.add_contact(node)
        if self.on_churn is not None:
            self.on_churn(node.id)
        if self.store is not None and len(self._newcomers) < 256:
            self._newcomers[node.id] = node
            if self._handoff_task is None or self._handoff_task.done():
                self._handoff_task = self.spawn(self._hand_off_worker())

    async def _hand_off_worker(self) -> None:
        """One scan at a time, at most one per HANDOFF_INTERVAL, yielding to the loop every HANDOFF_CHUNK slots."""
        while self._newcomers:
            batch, self._newcomers = self._newcomers, {}
            plan = await self._slots_to_hand_off(list(batch.values()))
            for node, slots in plan.items():
                if slots:
                    self.spawn(self._hand_off(node, slots))
            await asyncio.sleep(HANDOFF_INTERVAL)

    async def _slots_to_hand_off(self, newcomers: list[Node]) -> dict[Node, list[bytes]]:
        """Kademlia section 2.5: for each newcomer, the slots for which it is among the k closest we know and we
        are the closest holder (the newcomers themselves left out of "what we knew"). Slot ids are used as they
        are (kademlia re-hashes keys)."""
        assert self.store is not None
        plan: dict[Node, list[bytes]] = {n: [] for n in newcomers}
        fresh = {n.id for n in newcomers}
        for i, slot in enumerate(self.store.slot_ids()):
            if i and i % HANDOFF_CHUNK == 0:
                await asyncio.sleep(0)
            target = Node(slot)
            neighbors = [n for n in self.router.find_neighbors(target, self.router.ksize + len(fresh))
                         if n.id not in fresh][: self.router.ksize]
            if neighbors and self.source_node.distance_to(target) >= neighbors[0].distance_to(target):
                continue
            bound = neighbors[-1].distance_to(target) if len(neighbors) >= self.router.ksize else None
            for node in newcomers:
                if bound is None or node.distance_to(target) < bound:
                    plan[node].append(slot)
        return plan

    def contact_count(self) -> int:
        return sum(len(bucket) for bucket in self.router.buckets)

    def _farthest_if_closer(self, node: Node) -> Node | None:
        """Our farthest contact, if ``node`` is closer to us than it (then ``node`` may take its place at the cap)."""
        farthest = max(
            (n for b in self.router.buckets for n in b.get_nodes()), key=self.source_node.distance_to, default=None
        )
        if farthest is None or node.distance_to(self.source_node) >= farthest.distance_to(self.source_node):
            return None
        return farthest

    def _room_possible(self, node: Node) -> bool:
        """Whether :meth:`_make_room_for` could take ``node``."""
        return self._farthest_if_closer(node) is not None

    def _make_room_for(self, node: Node) -> bool:
        """At the contact cap: a newcomer closer to us than our farthest contact replaces it (the near buckets
        decide which slots we hold); anyone else is refused. True if there is room now."""
        farthest = self._farthest_if_closer(node)
        if farthest is None:
            return False
        self.forget(farthest)
        self.counters["contact_replaced_cap"] += 1
        return True

    def forget(self, node: Node) -> None:
        """Remove a contact from the routing table and from the one-id-per-address map."""
        self.router.remove_contact(node)
        if self._by_addr.get((node.ip, node.port)) == node.id:
            del self._by_addr[(node.ip, node.port)]

    async def _hand_off(self, node: Node, slots: list[bytes]) -> None:
        """Append what the newcomer should hold to it, at most HANDOFF_LIMIT entries."""
        assert self.store is not None
        sent = 0
        for slot in slots:
            for _, data, _ in self.store.slot_entries(slot):
                self._link(env.envelope_id(data), (node.ip, node.port), gave=True)
                ok, _ = await self.call((node.ip, node.port), "append", slot, data)
                sent += 1
                if sent >= HANDOFF_LIMIT or (not ok and self.is_silent((node.ip, node.port))):
                    return

    def handle_call_response(self, result: tuple[bool, Any], node: Node) -> tuple[bool, Any]:
        if not result[0]:
            if result[1] is None and self._failures.get((node.ip, node.port), (0, 0.0))[0] >= FAILURES_TO_EVICT:
                self.forget(node)
            return result
        if self.proven(node):
            self.welcome_if_new(node)
        else:
            self._consider(node)
        return result

    # -- calls the crawlers make, with replies validated -------------------------------------------------
    async def call_ping(self, node_to_ask: Node) -> tuple[bool, Any]:
        ok, value = await self.call((node_to_ask.ip, node_to_ask.port), "ping")
        if ok and nodeid.id_from_answer(value, self.id_bits) != node_to_ask.id:
            ok, value = False, "wrong_id"
        elif ok:
            self.mark_proven(node_to_ask)
        return self.handle_call_response((ok, value), node_to_ask)

    async def call_find_node(self, node_to_ask: Node, node_to_find: Node) -> tuple[bool, Any]:
        ok, value = await self.call((node_to_ask.ip, node_to_ask.port), "find_node", node_to_find.id)
        if ok and not (isinstance(value, list) and all(wire.is_contact(c) for c in value)):
            self.counters["bad_reply"] += 1
            ok, value = False, "bad_reply"
        if ok:
            value = [tuple(c) for c in value]
        if ok and not await self.prove(node_to_ask):
            ok, value = False, "unproven"  # a lookup counts only nodes that proved their id
        return self.handle_call_response((ok, value), node_to_ask)

    async def call_find_value(self, node_to_ask: Node, node_to_find: Node) -> tuple[bool, Any]:
        ok, value = await self.call((node_to_ask.ip, node_to_ask.port), "find_value", node_to_find.id)
        if ok and isinstance(value, dict):
            blob = value.get("value")
            if not (len(value) == 1 and isinstance(blob, bytes) and env.envelope_id(blob) == node_to_find.id):
                self.counters["bad_reply"] += 1
                ok, value = False, "bad_reply"
        elif ok and isinstance(value, list) and all(wire.is_contact(c) for c in value):
            value = [tuple(c) for c in value]
        elif ok:
            self.counters["bad_reply"] += 1
            ok, value = False, "bad_reply"
        if ok and not await self.prove(node_to_ask):
            ok, value = False, "unproven"
        return self.handle_call_response((ok, value), node_to_ask)

    async def call_store(self, node_to_ask: Node, key: bytes, value: bytes) -> tuple[bool, Any]:
        result = await self.call((node_to_ask.ip, node_to_ask.port), "store", key, value)
        return self.handle_call_response(result, node_to_ask)

    async def call_append(self, node_to_ask: Node, slot: bytes, value: bytes) -> tuple[bool, Any]:
        self._link(env.envelope_id(value), (node_to_ask.ip, node_to_ask.port), gave=True)  # where a burn of it goes next
        result = await self.call((node_to_ask.ip, node_to_ask.port), "append", slot, value)
        return self.handle_call_response(result, node_to_ask)

    async def call_slot_page(self, node_to_ask: Node, slot: bytes, cursor: int, limit: int) -> tuple[bool, Any]:
        ok, value = await self.call((node_to_ask.ip, node_to_ask.port), "slot_page", slot, cursor, limit)
        if ok and not (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], list)
            and all(wire.is_id(i) for i in value[0])
            and wire.is_uint(value[1])
        ):
            self.counters["bad_reply"] += 1
            ok, value = False, "bad_reply"
        return self.handle_call_response((ok, value), node_to_ask)

    async def call_burn(self, node_to_ask: Node, key: bytes, secret: bytes) -> tuple[bool, Any]:
        result = await self.call((node_to_ask.ip, node_to_ask.port), "burn", key, secret)
        return self.handle_call_response(result, node_to_ask)

    async def call_slot_digest(self, node_to_ask: Node, slot: bytes) -> tuple[bool, Any]:
        ok, value = await self.call((node_to_ask.ip, node_to_ask.port), "slot_digest", slot)
        if ok and not (
            isinstance(value, list) and len(value) in (2, 3) and wire.is_uint(value[0])
            and isinstance(value[1], bytes) and len(value[1]) == 16 and (len(value) == 2 or isinstance(value[2], bool))
        ):
            self.counters["bad_reply"] += 1
            ok, value = False, "bad_reply"
        return self.handle_call_response((ok, value), node_to_ask)

    async def call_put_record(self, node_to_ask: Node, key: bytes, data: bytes) -> tuple[bool, Any]:
        result = await self.call((node_to_ask.ip, node_to_ask.port), "put_record", key, data)
        return self.handle_call_response(result, node_to_ask)

    async def call_get_record(self, node_to_ask: Node, key: bytes) -> tuple[bool, Any]:
        ok, value = await self.call((node_to_ask.ip, node_to_ask.port), "get_record", key)
        if ok and value is not None and not (isinstance(value, bytes) and len(value) <= 900):
            self.counters["bad_reply"] += 1
            ok, value = False, "bad_reply"
        return self.handle_call_response((ok, value), node_to_ask)

    async def call_get_heads(self, node_to_ask: Node, ids: list[bytes]) -> tuple[bool, Any]:
        ok, value = await self.call((node_to_ask.ip, node_to_ask.port), "get_heads", ids)
        if ok and not (
            isinstance(value, list)
            and len(value) <= len(ids)
            and all(h is None or (isinstance(h, bytes) and len(h) <= 1024) for h in value)
        ):
            self.counters["bad_reply"] += 1
            ok, value = False, "bad_reply"
        return self.handle_call_response((ok, value), node_to_ask)

    async def call_get_blob(self, node_to_ask: Node, key: bytes) -> tuple[bool, Any]:
        ok, value = await self.call((node_to_ask.ip, node_to_ask.port), "get_blob", key)
        if ok and value is not None and not (isinstance(value, bytes) and env.envelope_id(value) == key):
            self.counters["bad_reply"] += 1
            ok, value = False, "bad_reply"
        return self.handle_call_response((ok, value), node_to_ask)


def source_key(addr: tuple[str, int]) -> str:
    """Who a slot's fair share is counted for: the IP (an IPv6 /64), or ip:port on loopback, where every peer
    of a test network or a one-machine lab shares one IP."""
    try:
        ip = ipaddress.ip_address(addr[0])
    except ValueError:
        return addr[0]
    if ip.is_loopback:
        return f"{addr[0]}:{addr[1]}"
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _record_code(exc: RecordError) -> str:
    """The short error code a refused record is answered with (the class name, snake case)."""
    name = type(exc).__name__.removeprefix("Record")
    return "record_" + "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
