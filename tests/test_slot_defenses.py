"""The slot layer's defences, one by one, below the attack scenarios of test_slot_attacks.py (issue 9)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from komrade_dht import envelope as env
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig, nodeid
from komrade_dht.node.protocol import LIGHT_ENTRIES, source_key
from komrade_dht.storage import Store, StoreLimits, ids_digest

from .support import CHEAP_POW, shutdown, start_relays, wait_for

ALICE, BOB = Identity.generate(), Identity.generate()


def sealed(slot: bytes, body: bytes = b"x", pow: env.PowParams = CHEAP_POW) -> bytes:
    return env.seal(ALICE, BOB.public, body, ttl=3600, pow=pow, slot=slot)


# -- node id puzzles ---------------------------------------------------------------------------------------------
def test_node_id_proofs_cost_work_and_cannot_be_chosen() -> None:
    proof = nodeid.mint(10)
    assert nodeid.is_valid(proof, 10)
    assert nodeid.id_from_answer(proof, 10) == nodeid.node_id(proof)
    assert nodeid.id_from_answer(os.urandom(20), 10) is None, "a bare id proves nothing on a puzzle network"
    assert nodeid.id_from_answer(os.urandom(32), 24) is None
    # Without a puzzle (test networks), a bare id is its own proof.
    bare = os.urandom(20)
    assert nodeid.id_from_answer(bare, 0) == bare
    # Work is real: of 2,000 random candidates, about 2000/2^10 pass 10 bits.
    passing = sum(nodeid.is_valid(os.urandom(32), 10) for _ in range(2000))
    assert passing < 20


def test_ids_without_a_valid_proof_stay_out_of_tables_and_lookups(tmp_path: Path) -> None:
    """Eight sybils placed next to a slot with chosen ids (no proof of work for them) are refused by nodes of a
    puzzle network: they are in no routing table and no lookup result, and the DM goes to honest holders."""

    async def scenario() -> None:
        config = NodeConfig(ksize=6, pow=CHEAP_POW, id_bits=8)
        relays = await start_relays(tmp_path, 8, config)
        slot = os.urandom(20)
        sybils = []
        for i in range(8):
            near = (int.from_bytes(slot, "big") ^ (1 << i)).to_bytes(20, "big")
            sybil = KomradeNode(Store(tmp_path / f"sybil{i}.sqlite"), config=config, node_id=near)
            await sybil.listen(0, "127.0.0.1")
            await sybil.bootstrap([relays[0].address])
            sybils.append(sybil)
        try:
            sybil_ids = {s.node.id for s in sybils}
            for relay in relays:
                table = {n.id for b in relay.protocol.router.buckets for n in b.get_nodes()}
                assert not table & sybil_ids
            found = await relays[3].closest(slot)
            assert found and not {n.id for n in found} & sybil_ids
            data = sealed(slot)
            assert await relays[3].publish(slot, data) >= 1
            held = sum(1 for r in relays if r.store.get_blob(env.envelope_id(data)))
            assert held >= 1 and all(s.store.get_blob(env.envelope_id(data)) is None for s in sybils)
        finally:
            await shutdown([*sybils, *relays])

    asyncio.run(scenario())


# -- proof of work bound to the slot -----------------------------------------------------------------------------
def test_one_proof_of_work_buys_one_slot_entry(tmp_path: Path) -> None:
    """The same envelope appended to 200 made-up slots next to a relay: accepted into the slot it was minted for,
    and into another only by the chance a fresh proof of work would have (1 in ~1,750 here: one slot at most)."""

    async def scenario() -> None:
        pow = env.PowParams(trials_per_byte=0.5, memlimit=8192)
        config = NodeConfig(pow=pow)
        relays = await start_relays(tmp_path, 1, config)
        client = KomradeNode(None, config=config)
        await client.listen(0, "127.0.0.1")
        slot = os.urandom(20)
        data = sealed(slot, pow=pow)
        try:
            ok, _ = await client.protocol.call(relays[0].address, "append", slot, data)
            assert ok
            others = [os.urandom(20) for _ in range(200)]
            replies = await asyncio.gather(
                *(client.protocol.call(relays[0].address, "append", s, data) for s in others)
            )
            refused = [r for r in replies if r == (False, "insufficient_work")]
            assert len(refused) >= 199, replies
            assert relays[0].store.stats().slot_entries <= 2
        finally:
            await shutdown([client, *relays])

    asyncio.run(scenario())


# -- digests answered from memory --------------------------------------------------------------------------------
def test_slot_digest_is_incremental_and_matches_the_ids(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite", StoreLimits(max_entries_per_slot=50_000))
    slot = os.urandom(20)
    expires = int(time.time()) + 3600
    blobs = [sealed(slot, os.urandom(8), env.PowParams(trials_per_byte=0)) for _ in range(300)]
    for data in blobs[:200]:
        store.append(slot, data, expires)
    count, digest = store.slot_digest(slot)
    assert (count, digest) == (200, ids_digest(env.envelope_id(b) for b in blobs[:200]))
    for data in blobs[200:]:  # appended after the digest was cached: kept up to date, not recomputed
        store.append(slot, data, expires)
    assert store.slot_digest(slot) == (300, ids_digest(env.envelope_id(b) for b in blobs))
    store.delete_blob(env.envelope_id(blobs[0]))
    assert store.slot_digest(slot) == (299, ids_digest(env.envelope_id(b) for b in blobs[1:]))
    store.close()


def test_slot_digest_costs_the_same_whatever_the_slot_size(tmp_path: Path) -> None:
    """20,000 entries: after the first answer, a digest is a dictionary lookup (the flood test of the issue
    measured 48 ms per request before). Compared with a 10-entry slot in the same run, not against a clock."""
    store = Store(tmp_path / "s.sqlite", StoreLimits(max_entries_per_slot=50_000))
    big, small = os.urandom(20), os.urandom(20)
    expires = int(time.time()) + 3600
    with store._write() as conn:  # fill fast: the digest reads what is stored, whatever wrote it
        for i in range(20_000):
            bid = os.urandom(20)
            conn.execute("INSERT INTO blobs (id, data, size, expires_at) VALUES (?, ?, ?, ?)", (bid, b"", 20, expires))
            conn.execute("INSERT INTO slot_entries (slot_id, blob_id) VALUES (?, ?)", (big, bid))
        for i in range(10):
            bid = os.urandom(20)
            conn.execute("INSERT INTO blobs (id, data, size, expires_at) VALUES (?, ?, ?, ?)", (bid, b"", 20, expires))
            conn.execute("INSERT INTO slot_entries (slot_id, blob_id) VALUES (?, ?)", (small, bid))
    store.slot_digest(big), store.slot_digest(small)

    def cost(slot: bytes) -> float:
        start = time.perf_counter()
        for _ in range(2000):
            store.slot_digest(slot)
        return time.perf_counter() - start

    assert store.slot_digest(big)[0] == 20_000
    assert cost(big) < 5 * cost(small) + 0.05
    store.close()


# -- fair shares of a slot ---------------------------------------------------------------------------------------
def test_sources_share_a_full_slot_and_light_sources_keep_a_reserve(tmp_path: Path) -> None:
    """A slot whose quota one heavy source filled still takes an honest sender's envelope (the reserve for sources
    that added fewer than LIGHT_ENTRIES); and one source cannot take more than its share of the quota."""

    async def scenario() -> None:
        config = NodeConfig(pow=CHEAP_POW)
        relay = KomradeNode(Store(tmp_path / "r.sqlite", StoreLimits(max_entries_per_slot=100)), config=config)
        await relay.listen(0, "127.0.0.1")
        attackers = [KomradeNode(None, config=config) for _ in range(5)]
        honest = KomradeNode(None, config=config)
        for n in (*attackers, honest):
            await n.listen(0, "127.0.0.1")
        slot = os.urandom(20)
        try:
            refused: list[str] = []
            for attacker in attackers:
                for _ in range(30):
                    ok, why = await attacker.protocol.call(relay.address, "append", slot, sealed(slot, os.urandom(8)))
                    if not ok:
                        refused.append(why)
            assert "slot_share" in refused, "one source may fill at most a quarter of the quota"
            assert relay.store.stats().slot_entries >= 100, "the quota itself was filled"
            ok, why = await honest.protocol.call(relay.address, "append", slot, sealed(slot, b"honest"))
            assert (ok, why) == (True, True), "a light source still gets in"
        finally:
            await shutdown([honest, *attackers, relay])

    asyncio.run(scenario())


def test_source_key_groups_an_ip_but_not_loopback_ports() -> None:
    assert source_key(("203.0.113.5", 1)) == source_key(("203.0.113.5", 2))
    assert source_key(("2001:db8::1", 1)) == source_key(("2001:db8::ffff", 9))
    assert source_key(("127.0.0.1", 1)) != source_key(("127.0.0.1", 2))
    assert LIGHT_ENTRIES >= 1


# -- hop budget --------------------------------------------------------------------------------------------------
def test_a_peer_cannot_ask_for_more_hops_than_our_configuration(tmp_path: Path) -> None:
    async def scenario() -> None:
        from komrade_dht.gossip import GossipConfig

        config = NodeConfig(pow=CHEAP_POW, gossip=GossipConfig(fanout=2, hops=1, anti_entropy_interval=0))
        relays = await start_relays(tmp_path, 6, config)
        client = KomradeNode(None, config=config)
        await client.listen(0, "127.0.0.1")
        slot = os.urandom(20)
        data = sealed(slot)
        try:
            ok, accepted = await client.protocol.call(relays[0].address, "gossip", slot, data, 8)
            assert ok and accepted
            # hops clamped to 1: relays[0] forwards to 2 peers with 0 hops left, and they forward nothing
            await wait_for(lambda: sum(r.protocol.counters["gossip_accepted"] for r in relays) >= 2)
            forwarded = sum(r.protocol.counters["gossip_forwarded"] for r in relays)
            assert forwarded <= 2
        finally:
            await shutdown([client, *relays])

    asyncio.run(scenario())


@pytest.mark.parametrize("headers", [2, 8])
def test_work_grows_with_recipient_headers(headers: int) -> None:
    params = env.PowParams()
    assert params.target(1024, 7 * 86400, headers) * headers == pytest.approx(params.target(1024, 7 * 86400), rel=1e-6)


# -- group commit ------------------------------------------------------------------------------------------------
def test_append_many_commits_a_batch_and_refuses_item_by_item(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite", StoreLimits(max_entries_per_slot=3))
    slot = os.urandom(20)
    expires = int(time.time()) + 3600
    blobs = [sealed(slot, os.urandom(8), env.PowParams(trials_per_byte=0)) for _ in range(5)]
    results = store.append_many([(slot, b, expires, 0) for b in blobs[:4]] + [(slot, blobs[0], expires, 0)])
    assert results[:3] == [True, True, True] and isinstance(results[3], str) and results[4] is False
    assert store.append_many([(slot, blobs[4], expires, 1)]) == [True], "a reserve lets one more in"
    store.close()
    reopened = Store(tmp_path / "s.sqlite", StoreLimits(max_entries_per_slot=3))
    assert len(reopened.read_slot(slot, 0, 10)[0]) == 4, "what the batch acknowledged is on disk"
    reopened.close()


def test_appends_in_flight_share_commits_and_each_is_acknowledged_after_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = NodeConfig(pow=CHEAP_POW)
        relay = KomradeNode(Store(tmp_path / "r.sqlite"), config=config)
        await relay.listen(0, "127.0.0.1")
        clients = [KomradeNode(None, config=config) for _ in range(4)]
        for c in clients:
            await c.listen(0, "127.0.0.1")
        slot = os.urandom(20)
        blobs = [sealed(slot, os.urandom(8)) for _ in range(200)]
        try:
            replies = await asyncio.gather(
                *(clients[i % 4].protocol.call(relay.address, "append", slot, b) for i, b in enumerate(blobs))
            )
            assert all(r == (True, True) for r in replies)
            assert relay.store.stats().slot_entries == 200
            assert relay.protocol.counters["group_commits"] < 200, "batches, not one commit per append"
        finally:
            await shutdown([*clients, relay])

    asyncio.run(scenario())
