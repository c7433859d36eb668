"""How the cost of a message grows with the network: a simulation of our lookup and slot logic to N = 1,000,000
without sockets, beside the same count measured on real nodes where this machine holds them.

The simulation follows the node's logic, not an idealised Kademlia:
- routing tables as ``KomradeRoutingTable`` keeps them: for each bucket (ids sharing exactly i leading bits with the
  node) up to k = 20 contacts drawn at random from the nodes in that range (built lazily: a table for a million
  nodes is never materialised);
- lookups as ``node/crawling.py`` runs them: alpha = 3 requests in flight, each answered with the asked node's k
  closest to the target, until the k closest heard of have all answered;
- a DM as ``send_dm``/``sync_inbox`` cost it: the writer's stem (3.3 hops on average), the fluffing relay's lookup and
  k appends (the ack of each is a datagram), the gossip flood (fanout 3, 3 hops, one-way copies: no reply), the first
  anti-entropy round of each holder of the new slot (the k closest and the flood's copies, each comparing digests
  with ``anti_entropy_peers`` partners from its own table, no lookup; a copy's first round comes 2^far_start
  intervals later, after the lab's window, and is counted here all the same), and the reader's lookup, its k +
  ``extra_holders`` digests, two holders paged (one page), one head and one envelope fetched. Requests and replies
  each count as a datagram.

    python -m benchmarks.scale [--sizes 1000 10000 100000 1000000] [--lookups 40] [--measured 100 300] [--json]
        [--lab lab-100.json lab-1000.json ...] [--svg docs/scale.svg]

``--measured`` runs the same count on real nodes (KomradeNode, loopback UDP, one process) for those sizes, from
the nodes' own datagram counters, so the model can be checked against the real thing. ``--lab`` adds the network
lab's figures (``python -m benchmarks.network --json`` outputs: ours and plain, datagrams per message including the
recipients' polling) to the table, and ``--svg`` draws every series against N (log scale) with
:mod:`benchmarks.svgplot`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import random
import statistics
import tempfile
import json
import time
from pathlib import Path
from typing import Any

from komrade_dht.gossip import GossipConfig, StemConfig
from komrade_dht.node.reader import ReadLimits

from ._common import Out, code_fingerprint, machine
from .svgplot import line_plot

K, ALPHA, BITS = 20, 3, 160
STEM_HOPS = 1 / StemConfig().fluff_probability
GOSSIP = sum(GossipConfig().fanout ** h for h in range(1, GossipConfig().hops + 1))  # forwards (each answered)
AE_PEERS = GossipConfig().anti_entropy_peers
EXTRA_HOLDERS = ReadLimits().extra_holders


class Network:
    """N random ids and their (lazily drawn) routing tables."""

    def __init__(self, n: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ids = sorted(self.rng.getrandbits(BITS) for _ in range(n))
        self._tables: dict[int, list[int]] = {}
        self.seed = seed

    def table(self, node: int) -> list[int]:
        cached = self._tables.get(node)
        if cached is not None:
            return cached
        rng = random.Random(node ^ self.seed)
        contacts: list[int] = []
        for i in range(BITS):
            # ids whose highest bit differing from ``node`` is bit i: one contiguous range of the sorted ids
            low = ((node >> (i + 1)) << (i + 1)) | ((~node >> i & 1) << i)
            a = bisect.bisect_left(self.ids, low)
            b = bisect.bisect_left(self.ids, low + (1 << i))
            if b - a <= K:
                contacts.extend(self.ids[a:b])
            else:
                contacts.extend(self.ids[j] for j in rng.sample(range(a, b), K))
        if len(self._tables) < 200_000:
            self._tables[node] = contacts
        return contacts

    def closest(self, node: int, target: int, k: int = K) -> list[int]:
        return sorted(self.table(node), key=lambda c: c ^ target)[:k]

    def lookup(self, start: int, target: int) -> tuple[list[int], int]:
        """(the k closest found, requests sent)."""
        shortlist = {c: False for c in self.closest(start, target)}  # contact -> asked
        requests = 0
        while True:
            best = sorted(shortlist, key=lambda c: c ^ target)[:K]
            todo = [c for c in best if not shortlist[c]][:ALPHA]
            if not todo:
                return best, requests
            for c in todo:
                shortlist[c] = True
                requests += 1
                for found in self.closest(c, target):
                    shortlist.setdefault(found, False)

    def true_closest(self, target: int, k: int = K) -> list[int]:
        i = bisect.bisect_left(self.ids, target)
        window = self.ids[max(0, i - 4 * k) : i + 4 * k]
        return sorted(window, key=lambda c: c ^ target)[:k]  # exact enough: XOR order near ``target`` in sort order


def simulate(n: int, lookups: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    net = Network(n, seed)
    rng = random.Random(seed + 1)
    requests, found_true = [], []
    for _ in range(lookups):
        start = rng.choice(net.ids)
        target = rng.getrandbits(BITS)
        best, sent = net.lookup(start, target)
        requests.append(sent)
        found_true.append(len(set(best) & set(net.true_closest(target))) / K)
    lookup = statistics.mean(requests)
    # datagrams per DM: requests and their replies, both counted; a flood copy is one datagram (no reply)
    publish = 2 * (STEM_HOPS + lookup + K + AE_PEERS * (K + GOSSIP)) + GOSSIP
    read = 2 * (lookup + (K + EXTRA_HOLDERS) + 2 + 1 + 1)
    return {
        "nodes": n,
        "lookup_requests": round(lookup, 1),
        "lookup_found_true_k_closest": round(statistics.mean(found_true), 3),
        "datagrams_per_message": round(publish + read),
        "per_node_datagrams_per_message": round((publish + read) / n, 6),
        "log2_n": round(math.log2(n), 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }


async def measure(n: int, messages: int, seed: int) -> dict[str, Any]:
    """The same DM on real nodes: datagrams counted by every node, per message."""
    from komrade_dht import envelope as env
    from komrade_dht.gossip import GossipConfig
    from komrade_dht.identity import Identity
    from komrade_dht.node import KomradeNode, NodeConfig
    from komrade_dht.storage import Store

    pow = env.PowParams(trials_per_byte=0.0)
    config = NodeConfig(pow=pow, id_bits=0, gossip=GossipConfig(anti_entropy_interval=0), refresh_interval=3600)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="komrade-scale-") as tmp:
        nodes = []
        for i in range(n):
            node = KomradeNode(Store(Path(tmp) / f"{i}.sqlite"), config=config)
            await node.listen(0, "127.0.0.1")
            nodes.append(node)
        for i, node in enumerate(nodes[1:], 1):
            await node.bootstrap([nodes[rng.randrange(i)].address])
        me, you = Identity.generate(), Identity.generate()
        before = sum(x.protocol.counters["datagrams_out"] for x in nodes)  # type: ignore[union-attr]
        for _ in range(messages):
            slot = bytes(rng.randbytes(20))
            data = env.seal(me, you.public, b"x", slot=slot, pow=pow)
            await rng.choice(nodes).send(slot, data)
            await asyncio.sleep(0.2)
            await rng.choice(nodes).read_slot(slot)
        sent = sum(x.protocol.counters["datagrams_out"] for x in nodes) - before  # type: ignore[union-attr]
        for node in nodes:
            await node.stop_async()
    return {"nodes": n, "datagrams_per_message": round(sent / messages), "messages": messages}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--lookups", type=int, default=40)
    parser.add_argument("--measured", type=int, nargs="*", default=[100, 300])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--lab", type=Path, nargs="*", default=[], help="network lab JSON outputs to add")
    parser.add_argument("--svg", type=Path, default=None, help="write the plot here")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    say = Out(args.json)
    out: dict[str, Any] = {"benchmark": "scale", "machine": machine(), "code": code_fingerprint(),
                           "simulated": [], "measured": []}
    for n in sorted(set(args.sizes + args.measured)):
        row = simulate(n, args.lookups, args.seed)
        out["simulated"].append(row)
        say(f"simulated N={n:>9,}: lookup {row['lookup_requests']:5.1f} requests "
            f"({row['lookup_found_true_k_closest']:.0%} of the true k closest), "
            f"{row['datagrams_per_message']:4d} datagrams per DM, {row['per_node_datagrams_per_message']:.6f} per node")
    for n in args.measured:
        row = asyncio.run(measure(n, args.messages, args.seed))
        out["measured"].append(row)
        say(f"measured  N={n:>9,}: {row['datagrams_per_message']} datagrams per DM (real nodes, loopback)")
    out["lab"] = [lab_row(path) for path in args.lab]
    for row in out["lab"]:
        say(f"lab       N={row['nodes']:>9,}: " + ", ".join(
            f"{mode} {row[mode]['datagrams_per_message']:,.0f} datagrams per message, p50 {row[mode]['p50_ms']:,.0f} ms"
            for mode in ("ours", "plain") if mode in row))
    if args.svg is not None:
        plot(out, args.svg)
        say(f"plot: {args.svg}")
    say.json(out)


def lab_row(path: Path) -> dict[str, Any]:
    """The figures of one network lab run (``benchmarks.network --json``) that the scale table shows."""
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--lab {path}: not a network lab JSON output ({exc})") from exc
    row: dict[str, Any] = {"nodes": run["nodes"], "params": run["params"], "file": str(path)}
    for mode in ("ours", "plain"):
        if mode in run:
            row[mode] = {k: run[mode][k] for k in ("datagrams_per_message", "p50_ms", "p99_ms", "delivery_rate",
                                                    "bytes_per_node")}
    return row


def plot(out: dict[str, Any], path: Path) -> None:
    series: dict[str, list[tuple[float, float]]] = {
        "simulated DM": [(r["nodes"], r["datagrams_per_message"]) for r in out["simulated"]],
    }
    if out["measured"]:
        series["measured DM"] = [(r["nodes"], r["datagrams_per_message"]) for r in out["measured"]]
    for mode in ("ours", "plain"):
        rows = [r for r in out["lab"] if mode in r]
        if rows:
            series[f"lab, {mode}"] = [(r["nodes"], r[mode]["datagrams_per_message"]) for r in rows]
    line_plot(series, path, title="Datagrams per message against network size", x_label="nodes (N, log scale)",
              y_label="datagrams per message", dashed=frozenset({"simulated DM"}))


if __name__ == "__main__":
    main()
