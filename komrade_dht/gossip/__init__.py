"""Gossip flooding and anti-entropy: the "dust cloud" (DESIGN.md, "Gossip"). Pure parts, no I/O.

- **Flooding**: a node that first accepts an envelope by gossip stores it and forwards it to ``fanout`` random
  peers with one hop less; the publisher starts with ``hops``. The :class:`SeenCache` makes every node forward
  an envelope at most once, so a flood costs each node at most ``fanout`` datagrams per envelope, once.
- **Anti-entropy**: a node holding a slot periodically compares a digest of the slot's ids with the slot's k
  closest nodes and, where they differ, pushes what they lack and pulls what it lacks; so a node back from a
  restart or a partition converges without anyone resending.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Sequence, TypeVar

from ..storage import ids_digest

T = TypeVar("T")

#: Largest hop budget a peer may ask us to honour.
MAX_HOPS = 8


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
    """Slots compared per round (picked at random among those held)."""


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
