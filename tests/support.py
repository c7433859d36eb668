"""Helpers shared by the multi-node tests: real loopback networks, and waiting for conditions with deadlines."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from nacl import pwhash

from komrade_dht import envelope as env

from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.social import Account
from komrade_dht.storage import Store

#: Proof of work tests mint with: ~30 Argon2id trials of 8 KiB (about a millisecond), the same on every node.
CHEAP_POW = env.PowParams(trials_per_byte=0.001, memlimit=8192)

#: Cheap Argon2id limits, so tests spend their time on the network and not on key stretching.
FAST_KDF = dict(opslimit=pwhash.argon2id.OPSLIMIT_MIN, memlimit=pwhash.argon2id.MEMLIMIT_MIN)


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def start_relays(tmp: Path, count: int, config: NodeConfig = NodeConfig()) -> list[KomradeNode]:
    """``count`` relays with SQLite stores under ``tmp``, each on 127.0.0.1 port 0, joined through the first."""
    relays = []
    for i in range(count):
        (tmp / f"relay{i}").mkdir(parents=True, exist_ok=True)
        node = KomradeNode(Store(tmp / f"relay{i}" / "relay.sqlite"), config=config, state_dir=tmp / f"relay{i}")
        await node.listen(0, "127.0.0.1")
        relays.append(node)
    for node in relays[1:]:
        await node.bootstrap([relays[0].address])
    return relays


async def client(peer: tuple[str, int], config: NodeConfig = NodeConfig()) -> KomradeNode:
    """A read-only node (what `komrade send` and `komrade inbox` run), joined through ``peer``."""
    node = KomradeNode(None, config=config)
    await node.listen(0, "127.0.0.1")
    assert await node.bootstrap([peer]), "client could not join"
    return node


async def shutdown(nodes: list[KomradeNode], accounts: tuple[Account, ...] = ()) -> None:
    """Stop every node (tasks cancelled, stores closed) and close every account: a test's ``finally``."""
    for node in nodes:
        await node.stop_async()
    for acct in accounts:
        acct.close()


def account(tmp: Path, name: str, **kwargs: Any) -> Account:
    return Account.create(tmp / name.lower(), name, f"{name} passphrase", **FAST_KDF, **kwargs)


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle`` (SQLite files, their WAL and journal included)."""
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]
