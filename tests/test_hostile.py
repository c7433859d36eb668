"""A node an operator can leave on a public address: hostile input, floods, work, crashes (issue 4)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from komrade_dht import envelope as env
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.node import nodeid
from komrade_dht.node.ratelimit import RateLimits
from komrade_dht.storage import Store, StoreLimits

from fuzz.strategies import datagrams

from .support import CHEAP_POW, wait_for

CHEAP = CHEAP_POW
ALICE, BOB = Identity.generate(), Identity.generate()


def envelope(body: bytes = b"x", ttl: int = 600, pow: env.PowParams = CHEAP, slot: bytes = env.NO_SLOT) -> bytes:
    return env.seal(ALICE, BOB.public, body, ttl=ttl, pow=pow, slot=slot)


def test_fuzzed_datagrams_never_hurt_a_live_node(tmp_path: Path) -> None:
    """Malformed, truncated, oversized, deeply nested and type-confused datagrams and replies, at a live node."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop_errors: list[dict] = []
        loop.set_exception_handler(lambda _l, ctx: loop_errors.append(ctx))
        target = KomradeNode(Store(tmp_path / "t.sqlite"))
        honest = KomradeNode(Store(tmp_path / "h.sqlite"))
        addr = await target.listen(0, "127.0.0.1")
        await honest.listen(0, "127.0.0.1")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        thrown: list[bytes] = []

        @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(datagrams)
        def throw(data: bytes) -> None:
            sock.sendto(data, addr)
            thrown.append(data)

        try:
            throw()
            await wait_for(lambda: target.protocol.counters["datagrams_in"] >= len(thrown), timeout=10)
            ok, answer = await honest.protocol.call(addr, "ping")
            assert ok and nodeid.node_id(answer) == target.node.id, "the node still serves honest peers"
            assert loop_errors == []
            assert target.protocol.counters["handler_error"] == 0
            assert target.protocol.counters["dropped"] > len(thrown) // 2
        finally:
            sock.close()
            await honest.stop_async()
            await target.stop_async()

    asyncio.run(scenario())


def test_envelopes_without_enough_work_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        relay = KomradeNode(Store(tmp_path / "r.sqlite"))
        peer = KomradeNode(None)
        addr = await relay.listen(0, "127.0.0.1")
        await peer.listen(0, "127.0.0.1")
        try:
            slot = os.urandom(20)
            lazy = envelope(pow=env.PowParams(trials_per_byte=0.0), slot=slot)  # no work at all
            assert not env.check_pow(lazy, env.PowParams(), slot)
            ok, reply = await peer.protocol.call(addr, "append", slot, lazy)
            assert (ok, reply) == (False, "insufficient_work")
            ok, reply = await peer.protocol.call(addr, "store", env.envelope_id(lazy), lazy)
            assert (ok, reply) == (False, "insufficient_work")
            worked = envelope(pow=env.PowParams(), slot=slot)
            ok, reply = await peer.protocol.call(addr, "append", slot, worked)
            assert (ok, reply) == (True, True)
            # The work binds the slot: the same envelope appended to another slot is refused.
            ok, reply = await peer.protocol.call(addr, "append", os.urandom(20), worked)
            assert (ok, reply) == (False, "insufficient_work")
        finally:
            await peer.stop_async()
            await relay.stop_async()

    asyncio.run(scenario())


def test_pow_target_grows_with_size_and_lifetime() -> None:
    params = env.PowParams()
    assert params.target(1024, 86400) < params.target(512, 86400)
    assert params.target(512, 30 * 86400) < params.target(512, 86400)
    assert params.target(512, 2 * 86400, headers=8) * 8 == pytest.approx(params.target(512, 2 * 86400), rel=1e-6)
    assert params.target(256, 60) == params.target(256, 86400), "short lifetimes are priced as one day"
    slot = os.urandom(20)
    data = envelope(pow=params, slot=slot)
    assert env.check_pow(data, params, slot)
    # Changing any byte invalidates the work (with overwhelming probability), so work cannot be reused.
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    assert env.pow_value(tampered, slot) != env.pow_value(data, slot)


def test_one_flooding_peer_cannot_fill_the_relay_and_honest_writes_still_land(tmp_path: Path) -> None:
    async def scenario() -> None:
        limits = RateLimits(write_bytes_per_s=8 * 1024, write_burst_bytes=64 * 1024)
        config = NodeConfig(pow=CHEAP, limits=limits)
        relay = KomradeNode(Store(tmp_path / "r.sqlite", StoreLimits(max_bytes=1 * 2**20)), config=config)
        attacker, honest = KomradeNode(None, config=config), KomradeNode(None, config=config)
        addr = await relay.listen(0, "127.0.0.1")
        await attacker.listen(0, "127.0.0.1")
        await honest.listen(0, "127.0.0.1")
        slot = os.urandom(20)
        flood = [envelope(os.urandom(300), slot=slot) for _ in range(400)]  # 400 x 1024 bytes of valid envelopes
        try:
            replies = await asyncio.gather(*(attacker.protocol.call(addr, "append", slot, e) for e in flood))
            accepted = sum(1 for ok, _ in replies if ok)
            refused = [r for ok, r in replies if not ok]
            assert accepted * 1024 <= 64 * 1024 + 8 * 1024 * 5, f"{accepted} floods accepted"
            assert refused and set(refused) <= {"write_rate_limited", None}
            assert relay.store.stats().bytes < 1 * 2**20
            other = os.urandom(20)
            ok, reply = await honest.protocol.call(addr, "append", other, envelope(b"honest", slot=other))
            assert (ok, reply) == (True, True), "an honest peer's write still gets through"
        finally:
            for n in (attacker, honest, relay):
                await n.stop_async()

    asyncio.run(scenario())


def test_request_rate_limit_drops_a_chatty_peer_but_serves_others(tmp_path: Path) -> None:
    async def scenario() -> None:
        limits = RateLimits(requests_per_s=20, request_burst=40)
        relay = KomradeNode(Store(tmp_path / "r.sqlite"), config=NodeConfig(limits=limits))
        chatty, quiet = KomradeNode(None), KomradeNode(None)
        addr = await relay.listen(0, "127.0.0.1")
        await chatty.listen(0, "127.0.0.1")
        await quiet.listen(0, "127.0.0.1")
        try:
            started = asyncio.get_running_loop().time()
            replies = await asyncio.gather(*(chatty.protocol.call(addr, "ping") for _ in range(200)))
            elapsed = asyncio.get_running_loop().time() - started
            answered = sum(1 for ok, _ in replies if ok)
            # the burst, then the rate (retransmissions keep asking while tokens refill)
            assert 40 <= answered <= 40 + 20 * elapsed + 1, (answered, elapsed)
            assert relay.protocol.counters["dropped_rate_limited"] >= 100
            assert (await quiet.protocol.call(addr, "ping"))[0]
        finally:
            for n in (chatty, quiet, relay):
                await n.stop_async()

    asyncio.run(scenario())


def _relay(home: Path) -> tuple[subprocess.Popen, tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "komrade_dht", "--data-dir", str(home), "relay", "--listen", "127.0.0.1:0",
         "--bootstrap-file", os.devnull],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    host, port = line.split()[-1].rsplit(":", 1)
    return proc, (host, int(port))


def test_sigkill_mid_stream_loses_no_acknowledged_append(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc, addr = _relay(tmp_path / "relay")
        client = KomradeNode(None, config=NodeConfig(wait_timeout=1.0))
        await client.listen(0, "127.0.0.1")
        slot = os.urandom(20)
        acked: list[bytes] = []
        pending = [envelope(os.urandom(100), pow=env.PowParams(), slot=slot) for _ in range(150)]

        async def stream() -> None:
            for data in pending:
                ok, _ = await client.protocol.call(addr, "append", slot, data)
                if ok:
                    acked.append(env.envelope_id(data))
                else:
                    return  # the relay is gone

        try:
            writer = asyncio.ensure_future(stream())
            await wait_for(lambda: len(acked) >= 40, timeout=30)
            proc.send_signal(signal.SIGKILL)  # mid-stream: appends are still in flight
            await writer
            proc.wait(timeout=10)
            assert 40 <= len(acked) < len(pending)
            proc, addr2 = _relay(tmp_path / "relay")
            found = await asyncio.gather(*(client.protocol.call(addr2, "get_blob", key) for key in acked))
            missing = [key.hex() for key, (ok, blob) in zip(acked, found) if not (ok and blob)]
            assert missing == [], f"{len(missing)} acknowledged envelopes lost"
            listed, cursor = set(), 0
            while True:
                ok, (ids, cursor) = await client.protocol.call(addr2, "slot_page", slot, cursor, 256)
                assert ok
                if not ids:
                    break
                listed.update(ids)
            assert set(acked) <= listed
        finally:
            await client.stop_async()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)

    asyncio.run(scenario())


def test_corrupt_relay_database_is_a_clear_error_never_an_empty_start(tmp_path: Path) -> None:
    home = tmp_path / "relay"
    home.mkdir()
    db = home / "relay.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    before = db.read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "komrade_dht", "--data-dir", str(home), "relay", "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 1
    assert "relay.sqlite" in proc.stderr and "Traceback" not in proc.stderr
    assert db.read_bytes() == before, "the damaged file is left as it was, for the operator to inspect"


def test_corrupt_keystore_is_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "me"
    env_vars = dict(os.environ, KOMRADE_PASSPHRASE="correct horse battery staple")
    run = lambda *a: subprocess.run([sys.executable, "-m", "komrade_dht", "--data-dir", str(home), *a],
                                    capture_output=True, text=True, timeout=30, env=env_vars)
    assert run("init", "--name", "Me").returncode == 0
    keystore = home / "identity.keystore"
    data = bytearray(keystore.read_bytes())
    data[len(data) // 2] ^= 0xFF
    keystore.write_bytes(bytes(data))
    damaged = run("address", "--no-qr")
    assert damaged.returncode == 1 and "Traceback" not in damaged.stderr
    assert "passphrase" not in damaged.stderr.lower() or "corrupt" in damaged.stderr.lower()
    keystore.write_bytes(bytes(data[:40]))
    truncated = run("address", "--no-qr")
    assert truncated.returncode == 1 and "truncat" in truncated.stderr.lower()
