"""The relay as an operator runs it: a config file, SIGTERM mid-traffic, restart, --status, metrics, caps, logs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from komrade_dht import __version__
from komrade_dht.cli import build_parser, relay_config
from komrade_dht.envelope import envelope_id, seal
from komrade_dht.errors import NetworkError
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.relay import ConfigError, Relay, RelayConfig
from komrade_dht.storage import Store

from .support import start_relays, wait_for

KOMRADE = [sys.executable, "-m", "komrade_dht"]
EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "relay.toml.example"
PROMETHEUS_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?[0-9.e+]+$')


def write_config(path: Path, **keys: Any) -> Path:
    lines = []
    for key, value in keys.items():
        lines.append(f"{key} = {json.dumps(value)}")  # JSON strings, numbers and lists are TOML too
    path.write_text("\n".join(lines) + "\n")
    return path


def start(config: Path) -> tuple[subprocess.Popen, tuple[str, int], str]:
    proc = subprocess.Popen(KOMRADE + ["relay", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    line = proc.stdout.readline()
    assert line.startswith("listening on "), f"relay did not start: {line!r} {'' if line else proc.stderr.read()}"
    host, port = line.split()[-1].rsplit(":", 1)
    metrics = proc.stdout.readline()
    assert metrics.startswith("metrics on http://127.0.0.1:"), metrics
    return proc, (host, int(port)), metrics.split()[-1]


def status(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(KOMRADE + ["relay", "--config", str(config), "--status", *extra], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_relay_from_a_config_file_keeps_everything_it_acknowledged_across_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "relay"
    config = write_config(
        tmp_path / "relay.toml", data_dir=str(data), listen="127.0.0.1:0", bootstrap_file=os.devnull,
        max_disk_bytes=16 * 2**20, log_format="json", log_level="info", metrics_listen="127.0.0.1:0",
    )
    proc, addr, metrics_url = start(config)
    try:
        before = status(config, "--json")
        assert before.returncode == 0, before.stderr
        first = json.loads(before.stdout)
        assert first["envelopes"] == 0 and first["version"] == __version__ and first["max_disk_bytes"] == 16 * 2**20
        human = status(config).stdout
        assert "envelopes 0" in human and "peers" in human and "of 16 MiB" in human
        text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
        assert "komrade_envelopes 0" in text and "# TYPE komrade_datagrams_total counter" in text

        acked, proc_rc = asyncio.run(publish_until_stopped(proc, addr))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc_rc == 0, proc.stderr.read()
    assert len(acked) >= 30
    # Logs: JSON lines with levels, including the clean stop.
    records = [json.loads(line) for line in proc.stderr.read().splitlines() if line.strip()]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["message"].startswith("stopping") for r in records)
    assert any(r["message"].startswith("relay stopped") for r in records)
    # Flushed: the store was closed, so SQLite folded its WAL into the database file.
    wal = data / "relay.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert not (data / "metrics.json").exists()

    # It restarts from its data directory with the same identity and everything it acknowledged.
    proc, addr, _ = start(config)
    try:
        after = json.loads(status(config, "--json").stdout)
        assert after["node_id"] == first["node_id"]
        assert after["envelopes"] >= len(acked)
        missing = asyncio.run(fetch_missing(addr, acked))
        assert missing == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    with Store(data / "relay.sqlite") as store:
        assert [key.hex() for key in acked if not store.has_blob(key)] == []


async def publish_until_stopped(proc: subprocess.Popen, addr: tuple[str, int]) -> tuple[list[bytes], int]:
    """Append envelopes in loops, recording each one the relay acknowledged; SIGTERM the relay after 30."""
    node = KomradeNode(None, config=NodeConfig(wait_timeout=0.5))
    await node.listen(0, "127.0.0.1")
    assert await node.bootstrap([addr])
    sender, recipient = Identity.generate(), Identity.generate().public
    acked: list[bytes] = []
    signalled = asyncio.Event()

    async def traffic(worker: int) -> None:
        for i in range(5000):
            slot = os.urandom(20)
            data = await asyncio.to_thread(seal, sender, recipient, f"envelope {worker}.{i}".encode(), ttl=3600, slot=slot)
            try:
                acks = await node.publish(slot, data)
            except NetworkError:
                assert signalled.is_set(), f"the relay refused an envelope before it was told to stop {dict(node.protocol.counters)}"
                return
            if acks:
                acked.append(envelope_id(data))
        raise AssertionError("the relay did not stop")

    async def stopper() -> None:
        await wait_for(lambda: len(acked) >= 30, timeout=30)
        proc.send_signal(signal.SIGTERM)  # mid-traffic: the loop above keeps publishing
        signalled.set()

    try:
        await asyncio.gather(*(traffic(w) for w in range(4)), stopper())  # four appends in flight at a time
        deadline = time.monotonic() + 20
        rc = await wait_for(lambda: proc.poll() is not None or time.monotonic() > deadline, timeout=25)
        assert rc
        return acked, proc.wait(timeout=1)
    finally:
        await node.stop_async()


async def fetch_missing(addr: tuple[str, int], keys: list[bytes]) -> list[str]:
    node = KomradeNode(None, config=NodeConfig(wait_timeout=1.0))
    await node.listen(0, "127.0.0.1")
    try:
        assert await node.bootstrap([addr])
        found = await asyncio.gather(*(node.get_blob(k) for k in keys))
        return [k.hex() for k, blob in zip(keys, found) if blob is None or envelope_id(blob) != k]
    finally:
        await node.stop_async()


# -- configuration -----------------------------------------------------------------------------------------------
def test_example_config_documents_every_key_with_its_default() -> None:
    text = EXAMPLE.read_text()
    keys = {m.group(1) for m in re.finditer(r"^([a-z_]+) = ", text, re.M)}
    assert keys == {f.name for f in dataclasses.fields(RelayConfig)}
    assert RelayConfig.from_toml(EXAMPLE) == RelayConfig()


def test_bad_config_is_one_clear_error(tmp_path: Path) -> None:
    cases = {
        "lisen = \"0.0.0.0:9475\"": "unknown key(s) lisen",
        "ksize = \"twenty\"": "ksize",
        "max_peers = 3": "at least ksize",
        "max_disk_bytes = 10": "at least 1 MiB",
        "metrics_listen = \"0.0.0.0:9100\"": "loopback",
        "log_format = \"xml\"": "log_format",
        "listen = \"localhost:9475\"": "IP address",
        "bootstrap = \"1.2.3.4:5\"": "list",
        "purge_interval = -1": "positive",
        "listen = ": "not valid TOML",
    }
    for line, words in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(line + "\n")
        with pytest.raises(ConfigError, match=re.escape(words)):
            RelayConfig.from_toml(path)
    proc = subprocess.run(KOMRADE + ["--data-dir", str(tmp_path), "relay", "--config", str(path)],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and proc.stderr.startswith("komrade: error: ") and proc.stderr.count("\n") == 1
    missing = subprocess.run(KOMRADE + ["--data-dir", str(tmp_path), "relay", "--status"],
                             capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert missing.returncode == 1 and "no relay is running" in missing.stderr


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "r.toml", data_dir=str(tmp_path / "from-file"), listen="127.0.0.1:7000",
                          bootstrap=["10.0.0.1:1"], max_peers=100, log_format="json")
    args = build_parser().parse_args(["relay", "--config", str(config), "--listen", "127.0.0.1:7001",
                                      "--bootstrap", "127.0.0.2:2", "--max-peers", "50"])
    args.data_dir_given, args.data_dir = False, None
    got = relay_config(args)
    assert (got.listen, got.bootstrap, got.max_peers, got.log_format) == ("127.0.0.1:7001", ("127.0.0.2:2",), 50, "json")
    assert args.data_dir == tmp_path / "from-file"
    args = build_parser().parse_args(["--data-dir", str(tmp_path / "flag"), "relay", "--config", str(config)])
    args.data_dir_given = True
    relay_config(args)
    assert args.data_dir == tmp_path / "flag"


# -- caps and metrics --------------------------------------------------------------------------------------------
def test_peer_cap_holds_and_metrics_are_prometheus_text(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 14, NodeConfig(ksize=4))
        config = RelayConfig(listen="127.0.0.1:0", ksize=4, max_peers=4, bootstrap_file=os.devnull,
                             bootstrap=tuple("%s:%d" % r.address for r in relays[:6]))
        relay = Relay(config, tmp_path / "capped")
        client: KomradeNode | None = None
        try:
            await relay.start()
            assert relay.node is not None and relay.node.protocol is not None
            router = relay.node.protocol.router
            counters = relay.node.protocol.counters
            await wait_for(lambda: counters["contact_refused_cap"] + counters["contact_replaced_cap"] > 0, timeout=10)
            assert sum(len(b) for b in router.buckets) <= 4, "the cap holds at every moment, not after a sweep"
            # Still a working relay: it takes an envelope and serves it back.
            client = KomradeNode(None, config=NodeConfig(ksize=4))
            await client.listen(0, "127.0.0.1")
            assert await client.bootstrap([relay.node.address])
            slot = os.urandom(20)
            data = seal(Identity.generate(), Identity.generate().public, b"capped", ttl=600, slot=slot)
            assert await client.publish(slot, data) >= 1
            text = relay.metrics()
            lines = text.splitlines()
            assert all(PROMETHEUS_LINE.match(line) for line in lines if not line.startswith("#")), text
            values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in lines if not line.startswith("#")}
            assert values["komrade_peers_max"] == 4 and "komrade_peers_refused_total" in values
            assert values['komrade_datagrams_total{direction="in"}'] > 0
            assert "# TYPE komrade_dropped_total counter" in text  # one sample per drop reason seen
            assert 'komrade_rpc_requests_total{method="ping"}' in values
            # Over HTTP, from the URL the relay wrote to its data directory.
            info = json.loads((tmp_path / "capped" / "metrics.json").read_text())
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(info["url"] + "/metrics", timeout=5).read())
            assert b"# TYPE komrade_envelopes gauge" in body
        finally:
            if client is not None:
                await client.stop_async()
            await relay.close()
            for node in relays:
                await node.stop_async()

    asyncio.run(scenario())


def test_contact_cap_keeps_the_nearest_contacts() -> None:
    """At max_contacts a farther newcomer is refused and a nearer one replaces the farthest contact."""
    from kademlia.node import Node

    from komrade_dht.node.protocol import KomradeProtocol

    proto = KomradeProtocol(Node(bytes(20)), None, 8, read_only=True, max_contacts=3)
    for i, first in enumerate((0x80, 0x40, 0x20)):
        proto.welcome_if_new(Node(bytes([first]) + bytes(19), "127.0.0.1", 1000 + i))
    assert proto.contact_count() == 3
    proto.welcome_if_new(Node(bytes([0xC0]) + bytes(19), "127.0.0.1", 2000))  # farther than all: refused
    assert proto.contact_count() == 3 and proto.counters["contact_refused_cap"] == 1
    proto.welcome_if_new(Node(bytes([0x10]) + bytes(19), "127.0.0.1", 2001))  # nearer: replaces 0x80...
    ids = {n.id[0] for b in proto.router.buckets for n in b.get_nodes()}
    assert ids == {0x40, 0x20, 0x10}
