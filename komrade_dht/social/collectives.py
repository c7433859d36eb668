"""Collectives on the network: the operation log of :mod:`komrade_dht.collective`, encrypted under a group key.

**Where the log lives.** Every operation (found, join, vouch, propose, vote, result, rekey) is the body of a
shared-key envelope (content type ``collective-op``) under the current **group key**, appended to the key's slot
``BLAKE2b-160("komrade/collective/v1" | BLAKE2b-128(key))``: only key holders can compute the slot, holders of the
slot see padded ciphertext. The envelope's own signature is by a fresh one-off key every time (the operation
inside carries the signature that counts, or a ring signature for an anonymous vote), so the envelope says
nothing of which member wrote it, even to members. Envelopes leave through Dandelion stems.

Every member reads the slots of every group key it holds, keeps every operation on the device, and replays them
(:func:`komrade_dht.collective.replay`): the same state on every member, whatever the order of arrival.

**Founding**: the founder makes the founding operation (its hash is the collective's id), a random group key, and
seals ``collective-key`` DMs to the other founding members (keys, founding operation, members' addresses).

**Joining**: the newcomer signs a ``join`` operation (parents: the founding operation, whose hash is the id they
were given; its note is the newcomer's address, so members can later seal the key to them) and sends it in a
sealed ``collective-join`` DM to a member it knows, which appends it to the log at its next sync. Members vouch
(:func:`vouch`, signed: accountable inside the group). When the vouches reach the constitution's quorum, the
replay admits the newcomer, and each member who vouched seals every group key (and the founding op and the
addresses) to them at its next sync.

**Proposals** to amend the constitution or remove a member are put to anonymous votes (ring = the roster at the
proposal). **A removal that passes** moves the collective to a new key epoch: the first member to sync afterwards
makes a new random key, announces its id with a ``rekey`` operation (under the old key) and seals the key to every
remaining member; from then on operations go to the new key's slot, which the removed member can neither compute
nor open. Two members rekeying at once: the first ``rekey`` in the replay order wins on every member, the other
key is simply never used for writing.

**What it reveals.** Holders: slot keys, sizes, times. Members: the log (who founded, joined, vouched, proposed,
closed; how many voted what, not who), members' addresses. The removed member keeps what it read before.

**Limits.** An operation must fit one envelope (~850 bytes): a founding roster of at most 16 members, votes over
rings of at most 16 (collective.py handles larger groups by sub-rings; this layer does not split operations yet),
so a collective votes while it has at most 16 members. Keys and addresses go in as many sealed DMs as they need.
Envelopes live at most 30 days: the log on the network fades after that and members rely on their device copy
(a newcomer admitted later receives only what is still in the slots; republishing the log is not done yet).

**Group posts** (:func:`post`, :func:`read_posts`): shared envelopes under the current group key, signed by
their author (accountable to members), in ``BLAKE2b-160("komrade/collective-posts/v1" | BLAKE2b-128(key) |
epoch)``; a removed member cannot find or open those posted after the rotation.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from .. import codec, collective
from .. import envelope as env
from ..address import decode_address, encode_address
from ..collective import Constitution, State
from ..errors import CodecError, CollectiveError, EnvelopeError, KomradeError
from ..identity import Identity
from ..node import KomradeNode
from ..slots import MAX_TTL, SlotParams, slot_id
from . import devices, dm
from .account import Account

log = logging.getLogger(__name__)

OP_TYPE = "collective-op"
KEY_TYPE = "collective-key"
JOIN_TYPE = "collective-join"


def key_id(key: bytes) -> bytes:
    """The 32-byte id of a group key, as a ``rekey`` operation announces it."""
    return hashlib.blake2b(key, digest_size=32, person=b"komrade/coll-key").digest()


def group_slot(key: bytes) -> bytes:
    """``BLAKE2b-160("komrade/collective/v1" | BLAKE2b-128(key))``."""
    inner = hashlib.blake2b(key, digest_size=16, person=b"komrade/coll-id").digest()
    return hashlib.blake2b(b"komrade/collective/v1" + inner, digest_size=20).digest()


def _cid(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise KomradeError(f"not a collective id: {text!r} (64 hex characters)")
    return raw


def _hash_arg(text: str, what: str, candidates: list[bytes]) -> bytes:
    """A full hash or a unique hex prefix (at least 8 characters) among ``candidates``."""
    text = text.strip().lower()
    if len(text) < 8 or any(c not in "0123456789abcdef" for c in text):
        raise KomradeError(f"not a {what} id: {text!r} (hex, at least 8 characters)")
    found = [c for c in candidates if c.hex().startswith(text)]
    if len(found) != 1:
        raise KomradeError(f"no {what} {text}" if not found else f"{text} names several {what}s: give more characters")
    return found[0]


@dataclass(frozen=True)
class Member:
    key: str
    name: str
    fingerprint: str


def _record(account: Account, cid: bytes) -> dict[str, Any]:
    record = account.data.get("collective", cid)
    if record is None:
        raise KomradeError(f"you are in no collective {cid.hex()} (found one, or ask a member to join)")
    return record


def _save(account: Account, record: dict[str, Any]) -> None:
    account.data.put("collective", record["id"], record)


def _add_ops(record: dict[str, Any], ops: list[bytes]) -> int:
    have = {collective.op_hash(o) for o in record["ops"]}
    added = 0
    for op in ops:
        h = collective.op_hash(op)
        if h not in have:
            have.add(h)
            record["ops"].append(op)
            added += 1
    return added


def _keys(record: dict[str, Any]) -> dict[bytes, bytes]:
    return {k_id: k for k_id, k in record["keys"]}


def _write_key(record: dict[str, Any], state: State) -> bytes | None:
    keys = _keys(record)
    if state.key_epoch == 0:
        return keys.get(record["k0"])
    if state.key_id is not None:
        return keys.get(state.key_id)
    return None


async def _append(node: KomradeNode, key: bytes, op: bytes, now: float) -> int:
    slot = group_slot(key)
    try:
        data = await asyncio.to_thread(env.make_shared, Identity.generate(), key, op, content_type=OP_TYPE,
                                       ttl=MAX_TTL, now=now, pow=node.config.pow, slot=slot)
    except EnvelopeError:
        raise KomradeError("this operation is too large for one envelope (a roster or ring too large for now)") \
            from None
    return await node.send(slot, data)


async def _seal_keys(account: Account, node: KomradeNode, record: dict[str, Any], to: bytes,
                     params: SlotParams, now: float) -> bool:
    address_text = record["addresses"].get(to.hex())
    if address_text is None:
        log.warning("no address for member %s: cannot seal the group key to them", to.hex()[:12])
        return False
    address = decode_address(address_text)
    widths = [[decode_address(a).verify_key, decode_address(a).width] for a in record["addresses"].values()]
    to_keys = await devices.recipient_keys(account, node, address.public, now=now)  # each of their devices
    room = env.max_body(KEY_TYPE, len(to_keys))

    def pack(keys: list[Any], w: list[Any]) -> bytes:
        return codec.pack({"c": record["id"], "keys": keys, "k0": record["k0"], "w": w, "n": record["name"][:64]})

    # as many sealed messages as it takes: each carries some keys and some addresses, the receiver merges them
    bodies: list[bytes] = []
    keys: list[Any] = []
    w: list[Any] = []
    for kind, item in [("k", k) for k in record["keys"]] + [("w", x) for x in widths]:
        trial = pack(keys + [item], w) if kind == "k" else pack(keys, w + [item])
        if len(trial) > room and (keys or w):
            bodies.append(pack(keys, w))
            keys, w = [], []
        (keys if kind == "k" else w).append(item)
    bodies.append(pack(keys, w))
    slot = slot_id(address.verify_key, address.width, params.epoch(now))
    for body in bodies:
        data = await asyncio.to_thread(env.seal, account.identity, address.public, body, content_type=KEY_TYPE,
                                       ttl=MAX_TTL, now=now, pow=node.config.pow, slot=slot, to_keys=to_keys)
        await node.send(slot, data)
    return True


# -- receiving (sealed DMs found by dm.sync_inbox) ------------------------------------------------------------------
def receive_keys(account: Account, opened: env.Opened, slot: bytes, now: float) -> None:
    """A ``collective-key`` DM: merge the keys and the members' addresses (the founding operation is read from the
    founding key's slot). Keys are accepted from anyone: a key is only ever written under when it is the one whose
    slot holds the founding operation, or the one a member's ``rekey`` operation names; any other only costs reads,
    and what its slot holds goes through the replay's checks like everything else."""
    try:
        obj = codec.unpack(opened.body, max_len=4096, max_depth=4)
        if not (isinstance(obj, dict) and isinstance(obj.get("c"), bytes) and len(obj["c"]) == 32
                and isinstance(obj.get("keys"), list) and isinstance(obj.get("w"), list)
                and isinstance(obj.get("n"), str) and isinstance(obj.get("k0"), bytes)):
            raise CollectiveError("malformed collective key message")
        keys = [[bytes(i), bytes(k)] for i, k in obj["keys"] if isinstance(k, bytes) and len(k) == 32
                and key_id(k) == i]
        addresses = {vk.hex(): encode_address(vk, w) for vk, w in obj["w"]}
    except (CodecError, CollectiveError, KomradeError, TypeError, ValueError) as exc:
        log.warning("dropped a collective key: %s", exc)
        return
    record = account.data.get("collective", obj["c"]) or {
        "id": obj["c"], "name": obj["n"][:200], "keys": [], "k0": obj["k0"], "addresses": {}, "ops": [],
        "to_append": [], "keys_sent": [], "current": None}
    held = {i for i, _ in record["keys"]}
    record["keys"] += [k for k in keys if k[0] not in held]
    for vk, address in addresses.items():
        record["addresses"].setdefault(vk, address)
    _save(account, record)


def receive_join(account: Account, opened: env.Opened, slot: bytes, now: float) -> None:
    """A ``collective-join`` DM to a member: queue the newcomer's signed join operation for the log."""
    try:
        obj = codec.unpack(opened.body, max_len=4096, max_depth=2)
        if not (isinstance(obj, dict) and isinstance(obj.get("op"), bytes)):
            raise CollectiveError("malformed join request")
        op = collective.decode_op(obj["op"])
        if op.kind != "join" or op.author != opened.sender.verify_key:
            raise CollectiveError("a join request carries the sender's own join operation")
        decode_address(op.body["note"])
    except (CodecError, CollectiveError, KomradeError) as exc:
        log.warning("dropped a join request: %s", exc)
        return
    record = account.data.get("collective", op.collective)
    if record is None or not record["keys"]:
        return  # not a collective of ours
    record["to_append"].append(obj["op"])
    note = obj.get("note")
    if isinstance(note, str) and note:  # what the newcomer wrote to this member (the log does not carry it)
        record.setdefault("notes", {})[op.hash.hex()] = note[:200]
    _save(account, record)


dm.RECEIVERS[KEY_TYPE] = receive_keys
dm.RECEIVERS[JOIN_TYPE] = receive_join


# -- founding and joining -------------------------------------------------------------------------------------------
async def found_collective(
    account: Account, node: KomradeNode, name: str, members: list[str], *,
    constitution: Constitution = Constitution(), params: SlotParams = SlotParams(), now: float | None = None,
) -> State:
    """Found a collective with the founding members' ``members`` addresses (and this identity); the group key is
    sealed to each of them. CollectiveError / KomradeError before anything is sent if something is invalid."""
    now = time.time() if now is None else now
    if not isinstance(name, str) or not name.strip():
        raise KomradeError("a collective needs a name")
    addresses = {a.verify_key.hex(): a.text for a in (decode_address(m) for m in members)}
    addresses[account.identity.verify_key.hex()] = account.address.text
    op = collective.found(account.identity, name.strip(), constitution, [bytes.fromhex(k) for k in addresses],
                          int(now))
    key = os.urandom(32)
    cid = collective.op_hash(op)
    record = {"id": cid, "name": name.strip(), "keys": [[key_id(key), key]], "k0": key_id(key),
              "addresses": addresses, "ops": [op], "to_append": [], "keys_sent": [], "current": key_id(key)}
    await _append(node, key, op, now)
    _save(account, record)
    for vk in addresses:
        if vk != account.identity.verify_key.hex():
            await _seal_keys(account, node, record, bytes.fromhex(vk), params, now)
    return collective.replay(record["ops"], cid)


async def request_join(account: Account, node: KomradeNode, collective_id: str, member_address: str, *,
                       note: str = "", params: SlotParams = SlotParams(), now: float | None = None) -> str:
    """Ask to join: sign a join operation and seal it to a member you know; returns the join's id. Members then
    vouch; at quorum the key arrives in your inbox (:func:`sync_collective` picks it up)."""
    cid = _cid(collective_id)
    member = decode_address(member_address)
    now = time.time() if now is None else now
    stub = State(cid, "", Constitution(), set(), (), heads={cid}, lamport={cid: 0})
    op = collective.join(account.identity, stub, account.address.text, int(now))
    body = codec.pack({"op": op, "note": note[:200]})
    slot = slot_id(member.verify_key, member.width, params.epoch(now))
    data = await asyncio.to_thread(env.seal, account.identity, member.public, body, content_type=JOIN_TYPE,
                                   ttl=MAX_TTL, now=now, pow=node.config.pow, slot=slot)
    await node.send(slot, data)
    account.data.put("collective_join", cid, {"id": cid, "op": op, "at": int(now)})
    return collective.op_hash(op).hex()


# -- sync -----------------------------------------------------------------------------------------------------------
async def sync_collective(account: Account, node: KomradeNode, collective_id: str | bytes, *,
                          params: SlotParams = SlotParams(), now: float | None = None, inbox: bool = True) -> State:
    """Pull keys and join requests (the inbox), every slot of every key held, replay; then do what falls to this
    member: append queued join requests, rekey after a removal, seal the keys to newcomers it vouched for."""
    cid = _cid(collective_id)
    now = time.time() if now is None else now
    if inbox:
        await dm.sync_inbox(account, node, params=params, now=now)
    record = account.data.get("collective", cid)
    if record is None or not record["keys"]:
        pending = account.data.get("collective_join", cid)
        if pending is not None:
            raise KomradeError("your join request waits for the members' vouches: no group key yet")
        raise KomradeError(f"you are in no collective {cid.hex()} (found one, or ask a member to join)")
    await _read_log(account, node, record, now)
    if not any(collective.op_hash(op) == cid for op in record["ops"]):
        _save(account, record)
        if account.data.get("collective_join", cid) is not None:
            raise KomradeError("your join request waits for the members' vouches: no group key yet")
        raise KomradeError("the collective's founding operation is not readable with the keys you hold (yet)")
    state = collective.replay(record["ops"], cid)
    me = account.identity.verify_key
    if me in state.members and account.has_root:  # a paired device reads; the member's duties sign as the identity
        changed = False
        # newcomers' addresses (a join's note) for sealing keys later
        for jh, j in state.joins.items():
            op = next((o for o in record["ops"] if collective.op_hash(o) == jh), None)
            if op is not None:
                record["addresses"].setdefault(j.newcomer.hex(), collective.decode_op(op).body["note"])
        if state.key_epoch > 0 and state.key_id is None:
            old = _keys(record).get(record.get("current") or b"") or record["keys"][-1][1]
            key = os.urandom(32)
            op = collective.rekey(account.identity, state, key_id(key), int(now))
            await _append(node, old, op, now)
            record["keys"].append([key_id(key), key])
            _add_ops(record, [op])
            state = collective.replay(record["ops"], cid)
            for member in state.members - {me}:
                await _seal_keys(account, node, record, member, params, now)
            changed = True
        write = _write_key(record, state)
        if write is not None:
            record["current"] = key_id(write)
            if record["to_append"]:
                for op in record["to_append"]:
                    await _append(node, write, op, now)
                _add_ops(record, record["to_append"])
                record["to_append"] = []
                changed = True
        if changed:
            state = collective.replay(record["ops"], cid)
        for j in state.joins.values():
            if j.status == "admitted" and me in j.vouchers and j.newcomer.hex() not in record["keys_sent"]:
                if await _seal_keys(account, node, record, j.newcomer, params, now):
                    record["keys_sent"].append(j.newcomer.hex())
    _save(account, record)
    return state


async def _read_log(account: Account, node: KomradeNode, record: dict[str, Any], now: float) -> None:
    async def one(key: bytes) -> tuple[bytes, list[bytes]]:
        slot = group_slot(key)
        seen = dm._load_seen(account, slot, now)
        got = await node.read_slot(slot, set(seen))
        seen.update(got.skipped)
        ops = []
        for data in got.wanted:
            seen[env.envelope_id(data)] = int.from_bytes(data[2:6], "big")
            try:
                opened = env.open_shared(data, key, now)
            except EnvelopeError:
                continue
            if opened is not None and opened.content_type == OP_TYPE:
                ops.append(opened.body)
        dm._save_seen(account, slot, seen, now)
        return key, ops

    for key, ops in await asyncio.gather(*(one(k) for _, k in record["keys"])):
        if any(collective.op_hash(op) == record["id"] for op in ops):
            # the founding key is the one whose slot holds the founding operation (whose hash is the id): a key
            # message from someone who only knows the id cannot make this member write under a key of theirs
            record["k0"] = key_id(key)
        _add_ops(record, ops)


async def _write(account: Account, node: KomradeNode, collective_id: str | bytes,
                 build: Callable[[State], bytes], *, params: SlotParams, now: float | None, inbox: bool = True) -> State:
    """Sync (the inbox too unless ``inbox`` is False: the caller just synced it), build one operation on the state,
    append it to the group's slot, keep it."""
    now = time.time() if now is None else now
    state = await sync_collective(account, node, collective_id, params=params, now=now, inbox=inbox)
    record = _record(account, state.collective_id)
    if account.identity.verify_key not in state.members:
        raise KomradeError("you are not a member of this collective")
    key = _write_key(record, state)
    if key is None:
        raise KomradeError("the new group key has not reached you yet: sync again in a moment")
    op = build(state)
    await _append(node, key, op, now)
    _add_ops(record, [op])
    _save(account, record)
    return collective.replay(record["ops"], state.collective_id)


async def vouch(account: Account, node: KomradeNode, collective_id: str, join: str, *,
                params: SlotParams = SlotParams(), now: float | None = None, inbox: bool = True) -> State:
    """Vouch (signed) for a pending join request, named by its id or a unique prefix."""
    t = int(time.time() if now is None else now)

    def build(state: State) -> bytes:
        jh = _hash_arg(join, "join request", [h for h, j in state.joins.items() if j.status == "pending"])
        return collective.vouch(account.identity, state, jh, t)

    return await _write(account, node, collective_id, build, params=params, now=now, inbox=inbox)


async def propose_amend(account: Account, node: KomradeNode, collective_id: str, changes: dict[str, Any], *,
                        params: SlotParams = SlotParams(), now: float | None = None, inbox: bool = True) -> State:
    """Propose to change fields of the constitution (e.g. ``{"vouch_min": 3}``), put to an anonymous vote."""
    t = int(time.time() if now is None else now)
    return await _write(account, node, collective_id,
                        lambda state: collective.propose_amend(account.identity, state, changes, t),
                        params=params, now=now, inbox=inbox)


async def propose_remove(account: Account, node: KomradeNode, collective_id: str, member: str, *,
                         params: SlotParams = SlotParams(), now: float | None = None, inbox: bool = True) -> State:
    """Propose to remove a member (their address, or their key in hex or a unique prefix of it)."""
    t = int(time.time() if now is None else now)

    def build(state: State) -> bytes:
        try:
            target = decode_address(member).verify_key
        except KomradeError:
            target = _hash_arg(member, "member", sorted(state.members))
        return collective.propose_remove(account.identity, state, target, t)

    return await _write(account, node, collective_id, build, params=params, now=now, inbox=inbox)


async def vote(account: Account, node: KomradeNode, collective_id: str, proposal: str, choice: str, *,
               params: SlotParams = SlotParams(), now: float | None = None, inbox: bool = True) -> State:
    """Vote ``up`` (yes), ``down`` (no) or ``none`` (withdraw) on an open proposal, anonymously (ring = the roster at
    the proposal). A later vote replaces an earlier one."""
    t = time.time() if now is None else now
    if choice not in ("up", "down", "none"):
        raise KomradeError(f"a vote is up, down or none, not {choice!r}")

    def build(state: State) -> bytes:
        ph = _hash_arg(proposal, "proposal", [h for h, p in state.proposals.items() if p.status == "open"])
        record = account.data.get("collective_vote", ph) or {"seq": 0}
        seq = max(int(t), record["seq"] + 1)
        account.data.put("collective_vote", ph, {"seq": seq, "choice": choice})
        try:
            return collective.vote(account.identity, state, ph, choice, seq)
        except CollectiveError as exc:
            raise KomradeError(str(exc)) from None

    return await _write(account, node, collective_id, build, params=params, now=now, inbox=inbox)


def my_vote(account: Account, proposal: bytes) -> str | None:
    """This device's last vote on a proposal (``up``, ``down``, ``none``), or None."""
    record = account.data.get("collective_vote", proposal)
    return None if record is None else record.get("choice")


def members(account: Account, state: State) -> list[Member]:
    """The members, with the names this device knows them by."""
    from ..identity import PublicIdentity

    out = []
    for vk in sorted(state.members):
        contact = account.contact(vk)
        fp = PublicIdentity(vk).fingerprint()
        name = contact.name if contact else ("you" if vk == account.identity.verify_key else fp[:11])
        out.append(Member(vk.hex(), name, fp))
    return out


def collectives(account: Account) -> list[dict[str, Any]]:
    """``[{"id", "name"}]`` of the collectives this device holds a key of."""
    return sorted(({"id": r["id"].hex(), "name": r["name"]} for r in account.data.all("collective") if r["keys"]),
                  key=lambda r: r["name"].lower())


# -- group posts ----------------------------------------------------------------------------------------------------
POST_TYPE = "collective-post"


@dataclass(frozen=True)
class GroupPost:
    id: str
    author: str
    author_fingerprint: str
    text: str
    posted_at: int


def posts_slot(key: bytes, epoch: int) -> bytes:
    """``BLAKE2b-160("komrade/collective-posts/v1" | BLAKE2b-128(key) | epoch)``: the group's posts of a day."""
    inner = hashlib.blake2b(key, digest_size=16, person=b"komrade/coll-id").digest()
    return hashlib.blake2b(b"komrade/collective-posts/v1" + inner + epoch.to_bytes(4, "big"), digest_size=20).digest()


async def post(account: Account, node: KomradeNode, collective_id: str, text: str, *, ttl: int = 14 * 86400,
               params: SlotParams = SlotParams(), now: float | None = None, inbox: bool = True) -> str:
    """Post to the collective: signed by you (members see who wrote it), encrypted under the current group key, so
    a removed member reads nothing posted after the rotation. Returns the post's id."""
    if not isinstance(text, str) or not text.strip():
        raise KomradeError("the post is empty")
    now = time.time() if now is None else now
    state = await sync_collective(account, node, collective_id, params=params, now=now, inbox=inbox)
    record = _record(account, state.collective_id)
    if account.identity.verify_key not in state.members:
        raise KomradeError("you are not a member of this collective")
    key = _write_key(record, state)
    if key is None:
        raise KomradeError("the new group key has not reached you yet: sync again in a moment")
    slot = posts_slot(key, params.epoch(now))
    try:
        data = await asyncio.to_thread(env.make_shared, account.identity, key, codec.pack({"t": text}),
                                       content_type=POST_TYPE, ttl=max(1, min(MAX_TTL, ttl)), now=now,
                                       pow=node.config.pow, slot=slot)
    except EnvelopeError:
        raise KomradeError("the post is too long for one envelope (about 850 bytes of UTF-8)") from None
    await node.send(slot, data)
    opened = env.open_shared(data, key, now)
    assert opened is not None
    return opened.post_id.hex()


async def read_posts(account: Account, node: KomradeNode, collective_id: str, *, days: int = 3,
                     params: SlotParams = SlotParams(), now: float | None = None, inbox: bool = True) -> list[GroupPost]:
    """The group's posts of the last ``days`` epochs under every key this member holds, newest first; only posts
    signed by someone who is or was a member count."""
    now = time.time() if now is None else now
    state = await sync_collective(account, node, collective_id, params=params, now=now, inbox=inbox)
    record = _record(account, state.collective_id)
    ever = set(state.founders) | state.members | {j.newcomer for j in state.joins.values() if j.status == "admitted"}
    epochs = range(params.epoch(now - days * params.epoch_seconds), params.epoch(now) + 1)
    found: dict[bytes, GroupPost] = {}

    async def one(key: bytes, epoch: int) -> None:
        got = await node.read_slot(posts_slot(key, epoch))
        for data in got.wanted:
            try:
                opened = env.open_shared(data, key, now)
                if opened is None or opened.content_type != POST_TYPE or opened.author is None:
                    continue
                body = codec.unpack(opened.body, max_len=2048, max_depth=1)
            except (EnvelopeError, CodecError):
                continue
            if opened.author.verify_key not in ever or not isinstance(body, dict) or not isinstance(body.get("t"), str):
                continue
            contact = account.contact(opened.author.verify_key)
            fp = opened.author.fingerprint()
            name = contact.name if contact else ("you" if opened.author.verify_key == account.identity.verify_key
                                                 else fp[:11])
            found[opened.post_id] = GroupPost(opened.post_id.hex(), name, fp, body["t"], opened.created)

    await asyncio.gather(*(one(k, e) for _, k in record["keys"] for e in epochs))
    return sorted(found.values(), key=lambda p: (-p.posted_at, p.id))
