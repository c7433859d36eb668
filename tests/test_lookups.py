"""Lookups return only peers that answered in this lookup (issue 12): kademlia's NodeHeap.remove is undone when
another reply lists a dead peer again, so a dead peer could come back as one of the "closest"."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from komrade_dht.node import NodeConfig

from .support import CHEAP_POW, shutdown, start_relays


def test_lookups_never_return_peers_that_did_not_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = NodeConfig(ksize=8, pow=CHEAP_POW, id_bits=0, wait_timeout=0.6)
        relays = await start_relays(tmp_path, 45, config)
        for relay in relays[1:]:  # a second round: everyone knows many others, the dead included
            await relay.bootstrap([])
        dead = relays[30:]
        dead_ids = {r.node.id for r in dead}
        for relay in dead:  # gone without a word: their sockets closed, still in every table
            await relay.stop_async()
        alive = relays[:30]
        try:
            returned_dead = 0
            for i in range(12):
                found = await alive[i].closest(os.urandom(20))
                assert found, "a lookup among 30 live nodes finds some"
                returned_dead += sum(1 for n in found if n.id in dead_ids)
            assert returned_dead == 0
        finally:
            await shutdown(alive)

    asyncio.run(scenario())
