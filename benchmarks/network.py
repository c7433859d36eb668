"""The network lab: N real nodes on loopback UDP in one process, M messages, loss, churn and a partition.

One run builds a fresh network per mode and plays the same scenario on it (same seed: same node ids, same
messages, same envelopes, same churn and partition schedule, same loss RNG per node):

* **ours**: gossip and anti-entropy on, with the defaults of ``GossipConfig``;
* **plain**: baseline 1, a plain DHT store to the k closest, no gossip: ``GossipConfig(hops=0,
  anti_entropy_interval=0)``;
* **flood**: baseline 2, flood to every node as Bitmessage does: ``GossipConfig(fanout=8, hops=8,
  anti_entropy_interval=0)``: every node forwards each new envelope once to 8 random peers (Bitmessage keeps
  8 outbound connections and relays every new object to all of them); with 8 hops that reaches every node
  (see ``copies_per_envelope``). Bitmessage sends an inventory hash first and the object on request; here
  the envelope itself goes, so the bytes are an upper bound of Bitmessage's;
* **kademlia** (only when named): plain ``kademlia.network.Server`` 2.2.3, N servers, M x ``set`` then ``get``
  of a 1000-byte value between two non-storing clients, with the same datagram loss (kademlia has no data
  directory to restart from, so no churn and no partition).

The scenario. N full nodes (``KomradeNode(Store(<tmp in /dev/shm>/nI/node.sqlite))``, cheap proof of work
``PowParams(trials_per_byte=0.001, memlimit=8192)`` so minting does not dominate) and C read-only clients bind port 0 on
127.0.0.1 (``--ips K`` spreads them over K distinct 127.x addresses) and join in concurrent batches, each
through 3 random nodes already joined. Then the faults start and M messages are sent, evenly spaced over
``--window`` seconds: message i is a real sealed envelope (``seal``, body ``--body-bytes``) from a random
identity to one of R recipients (``--recipients``), published by a random client or node with
``node.publish(slot_id(recipient_vk, width, epoch), envelope)``. Each recipient lives on a home device (a
random node or client; while its home node is down it reads through a random client) and, while it is owed
a message, reads its slot with ``fetch_slot(slot, known=<ids it already has>)`` at once and then every
``--poll`` seconds, trial-decrypting what comes back. A message is delivered when a fetch returns it and it
opens; latency is from the start of its publish to the return of that fetch; a message not delivered within
``--deadline`` seconds of its publish counts as lost. Duplicates delivered to the application (an id twice
in one result, or an id in ``known`` returned again) are counted and must be 0.

Faults: ``--loss p`` drops that fraction of every node's and client's outgoing datagrams (a ``sendto``
wrapper with a seeded RNG per node); ``--churn f`` stops that fraction of the nodes, each at a random time in
the send window, for ``--down`` seconds (uniform in the range), and restarts it from its data directory
(same id, same address, ``KomradeNode(Store(path), node_id=...)``, ``listen(port, host)``, rejoin through its
saved routing table and 3 random live nodes); ``--churn-empty q`` makes that fraction of the churned nodes
restart with an empty data directory; ``--partition S`` splits nodes and clients into two random halves for S
seconds, starting at a quarter of the send window (datagrams across the halves are dropped), then heals. A
node chosen to stop first finishes the publish or fetch it is running for the application (a graceful stop);
its own background work (gossip, anti-entropy, hand-offs) is cut off.

Figures (for each mode): ``delivered``, ``delivery_rate``, ``p50_ms``/``p99_ms`` latency of delivered
messages; ``datagrams_per_message``: every datagram every node and client sent from the first publish until
the last message was delivered or lost and the last churned node was back (publishes, gossip, reads,
anti-entropy, rejoins after churn), over M; ``bytes_per_node``: bytes the N full nodes sent in that time, over
N; ``copies_per_envelope``: in how many nodes' stores each envelope is at the end (mean). Diagnostics: traffic
by RPC method, node counters, kernel UDP receive-buffer drops, and for each lost message where its copies are.

Run: ``python -m benchmarks.network --nodes 100 --messages 200 --loss 0.2 --churn 0.3 [--partition S]
[--mode ours|plain|flood|kademlia|all|a,b] [--json] [--seed N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from komrade_dht import envelope as env
from komrade_dht.gossip import GossipConfig
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.slots import SlotParams, slot_id

from ._common import Out, code_fingerprint, machine, percentile, summary_ms, udp_rcvbuf_errors
from .lab import OP_TIMEOUT, Faults, Lab, Member, Tasks, peak_rss_mb, raise_fd_limit, rss_mb, scratch_dir, xor_rank

#: Cheap proof of work, so that minting 200 envelopes does not dominate the run.
CHEAP = env.PowParams(trials_per_byte=0.001, memlimit=8192)
MODES = ("ours", "plain", "flood")
ALL_MODES = (*MODES, "kademlia")
#: Counters worth showing, summed over every node and client.
COUNTERS = (
    "datagrams_out", "datagrams_in", "timeouts", "retransmits", "skipped_silent_peer", "dropped", "task_error",
    "handler_error", "bad_reply", "reply_too_large", "icmp_error", "gossip_forwarded", "gossip_accepted",
    "gossip_duplicate", "ae_pushed", "ae_pulled", "id_changed_at_address",
)


def gossip_for(mode: str) -> GossipConfig:
    if mode == "ours":
        return GossipConfig()
    if mode == "plain":
        return GossipConfig(hops=0, anti_entropy_interval=0)
    if mode == "flood":
        return GossipConfig(fanout=8, hops=8, anti_entropy_interval=0)
    raise ValueError(mode)


# ------------------------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Recipient:
    index: int
    identity: Identity
    slot: bytes
    home: tuple[str, int]
    """("node", i) or ("client", c): the device it reads from."""


@dataclass(frozen=True)
class Message:
    index: int
    at: float
    """Seconds after the start of the send phase."""
    recipient: int
    device: tuple[str, int]
    """("node", i) or ("client", c): who publishes it."""
    envelope: bytes
    id: bytes


@dataclass(frozen=True)
class ChurnEvent:
    member: int
    at: float
    down: float
    wipe: bool


@dataclass(frozen=True)
class Plan:
    """Everything random about a scenario, drawn once from the seed and played on every mode."""

    nodes: int
    clients: int
    recipients: list[Recipient]
    messages: list[Message]
    churn: list[ChurnEvent]
    partition_at: float
    partition_s: float
    epoch: int


def make_plan(args: argparse.Namespace) -> Plan:
    rng = random.Random(args.seed)
    n, c = args.nodes, args.clients
    epoch = SlotParams().epoch(time.time())

    def device() -> tuple[str, int]:
        pick = rng.randrange(n + c)
        return ("node", pick) if pick < n else ("client", pick - n)

    recipients = []
    for r in range(args.recipients):
        identity = Identity.from_seed(rng.randbytes(32))
        recipients.append(Recipient(r, identity, slot_id(identity.verify_key, args.width, epoch), device()))
    senders = [Identity.from_seed(rng.randbytes(32)) for _ in range(max(1, min(10, args.messages)))]
    messages = []
    step = args.window / args.messages
    for i in range(args.messages):
        r = rng.randrange(len(recipients))
        body = rng.randbytes(args.body_bytes)
        data = env.seal(rng.choice(senders), recipients[r].identity.public, body, pow=CHEAP, slot=recipients[r].slot)
        messages.append(Message(i, i * step, r, device(), data, env.envelope_id(data)))
    churned = rng.sample(range(n), round(args.churn * n))
    wiped = set(churned[: round(args.churn_empty * len(churned))])
    churn = [
        ChurnEvent(m, rng.uniform(0, args.window), rng.uniform(*args.down), m in wiped) for m in sorted(churned)
    ]
    return Plan(n, c, recipients, messages, churn, args.window / 4, args.partition, epoch)


# ----------------------------------------------------------------------------------------------- one mode
@dataclass
class Outcome:
    started: float | None = None
    published: float | None = None
    acks: int = 0
    error: str | None = None
    delivered_after: float | None = None
    lost: bool = False
    publisher: str = ""
    table: int = 0


@dataclass
class Run:
    """The state of one mode's run while it plays the plan."""

    plan: Plan
    lab: Lab
    args: argparse.Namespace
    t0: float = 0.0
    outcomes: dict[bytes, Outcome] = field(default_factory=dict)
    wake: list[asyncio.Event] = field(default_factory=list)
    sends_done: bool = False
    duplicates: int = 0
    duplicate_in_result: int = 0
    duplicate_known: int = 0
    unexpected: int = 0
    not_opened: int = 0
    fetches: int = 0
    fetch_errors: Counter[str] = field(default_factory=Counter)
    publish_errors: Counter[str] = field(default_factory=Counter)
    churn_log: Counter[str] = field(default_factory=Counter)
    publish_s: list[float] = field(default_factory=list)
    fetch_s: list[float] = field(default_factory=list)
    lag_s: list[float] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def member_for(self, device: tuple[str, int], rng: random.Random) -> tuple[KomradeNode, Member | None]:
        """The node to run an application operation on: the device itself if usable, else a random client
        (a node that is down cannot act for its user; the user reaches the network through a client)."""
        kind, i = device
        if kind == "node":
            member = self.lab.members[i]
            if member.usable:
                assert member.node is not None
                return member.node, member
        if kind == "client":
            return self.lab.clients[i], None
        return rng.choice(self.lab.clients), None

    async def send(self, message: Message) -> None:
        await asyncio.sleep(max(0.0, message.at - self.now()))
        outcome = self.outcomes[message.id]
        node, member = self.member_for(message.device, random.Random(message.index))
        recipient = self.plan.recipients[message.recipient]
        if member is not None:
            member.busy += 1
        outcome.started = self.now()
        outcome.publisher = f"node{member.index}" if member is not None else f"client{self.lab.clients.index(node)}"
        outcome.table = sum(len(b) for b in node.protocol.router.buckets) if node.protocol else -1
        try:
            outcome.acks = await asyncio.wait_for(node.publish(recipient.slot, message.envelope), OP_TIMEOUT)
        except Exception as exc:  # counted, and the message still has its chance (gossip may have taken it)
            outcome.error = type(exc).__name__
            self.publish_errors[outcome.error] += 1
        finally:
            if member is not None:
                member.busy -= 1
        outcome.published = self.now()
        self.publish_s.append(outcome.published - outcome.started)
        self.wake[message.recipient].set()

    async def read(self, recipient: Recipient) -> None:
        """The recipient's application: fetch the slot while owed a message, deliver what opens, once."""
        mine = [m for m in self.plan.messages if m.recipient == recipient.index]
        known: set[bytes] = set()
        opener = env.TrialDecryptor(recipient.identity)
        rng = random.Random(self.args.seed * 7919 + recipient.index)
        wake = self.wake[recipient.index]
        while True:
            now = self.now()
            owed = [m for m in mine if self._owed(m, now)]
            if not owed:
                if self.sends_done and all(self._settled(m) for m in mine):
                    return
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), self.args.poll)
                except asyncio.TimeoutError:
                    pass
                continue
            node, member = self.member_for(recipient.home, rng)
            if member is not None:
                member.busy += 1
            wake.clear()
            t_fetch = self.now()
            try:
                got = await asyncio.wait_for(node.fetch_slot(recipient.slot, known=frozenset(known)), OP_TIMEOUT)
            except Exception as exc:
                self.fetch_errors[type(exc).__name__] += 1
                got = []
            finally:
                if member is not None:
                    member.busy -= 1
            self.fetches += 1
            done = self.now()
            self.fetch_s.append(done - t_fetch)
            ids = [env.envelope_id(data) for data in got]
            self.duplicate_in_result += len(ids) - len(set(ids))
            self.duplicate_known += len(set(ids) & known)
            for data, key in zip(got, ids):
                if key in known:
                    continue
                known.add(key)
                try:
                    opened = opener.open(data)
                except env.EnvelopeError:
                    opened = None
                outcome = self.outcomes.get(key)
                if opened is None or outcome is None or outcome.started is None:
                    self.not_opened += opened is None
                    self.unexpected += outcome is None
                    continue
                if not outcome.lost and outcome.delivered_after is None:
                    outcome.delivered_after = done - outcome.started
            for m in mine:
                self._owed(m, done)  # marks as lost what passed its deadline
            try:
                await asyncio.wait_for(wake.wait(), self.args.poll)
            except asyncio.TimeoutError:
                pass

    def _owed(self, message: Message, now: float) -> bool:
        outcome = self.outcomes[message.id]
        if outcome.started is None or outcome.delivered_after is not None or outcome.lost:
            return False
        if now - outcome.started > self.args.deadline:
            outcome.lost = True
            return False
        return outcome.published is not None

    def _settled(self, message: Message) -> bool:
        outcome = self.outcomes[message.id]
        return outcome.delivered_after is not None or outcome.lost

    async def churn(self, event: ChurnEvent) -> None:
        member = self.lab.members[event.member]
        await asyncio.sleep(max(0.0, event.at - self.now()))
        member.stopping = True
        give_up = self.now() + OP_TIMEOUT
        while member.busy and self.now() < give_up:  # let it finish what it does for its user
            await asyncio.sleep(0.05)
        self.churn_log["stopped_while_busy"] += member.busy > 0
        await self.lab.stop(member, wipe=event.wipe)
        self.churn_log["stopped"] += 1
        self.churn_log["wiped"] += event.wipe
        await asyncio.sleep(event.down)
        try:
            found = await self.lab.restart(member)
            self.churn_log["restarted"] += 1
            self.churn_log["rejoined_alone"] += found == 0
        except Exception as exc:
            self.churn_log[f"restart_failed_{type(exc).__name__}"] += 1
        finally:
            member.stopping = False

    async def watch_loop(self, period: float = 0.1) -> None:
        """How late the event loop wakes a sleeper (the lab's own CPU saturation: all nodes share one core), and
        a timeline of the traffic, one row per second."""
        keys = ("datagrams_out", "timeouts", "retransmits", "skipped_silent_peer", "dropped")
        last = self.lab.totals()
        lags: list[float] = []
        cpu = time.process_time()
        tick = self.now()
        while True:
            t = time.perf_counter()
            await asyncio.sleep(period)
            lag = time.perf_counter() - t - period
            self.lag_s.append(lag)
            lags.append(lag)
            if self.now() - tick >= 1.0:
                totals = self.lab.totals()
                row: dict[str, Any] = {"t": round(self.now(), 1)}
                row.update({k: totals[k] - last[k] for k in keys})
                row["lag_max_ms"] = round(max(lags) * 1000)
                row["cpu"] = round((time.process_time() - cpu) / (self.now() - tick), 2)
                row["down"] = sum(1 for m in self.lab.members if not m.up)
                row["owed"] = sum(1 for o in self.outcomes.values() if o.started is not None and
                                  o.delivered_after is None and not o.lost)
                self.timeline.append(row)
                last, lags, cpu, tick = totals, [], time.process_time(), self.now()

    async def partition(self) -> None:
        await asyncio.sleep(max(0.0, self.plan.partition_at - self.now()))
        self.lab.faults.partition_on = True
        await asyncio.sleep(self.plan.partition_s)
        self.lab.faults.partition_on = False


def delta(after: Counter[str], before: Counter[str], key: str) -> int:
    return after[key] - before[key]


async def run_mode(mode: str, plan: Plan, args: argparse.Namespace, say: Out) -> dict[str, Any]:
    config = NodeConfig(pow=CHEAP, gossip=gossip_for(mode), id_bits=0)  # restarts keep their id without a proof
    random.seed(args.seed)  # gossip's peer picks use the module RNG
    with scratch_dir(f"komrade-lab-{mode}-") as tmp:
        faults = Faults(args.seed, args.loss)
        faults.count_methods = not args.no_method_counts
        lab = Lab.plan(Path(tmp), plan.nodes, config, faults, args.seed, args.ips)
        run = Run(plan, lab, args)
        run.outcomes = {m.id: Outcome() for m in plan.messages}
        run.wake = [asyncio.Event() for _ in plan.recipients]
        tasks = Tasks()
        try:
            t_start = time.perf_counter()
            startup = await lab.start(plan.clients, batch=args.batch)
            tables = [sum(len(b) for b in m.node.protocol.router.buckets) for m in lab.members if m.node]
            say(f"{mode}: {plan.nodes} nodes + {plan.clients} clients up in {startup['total_s']:.1f} s "
                f"(bind {startup['bind_s']:.1f} s, join {startup['join_s']:.1f} s; routing tables "
                f"min {min(tables)} mean {statistics.fmean(tables):.0f}); rss {rss_mb():.0f} MB")
            before, nodes_before, faults_before = lab.totals(), lab.node_totals(), Counter(faults.counters)
            drops0 = udp_rcvbuf_errors()
            faults.loss_on = args.loss > 0
            run.t0 = time.perf_counter()
            cpu0 = time.process_time()
            watcher = tasks.spawn(run.watch_loop())
            senders = [tasks.spawn(run.send(m)) for m in plan.messages]
            readers = [tasks.spawn(run.read(r)) for r in plan.recipients]
            background = [tasks.spawn(run.churn(e)) for e in plan.churn]
            if plan.partition_s > 0:
                background.append(tasks.spawn(run.partition()))
            await asyncio.gather(*senders)
            run.sends_done = True
            for event in run.wake:
                event.set()
            await asyncio.gather(*readers)
            t_delivery = run.now()
            await asyncio.gather(*background)
            t_run = run.now()
            cpu = time.process_time() - cpu0
            watcher.cancel()
            after, nodes_after, faults_after = lab.totals(), lab.node_totals(), Counter(faults.counters)
            drops = None if drops0 is None else (udp_rcvbuf_errors() or 0) - drops0
            faults.loss_on = False
            copies, diagnosis = await census(run)
        finally:
            await tasks.close()
            t0 = time.perf_counter()
            await lab.close()
            t_close = time.perf_counter() - t0

    latencies = [o.delivered_after for o in run.outcomes.values() if o.delivered_after is not None]
    m = len(plan.messages)
    delivered = len(latencies)
    datagrams = delta(after, before, "datagrams_out")
    by_method = {
        k[5:]: faults_after[k] - faults_before[k]
        for k in sorted(faults_after)
        if k.startswith("sent_") and k != "sent_bytes" and faults_after[k] - faults_before[k]
    }
    counters = {k: delta(after, before, k) for k in COUNTERS if delta(after, before, k)}
    counters.update({k: delta(after, before, k) for k in sorted(after) if k.startswith("dropped_") and delta(after, before, k)})
    duplicates = run.duplicate_in_result + run.duplicate_known
    result: dict[str, Any] = {
        "mode": mode,
        "gossip": {"fanout": config.gossip.fanout, "hops": config.gossip.hops,
                   "anti_entropy_interval": config.gossip.anti_entropy_interval,
                   "anti_entropy_slots": config.gossip.anti_entropy_slots},
        "nodes": plan.nodes,
        "messages": m,
        "delivered": delivered,
        "delivery_rate": round(delivered / m, 4),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else None,
        "delivered_10s": sum(1 for x in latencies if x <= 10),
        "delivered_30s": sum(1 for x in latencies if x <= 30),
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "datagrams_per_message": round(datagrams / m, 1),
        "bytes_per_node": round(delta(nodes_after, nodes_before, "bytes_out") / plan.nodes),
        "copies_per_envelope": round(statistics.fmean(copies), 2) if copies else None,
        "copies_min": min(copies) if copies else None,
        "duplicates": duplicates,
        "duplicates_in_one_result": run.duplicate_in_result,
        "duplicates_of_known": run.duplicate_known,
        "unexpected": run.unexpected,
        "not_opened": run.not_opened,
        "publish_errors": dict(run.publish_errors),
        "failed_publishes": [
            {"message": mm.index, "at_s": round(run.outcomes[mm.id].started or 0, 1), "by": run.outcomes[mm.id].publisher,
             "table": run.outcomes[mm.id].table, "error": run.outcomes[mm.id].error,
             "ms": round(((run.outcomes[mm.id].published or 0) - (run.outcomes[mm.id].started or 0)) * 1000)}
            for mm in plan.messages if run.outcomes[mm.id].error
        ],
        "acks_mean": round(statistics.fmean(o.acks for o in run.outcomes.values()), 1),
        "fetches": run.fetches,
        "fetch_errors": dict(run.fetch_errors),
        "datagrams_total": datagrams,
        "client_bytes": delta(after, before, "bytes_out") - delta(nodes_after, nodes_before, "bytes_out"),
        "bytes_in_per_node": round(delta(nodes_after, nodes_before, "bytes_in") / plan.nodes),
        "datagrams_by_method": by_method,
        "fault_drops": {k: faults_after[k] - faults_before[k] for k in ("dropped_loss", "dropped_partition")},
        "counters": counters,
        "kernel_udp_drops": drops,
        "churn": dict(run.churn_log),
        "kernel_bind_retries": lab.kernel_bind_retries,
        "publish_ms": summary_ms(run.publish_s),
        "fetch_ms": summary_ms(run.fetch_s),
        "loop_lag_ms": summary_ms(run.lag_s),
        "startup_s": round(startup["total_s"], 2),
        "delivery_phase_s": round(t_delivery, 2),
        "run_s": round(t_run, 2),
        "cpu_s": round(cpu, 2),
        "close_s": round(t_close, 2),
        "wall_s": round(time.perf_counter() - t_start, 2),
        "rss_mb": round(peak_rss_mb()),
        "lost": diagnosis,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "timeline": run.timeline if args.timeline else None,
    }
    say(f"{mode}: delivered {delivered}/{m} ({delivered / m:.1%}), p50 {result['p50_ms']} ms, p99 "
        f"{result['p99_ms']} ms, {result['datagrams_per_message']} datagrams/message, {result['bytes_per_node']} "
        f"bytes/node, {result['copies_per_envelope']} copies/envelope, {duplicates} duplicates; "
        f"run {t_run:.1f} s, cpu {cpu:.1f} s")
    if diagnosis:
        say(f"{mode}: lost messages: {diagnosis[:5]}{' ...' if len(diagnosis) > 5 else ''}")
    return result


async def census(run: Run) -> tuple[list[int], list[dict[str, Any]]]:
    """Copies of each envelope in the nodes' stores now; for each lost message, where its copies are and what its
    reader sees now (its lookup of the slot against the true k closest, and one more fetch)."""
    lab, plan = run.lab, run.plan
    copies = []
    lost = []
    k = lab.config.ksize
    for message in plan.messages:
        holders = [m for m in lab.members if m.node is not None and m.node.store and m.node.store.has_blob(message.id)]
        copies.append(len(holders))
        outcome = run.outcomes[message.id]
        if outcome.delivered_after is None:
            recipient = plan.recipients[message.recipient]
            ranked = xor_rank(lab.members, recipient.slot)
            in_slot = [
                m for m in ranked[:k]
                if m.node is not None and message.id in set(m.node.protocol.slot_ids(recipient.slot))  # type: ignore[union-attr]
            ]
            lost.append({
                "message": message.index,
                "sent_at_s": round(message.at, 1),
                "publish_acks": outcome.acks,
                "publish_error": outcome.error,
                "publisher": outcome.publisher,
                "publisher_table": outcome.table,
                "copies_now": len(holders),
                "in_slot_at_k_closest": len(in_slot),
                "in_slot_at_8_closest": sum(1 for m in in_slot if m in ranked[:8]),
                "reader": plan.recipients[message.recipient].home,
                **(await reader_view(run, recipient, message, ranked[:k])),
            })
    return copies, lost


async def reader_view(run: Run, recipient: Recipient, message: Message, closest: list[Member]) -> dict[str, Any]:
    node, _ = run.member_for(recipient.home, random.Random(0))
    try:
        found = await asyncio.wait_for(node.closest(recipient.slot), OP_TIMEOUT)
        true = {m.node_id for m in closest}
        listing = 0
        for peer in found[:8]:
            listing += message.id in await node.slot_ids_at(peer, recipient.slot)
        got = await asyncio.wait_for(node.fetch_slot(recipient.slot), OP_TIMEOUT)
        return {
            "reader_lookup_found": len(found),
            "reader_lookup_in_true_k": len(true & {n.id for n in found}),
            "reader_top8_listing_it": listing,
            "refetch_has_it": message.id in {env.envelope_id(d) for d in got},
            "reader_table": sum(len(b) for b in node.protocol.router.buckets) if node.protocol else -1,
        }
    except Exception as exc:
        return {"reader_view_error": repr(exc)}


# ---------------------------------------------------------------------------------------- plain kademlia
async def run_kademlia(plan: Plan, args: argparse.Namespace, say: Out) -> dict[str, Any]:
    """Plain kademlia 2.2.3: N servers, then M x (set of a 1000-byte value by one non-storing client, then get by
    another), as benchmarks/dm_roundtrip.py drives it, but started on the same schedule as the messages (so they
    overlap like the messages do) and with the same datagram loss; one set+get that takes longer than the
    deadline counts as lost."""
    from kademlia.network import Server

    from .dm_roundtrip import _NullStorage

    faults = Faults(args.seed, args.loss)
    faults.count_methods = False
    rng = random.Random(args.seed + 1)
    servers: list[Any] = []

    def address(server: Any) -> tuple[str, int]:
        return server.transport.get_extra_info("sockname")[:2]

    async def start(key: int, storage: Any = None) -> Any:
        server = Server(storage=storage)
        await server.listen(0, "127.0.0.1")
        faults.install(server, key, 0)
        servers.append(server)
        return server

    async def join(server: Any, among: list[Any]) -> None:
        picks = rng.sample(among, min(3, len(among)))
        await asyncio.wait_for(server.bootstrap([address(p) for p in picks]), OP_TIMEOUT)

    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    library_errors: Counter[str] = Counter()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # rpcudp's timeout callback sets the result of a future that wait_for already cancelled (a bug of rpcudp
        # 5.0.1: InvalidStateError); count those instead of printing a traceback for each
        if isinstance(context.get("exception"), asyncio.InvalidStateError):
            library_errors["rpcudp_timeout_on_cancelled_future"] += 1
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        t0 = time.perf_counter()
        for i in range(plan.nodes):
            await start(i)
        joined, pending = servers[:1], servers[1:]
        while pending:
            size = min(args.batch, len(joined))
            group, pending = pending[:size], pending[size:]
            await asyncio.gather(*(join(s, joined) for s in group))
            joined.extend(group)
        writer = await start(10_000_000, _NullStorage())
        reader = await start(10_000_001, _NullStorage())
        await asyncio.gather(join(writer, joined), join(reader, joined))
        t_start = time.perf_counter() - t0
        say(f"kademlia: {plan.nodes} servers + 2 non-storing clients up in {t_start:.1f} s; rss {rss_mb():.0f} MB")
        faults.loss_on = args.loss > 0
        drops0 = udp_rcvbuf_errors()
        sent0, bytes0 = faults.counters["sent"], faults.counters["sent_bytes"]
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        t_run0 = time.perf_counter()

        async def set_then_get(message: Message) -> None:
            await asyncio.sleep(max(0.0, message.at - (time.perf_counter() - t_run0)))
            key = f"lab-{args.seed}-{message.index}-{os.urandom(4).hex()}"
            value = random.Random(message.index).randbytes(args.value_bytes)
            t = time.perf_counter()
            try:
                async def both() -> Any:
                    await writer.set(key, value)
                    return await reader.get(key)

                got = await asyncio.wait_for(both(), args.deadline)
            except asyncio.TimeoutError:
                failures["deadline"] += 1
                return
            except Exception as exc:
                failures[type(exc).__name__] += 1
                return
            if got == value:
                latencies.append(time.perf_counter() - t)
            else:
                failures["not_found"] += 1

        ops = Tasks()
        try:
            await asyncio.gather(*(ops.spawn(set_then_get(m)) for m in plan.messages))
        finally:
            await ops.close()
        failed = sum(failures.values())
        t_run = time.perf_counter() - t_run0
        drops = None if drops0 is None else (udp_rcvbuf_errors() or 0) - drops0
    finally:
        for server in servers:
            server.stop()
        await asyncio.sleep(0.1)
        loop.set_exception_handler(previous_handler)
    m = len(plan.messages)
    delivered = m - failed
    return {
        "mode": "kademlia",
        "nodes": plan.nodes,
        "messages": m,
        "delivered": delivered,
        "delivery_rate": round(delivered / m, 4),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else None,
        "datagrams_per_message": round((faults.counters["sent"] - sent0) / m, 1),
        "bytes_per_node": round((faults.counters["sent_bytes"] - bytes0) / plan.nodes),
        "copies_per_envelope": None,
        "value_bytes": args.value_bytes,
        "faults_applied": "loss only",
        "failures": dict(failures),
        "library_errors": dict(library_errors),
        "fault_drops": {"dropped_loss": faults.counters["dropped_loss"]},
        "kernel_udp_drops": drops,
        "startup_s": round(t_start, 2),
        "run_s": round(t_run, 2),
        "rss_mb": round(peak_rss_mb()),
    }


# ---------------------------------------------------------------------------------------------------- main
HEADLINE = ("nodes", "messages", "delivered", "delivery_rate", "p50_ms", "p99_ms", "datagrams_per_message",
            "bytes_per_node", "copies_per_envelope")


def table(results: dict[str, dict[str, Any]], say: Out) -> None:
    say("")
    say(f"{'mode':<9} {'delivered':>11} {'p50 ms':>9} {'p99 ms':>9} {'dgrams/msg':>11} {'bytes/node':>11} "
        f"{'copies':>7} {'dups':>5}")
    def cell(value: Any, width: int) -> str:
        return f"{'-' if value is None else value:>{width}}"

    for mode, r in results.items():
        say(f"{mode:<9} {r['delivered']:>5}/{r['messages']:<5} {cell(r['p50_ms'], 9)} {cell(r['p99_ms'], 9)} "
            f"{cell(r['datagrams_per_message'], 11)} {cell(r['bytes_per_node'], 11)} "
            f"{cell(r['copies_per_envelope'], 7)} {cell(r.get('duplicates'), 5)}")


async def amain(args: argparse.Namespace, say: Out) -> dict[str, Any]:
    fd_limit = raise_fd_limit(max(4096, 8 * (args.nodes + args.clients) + 256))
    t0 = time.perf_counter()
    plan = make_plan(args)
    say(f"plan: {args.nodes} nodes, {args.clients} clients, {len(plan.messages)} messages to {len(plan.recipients)} "
        f"recipients over {args.window:.0f} s, loss {args.loss}, churn {len(plan.churn)} nodes "
        f"({sum(e.wipe for e in plan.churn)} restart empty), partition {args.partition} s; sealed in "
        f"{time.perf_counter() - t0:.1f} s")
    results: dict[str, dict[str, Any]] = {}
    for mode in args.modes:
        if mode == "kademlia":
            results[mode] = await run_kademlia(plan, args, say)
            r = results[mode]
            say(f"kademlia: delivered {r['delivered']}/{r['messages']}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                f"{r['datagrams_per_message']} datagrams per set+get")
        else:
            results[mode] = await run_mode(mode, plan, args, say)
    table(results, say)
    first = results.get("ours") or next(iter(results.values()))
    out: dict[str, Any] = {"benchmark": "network"}
    out.update({k: first.get(k) for k in HEADLINE})
    out["duplicates"] = first.get("duplicates")
    out["mode"] = first["mode"]
    out["params"] = {
        "nodes": args.nodes, "clients": args.clients, "messages": args.messages, "recipients": args.recipients,
        "loss": args.loss, "churn": args.churn, "churn_empty": args.churn_empty, "down_s": list(args.down),
        "partition_s": args.partition, "window_s": args.window, "deadline_s": args.deadline, "poll_s": args.poll,
        "width": args.width, "body_bytes": args.body_bytes, "ips": args.ips, "seed": args.seed,
        "envelope_bytes": len(plan.messages[0].envelope), "pow_trials_per_byte": CHEAP.trials_per_byte,
        "fd_limit": fd_limit,
    }
    for mode, r in results.items():
        out[mode] = r
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["machine"] = machine()
    out["code"] = code_fingerprint()
    return out


def quiet_logging() -> None:
    """Errors only (a bug in a periodic job or a handler still shows), on stderr."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("rpcudp").setLevel(logging.CRITICAL)  # logs every unanswered datagram at ERROR
    logging.getLogger("kademlia").setLevel(logging.CRITICAL)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.network", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100, help="full nodes (default 100)")
    parser.add_argument("--clients", type=int, default=None, help="read-only clients (default max(2, nodes/10))")
    parser.add_argument("--messages", type=int, default=200, help="messages (default 200)")
    parser.add_argument("--recipients", type=int, default=None, help="recipients (default max(1, messages/4))")
    parser.add_argument("--loss", type=float, default=0.0, help="fraction of outgoing datagrams dropped")
    parser.add_argument("--churn", type=float, default=0.0, help="fraction of nodes stopped and restarted")
    parser.add_argument("--churn-empty", type=float, nargs="?", const=0.5, default=0.0,
                        help="fraction of the churned nodes that restart empty (flag alone: 0.5)")
    parser.add_argument("--down", type=float, nargs=2, default=(2.0, 10.0), metavar=("MIN", "MAX"),
                        help="seconds a churned node stays down, uniform in [MIN, MAX] (default 2 10)")
    parser.add_argument("--partition", type=float, default=0.0, metavar="SECONDS",
                        help="split the network in two halves for this long, from a quarter of the send window")
    parser.add_argument("--mode", default="all",
                        help="ours, plain, flood, kademlia, all (= ours,plain,flood), or a comma list")
    parser.add_argument("--window", type=float, default=20.0, help="seconds over which messages are sent (20)")
    parser.add_argument("--deadline", type=float, default=45.0, help="seconds after its publish a message may "
                        "take to be delivered (45; how many made it within 10 s and 30 s is reported too)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between a recipient's fetches (1.0)")
    parser.add_argument("--width", type=int, default=16, help="recipients' slot width in bits (16)")
    parser.add_argument("--body-bytes", type=int, default=400, help="message body bytes (400: 1024-byte envelope)")
    parser.add_argument("--value-bytes", type=int, default=1000, help="kademlia baseline value bytes (1000)")
    parser.add_argument("--ips", type=int, default=1, help="spread nodes over this many 127.x addresses (1)")
    parser.add_argument("--batch", type=int, default=64, help="largest batch of nodes joining at once (64)")
    parser.add_argument("--no-method-counts", action="store_true",
                        help="do not decode outgoing datagrams to count them by RPC method (saves CPU)")
    parser.add_argument("--timeline", action="store_true", help="add a per-second traffic timeline to the JSON")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print only the final JSON object")
    args = parser.parse_args(argv)
    if args.nodes < 2 or args.messages < 1:
        parser.error("need --nodes >= 2 and --messages >= 1")
    if not (0 <= args.loss < 1 and 0 <= args.churn <= 1 and 0 <= args.churn_empty <= 1):
        parser.error("--loss in [0, 1), --churn and --churn-empty in [0, 1]")
    args.clients = max(2, args.nodes // 10) if args.clients is None else args.clients
    if args.clients < 1:
        parser.error("need at least one client (a recipient whose node is down reads through one)")
    args.recipients = max(1, args.messages // 4) if args.recipients is None else args.recipients
    modes = []
    for name in args.mode.split(","):
        name = name.strip()
        modes.extend(MODES if name == "all" else [name])
    unknown = [m for m in modes if m not in ALL_MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; choose from {', '.join(ALL_MODES)} or all")
    args.modes = list(dict.fromkeys(modes))
    args.down = tuple(sorted(args.down))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_logging()
    out = Out(args.json)
    out.json(asyncio.run(amain(args, out)))


if __name__ == "__main__":
    main()
