"""Datagrams one node process handles per second (pings and find_nodes from many peers), ours beside plain
rpcudp/kademlia 2.2.3 in the same run.

Each server runs in its own process (one core). This process plays many peers: ``--peers`` UDP sockets, each
keeping ``--window`` requests in flight, all pre-encoded; it counts replies over ``--seconds``. Ours parses
every datagram with wire.decode (C msgpack with limits, shape checks), rate-limits, answers; the peers are
loopback, so per-IP limits do not apply, and the per-peer limit is raised for the benchmark.

    python -m benchmarks.datagrams [--seconds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import umsgpack

from komrade_dht.node import wire

from ._common import Out, code_fingerprint, machine

OURS = """
import asyncio, sys
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.node.ratelimit import RateLimits
async def main():
    limits = RateLimits(requests_per_s=1e9, request_burst=1e9, ip_requests_per_s=1e9, ip_request_burst=1e9)
    node = KomradeNode(None, config=NodeConfig(limits=limits, id_bits=0, stem=None))
    host, port = await node.listen(0, "127.0.0.1")
    print(port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

PLAIN = """
import asyncio
from kademlia.network import Server
async def main():
    server = Server()
    await server.listen(0, "127.0.0.1")
    print(server.transport.get_extra_info("sockname")[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def start(code: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


class Peer(asyncio.DatagramProtocol):
    def __init__(self, make: Any, window: int, addr: tuple[str, int]) -> None:
        self.make, self.window, self.addr = make, window, addr
        self.replies = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        for _ in range(self.window):
            self.transport.sendto(self.make(), self.addr)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies += 1
        assert self.transport is not None
        self.transport.sendto(self.make(), self.addr)

    def error_received(self, exc: Exception) -> None:
        pass


async def measure(port: int, make: Any, args: argparse.Namespace) -> float:
    loop = asyncio.get_running_loop()
    peers = []
    for _ in range(args.peers):
        _, peer = await loop.create_datagram_endpoint(
            lambda: Peer(make, args.window, ("127.0.0.1", port)), local_addr=("127.0.0.1", 0)
        )
        peers.append(peer)
    await asyncio.sleep(0.5)  # warm up
    start_count = sum(p.replies for p in peers)
    t0 = time.perf_counter()
    await asyncio.sleep(args.seconds)
    rate = (sum(p.replies for p in peers) - start_count) / (time.perf_counter() - t0)
    for p in peers:
        assert p.transport is not None
        p.transport.close()
    # a lost request stalls a window slot; refill is not needed for a rate measurement this short
    return rate


def ours_request() -> bytes:
    if os.urandom(1)[0] & 1:
        return wire.encode_request(os.urandom(20), "ping", os.urandom(20), [])
    return wire.encode_request(os.urandom(20), "find_node", os.urandom(20), [os.urandom(20)], 300)


def plain_request() -> bytes:
    if os.urandom(1)[0] & 1:
        return b"\x00" + os.urandom(20) + umsgpack.packb(["ping", [os.urandom(20)]])
    return b"\x00" + os.urandom(20) + umsgpack.packb(["find_node", [os.urandom(20), os.urandom(20)]])


async def run(args: argparse.Namespace, say: Out) -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "datagrams", "machine": machine(), "code": code_fingerprint()}
    for name, code, make in (("ours", OURS, ours_request), ("plain_rpcudp", PLAIN, plain_request)):
        proc, port = start(code)
        try:
            rate = await measure(port, make, args)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        out[name] = {"requests_per_s": round(rate)}
        say(f"{name}: {rate:,.0f} requests answered per second (pings and find_nodes, {args.peers} peers)")
    out["ratio"] = round(out["ours"]["requests_per_s"] / out["plain_rpcudp"]["requests_per_s"], 2)
    say(f"ours / plain: {out['ratio']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.datagrams", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--peers", type=int, default=16)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    say = Out(args.json)
    say.json(asyncio.run(run(args, say)))


if __name__ == "__main__":
    main()
