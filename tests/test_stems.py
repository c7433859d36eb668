"""Dandelion++ stems (issue 13): the first holder cannot tell who wrote an envelope, and a stem relay that drops
everything cannot make a message disappear."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

from komrade_dht import envelope as env
from komrade_dht.gossip import GossipConfig, StemConfig, StemRoute, stem_step
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.node.protocol import KomradeProtocol
from komrade_dht.social import send_dm
from komrade_dht.storage import Store

from .support import CHEAP_POW, account, shutdown, start_relays, wait_for

FAST_STEMS = StemConfig(embargo=1.0, sender_check=1.0)


class Recording(KomradeProtocol):
    """Remembers who first handed it each envelope it took (by append or gossip): a spy's view."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_from: dict[bytes, tuple[str, int]] = {}

    def _hold(self, sender: tuple[str, int], value: bytes, **kw: Any) -> str | None:
        self.first_from.setdefault(env.envelope_id(value), sender)
        return super()._hold(sender, value, **kw)


class RecordingNode(KomradeNode):
    protocol_class = Recording


class BlackHole(KomradeProtocol):
    """Accepts every stem and does nothing with it."""

    def rpc_stem(self, sender: tuple[str, int], slot: bytes, value: bytes, hops: int, *, budget: int) -> Any:
        self.counters["stem_swallowed"] += 1
        return True, True


class BlackHoleNode(KomradeNode):
    protocol_class = BlackHole


def test_stem_decisions_are_pure_and_bounded() -> None:
    config = StemConfig(fluff_probability=0.3, max_hops=6, epoch_seconds=600)
    rng = random.Random(1)
    assert stem_step(rng, config, 0), "no hop left: fluff"
    fluffs = sum(stem_step(rng, config, 5) for _ in range(10_000))
    assert 2700 < fluffs < 3300
    route = StemRoute(config, random.Random(2))
    peers = [("127.0.0.1", p) for p in range(1, 9)]
    first = route.successor(peers, 1000.0)
    assert all(route.successor(peers, t) == first for t in (1001.0, 1199.0)), "one successor per epoch"
    assert route.successor(peers, 1000.0, exclude=first) != first, "never back to where it came from"
    assert route.successor([], 5000.0) is None


def test_no_holder_gets_the_envelope_from_its_writer(tmp_path: Path) -> None:
    """A full node's DMs travel a stem: every holder and gossip copy got it from a relay, none from the writer."""

    async def scenario() -> None:
        # the writer's own check is left for later than the test (a busy machine may take a while to fluff)
        config = NodeConfig(ksize=6, pow=CHEAP_POW, id_bits=0, stem=StemConfig(embargo=20, sender_check=60),
                            gossip=GossipConfig(anti_entropy_interval=0))
        relays = []
        for i in range(14):
            (tmp_path / f"r{i}").mkdir()
            node = RecordingNode(Store(tmp_path / f"r{i}" / "s.sqlite"), config=config)
            await node.listen(0, "127.0.0.1")
            relays.append(node)
        for node in relays[1:]:
            await node.bootstrap([relays[0].address])
        writer = relays[5]
        alice, bob = account(tmp_path, "Alice"), account(tmp_path, "Bob")
        try:
            keys = [await send_dm(alice, writer, bob.address.text, f"hello {i}") for i in range(5)]
            for key in keys:
                await wait_for(lambda: sum(r.store.has_blob(key) for r in relays if r is not writer) >= 4)
            assert writer.protocol.counters["stem_sent"] == 5
            for key in keys:
                sources = {r.protocol.first_from[key] for r in relays if key in r.protocol.first_from}
                assert writer.address not in sources, "a holder got it straight from its writer"
            assert writer.protocol.counters["stem_republished"] == 0
        finally:
            await shutdown(relays, (alice, bob))

    asyncio.run(scenario())


def test_a_stem_relay_that_swallows_everything_loses_no_message(tmp_path: Path) -> None:
    """Every relay but the writer is a black hole for stems: the writer (a full node, and a short-lived read-only
    client) finds its envelope held nowhere after the check delay and publishes it itself."""

    async def scenario() -> None:
        config = NodeConfig(ksize=6, pow=CHEAP_POW, id_bits=0, stem=FAST_STEMS)
        relays: list[KomradeNode] = []
        for i in range(8):
            (tmp_path / f"r{i}").mkdir()
            cls = KomradeNode if i == 0 else BlackHoleNode
            node = cls(Store(tmp_path / f"r{i}" / "s.sqlite"), config=config)
            await node.listen(0, "127.0.0.1")
            relays.append(node)
        for node in relays[1:]:
            await node.bootstrap([relays[0].address])
        writer = relays[0]
        reader_only = KomradeNode(None, config=config)
        await reader_only.listen(0, "127.0.0.1")
        await reader_only.bootstrap([relays[3].address])
        alice, bob = account(tmp_path, "Alice"), account(tmp_path, "Bob")
        try:
            key = await send_dm(alice, writer, bob.address.text, "into the void?")
            await wait_for(lambda: sum(r.store.has_blob(key) for r in relays[1:]) >= 3, timeout=20)
            assert writer.protocol.counters["stem_republished"] >= 1
            # the read-only sender confirms before send_dm returns
            key2 = await send_dm(alice, reader_only, bob.address.text, "and again")
            assert sum(r.store.has_blob(key2) for r in relays) >= 3
            # its successor is a black hole unless it happened to pick the writer (the one honest relay)
            if reader_only.protocol.stem_route._successor != writer.address:
                assert reader_only.protocol.counters["stem_republished"] == 1
            assert sum(r.protocol.counters["stem_swallowed"] for r in relays) >= 1
        finally:
            await shutdown([reader_only, *relays], (alice, bob))

    asyncio.run(scenario())


def test_the_writers_check_reads_the_slot_and_never_names_the_envelope(tmp_path: Path) -> None:
    """A short-lived sender confirms its stem delivered before it returns: it lists the slot as any reader polling it
    would (slot_page), and never asks a holder for the envelope by id (get_heads would tell the holder which
    envelope its asker wrote)."""

    async def scenario() -> None:
        config = NodeConfig(ksize=6, pow=CHEAP_POW, id_bits=0, stem=FAST_STEMS,
                            gossip=GossipConfig(anti_entropy_interval=0))
        relays = await start_relays(tmp_path, 10, config)
        sender = KomradeNode(None, config=config)
        await sender.listen(0, "127.0.0.1")
        await sender.bootstrap([relays[3].address])
        alice, bob = account(tmp_path, "Alice"), account(tmp_path, "Bob")
        try:
            pages = sum(r.protocol.counters["rpc_slot_page"] for r in relays)
            key = await send_dm(alice, sender, bob.address.text, "checked quietly")
            assert sum(r.store.has_blob(key) for r in relays) >= 2
            assert sender.protocol.counters["stem_sent"] == 1 and sender.protocol.counters["stem_republished"] == 0
            assert sum(r.protocol.counters["rpc_slot_page"] for r in relays) > pages, "it read the slot"
            assert sum(r.protocol.counters["rpc_get_heads"] for r in relays) == 0, "nobody was asked for the id"
        finally:
            await shutdown([sender, *relays], (alice, bob))

    asyncio.run(scenario())
