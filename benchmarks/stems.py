"""Who wrote it? A first-spy adversary against our publishing, with and without Dandelion++ stems, same network.

N full nodes on loopback UDP in one process (real sockets, SQLite stores, real envelopes); a fraction ``--spies``
of them collude: each remembers, per envelope, the peer that first handed it any copy (stem, append or gossip),
and the coalition guesses the writer is the peer that handed it to a spy earliest (the *first-spy estimator* of
Dandelion's papers). Honest writers, chosen at random, each write one envelope to a random slot. Precision = the
fraction of the coalition's guesses that name the true writer. Latency = from the write to the moment one of the
slot's k closest nodes holds it. Datagrams = everything every node sent, per message.

    python -m benchmarks.stems [--nodes 100] [--messages 60] [--spies 0.1] [--json]

Dandelion++ (Fanti et al., SIGMETRICS 2018) proves that for a spy fraction p the first-spy precision of its
stems is O(p^2 log(1/p)) (~0.02 at p = 0.1), against O(p) or worse for diffusion; and that no scheme does better
than ~p^2 (0.01). Our baseline in the same run: the same network publishing directly (append to the k closest +
gossip), where the first spy to receive an envelope usually got it from its writer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from komrade_dht import envelope as env
from komrade_dht.gossip import GossipConfig, StemConfig
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.node.protocol import KomradeProtocol
from komrade_dht.storage import Store

from ._common import Out, code_fingerprint, machine, percentile

POW = env.PowParams(trials_per_byte=0.0)


class Spy(KomradeProtocol):
    """Records (time, from) of the first copy of each envelope it is handed, by any RPC."""

    log: dict[bytes, tuple[float, tuple[str, int]]]

    def _note(self, sender: tuple[str, int], value: bytes) -> None:
        self.log.setdefault(env.envelope_id(value), (time.monotonic(), sender))

    def _hold(self, sender: tuple[str, int], value: bytes, **kw: Any) -> str | None:
        self._note(sender, value)
        return super()._hold(sender, value, **kw)

    def rpc_stem(self, sender: tuple[str, int], slot: bytes, value: bytes, hops: int, *, budget: int) -> Any:
        self._note(sender, value)
        return super().rpc_stem(sender, slot, value, hops, budget=budget)


class SpyNode(KomradeNode):
    protocol_class = Spy


async def run_mode(stems: bool, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    config = NodeConfig(
        ksize=20, pow=POW, id_bits=0, gossip=GossipConfig(anti_entropy_interval=0),
        stem=StemConfig(embargo=30, sender_check=30) if stems else None,
        refresh_interval=3600,
    )
    spies = set(rng.sample(range(args.nodes), round(args.spies * args.nodes)))
    nodes: list[KomradeNode] = []
    for i in range(args.nodes):
        cls = SpyNode if i in spies else KomradeNode
        node = cls(Store(tmp / f"{int(stems)}-{i}.sqlite"), config=config)
        await node.listen(0, "127.0.0.1")
        if i in spies:
            node.protocol.log = {}  # type: ignore[union-attr]
        nodes.append(node)
    for node in nodes[1:]:
        await node.bootstrap([nodes[rng.randrange(0, nodes.index(node))].address])
    for node in nodes:  # a second round so tables fill out both ways
        await node.bootstrap([])
    honest = [i for i in range(args.nodes) if i not in spies]
    me, you = Identity.generate(), Identity.generate()
    by_addr = {n.address: i for i, n in enumerate(nodes)}
    before = sum(n.protocol.counters["datagrams_out"] for n in nodes)  # type: ignore[union-attr]
    latencies, correct, guessed = [], 0, 0
    for m in range(args.messages):
        writer = rng.choice(honest)
        slot = os.urandom(20)
        data = env.seal(me, you.public, os.urandom(32), slot=slot, pow=POW)
        key = env.envelope_id(data)
        holders = sorted(nodes, key=lambda n: int.from_bytes(n.node.id, "big") ^ int.from_bytes(slot, "big"))[:20]
        t0 = time.monotonic()
        if stems:
            await nodes[writer].send(slot, data)
        else:
            await nodes[writer].publish(slot, data)
        while not any(h.store.has_blob(key) for h in holders if h is not nodes[writer]):  # type: ignore[union-attr]
            if time.monotonic() - t0 > 30:
                break
            await asyncio.sleep(0.005)
        latencies.append(time.monotonic() - t0)
        await asyncio.sleep(0.3)  # let the flood settle before the spies compare notes
        seen = [nodes[i].protocol.log[key] for i in spies if key in nodes[i].protocol.log]  # type: ignore[union-attr]
        if seen:
            guessed += 1
            first = min(seen)[1]
            correct += by_addr.get(first) == writer
    sent = sum(n.protocol.counters["datagrams_out"] for n in nodes) - before  # type: ignore[union-attr]
    for node in nodes:
        await node.stop_async()
    return {
        "stems": stems,
        "nodes": args.nodes,
        "spies": len(spies),
        "messages": args.messages,
        "guessed": guessed,
        "first_spy_precision": round(correct / guessed, 3) if guessed else None,
        "first_spy_recall": round(correct / args.messages, 3),
        "latency_ms": {"p50": round(percentile(latencies, 50) * 1000, 1), "p99": round(percentile(latencies, 99) * 1000, 1)},
        "datagrams_per_message": round(sent / args.messages, 1),
    }


async def main_async(args: argparse.Namespace, say: Out) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="komrade-stems-") as tmp:
        plain = await run_mode(False, args, Path(tmp))
        stems = await run_mode(True, args, Path(tmp))
    for r in (plain, stems):
        say(f"{'stems' if r['stems'] else 'direct':>6}: precision {r['first_spy_precision']} "
            f"(guessed {r['guessed']}/{r['messages']}), recall {r['first_spy_recall']}, latency p50 "
            f"{r['latency_ms']['p50']} ms p99 {r['latency_ms']['p99']} ms, {r['datagrams_per_message']} datagrams/msg")
    return {"benchmark": "stems", "machine": machine(), "code": code_fingerprint(), "spy_fraction": args.spies,
            "direct": plain, "stems": stems,
            "dandelion_pp_bound": {"p2_log_1_over_p": round(args.spies**2 * __import__("math").log(1 / args.spies), 4),
                                   "p2_lower_bound": round(args.spies**2, 4)}}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stems", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--spies", type=float, default=0.1, help="fraction of colluding nodes (0.1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    say = Out(args.json)
    say.json(asyncio.run(main_async(args, say)))


if __name__ == "__main__":
    main()
