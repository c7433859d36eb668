"""Retransmission timed from measured round-trip times (RFC 6298), per peer. Pure: no I/O, no clock of its own.

Each peer that answered has a smoothed round-trip time ``srtt`` and a variation ``rttvar``, updated from every reply
to a request that was sent once (Karn's rule: a reply to a retransmitted request may answer any of its copies, so it
says nothing about the round trip). Its retransmission interval is ``rto = srtt + 4 * rttvar`` (at least
``granularity`` above ``srtt``), clamped to ``[min_rto, max_rto]``; a call retransmits after ``rto``, ``2 * rto``,
... and gives up after ``(retransmits + 1) * rto``. A peer never measured gets the interval of every sample taken so
far (the same estimator over all peers: peers of one network tend to be alike), or ``max_rto`` before the first
sample (the configured ``wait_timeout`` spread over the transmissions: the old fixed schedule). A timeout doubles
the peer's interval (bounded by ``max_rto``, measured or not) until its next clean sample, so a peer farther or
slower than the rest is not declared silent in a burst of short timeouts.

So on a quiet loopback network a lost datagram costs ``min_rto`` instead of a third of ``wait_timeout``, and a dead
peer holds a lookup for ``(retransmits + 1) * min_rto``; on a slow link the schedule stretches up to what it was.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

#: RFC 6298's gains: alpha = 1/8 for the mean, beta = 1/4 for the variation.
ALPHA, BETA = 0.125, 0.25


class RttEstimator:
    """Smoothed round-trip time and retransmission interval per peer (bounded: the least recently sampled are
    forgotten first, and then get the default again)."""

    def __init__(
        self,
        max_rto: float,
        *,
        min_rto: float = 0.2,
        granularity: float = 0.01,
        capacity: int = 4096,
    ) -> None:
        if max_rto <= 0 or min_rto <= 0:
            raise ValueError(f"retransmission intervals must be positive (min_rto={min_rto}, max_rto={max_rto})")
        self.max_rto = max_rto
        self.min_rto = min(min_rto, max_rto)
        self.granularity = granularity
        self.capacity = capacity
        #: peer -> (srtt, rttvar, backoff multiplier); srtt and rttvar None for a peer that only timed out
        self._peers: OrderedDict[Hashable, tuple[float | None, float | None, float]] = OrderedDict()
        #: (srtt, rttvar) over every sample, the prior of peers never measured
        self._all: tuple[float, float] | None = None

    def __len__(self) -> int:
        return len(self._peers)

    def measured(self, peer: Hashable) -> bool:
        return self.srtt(peer) is not None

    def srtt(self, peer: Hashable) -> float | None:
        """The peer's smoothed round-trip time in seconds, None if never measured."""
        state = self._peers.get(peer)
        return state[0] if state is not None else None

    def sample(self, peer: Hashable, rtt: float) -> None:
        """A reply to a request sent once arrived ``rtt`` seconds after it left (RFC 6298 section 2)."""
        rtt = max(rtt, 0.0)
        state = self._peers.pop(peer, None)
        self._peers[peer] = (*_update(state[:2] if state is not None else None, rtt), 1.0)  # ends any back-off
        self._all = _update(self._all, rtt)
        if len(self._peers) > self.capacity:
            self._peers.popitem(last=False)

    def timed_out(self, peer: Hashable) -> None:
        """A call to the peer went unanswered: double its interval until the next clean sample (section 5.5)."""
        if self._all is None:
            return  # nothing measured yet: every peer already gets max_rto
        srtt, rttvar, backoff = self._peers.pop(peer, (None, None, 1.0))
        self._peers[peer] = (srtt, rttvar, min(backoff * 2, 64.0))
        if len(self._peers) > self.capacity:
            self._peers.popitem(last=False)

    def rto(self, peer: Hashable) -> float:
        """Seconds between two transmissions of a request to ``peer``."""
        srtt, rttvar, backoff = self._peers.get(peer, (None, None, 1.0))
        if srtt is None or rttvar is None:
            if self._all is None:
                return self.max_rto
            srtt, rttvar = self._all
        return min(max(srtt + max(self.granularity, 4 * rttvar), self.min_rto) * backoff, self.max_rto)

    def late(self, peer: Hashable, floor: float) -> float:
        """Seconds after which a reply from ``peer`` is most likely not coming from this transmission: its measured
        round trip plus four deviations, without the retransmission floor (at least ``floor``; ``max_rto`` before
        any sample). For freeing a lookup's slot, not for retransmitting: a late reply is still used."""
        srtt, rttvar, _ = self._peers.get(peer, (None, None, 1.0))
        if srtt is None or rttvar is None:
            if self._all is None:
                return self.max_rto
            srtt, rttvar = self._all
        return min(max(srtt + max(self.granularity, 4 * rttvar), floor), self.max_rto)

    def schedule(self, peer: Hashable, retransmits: int) -> tuple[list[float], float]:
        """When to retransmit (seconds after the first send) and when to give up, for a request to ``peer``."""
        rto = self.rto(peer)
        return [rto * (i + 1) for i in range(retransmits)], rto * (retransmits + 1)


def _update(state: tuple[float | None, float | None] | None, rtt: float) -> tuple[float, float]:
    """(srtt, rttvar) after the sample ``rtt`` (RFC 6298 section 2: the first sample sets rttvar to half of it)."""
    if state is None or state[0] is None or state[1] is None:
        return rtt, rtt / 2
    srtt, rttvar = state
    return (1 - ALPHA) * srtt + ALPHA * rtt, (1 - BETA) * rttvar + BETA * abs(srtt - rtt)
