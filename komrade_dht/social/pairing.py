"""Pairing a new device to an identity with a one-time code (issue 14); never a seed in a QR.

1. The first device makes a code: 16 random bytes and an expiry (:data:`CODE_TTL`, 10 minutes), shown as a QR and
   as short text (``komrade-pair:`` and 32 base32 characters). From the secret come a pairing key and two slots
   (request and reply) that nobody without the code can find or read.
2. The new device checks the expiry, refuses the code if its request slot already holds a request (the code was
   used), makes its own device seed and publishes a request sealed under the pairing key (:func:`envelope.make_shared`)
   and signed by its new device key: its device verify key and name.
3. The first device opens the first request under the key, lists the device (a new device list), and seals the
   pairing envelope to the new device's key alone, in the reply slot: the identity's key, name and slot width, and
   the device's certificate (never the root seed). Then it sends its contacts through own-devices sync.
4. The new device opens the reply with its device key, checks the certificate against the identity, and stores
   itself as a paired device (:meth:`Account.create_paired`).

What each step reveals: holders of the two slots see one shared-key envelope and one sealed envelope in slots
nobody else reads; whoever learns the code before it is used can read the request (a device key and a name) and
race the new device, so show it only to the device being paired; the reply opens only with the new device's key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import codec
from ..envelope import TrialDecryptor, make_shared, open_shared, seal
from ..errors import CodecError, DeviceError, EnvelopeError, RootKeyAbsent
from ..identity import Identity, PublicIdentity
from ..node import KomradeNode
from ..slots import MAX_WIDTH
from . import devices
from .account import Account

log = logging.getLogger(__name__)

PREFIX = "komrade-pair:"
#: How long a pairing code is valid (seconds).
CODE_TTL = 600
#: How often both sides look for the other's envelope while waiting (seconds).
POLL = 1.0
REQUEST_TYPE, REPLY_TYPE = "pair-request", "pair-reply"


@dataclass(frozen=True)
class PairingCode:
    """A one-time pairing code: ``text`` for the QR and for typing; valid until ``expires_at`` (unix seconds)."""

    secret: bytes
    expires_at: int

    @property
    def text(self) -> str:
        raw = base64.b32encode(self.secret + self.expires_at.to_bytes(4, "big")).decode().rstrip("=")
        return PREFIX + "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))

    def _derive(self, label: bytes, size: int) -> bytes:
        return hashlib.blake2b(label, key=self.secret, digest_size=size, person=b"komrade/pairing").digest()

    @property
    def key(self) -> bytes:
        return self._derive(b"key", 32)

    @property
    def request_slot(self) -> bytes:
        return self._derive(b"request slot", 20)

    @property
    def reply_slot(self) -> bytes:
        return self._derive(b"reply slot", 20)

    def check_fresh(self, now: float) -> None:
        if now >= self.expires_at:
            when = time.strftime("%H:%M UTC", time.gmtime(self.expires_at))
            raise DeviceError(f"this pairing code expired at {when}; make a new one on your first device")


def parse_code(text: str) -> PairingCode:
    """The code in ``text`` (as shown: prefix optional, dashes, spaces and case ignored); DeviceError if it is not
    one."""
    raw = text.strip() if isinstance(text, str) else ""
    if raw.lower().startswith(PREFIX):
        raw = raw[len(PREFIX):]
    raw = raw.replace("-", "").replace(" ", "").upper()
    try:
        data = base64.b32decode(raw + "=" * (-len(raw) % 8))
    except (binascii.Error, ValueError):
        data = b""
    if len(data) != 20:
        raise DeviceError("not a pairing code: it looks like komrade-pair: and 32 letters and digits (from "
                          "`komrade device pair` on your first device)")
    return PairingCode(data[:16], int.from_bytes(data[16:], "big"))


def new_code(account: Account, *, now: float | None = None) -> PairingCode:
    """A fresh one-time code on the first device (kept until used or expired)."""
    if not account.has_root:
        raise RootKeyAbsent("only a device holding the root key (the identity's first device) can pair a new one")
    if len(devices.my_devices(account)) >= devices.MAX_DEVICES:
        raise DeviceError(f"this identity already has {devices.MAX_DEVICES} devices; remove one first")
    now = time.time() if now is None else now
    code = PairingCode(os.urandom(16), int(now) + CODE_TTL)
    account.data.put("pairing", code.secret, {"expires_at": code.expires_at, "used": False})
    return code


async def _first(node: KomradeNode, slot: bytes, opener: Any, deadline: float) -> Any:
    """The first envelope of ``slot`` that ``opener`` opens (None until then), looked for until ``deadline``."""
    while True:
        for data in (await node.read_slot(slot)).wanted:
            try:
                opened = opener(data)
            except EnvelopeError:
                continue
            if opened is not None:
                return opened
        if time.time() + POLL >= deadline:
            return None
        await asyncio.sleep(POLL)


async def accept(account: Account, node: KomradeNode, code: PairingCode, *, timeout: float = CODE_TTL) -> devices.Device:
    """On the first device: wait for the new device's request under ``code``, list it and send it the pairing
    envelope; returns the new device. DeviceError if the code is not this device's, expired or already used, or
    nobody asked before it expired."""
    state = account.data.get("pairing", code.secret)
    if state is None:
        raise DeviceError("this pairing code was not made on this device")
    if state["used"]:
        raise DeviceError("this pairing code was already used; make a new one")
    code.check_fresh(time.time())
    deadline = min(code.expires_at, time.time() + timeout)

    def request(data: bytes) -> Any:
        opened = open_shared(data, code.key)
        return opened if opened is not None and opened.content_type == REQUEST_TYPE else None

    opened = await _first(node, code.request_slot, request, deadline)
    if opened is None:
        code.check_fresh(time.time())
        raise DeviceError("no device asked to pair with this code in time; make a new one and try again")
    try:
        body = codec.unpack(opened.body, max_len=512, max_depth=1)
        name = devices.clean_name(body["n"])
    except (CodecError, DeviceError, KeyError, TypeError) as exc:
        raise DeviceError(f"the pairing request is malformed: {exc}") from None
    device_key = opened.author.verify_key  # type: ignore[union-attr]
    account.data.put("pairing", code.secret, {**state, "used": True})
    cert = await devices.add_device(account, node, device_key, name)
    reply = codec.pack({"id": account.identity.verify_key, "n": account.name, "w": account.width, "c": cert})
    data = await asyncio.to_thread(seal, account.identity, PublicIdentity(device_key), reply, content_type=REPLY_TYPE,
                                   ttl=CODE_TTL, pow=node.config.pow, slot=code.reply_slot)
    await node.send(code.reply_slot, data)
    for contact in account.contacts():  # the new device learns the contacts through own-devices sync
        account.note_for_devices({"k": "contact", **contact.__dict__})
    await devices.flush(account, node)
    return next(d for d in devices.my_devices(account) if d.key == device_key.hex())


async def join(
    data_dir: Path, node: KomradeNode, code_text: str, device_name: str, passphrase: str, *,
    timeout: float = CODE_TTL, **kdf: Any,
) -> Account:
    """On the new device: pair with the identity whose first device shows ``code_text``; returns the new paired
    account (its keystore holds this device's own seed). DeviceError if the code is malformed, expired, already
    used, or the first device did not answer in time."""
    code = parse_code(code_text)
    name = devices.clean_name(device_name)
    code.check_fresh(time.time())
    if (await node.read_slot(code.request_slot)).wanted:
        raise DeviceError("this pairing code was already used by another device; make a new one on your first device")
    device = Identity.generate()
    request = codec.pack({"n": name})
    ttl = max(1, code.expires_at - int(time.time()))
    data = await asyncio.to_thread(make_shared, device, code.key, request, content_type=REQUEST_TYPE, ttl=ttl,
                                   pow=node.config.pow, slot=code.request_slot)
    await node.send(code.request_slot, data)
    opener = TrialDecryptor(device)

    def reply(data: bytes) -> Any:
        opened = opener.open(data)
        return opened if opened is not None and opened.content_type == REPLY_TYPE else None

    opened = await _first(node, code.reply_slot, reply, min(code.expires_at, time.time() + timeout) + 5)
    if opened is None:
        raise DeviceError("the first device did not answer in time: is `komrade device pair` still running there?")
    try:
        body = codec.unpack(opened.body, max_len=512, max_depth=1)
        identity = PublicIdentity(body["id"])
        width, label, cert = body["w"], body["n"], body["c"]
        if not (isinstance(width, int) and 0 <= width <= MAX_WIDTH and isinstance(label, str)):
            raise TypeError("width or name")
    except (CodecError, KeyError, TypeError, ValueError) as exc:
        raise DeviceError(f"the pairing envelope is malformed: {exc}") from None
    if opened.sender.verify_key != identity.verify_key or not isinstance(cert, bytes) or not (
        devices.check_certificate(identity.verify_key, device.verify_key, cert)
    ):
        raise DeviceError("the pairing envelope is not signed by the identity it names; pairing refused")
    account = Account.create_paired(data_dir, identity, label, width, passphrase, device.seed, **kdf)
    devices.install_certificate(account, cert)
    await devices.refresh(account, node, identity.verify_key)
    return account
