"""Direct messages: a sealed envelope appended to the recipient's slot; found again by trial decryption.

Sending needs only the recipient's address. Receiving reads every epoch since the last sync (at most 30
days back), downloads what is new in the slot (co-tenants' envelopes included: that is the anonymity set),
and keeps only what opens under our key with a valid signature. Messages from people who are not contacts
are marked ``request`` (as in Session) and shown with their fingerprint, never trusted by name alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable

from .. import codec
from ..address import decode_address, encode_address
from ..envelope import Opened, TrialDecryptor, envelope_id, max_body, seal
from ..errors import CodecError, EnvelopeError, KomradeError, RootKeyAbsent
from ..node import KomradeNode
from ..node.reader import ReadResult
from ..slots import MAX_TTL, MAX_WIDTH, SlotParams, slot_id
from . import devices
from .account import Account
from .tags import TagBook, next_tag

log = logging.getLogger(__name__)

#: How many epochs a sync reads at once: enough to hide latency, few enough not to overflow a socket buffer.
SYNC_PARALLEL_EPOCHS = 4

#: Longest DM text in UTF-8 bytes when the sender's name is short ASCII (a long name leaves a little less).
MAX_TEXT_BYTES = max_body("dm") - 32

#: Sealed envelopes of other content types found by a sync (e.g. "circle-key", :mod:`.friends`): content type ->
#: ``handler(account, opened, slot, now)``. A handled envelope is remembered as seen, like a DM, and is no message.
RECEIVERS: dict[str, Callable[[Account, Opened, bytes, float], None]] = {
    devices.SYNC_TYPE: devices.receive_sync,  # changes made on this identity's other devices
}


@dataclass(frozen=True)
class Message:
    """A received direct message, as the inbox lists it."""

    id: str
    sender_name: str
    sender_fingerprint: str
    sender_address: str
    sent_at: int
    received_at: int
    text: str
    request: bool
    verified: bool
    read: bool = False


def text_room(name: str, width: int, headers: int = 1, wrapped: bool = False) -> int:
    """The longest DM text (UTF-8 bytes) one envelope holds from a sender of this name and slot width to a
    recipient with ``headers`` device keys (a header each), ``wrapped`` when it is sent from a paired device (its
    certificate goes along). What a compose field counts down from."""
    content_type = devices.VIA + "dm" if wrapped else "dm"
    room = max_body(content_type, max(1, headers)) - (devices.wrap_overhead() - len(devices.VIA) if wrapped else 0)
    low, high = 0, max(0, room)
    while low < high:  # the text's length prefix grows with it: ask the encoder, do not subtract
        mid = (low + high + 1) // 2
        if len(codec.pack({"name": name[:64], "w": width, "text": "x" * mid})) <= room:
            low = mid
        else:
            high = mid - 1
    return low


def encode_dm(name: str, width: int, text: str) -> bytes:
    """The body of a DM: the sender's display name and slot width (so the reply address is exact), and the text."""
    body = codec.pack({"name": name[:64], "w": width, "text": text})
    room = max_body("dm")
    if len(body) > room:
        allowed = len(text.encode()) - (len(body) - room)
        raise KomradeError(
            f"message is {len(text.encode())} bytes of UTF-8; one DM holds at most {max(allowed, 0)} with your name"
        )
    return body


def decode_dm(body: bytes) -> tuple[str, int, str]:
    try:
        obj = codec.unpack(body, max_len=2048, max_depth=1)
    except CodecError:
        raise EnvelopeError("DM body is not a valid message") from None
    width = obj.get("w") if isinstance(obj, dict) else None
    if not (
        isinstance(obj, dict)
        and isinstance(obj.get("name"), str)
        and isinstance(obj.get("text"), str)
        and isinstance(width, int)
        and 0 <= width <= MAX_WIDTH
    ):
        raise EnvelopeError("DM body lacks a name, a slot width or text")
    return obj["name"][:64], width, obj["text"]


async def send_dm(
    account: Account,
    node: KomradeNode,
    address_text: str,
    text: str,
    *,
    params: SlotParams = SlotParams(),
    now: float | None = None,
    ttl: int | None = None,
) -> bytes:
    """Seal ``text`` to the owner of ``address_text`` and publish it into their current slot; returns its id."""
    recipient = decode_address(address_text)
    now = time.time() if now is None else now
    body = encode_dm(account.name, account.width, text)
    kwargs = {"ttl": ttl} if ttl is not None else {}
    slot = slot_id(recipient.verify_key, recipient.width, params.epoch(now))
    to_keys = await devices.recipient_keys(account, node, recipient.public, now=now)
    sender, body, content_type = devices.signer(account, body, "dm")
    room = max_body(content_type, len(to_keys))
    if len(body) > room:  # each device of theirs (and sending from a paired device) takes room from the text
        allowed = len(text.encode()) - (len(body) - room)
        raise KomradeError(f"message is {len(text.encode())} bytes of UTF-8; one DM to {len(to_keys)} devices "
                           f"holds at most {max(allowed, 0)}{' from a paired device' if not account.has_root else ''}")
    data = await asyncio.to_thread(
        seal,
        sender,
        recipient.public,
        body,
        content_type=content_type,
        now=now,
        pow=node.config.pow,
        slot=slot,
        tag=next_tag(account, recipient.public, params.epoch(now)),
        to_keys=to_keys,
        **kwargs,
    )
    acks = await node.send(slot, data)
    key = envelope_id(data)
    account.data.put("sent", key, {"id": key.hex(), "to": recipient.text, "text": text, "at": int(now), "acks": acks})
    log.info("DM published, %d holders acknowledged", acks)
    account.note_for_devices({"k": "sent", "id": key.hex(), "to": recipient.text, "text": text, "at": int(now)})
    await devices.flush(account, node, params=params, now=now)
    return key


async def sync_inbox(
    account: Account, node: KomradeNode, *, params: SlotParams = SlotParams(), now: float | None = None
) -> list[Message]:
    """Pull our slots for every epoch since the last sync; returns the messages that are new.

    Each slot is read at the cost bounded by the node's read limits; only envelopes whose recipient header opens
    under our key are downloaded whole (the rest cost a head of ~111 bytes and one X25519 each). The ids seen in a
    slot are remembered, per slot, until their envelopes expire, so the next sync skips them."""
    now = time.time() if now is None else now
    state = account.data.get("state", b"sync") or {}
    # From the last sync, or for a first sync from when the identity was made (a restored one: 30 days back),
    # with one epoch of overlap for clock skew.
    since = state.get("last_sync", max(account.created, now - MAX_TTL)) - params.epoch_seconds
    await devices.keep_list(account, node, now=now)
    await devices.flush(account, node, params=params, now=now)
    decryptor = TrialDecryptor(account.identity, [account.device])
    epochs = params.epochs_since(since, now)
    slots = [slot_id(account.identity.verify_key, account.width, e) for e in epochs]
    limit = asyncio.Semaphore(SYNC_PARALLEL_EPOCHS)
    tagged = TagBook(account, epochs)

    def ours(head: bytes) -> bool:
        # a contact's tag first (a dictionary lookup), then one trial decryption for everyone else
        return tagged.sender_of(head) is not None or decryptor.content_key(head) is not None

    async def read(slot: bytes) -> tuple[bytes, dict[bytes, int], ReadResult]:
        async with limit:
            seen = _load_seen(account, slot, now)
            return slot, seen, await node.read_slot(slot, set(seen), ours)

    new: list[Message] = []
    for slot, seen, result in await asyncio.gather(*(read(slot) for slot in slots)):
        seen.update(result.skipped)
        for data in result.wanted:
            key = envelope_id(data)
            seen[key] = int.from_bytes(data[2:6], "big")
            if not account.data.has("message", key):
                await devices.check_sender_list(account, node, decryptor, data, now)
            message = _receive(account, decryptor, key, slot, data, now)
            if message is not None:
                new.append(message)
        _save_seen(account, slot, seen, now)
    account.data.put("state", b"sync", {"last_sync": int(now)})
    _forget_expired_seen(account, now)
    return sorted(new, key=lambda m: m.sent_at)


def _receive(
    account: Account, decryptor: TrialDecryptor, key: bytes, slot: bytes, data: bytes, now: float
) -> Message | None:
    """Open one envelope that a header says is ours; the Message if it is a new, valid DM."""
    if account.data.has("message", key):
        return None
    try:
        opened = decryptor.open(data, now)
    except EnvelopeError as exc:
        log.warning("dropped an envelope addressed to us: %s", exc)
        return None
    if opened is not None:
        opened = devices.unwrap(account, opened, now)
    if opened is not None and opened.content_type in RECEIVERS:
        try:
            RECEIVERS[opened.content_type](account, opened, slot, now)
        except RootKeyAbsent as exc:  # a paired device: what needs the identity's key waits for a device with it
            log.warning("a %s envelope was left to a device with the root key: %s", opened.content_type, exc)
        return None
    if opened is None or opened.content_type != "dm":
        return None
    try:
        name, width, text = decode_dm(opened.body)
    except EnvelopeError as exc:
        log.warning("dropped a malformed DM: %s", exc)
        return None
    pending = devices.take_pending(account, key)
    if pending is not None and pending["k"] == "burn":
        return None  # another device of ours burned it before it reached this one
    contact = account.contact(opened.sender.verify_key)
    message = Message(
        id=key.hex(),
        sender_name=contact.name if contact else name,
        sender_fingerprint=opened.sender.fingerprint(),
        sender_address=encode_address(opened.sender.verify_key, width),
        sent_at=opened.created,
        received_at=int(now),
        text=text,
        request=contact is None,
        verified=bool(contact and contact.verified),
        read=bool(pending and pending["read"]),
    )
    account.data.put("message", key, asdict(message))
    account.data.put("burn", key, {"secret": opened.burn_secret, "slot": slot})
    return message


def _load_seen(account: Account, slot: bytes, now: float) -> dict[bytes, int]:
    """The ids already looked at in ``slot`` that have not expired, with their expiry."""
    record = account.data.get("seen_slot", slot) or {}
    packed = record.get("ids", b"")
    seen = {}
    for i in range(0, len(packed) - 23, 24):
        expires_at = int.from_bytes(packed[i + 20 : i + 24], "big")
        if expires_at > now:
            seen[packed[i : i + 20]] = expires_at
    return seen


def _save_seen(account: Account, slot: bytes, seen: dict[bytes, int], now: float) -> None:
    live = [(k, e) for k, e in seen.items() if e > now]
    if not live:
        account.data.delete("seen_slot", slot)
        return
    packed = b"".join(k + min(e, 2**32 - 1).to_bytes(4, "big") for k, e in live)
    account.data.put("seen_slot", slot, {"slot": slot, "ids": packed, "until": max(e for _, e in live)})


def _forget_expired_seen(account: Account, now: float) -> None:
    """Drop remembered slots whose every id has expired (and the per-envelope rows older versions kept)."""
    account.data.clear("seen")
    for record in account.data.all("seen_slot"):
        if record.get("until", 0) <= now and isinstance(record.get("slot"), bytes):
            account.data.delete("seen_slot", record["slot"])


def inbox(account: Account) -> list[Message]:
    """Every received message on this device, oldest first."""
    return sorted((Message(**r) for r in account.data.all("message")), key=lambda m: (m.sent_at, m.id))


def mark_read(account: Account, message_id: str, read: bool = True) -> Message:
    """Mark a received message as read (or unread again)."""
    key = _message_key(message_id)
    record = account.data.get("message", key)
    if record is None:
        raise KomradeError(f"no message {message_id}")
    record["read"] = read
    account.data.put("message", key, record)
    account.note_for_devices({"k": "read", "id": key.hex(), "read": read})
    return Message(**record)


async def burn(account: Account, node: KomradeNode, message_id: str) -> int:
    """Delete a received message here and ask every holder in the network to delete its envelope, proving the right
    to by revealing the burn secret sealed inside it. Returns how many network copies were deleted."""
    key = _message_key(message_id)
    proof = account.data.get("burn", key)
    if account.data.get("message", key) is None or proof is None:
        raise KomradeError(f"no message {message_id}")
    deleted = await node.burn(key, proof["secret"], [proof["slot"]])
    account.data.delete("message", key)
    account.data.delete("burn", key)
    account.data.scrub()
    account.note_for_devices({"k": "burn", "id": key.hex()})
    await devices.flush(account, node)
    return deleted


def _message_key(message_id: str) -> bytes:
    try:
        key = bytes.fromhex(message_id)
    except ValueError:
        key = b""
    if len(key) != 20:
        raise KomradeError(f"not a message id: {message_id!r} (40 hex characters)")
    return key
