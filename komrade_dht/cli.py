"""The ``komrade`` command. Every KomradeError becomes one line on stderr and exit code 1, here and only here.

Everything printed for a person that did not come from this program (names, message text, error details) goes
through :func:`komrade_dht.text.printable` (or ``printable_block`` for a message body), so text from the network
cannot move the cursor, erase lines or forge a header. ``--json`` output is exact: JSON escapes on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Sequence

from . import __version__
from .errors import KomradeError
from .node import KomradeNode
from .node.bootstrap import PACKAGED_BOOTSTRAP, parse_hostport, read_bootstrap_file
from .social import Account, Message, inbox, send_dm, sync_inbox
from .text import columns, printable, printable_block, truncate

if TYPE_CHECKING:
    from .api.client import SyncApiClient
    from .relay import RelayConfig
    from .torclient import TorClient

log = logging.getLogger("komrade")


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def default_data_dir() -> Path:
    """``$KOMRADE_HOME`` if set, else the platform's user data directory."""
    if os.environ.get("KOMRADE_HOME"):
        return Path(os.environ["KOMRADE_HOME"])
    import platformdirs

    return Path(platformdirs.user_data_dir("komrade", appauthor=False))


def read_passphrase(confirm: bool = False, name: str = "") -> str:
    """From ``KOMRADE_PASSPHRASE``, else asked at the terminal. A new one (``confirm``) must pass
    :func:`komrade_dht.passphrase.check` (wherever it came from) and is asked twice at a terminal."""
    env = os.environ.get("KOMRADE_PASSPHRASE")
    if env:
        if confirm:
            require_strong(env, name, "KOMRADE_PASSPHRASE, ")
        return env
    if not sys.stdin.isatty():
        raise KomradeError("no passphrase: set KOMRADE_PASSPHRASE or run this in a terminal")
    first = getpass.getpass("new passphrase: " if confirm else "passphrase: ")
    if confirm:
        require_strong(first, name, "")
        if getpass.getpass("again: ") != first:
            raise KomradeError("the two passphrases differ")
    return first


def require_strong(passphrase: str, name: str, source: str) -> None:
    """Refuse a weak new passphrase with one line saying why and what to do."""
    from .passphrase import MIN_SCORE, check

    result = check(passphrase, name)
    if not result.ok:
        raise KomradeError(f"passphrase too weak ({source}strength {result.score} of 4, {MIN_SCORE} needed): "
                           f"{result.hint}")


def bootstrap_peers(args: argparse.Namespace) -> list[tuple[str, int]]:
    peers = [parse_hostport(text) for text in args.bootstrap or []]
    return peers + read_bootstrap_file(Path(args.bootstrap_file) if args.bootstrap_file else PACKAGED_BOOTSTRAP)


def client_interface(peers: list[tuple[str, int]]) -> str:
    """Loopback when every peer is on loopback (the default, and tests); otherwise all interfaces, as a client."""
    def loopback(host: str) -> bool:
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"

    return "127.0.0.1" if all(loopback(h) for h, _ in peers) else "0.0.0.0"


@asynccontextmanager
async def client_node(args: argparse.Namespace) -> AsyncIterator[KomradeNode]:
    """A read-only node for one command: joins, does its work, saves what it learned of the network, leaves."""
    peers = bootstrap_peers(args)
    node = KomradeNode(None, state_dir=args.data_dir)
    await node.listen(0, client_interface(peers))
    try:
        if not await node.bootstrap(peers):
            raise KomradeError("no komrade node answered: pass --bootstrap HOST:PORT of a running relay")
        yield node
    finally:
        await node.stop_async()


def untraceable_mode(args: argparse.Namespace) -> bool:
    """Whether ``--tor`` asks for untraceable mode (then the running node, a DHT node, is not used); checks that
    ``--tor`` and ``--relay-tcp`` come together and that nothing asks for the DHT (``--bootstrap``)."""
    if args.relay_tcp and not args.tor:
        raise KomradeError("--relay-tcp is for untraceable mode: add --tor HOST:PORT (Tor's SOCKS port, e.g. 127.0.0.1:9050)")
    if not args.tor:
        return False
    if not args.relay_tcp:
        raise KomradeError("--tor needs --relay-tcp HOST:PORT: a relay's TCP service to reach through Tor")
    if args.bootstrap or args.bootstrap_file:
        raise KomradeError("--tor runs no DHT node: --bootstrap and --bootstrap-file do not apply")
    return True


@asynccontextmanager
async def tor_client(args: argparse.Namespace) -> AsyncIterator[TorClient]:
    """Untraceable mode for one command: no DHT node, no UDP socket; every action through Tor's SOCKS port on its
    own circuit. The hello (its own circuit too) checks a relay answers and takes the network's proof of work."""
    from .torclient import TorClient

    client = TorClient([parse_hostport(r) for r in args.relay_tcp], parse_hostport(args.tor))
    await client.start()
    yield client


# -- commands ------------------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    seed = None
    if args.restore:
        from .recovery import decode_recovery

        text = os.environ.get("KOMRADE_RECOVERY") or (getpass.getpass("recovery text: ") if sys.stdin.isatty() else "")
        if not text:
            raise KomradeError("no recovery text: set KOMRADE_RECOVERY or run this in a terminal")
        seed = decode_recovery(text)
    passphrase = read_passphrase(confirm=True, name=args.name)
    account = Account.create(args.data_dir, args.name, passphrase, width=args.width, seed=seed)
    print(f"created identity \"{printable(account.name)}\" in {printable(str(args.data_dir))}")
    print(account.address.text)
    print(f"fingerprint: {account.fingerprint}")
    account.close()
    return 0


def cmd_address(args: argparse.Namespace) -> int:
    account = Account.open(args.data_dir, read_passphrase())
    text = account.address.text
    print(text)
    print(f"fingerprint: {account.fingerprint}")
    if not args.no_qr:
        sys.stdout.write(terminal_qr(text))
    account.close()
    return 0


#: 256-colour indexes 16 (#000000) and 231 (#ffffff): fixed in the colour cube, unlike the 16 theme colours.
QR_DARK, QR_LIGHT = 16, 231


def terminal_qr(text: str, border: int = 4) -> str:
    """``text`` as a QR code for a terminal, two modules per character cell (upper half block), every cell with
    an explicit foreground and background colour, quiet zone included: black on white whatever the terminal's
    theme (a code drawn in the default colours comes out inverted on light or on dark backgrounds)."""
    import segno

    rows = [list(row) for row in segno.make(text, error="m").matrix_iter(scale=1, border=border)]
    if len(rows) % 2:
        rows.append([0] * len(rows[0]))  # light: more quiet zone
    lines = []
    for top, bottom in zip(rows[::2], rows[1::2]):
        cells = []
        previous = None
        for upper, lower in zip(top, bottom):
            colours = (QR_DARK if upper else QR_LIGHT, QR_DARK if lower else QR_LIGHT)
            if colours != previous:
                cells.append("\033[38;5;%d;48;5;%dm" % colours)
                previous = colours
            cells.append("\u2580")  # upper half block: foreground on top, background below
        lines.append("".join(cells) + "\033[0m\n")
    return "".join(lines)


def cmd_recovery(args: argparse.Namespace) -> int:
    from .recovery import encode_recovery

    account = Account.open(args.data_dir, read_passphrase())
    try:
        print(encode_recovery(account.identity.seed))
    finally:
        account.close()
    return 0


def cmd_contact(args: argparse.Namespace) -> int:
    account = Account.open(args.data_dir, read_passphrase())
    try:
        if args.contact_cmd == "add":
            contact = account.add_contact(args.address, args.name)
            print(f"added [{contact.fingerprint}]  {truncate(contact.name, NAME_MAX)}")
        else:
            for c in account.contacts():
                verified = "  verified" if c.verified else ""
                print(f"[{c.fingerprint}]{verified}  {truncate(c.name, NAME_MAX)}\n    {printable(c.address)}")
    finally:
        account.close()
    return 0


def running_node(args: argparse.Namespace) -> SyncApiClient | None:
    """A client of the node already running for this data directory (``komrade node``), or None."""
    from .api.client import SyncApiClient, node_running

    if not node_running(args.data_dir):
        return None
    if args.bootstrap or args.bootstrap_file:
        log.info("a node runs for %s: using it (its own peers, not --bootstrap)", args.data_dir)
    return SyncApiClient.from_data_dir(args.data_dir)


#: Columns a sender's name may take in an inbox header: what is left of the terminal's line, within these bounds.
NAME_MIN, NAME_MAX = 16, 48


def print_inbox(new: int, messages: Sequence[Message], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"new": new, "messages": [asdict(m) for m in messages]}))
        return
    if not messages:
        print("no messages")
    width = shutil.get_terminal_size().columns
    for m in messages:
        # One header line per message, starting at column 0; every line of the body is indented and cut to the
        # terminal's width, so none wraps to column 0. The fingerprint and the request mark come before the
        # name, and the name is cut to what is left of the line (at least NAME_MIN columns: too short for a
        # fake header if a narrow terminal wraps it).
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(m.sent_at))
        head = f"{when}  [{printable(m.sender_fingerprint)}]  " + ("request " if m.request else "")
        room = max(NAME_MIN, min(NAME_MAX, width - columns(head) - (3 if m.request else 1)))
        name = truncate(m.sender_name, room)
        print(head + (f'"{name}"' if m.request else name))
        print(printable_block(m.text, width=width))


def cmd_send(args: argparse.Namespace) -> int:
    api = None if untraceable_mode(args) else running_node(args)
    if api is None:
        return asyncio.run(_send(args))
    with api:
        sent = api.send(args.address, args.text)
    print(f"sent {printable(sent.id)}")
    return 0


def cmd_inbox(args: argparse.Namespace) -> int:
    api = None if untraceable_mode(args) else running_node(args)
    if api is None:
        return asyncio.run(_inbox(args))
    with api:
        new = api.sync()
        messages = api.all_messages()
    print_inbox(len(new), messages, args.json)
    return 0


async def _send(args: argparse.Namespace) -> int:
    account = Account.open(args.data_dir, read_passphrase())
    try:
        async with (tor_client(args) if args.tor else client_node(args)) as node:
            key = await send_dm(account, node, args.address, args.text)
        print(f"sent {key.hex()}")
    finally:
        account.close()
    return 0


async def _inbox(args: argparse.Namespace) -> int:
    account = Account.open(args.data_dir, read_passphrase())
    try:
        async with (tor_client(args) if args.tor else client_node(args)) as node:
            new = await sync_inbox(account, node)
        messages = inbox(account)
    finally:
        account.close()
    print_inbox(len(new), messages, args.json)
    return 0


def cmd_crowd(args: argparse.Namespace) -> int:
    if args.target < 1:
        raise KomradeError("--target is the crowd you want to hide in: at least 1 person")
    return asyncio.run(_crowd(args))


async def _crowd(args: argparse.Namespace) -> int:
    from .social.crowd import crowd_report

    account = Account.open(args.data_dir, read_passphrase())
    try:
        async with client_node(args) as node:
            report = await crowd_report(account, node, args.target)
    finally:
        account.close()
    if args.json:
        print(json.dumps(asdict(report)))
        return 0
    print(f"network: about {report.network_size:,} nodes (estimated from how close the nodes nearest a random point are)")
    print(f"your slot width: {report.width} bits -> a crowd of about {report.crowd:,.0f} people share your slot")
    advice = "keep it" if report.advised_width == report.width else f"{report.advised_width} bits"
    print(f"for a crowd of at least {report.target:,}: width {report.advised_width} bits ({advice}); "
          f"a new width means a new address (komrade init --width N)")
    print(f"what your crowd costs you: {report.envelopes_per_day:,.0f} envelopes a day in your slots, "
          f"~{report.download_bytes_per_day / 1024:,.0f} KiB of heads a day")
    return 0


async def _node(args: argparse.Namespace) -> int:
    """The user's node and its local API, until SIGINT/SIGTERM."""
    from .api.server import ApiServer
    from .service import ServiceConfig, UserService

    peers = bootstrap_peers(args)
    if args.listen:
        host, port = parse_hostport(args.listen)
    else:
        host, port = client_interface(peers), 0
    api_host, api_port = parse_hostport(args.api)
    tor = untraceable_mode(args)
    if not tor and not (args.bootstrap or args.bootstrap_file):
        from .service import load_settings

        saved = load_settings(args.data_dir)["tor"]  # the app's switch: untraceable from the next start on
        if saved is not None:
            args.tor, args.relay_tcp, tor = saved["socks"], saved["relays"], True
    config = ServiceConfig(
        listen_host=host, listen_port=port, bootstrap=tuple(peers), sync_interval=args.sync_interval,
        tor_socks=parse_hostport(args.tor) if tor else None,
        relay_tcp=tuple(parse_hostport(r) for r in args.relay_tcp or ()) if tor else (),
    )
    account = Account.open(args.data_dir, read_passphrase())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        service = UserService(account, config)
        server = ApiServer(service, api_host, api_port)  # refuses a non-loopback host before anything starts
        await service.start()
        try:
            url = await server.start()
            try:
                print(f"API on {url}", flush=True)
                assert service.node is not None
                if service.untraceable:
                    print("untraceable mode: no DHT node, no UDP socket; every action through Tor", flush=True)
                else:
                    print("node on %s:%d" % service.node.address, flush=True)
                await stop.wait()
                log.info("stopping")
            finally:
                await server.close()
        finally:
            await service.close()
    finally:
        account.close()
    return 0


def relay_config(args: argparse.Namespace) -> RelayConfig:
    """The relay's configuration: defaults, then the --config file, then the flags given."""
    from .relay import RelayConfig

    config = RelayConfig.from_toml(args.config) if args.config else RelayConfig()
    config = config.override(
        listen=args.listen,
        bootstrap=args.bootstrap,
        bootstrap_file=args.bootstrap_file,
        ksize=args.ksize,
        purge_interval=args.purge_interval,
        max_disk_bytes=args.max_disk_bytes,
        max_peers=args.max_peers,
        log_level=args.log_level or ({1: "info", 2: "debug"}.get(min(args.verbose, 2)) if args.verbose else None),
        log_format=args.log_format,
        metrics_listen=args.metrics_listen,
        tcp_listen=args.tcp_listen,
    )
    if not args.data_dir_given and config.data_dir:
        args.data_dir = Path(config.data_dir).expanduser()
    return config


def cmd_relay(args: argparse.Namespace) -> int:
    from .relay import configure_logging, fetch_status, format_status, run_relay

    config = relay_config(args)
    if args.status:
        status = fetch_status(args.data_dir)
        print(json.dumps(status) if args.json else "\n".join(map(printable, format_status(status).split("\n"))))
        return 0
    configure_logging(config.log_level, config.log_format)
    if config.log_format != "json":  # JSON lines escape on their own
        for handler in logging.getLogger().handlers:
            handler.setFormatter(PrintableFormatter(handler.formatter))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_relay(config, args.data_dir, stop)

    asyncio.run(main())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="komrade", description="An encrypted social network on a DHT.")
    parser.add_argument("--version", action="version", version=f"komrade {__version__}")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $KOMRADE_HOME or the user data dir")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    def net(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bootstrap", action="append", metavar="HOST:PORT", help="a node to join through")
        p.add_argument("--bootstrap-file", help="file of HOST:PORT lines (default: the shipped bootstrap_nodes.txt)")

    def untraceable(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tor", metavar="HOST:PORT",
                       help="untraceable mode: no DHT node, no UDP; every action through this Tor SOCKS port (with --relay-tcp)")
        p.add_argument("--relay-tcp", action="append", metavar="HOST:PORT",
                       help="a relay's TCP service (IP, name or .onion) for --tor; repeatable, one picked per action")

    p = sub.add_parser("init", help="create your identity")
    p.add_argument("--name", required=True)
    p.add_argument("--width", type=int, default=8, help="slot width in bits (0..32); see README")
    p.add_argument("--restore", action="store_true",
                   help="restore an identity from its recovery text (KOMRADE_RECOVERY, else asked)")
    sub.add_parser("recovery", help="print your recovery text (write it on paper: it restores your identity)")
    p = sub.add_parser("address", help="print your address, fingerprint and a QR code")
    p.add_argument("--no-qr", action="store_true")
    p = sub.add_parser("contact", help="manage contacts")
    csub = p.add_subparsers(dest="contact_cmd", required=True)
    c = csub.add_parser("add")
    c.add_argument("address")
    c.add_argument("name")
    csub.add_parser("list")
    p = sub.add_parser("relay", help="run a relay (holds envelopes for everyone, no identity) until SIGINT/SIGTERM",
                       description="Flags override the --config file; both are documented in docs/relay.toml.example.")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (see docs/relay.toml.example)")
    p.add_argument("--status", action="store_true", help="print the running relay's status and exit")
    p.add_argument("--json", action="store_true", help="with --status: print it as one JSON document")
    p.add_argument("--listen", metavar="HOST:PORT", help="UDP address (default 127.0.0.1:9475)")
    p.add_argument("--ksize", type=int, help="k, the replication parameter (20)")
    p.add_argument("--purge-interval", type=positive_float, metavar="SECONDS", help="purge of expired envelopes (60)")
    p.add_argument("--max-disk-bytes", type=int, metavar="BYTES", help="store quota (536870912)")
    p.add_argument("--max-peers", type=int, metavar="N", help="routing-table contacts cap, 0 for none (1000)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="(info)")
    p.add_argument("--log-format", choices=["text", "json"], help="(text)")
    p.add_argument("--metrics-listen", metavar="HOST:PORT|off", help="loopback status/metrics endpoint (127.0.0.1:0)")
    p.add_argument("--tcp-listen", metavar="HOST:PORT|off", help="TCP service for untraceable clients (off)")
    net(p)
    p = sub.add_parser("node", help="run your node and its local API (for the app, send and inbox) until SIGINT/SIGTERM")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="UDP address of the node (default: 127.0.0.1 if every bootstrap peer is on loopback, else 0.0.0.0; any port)")
    p.add_argument("--api", default="127.0.0.1:0", metavar="HOST:PORT", help="loopback address of the API (default any port)")
    p.add_argument("--sync-interval", type=positive_float, default=30.0, metavar="SECONDS", help="inbox sync period (30)")
    net(p)
    untraceable(p)
    p = sub.add_parser("send", help="send a direct message (through the running node, if there is one)")
    net(p)
    untraceable(p)
    p.add_argument("address")
    p.add_argument("text")
    p = sub.add_parser("inbox", help="fetch and list your direct messages (through the running node, if there is one)")
    net(p)
    untraceable(p)
    p.add_argument("--json", action="store_true", help="print exactly one JSON document")
    p = sub.add_parser("crowd", help="how many people share your slot, and the slot width advised for a crowd")
    net(p)
    p.add_argument("--target", type=int, default=1000, metavar="N", help="the crowd you want to hide in (1000)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON document")
    from . import cli_posts  # post, feed, friend, profile (issue 10)

    cli_posts.add_parsers(sub, net)
    from . import cli_organize  # vote, event, pin, collective (issue 11)

    cli_organize.add_parsers(sub, net)
    from . import cli_devices  # device list|pair|join|remove (issue 14)

    cli_devices.add_parsers(sub, net)
    return parser


class PrintableFormatter(logging.Formatter):
    """Formats as ``inner`` does, then escapes what a terminal would act on; a traceback keeps its lines."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(map(printable, self.inner.format(record).split("\n")))


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a name the terminal's encoding lacks is shown escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    args.data_dir_given = args.data_dir is not None
    args.data_dir = args.data_dir or default_data_dir()
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    if args.command == "node":
        level = min(level, logging.INFO)  # a daemon says what it does; the relay sets up its own logs
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # a log line quoting the network must not drive the terminal
        handler.setFormatter(PrintableFormatter(handler.formatter))
    commands = {
        "init": cmd_init,
        "address": cmd_address,
        "recovery": cmd_recovery,
        "contact": cmd_contact,
        "send": cmd_send,
        "inbox": cmd_inbox,
        "crowd": cmd_crowd,
        "node": lambda a: asyncio.run(_node(a)),
        "relay": cmd_relay,
    }
    from .cli_posts import COMMANDS as POST_COMMANDS

    commands.update(POST_COMMANDS)
    from .cli_organize import COMMANDS as ORGANIZE_COMMANDS

    commands.update(ORGANIZE_COMMANDS)
    from .cli_devices import COMMANDS as DEVICE_COMMANDS

    commands.update(DEVICE_COMMANDS)
    try:
        return commands[args.command](args)
    except KomradeError as exc:
        print(f"komrade: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:  # a port in use, an unreadable data directory: the system's words are clear enough
        print(f"komrade: error: {printable(str(exc.strerror or exc))}"
              + (f": {printable(str(exc.filename))}" if exc.filename else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
