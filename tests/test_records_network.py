"""Signed mutable records and content-addressed blobs on a real network: what profiles and images stand on."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from pathlib import Path

from komrade_dht import envelope as env
from komrade_dht import records
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig

from .support import CHEAP_POW, shutdown, start_relays


def test_records_cannot_be_forged_or_rolled_back_by_holders_or_anyone(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = NodeConfig(ksize=6, pow=CHEAP_POW, id_bits=4)
        relays = await start_relays(tmp_path, 10, config)
        owner, mallory = Identity.generate(), Identity.generate()
        key = records.record_key(owner.verify_key, b"profile")
        expires = int(time.time()) + 3600
        v1 = records.make_record(owner, b"profile", 1, b"name: Alice", expires)
        v2 = records.make_record(owner, b"profile", 2, b"name: Alice the Great", expires)
        try:
            assert await relays[2].put_record(v1) >= 1
            assert await relays[7].put_record(v2) >= 1
            assert await relays[5].get_record(key) == v2
            holders = await relays[0].closest(key)
            by_id = {r.node.id: r for r in relays}
            # A rollback to v1, straight to every holder of v2: refused (a node a busy lookup missed never had v2).
            for node in holders:
                held = by_id[node.id].store.get_record(key)
                if held is None or held[0] < 2:
                    continue
                ok, why = await relays[0].protocol.call_put_record(node, key, v1)
                assert not ok and why in ("record_stale", "not_close"), why
            assert any((by_id[n.id].store.get_record(key) or (0,))[0] == 2 for n in holders)
            # A forgery: Mallory's record under Alice's key (wrong key), or Alice's bytes with a changed value.
            forged = records.make_record(mallory, b"profile", 9, b"name: Mallory", expires)
            tampered = v2.replace(b"Great", b"Fool!")
            for node in holders:
                ok, why = await relays[0].protocol.call_put_record(node, key, forged)
                assert not ok and why == "record_key_mismatch", why
                ok, why = await relays[0].protocol.call_put_record(node, key, tampered)
                assert not ok and why in ("record_forged", "record_malformed"), why
            # A lying holder serving the old or forged version cannot make a reader accept it: plant them in stores.
            for relay in relays[:3]:
                relay.store.put_record(key, 99, tampered, expires)
            assert await relays[9].get_record(key) == v2
        finally:
            await shutdown(relays)

    asyncio.run(scenario())


def test_blobs_stored_under_their_id_come_back_checked(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = NodeConfig(ksize=4, pow=CHEAP_POW, id_bits=4)
        relays = await start_relays(tmp_path, 8, config)
        client = KomradeNode(None, config=config)
        await client.listen(0, "127.0.0.1")
        await client.bootstrap([relays[0].address])
        blobs = []
        for _ in range(30):
            head = struct.pack(">BBI16s8sB", env.VERSION, env.KIND_SHARED, int(time.time()) + 3600, os.urandom(16),
                               bytes(8), 0)
            blobs.append(env.mint_pow(head + os.urandom(1024 - len(head)), CHEAP_POW, env.NO_SLOT))
        try:
            assert await client.store_blobs(blobs) == len(blobs)
            ids = [env.envelope_id(b) for b in blobs]
            got = await client.fetch_blobs(ids + [os.urandom(20)])
            assert got == dict(zip(ids, blobs)), "every blob back, the unknown id absent"
        finally:
            await shutdown([client, *relays])

    asyncio.run(scenario())
