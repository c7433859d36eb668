"""A relay that holds a lot: acknowledged appends per second with group commit beside one fsync per append (same
run), the relay's memory while it holds many envelopes, and one slot of 1,000 envelopes read and scanned.

Each relay runs in its own process (one core, as an operator runs it): ``KomradeNode(Store(...))`` on 127.0.0.1,
proof of work off (the benchmark measures the store and the datagram path, not minting). Clients in this process
keep ``--window`` appends in flight each and count the acknowledgements (an ack = committed to disk).

    python -m benchmarks.relay [--appends 4000] [--hold 100000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from komrade_dht import envelope as env
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig

from ._common import Out, code_fingerprint, machine

POW = env.PowParams(trials_per_byte=0.0)

RELAY = """
import asyncio, sys
from komrade_dht import envelope as env
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.node.ratelimit import RateLimits
from komrade_dht.storage import Store, StoreLimits
async def main():
    unlimited = RateLimits(requests_per_s=1e9, request_burst=1e9, ip_requests_per_s=1e9, ip_request_burst=1e9,
                           write_bytes_per_s=1e12, write_burst_bytes=1e12)
    config = NodeConfig(pow=env.PowParams(trials_per_byte=0.0), limits=unlimited, group_commit=sys.argv[2] == "1",
                        id_bits=0, stem=None)
    store = Store(sys.argv[1], StoreLimits(max_bytes=8 * 2**30, max_entries_per_slot=2_000_000))
    node = KomradeNode(store, config=config)
    host, port = await node.listen(0, "127.0.0.1")
    print(port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def start_relay(path: Path, group_commit: bool) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    proc = subprocess.Popen([sys.executable, "-c", RELAY, str(path), "1" if group_commit else "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, ("127.0.0.1", int(proc.stdout.readline()))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def envelopes(n: int, slot: bytes) -> list[bytes]:
    a, b = Identity.generate(), Identity.generate()
    return [env.seal(a, b.public, os.urandom(16), slot=slot, pow=POW, ttl=3600) for _ in range(n)]


async def pump(addr: tuple[str, int], slot: bytes, blobs: list[bytes], clients: int, window: int) -> tuple[int, float]:
    """Append ``blobs`` with ``clients`` sockets, ``window`` in flight each; (acknowledged, seconds)."""
    nodes = [KomradeNode(None, config=NodeConfig(pow=POW, id_bits=0, wait_timeout=5.0)) for _ in range(clients)]
    for n in nodes:
        await n.listen(0, "127.0.0.1")
    queue = list(reversed(blobs))
    acked = 0

    async def worker(node: KomradeNode) -> None:
        nonlocal acked
        while queue:
            batch = [queue.pop() for _ in range(min(window, len(queue)))]
            replies = await asyncio.gather(*(node.protocol.call(addr, "append", slot, b) for b in batch))  # type: ignore[union-attr]
            acked += sum(1 for ok, _ in replies if ok)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in nodes))
    took = time.perf_counter() - t0
    for n in nodes:
        await n.stop_async()
    return acked, took


async def fill(addr: tuple[str, int], count: int, clients: int, window: int) -> int:
    """Put ``count`` envelopes (in slots of 1,000) into the relay; how many were acknowledged."""
    total = 0
    while total < count:
        slot = os.urandom(20)
        n = min(1000, count - total)
        acked, _ = await pump(addr, slot, envelopes(n, slot), clients, window)
        total += acked
    return total


async def read_one_slot(addr: tuple[str, int], slot: bytes) -> tuple[int, float]:
    reader = KomradeNode(None, config=NodeConfig(pow=POW, id_bits=0))
    await reader.listen(0, "127.0.0.1")
    await reader.bootstrap([addr])
    t0 = time.perf_counter()
    me = env.TrialDecryptor(Identity.generate())
    result = await reader.read_slot(slot, set(), lambda head: me.content_key(head) is not None)
    took = time.perf_counter() - t0
    await reader.stop_async()
    return len(result.skipped) + len(result.wanted), took


async def run(args: argparse.Namespace, say: Out) -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "relay", "machine": machine(), "code": code_fingerprint()}
    with tempfile.TemporaryDirectory(prefix="komrade-relay-") as tmp:
        for group_commit in (True, False):
            proc, addr = start_relay(Path(tmp) / f"gc{int(group_commit)}.sqlite", group_commit)
            try:
                slot = os.urandom(20)
                acked, took = await pump(addr, slot, envelopes(args.appends, slot), args.clients, args.window)
                name = "group_commit" if group_commit else "fsync_per_append"
                out[name] = {"appends": acked, "seconds": round(took, 2), "per_s": round(acked / took)}
                say(f"{name}: {acked} acknowledged appends in {took:.2f} s = {acked / took:,.0f}/s")
                if group_commit:
                    found, read_s = await read_one_slot(addr, slot if args.appends <= 1000 else await one_k(addr, args))
                    out["read_slot_1000"] = {"envelopes": found, "seconds": round(read_s, 3)}
                    say(f"read and scan one slot of {found} envelopes: {read_s:.3f} s")
                    held = await fill(addr, args.hold, args.clients, args.window)
                    out["hold"] = {"envelopes": held + acked, "rss_mb": round(rss_mb(proc.pid), 1)}
                    say(f"relay RSS holding {held + acked:,} envelopes: {rss_mb(proc.pid):.0f} MB")
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    if "group_commit" in out and "fsync_per_append" in out:
        out["speedup"] = round(out["group_commit"]["per_s"] / out["fsync_per_append"]["per_s"], 2)
        say(f"group commit: {out['speedup']}x the appends per second of one fsync per append")
    return out


async def one_k(addr: tuple[str, int], args: argparse.Namespace) -> bytes:
    slot = os.urandom(20)
    await pump(addr, slot, envelopes(1000, slot), args.clients, args.window)
    return slot


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=4000, help="appends timed per relay (4000)")
    parser.add_argument("--hold", type=int, default=100_000, help="envelopes the group-commit relay then holds")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--window", type=int, default=32, help="appends in flight per client (32)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    say = Out(args.json)
    say.json(asyncio.run(run(args, say)))


if __name__ == "__main__":
    main()
