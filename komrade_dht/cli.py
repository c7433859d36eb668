"""The ``komrade`` command. Every KomradeError becomes one line on stderr and exit code 1, here and only here."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import json
import logging
import os
import signal
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Sequence

from . import __version__
from .errors import KomradeError
from .node import KomradeNode, NodeConfig
from .node.bootstrap import PACKAGED_BOOTSTRAP, parse_hostport, read_bootstrap_file
from .social import Account, Message, inbox, send_dm, sync_inbox
from .storage import Store

if TYPE_CHECKING:
    from .api.client import SyncApiClient

log = logging.getLogger("komrade")
RELAY_DB = "relay.sqlite"


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


def read_passphrase(confirm: bool = False) -> str:
    """From ``KOMRADE_PASSPHRASE``, else asked at the terminal (twice for a new one)."""
    env = os.environ.get("KOMRADE_PASSPHRASE")
    if env:
        return env
    if not sys.stdin.isatty():
        raise KomradeError("no passphrase: set KOMRADE_PASSPHRASE or run this in a terminal")
    first = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise KomradeError("the two passphrases differ")
    return first


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


# -- commands ------------------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    account = Account.create(args.data_dir, args.name, read_passphrase(confirm=True), width=args.width)
    print(f"created identity {account.name!r} in {args.data_dir}")
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
        import segno

        segno.make(text, error="m").terminal(compact=True)
    account.close()
    return 0


def cmd_contact(args: argparse.Namespace) -> int:
    account = Account.open(args.data_dir, read_passphrase())
    try:
        if args.contact_cmd == "add":
            contact = account.add_contact(args.address, args.name)
            print(f"added {contact.name}  [{contact.fingerprint}]")
        else:
            for c in account.contacts():
                print(f"{c.name}  [{c.fingerprint}]{'  verified' if c.verified else ''}\n    {c.address}")
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


def print_inbox(new: int, messages: Sequence[Message], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"new": new, "messages": [asdict(m) for m in messages]}))
        return
    if not messages:
        print("no messages")
    for m in messages:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(m.sent_at))
        tag = "  (request: not in your contacts)" if m.request else ""
        print(f"{when}  {m.sender_name}  [{m.sender_fingerprint}]{tag}\n    {m.text}")


def cmd_send(args: argparse.Namespace) -> int:
    api = running_node(args)
    if api is None:
        return asyncio.run(_send(args))
    with api:
        sent = api.send(args.address, args.text)
    print(f"sent {sent.id}")
    return 0


def cmd_inbox(args: argparse.Namespace) -> int:
    api = running_node(args)
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
        async with client_node(args) as node:
            key = await send_dm(account, node, args.address, args.text)
        print(f"sent {key.hex()}")
    finally:
        account.close()
    return 0


async def _inbox(args: argparse.Namespace) -> int:
    account = Account.open(args.data_dir, read_passphrase())
    try:
        async with client_node(args) as node:
            new = await sync_inbox(account, node)
        messages = inbox(account)
    finally:
        account.close()
    print_inbox(len(new), messages, args.json)
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
    config = ServiceConfig(listen_host=host, listen_port=port, bootstrap=tuple(peers), sync_interval=args.sync_interval)
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


async def _relay(args: argparse.Namespace) -> int:
    host, port = parse_hostport(args.listen)
    args.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(args.data_dir / RELAY_DB)
    config = NodeConfig(ksize=args.ksize, purge_interval=args.purge_interval)
    node = KomradeNode(store, config=config, state_dir=args.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        bound = await node.listen(port, host)
        print(f"listening on {bound[0]}:{bound[1]}", flush=True)
        (args.data_dir / "relay.addr").write_text(f"{bound[0]}:{bound[1]}\n")
        joined = await node.bootstrap(bootstrap_peers(args))
        log.info("joined with %d peers known", len(joined))
        await stop.wait()
        log.info("stopping")
    finally:
        await node.stop_async()
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

    p = sub.add_parser("init", help="create your identity")
    p.add_argument("--name", required=True)
    p.add_argument("--width", type=int, default=8, help="slot width in bits (0..32); see README")
    p = sub.add_parser("address", help="print your address, fingerprint and a QR code")
    p.add_argument("--no-qr", action="store_true")
    p = sub.add_parser("contact", help="manage contacts")
    csub = p.add_subparsers(dest="contact_cmd", required=True)
    c = csub.add_parser("add")
    c.add_argument("address")
    c.add_argument("name")
    csub.add_parser("list")
    p = sub.add_parser("relay", help="run a relay (holds envelopes for everyone, no identity) until SIGINT/SIGTERM")
    p.add_argument("--listen", default="127.0.0.1:9475", metavar="HOST:PORT")
    p.add_argument("--ksize", type=int, default=20)
    p.add_argument("--purge-interval", type=float, default=60.0)
    net(p)
    p = sub.add_parser("node", help="run your node and its local API (for the app, send and inbox) until SIGINT/SIGTERM")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="UDP address of the node (default: 127.0.0.1 if every bootstrap peer is on loopback, else 0.0.0.0; any port)")
    p.add_argument("--api", default="127.0.0.1:0", metavar="HOST:PORT", help="loopback address of the API (default any port)")
    p.add_argument("--sync-interval", type=positive_float, default=30.0, metavar="SECONDS", help="inbox sync period (30)")
    net(p)
    p = sub.add_parser("send", help="send a direct message (through the running node, if there is one)")
    net(p)
    p.add_argument("address")
    p.add_argument("text")
    p = sub.add_parser("inbox", help="fetch and list your direct messages (through the running node, if there is one)")
    net(p)
    p.add_argument("--json", action="store_true", help="print exactly one JSON document")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.data_dir = args.data_dir or default_data_dir()
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    if args.command == "relay":
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands = {
        "init": cmd_init,
        "address": cmd_address,
        "contact": cmd_contact,
        "send": cmd_send,
        "inbox": cmd_inbox,
        "node": lambda a: asyncio.run(_node(a)),
        "relay": lambda a: asyncio.run(_relay(a)),
    }
    try:
        return commands[args.command](args)
    except KomradeError as exc:
        print(f"komrade: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a port in use, an unreadable data directory: the system's words are clear enough
        print(f"komrade: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
