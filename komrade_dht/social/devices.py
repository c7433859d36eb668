"""One identity on several devices, with real revocation (issue 14).

- **Device keys.** A device paired to an identity has its own 32-byte seed (in its keystore, encrypted at rest):
  an Ed25519 device signing key and its X25519 conversion, the device box key. It never holds the identity's root
  seed. The device that made the identity (and any copy restored from the recovery phrase) uses the root key
  itself as its device key: such a copy can never be revoked.
- **Device list.** A signed mutable record of the identity (:mod:`komrade_dht.records`, salt ``devices``, signed by
  the root key, sequence number, republished by the root device so it does not expire) listing each device's
  verify key, name and when it was added. Senders seal to every listed device key (one recipient header each,
  :func:`komrade_dht.envelope.seal` ``to_keys``), and to the identity's own key while it has no list (old
  identities and single-device ones keep working). Removing a device publishes a new list without it: what is
  sealed after a sender saw that list does not open with the removed device's key; what it already had stays.
- **Freshness.** A sender uses its cached copy of a recipient's list if fetched in the last
  :data:`LIST_MAX_AGE` seconds, else fetches it (one record lookup); a list never rolls back to a lower sequence
  number. So a removal is seen by a sender within a minute, at its next send after that.
- **Sending as the identity from a paired device.** The envelope is sealed and signed with the device key, its
  content type prefixed ``via/`` and its body wrapped with the identity's key and a root signature over the device
  key (the device's certificate, from pairing). A recipient checks the certificate and that the identity's list
  still names the device (fetching the list first when its copy is more than a minute old; with no list anywhere,
  the certificate alone); then it treats the envelope as the identity's. So once a device is removed, what it
  sends as the identity is refused by every recipient who opens it more than a minute after the removal. What it
  received before stays readable on it; its keys open nothing sealed to the new list.
- **Own-devices sync.** See :func:`flush` and :func:`receive_sync`.
- **Not yet.** A paired device cannot do what signs as the identity: posts, profile, friends' circle keys, votes,
  events, collectives (each refuses with :class:`~komrade_dht.errors.RootKeyAbsent`, saying what to do).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Any

from .. import codec, records
from ..address import decode_address
from ..envelope import Opened, OpenedPublic, TrialDecryptor, max_body, seal
from ..errors import CodecError, DeviceError, EnvelopeError, KomradeError, NetworkError, RecordError, RootKeyAbsent
from ..identity import Identity, PublicIdentity, is_valid_verify_key
from ..node import KomradeNode
from ..slots import MAX_TTL, SlotParams, slot_id
from .account import Account, Contact

log = logging.getLogger(__name__)

SALT = b"devices"
#: How long a cached copy of someone's device list is used before a send fetches it again (seconds).
LIST_MAX_AGE = 60
#: The most devices one identity lists. Every envelope to the identity carries a recipient header (and a tag) per
#: device, 96 bytes each of at most 1024: with 4 devices a DM still holds about 300 bytes of text (about 650 with
#: one), with 8 it would hold none.
MAX_DEVICES = 4
#: Content types sent by a paired device carry this prefix; their body is wrapped (see the module text).
VIA = "via/"
MAX_DEVICE_NAME = 32
#: The root device republishes its list when it would expire within this many seconds.
REPUBLISH_BEFORE = MAX_TTL // 2
#: How often a device with the root key checks and republishes its list (seconds).
KEEP_EVERY = 3600
_CERT_DOMAIN = b"komrade/device-cert/v1"
_ME, _CHECKED = b"me", b"checked"


@dataclass(frozen=True)
class Device:
    """One device of an identity, as its list shows it. ``key`` is the verify key (hex) of its device key."""

    key: str
    name: str
    added: int
    root: bool
    this: bool = False


def certificate(root: Identity, device_key: bytes) -> bytes:
    """The root key's signature saying ``device_key`` is a device of the identity."""
    return root.sign(_CERT_DOMAIN + root.verify_key + device_key)


def check_certificate(identity_key: bytes, device_key: bytes, signature: bytes) -> bool:
    try:
        return PublicIdentity(identity_key).verify(_CERT_DOMAIN + identity_key + device_key, signature)
    except ValueError:
        return False


def clean_name(name: str) -> str:
    """A device name as lists carry it; DeviceError if it is empty or too long."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_DEVICE_NAME:
        raise DeviceError(f"a device name is 1 to {MAX_DEVICE_NAME} characters")
    return name.strip()


def _encode(entries: list[list[Any]]) -> bytes:
    return codec.pack([[bytes(k), str(n), int(a)] for k, n, a in entries])


def _decode(value: bytes) -> list[list[Any]]:
    """The entries of a device list record's value; DeviceError if it is not a valid one."""
    try:
        entries = codec.unpack(value, max_len=records.MAX_RECORD_BYTES, max_depth=2)
    except CodecError:
        raise DeviceError("the device list does not decode") from None
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_DEVICES:
        raise DeviceError(f"a device list holds 1 to {MAX_DEVICES} devices")
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], bytes)
                and is_valid_verify_key(entry[0]) and isinstance(entry[1], str) and len(entry[1]) <= MAX_DEVICE_NAME
                and isinstance(entry[2], int) and not isinstance(entry[2], bool)):
            raise DeviceError("a device list entry is not [verify key, name, added]")
    if len({e[0] for e in entries}) != len(entries):
        raise DeviceError("a device list names one device twice")
    return entries


# -- my identity's list (the root device writes it) --------------------------------------------------------------
def _my_entries(account: Account) -> list[list[Any]]:
    """My identity's device entries: the root device's own record, a paired device's cached copy, or (no list
    yet) the root key alone."""
    if account.has_root:
        state = account.data.get("devices", _ME)
        if state is not None:
            return state["entries"]
    else:
        cached = account.data.get("devlist", account.identity.verify_key)
        if cached is not None and cached["entries"]:  # None: no list was found when it was last looked for
            return cached["entries"]
    return [[account.identity.verify_key, "first device", account.created]]


def my_devices(account: Account) -> list[Device]:
    """The devices of my identity as this device knows them (``this``: the one running this code)."""
    root = account.identity.verify_key
    return [Device(k.hex(), n, a, k == root, k == account.device.verify_key) for k, n, a in _my_entries(account)]


def was_removed(account: Account) -> bool:
    """Whether this paired device's copy of its identity's list (as of its last sync) no longer names it."""
    cached = None if account.has_root else account.data.get("devlist", account.identity.verify_key)
    return bool(cached and cached["entries"]) and account.device.verify_key not in [e[0] for e in cached["entries"]]


def my_device_keys(account: Account) -> list[bytes]:
    """The verify keys of my identity's devices."""
    return [e[0] for e in _my_entries(account)]


async def publish_list(
    account: Account, node: KomradeNode, entries: list[list[Any]], *, now: float | None = None
) -> records.Record:
    """Sign and publish my identity's device list with the next sequence number (root device only)."""
    if not account.has_root:
        raise RootKeyAbsent("only a device holding the root key (the identity's first device, or a copy restored "
                            "from its recovery phrase) can change the device list")
    if len(entries) > MAX_DEVICES:
        raise DeviceError(f"an identity has at most {MAX_DEVICES} devices; remove one first")
    now = time.time() if now is None else now
    state = account.data.get("devices", _ME) or {}
    # above what the network holds too: another copy of the root key (restored from the recovery phrase) may have
    # published since
    held = await _fetch(node, account.identity.verify_key, now)
    seq = max(state.get("seq", 0), held.seq if held else 0) + 1
    data = records.make_record(account.identity, SALT, seq, _encode(entries), int(now) + MAX_TTL, now=now)
    await node.put_record(data)
    account.data.put("devices", _ME, {"seq": seq, "entries": entries, "record": data, "expires_at": int(now) + MAX_TTL})
    log.info("device list v%d published (%d devices)", seq, len(entries))
    return records.verify_record(records.key_of(data), data, now)


async def add_device(
    account: Account, node: KomradeNode, device_key: bytes, name: str, *, now: float | None = None
) -> bytes:
    """List ``device_key`` as a device of my identity and publish the list; returns its certificate."""
    name = clean_name(name)
    if not account.has_root:
        raise RootKeyAbsent("only a device holding the root key (the identity's first device) can add a device")
    entries = _my_entries(account)
    if any(e[0] == device_key for e in entries):
        raise DeviceError("this device is already listed")
    now = time.time() if now is None else now
    await publish_list(account, node, entries + [[device_key, name, int(now)]], now=now)
    from .friends import share_circle  # friends builds on devices: imported when it is needed

    share_circle(account)  # the new device posts to friends and reads my friends posts too
    return certificate(account.identity, device_key)  # type: ignore[arg-type]


async def remove_device(account: Account, node: KomradeNode, key_hex: str, *, now: float | None = None) -> Device:
    """Remove a device from my identity's list and publish the new list; returns the removed device. What is
    sealed to the identity after senders see the new list no longer opens with that device's key."""
    try:
        key = bytes.fromhex(key_hex)
    except (ValueError, TypeError):
        key = b""
    device = next((d for d in my_devices(account) if d.key == key.hex() and key), None)
    if device is None:
        raise DeviceError(f"no device {key_hex!r} in this identity's list (see `komrade device list`)")
    if device.root:
        raise DeviceError("the first device holds the root key and cannot be removed; move to a new identity instead")
    await publish_list(account, node, [e for e in _my_entries(account) if e[0] != key], now=now)
    return device


async def keep_list(account: Account, node: KomradeNode, *, now: float | None = None) -> None:
    """At each sync. A paired device refreshes its copy of its identity's list (one record lookup). A device with
    the root key, once an hour: follows a newer list another copy of the root key published (one restored from the
    recovery phrase), and republishes its own (a new version well before it expires, else the same record to the
    holders, so churn does not lose it). An identity made here that never listed a device does nothing."""
    now = time.time() if now is None else now
    try:
        if not account.has_root:
            await refresh(account, node, account.identity.verify_key, now=now)
            return
        state = account.data.get("devices", _ME)
        if state is None and account.created:
            return
        checked = account.data.get("devices", _CHECKED) or {}
        if now - checked.get("at", 0) < KEEP_EVERY:
            return
        account.data.put("devices", _CHECKED, {"at": int(now)})
        held = await _fetch(node, account.identity.verify_key, now)
        if held is not None and (state is None or held.seq > state["seq"]):
            state = {"seq": held.seq, "entries": _decode(held.value), "record": held.data,
                     "expires_at": held.expires_at}
            account.data.put("devices", _ME, state)
        if state is None:
            return
        if state["expires_at"] - now < REPUBLISH_BEFORE:
            await publish_list(account, node, state["entries"], now=now)
        else:
            await node.put_record(state["record"])
    except (NetworkError, RecordError, DeviceError) as exc:
        log.warning("device list not kept this time: %s", exc)


# -- other identities' lists (what senders seal to) --------------------------------------------------------------
async def _fetch(node: KomradeNode, identity_key: bytes, now: float) -> records.Record | None:
    key = records.record_key(identity_key, SALT)
    data = await node.get_record(key)
    return records.verify_record(key, data, now) if data is not None else None


async def refresh(account: Account, node: KomradeNode, identity_key: bytes, *, now: float | None = None) -> None:
    """Fetch ``identity_key``'s device list into this device's cache (never rolling back to an older version)."""
    now = time.time() if now is None else now
    cached = account.data.get("devlist", identity_key)
    try:
        record = await _fetch(node, identity_key, now)
        entries = _decode(record.value) if record is not None else None
    except (NetworkError, RecordError, DeviceError) as exc:
        log.warning("a device list could not be fetched: %s", exc)
        return
    if record is None or (cached is not None and cached["seq"] >= record.seq):
        if cached is not None:
            account.data.put("devlist", identity_key, {**cached, "at": int(now)})
        else:
            account.data.put("devlist", identity_key, {"seq": -1, "entries": None, "expires_at": 0, "at": int(now)})
        return
    account.data.put("devlist", identity_key, {"seq": record.seq, "entries": entries,
                                               "expires_at": record.expires_at, "at": int(now)})


def _listed(account: Account, identity_key: bytes, now: float) -> list[bytes] | None:
    """The device keys of ``identity_key``'s list as cached here, or None if none is known (or it expired)."""
    if identity_key == account.identity.verify_key:
        return my_device_keys(account)
    cached = account.data.get("devlist", identity_key)
    if cached is None or not cached["entries"] or cached["expires_at"] <= now:
        return None
    return [e[0] for e in cached["entries"]]


async def recipient_keys(
    account: Account, node: KomradeNode, recipient: PublicIdentity, *, now: float | None = None
) -> list[bytes]:
    """The X25519 keys to seal to ``recipient``: each listed device's, or the identity's own if it lists none."""
    now = time.time() if now is None else now
    if recipient.verify_key != account.identity.verify_key:
        cached = account.data.get("devlist", recipient.verify_key)
        if cached is None or now - cached["at"] > LIST_MAX_AGE:
            await refresh(account, node, recipient.verify_key, now=now)
    keys = _listed(account, recipient.verify_key, now) or [recipient.verify_key]
    return [PublicIdentity(k).box_public_key for k in keys]


# -- sending and receiving as the identity -----------------------------------------------------------------------
def signer(account: Account, body: bytes, content_type: str) -> tuple[Identity, bytes, str]:
    """``(sender, body, content type)`` to :func:`komrade_dht.envelope.seal` with, from my identity: the root key
    as is, or a paired device's key with the body wrapped in its certificate and the content type prefixed
    ``via/``. (Reads this device's data: call it on the event loop's thread, then seal in a worker.)"""
    if account.has_root:
        return account.identity, body, content_type  # type: ignore[return-value]
    cert = account.data.get("device_cert", _ME)
    if cert is None:
        raise DeviceError("this device has no certificate from its identity yet: pair it again")
    if was_removed(account):
        raise DeviceError("this device was removed from its identity's device list: it no longer sends as it "
                          "(pair it again from the first device to use it)")
    wrapped = codec.pack({"as": account.identity.verify_key, "c": cert["signature"], "b": body})
    return account.device, wrapped, VIA + content_type


async def check_sender_list(
    account: Account, node: KomradeNode, decryptor: TrialDecryptor, data: bytes, now: float
) -> None:
    """Before a sync takes an envelope a paired device sent as its identity: fetch that identity's list if this
    device's copy is more than a minute old, so :func:`unwrap` refuses a device removed since."""
    try:
        opened = decryptor.open(data, now)
    except EnvelopeError:
        return
    if opened is not None and opened.content_type.startswith(VIA):
        await fresh_list_for(account, node, opened.body, now)


async def fresh_list_for(account: Account, node: KomradeNode, wrapped: bytes, now: float) -> None:
    """Fetch the device list of the identity a device-wrapped body claims, if this device's copy is more than a
    minute old (so a device removed since is refused); nothing for our own identity or a malformed wrapper."""
    obj = _wrapper(wrapped)
    claimed = obj["as"] if obj is not None else None
    if claimed is None or not is_valid_verify_key(claimed) or claimed == account.identity.verify_key:
        return
    cached = account.data.get("devlist", claimed)
    if cached is None or now - cached["at"] > LIST_MAX_AGE:
        await refresh(account, node, claimed, now=now)


def _wrapper(body: bytes) -> dict[str, bytes] | None:
    """The fields of a body a paired device wrapped (:func:`signer`), or None if malformed."""
    try:
        obj = codec.unpack(body, max_len=max(len(body), 1), max_depth=1)
    except CodecError:
        return None
    if not (isinstance(obj, dict) and isinstance(obj.get("as"), bytes) and isinstance(obj.get("c"), bytes)
            and isinstance(obj.get("b"), bytes)):
        return None
    return obj


def _as_identity(account: Account, device_key: bytes, body: bytes, now: float) -> tuple[bytes, bytes] | None:
    """``(identity key, inner body)`` of a body the device ``device_key`` wrapped, or None (logged) if its
    certificate does not check or the identity's list (as cached here) no longer names the device."""
    obj = _wrapper(body)
    if obj is None:
        log.warning("dropped a device envelope with a malformed wrapper")
        return None
    if not check_certificate(obj["as"], device_key, obj["c"]):
        log.warning("dropped a device envelope whose certificate does not check")
        return None
    listed = _listed(account, obj["as"], now)
    if listed is not None and device_key not in listed:
        log.warning("dropped an envelope from a device its identity has removed")
        return None
    return obj["as"], obj["b"]


def unwrap(account: Account, opened: Opened, now: float) -> Opened | None:
    """An envelope a paired device sent, as its identity's (sender and content type restored), or None if its
    certificate does not check or the identity's list (as cached here) no longer names the device. Envelopes
    without the ``via/`` prefix come back unchanged."""
    if not opened.content_type.startswith(VIA):
        return opened
    got = _as_identity(account, opened.sender.verify_key, opened.body, now)
    if got is None:
        return None
    return replace(opened, content_type=opened.content_type[len(VIA):], sender=PublicIdentity(got[0]), body=got[1])


def unwrap_public(account: Account, opened: OpenedPublic, now: float) -> OpenedPublic | None:
    """The same for a public envelope (a post): signed by a paired device, shown as its identity's."""
    if not opened.content_type.startswith(VIA):
        return opened
    if opened.author is None:
        return None  # an anonymous envelope names no device
    got = _as_identity(account, opened.author.verify_key, opened.body, now)
    if got is None:
        return None
    return replace(opened, content_type=opened.content_type[len(VIA):], author=PublicIdentity(got[0]), body=got[1])


def wrap_overhead() -> int:
    """Bytes :func:`signer` adds to a body (the wrapper and the ``via/`` prefix), for capacity checks."""
    return len(codec.pack({"as": bytes(32), "c": bytes(64), "b": bytes(256)})) - 256 + 2 + len(VIA)


def install_certificate(account: Account, signature: bytes) -> None:
    """Keep this paired device's certificate (the root key's signature over its device key, from pairing);
    DeviceError if it does not check."""
    if account.has_root:
        raise DeviceError("this device holds the root key and needs no certificate")
    if not check_certificate(account.identity.verify_key, account.device.verify_key, signature):
        raise DeviceError("the device certificate does not check against this identity")
    account.data.put("device_cert", _ME, {"signature": signature})


# -- own-devices sync --------------------------------------------------------------------------------------------
#
# A change made on one device (a DM sent, a read mark, a burn, a contact added, renamed, verified or removed) is
# queued (Account.note_for_devices) and sent by the next send or sync as a sealed envelope of content type
# ``device-sync`` to the identity's own slot, addressed to every other listed device. A receiving device applies it
# only if it comes from its own identity (the root key, or a device its list still names).

SYNC_TYPE = "device-sync"


async def flush(
    account: Account, node: KomradeNode, *, params: SlotParams = SlotParams(), now: float | None = None
) -> int:
    """Send the queued changes to this identity's other devices; returns how many were sent. With no other device
    the queue is dropped; a change no holder acknowledged stays queued for the next time."""
    queued = sorted(account.data.all("devsync_out"), key=lambda r: r["at"])
    if not queued:
        return 0
    others = [k for k in my_device_keys(account) if k != account.device.verify_key]
    if not others or was_removed(account):  # alone, or removed: nobody to tell
        account.data.clear("devsync_out")
        return 0
    now = time.time() if now is None else now
    me = account.identity.public
    slot = slot_id(me.verify_key, account.width, params.epoch(now))
    keys = [PublicIdentity(k).box_public_key for k in others]
    sent = 0
    for row in queued:
        try:
            bodies = [signer(account, piece, SYNC_TYPE) for piece in _pieces(codec.pack(row["e"]), len(keys))]
            envelopes = [await asyncio.to_thread(seal, sender, me, body, content_type=content_type, ttl=MAX_TTL,
                                                 now=now, pow=node.config.pow, slot=slot, to_keys=keys)
                         for sender, body, content_type in bodies]
        except EnvelopeError as exc:
            log.warning("a change too large to send was not sent to this identity's devices: %s", exc)
        else:
            try:
                for data in envelopes:
                    await node.send(slot, data)
            except NetworkError as exc:
                log.warning("changes not sent to this identity's devices (kept queued): %s", exc)
                return sent
            sent += 1
        account.data.delete("devsync_out", row["id"])
    return sent


#: The most envelopes one change is cut into (a sent copy of the longest DM takes two with two devices, four with
#: four).
MAX_PIECES = 6
#: Room kept in each piece's envelope for the piece's own fields (31 bytes) and a paired device's wrapper (109).
_PIECE_OVERHEAD = 150


def _pieces(packed: bytes, headers: int) -> list[bytes]:
    """A change as the bodies to send: itself if it fits one envelope, else ``part`` changes to put together."""
    room = max_body(VIA + SYNC_TYPE, headers) - _PIECE_OVERHEAD
    if room < 64:
        raise EnvelopeError(f"{headers} recipient headers leave no room for a change")
    if len(packed) <= room:
        return [packed]
    chunks = [packed[i : i + room] for i in range(0, len(packed), room)]
    if len(chunks) > MAX_PIECES:
        raise EnvelopeError(f"a change of {len(packed)} bytes needs more than {MAX_PIECES} envelopes")
    group = os.urandom(8)
    return [codec.pack({"k": "part", "g": group, "i": i, "n": len(chunks), "b": c}) for i, c in enumerate(chunks)]


def _put_together(account: Account, event: dict[str, Any], now: float) -> dict[str, Any] | None:
    """Keep one ``part`` of a change; the whole change once every part is here (then forgotten), else None."""
    group, i, n, piece = event["g"], event["i"], event["n"], event["b"]
    if not (isinstance(group, bytes) and len(group) == 8 and isinstance(n, int) and 2 <= n <= MAX_PIECES
            and isinstance(i, int) and 0 <= i < n and isinstance(piece, bytes)):
        raise ValueError("a part of a change needs a group, an index below its count, and bytes")
    held = account.data.get("devsync_parts", group) or {"n": n, "parts": [], "at": int(now)}
    parts = dict(held["parts"])
    parts[i] = piece
    if len(parts) < held["n"]:
        account.data.put("devsync_parts", group, {**held, "parts": sorted(parts.items())})
        return None
    account.data.delete("devsync_parts", group)
    whole = codec.unpack(b"".join(parts[k] for k in range(held["n"])), max_len=MAX_PIECES * 1024, max_depth=1)
    if not isinstance(whole, dict) or whole.get("k") == "part":
        raise ValueError("the parts of a change do not make one")
    return whole


def receive_sync(account: Account, opened: Opened, slot: bytes, now: float) -> None:
    """A ``device-sync`` envelope found by a sync: apply the change if it comes from this identity's own devices."""
    if opened.sender.verify_key != account.identity.verify_key:
        log.warning("dropped a device-sync envelope from another identity")
        return
    try:
        event = codec.unpack(opened.body, max_len=2048, max_depth=1)
        if isinstance(event, dict) and event.get("k") == "part":
            event = _put_together(account, event, now)
        if event is not None:
            _apply(account, event, now)
    except (CodecError, KomradeError, KeyError, TypeError, ValueError) as exc:
        log.warning("dropped a malformed change from another device: %s", exc)


def _apply(account: Account, event: Any, now: float) -> None:
    kind = event["k"] if isinstance(event, dict) else None
    if kind == "sent":
        key = bytes.fromhex(event["id"])
        if len(key) != 20 or not isinstance(event["text"], str) or not isinstance(event["at"], int):
            raise ValueError("a sent copy needs an id, a text and a time")
        to = decode_address(event["to"]).text
        if not account.data.has("sent", key):
            account.data.put("sent", key, {"id": key.hex(), "to": to, "text": event["text"], "at": event["at"],
                                           "acks": 0, "device": True})
    elif kind in ("read", "burn"):
        key = bytes.fromhex(event["id"])
        message = account.data.get("message", key)
        if kind == "read" and not isinstance(event.get("read"), bool):
            raise ValueError("a read mark is true or false")
        if message is None:  # its envelope has not reached this device yet: applied when it does
            account.data.put("devsync_pending", key, {"k": kind, "read": event.get("read", False), "at": int(now)})
        elif kind == "read":
            account.data.put("message", key, {**message, "read": event["read"]})
        else:
            account.data.delete("message", key)
            account.data.delete("burn", key)
            account.data.scrub()  # burned on another device: gone from this one's files too
    elif kind == "contact":
        address = decode_address(event["address"])
        name = event["name"]
        if not isinstance(name, str) or not 0 < len(name) <= 64 or not isinstance(event["verified"], bool):
            raise ValueError("a contact needs a name of 1 to 64 characters")
        contact = Contact(name, address.text, address.public.fingerprint(), event["verified"])
        account.data.put("contact", address.verify_key, contact.__dict__)
    elif kind == "uncontact":
        account.data.delete("contact", decode_address(event["address"]).verify_key)
    elif kind == "circle":
        from .friends import receive_circle  # friends builds on devices: imported when it is needed

        if not (isinstance(event.get("p"), bytes) and isinstance(event.get("s"), bytes)):
            raise ValueError("circle keys need a payload and a signature")
        receive_circle(account, event["p"], event["s"])
    else:
        raise ValueError(f"unknown change {kind!r}")


def take_pending(account: Account, key: bytes) -> dict[str, Any] | None:
    """A read mark or burn another device made before this device received message ``key`` (then forgotten)."""
    pending = account.data.get("devsync_pending", key)
    if pending is not None:
        account.data.delete("devsync_pending", key)
    return pending
