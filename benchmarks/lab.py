"""Reusable parts of the network lab (``benchmarks/network.py``): many real nodes in one process, and faults.

- :class:`Faults`: one ``sendto`` wrapper per node that drops a fraction of outgoing datagrams (a seeded RNG
  per node, the aioquic test trick on real sockets), drops datagrams across the two halves of a partition
  while it is on, and counts what every node tried to send, by RPC method.
- :class:`Lab`: N full nodes (``KomradeNode(Store(...))``, each with its own data directory, real UDP on
  loopback, port 0, optionally spread over distinct 127.x addresses) plus read-only clients; joined in
  concurrent batches; nodes can be stopped and restarted from their data directory (same id, same address),
  or restarted empty; counters of every incarnation of every node are kept.
- :func:`raise_fd_limit`, :func:`rss_mb`, :class:`Tasks` (owned background tasks).
"""

from __future__ import annotations

import asyncio
import random
import resource
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Iterable

import msgpack

from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.storage import Store

#: Upper bound of any single network operation, so that a hang shows as an error, not as a stuck benchmark.
OP_TIMEOUT = 60.0


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft limit on open files towards ``wanted`` (never above the hard limit); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_mb() -> float:
    """Resident memory of this process now (MB), from /proc; the peak if /proc is not there."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory in /dev/shm when there is one (SQLite commits then cost no disk flush)."""
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() else None
    return tempfile.TemporaryDirectory(prefix=prefix, dir=where)


class Tasks:
    """A tracked set of tasks: everything started here is awaited or cancelled by :meth:`close`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()


def method_of(data: bytes) -> str:
    """The RPC method of a request datagram; ``reply`` for a reply, ``error:<code>`` for an error reply (what
    the traffic is made of, and why requests are refused)."""
    try:
        obj = msgpack.unpackb(data[21:], raw=False)
        if data[:1] != b"\x00":
            return "reply" if obj[0] == 0 else f"error:{obj[1]}"
        return str(obj[0])
    except Exception:  # we only count; a datagram we cannot parse is counted as such
        return "unparsed"


class Faults:
    """Loss and partition applied to what each node sends, switched on and off by the scenario."""

    def __init__(self, seed: int, loss: float = 0.0) -> None:
        self.seed = seed
        self.loss = loss
        self.loss_on = False
        self.partition_on = False
        self.side: dict[tuple[str, int], int] = {}
        """Which half of the partition each address belongs to."""
        self.counters: Counter[str] = Counter()
        """sent / dropped_loss / dropped_partition datagrams, and sent_<method> by RPC method."""
        self.count_methods = True

    def install(self, node: Any, key: int, side: int) -> None:
        """Wrap ``node.transport.sendto`` (a KomradeNode or a kademlia Server); ``key`` seeds its loss RNG."""
        transport = node.transport
        real = transport.sendto
        rng = random.Random(self.seed * 1_000_003 + key)
        counters = self.counters
        sides = self.side

        def sendto(data: bytes, addr: Any = None) -> None:
            counters["sent"] += 1
            counters["sent_bytes"] += len(data)
            if self.count_methods:
                counters["sent_" + method_of(data)] += 1
            if self.partition_on and sides.get((addr[0], addr[1]), side) != side:
                counters["dropped_partition"] += 1
                return
            if self.loss_on and rng.random() < self.loss:
                counters["dropped_loss"] += 1
                return
            real(data, addr)

        transport.sendto = sendto


@dataclass
class Member:
    """One full node of the lab: where it lives, and its current incarnation (None while stopped)."""

    index: int
    directory: Path
    node_id: bytes
    host: str
    port: int = 0
    side: int = 0
    node: KomradeNode | None = None
    incarnations: int = 0
    wiped: int = 0
    busy: int = 0
    """Application operations (publish, fetch) running on this node right now."""
    stopping: bool = False
    """Chosen to stop: it takes no new application operations."""

    @property
    def up(self) -> bool:
        return self.node is not None

    @property
    def usable(self) -> bool:
        """Up and not about to stop: the application may start an operation on it."""
        return self.node is not None and not self.stopping


@dataclass
class Lab:
    """N full nodes and C read-only clients in this process, on loopback UDP."""

    root: Path
    config: NodeConfig
    faults: Faults
    rng: random.Random
    members: list[Member] = field(default_factory=list)
    clients: list[KomradeNode] = field(default_factory=list)
    client_sides: list[int] = field(default_factory=list)
    retired: Counter[str] = field(default_factory=Counter)
    """Counters of stopped incarnations, so that totals survive churn."""
    kernel_bind_retries: int = 0

    # -- building --------------------------------------------------------------------------------------
    @classmethod
    def plan(
        cls, root: Path, n: int, config: NodeConfig, faults: Faults, seed: int, ips: int = 1
    ) -> Lab:
        """Decide ids, hosts and partition sides (from ``seed``, so every mode of a run gets the same ones)."""
        rng = random.Random(seed)
        lab = cls(root=root, config=config, faults=faults, rng=random.Random(seed + 1))
        sides = [i % 2 for i in range(n)]
        rng.shuffle(sides)
        for i in range(n):
            directory = root / f"n{i}"
            directory.mkdir(parents=True)
            j = i % max(1, ips)
            host = "127.0.0.1" if ips <= 1 else f"127.{1 + j // 65024}.{(j // 254) % 256}.{1 + j % 254}"
            lab.members.append(Member(i, directory, rng.randbytes(20), host, side=sides[i]))
        return lab

    def _new_node(self, member: Member) -> KomradeNode:
        store = Store(member.directory / "node.sqlite")
        return KomradeNode(store, config=self.config, node_id=member.node_id, state_dir=member.directory)

    async def _listen(self, member: Member, node: KomradeNode) -> None:
        for attempt in range(50):
            try:
                member.host, member.port = await node.listen(member.port, member.host)
                break
            except OSError:  # the port of a just-closed socket: try again shortly
                if attempt == 49 or member.port == 0:
                    raise
                self.kernel_bind_retries += 1
                await asyncio.sleep(0.05)
        self.faults.side[(member.host, member.port)] = member.side
        self.faults.install(node, member.index, member.side)
        member.node = node
        member.incarnations += 1

    async def start(self, clients: int, batch: int = 64, contacts: int = 3) -> dict[str, float]:
        """Bind every node, then join them in concurrent batches (each through ``contacts`` random nodes that
        already joined), then the read-only clients. Returns timings (seconds)."""
        t0 = time.perf_counter()
        for member in self.members:
            await self._listen(member, self._new_node(member))
        t_bind = time.perf_counter() - t0
        joined = [self.members[0]]
        pending = self.members[1:]
        while pending:
            size = min(batch, len(joined))
            group, pending = pending[:size], pending[size:]
            await asyncio.gather(*(self._join(m.node, joined, contacts) for m in group))  # type: ignore[arg-type]
            joined.extend(group)
        t_join = time.perf_counter() - t0 - t_bind
        for c in range(clients):
            node = KomradeNode(None, config=self.config)
            host = self.members[c % len(self.members)].host
            addr = await node.listen(0, host)
            side = c % 2
            self.faults.side[addr] = side
            self.faults.install(node, 10_000_000 + c, side)
            self.clients.append(node)
            self.client_sides.append(side)
        await asyncio.gather(*(self._join(node, joined, contacts) for node in self.clients))
        return {"bind_s": t_bind, "join_s": t_join, "total_s": time.perf_counter() - t0}

    async def _join(self, node: KomradeNode, among: list[Member], contacts: int) -> int:
        peers = [m for m in among if m.up and m.node is not node]
        picks = self.rng.sample(peers, min(contacts, len(peers)))
        found = await asyncio.wait_for(node.bootstrap([(m.host, m.port) for m in picks]), OP_TIMEOUT)
        return len(found)

    # -- churn ----------------------------------------------------------------------------------------
    async def stop(self, member: Member, wipe: bool = False) -> None:
        """Stop a node (cleanly: stop_async); with ``wipe`` its data directory is emptied (it restarts empty)."""
        node, member.node = member.node, None
        if node is None:
            return
        if node.protocol is not None:
            self.retired.update(node.protocol.counters)
        await node.stop_async()
        if wipe:
            member.wiped += 1
            for path in member.directory.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()

    async def restart(self, member: Member, contacts: int = 3) -> int:
        """Start the node again from its data directory, on the same id and address, and rejoin (through its saved
        routing table and ``contacts`` random live nodes). Returns how many nodes the join found."""
        node = self._new_node(member)
        try:
            await self._listen(member, node)
        except BaseException:
            if node.store is not None:
                node.store.close()
            raise
        return await self._join(node, self.members, contacts)

    # -- reading the lab --------------------------------------------------------------------------------
    def up_nodes(self) -> list[KomradeNode]:
        return [m.node for m in self.members if m.node is not None]

    def everyone(self) -> list[KomradeNode]:
        return self.up_nodes() + self.clients

    def totals(self, include_clients: bool = True) -> Counter[str]:
        """Counters summed over every node (every incarnation of it) and, unless told otherwise, every client."""
        total: Counter[str] = Counter(self.retired)
        for node in self.up_nodes() + (self.clients if include_clients else []):
            if node.protocol is not None:
                total.update(node.protocol.counters)
        return total

    def node_totals(self) -> Counter[str]:
        return self.totals(include_clients=False)

    def client_totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for node in self.clients:
            if node.protocol is not None:
                total.update(node.protocol.counters)
        return total

    async def close(self) -> None:
        """Stop every client and node (stop_async: their tasks cancelled, stores closed)."""
        for node in self.clients:
            await node.stop_async()
        self.clients.clear()
        for member in self.members:
            await self.stop(member)


def xor_rank(members: Iterable[Member], key: bytes) -> list[Member]:
    """Members sorted by XOR distance of their id to ``key`` (closest first): who *should* hold a slot."""
    k = int.from_bytes(key, "big")
    return sorted(members, key=lambda m: int.from_bytes(m.node_id, "big") ^ k)
