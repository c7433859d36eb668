"""Untraceable mode for real: a private Tor network on loopback (tests/tor_network.py) carries a DM from a client
that runs no DHT node to a recipient on the DHT, and the reply back: first to the relay's TCP port through an exit,
then to the same service through its onion service.

Alice runs `komrade send/inbox --tor ... --relay-tcp ...` as subprocesses with an audit hook (sys.addaudithook)
that records every socket the process creates, binds, connects or sends from, and every name it resolves: the test
asserts that she opened no UDP socket, resolved nothing and connected to Tor's SOCKS port only. From the relay's
side, every accepted TCP connection was opened by an exit of the private Tor network (or, for the onion path, by
the onion service's tor), never by Alice's process nor by the Tor client: at each accept the relay asks the kernel which process owns the peer's end of the socket (on
loopback every exit's stream arrives from 127.0.0.1, the address of Alice and of everyone else here: tor never
binds the source of a connection to a loopback destination, so the address alone cannot tell them apart).

Without `tor` installed this test FAILS with the reason (CI installs it; scripts/setup.sh does).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from komrade_dht.node import NodeConfig
from komrade_dht.relay_tcp import TcpService
from komrade_dht.social import send_dm, sync_inbox
from komrade_dht.torclient import TorClient

from .support import CHEAP_POW, account, client, shutdown, start_relays
from .tor_network import TorNetwork, TorNetworkError, free_port, socket_owner

pytestmark = pytest.mark.tor

CONFIG = NodeConfig(pow=CHEAP_POW, id_bits=8)
ONION_PORT = 9476

#: Runs the komrade CLI with an audit hook that writes one JSON line per socket event to argv[1].
AUDITED_CLI = r"""
import json, socket, sys
out = open(sys.argv[1], "a", buffering=1)

def hook(event, args):
    if event == "socket.__new__":
        out.write(json.dumps({"event": "new", "family": int(args[1]), "type": int(args[2]) & 0xF}) + "\n")
    elif event in ("socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[-1]
        out.write(json.dumps({"event": event[7:], "family": int(sock.family), "type": int(sock.type) & 0xF,
                              "address": list(address) if isinstance(address, tuple) else repr(address)}) + "\n")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
        out.write(json.dumps({"event": "resolve", "host": repr(args[0])}) + "\n")

sys.addaudithook(hook)
from komrade_dht.cli import main
sys.exit(main(sys.argv[2:]))
"""


async def audited_komrade(audit: Path, *args: str, env: dict[str, str]) -> tuple[str, float]:
    """Run ``komrade ARGS`` under the audit hook; its stdout and wall time. Fails the test on a non-zero exit."""
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AUDITED_CLI, str(audit), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"komrade {args[2]} through Tor did not finish within 120 s") from None
    assert proc.returncode == 0, f"komrade {' '.join(args[2:3])} failed: {err.decode(errors='replace')[-2000:]}"
    return out.decode(), time.monotonic() - t0


class OwnerLoggingService(TcpService):
    """The relay's TCP service, also recording which process owns the peer end of each accepted connection."""

    owners: list[tuple[str, int, int | None, str]]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        found = socket_owner((peer[0], peer[1]), self.address)
        self.owners.append((peer[0], peer[1], *(found or (None, "?"))))
        await super()._accept(reader, writer)


class StreamWatch:
    """Tor's STREAM events from the client's control port: which circuit carried each stream (to check isolation)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.task: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self, control: tuple[str, int]) -> None:
        reader, self.writer = await asyncio.open_connection(*control)
        self.writer.write(b"AUTHENTICATE\r\nSETEVENTS STREAM\r\n")
        await self.writer.drain()
        for _ in range(2):
            line = (await asyncio.wait_for(reader.readline(), 10)).decode()
            assert line.startswith("250"), f"control port: {line!r}"

        async def read() -> None:
            while line := await reader.readline():
                self.lines.append(line.decode(errors="replace").strip())

        self.task = asyncio.ensure_future(read())

    def circuits(self) -> dict[str, str]:
        """Stream id -> circuit id, for every stream that succeeded."""
        out = {}
        for line in self.lines:
            parts = line.split()
            if len(parts) >= 5 and parts[:2] == ["650", "STREAM"] and parts[3] == "SUCCEEDED":
                out[parts[2]] = parts[4]
        return out

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def until_it_answers(probe: TorClient, seconds: float, net: TorNetwork) -> None:
    """Say hello through Tor until a relay answers (a fresh circuit each try), or fail the test with the logs."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            await probe.start()
            return
        except Exception as exc:  # noqa: BLE001 (any failure is retried until the deadline)
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer through Tor within {seconds} s: {exc}\n{net.logs()}") from None
            await asyncio.sleep(1)


def audit_events(audit: Path) -> list[dict]:
    return [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]


def tor_pids_alive(root: Path) -> list[int]:
    """tor processes whose command line names a file under ``root``: none may be left after the test."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"tor") and str(root).encode() in b" ".join(cmdline):
            alive.append(int(entry.name))
    return alive


@pytest.mark.timeout(280)
def test_dm_through_a_private_tor_network_never_shows_the_client(tmp_path: Path) -> None:
    root = tmp_path / "tor"
    tcp_port = free_port("127.0.0.1")  # the relay's TCP service: the one port the exits open beyond loopback
    net = TorNetwork(root, exit_ports=(tcp_port,), onion=(ONION_PORT, f"127.0.0.1:{tcp_port}"))
    figures: dict[str, float] = {}
    try:
        try:
            net.start(timeout=150)
        except TorNetworkError as exc:
            pytest.fail(str(exc))
        figures["consensus_s"] = net.consensus_seconds
        figures["bootstrap_s"] = net.bootstrap_seconds
        asyncio.run(_scenario(net, tmp_path, tcp_port, figures))
    finally:
        net.stop()
        print("tor figures:", json.dumps({k: round(v, 2) for k, v in figures.items()}))
    assert tor_pids_alive(root) == [], "tor processes left behind"


async def _scenario(net: TorNetwork, tmp_path: Path, tcp_port: int, figures: dict[str, float]) -> None:
    relays = await start_relays(tmp_path / "net", 6, CONFIG)
    service = OwnerLoggingService(relays[0])
    service.owners = []
    alice = account(tmp_path, "Alice")
    bob = account(tmp_path, "Bob")
    alice_dir, alice_address = tmp_path / "alice", alice.address.text
    alice.close()  # Alice runs as the CLI below, in her own processes
    bob_node = None
    watch = StreamWatch()
    try:
        tcp = await service.start("127.0.0.1", tcp_port)
        socks = net.socks
        await watch.start(net.control)

        # Tor reports 100% before every relay is usable for exits: the first hello may take a few circuits.
        t0 = time.monotonic()
        probe = TorClient([tcp], socks, attempts=1, timeout=30)
        await until_it_answers(probe, 60, net)
        figures["first_stream_s"] = time.monotonic() - t0

        env = {**os.environ, "KOMRADE_PASSPHRASE": "Alice passphrase"}
        audit = tmp_path / "alice-sockets.jsonl"
        tor = ["--tor", "%s:%d" % socks, "--relay-tcp", "%s:%d" % tcp]

        # Alice -> Bob, through Tor.
        _, figures["alice_send_s"] = await audited_komrade(
            audit, "--data-dir", str(alice_dir), "send", *tor, bob.address.text, "hello from behind Tor", env=env
        )
        bob_node = await client(relays[3].address, CONFIG)
        got = await sync_inbox(bob, bob_node)
        assert [m.text for m in got] == ["hello from behind Tor"]
        assert got[0].sender_address == alice_address

        # Bob -> Alice on the DHT; Alice reads it through Tor.
        await send_dm(bob, bob_node, got[0].sender_address, "loud and clear")
        out, figures["alice_inbox_s"] = await audited_komrade(
            audit, "--data-dir", str(alice_dir), "inbox", *tor, "--json", env=env
        )
        inbox = json.loads(out)
        assert inbox["new"] == 1 and [m["text"] for m in inbox["messages"]] == ["loud and clear"]
        figures["dm_round_trip_s"] = figures["alice_send_s"] + figures["alice_inbox_s"]

        # In-process figures: one publish and one slot read through Tor, each on its own circuit (Carol to herself).
        untraceable = TorClient([tcp], socks, pow=CHEAP_POW)  # retries a failed circuit, as the CLI's does
        t1 = time.monotonic()
        me = account(tmp_path, "Carol")
        try:
            await send_dm(me, untraceable, me.address.text, "timing")
            figures["publish_s"] = time.monotonic() - t1
            t2 = time.monotonic()
            assert [m.text for m in await sync_inbox(me, untraceable)] == ["timing"]
            figures["sync_s"] = time.monotonic() - t2
        finally:
            me.close()

        by_exit = len(service.owners)

        # The same through the relay's onion service (its own tor next to it, started with the client): no exit.
        onion = (net.onion_address, ONION_PORT)
        t0 = time.monotonic()
        await until_it_answers(TorClient([onion], socks, attempts=1, timeout=30), 90, net)
        figures["onion_wait_s"] = time.monotonic() - t0
        via_onion = ["--tor", "%s:%d" % socks, "--relay-tcp", "%s:%d" % onion]
        _, figures["alice_send_onion_s"] = await audited_komrade(
            audit, "--data-dir", str(alice_dir), "send", *via_onion, bob.address.text, "now by onion", env=env
        )
        assert [m.text for m in await sync_inbox(bob, bob_node)] == ["now by onion"]
        await send_dm(bob, bob_node, alice_address, "onion received")
        out, figures["alice_inbox_onion_s"] = await audited_komrade(
            audit, "--data-dir", str(alice_dir), "inbox", *via_onion, "--json", env=env
        )
        assert json.loads(out)["new"] == 1 and json.loads(out)["messages"][-1]["text"] == "onion received"
        figures["dm_round_trip_onion_s"] = figures["alice_send_onion_s"] + figures["alice_inbox_onion_s"]

        # What Alice's processes did with sockets: no UDP, no name resolution, TCP to Tor's SOCKS port only.
        events = audit_events(audit)
        assert events, "the audit hook recorded nothing"
        assert not [e for e in events if e.get("type") == socket.SOCK_DGRAM], "Alice opened a UDP socket"
        assert not [e for e in events if e["event"] == "resolve"], "Alice resolved a name"
        inet = [e for e in events if e["event"] == "connect" and e["family"] in (socket.AF_INET, socket.AF_INET6)]
        assert inet and {tuple(e["address"]) for e in inet} == {tuple(socks)}, inet
        assert not [e for e in events if e["event"] == "bind" and e["family"] != socket.AF_UNIX]

        # From the relay's side: every connection it accepted was opened by an exit of the private network (then by
        # the onion service's tor); none by Alice's processes, the test process or the Tor client.
        assert len(service.owners) == len(service.accepted) >= 12, service.owners
        exits, onion_tor = set(net.pids("exit")), set(net.pids("onion"))
        strangers = [o for o in service.owners[:by_exit] if o[2] not in exits]
        assert not strangers, f"connections not opened by a Tor exit (exits: {sorted(exits)}): {strangers}"
        strangers = [o for o in service.owners[by_exit:] if o[2] not in onion_tor]
        assert not strangers, f"onion connections not opened by the onion service's tor: {strangers}"
        assert all(comm == "tor" for *_, comm in service.owners)
        figures["connections_by_exit"] = by_exit
        figures["connections_by_onion"] = len(service.owners) - by_exit
        figures["distinct_exits_used"] = len({o[2] for o in service.owners[:by_exit]})

        # Stream isolation per action: every stream that reached the relay (one per action: fresh SOCKS credentials
        # each time) rode a circuit of its own, as the client's tor reports on its control port.
        await asyncio.sleep(0.5)
        circuits = watch.circuits()
        assert len(circuits) >= len(service.owners), (len(circuits), len(service.owners), watch.lines[-20:])
        assert len(set(circuits.values())) == len(circuits), f"streams shared circuits: {circuits}"
        figures["circuits"] = len(set(circuits.values()))
    finally:
        await watch.close()
        await service.close()
        await shutdown([*relays, *([bob_node] if bob_node else [])], (bob,))



def test_without_tor_installed_the_network_fails_with_the_reason(tmp_path: Path) -> None:
    """CI installs tor; a machine without it must fail the Tor test with a clear reason, not skip it."""
    net = TorNetwork(tmp_path / "tor", tor="tor-that-is-not-installed")
    with pytest.raises(TorNetworkError, match="not installed.*apt-get install tor"):
        net.start()
    assert net.pids() == []
