"""Reading a slot at a cost the reader chooses, whoever lies.

Anyone can compute a slot id and place a node next to it, so a holder's answers are claims, not facts. A read:

1. asks every holder it found (the k closest, plus a few random contacts beyond them, so a handful of ids placed
   next to a slot cannot hide it) for the slot's ``(count, digest)``, and goes on once every holder answered or
   failed, or once some answered and every one still silent is overdue (unanswered past its first
   retransmission, by its own measured round trips: most likely gone). What holders answer never ends the wait
   early, so a liar answering first cannot keep the reader from hearing the others;
2. groups holders by digest (holders with equal digests hold equal sets) and pages the ids of two holders per
   group, each within ``pages_per_holder`` pages, and never more than ``ids_per_read`` distinct ids in all; a
   holder whose whole listing does not match the digest it claimed is struck and the group's next holder paged;
3. fetches the *heads* of unknown ids in batches (``get_heads``: fixed fields and recipient headers, ~111 bytes
   each), from holders that listed them, and keeps the envelopes the caller wants (``want(head)``: a trial
   decryption of the header for a DM; everything for a public feed);
4. fetches those envelopes whole, checking each against its id, its head and its proof of work for this slot.

A holder that lists ids it then cannot produce, or answers with something malformed, takes a strike; after
``strikes`` of them every id only it listed is dropped. Nothing in a read falls back to a DHT lookup per id.
Requests are paced per holder under the rate limits honest nodes apply (:class:`~.ratelimit.RateLimits`) and kept
to ``in_flight`` at once, so the reader's own burst never makes honest holders drop it and time out.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

from kademlia.node import Node

from .. import envelope as env
from ..errors import EnvelopeError
from ..gossip import slot_digest

if TYPE_CHECKING:
    from .protocol import KomradeProtocol


@dataclass(frozen=True)
class ReadLimits:
    """What one slot read may cost the reader at most. Defaults suit a DM sync over a loopback or a WAN network."""

    extra_holders: int = 8
    """Random contacts beyond the k closest also asked (a slot eclipsed by ids placed next to it is still read)."""
    pages_per_holder: int = 120
    """slot_page requests per holder paged (~50 ids per page)."""
    ids_per_read: int = 12_000
    """Distinct ids considered per read: what a lying holder can make the reader look at, at most."""
    heads_per_request: int = 10
    """Ids per get_heads request (~111 bytes per one-header head; the reply stays under one datagram)."""
    in_flight: int = 24
    """Requests this read keeps in flight at once."""
    per_holder_rate: float = 60.0
    """Requests per second sent to one holder (honest nodes allow 100/s from one peer, with a burst of 300)."""
    per_holder_burst: float = 120.0
    strikes: int = 3
    """Failures (an id it listed and cannot produce, a malformed answer) after which a holder is ignored."""
    unique_ids_per_holder: int = 1000
    """Ids listed by one holder and no other that a read looks at, at most, per holder (a liar's list is its own)."""
    requests_per_holder: int = 300
    """Requests one read sends to one holder, at most, whatever it answers."""
    newest: int = 0
    """If > 0, only the ``newest`` unknown ids listed last (newest by arrival, as holders list them) go on to heads
    and envelopes: a feed reads a page of recent posts, not 10,000 junk entries in front of them (0: every id)."""


@dataclass
class ReadResult:
    """What a read found: ``wanted`` envelopes (verified), and the ``heads`` of ids it saw and did not want
    (with their expiry, so a reader can remember them until they expire), plus figures."""

    wanted: list[bytes] = field(default_factory=list)
    skipped: dict[bytes, int] = field(default_factory=dict)
    holders: int = 0
    requests: int = 0
    dropped_holders: int = 0
    overdue_holders: int = 0
    """Holders whose digest was still unanswered, past their first retransmission, when the read went on."""
    unanswered: set[bytes] = field(default_factory=set)
    """Node ids of the holders whose digest did not come back (failed, or overdue)."""
    failed: set[bytes] = field(default_factory=set)
    """Of those, the ones whose call failed (an error, a timeout, a peer known to be silent), not merely overdue."""


class _Holder:
    def __init__(self, node: Node, rate: float, burst: float) -> None:
        self.node = node
        self.strikes = 0
        self.requests = 0
        self.tokens = burst
        self.rate, self.burst = rate, burst
        self.last = time.monotonic()
        self.ids: list[bytes] = []
        #: when its current request left (after the pacing and the in-flight gate)
        self.sent_at: float | None = None

    async def pace(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / self.rate)
            self.tokens = 1
            self.last = time.monotonic()
        self.tokens -= 1


class SlotRead:
    """One bounded read of one slot (see the module docstring)."""

    def __init__(
        self,
        protocol: KomradeProtocol,
        slot: bytes,
        pow: env.PowParams,
        limits: ReadLimits,
        known: set[bytes] | frozenset[bytes],
        want: Callable[[bytes], bool],
    ) -> None:
        self.protocol = protocol
        self.slot = slot
        self.pow = pow
        self.limits = limits
        self.known = known
        self.want = want
        self.result = ReadResult()
        self._gate = asyncio.Semaphore(limits.in_flight)
        self._holders: dict[bytes, _Holder] = {}
        self._where: dict[bytes, list[_Holder]] = {}

    async def run(self, holders: list[Node], local_ids: list[bytes]) -> ReadResult:
        for node in holders:
            self._holders.setdefault(node.id, _Holder(node, self.limits.per_holder_rate, self.limits.per_holder_burst))
        self.result.holders = len(self._holders)
        groups = await self._digests()
        await asyncio.gather(*(self._page_group(key, group) for key, group in groups))
        self._cap_unique()
        local = set(local_ids)
        wanted = [i for i in self._where if i not in self.known and i not in local]
        if self.limits.newest > 0:
            wanted = self._newest(wanted)
        heads = await self._heads(wanted)
        keep = [i for i, h in heads.items() if self._wants(i, h)]
        blobs = await asyncio.gather(*(self._blob(i, heads[i]) for i in keep))
        self.result.wanted.extend(b for b in blobs if b is not None)
        self.result.dropped_holders = sum(1 for h in self._holders.values() if h.strikes >= self.limits.strikes)
        return self.result

    # -- steps -----------------------------------------------------------------------------------------------
    async def _call(self, holder: _Holder, method: str, *args: object) -> tuple[bool, object]:
        if holder.strikes >= self.limits.strikes or holder.requests >= self.limits.requests_per_holder:
            return False, "ignored"
        holder.requests += 1
        async with self._gate:
            await holder.pace()
            self.result.requests += 1
            holder.sent_at = time.monotonic()
            return await getattr(self.protocol, f"call_{method}")(holder.node, *args)  # type: ignore[no-any-return]

    def _strike(self, holder: _Holder) -> None:
        holder.strikes += 1

    async def _digests(self) -> list[tuple[tuple[int, bytes], list[_Holder]]]:
        holders = list(self._holders.values())
        for holder in holders:
            holder.sent_at = None
        calls = {asyncio.ensure_future(self._call(h, "slot_digest", self.slot)): h for h in holders}
        try:
            await self._settle(calls)
        finally:
            for task in calls:
                task.cancel()  # overdue: its late answer is not waited for (its timeout still counts against it)
        groups: dict[tuple[int, bytes], list[_Holder]] = defaultdict(list)
        for task, holder in calls.items():
            if not task.done() or task.cancelled():
                self.result.unanswered.add(holder.node.id)
                continue
            ok, value = task.result()
            if not ok:
                self.result.unanswered.add(holder.node.id)
                self.result.failed.add(holder.node.id)
            if ok and value[0] > 0:  # type: ignore[index]
                groups[(value[0], value[1])].append(holder)  # type: ignore[index]
        for group in groups.values():
            random.shuffle(group)  # which two of a group are paged is not up to the holders
        return list(groups.items())

    async def _settle(self, calls: dict[asyncio.Future[tuple[bool, object]], _Holder]) -> None:
        """Wait until every call ended, or until one succeeded and every call still running is overdue."""
        pending = set(calls)
        answered = False
        while pending:
            timeout = None
            if answered:
                sent = [(calls[t].sent_at, calls[t].node) for t in pending]
                if all(at is not None for at, _ in sent):
                    overdue = max(at + self.protocol.soft_timeout((n.ip, n.port)) for at, n in sent)  # type: ignore[operator]
                    timeout = overdue - time.monotonic()
                    if timeout <= 0:
                        self.result.overdue_holders = len(pending)
                        return
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            answered = answered or any(t.result()[0] for t in done)

    async def _page_group(self, key: tuple[int, bytes], group: list[_Holder]) -> None:
        """Page two holders of a digest group. A holder whose whole listing does not match the (count, digest) it
        claimed (a liar repeating honest holders' digest and listing nothing) is struck, and the next holder of the
        group is paged in its place: copying a digest cannot make a reader miss what the honest holders list."""
        count, digest = key

        async def matches(holder: _Holder) -> bool:
            ended = await self._page(holder)
            # truncated by our own bounds (None), or a listing that holds what it claimed: its digest, or more
            # entries (some arrived since the digest); a listing shorter than its claim is the liar's omission
            if ended is None or (ended and (len(holder.ids) > count or slot_digest(holder.ids) == digest)):
                return True
            self._strike(holder)
            return False

        await self._hedged(group, matches, 2)

    async def _hedged(self, holders: list[_Holder], attempt: Callable[[_Holder], Awaitable[bool]], need: int) -> int:
        """Run ``attempt`` on ``holders`` in order, ``need`` at a time, until ``need`` of them succeeded or all ended.
        One whose answer is later than its round trips say it should be (a lost datagram, most likely) gets the next
        holder started beside it (a hedged request, as in "The Tail at Scale"): under 20% loss a third of requests
        wait a retransmission, and the read waited for each. Attempts still running at the end are cancelled."""
        queue = list(holders)
        running: dict[asyncio.Future[bool], _Holder] = {}
        hedge_at: dict[asyncio.Future[bool], float] = {}
        succeeded = 0
        loop = asyncio.get_running_loop()

        def start() -> None:
            holder = queue.pop(0)
            task = asyncio.ensure_future(attempt(holder))
            running[task] = holder
            hedge_at[task] = loop.time() + self.protocol.stall_timeout((holder.node.ip, holder.node.port))

        try:
            while succeeded < need:
                while queue and len(hedge_at) < need - succeeded:  # the late ones no longer count
                    start()
                if not running:
                    break
                timeout = max(0.0, min(hedge_at.values()) - loop.time()) if hedge_at and queue else None
                done, _ = await asyncio.wait(running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    late = min(hedge_at, key=hedge_at.__getitem__)
                    del hedge_at[late]  # it keeps running (a late answer still counts), and the next one starts
                    continue
                for task in done:
                    running.pop(task)
                    hedge_at.pop(task, None)
                    succeeded += task.result()
        finally:
            for task in running:
                task.cancel()
        return succeeded

    async def _page(self, holder: _Holder) -> bool | None:
        """Page ``holder``'s listing: True when it ended, False when the holder failed, None when our bounds
        (pages per holder, ids per read) stopped it first."""
        cursor = 0
        for _ in range(self.limits.pages_per_holder):
            if len(self._where) >= self.limits.ids_per_read:
                return None
            ok, value = await self._call(holder, "slot_page", self.slot, cursor, 256)
            if not ok:
                if value != "ignored":
                    self._strike(holder)
                return False
            ids, next_cursor = value  # type: ignore[misc]
            for key in ids:
                if len(self._where) >= self.limits.ids_per_read and key not in self._where:
                    return None
                self._where.setdefault(key, []).append(holder)
                holder.ids.append(key)
            if not ids or next_cursor <= cursor:
                return True
            cursor = next_cursor
        return None

    def _newest(self, wanted: list[bytes]) -> list[bytes]:
        """The ``limits.newest`` of ``wanted`` nearest the end of some holder's list (its newest arrivals), ids more
        than one holder listed first (what one holder alone lists is most likely made up)."""
        rank: dict[bytes, int] = {}
        for holder in self._holders.values():
            n = len(holder.ids)
            for i, key in enumerate(holder.ids):
                rank[key] = min(rank.get(key, n - i), n - i)
        order = sorted(wanted, key=lambda k: (len(self._where.get(k, ())) < 2, rank.get(k, 1 << 62)))
        keep = set(order[: self.limits.newest])
        return [k for k in wanted if k in keep]

    def _cap_unique(self) -> None:
        """Keep at most ``unique_ids_per_holder`` of the ids each holder alone listed (in the order it listed them):
        honest holders of one slot list the same ids, so what only one lists is most likely made up. (With a single
        holder listing anything, there is nothing to compare with: its list is taken within the other budgets.)"""
        if len({h.node.id for listers in self._where.values() for h in listers}) < 2:
            return
        unique: dict[bytes, int] = defaultdict(int)
        for key, listers in list(self._where.items()):
            if len(listers) == 1:
                holder = listers[0].node.id
                unique[holder] += 1
                if unique[holder] > self.limits.unique_ids_per_holder:
                    del self._where[key]

    async def _heads(self, wanted: list[bytes]) -> dict[bytes, bytes]:
        """Heads of ``wanted``, asked of holders that listed them, in batches, retrying other listers."""
        heads: dict[bytes, bytes] = {}
        pending = list(wanted)
        for _attempt in range(3):
            if not pending:
                break
            by_holder: dict[bytes, list[bytes]] = defaultdict(list)
            for key in pending:
                live = [h for h in self._where[key] if h.strikes < self.limits.strikes]
                if live:
                    by_holder[random.choice(live).node.id].append(key)
            batches = [
                (self._holders[hid], ids[i : i + self.limits.heads_per_request])
                for hid, ids in by_holder.items()
                for i in range(0, len(ids), self.limits.heads_per_request)
            ]
            answers = await asyncio.gather(*(self._heads_of(h, ids) for h, ids in batches))
            missing: list[bytes] = []
            for found, lacking in answers:
                heads.update(found)
                missing.extend(lacking)
            pending = missing
        return heads

    async def _heads_of(self, holder: _Holder, ids: list[bytes]) -> tuple[dict[bytes, bytes], list[bytes]]:
        found: dict[bytes, bytes] = {}
        rest = list(ids)
        while rest:
            ok, value = await self._call(holder, "get_heads", rest)
            if not ok or not value:
                if value != "ignored":
                    self._strike(holder)
                break
            for key, head in zip(rest, value):  # type: ignore[call-overload]
                if head is None or not self._valid_head(head):
                    self._strike(holder)  # it listed the id: it should hold the envelope
                    self._forget(key, holder)
                else:
                    found[key] = head
            rest = rest[len(value) :]  # type: ignore[arg-type]
        return found, [k for k in ids if k not in found and self._where.get(k)]

    def _valid_head(self, head: bytes) -> bool:
        try:
            env.parse_head(head)
        except EnvelopeError:
            return False
        return True

    def _wants(self, key: bytes, head: bytes) -> bool:
        if self.want(head):
            return True
        self.result.skipped[key] = int.from_bytes(head[2:6], "big")
        return False

    def _forget(self, key: bytes, holder: _Holder) -> None:
        listers = self._where.get(key)
        if listers and holder in listers:
            listers.remove(holder)

    async def _blob(self, key: bytes, head: bytes) -> bytes | None:
        """The envelope ``key`` from one of the holders that listed it (hedged: a late one gets the next beside it)."""
        found: list[bytes] = []

        async def fetch(holder: _Holder) -> bool:
            ok, value = await self._call(holder, "get_blob", key)
            if ok and isinstance(value, bytes) and self._valid_blob(value, head):
                found.append(value)
                return True
            if value != "ignored":
                self._strike(holder)
            return False

        await self._hedged(list(self._where.get(key, [])), fetch, 1)
        return found[0] if found else None

    def _valid_blob(self, data: bytes, head: bytes) -> bool:
        try:
            env.parse_outer(data)
        except EnvelopeError:
            return False
        return env.head(data) == head and env.check_pow(data, self.pow, self.slot)
