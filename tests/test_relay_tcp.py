"""The relay's TCP service and the untraceable client, on loopback without Tor: a DM both ways, burn, isolation
credentials per action (through a small recording SOCKS5 proxy), and a hostile peer's frames."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from komrade_dht import codec, records
from komrade_dht.node import NodeConfig
from komrade_dht.relay_tcp import MAX_REQUEST, TcpLimits, TcpService
from komrade_dht.social import burn, send_dm, sync_inbox
from komrade_dht.torclient import RelayError, TorClient

from .support import CHEAP_POW, account, client, shutdown, start_relays, wait_for

CONFIG = NodeConfig(pow=CHEAP_POW, id_bits=8)


class RecordingSocks:
    """A SOCKS5 proxy (username/password only) that records each connection's username and target, then relays."""

    def __init__(self) -> None:
        self.users: list[str] = []
        self.targets: list[tuple[str, int]] = []
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[:2]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            assert await reader.readexactly(2) == b"\x05\x01"
            assert await reader.readexactly(1) == b"\x02"
            writer.write(b"\x05\x02")
            assert (await reader.readexactly(1)) == b"\x01"
            user = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            await reader.readexactly((await reader.readexactly(1))[0])
            writer.write(b"\x01\x00")
            assert await reader.readexactly(3) == b"\x05\x01\x00"
            atyp = (await reader.readexactly(1))[0]
            assert atyp == 1
            host = ".".join(str(b) for b in await reader.readexactly(4))
            port = int.from_bytes(await reader.readexactly(2), "big")
            self.users.append(user)
            self.targets.append((host, port))
            up_reader, up_writer = await asyncio.open_connection(host, port)
            writer.write(b"\x05\x00\x00\x01" + bytes(4) + bytes(2))

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                finally:
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        except (asyncio.IncompleteReadError, ConnectionError, AssertionError):
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def raw_call(address: tuple[str, int], frame: bytes) -> dict:
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(frame)
        await writer.drain()
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(4), 10), "big")
        return codec.unpack(await reader.readexactly(length), max_len=1 << 20)
    finally:
        writer.close()


def framed(obj: object) -> bytes:
    data = codec.pack(obj)
    return len(data).to_bytes(4, "big") + data


def test_dm_both_ways_through_the_tcp_service(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 8, CONFIG)
        service = TcpService(relays[2])
        alice = account(tmp_path, "Alice")
        bob = account(tmp_path, "Bob")
        socks = RecordingSocks()
        bob_node = None
        try:
            tcp = await service.start("127.0.0.1", 0)
            proxy = await socks.start()
            untraceable = TorClient([tcp], proxy)  # pow from the relay's hello
            hello = await untraceable.start()
            assert hello["v"] == 1 and untraceable.config.pow == CHEAP_POW

            await send_dm(alice, untraceable, bob.address.text, "hello from nowhere")
            bob_node = await client(relays[5].address, CONFIG)
            got = await sync_inbox(bob, bob_node)
            assert [m.text for m in got] == ["hello from nowhere"]
            assert got[0].sender_fingerprint == alice.fingerprint

            await send_dm(bob, bob_node, alice.address.text, "got it")
            new = await sync_inbox(alice, untraceable)
            assert [m.text for m in new] == ["got it"]
            assert await sync_inbox(alice, untraceable) == []  # seen ids are remembered: nothing new

            # Burn through the relay: Alice deletes Bob's reply everywhere.
            deleted = await burn(alice, untraceable, new[0].id)
            assert deleted >= 1
            assert not any(r.store.has_blob(bytes.fromhex(new[0].id)) for r in relays)

            # Signed records (a device list, a profile) through the relay, verified again by the client.
            record = records.make_record(alice.identity, b"test", 1, b"v1", int(time.time()) + 3600)
            assert await untraceable.put_record(record) >= 1
            key = records.key_of(record)
            assert await untraceable.get_record(key) == record
            assert await untraceable.get_record(os.urandom(20)) is None
            with pytest.raises(RelayError) as caught:
                await untraceable._action(lambda conn: conn.call("put_record", record=record[:-1] + b"x"))
            assert caught.value.code == "bad_record"

            # A refusal reaches the client as a RelayError with its code, and is not retried.
            sent = alice.data.all("sent")[0]
            stored = next(r.store.get_blob(bytes.fromhex(sent["id"])) for r in relays if r.store.has_blob(bytes.fromhex(sent["id"])))
            with pytest.raises(RelayError) as caught:
                await untraceable.publish(os.urandom(20), stored)  # its work is bound to Bob's slot, not this one
            assert caught.value.code == "bad_pow"

            # One fresh SOCKS username per action (Tor's IsolateSOCKSAuth: one circuit each), all to the relay.
            assert len(socks.users) == untraceable.actions >= 5
            assert len(set(socks.users)) == len(socks.users)
            assert set(socks.targets) == {tcp}
            # The accept log holds the proxy's side of each stream (here 127.0.0.1, through Tor an exit's address).
            assert len(service.accepted) == len(socks.users)
        finally:
            await socks.close()
            await service.close()
            await shutdown([*relays, *([bob_node] if bob_node else [])], (alice, bob))

    asyncio.run(scenario())


def test_refusals_are_error_codes_never_tracebacks(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 3, CONFIG)
        service = TcpService(relays[0], TcpLimits(max_per_address=2, idle_timeout=1.0, max_requests=3))
        try:
            tcp = await service.start("127.0.0.1", 0)
            assert (await raw_call(tcp, b"\x00\x00\x00\x03abc"))["error"] == "bad_frame"
            assert (await raw_call(tcp, (MAX_REQUEST + 1).to_bytes(4, "big")))["error"] == "too_large"
            assert (await raw_call(tcp, b"\x00\x00\x00\x00"))["error"] == "bad_frame"
            assert (await raw_call(tcp, framed({"v": 9, "op": "hello"})))["error"] == "version"
            assert (await raw_call(tcp, framed({"v": 1, "op": "nope"})))["error"] == "unknown_op"
            assert (await raw_call(tcp, framed({"v": 1, "op": "publish", "slot": b"x"})))["error"] == "bad_request"
            bad = {"v": 1, "op": "publish", "slot": os.urandom(20), "envelope": b"\x01" * 512}
            assert (await raw_call(tcp, framed(bad)))["error"] == "bad_envelope"
            assert (await raw_call(tcp, framed({"v": 1, "op": "heads", "offset": 0})))["error"] == "no_read"
            # content blobs: a list of envelopes with this network's work for content, ids of 20 bytes
            assert (await raw_call(tcp, framed({"v": 1, "op": "store", "blobs": []})))["error"] == "bad_request"
            assert (await raw_call(tcp, framed({"v": 1, "op": "store", "blobs": [b"\x01" * 512]})))[
                "error"] == "bad_envelope"
            assert (await raw_call(tcp, framed({"v": 1, "op": "get_blobs", "ids": [b"short"]})))[
                "error"] == "bad_request"
            assert (await raw_call(tcp, framed({"v": 1, "op": "get_blobs", "ids": [os.urandom(20)] * 65})))[
                "error"] == "bad_request"
            assert (await raw_call(tcp, framed({"v": 1, "op": "read", "slot": os.urandom(20), "known": b"abc"})))[
                "error"
            ] == "bad_request"
            # Silence gets a timeout code; the connection is then closed.
            assert (await raw_call(tcp, b""))["error"] == "timeout"
            # Per-address cap: the third concurrent connection is told busy.
            held = [await asyncio.open_connection(*tcp) for _ in range(2)]
            await asyncio.sleep(0.1)
            assert (await raw_call(tcp, framed({"v": 1, "op": "hello"})))["error"] == "busy"
            for _, w in held:
                w.close()
            await wait_for(lambda: service.status()["open"] == 0, 5)
            # Requests per connection.
            reader, writer = await asyncio.open_connection(*tcp)
            codes = []
            for _ in range(4):
                writer.write(framed({"v": 1, "op": "hello"}))
                length = int.from_bytes(await reader.readexactly(4), "big")
                codes.append(codec.unpack(await reader.readexactly(length), max_len=1 << 20).get("error"))
            writer.close()
            assert codes == [None, None, None, "too_many_requests"]
            assert all(host == "127.0.0.1" for host, _ in service.accepted)
        finally:
            await service.close()
            await shutdown(relays)

    asyncio.run(scenario())


def test_relay_offers_the_tcp_service_when_configured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from komrade_dht.cli import main
    from komrade_dht.relay import ConfigError, Relay, RelayConfig

    async def scenario() -> None:
        empty = tmp_path / "none.txt"
        empty.write_text("")
        config = RelayConfig(listen="127.0.0.1:0", tcp_listen="127.0.0.1:0", metrics_listen="off",
                             bootstrap_file=str(empty))
        relay = Relay(config, tmp_path / "relay")
        try:
            await relay.start()
            assert relay.tcp is not None
            hello = await TorClient([relay.tcp.address], None).start()
            assert hello["v"] == 1
            assert relay.status()["tcp"]["counters"]["op_hello"] == 1
            assert 'komrade_tcp_requests_total{op="hello"} 1' in relay.metrics()
        finally:
            await relay.close()
        assert Relay(RelayConfig(metrics_listen="off", listen="127.0.0.1:0", bootstrap_file=str(empty)),
                     tmp_path / "r2").tcp is None

    asyncio.run(scenario())
    with pytest.raises(ConfigError, match="tcp_listen"):
        RelayConfig(tcp_listen="relay.example:9476")
    # The CLI wants --tor and --relay-tcp together, and no DHT flags with them.
    for argv in (["send", "--tor", "127.0.0.1:9050", "komrade1q", "x"],
                 ["inbox", "--relay-tcp", "127.0.0.1:9476"],
                 ["inbox", "--tor", "127.0.0.1:9050", "--relay-tcp", "127.0.0.1:9476", "--bootstrap", "127.0.0.1:1"]):
        capsys.readouterr()
        assert main(["--data-dir", str(tmp_path / "nobody"), *argv]) == 1
        assert "--tor" in capsys.readouterr().err


def test_heads_come_in_pages_and_a_large_read_is_truncated_not_lost(tmp_path: Path, monkeypatch) -> None:
    from komrade_dht import relay_tcp

    monkeypatch.setattr(relay_tcp, "HEADS_PAGE_BYTES", 300)  # two heads a page

    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 4, CONFIG)
        # room for three heads per read: five messages need two syncs
        service = TcpService(relays[0], TcpLimits(heads_per_connection=3 * 150))
        alice = account(tmp_path, "Alice")
        bob = account(tmp_path, "Bob")
        bob_node = None
        try:
            tcp = await service.start("127.0.0.1", 0)
            untraceable = TorClient([tcp], None, pow=CHEAP_POW)
            bob_node = await client(relays[2].address, CONFIG)
            for i in range(5):
                await send_dm(bob, bob_node, alice.address.text, f"message {i}")
            first = await sync_inbox(alice, untraceable)
            assert 1 <= len(first) <= 3
            assert service.counters["op_heads"] >= 2  # paged
            second = await sync_inbox(alice, untraceable)
            assert sorted(m.text for m in first + second) == [f"message {i}" for i in range(5)]
            await wait_for(lambda: service.status()["heads_bytes"] == 0, 5)  # released with the connections
        finally:
            await service.close()
            await shutdown([*relays, *([bob_node] if bob_node else [])], (alice, bob))

    asyncio.run(scenario())
