"""Lookups return only peers that answered in this lookup (issue 12): kademlia's NodeHeap.remove is undone when
another reply lists a dead peer again, so a dead peer could come back as one of the "closest"."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from komrade_dht.node import KomradeNode, NodeConfig

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


def test_a_join_survives_losing_the_first_replies_to_its_lookup(tmp_path: Path) -> None:
    """A node joining through one peer that answered its ping but whose first two find_node datagrams were lost still
    joins (the lookup used to return nobody once its only request was overdue; CI saw "client could not join" under
    20% loss)."""

    async def scenario() -> None:
        config = NodeConfig(pow=CHEAP_POW, wait_timeout=0.9)
        relays = await start_relays(tmp_path, 3, config)
        joiner = KomradeNode(None, config=config)
        await joiner.listen(0, "127.0.0.1")
        transport = joiner.transport
        real = transport.sendto
        dropped: list[bytes] = []

        def sendto(data: bytes, addr=None) -> None:  # type: ignore[no-untyped-def]
            if b"find_node" in data and len(dropped) < 2:
                dropped.append(data)
                return
            real(data, addr)

        transport.sendto = sendto  # type: ignore[method-assign]
        try:
            joined = await joiner.bootstrap([relays[0].address])
            assert len(dropped) == 2, "the first transmission and the first retransmission were lost"
            assert relays[0].node.id in {n.id for n in joined}
        finally:
            await shutdown([joiner, *relays])

    asyncio.run(scenario())
