"""How late the event loop runs its callbacks: when it lags, anti-entropy waits.

A node's traffic is of two kinds: what a user or a peer waits for (lookups, appends, reads, replies, the gossip
flood) and what only repairs (anti-entropy rounds). On an overloaded process the repair queues behind the rest,
replies come late, timeouts fire, retransmissions add to the load, and everything slows together: in the network
lab (N = 100, 20% loss, 30% churn) with the process given about half a core, delivery p50 was 9.6-12.1 s. Skipping
anti-entropy rounds while the loop lags: 6.3-6.7 s, 200/200 (skipping gossip forwarding as well lost 3 of 200 in one
run: the flood's copies help delivery under churn, so it keeps going).

The lag is a property of the event loop, not of a node (a lab runs a thousand nodes on one loop), so there is one
meter per loop, shared by the nodes on it: a timer every ``INTERVAL`` seconds measures how late it fires, smoothed
(EWMA). Nodes :meth:`~LoopLag.acquire` it when they start listening and :meth:`~LoopLag.release` it when they stop;
the timer runs while any node holds it.
"""

from __future__ import annotations

import asyncio
import weakref

#: Seconds between two measurements.
INTERVAL = 0.1
#: Weight of the newest measurement in the smoothed lag.
GAIN = 0.2
#: Smoothed lag (seconds) above which the loop counts as busy. A quiet loop lags well under a millisecond; a
#: saturated one by tens to hundreds.
BUSY_LAG = 0.03

_meters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLag] = weakref.WeakKeyDictionary()


class LoopLag:
    """The smoothed lateness of one event loop's timers (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._holders = 0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.lag = 0.0
        """Smoothed lateness in seconds."""

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> LoopLag:
        """The meter of ``loop`` (one per loop)."""
        meter = _meters.get(loop)
        if meter is None:
            meter = _meters[loop] = cls(loop)
        return meter

    @property
    def busy(self) -> bool:
        return self.lag > BUSY_LAG

    def acquire(self) -> None:
        self._holders += 1
        if self._handle is None:
            self._schedule()

    def release(self) -> None:
        self._holders = max(0, self._holders - 1)
        if self._holders == 0 and self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self.lag = 0.0

    def _schedule(self) -> None:
        self._due = self._loop.time() + INTERVAL
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        late = max(0.0, self._loop.time() - self._due)
        self.lag += GAIN * (late - self.lag)
        self._schedule()
