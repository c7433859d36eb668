"""Anti-entropy and publishing policy (issue 12): decisions tested without sockets, and quorum publishing."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from kademlia.node import Node

from komrade_dht import envelope as env
from komrade_dht.gossip import AntiEntropyPlanner, GossipConfig
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig

from .support import CHEAP_POW, shutdown, start_relays, wait_for


def test_planner_backs_off_while_holders_agree_and_wakes_on_change() -> None:
    config = GossipConfig(anti_entropy_interval=30, anti_entropy_slots=2, max_backoff=3, holders_ttl=100)
    planner = AntiEntropyPlanner(config, random.Random(1))
    a, b, c = b"a" * 20, b"b" * 20, b"c" * 20
    digests = {a: b"1", b: b"1", c: b"1"}
    now = 0.0
    first = planner.due([a, b, c], now, digests.__getitem__)
    assert len(first) == 2, "never more than anti_entropy_slots a round"
    for slot in (a, b, c):
        planner.record(slot, digests[slot], matched=True, now=now)
    assert planner.due([a, b, c], now + 10, digests.__getitem__) == []
    # matched once: due again after ~2 intervals; matched every time: the pause doubles up to 2^max_backoff
    assert set(planner.due([a, b, c], now + 66, digests.__getitem__)) <= {a, b, c}
    pauses = []
    t = 0.0
    for _ in range(6):
        planner.record(a, b"1", matched=True, now=t)
        due_at = next(x for x in range(0, 100_000, 5) if a in planner.due([a], t + x, digests.__getitem__))
        pauses.append(due_at)
        t += due_at
    assert pauses[0] < pauses[1], pauses  # it doubled
    assert all(p <= 30 * 2**3 * 1.1 + 5 for p in pauses), pauses  # and stopped doubling at max_backoff
    # something arrived here: compared at once, back-off forgotten
    digests[a] = b"2"
    assert planner.due([a], t + 1, digests.__getitem__) == [a]
    planner.record(a, b"2", matched=False, now=t + 1)
    assert a not in planner.due([a], t + 2, digests.__getitem__)
    assert a in planner.due([a], t + 40, digests.__getitem__), "after a disagreement: the base interval"
    # holders are reused until their time is up or one fails
    planner.remember_holders(a, ["h1"], now=0)
    assert planner.holders(a, 50) == ["h1"] and planner.holders(a, 150) is None
    planner.remember_holders(a, ["h1"], now=200)
    planner.forget_holders(a)
    assert planner.holders(a, 201) is None
    # slots no longer held are forgotten
    planner.due([], 0, digests.__getitem__)
    assert planner.holders(a, 0) is None


def test_churn_closer_than_the_cached_holders_resets_the_plan() -> None:
    """A node that joins (or comes back) closer to a slot than its farthest cached holder makes that slot look its
    holders up again and compare at once, whatever its back-off; a farther one changes nothing."""
    from types import SimpleNamespace

    planner = AntiEntropyPlanner(GossipConfig(anti_entropy_interval=30, max_backoff=5, holders_ttl=600))
    slot = bytes(20)
    digests = {slot: b"1"}
    near, far = SimpleNamespace(id=b"\x00" * 19 + b"\x10"), SimpleNamespace(id=b"\x00" * 18 + b"\x01\x00")
    for t in range(4):
        planner.record(slot, b"1", matched=True, now=float(t))
    planner.remember_holders(slot, [near, far], now=0)
    assert planner.due([slot], 10, digests.__getitem__) == []  # backed off
    assert planner.newcomer(b"\x00" * 17 + b"\x01\x00\x00", now=10) == 0  # farther than every holder
    assert planner.holders(slot, 10) == [near, far] and planner.due([slot], 10, digests.__getitem__) == []
    assert planner.newcomer(far.id, now=10) == 0  # already one of them
    assert planner.newcomer(b"\x00" * 19 + b"\x20", now=10) == 1  # closer than ``far``
    assert planner.holders(slot, 10) is None and planner.due([slot], 10, digests.__getitem__) == [slot]


def test_publish_returns_at_a_quorum_and_reads_reuse_the_holders_until_one_fails(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = NodeConfig(ksize=8, pow=CHEAP_POW, id_bits=0, publish_quorum=3,
                            gossip=GossipConfig(hops=0, anti_entropy_interval=0))
        relays = await start_relays(tmp_path, 12, config)
        writer = KomradeNode(None, config=config)
        await writer.listen(0, "127.0.0.1")
        await writer.bootstrap([relays[0].address])
        try:
            slot = os.urandom(20)
            data = env.seal(Identity.generate(), Identity.generate().public, b"x", slot=slot, pow=CHEAP_POW)
            acks = await writer.publish(slot, data)
            key = env.envelope_id(data)
            on_disk = sum(r.store.has_blob(key) for r in relays)  # acknowledged means committed, so already there
            assert acks >= 3 and on_disk >= acks
            await wait_for(lambda: sum(r.store.has_blob(key) for r in relays) >= 8)
            # Reads reuse the slot's holders (the planner's cache): a reader polling its slot pays no lookup per
            # poll, until one of them fails to answer.
            def lookups() -> int:
                return sum(r.protocol.counters["rpc_find_node"] for r in relays)

            assert await writer.fetch_slot(slot) == [data]
            before = lookups()
            assert await writer.fetch_slot(slot) == [data]
            assert lookups() == before, "the second read of the slot did no lookup"
            cached = {n.id for n in writer._planner.holders(slot, time.monotonic()) or []}
            gone = next(r for r in relays if r.node.id in cached)
            relays.remove(gone)
            await gone.stop_async()
            assert await writer.fetch_slot(slot) == [data], "a holder gone: the others still answer"

            async def looked_again() -> bool:
                assert await writer.fetch_slot(slot) == [data]
                return writer._planner.holders(slot, time.monotonic()) is None

            # merely overdue once is what loss costs (the cache stays); once its calls have failed, a read looks again
            await wait_for(looked_again, timeout=20, interval=0.2)
            before = lookups()
            assert await writer.fetch_slot(slot) == [data] and lookups() > before
        finally:
            await shutdown([writer, *relays])

    asyncio.run(scenario())


def test_a_gossip_copy_compares_late_and_never_because_other_copies_landed() -> None:
    """A slot held as a gossip copy (not among its k closest) is first compared after interval x 2^far_start and a
    changed digest does not make it urgent; a slot we are a holder of is compared at once, and again when it changes."""
    config = GossipConfig(anti_entropy_interval=30, anti_entropy_slots=8, max_backoff=5, far_start=2)
    planner = AntiEntropyPlanner(config, random.Random(3))
    near, far = b"n" * 20, b"f" * 20
    digests = {near: b"1", far: b"1"}
    close = {near: True, far: False}
    assert planner.due([near, far], 0, digests.__getitem__, close.__getitem__) == [near]
    planner.record(near, b"1", matched=True, now=0)
    digests[far] = b"2"  # another copy landed here
    digests[near] = b"2"
    assert planner.due([near, far], 1, digests.__getitem__, close.__getitem__) == [near], "the holder: at once"
    assert far not in planner.due([near, far], 30 * 4 * 0.9 - 1, digests.__getitem__, close.__getitem__)
    assert far in planner.due([near, far], 30 * 4 * 1.1 + 1, digests.__getitem__, close.__getitem__)
    # the holders around it left, and we are one of the k closest now: it is a holder's slot again
    close[far] = True
    planner.record(far, b"2", matched=False, now=200)
    assert far in planner.due([far], 200 + 30 * 1.1 + 1, digests.__getitem__, close.__getitem__)
    planner.record(far, b"2", matched=True, now=300)
    digests[far] = b"3"
    assert planner.due([far], 301, digests.__getitem__, close.__getitem__) == [far], "changes count again"


def test_a_gossip_copy_repairs_a_holder_but_pushes_nothing_to_a_node_outside_the_k_closest(tmp_path: Path) -> None:
    """slot_digest replies say whether the node counts itself among the slot's k closest: a copy repairs a holder
    that lost the entry and sends nothing to a node that would only refuse it (at N = 1000, 700 of 2,400 appends
    were such refusals)."""

    async def scenario() -> None:
        config = NodeConfig(ksize=4, pow=CHEAP_POW, id_bits=0, gossip=GossipConfig(hops=0, anti_entropy_interval=0))
        relays = await start_relays(tmp_path, 12, config)
        try:
            for relay in relays:  # everyone knows everyone: closeness is the same in every table
                await relay.bootstrap([r.address for r in relays if r is not relay])
            slot = os.urandom(20)
            ranked = sorted(relays, key=lambda r: int.from_bytes(r.node.id, "big") ^ int.from_bytes(slot, "big"))
            holder, outsider, copy = ranked[0], ranked[6], ranked[-1]
            assert holder.protocol.is_close_to(slot) and not outsider.protocol.is_close_to(slot)
            data = env.seal(Identity.generate(), Identity.generate().public, b"x", slot=slot, pow=CHEAP_POW)
            key = env.envelope_id(data)
            assert copy.store.append_many([(slot, data, env.parse_outer(data).expires_at, 0)]) == [True]
            appends = sum(r.protocol.counters["rpc_append"] for r in relays)
            pushed, _ = (await copy._reconcile(slot, [Node(outsider.node.id, *outsider.address)]))[:2]
            assert pushed == 0 and not outsider.store.has_blob(key)
            assert sum(r.protocol.counters["rpc_append"] for r in relays) == appends, "not even asked"
            pushed, _ = (await copy._reconcile(slot, [Node(holder.node.id, *holder.address)]))[:2]
            assert pushed == 1 and holder.store.has_blob(key), "a holder that lacks it gets it"
        finally:
            await shutdown(relays)

    asyncio.run(scenario())


def test_a_read_asks_the_next_holder_beside_one_whose_answer_is_late() -> None:
    """Hedged requests: a holder whose answer is later than its round trips say gets the next holder started beside
    it; the read takes the first good answers it needs and cancels the rest (under 20% loss a third of requests wait
    a retransmission, and the read waited for each)."""
    from types import SimpleNamespace

    from komrade_dht.node.reader import SlotRead, _Holder

    async def scenario() -> None:
        protocol = SimpleNamespace(stall_timeout=lambda addr: 0.05)
        read = SlotRead(protocol, bytes(20), CHEAP_POW, NodeConfig().read, frozenset(), lambda head: True)  # type: ignore[arg-type]
        holders = [_Holder(Node(bytes([i]) * 20, "127.0.0.1", 1000 + i), 60, 120) for i in range(4)]
        never = asyncio.Event()
        started: list[int] = []
        cancelled: list[int] = []

        async def attempt(holder: _Holder) -> bool:
            i = holder.node.id[0]
            started.append(i)
            if i == 0:  # its datagram was lost: no answer before the test ends
                try:
                    await never.wait()
                except asyncio.CancelledError:
                    cancelled.append(i)
                    raise
            return i != 2  # holder 2 answers badly: the next one is asked in its place

        got = await asyncio.wait_for(read._hedged(holders, attempt, 2), 10)
        assert got == 2 and started == [0, 1, 2, 3], started
        assert cancelled == [0], "the late one is not waited for"

    asyncio.run(scenario())
