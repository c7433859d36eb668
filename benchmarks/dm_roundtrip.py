"""DM round trip on a 20-node loopback network, beside plain kademlia's set/get on the same machine.

Ours: 20 full nodes (``KomradeNode(Store(...))``, real UDP on 127.0.0.1, port 0), each bootstrapped through
the first; Alice and Bob (accounts with the cheapest Argon2id limits) each on a read-only client node
(``KomradeNode(None)``). Bob syncs once (a new account's first sync reads the epochs since it was made), then M times (default
50): Alice ``send_dm``s a fresh text to Bob's address, and as soon as the send returns Bob polls
``sync_inbox`` until it returns that message. Measured with ``time.perf_counter``:

* **round trip**: from the start of ``send_dm`` to the return of the ``sync_inbox`` that contains the message;
* **send**: ``send_dm`` alone; **sync**: each ``sync_inbox`` call of the round trips (after the first sync it
  reads only since the last sync minus one epoch: 2 epochs); **idle sync**: ``sync_inbox`` with nothing new;
* **first sync**: Bob's very first ``sync_inbox`` (epochs since his account was made), reported apart;
* **datagrams / bytes** sent per round trip, summed over every node's ``protocol.counters``
  (``datagrams_out`` / ``bytes_out``) before and after each round trip.

Baseline, same run: plain ``kademlia.network.Server`` 2.2.3 (the class KomradeNode subclasses), 20 nodes on
loopback, ``await writer.set(key, value)`` then ``await reader.get(key)`` with a ~1 KB value, M times. With
20 nodes and k = 20 every member node holds every value, so a member's ``get`` is a local dictionary hit
(reported too, as ``get_member``); to compare like with like, the writer and reader are two extra kademlia
``Server`` objects whose storage keeps nothing, the nearest plain-kademlia equivalent of our read-only clients
(kademlia has no read-only mode: they are still put in the others' routing tables). Its datagrams are
counted by wrapping the transport of every server.

Run: ``python -m benchmarks.dm_roundtrip [--m 50] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import nacl.pwhash

from komrade_dht.node import KomradeNode
from komrade_dht.social import Account, send_dm, sync_inbox
from komrade_dht.storage import Store

from ._common import Out, code_fingerprint, machine, summary_ms, udp_rcvbuf_errors

PASSPHRASE = "benchmark passphrase"
#: Give up on one round trip (and count it as failed) after this many seconds of polling.
POLL_DEADLINE = 15.0
#: Upper bound of any single network operation, so that a hang shows as an error, not as a stuck benchmark.
OP_TIMEOUT = 60.0


def quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)


def sum_counters(nodes: list[KomradeNode]) -> Counter[str]:
    total: Counter[str] = Counter()
    for node in nodes:
        if node.protocol is not None:
            total.update(node.protocol.counters)
    return total


def table_size(node: KomradeNode) -> int:
    return sum(len(b) for b in node.protocol.router.buckets) if node.protocol is not None else 0


def delta(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else b - a


def make_text(i: int, size: int) -> str:
    head = f"round trip {i} "
    return head + "x" * max(0, size - len(head))


# ---------------------------------------------------------------------------------------------------- ours
async def bench_ours(args: argparse.Namespace, tmp: Path, say: Out) -> dict[str, Any]:
    t0 = time.perf_counter()
    relays: list[KomradeNode] = []
    clients: list[KomradeNode] = []
    accounts: list[Account] = []
    try:
        for i in range(args.nodes):
            node = KomradeNode(Store(tmp / f"r{i}.sqlite"))
            await node.listen(0, "127.0.0.1")
            relays.append(node)
        for node in relays[1:]:
            await asyncio.wait_for(node.bootstrap([relays[0].address]), OP_TIMEOUT)
        t_net = time.perf_counter() - t0

        t0 = time.perf_counter()
        kdf = dict(opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN, memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN)
        alice = Account.create(tmp / "alice", "Alice", PASSPHRASE, **kdf)
        accounts.append(alice)
        bob = Account.create(tmp / "bob", "Bob", PASSPHRASE, **kdf)
        accounts.append(bob)
        t_accounts = time.perf_counter() - t0

        for _ in range(2):
            node = KomradeNode(None)
            await node.listen(0, "127.0.0.1")
            clients.append(node)
            joined = await asyncio.wait_for(node.bootstrap([relays[0].address]), OP_TIMEOUT)
            if not joined:
                raise RuntimeError("a client node could not join the network")
        alice_node, bob_node = clients
        everyone = relays + clients
        peers = [table_size(n) for n in relays]
        bob_table = {"after_bootstrap": table_size(bob_node)}
        say(f"ours: {args.nodes} nodes up and bootstrapped in {t_net:.2f} s "
            f"(routing-table sizes min {min(peers)} max {max(peers)}), 2 accounts in {t_accounts:.2f} s")

        before = sum_counters(everyone)
        drops0 = udp_rcvbuf_errors()
        t0 = time.perf_counter()
        first = await asyncio.wait_for(sync_inbox(bob, bob_node), OP_TIMEOUT)
        t_first = time.perf_counter() - t0
        first_drops = delta(drops0, udp_rcvbuf_errors())
        after = sum_counters(everyone)
        bob_table["after_first_sync"] = table_size(bob_node)
        if first:
            raise RuntimeError(f"Bob's first sync found {len(first)} messages in a brand-new network")
        first_dgrams = after["datagrams_out"] - before["datagrams_out"]
        first_bytes = after["bytes_out"] - before["bytes_out"]
        say(f"ours: first sync {t_first * 1000:.1f} ms, {first_dgrams} datagrams, {first_bytes} bytes, "
            f"kernel UDP receive-buffer drops {first_drops}")
        drops0 = udp_rcvbuf_errors()

        round_trips, sends, syncs, polls, acks = [], [], [], [], []
        dgrams, nbytes, send_dgrams, send_bytes = [], [], [], []
        failed = 0
        envelope_sizes: Counter[int] = Counter()
        for i in range(args.m):
            text = make_text(i, args.text_bytes)
            before = sum_counters(everyone)
            t_start = time.perf_counter()
            key = await asyncio.wait_for(send_dm(alice, alice_node, bob.address.text, text), OP_TIMEOUT)
            t_sent = time.perf_counter()
            mid = sum_counters(everyone)
            sends.append(t_sent - t_start)
            record = alice.data.get("sent", key) or {}
            acks.append(record.get("acks", 0))
            n_polls = 0
            delivered = False
            while time.perf_counter() - t_sent < POLL_DEADLINE:
                t_sync = time.perf_counter()
                new = await asyncio.wait_for(sync_inbox(bob, bob_node), OP_TIMEOUT)
                t_done = time.perf_counter()
                syncs.append(t_done - t_sync)
                n_polls += 1
                if any(m.id == key.hex() for m in new):
                    if not any(m.id == key.hex() and m.text == text for m in new):
                        raise RuntimeError(f"round trip {i}: the message arrived with the wrong text")
                    round_trips.append(t_done - t_start)
                    delivered = True
                    break
            after = sum_counters(everyone)
            polls.append(n_polls)
            if not delivered:
                failed += 1
                say(f"ours: round trip {i}: message not delivered within {POLL_DEADLINE} s ({n_polls} syncs)")
            dgrams.append(after["datagrams_out"] - before["datagrams_out"])
            nbytes.append(after["bytes_out"] - before["bytes_out"])
            send_dgrams.append(mid["datagrams_out"] - before["datagrams_out"])
            send_bytes.append(mid["bytes_out"] - before["bytes_out"])
            for relay in relays[:1]:
                blob = relay.store.get_blob(key) if relay.store is not None else None
                if blob is not None:
                    envelope_sizes[len(blob)] += 1

        rt_drops = delta(drops0, udp_rcvbuf_errors())
        bob_table["after_round_trips"] = table_size(bob_node)
        idle = []
        before = sum_counters(everyone)
        for _ in range(args.idle_syncs):
            t0 = time.perf_counter()
            new = await asyncio.wait_for(sync_inbox(bob, bob_node), OP_TIMEOUT)
            idle.append(time.perf_counter() - t0)
            if new:
                raise RuntimeError("an idle sync returned messages")
        after = sum_counters(everyone)
        idle_dgrams = (after["datagrams_out"] - before["datagrams_out"]) / max(1, args.idle_syncs)
        totals = sum_counters(everyone)
        anomalies = ("dropped", "timeouts", "skipped_silent_peer", "task_error", "handler_error",
                     "reply_too_large", "bad_reply", "icmp_error")
        problems = {k: v for k, v in sorted(totals.items()) if k.startswith(anomalies)}
        client_problems = {
            name: {k: v for k, v in sorted(n.protocol.counters.items()) if k.startswith(anomalies)}
            for name, n in (("alice", alice_node), ("bob", bob_node))
        }
    finally:
        for node in clients + relays:
            await node.stop_async()
        for account in accounts:
            account.close()

    def mean(xs: list[float]) -> float:
        return round(sum(xs) / len(xs), 1) if xs else float("nan")

    return {
        "nodes": args.nodes,
        "m": args.m,
        "text_bytes": args.text_bytes,
        "envelope_bytes": dict(envelope_sizes),
        "setup_s": round(t_net, 3),
        "first_sync_ms": round(t_first * 1000, 3),
        "first_sync_datagrams": first_dgrams,
        "first_sync_bytes": first_bytes,
        "first_sync_kernel_udp_drops": first_drops,
        "round_trips_kernel_udp_drops": rt_drops,
        "bob_routing_table": bob_table,
        "round_trip_ms": summary_ms(round_trips),
        "send_ms": summary_ms(sends),
        "sync_ms": summary_ms(syncs),
        "idle_sync_ms": summary_ms(idle),
        "idle_sync_datagrams": round(idle_dgrams, 1),
        "syncs_per_round_trip": mean(polls),
        "failed": failed,
        "acks_per_send": mean(acks),
        "datagrams_per_round_trip": mean(dgrams),
        "bytes_per_round_trip": mean(nbytes),
        "datagrams_per_send": mean(send_dgrams),
        "bytes_per_send": mean(send_bytes),
        "anomaly_counters": problems,
        "client_anomaly_counters": client_problems,
    }


# ---------------------------------------------------------------------------------------- plain kademlia
class _NullStorage:
    """A kademlia storage that keeps nothing: a client that stores and looks up, never holds."""

    def __setitem__(self, key: bytes, value: Any) -> None:
        pass

    def __getitem__(self, key: bytes) -> Any:
        raise KeyError(key)

    def get(self, key: bytes, default: Any = None) -> Any:
        return default

    def iter_older_than(self, seconds_old: float) -> Iterator[Any]:
        return iter(())

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class _CountingTransport:
    """Wraps an asyncio datagram transport to count what goes out (measurement only: behaviour unchanged)."""

    def __init__(self, inner: Any, counters: Counter[str]) -> None:
        self._inner = inner
        self._counters = counters

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._counters["datagrams_out"] += 1
        self._counters["bytes_out"] += len(data)
        self._inner.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def bench_kademlia(args: argparse.Namespace, say: Out) -> dict[str, Any]:
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
        t0 = time.perf_counter()
        for _ in range(args.nodes):
            servers.append(await start())
        for server in servers[1:]:
            await asyncio.wait_for(server.bootstrap([address(servers[0])]), OP_TIMEOUT)
        writer = await start(_NullStorage())
        reader = await start(_NullStorage())
        for server in (writer, reader):
            servers.append(server)
            await asyncio.wait_for(server.bootstrap([address(servers[0])]), OP_TIMEOUT)
        t_net = time.perf_counter() - t0
        say(f"kademlia: {args.nodes} nodes + 2 non-storing clients up and bootstrapped in {t_net:.2f} s")

        member = servers[args.nodes // 2]
        drops0 = udp_rcvbuf_errors()
        sets, gets, both, member_gets, dgrams, nbytes = [], [], [], [], [], []
        failed = 0
        tag = os.urandom(4).hex()
        for i in range(args.m):
            key = f"bench-{tag}-{i}"
            value = os.urandom(args.value_bytes)
            before = Counter(counters)
            t_start = time.perf_counter()
            stored = await asyncio.wait_for(writer.set(key, value), OP_TIMEOUT)
            t_set = time.perf_counter()
            got = await asyncio.wait_for(reader.get(key), OP_TIMEOUT)
            t_get = time.perf_counter()
            dgrams.append(counters["datagrams_out"] - before["datagrams_out"])
            nbytes.append(counters["bytes_out"] - before["bytes_out"])
            if not stored or got != value:
                failed += 1
                continue
            sets.append(t_set - t_start)
            gets.append(t_get - t_set)
            both.append(t_get - t_start)
            t0 = time.perf_counter()
            local = await member.get(key)
            member_gets.append(time.perf_counter() - t0)
            if local != value:
                failed += 1
        kad_drops = delta(drops0, udp_rcvbuf_errors())
    finally:
        for server in servers:
            server.stop()
        await asyncio.sleep(0.05)  # let the closed transports and the refresh tasks wind down

    def mean(xs: list[float]) -> float:
        return round(sum(xs) / len(xs), 1) if xs else float("nan")

    return {
        "nodes": args.nodes,
        "m": args.m,
        "value_bytes": args.value_bytes,
        "setup_s": round(t_net, 3),
        "set_then_get_ms": summary_ms(both),
        "set_ms": summary_ms(sets),
        "get_ms": summary_ms(gets),
        "get_member_ms": summary_ms(member_gets),
        "failed": failed,
        "datagrams_per_set_get": mean(dgrams),
        "bytes_per_set_get": mean(nbytes),
        "kernel_udp_drops": kad_drops,
    }


# ---------------------------------------------------------------------------------------------------- main
def show(say: Out, label: str, s: dict[str, float]) -> None:
    if not s.get("n"):
        say(f"  {label:<34} (no samples)")
        return
    say(f"  {label:<34} p50 {s['p50']:8.2f}  p99 {s['p99']:8.2f}  mean {s['mean']:8.2f} ms  (n={s['n']})")


async def amain(args: argparse.Namespace, say: Out) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="komrade-bench-") as tmp:
        t0 = time.perf_counter()
        ours = await bench_ours(args, Path(tmp), say)
        t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    kad = await bench_kademlia(args, say)
    t_kad = time.perf_counter() - t0

    say(f"\nkomrade DM, {ours['nodes']} nodes, {ours['m']} round trips, text {ours['text_bytes']} B "
        f"(envelope sizes {ours['envelope_bytes']}), {ours['failed']} failed, wall {t_ours:.1f} s")
    say(f"  first sync (new account)          {ours['first_sync_ms']:8.2f} ms  "
        f"({ours['first_sync_datagrams']} datagrams, {ours['first_sync_bytes']} bytes)")
    show(say, "round trip (send -> synced)", ours["round_trip_ms"])
    show(say, "send_dm", ours["send_ms"])
    show(say, "sync_inbox (in round trips)", ours["sync_ms"])
    show(say, "sync_inbox (nothing new)", ours["idle_sync_ms"])
    say(f"  syncs per round trip {ours['syncs_per_round_trip']}, acks per send {ours['acks_per_send']}")
    say(f"  per round trip: {ours['datagrams_per_round_trip']} datagrams, {ours['bytes_per_round_trip']:.0f} bytes "
        f"(send alone: {ours['datagrams_per_send']} datagrams, {ours['bytes_per_send']:.0f} bytes); "
        f"idle sync: {ours['idle_sync_datagrams']} datagrams")
    say(f"  kernel UDP receive-buffer drops: first sync {ours['first_sync_kernel_udp_drops']}, "
        f"round trips {ours['round_trips_kernel_udp_drops']}; Bob's routing table {ours['bob_routing_table']}")
    if ours["anomaly_counters"]:
        say(f"  anomaly counters, all nodes, whole run: {ours['anomaly_counters']}; "
            f"clients: {ours['client_anomaly_counters']}")
    say(f"\nplain kademlia 2.2.3, {kad['nodes']} nodes + 2 non-storing clients, {kad['m']} x set+get of "
        f"{kad['value_bytes']} B, {kad['failed']} failed, wall {t_kad:.1f} s")
    show(say, "set then get (client -> client)", kad["set_then_get_ms"])
    show(say, "set", kad["set_ms"])
    show(say, "get", kad["get_ms"])
    show(say, "get by a member (local hit)", kad["get_member_ms"])
    say(f"  per set+get: {kad['datagrams_per_set_get']} datagrams, {kad['bytes_per_set_get']:.0f} bytes")
    if ours["round_trip_ms"].get("n") and kad["set_then_get_ms"].get("n"):
        say(f"\nround trip p50 ours / kademlia set+get p50: "
            f"{ours['round_trip_ms']['p50'] / kad['set_then_get_ms']['p50']:.2f}x")
    return {"benchmark": "dm_roundtrip", "komrade": ours, "kademlia": kad, "machine": machine(),
            "code": code_fingerprint()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dm_roundtrip", description=__doc__.split("\n")[0])
    parser.add_argument("--m", type=int, default=50, help="round trips (default 50)")
    parser.add_argument("--nodes", type=int, default=20, help="full nodes in each network (default 20)")
    parser.add_argument("--text-bytes", type=int, default=400,
                        help="DM text length in bytes (default 400: a 1024-byte envelope, like the ~1 KB value)")
    parser.add_argument("--value-bytes", type=int, default=1000, help="kademlia value size (default 1000)")
    parser.add_argument("--idle-syncs", type=int, default=10, help="syncs with nothing new (default 10)")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    if args.m < 1 or args.nodes < 2:
        parser.error("need --m >= 1 and --nodes >= 2")
    quiet_logging()
    out = Out(args.json)
    out.json(asyncio.run(amain(args, out)))


if __name__ == "__main__":
    main()
