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

from .. import codec
from ..address import decode_address, encode_address
from ..envelope import TrialDecryptor, envelope_id, max_body, seal
from ..errors import CodecError, EnvelopeError, KomradeError
from ..node import KomradeNode
from ..slots import MAX_TTL, MAX_WIDTH, SlotParams, slot_id
from .account import Account

log = logging.getLogger(__name__)

#: How many epochs a sync reads at once: enough to hide latency, few enough not to overflow a socket buffer.
SYNC_PARALLEL_EPOCHS = 4

#: Longest DM text in UTF-8 bytes when the sender's name is short ASCII (a long name leaves a little less).
MAX_TEXT_BYTES = max_body("dm") - 32


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
    data = await asyncio.to_thread(
        seal, account.identity, recipient.public, body, content_type="dm", now=now, pow=node.config.pow, **kwargs
    )
    slot = slot_id(recipient.verify_key, recipient.width, params.epoch(now))
    acks = await node.publish(slot, data)
    key = envelope_id(data)
    account.data.put("sent", key, {"id": key.hex(), "to": recipient.text, "text": text, "at": int(now), "acks": acks})
    log.info("DM published, %d holders acknowledged", acks)
    return key


async def sync_inbox(
    account: Account, node: KomradeNode, *, params: SlotParams = SlotParams(), now: float | None = None
) -> list[Message]:
    """Pull our slots for every epoch since the last sync; returns the messages that are new."""
    now = time.time() if now is None else now
    state = account.data.get("state", b"sync") or {}
    # From the last sync, or for a first sync from when the identity was made (a restored one: 30 days back),
    # with one epoch of overlap for clock skew.
    since = state.get("last_sync", max(account.created, now - MAX_TTL)) - params.epoch_seconds
    seen = {bytes.fromhex(r["id"]) for r in account.data.all("seen")}
    decryptor = TrialDecryptor(account.identity)
    new: list[Message] = []
    slots = [slot_id(account.identity.verify_key, account.width, e) for e in params.epochs_since(since, now)]
    limit = asyncio.Semaphore(SYNC_PARALLEL_EPOCHS)

    async def fetch(slot: bytes) -> list[bytes]:
        async with limit:
            return await node.fetch_slot(slot, seen)

    fetched = await asyncio.gather(*(fetch(slot) for slot in slots))
    slot_of = {envelope_id(data): slot for slot, batch in zip(slots, fetched) for data in batch}
    for data in (blob for batch in fetched for blob in batch):
        key = envelope_id(data)
        if key in seen:
            continue
        seen.add(key)
        try:
            opened = decryptor.open(data, now)
        except EnvelopeError as exc:
            log.warning("dropped an envelope addressed to us: %s", exc)
            opened = None
        account.data.put("seen", key, {"id": key.hex(), "exp": int(now) + MAX_TTL})
        if opened is None or opened.content_type != "dm":
            continue
        try:
            name, width, text = decode_dm(opened.body)
        except EnvelopeError as exc:
            log.warning("dropped a malformed DM: %s", exc)
            continue
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
        )
        account.data.put("message", key, asdict(message))
        account.data.put("burn", key, {"secret": opened.burn_secret, "slot": slot_of[key]})
        new.append(message)
    account.data.put("state", b"sync", {"last_sync": int(now)})
    _forget_old_seen(account, now)
    return sorted(new, key=lambda m: m.sent_at)


def _forget_old_seen(account: Account, now: float) -> None:
    for record in account.data.all("seen"):
        if record["exp"] < now:
            account.data.delete("seen", bytes.fromhex(record["id"]))


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
    return deleted


def _message_key(message_id: str) -> bytes:
    try:
        key = bytes.fromhex(message_id)
    except ValueError:
        key = b""
    if len(key) != 20:
        raise KomradeError(f"not a message id: {message_id!r} (40 hex characters)")
    return key
