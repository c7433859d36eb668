"""Long fuzz run against a live node: `python -m fuzz.fuzz_node --examples 200000`.

Throws hostile datagrams at a node listening on 127.0.0.1 through a real UDP socket: by default random
mutations (bit flips, truncations, splices, msgpack-typed substitutions) of every kind of valid request and reply,
which runs at thousands a second; `--engine hypothesis` draws from fuzz/strategies.py instead (slower, richer),
in batches, checking after each batch that an honest peer still gets its ping answered, that no exception
reached the event loop, and that memory stays bounded. Prints one JSON line with what it tried and found.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import tempfile
import time
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from komrade_dht.node import KomradeNode
from komrade_dht.node.ratelimit import RateLimits
from komrade_dht.node.server import NodeConfig
from komrade_dht.storage import Store

from .strategies import datagrams


def seeds() -> list[bytes]:
    """One valid datagram of every kind the node understands."""
    import os

    from komrade_dht import envelope as env
    from komrade_dht.identity import Identity
    from komrade_dht.node import wire

    a, b = Identity.generate(), Identity.generate()
    blob = env.seal(a, b.public, b"fuzz", ttl=600, pow=env.PowParams(trials_per_byte=0.01))
    key, me = env.envelope_id(blob), os.urandom(20)
    out = [
        wire.encode_request(os.urandom(20), "ping", me, []),
        wire.encode_request(os.urandom(20), "find_node", me, [key], 300),
        wire.encode_request(os.urandom(20), "find_value", None, [key], 380),
        wire.encode_request(os.urandom(20), "get_blob", me, [key], 380),
        wire.encode_request(os.urandom(20), "store", me, [key, blob]),
        wire.encode_request(os.urandom(20), "append", me, [key, blob]),
        wire.encode_request(os.urandom(20), "slot_page", me, [key, 0, 50], 380),
        wire.encode_request(os.urandom(20), "burn", me, [key, bytes(16)]),
        wire.encode_response(os.urandom(20), True, [[key, "127.0.0.1", 9]]),
    ]
    return out


def mutations(count: int, seed: int):
    """Random mutations of the seed datagrams (a cheap, fast stand-in for a coverage-guided fuzzer)."""
    import random

    rng = random.Random(seed)
    base = seeds()
    junk = [b"\xc1", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\x91" * 40, b"\xc7\x00\x01", b"\xcf" + bytes(8),
            b"\xc4\xff", b"\xda\xff\xff", b"\x80", b"\xc0", b"\xc3", b"\xcb" + bytes(8)]
    for _ in range(count):
        data = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(5)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
            elif op == 1:
                del data[pos:]
            elif op == 2:
                data[pos:pos] = rng.choice(junk)
            elif op == 3:
                data[pos:pos] = rng.randbytes(rng.randint(1, 64))
            elif data:
                end = min(len(data), pos + rng.randint(1, 32))
                data[pos:end] = rng.choice(junk)
        yield bytes(data[:2000])


def run(examples: int, seed: int, engine: str = "mutate") -> dict[str, object]:
    loop_errors: list[dict] = []
    result: dict[str, object] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
        tmp = Path(tempfile.mkdtemp())
        unlimited = RateLimits(requests_per_s=1e9, request_burst=1e9, ip_requests_per_s=1e9, ip_request_burst=1e9)
        target = KomradeNode(Store(tmp / "t.sqlite"), config=NodeConfig(limits=unlimited))
        honest = KomradeNode(Store(tmp / "h.sqlite"))
        addr = await target.listen(0, "127.0.0.1")
        await honest.listen(0, "127.0.0.1")
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attacker.bind(("127.0.0.1", 0))
        attacker.setblocking(False)
        sent = 0
        unanswered: list[dict] = []
        batch: list[bytes] = []
        tracemalloc.start()
        baseline = None
        peak_growth = 0
        started = time.monotonic()

        @settings(max_examples=examples, derandomize=False, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(datagrams)
        def collect(data: bytes) -> None:
            batch.append(data)

        if engine == "hypothesis":
            collect()
            source = iter(batch)
        else:
            source = mutations(examples, seed)
        for i, data in enumerate(source):
            try:
                attacker.sendto(data, addr)
            except (BlockingIOError, OSError):
                await asyncio.sleep(0.001)
                continue
            sent += 1
            if i % 100 == 0:
                await asyncio.sleep(0)  # let the node drain its socket
            if i % 5000 == 4999 or i == 0:
                # let the node drain what the kernel queued (the attacker can send faster than it parses), then ask
                deadline = time.monotonic() + 30
                seen = -1
                while target.protocol.counters["datagrams_in"] != seen and time.monotonic() < deadline:
                    seen = target.protocol.counters["datagrams_in"]  # until nothing more arrives for 50 ms
                    await asyncio.sleep(0.05)
                ok, why = await honest.protocol.call(addr, "ping")
                if not ok:
                    unanswered.append({"after": i, "why": why, "target": dict(target.protocol.counters),
                                       "honest": dict(honest.protocol.counters), "tasks": len(target.protocol._tasks)})
                current, _ = tracemalloc.get_traced_memory()
                baseline = current if baseline is None else baseline
                peak_growth = max(peak_growth, current - baseline)
        ok, _ = await honest.protocol.call(addr, "ping")
        result.update(
            engine=engine,
            datagrams_sent=sent,
            seconds=round(time.monotonic() - started, 1),
            honest_ping_answered=ok,
            honest_pings_unanswered=unanswered,
            loop_exceptions=len(loop_errors),
            handler_errors=target.protocol.counters.get("handler_error", 0),
            dropped=target.protocol.counters.get("dropped", 0),
            memory_growth_bytes=peak_growth,
            drop_reasons={k[8:]: v for k, v in target.protocol.counters.items() if k.startswith("dropped_")},
        )
        await honest.stop_async()
        await target.stop_async()
        attacker.close()

    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main())
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=["mutate", "hypothesis"], default="mutate")
    args = parser.parse_args()
    print(json.dumps(run(args.examples, args.seed, args.engine)))
