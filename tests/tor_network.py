"""A private Tor network on loopback, started by a test and torn down by it (every tor process, even on failure).

Three directory authorities (non-exit relays), ``exits`` exit relays, one client and, if asked, one onion service
(its own tor, in front of a TCP server on loopback), each a ``tor`` process with its own 127.0.0.x address, using Tor's testing-network options (read from chutney's ``torrc_templates``, not
vendored): ``TestingTorNetwork 1`` (private addresses allowed, distinct-subnet rules off, fast descriptor
downloads), short voting intervals, ``AssumeReachable 1`` (every relay publishes its descriptor at once instead
of after a reachability self-test, so the exits are in the second consensus, not the fourth), and the test-only vote overrides
(``TestingDirAuthVoteExit/Guard/HSDir *``) so that every relay gets the flags a 7-relay network otherwise never
earns. Nothing leaves 127.0.0.0/8: the exits accept 127.0.0.0/8 and, besides, only the ``exit_ports`` the test
names (a client picks exits by the port summary of their microdescriptors, which only counts ports open to the
whole address space: a loopback-only policy reads as "reject 1-65535" there, so the server's port must be open; the
only address any stream asks for is on loopback). Exits resolve nothing (``ServerDNSResolvConfFile /dev/null``),
and no default authority or fallback directory is known.

Onion services work here with ``VanguardsLiteEnabled 0`` on the client and the service: vanguards-lite (on by
default since 0.4.7) wants more relays for its layer-2 set than 6 ("Could not find a node that matches the
configured _HSLayer2Nodes set", the failure ../shared/TOR.md recorded). On the real network leave it on.

Each tor listens on its own 127.0.0.x, but a stream leaving an exit for a server on loopback comes from 127.0.0.1
whatever the exit's address: tor never binds an outbound socket whose destination is a loopback address
(``connection_connect`` in tor's connection.c skips ``OutboundBindAddress`` then), and Linux picks 127.0.0.1 as the
source for 127.0.0.0/8. So a test that wants to know who connected asks the kernel which process owns the peer's
socket (:func:`socket_owner`), and compares it with :meth:`TorNetwork.pids`.

``python -m tests.tor_network`` starts one, prints its SOCKS port and bootstrap time, and stops it on Enter.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

#: Consensus timing (seconds). Tor accepts short intervals only with TestingTorNetwork; chutney uses 20/4/4.
VOTING_INTERVAL = 10
VOTE_DELAY = 2
DIST_DELAY = 2

COMMON = """\
TestingTorNetwork 1
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteExit *
TestingDirAuthVoteHSDir *
TestingDirAuthVoteGuard *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
DataDirectory {dir}
Nickname {nick}
RunAsDaemon 0
ConnLimit 60
ShutdownWaitLength 0
Sandbox 0
SafeLogging 0
LogTimeGranularity 1
Log notice file {dir}/notice.log
PidFile {dir}/pid
__OwningControllerProcess {owner}
UseDefaultFallbackDirs 0
{authorities}
"""

RELAY = """\
SocksPort 0
ORPort {ip}:{orport}
Address {ip}
ContactInfo {nick}@test.invalid
AssumeReachable 1
ServerDNSDetectHijacking 0
ServerDNSTestAddresses
ServerDNSResolvConfFile /dev/null
"""

AUTHORITY = """\
DirPort {ip}:{dirport}
ExitRelay 0
ExitPolicy reject *:*
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval {vi}
TestingV3AuthInitialVoteDelay {vd}
TestingV3AuthInitialDistDelay {dd}
V3AuthVotingInterval {vi}
V3AuthVoteDelay {vd}
V3AuthDistDelay {dd}
"""

EXIT = """\
ExitRelay 1
ExitPolicyRejectPrivate 0
ExitPolicyRejectLocalInterfaces 0
ExitPolicy accept 127.0.0.0/8:*
{accept_ports}ExitPolicy reject *:*
"""

CLIENT = """\
SocksPort {ip}:{socksport}
ControlPort {ip}:{controlport}
VanguardsLiteEnabled 0
"""

ONION = """\
SocksPort 0
VanguardsLiteEnabled 0
HiddenServiceDir {dir}/hs
HiddenServicePort {onion_port} {onion_target}
"""


class TorNetworkError(RuntimeError):
    """The network did not come up; the message carries the tail of the logs that say why."""


def free_port(ip: str) -> int:
    """A TCP port the OS says is free on ``ip`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _hex_endpoint(host: str, port: int) -> str:
    """An IPv4 endpoint as /proc/net/tcp writes it (address in host byte order on little-endian machines)."""
    return "%s:%04X" % ("".join(f"{int(b):02X}" for b in reversed(host.split("."))), port)


def socket_owner(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, str] | None:
    """(pid, command name) of the process owning the TCP socket ``local`` -> ``remote`` (IPv4), or None.

    For a server, ``local`` is the peer address it accepted and ``remote`` its own listening address: the answer is
    the process at the other end of the connection, whatever address it came from. The socket must still be open."""
    want_local, want_remote = _hex_endpoint(*local), _hex_endpoint(*remote)
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == want_local and fields[2] == want_remote:
            inode = fields[9]
            break
    if inode is None or inode == "0":
        return None
    target = f"socket:[{inode}]"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == target:
                    return int(proc.name), (proc / "comm").read_text().strip()
        except OSError:
            continue
    return None


@dataclass
class TorNode:
    nick: str
    ip: str
    dir: Path
    role: str  # "authority", "exit" or "client"
    orport: int = 0
    dirport: int = 0
    socksport: int = 0
    controlport: int = 0
    fingerprint: str = ""
    v3ident: str = ""
    process: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.dir / "notice.log").read_text(errors="replace").splitlines()
        except OSError:
            text = ["(no notice.log)"]
        return f"--- {self.nick} ({self.ip}) ---\n" + "\n".join(text[-lines:])


@dataclass
class TorNetwork:
    """``start()`` then ``stop()`` (idempotent; kills whatever is left). Addresses: authorities 127.0.0.2-4,
    exits from 127.0.0.5, the client at 127.0.0.20."""

    root: Path
    exits: int = 3
    exit_ports: tuple[int, ...] = ()
    """Ports the exits accept for every address (see the module docstring); 127.0.0.0/8 is accepted on all."""
    onion: tuple[int, str] | None = None
    """(virtual port, "127.0.0.1:PORT"): also run an onion service on its own tor (127.0.0.21) for that target."""
    tor: str = "tor"
    gencert: str = "tor-gencert"
    nodes: list[TorNode] = field(default_factory=list)
    bootstrap_seconds: float = 0.0
    consensus_seconds: float = 0.0
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def client(self) -> TorNode:
        return next(n for n in self.nodes if n.role == "client")

    @property
    def socks(self) -> tuple[str, int]:
        return self.client.ip, self.client.socksport

    @property
    def control(self) -> tuple[str, int]:
        """The client's control port (no authentication: a test network on loopback)."""
        return self.client.ip, self.client.controlport

    @property
    def onion_address(self) -> str:
        """The onion service's name (once its tor has written it)."""
        node = next(n for n in self.nodes if n.role == "onion")
        return (node.dir / "hs" / "hostname").read_text().strip()

    @property
    def relay_ips(self) -> set[str]:
        """Every address a Tor relay of this network listens on."""
        return {n.ip for n in self.nodes if n.role in ("authority", "exit")}

    @property
    def exit_ips(self) -> set[str]:
        return {n.ip for n in self.nodes if n.role == "exit"}

    def pids(self, role: str | None = None) -> list[int]:
        """Process ids of the tors started (of one role: "authority", "exit", "client")."""
        return [n.process.pid for n in self.nodes if n.process is not None and role in (None, n.role)]

    # -- setup --------------------------------------------------------------------------------------------
    def _plan(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        roles = [("authority", f"auth{i}", f"127.0.0.{2 + i}") for i in range(3)]
        roles += [("exit", f"exit{i}", f"127.0.0.{5 + i}") for i in range(self.exits)]
        roles += [("client", "client", "127.0.0.20")]
        if self.onion is not None:
            roles += [("onion", "onion", "127.0.0.21")]
        for role, nick, ip in roles:
            d = self.root / nick
            (d / "keys").mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
            node = TorNode(nick, ip, d, role)
            if role == "client":
                node.socksport = free_port(ip)
                node.controlport = free_port(ip)
            elif role == "onion":
                pass
            else:
                node.orport = free_port(ip)
            if role == "authority":
                node.dirport = free_port(ip)
            self.nodes.append(node)

    def _keys(self) -> None:
        for node in self.nodes:
            if node.role == "authority":
                keys = node.dir / "keys"
                subprocess.run(
                    [self.gencert, "--create-identity-key", "--passphrase-fd", "0",
                     "-i", str(keys / "authority_identity_key"), "-s", str(keys / "authority_signing_key"),
                     "-c", str(keys / "authority_certificate"), "-m", "12", "-a", f"{node.ip}:{node.dirport}"],
                    input=b"\n", check=True, capture_output=True, timeout=60,
                )
                cert = (keys / "authority_certificate").read_text()
                node.v3ident = re.search(r"^fingerprint ([0-9A-F]{40})$", cert, re.M).group(1)  # type: ignore[union-attr]
            if node.role in ("authority", "exit"):
                subprocess.run(
                    [self.tor, "--ignore-missing-torrc", "-f", str(node.dir / "none"), "--defaults-torrc", os.devnull,
                     "--DataDirectory", str(node.dir), "--Nickname", node.nick, "--ORPort", "1",
                     "--list-fingerprint"],
                    check=True, capture_output=True, timeout=60,
                )
                node.fingerprint = (node.dir / "fingerprint").read_text().split()[1]

    def _torrc(self, node: TorNode) -> str:
        authorities = "\n".join(
            f"DirAuthority {a.nick} orport={a.orport} no-v2 v3ident={a.v3ident} {a.ip}:{a.dirport} {a.fingerprint}"
            for a in self.nodes
            if a.role == "authority"
        )
        text = COMMON.format(dir=node.dir, nick=node.nick, owner=os.getpid(), authorities=authorities)
        values = dict(ip=node.ip, nick=node.nick, orport=node.orport, dirport=node.dirport, socksport=node.socksport, controlport=node.controlport,
                      vi=VOTING_INTERVAL, vd=VOTE_DELAY, dd=DIST_DELAY,
                      accept_ports="".join(f"ExitPolicy accept *:{p}\n" for p in self.exit_ports))
        if node.role == "client":
            return text + CLIENT.format(**values)
        if node.role == "onion":
            assert self.onion is not None
            return text + ONION.format(dir=node.dir, onion_port=self.onion[0], onion_target=self.onion[1])
        text += RELAY.format(**values)
        if node.role == "authority":
            return text + AUTHORITY.format(**values)
        return text + EXIT.format(**values)

    def start(self, timeout: float = 150.0) -> None:
        """Generate keys, start every tor, and wait until the client has bootstrapped (100%). Raises
        TorNetworkError (with the logs) past ``timeout`` or if a tor exits; stops what it started then."""
        for tool in (self.tor, self.gencert):
            if shutil.which(tool) is None:
                raise TorNetworkError(
                    f"`{tool}` is not installed: the Tor tests need Debian's `tor` package "
                    "(apt-get install tor; scripts/setup.sh installs it)"
                )
        t0 = time.monotonic()
        try:
            self._plan()
            self._keys()
            for node in self.nodes:
                (node.dir / "torrc").write_text(self._torrc(node))
            # The client starts once the authorities publish a consensus with every relay and the exits' policies:
            # a client whose first consensus lacks the exits can sit on it, unable to build a circuit, for minutes.
            for node in self.nodes:
                if node.role in ("authority", "exit"):
                    self._launch(node)
            self._wait_consensus(t0 + timeout)
            self.consensus_seconds = time.monotonic() - t0
            self._launch(self.client)
            for node in self.nodes:
                if node.role == "onion":
                    self._launch(node)
            self._wait_bootstrapped(t0 + timeout)
        except BaseException:
            self.stop()
            raise
        self.bootstrap_seconds = time.monotonic() - t0

    def _launch(self, node: TorNode) -> None:
        assert node.process is None, f"tor {node.nick} started twice"
        node.process = subprocess.Popen(
            [self.tor, "-f", str(node.dir / "torrc"), "--defaults-torrc", os.devnull],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._processes.append(node.process)

    def _check_alive(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is not None:
                raise TorNetworkError(f"tor {node.nick} exited with {node.process.returncode}\n" + self.logs())

    def consensus(self) -> str:
        """The current consensus (ns flavour: it carries the exits' port summaries) from an authority's DirPort."""
        auth = next(n for n in self.nodes if n.role == "authority")
        url = f"http://{auth.ip}:{auth.dirport}/tor/status-vote/current/consensus"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback http)
                return response.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def _wait_consensus(self, deadline: float) -> None:
        relays = sum(1 for n in self.nodes if n.role in ("authority", "exit"))
        while True:
            self._check_alive()
            text = self.consensus()
            listed = text.count("\nr ")
            exits = sum(1 for line in text.splitlines() if line.startswith("p accept"))
            if listed >= relays and (exits >= self.exits or not self.exit_ports):
                return
            if time.monotonic() > deadline:
                raise TorNetworkError(
                    f"the authorities' consensus lists {listed} of {relays} relays and {exits} of {self.exits} exits\n"
                    + self.logs()
                )
            time.sleep(0.5)

    def _wait_bootstrapped(self, deadline: float) -> None:
        logs = [n.dir / "notice.log" for n in self.nodes if n.role in ("client", "onion")]
        while True:
            self._check_alive()
            done = 0
            for log in logs:
                try:
                    done += "Bootstrapped 100%" in log.read_text(errors="replace")
                except OSError:
                    pass
            if done == len(logs):
                return
            if time.monotonic() > deadline:
                raise TorNetworkError("the private Tor network did not bootstrap in time\n" + self.logs())
            time.sleep(0.5)

    def logs(self) -> str:
        return "\n".join(n.log_tail() for n in self.nodes)

    def stop(self) -> None:
        """SIGTERM every tor, SIGKILL what is left after 5 s, and reap them all."""
        live = [p for p in self._processes if p.poll() is None]
        for p in live:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        for p in live:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def __enter__(self) -> TorNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        net = TorNetwork(Path(tmp))
        try:
            net.start()
            print(f"bootstrapped in {net.bootstrap_seconds:.1f} s; SOCKS on {net.socks[0]}:{net.socks[1]}", flush=True)
            input("Enter to stop\n") if os.isatty(0) else time.sleep(float(os.environ.get("TOR_HOLD", "0")))
        finally:
            net.stop()
