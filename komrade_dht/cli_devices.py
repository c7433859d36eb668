"""``komrade device list|pair|join|remove`` (issue 14): one identity on several devices, wired into
:mod:`komrade_dht.cli` (which turns every KomradeError into one line on stderr and exit 1).

Names shown here come from this identity's own device list (written by its first device), and still go through
:func:`komrade_dht.text.printable`; ``--json`` output is exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, Callable

from .errors import KomradeError
from .social import Account
from .text import printable

RECOVERY_WARNING = ("this device holds the identity's root key (a full copy from the recovery phrase): it can never "
                    "be removed; to add a device you can remove later, use `komrade device pair` on your first device "
                    "and `komrade device join CODE` here")


def add_parsers(sub: Any, net: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("device", help="your identity on several devices: list, pair a new one, join, remove")
    dsub = p.add_subparsers(dest="device_cmd", required=True)
    d = dsub.add_parser("list", help="the devices of your identity (as this device last saw the list)")
    d.add_argument("--json", action="store_true", help="print exactly one JSON document")
    d = dsub.add_parser("pair", help="on your first device: show a one-time code (10 minutes) and wait for the new "
                        "device to join with it")
    net(d)
    d.add_argument("--no-qr", action="store_true", help="show the code as text only")
    d = dsub.add_parser("join", help="on a new device: join your identity with the code `komrade device pair` shows "
                        "(own keys, removable), or --recovery (a full copy that cannot be removed)")
    net(d)
    d.add_argument("code", nargs="?", help="the pairing code (komrade-pair:...)")
    d.add_argument("--name", required=True, help="this device's name (by code), or your display name (--recovery)")
    d.add_argument("--recovery", action="store_true",
                   help="join from the recovery phrase (KOMRADE_RECOVERY, else asked): a full, unremovable copy")
    d.add_argument("--width", type=int, default=8, help="--recovery: your slot width in bits, as on your first device")
    d = dsub.add_parser("remove", help="on your first device: remove a device; what is sent after senders see the new "
                        "list no longer reaches it")
    net(d)
    d.add_argument("key", help="the device's key, as `komrade device list` shows it")


def cmd_device(args: argparse.Namespace) -> int:
    if args.device_cmd == "join":
        return _join(args)
    return asyncio.run(_device(args))


async def _device(args: argparse.Namespace) -> int:
    from .cli import client_node, read_passphrase, terminal_qr
    from .social import devices, pairing

    account = Account.open(args.data_dir, read_passphrase())
    try:
        if args.device_cmd == "list":
            listed = devices.my_devices(account)
            if args.json:
                print(json.dumps({"devices": [d.__dict__ for d in listed], "root": account.has_root}))
                return 0
            for d in listed:
                flags = ("  root key" if d.root else "") + ("  (this device)" if d.this else "")
                added = time.strftime("%Y-%m-%d", time.gmtime(d.added)) if d.added else "-"
                print(f"{d.key}  {printable(d.name)}  added {added}{flags}")
            if devices.was_removed(account):
                print("this device is no longer in the list (as of its last sync): it was removed, and what is "
                      "sent to the identity now no longer reaches it")
            elif not account.has_root:
                print("this device was paired: it holds its own keys, not the root key")
            return 0
        async with client_node(args) as node:
            if args.device_cmd == "remove":
                removed = await devices.remove_device(account, node, args.key)
                print(f"removed {printable(removed.name)}: senders seal to the new list from their next send "
                      f"(within {devices.LIST_MAX_AGE} s); what it already received stays on it")
                return 0
            code = pairing.new_code(account)
            print(code.text)
            if not args.no_qr:
                sys.stdout.write(terminal_qr(code.text))
            until = time.strftime("%H:%M UTC", time.gmtime(code.expires_at))
            print(f"on the new device: komrade device join {code.text} --name NAME  (valid until {until}, once)",
                  flush=True)
            added = await pairing.accept(account, node, code)
            print(f"paired {printable(added.name)} ({added.key})")
    finally:
        account.close()
    return 0


def _join(args: argparse.Namespace) -> int:
    from .cli import cmd_init

    if args.recovery:
        if args.code:
            raise KomradeError("give a pairing code or --recovery, not both")
        args.restore = True
        code = cmd_init(args)
        print(f"warning: {RECOVERY_WARNING}", file=sys.stderr)
        return code
    if not args.code:
        raise KomradeError("give the pairing code `komrade device pair` shows on your first device (or --recovery)")
    return asyncio.run(_join_by_code(args))


async def _join_by_code(args: argparse.Namespace) -> int:
    from .cli import client_node, read_passphrase
    from .social import pairing
    from .social.account import KEYSTORE_FILE

    if (args.data_dir / KEYSTORE_FILE).exists():
        raise KomradeError(f"{args.data_dir} already holds an identity: join from another data directory (--data-dir)")
    code = pairing.parse_code(args.code)  # a typo or an expired code fails here, before the passphrase is asked
    code.check_fresh(time.time())
    passphrase = read_passphrase(confirm=True, name=args.name)
    args.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # where the node keeps what it learned
    async with client_node(args) as node:
        account = await pairing.join(args.data_dir, node, args.code, args.name, passphrase)
    try:
        print(f"joined \"{printable(account.name)}\" as device {printable(args.name)}")
        print(account.address.text)
        print(f"fingerprint: {account.fingerprint}")
        print("this device holds its own keys (not the root key): your first device can remove it")
    finally:
        account.close()
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"device": cmd_device}
