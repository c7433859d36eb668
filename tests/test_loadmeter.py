"""The event loop's lag meter: a loop that stalls counts as busy, and a busy node skips its anti-entropy round."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from komrade_dht.gossip import GossipConfig
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.node.loadmeter import LoopLag
from komrade_dht.storage import Store

from .support import CHEAP_POW, wait_for


def test_a_stalling_loop_counts_as_busy_and_a_quiet_one_recovers() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        meter = LoopLag.of(loop)
        assert LoopLag.of(loop) is meter, "one meter per loop, shared by its nodes"
        meter.acquire()
        meter.acquire()
        try:
            assert not meter.busy

            async def stalled() -> bool:
                time.sleep(0.15)  # a callback that hogs the loop, as an overloaded process does
                return meter.busy

            await wait_for(stalled, timeout=10, interval=0.01)
            await wait_for(lambda: not meter.busy, timeout=10, interval=0.05)
        finally:
            meter.release()
            assert meter._handle is not None, "still held by one"
            meter.release()
        assert meter._handle is None and meter.lag == 0.0, "no timer once nobody holds it"

    asyncio.run(scenario())


def test_a_node_on_a_lagging_loop_skips_its_anti_entropy_round(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = KomradeNode(Store(tmp_path / "n.sqlite"), config=NodeConfig(
            pow=CHEAP_POW, gossip=GossipConfig(anti_entropy_interval=3600)))
        await node.listen(0, "127.0.0.1")
        try:
            assert node._lag is not None
            await node._anti_entropy()
            assert node.protocol.counters["ae_skipped_busy"] == 0
            node._lag.lag = 1.0  # as measured on a loop a second late
            await node._anti_entropy()
            assert node.protocol.counters["ae_skipped_busy"] == 1
        finally:
            await node.stop_async()
        assert node._lag is None

    asyncio.run(scenario())
