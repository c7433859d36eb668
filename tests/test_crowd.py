"""Crowd sizing (issue 13): the network-size estimate behind 'how many people share my slot', and the advice."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

from komrade_dht.node import NodeConfig
from komrade_dht.social.crowd import advise_width, crowd_report, size_from_distances

from .support import CHEAP_POW, account, client, shutdown, start_relays


def test_size_from_distances_recovers_a_uniform_population() -> None:
    rng = random.Random(3)
    for n in (1_000, 100_000, 10_000_000):
        estimates = []
        for _ in range(15):
            point = rng.getrandbits(160)
            # the 20 closest of n uniform ids: distances of order statistics, drawn as n uniforms would give them
            distances = sorted(rng.getrandbits(160) ^ point for _ in range(min(n, 2000)))[:20]
            scale = n / min(n, 2000)
            estimates.append(size_from_distances([int(d / scale) for d in distances], 20))
        estimates.sort()
        assert n / 2 < estimates[len(estimates) // 2] < n * 2, (n, estimates)


def test_advice_keeps_the_crowd_above_the_target() -> None:
    assert advise_width(1_000_000, 1000) == 9  # 1,000,000 / 2^9 = 1,953 >= 1000 > 1,000,000 / 2^10
    assert advise_width(500, 1000) == 0
    assert advise_width(2**40, 1) == 32  # never wider than an address can say


def test_crowd_report_on_a_real_network(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path, 30, NodeConfig(pow=CHEAP_POW, id_bits=0))
        me = account(tmp_path, "Alice", width=2)
        node = await client(relays[7].address, NodeConfig(pow=CHEAP_POW, id_bits=0))
        try:
            report = await crowd_report(me, node, target=4)
            assert 8 <= report.network_size <= 120, report  # 30 relays: the estimate is rough, not wild
            assert report.crowd == round(report.network_size / 4, 2)
            assert report.advised_width == advise_width(report.network_size, 4)
        finally:
            await shutdown([node, *relays], (me,))

    asyncio.run(scenario())


def test_komrade_crowd_prints_the_estimate_and_the_advice(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 12, NodeConfig(pow=CHEAP_POW))  # the CLI's id puzzle
        env = dict(__import__("os").environ, KOMRADE_PASSPHRASE="correct horse battery staple glue")
        home = tmp_path / "me"
        run = lambda *a: subprocess.run(  # noqa: E731
            [sys.executable, "-m", "komrade_dht", "--data-dir", str(home), *a],
            capture_output=True, text=True, timeout=60, env=env)
        try:
            assert run("init", "--name", "Me", "--width", "1").returncode == 0
            peer = "%s:%d" % relays[0].address
            done = await asyncio.to_thread(run, "crowd", "--bootstrap", peer, "--target", "2", "--json")
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            assert report["width"] == 1 and report["target"] == 2 and report["network_size"] >= 4
            assert report["advised_width"] >= 1
            human = await asyncio.to_thread(run, "crowd", "--bootstrap", peer)
            assert "share your slot" in human.stdout and human.returncode == 0
            bad = await asyncio.to_thread(run, "crowd", "--bootstrap", peer, "--target", "0")
            assert bad.returncode == 1 and bad.stderr.startswith("komrade: error:")
        finally:
            await shutdown(relays)

    asyncio.run(scenario())
