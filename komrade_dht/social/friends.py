"""Friends: the people you share your circle with, and the circle keys that let them read your friends' posts.

- Every author has a **circle key** (32 random bytes) with a version. Friends' posts and friends-only profiles are
  encrypted under it (:func:`komrade_dht.envelope.make_shared`), and appended to the circle's slot for the epoch,
  ``BLAKE2b-160("komrade/circle/v1" | circle id | epoch)`` with ``circle id = BLAKE2b-128(key)``: only holders of
  the key can even find the slot.
- Adding a friend makes them a contact (if needed) and queues your current key for them; it is sent as a sealed
  DM of content type ``circle-key`` (``{k: key, v: version, n: name, w: width}``) the next time this device is on
  the network (:func:`deliver_keys`). Their sync (:func:`komrade_dht.social.dm.sync_inbox`) hands it to
  :func:`receive_key`. Friendship is two people each adding the other: each then holds the other's key.
- Removing a friend **rotates** the key (a new random one, version + 1) and queues it for every remaining
  friend: the removed one keeps the old key (what was posted before stays readable to them) but never learns the
  new one nor the new circle slot, so nothing posted after the removal reaches them.
- A key is accepted from anyone, but only the keys of people *you* list as friends are read: someone who adds
  you does not push posts into your friends feed until you add them back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from .. import codec
from ..address import decode_address, encode_address
from ..envelope import Opened, envelope_id, seal
from ..errors import CodecError, KomradeError, NetworkError, RootKeyAbsent
from ..identity import PublicIdentity
from ..node import KomradeNode
from ..slots import MAX_TTL, MAX_WIDTH, SlotParams, slot_id
from . import devices, dm
from .account import Account

log = logging.getLogger(__name__)

KEY_CONTENT_TYPE = "circle-key"
_ME = b"me"


class NotAFriend(KomradeError):
    """The address is not one of your friends."""


@dataclass(frozen=True)
class Friend:
    """Someone you share your circle with; ``has_key``: whether they shared theirs with you (they added you)."""

    name: str
    address: str
    fingerprint: str
    has_key: bool
    key_sent: bool


def circle_id(key: bytes) -> bytes:
    """The id of the circle a key opens (what its slots are derived from)."""
    return hashlib.blake2b(key, digest_size=16, person=b"komrade/circleid").digest()


def circle_slot(key: bytes, epoch: int) -> bytes:
    """``BLAKE2b-160("komrade/circle/v1" | circle id | epoch)``: where friends' posts under ``key`` go."""
    return hashlib.blake2b(b"komrade/circle/v1" + circle_id(key) + epoch.to_bytes(4, "big"), digest_size=20).digest()


# -- my circle ---------------------------------------------------------------------------------------------------
def my_circle(account: Account) -> dict[str, Any]:
    """``{version, key, keys: [[version, key, since]]}``: my current circle key (made on first use) and every
    earlier one still within the longest post lifetime (to read my own older posts)."""
    state = account.data.get("circle_out", _ME)
    if state is None:
        if not account.has_root:
            raise RootKeyAbsent("your circle key has not reached this device yet: your first device makes it and "
                                "sends it with its next sync (post or read a feed there once)")
        key = os.urandom(32)
        state = {"version": 1, "key": key, "keys": [[1, key, int(time.time())]]}
        account.data.put("circle_out", _ME, state)
        share_circle(account, state)
    return state


#: What the root signs when it hands its circle keys to its other devices.
_CIRCLE_SYNC = b"komrade/circle-sync/v1"


def share_circle(account: Account, state: dict[str, Any] | None = None) -> None:
    """Queue my circle keys (current and earlier, signed by the root key) for my other devices, so a paired device
    posts to friends and reads my friends posts: at creation, at each rotation, and for a newly paired device.
    Only the root device makes or rotates the circle, so only it shares it; nothing before it is made."""
    state = state or account.data.get("circle_out", _ME)
    if not account.has_root or state is None:
        return
    payload = codec.pack({"v": state["version"], "keys": state["keys"]})
    account.note_for_devices({"k": "circle", "p": payload, "s": account.identity.sign(_CIRCLE_SYNC + payload)})


def receive_circle(account: Account, payload: bytes, signature: bytes) -> None:
    """A paired device takes its identity's circle keys: signed by the root key, and newer than what it holds
    (ValueError otherwise: the device-sync receiver logs and drops it)."""
    if not PublicIdentity(account.identity.verify_key).verify(_CIRCLE_SYNC + payload, signature):
        raise ValueError("circle keys not signed by this identity's root key")
    obj = codec.unpack(payload, max_len=4096, max_depth=3)
    keys = obj.get("keys") if isinstance(obj, dict) else None
    if not (isinstance(obj.get("v"), int) and isinstance(keys, list) and keys and all(
            isinstance(k, list) and len(k) == 3 and isinstance(k[0], int) and isinstance(k[1], bytes)
            and len(k[1]) == 32 and isinstance(k[2], int) for k in keys)):
        raise ValueError("malformed circle keys")
    current = [k for k in keys if k[0] == obj["v"]]
    if len(current) != 1:
        raise ValueError("the circle keys lack the current one")
    held = account.data.get("circle_out", _ME)
    if held is not None and held["version"] >= obj["v"]:
        return
    account.data.put("circle_out", _ME, {"version": obj["v"], "key": current[0][1], "keys": keys})


def _rotate(account: Account) -> dict[str, Any]:
    state = my_circle(account)
    now = int(time.time())
    key = os.urandom(32)
    version = state["version"] + 1
    keys = [k for k in state["keys"] if k[2] > now - MAX_TTL] + [[version, key, now]]
    state = {"version": version, "key": key, "keys": keys}
    account.data.put("circle_out", _ME, state)
    share_circle(account, state)
    return state


# -- friends -----------------------------------------------------------------------------------------------------
def add_friend(account: Account, address_text: str, name: str | None = None) -> Friend:
    """Make ``address_text`` a friend (and a contact if it is not one): my circle key is queued for them."""
    address = decode_address(address_text)
    if address.verify_key == account.identity.verify_key:
        raise KomradeError("you cannot add yourself as a friend")
    contact = account.contact(address.verify_key)
    if contact is None:
        contact = account.add_contact(address.text, name or "friend " + address.public.fingerprint()[:11])
    my_circle(account)
    account.data.put("friend", address.verify_key, {"address": address.text, "since": int(time.time())})
    account.data.put("key_pending", address.verify_key, {"address": address.text})
    return _friend(account, address.verify_key)


def remove_friend(account: Account, address_text: str) -> Friend:
    """Stop sharing my circle with them: the key is rotated and the new one queued for every remaining friend.
    KomradeError if they are not a friend."""
    address = decode_address(address_text)
    friend = _friend(account, address.verify_key) if account.data.has("friend", address.verify_key) else None
    if friend is None:
        raise NotAFriend("not a friend: nothing to remove")
    account.data.delete("friend", address.verify_key)
    account.data.delete("key_pending", address.verify_key)
    _rotate(account)
    for record in account.data.all("friend"):
        key = decode_address(record["address"]).verify_key
        account.data.put("key_pending", key, {"address": record["address"]})
    return friend


def is_friend(account: Account, verify_key: bytes) -> bool:
    return account.data.has("friend", verify_key)


def friends(account: Account) -> list[Friend]:
    """Everyone I share my circle with, by name."""
    out = [_friend(account, decode_address(r["address"]).verify_key) for r in account.data.all("friend")]
    return sorted(out, key=lambda f: f.name.lower())


def _friend(account: Account, verify_key: bytes) -> Friend:
    record = account.data.get("friend", verify_key) or {}
    contact = account.contact(verify_key)
    address = record.get("address") or (contact.address if contact else "")
    return Friend(
        name=contact.name if contact else "",
        address=address,
        fingerprint=decode_address(address).public.fingerprint() if address else "",
        has_key=bool(account.data.get("circle_in", verify_key)),
        key_sent=not account.data.has("key_pending", verify_key),
    )


# -- sending and receiving keys ----------------------------------------------------------------------------------
async def deliver_keys(
    account: Account, node: KomradeNode, *, params: SlotParams = SlotParams(), now: float | None = None
) -> int:
    """Send my current circle key to every friend it is queued for (sealed DMs of type ``circle-key``); returns
    how many were sent. A friend no holder acknowledged stays queued (logged), the others are done."""
    pending = account.data.all("key_pending")
    if not pending:
        return 0
    state = my_circle(account)
    now = time.time() if now is None else now
    body = codec.pack({"k": state["key"], "v": state["version"], "n": account.name[:64], "w": account.width})

    async def send(address_text: str) -> bool:
        recipient = decode_address(address_text)
        slot = slot_id(recipient.verify_key, recipient.width, params.epoch(now))
        to_keys = await devices.recipient_keys(account, node, recipient.public, now=now)  # each of their devices
        data = await asyncio.to_thread(seal, account.identity, recipient.public, body, content_type=KEY_CONTENT_TYPE,
                                       ttl=MAX_TTL, now=now, pow=node.config.pow, slot=slot, to_keys=to_keys)
        try:
            await node.send(slot, data)
        except NetworkError as exc:
            log.warning("circle key not delivered (kept queued): %s", exc)
            return False
        account.data.delete("key_pending", recipient.verify_key)
        log.info("circle key v%d sent (%s)", state["version"], envelope_id(data).hex()[:8])
        return True

    results = await asyncio.gather(*(send(r["address"]) for r in pending))
    return sum(results)


def receive_key(account: Account, opened: Opened, slot: bytes, now: float) -> None:
    """A ``circle-key`` envelope found by a sync: keep the sender's key (and its version); later versions replace
    nothing, older ones are kept too (they still open older posts)."""
    try:
        obj = codec.unpack(opened.body, max_len=512, max_depth=1)
    except CodecError:
        log.warning("dropped a malformed circle key")
        return
    if not (isinstance(obj, dict) and isinstance(obj.get("k"), bytes) and len(obj["k"]) == 32
            and isinstance(obj.get("v"), int) and not isinstance(obj.get("v"), bool) and 0 < obj["v"] < 2**31
            and isinstance(obj.get("n"), str) and isinstance(obj.get("w"), int) and 0 <= obj["w"] <= MAX_WIDTH):
        log.warning("dropped a malformed circle key")
        return
    sender = opened.sender.verify_key
    record = account.data.get("circle_in", sender) or {"keys": [], "name": obj["n"][:64]}
    keys = [k for k in record["keys"] if k[2] > now - MAX_TTL and k[0] != obj["v"]]
    keys.append([obj["v"], obj["k"], int(opened.created)])
    record = {"keys": sorted(keys), "name": obj["n"][:64], "address": encode_address(sender, obj["w"])}
    account.data.put("circle_in", sender, record)


dm.RECEIVERS[KEY_CONTENT_TYPE] = receive_key


def my_circle_keys(account: Account) -> list[bytes]:
    """My circle keys, current and earlier, to read my own friends posts and profile: none yet on a paired device
    its first device has not sent them to (it reads its friends' circles all the same)."""
    if not account.has_root and not account.data.has("circle_out", _ME):
        return []
    return [k[1] for k in my_circle(account)["keys"]]


def circles_to_read(account: Account) -> list[tuple[bytes | None, bytes]]:
    """``[(author key or None for mine, circle key)]``: every circle key of every friend who shared one (and whom
    I list as a friend), and my own keys."""
    out: list[tuple[bytes | None, bytes]] = [(None, key) for key in my_circle_keys(account)]
    for record in account.data.all("circle_in"):
        author = decode_address(record["address"]).verify_key
        if is_friend(account, author):
            out.extend((author, k[1]) for k in record["keys"])
    return out
