"""Posts on a 20-node loopback network (issue 10), each figure beside a baseline measured in the same run.

Network: 20 full nodes (``KomradeNode(Store(...))``, real UDP on 127.0.0.1, port 0, stores without fsync) and
read-only clients, with the test networks' cheap proof of work and node-id puzzle: the proof of work an honest
sender pays is measured on its own in ``benchmarks/pow.py``; here it would only hide the network and the reads.

1. **World feed of 1000 posts** (pull + verify): Alice publishes 1000 signed world posts (spread over the 8
   shards); then R times (default 5) a fresh reader (new account, new read-only node) runs ``read_feed(world)``,
   which reads the 8 shards of the last 3 epochs, downloads and verifies every post and caches it. Reported: the
   load time p50/p99 and its datagrams. Baselines, same run: the same 24 slots pulled with ``read_slot`` alone
   (no opening, no signature check, no cache), and per post: ``open_public`` (parse + Ed25519 verify) vs
   ``parse_outer`` alone, p50/p99 over the 1000 posts.
2. **A 200 KB image** (a sanitised JPEG of ~200 KB: ~222 blobs of 1 KB in a tree of manifests): stored with
   ``store_blobs``, then fetched R times by a fresh reader with ``fetch_content`` (manifest level by level, blobs
   in parallel, each checked against its id, decrypted, hash checked). Baseline, same run: plain
   ``kademlia.network.Server`` 2.2.3, 20 nodes, the same 222 blobs ``set`` by a non-storing writer and fetched
   by a non-storing reader with ``get``, one after another (kademlia's API) and all at once (``gather``).
3. **Bytes on the wire per post**: every node's ``bytes_out``/``datagrams_out`` summed over the publication of
   one post of each kind (world signed, world anonymous, friends, local 10 km, world with the 200 KB image),
   beside a DM of the same text (the baseline), and the envelope's size class.

Run: ``python -m benchmarks.posts [--posts 1000] [--runs 5] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nacl.pwhash

from komrade_dht import envelope as env
from komrade_dht import media
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.social import Account, friends, posts, send_dm
from komrade_dht.slots import SlotParams
from komrade_dht.storage import Store

from ._common import Out, code_fingerprint, machine, percentile, summary_ms
from .dm_roundtrip import _CountingTransport, _NullStorage

POW = env.PowParams(trials_per_byte=0.001, memlimit=8192)
CONFIG = NodeConfig(pow=POW, id_bits=8)
KDF = dict(opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN, memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN)


def sum_counters(nodes: list[KomradeNode]) -> Counter[str]:
    total: Counter[str] = Counter()
    for node in nodes:
        if node.protocol is not None:
            total.update(node.protocol.counters)
    return total


def photo(target: int = 200 * 1024) -> bytes:
    """A noisy picture whose sanitised JPEG is close to ``target`` bytes (the 200 KB of the issue)."""
    from PIL import Image

    side = 700
    raw = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    raw.save(out, format="PNG")
    return media.sanitize_image(out.getvalue(), max_output_bytes=target).data


async def client(relays: list[KomradeNode], i: int) -> KomradeNode:
    node = KomradeNode(None, config=CONFIG)
    await node.listen(0, "127.0.0.1")
    assert await node.bootstrap([relays[i % len(relays)].address])
    return node


async def run(args: argparse.Namespace, tmp: Path, say: Out) -> dict[str, Any]:
    relays: list[KomradeNode] = []
    others: list[KomradeNode] = []
    accounts: list[Account] = []
    out: dict[str, Any] = {}
    try:
        for i in range(args.nodes):
            store = Store(tmp / f"r{i}.sqlite")
            store._connection().execute("PRAGMA synchronous = OFF")
            node = KomradeNode(store, config=CONFIG)
            await node.listen(0, "127.0.0.1")
            relays.append(node)
        for node in relays[1:]:
            await node.bootstrap([relays[0].address])
        alice = Account.create(tmp / "alice", "Alice", "benchmark passphrase", **KDF)
        bob = Account.create(tmp / "bob", "Bob", "benchmark passphrase", **KDF)
        accounts += [alice, bob]
        a = await client(relays, 1)
        others.append(a)
        everyone = relays + others

        # -- 3. bytes on the wire per post (first: a quiet network)
        picture = await asyncio.to_thread(photo)
        friends.add_friend(alice, bob.address.text, "Bob")
        await friends.deliver_keys(alice, a)
        wire: dict[str, Any] = {}
        text = "a post of about eighty characters, the length of a typical short update here."

        async def measure(name: str, work: Any) -> None:
            before = sum_counters(everyone)
            result = await work
            after = sum_counters(everyone)
            wire[name] = {"bytes": after["bytes_out"] - before["bytes_out"],
                          "datagrams": after["datagrams_out"] - before["datagrams_out"]}
            if isinstance(result, posts.Published):
                record = alice.data.get("my_post", bytes.fromhex(result.id))
                held = relays[0].store.get_blob(record["copies"][0][0]) if record else None  # type: ignore[union-attr]
                wire[name].update(envelopes=result.envelopes, blobs=result.blobs)
                if held is not None:
                    wire[name]["envelope_bytes"] = len(held)

        await measure("dm (baseline)", send_dm(alice, a, bob.address.text, text))
        await measure("world signed", posts.publish_post(alice, a, text))
        await measure("world anonymous", posts.publish_post(alice, a, text, anonymous=True))
        await measure("friends", posts.publish_post(alice, a, text, to="friends"))
        await measure("local 10 km", posts.publish_post(alice, a, text, to="local", at=(52.52, 13.405),
                                                         radius_km=10))
        await measure("world + 200 KB image", posts.publish_post(alice, a, text, image=picture))
        out["wire_per_post"] = wire
        for name, w in wire.items():
            say(f"wire: {name:22s} {w['bytes']:>9,} bytes {w['datagrams']:>6,} datagrams "
                f"{w.get('envelopes', '')} {w.get('blobs', '')}")

        # -- 1. world feed of N posts
        t0 = time.perf_counter()
        for i in range(args.posts):
            await posts.publish_post(alice, a, f"post number {i}: " + "x" * 60, shard=i % posts.WORLD_SHARDS)
        say(f"feed: {args.posts} posts published in {time.perf_counter() - t0:.1f} s")
        loads, load_dgrams, pulls, pull_dgrams, counts = [], [], [], [], []
        epochs = list(range(SlotParams().epoch(time.time()) - posts.FIRST_READ_EPOCHS,
                            SlotParams().epoch(time.time()) + 1))
        slots = [posts.world_slot(e, s) for e in epochs for s in range(posts.WORLD_SHARDS)]
        all_envelopes: list[bytes] = []
        for r in range(args.runs):
            reader = Account.create(tmp / f"reader{r}", f"Reader {r}", "benchmark passphrase", **KDF)
            accounts.append(reader)
            node = await client(relays, 3 + r)
            others.append(node)
            t0 = time.perf_counter()
            got = await posts.read_feed(reader, node, "world", images=False)
            loads.append(time.perf_counter() - t0)
            load_dgrams.append(node.protocol.counters["datagrams_out"])  # type: ignore[union-attr]
            counts.append(len(got.new))
            # baseline: the same slots pulled with read_slot alone (a fresh node, nothing known)
            node2 = await client(relays, 7 + r)
            others.append(node2)
            t0 = time.perf_counter()
            results = await asyncio.gather(*(node2.read_slot(s) for s in slots))
            pulls.append(time.perf_counter() - t0)
            pull_dgrams.append(node2.protocol.counters["datagrams_out"])  # type: ignore[union-attr]
            all_envelopes = [d for res in results for d in res.wanted]
        verify, parse = [], []
        for data in all_envelopes:
            t0 = time.perf_counter()
            env.open_public(data)
            verify.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            env.parse_outer(data)
            parse.append(time.perf_counter() - t0)
        out["feed"] = {
            "posts": args.posts, "slots": len(slots), "posts_loaded": counts,
            "read_feed_ms": summary_ms(loads), "read_feed_datagrams": load_dgrams,
            "baseline_read_slot_only_ms": summary_ms(pulls), "baseline_datagrams": pull_dgrams,
            "per_post_open_verify_us": {"p50": round(percentile(verify, 50) * 1e6, 1),
                                        "p99": round(percentile(verify, 99) * 1e6, 1)},
            "baseline_per_post_parse_outer_us": {"p50": round(percentile(parse, 50) * 1e6, 1),
                                                 "p99": round(percentile(parse, 99) * 1e6, 1)},
        }
        say(f"feed: read_feed of {args.posts} posts {out['feed']['read_feed_ms']} (loaded {counts}); "
            f"read_slot only {out['feed']['baseline_read_slot_only_ms']}")
        say(f"feed: per post open+verify {out['feed']['per_post_open_verify_us']} us, parse only "
            f"{out['feed']['baseline_per_post_parse_outer_us']} us")

        # -- 2. a 200 KB image
        content = media.encrypt_chunks(picture, mime="image/jpeg", now=time.time(),
                                       mint=lambda b: env.mint_pow(b, POW, env.NO_SLOT))
        await a.store_blobs(content.chunks)
        fetches, fetch_dgrams = [], []
        for r in range(args.runs):
            node = await client(relays, 11 + r)
            others.append(node)
            t0 = time.perf_counter()
            data = await posts.fetch_content(node, content.manifest.root_id, content.key)
            fetches.append(time.perf_counter() - t0)
            fetch_dgrams.append(node.protocol.counters["datagrams_out"])  # type: ignore[union-attr]
            assert data == picture
        out["image"] = {"bytes": len(picture), "blobs": len(content.chunks), "fetch_content_ms": summary_ms(fetches),
                        "fetch_content_datagrams": fetch_dgrams}
        say(f"image: {len(picture):,} bytes in {len(content.chunks)} blobs: fetch_content "
            f"{out['image']['fetch_content_ms']}")
    finally:
        for node in others + relays:
            await node.stop_async()
        for acct in accounts:
            acct.close()
    out["image"]["baseline_kademlia"] = await kademlia_baseline(args, content.chunks, say)
    return out


async def kademlia_baseline(args: argparse.Namespace, chunks: list[bytes], say: Out) -> dict[str, Any]:
    from kademlia.network import Server

    counters: Counter[str] = Counter()

    async def start(storage: Any = None) -> Any:
        server = Server(storage=storage)
        await server.listen(0, "127.0.0.1")
        server.protocol.transport = _CountingTransport(server.protocol.transport, counters)
        return server

    def address(server: Any) -> tuple[str, int]:
        return server.transport.get_extra_info("sockname")[:2]

    servers: list[Any] = []
    try:
        for _ in range(args.nodes):
            servers.append(await start())
        for server in servers[1:]:
            await server.bootstrap([address(servers[0])])
        writer = await start(_NullStorage())
        servers.append(writer)
        await writer.bootstrap([address(servers[0])])
        keys = [env.envelope_id(c) for c in chunks]
        for key, chunk in zip(keys, chunks):
            await writer.set(key, chunk)
        sequential, parallel, dgrams = [], [], []
        for _ in range(args.runs):
            reader = await start(_NullStorage())
            servers.append(reader)
            await reader.bootstrap([address(servers[0])])
            before = counters["datagrams_out"]
            t0 = time.perf_counter()
            got = [await reader.get(k) for k in keys]
            sequential.append(time.perf_counter() - t0)
            dgrams.append(counters["datagrams_out"] - before)
            assert got == chunks
            t0 = time.perf_counter()
            got = await asyncio.gather(*(reader.get(k) for k in keys))
            parallel.append(time.perf_counter() - t0)
            assert list(got) == chunks
        result = {"get_sequential_ms": summary_ms(sequential), "get_gather_ms": summary_ms(parallel),
                  "datagrams_sequential": dgrams}
        say(f"image baseline: plain kademlia get one by one {result['get_sequential_ms']}, "
            f"all at once {result['get_gather_ms']}")
        return result
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    say = Out(args.json)
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(run(args, Path(tmp), say))
    say.json({"benchmark": "posts", "nodes": args.nodes, **figures, "machine": machine(), "code": code_fingerprint()})


if __name__ == "__main__":
    main()
