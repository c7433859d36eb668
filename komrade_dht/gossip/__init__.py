"""Gossip flooding and anti-entropy: the "dust cloud" (DESIGN.md, "Gossip"). Pure parts, no I/O.

- **Flooding**: a node that first accepts an envelope by gossip stores it and forwards it to ``fanout`` random
  peers with one hop less; the publisher starts with ``hops``, never at the holders it just appended to (they
  would take the copy as a duplicate and end the flood there). The :class:`SeenCache` makes every node forward
  an envelope at most once, and a copy is a one-way ``flood`` datagram (no reply, no retransmission), so a flood
  costs each node at most ``fanout`` datagrams per envelope, once.
- **Anti-entropy**: a node holding a slot periodically compares a digest of the slot's ids with a few random
  nodes among the slot's k closest in its routing table (no lookup) and, where they differ, pushes what they lack and pulls what it lacks; so a node back from a
  restart or a partition converges without anyone resending.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence, TypeVar

from ..storage import ids_digest

T = TypeVar("T")

#: Largest hop budget a peer may ask us to honour.
MAX_HOPS = 8
#: Slots whose holders the planner remembers at most (reads of many slots cache theirs too); the oldest go first.
HOLDERS_CAPACITY = 4096


@dataclass(frozen=True)
class GossipConfig:
    """Flooding and anti-entropy tunables (their cost and coverage: benchmarks/network.py, README)."""

    fanout: int = 3
    """Random peers each node forwards a newly accepted envelope to."""
    hops: int = 3
    """Hop budget the publisher gives an envelope; 0 disables flooding."""
    seen_capacity: int = 100_000
    """Envelope ids remembered as seen (20 bytes each); the oldest are forgotten first."""
    anti_entropy_interval: float = 30.0
    """Seconds between anti-entropy rounds; 0 disables anti-entropy."""
    anti_entropy_slots: int = 8
    """Slots compared per round (changed ones first, then due ones, at random)."""
    max_backoff: int = 5
    """A slot every holder agrees on is compared again after interval x 2^n rounds, n at most this (32 x 30 s)."""
    far_start: int = 2
    """A gossip copy outside a slot's k closest compares it first after interval x 2^far_start (2 min)."""
    holders_ttl: float = 600.0
    """Seconds a slot's holders found by a lookup are reused by reads and anti-entropy (unless one of them fails)."""
    anti_entropy_peers: int = 1
    """Holders a round compares a slot with, drawn at random among its k closest in the routing table. Push-pull
    with one random partner per round spreads a difference to every holder in O(log k) rounds (Demers et al.,
    "Epidemic algorithms for replicated database maintenance", 1987); comparing with all k made every new slot cost
    each of its holders a lookup and k digests, and 3 partners cost 1.5x plain's datagrams at N = 1000 alone."""


@dataclass(frozen=True)
class StemConfig:
    """Dandelion++-style stems: an envelope first travels a short random path of relays, each forwarding it to one
    successor it picked for the epoch, until one of them (with ``fluff_probability`` per hop) publishes it, so the
    first holder cannot tell whether its sender wrote it (benchmarks/stems.py measures what that buys)."""

    fluff_probability: float = 0.3
    """Chance that a stem relay publishes instead of forwarding (0.3: 3.3 hops on average)."""
    max_hops: int = 6
    """A stem never runs longer than this (a relay that receives one with no hops left publishes it)."""
    epoch_seconds: float = 600.0
    """How long a relay keeps its successor (Dandelion++: one per epoch, so paths do not reveal much by varying)."""
    embargo: float = 8.0
    """A stem relay that forwarded an envelope checks after this many seconds that it reached a holder, and
    publishes it itself if not: a black-hole relay further down cannot swallow it."""
    sender_check: float = 10.0
    """The writer checks after this many seconds (plus up to half again, at random) and republishes directly if
    the envelope is not held: a black-hole first hop cannot swallow it either."""


def stem_step(rng: random.Random, config: StemConfig, hops_left: int) -> bool:
    """True if this stem relay should publish ("fluff") now, False if it should forward to its successor."""
    return hops_left <= 0 or rng.random() < config.fluff_probability


class StemRoute:
    """A relay's stem successor for the current epoch, chosen at random among its contacts (pure: give it ``now``)."""

    def __init__(self, config: StemConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self._epoch = -1
        self._successor: tuple[str, int] | None = None

    def successor(
        self, contacts: Sequence[tuple[str, int]], now: float, exclude: tuple[str, int] | None = None
    ) -> tuple[str, int] | None:
        """This epoch's successor address (re-picked at a new epoch or when it left the contacts); never
        ``exclude`` (the peer the stem came from), which then gets another contact for this one envelope."""
        epoch = int(now // self.config.epoch_seconds)
        if epoch != self._epoch or self._successor not in contacts:
            self._epoch = epoch
            self._successor = self._rng.choice(list(contacts)) if contacts else None
        if self._successor is not None and self._successor == exclude:
            others = [c for c in contacts if c != exclude]
            return self._rng.choice(others) if others else None
        return self._successor


class AntiEntropyPlanner:
    """Which held slots to compare with their holders, and when (pure: give it ``now``).

    A slot whose digest matched every holder's is compared again only after a pause that doubles each time
    (``anti_entropy_interval`` x 2^n, at most ``max_backoff`` rounds), and at once when its own digest changed
    here since the last comparison (something arrived or expired). Its holders found by a lookup are reused for
    ``holders_ttl`` seconds, or until one of them fails, instead of a fresh lookup every round.
    """

    def __init__(self, config: GossipConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        #: slot -> (next due time, backoff level, our digest at the last comparison)
        self._state: dict[bytes, tuple[float, int, bytes]] = {}
        self._holders: dict[bytes, tuple[float, list[object]]] = {}
        #: held slots we are not among the k closest of (gossip copies), as ``due`` last found them
        self._far: set[bytes] = set()

    def due(
        self,
        held: Sequence[bytes],
        now: float,
        digest_of: Callable[[bytes], bytes],
        close: Callable[[bytes], bool] = lambda slot: True,
    ) -> list[bytes]:
        """Up to ``anti_entropy_slots`` held slots to compare this round: changed ones first, then due ones.

        A slot we hold as a gossip copy (``close`` says we are not among its k closest) is first compared only
        after ``far_start`` doublings of the interval, and never early because its digest changed: a copy repairs
        holders that lost entries (a wipe, a restart empty), which the publisher's own appends just made unlikely,
        and a copy's digest changes with every other copy that lands. At N = 1000 the copies' early comparisons were
        a fifth of what anti-entropy cost."""
        held_set = set(held)
        for slot in [s for s in self._state if s not in held_set]:
            del self._state[slot]
            self._far.discard(slot)
            self._holders.pop(slot, None)
        changed, due = [], []
        for slot in held:
            state = self._state.get(slot)
            if state is None:
                if close(slot):
                    due.append(slot)
                else:
                    self._far.add(slot)
                    level = min(self.config.far_start, self.config.max_backoff)
                    pause = self.config.anti_entropy_interval * (2**level) * self._rng.uniform(0.9, 1.1)
                    self._state[slot] = (now + pause, level, digest_of(slot))
            elif digest_of(slot) != state[2] and slot not in self._far:
                changed.append(slot)
            elif state[0] <= now:
                if slot in self._far and close(slot):
                    self._far.discard(slot)  # holders left: we are one of the k closest now
                due.append(slot)
        self._rng.shuffle(changed)
        self._rng.shuffle(due)
        return (changed + due)[: self.config.anti_entropy_slots]

    def record(self, slot: bytes, digest: bytes, matched: bool, now: float) -> None:
        """The outcome of comparing ``slot`` (whose digest here is ``digest``): back off while everyone agrees."""
        level = min(self._state.get(slot, (0.0, 0, b""))[1] + 1, self.config.max_backoff) if matched else 0
        pause = self.config.anti_entropy_interval * (2**level) * self._rng.uniform(0.9, 1.1)
        self._state[slot] = (now + pause, level, digest)

    def holders(self, slot: bytes, now: float) -> list[object] | None:
        """The slot's holders found recently, or None when a fresh lookup is due."""
        cached = self._holders.get(slot)
        if cached is not None and cached[0] <= now:
            del self._holders[slot]
            return None
        return cached[1] if cached is not None else None

    def remember_holders(self, slot: bytes, holders: list[object], now: float) -> None:
        self._holders.pop(slot, None)
        self._holders[slot] = (now + self.config.holders_ttl, holders)
        if len(self._holders) > HOLDERS_CAPACITY:
            del self._holders[next(iter(self._holders))]

    def forget_holders(self, slot: bytes) -> None:
        """One of the slot's holders failed: look them up again next time."""
        self._holders.pop(slot, None)

    def partners(self, holders: Sequence[T]) -> list[T]:
        """The holders a round compares a slot with: ``anti_entropy_peers`` of them, at random."""
        return pick(holders, self.config.anti_entropy_peers, self._rng)

    def newcomer(self, node_id: bytes, now: float) -> int:
        """Churn: ``node_id`` joined the routing table, or came back after failing (a restart, a healed partition).
        Each slot whose cached holders it would join (closer to the slot than the farthest of them) looks its holders
        up again and is compared at once, whatever its back-off. Returns how many slots that concerns."""
        joined = int.from_bytes(node_id, "big")
        touched = 0
        for slot, (_, holders) in list(self._holders.items()):
            target = int.from_bytes(slot, "big")
            ids = [getattr(h, "id", None) for h in holders]
            farthest = max((int.from_bytes(i, "big") ^ target for i in ids if isinstance(i, bytes)), default=-1)
            if node_id in ids or (joined ^ target) >= farthest:
                continue
            del self._holders[slot]
            if self._state.pop(slot, None) is not None:  # the holders changed: due() plans it afresh
                self._far.discard(slot)
            touched += 1
        return touched


class SeenCache:
    """A bounded set of envelope ids, forgetting the least recently added first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def add(self, key: bytes) -> bool:
        """Remember ``key``; True if it was not already remembered."""
        if key in self._ids:
            return False
        self._ids[key] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)


def pick(peers: Sequence[T], count: int, rng: random.Random | None = None) -> list[T]:
    """Up to ``count`` distinct peers chosen uniformly at random."""
    rng = rng or random
    return list(peers) if len(peers) <= count else rng.sample(list(peers), count)


def slot_digest(ids: Iterable[bytes]) -> bytes:
    """An order-independent 16-byte digest of a set of ids: equal sets, equal digests (the store keeps it per slot)."""
    return ids_digest(ids)
