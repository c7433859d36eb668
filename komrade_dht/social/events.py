"""Events: invitations sealed to contacts, answers to the host, edits and cancellation, optionally hosted anonymously.

**An event** has a random id (16 bytes, known to the host and the invitees only), a one-off **event key pair** (an
Ed25519 identity made for this event alone) and a random 32-byte **event secret**. Its details (title, start, end,
place, optional coarsened position, description, optional image as media chunks) live in three kinds of
envelopes, none of which names the host when the event is anonymous:

* **invitation** — a sealed DM of content type ``event-invite`` to each invitee's slot, carrying the event id,
  secret, the event's public key and the details. Sent *from the event key* when the host is anonymous (the
  invitee's device sees the event key as sender, nothing else), from the host's identity otherwise (the invitee
  sees who invites them). Received through :data:`komrade_dht.social.dm.RECEIVERS` and listed apart from
  messages (:func:`invitations`).
* **update** — a shared-key envelope under the event secret, signed by the event key, appended to
  ``BLAKE2b-160("komrade/event/v1" | event id)``: the first version at creation, then every edit and the
  cancellation, each with a higher version. Invitees pull it (:func:`refresh_event`); a non-invitee cannot even
  compute the slot, and holders see only padded ciphertext.
* **answer** — going / maybe / not going, a sealed envelope from the invitee *to the event key*, appended to
  ``BLAKE2b-160("komrade/event-answers/v1" | event id)``; a newer answer (higher sequence) replaces an older one.
  The host (who holds the event key) opens them and sees who answered what (:func:`answers`); invitees see
  nothing of each other's answers.

Everything leaves through Dandelion stems (:meth:`KomradeNode.send`). All envelopes expire :data:`GRACE` after the
event ends (so an event must end within 30 days of its last update); on the devices, ended events are forgotten
the same way.

**What it reveals.** Holders: slot keys, sizes and times, never the event id, title or anyone's key. Invitees: the
details, the event key, who else... nothing (invitations are one per invitee), and, for a named host, the host.
The host: each answerer's identity and answer. **Anonymous host**: the host's key, name and address appear in no
envelope of the event (tested by grepping every byte, opened and not); what remains is the network path of the
host's envelopes (stems) and anything the host writes in the details.

**Anonymous answers** (``anonymous_answers=True``, the host then sees counts only): everyone is invited at once
(at most :data:`MAX_ANONYMOUS_INVITEES`), the roster of invitees' keys is published as an update of its own
(content type ``event-roster``, signed by the event key) and each invitation names its ring id. An answer is then
an anonymous vote (:mod:`komrade_dht.votes`, roster mode, scope = the event id; going = up, not going = down,
maybe = none), sealed to the event key from a one-off key: one answer per invitee (a newer one replaces it), and
neither the host nor anyone else learns which invitee answered what.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from .. import codec, geo, media, ring, votes
from .. import envelope as env
from ..address import decode_address, encode_address
from ..errors import CodecError, EnvelopeError, KomradeError
from ..identity import Identity, PublicIdentity
from ..node import KomradeNode
from ..slots import MAX_TTL, MAX_WIDTH, SlotParams, slot_id
from . import devices, dm, pictures
from .account import Account

log = logging.getLogger(__name__)

INVITE_TYPE = "event-invite"
UPDATE_TYPE = "event"
ANSWER_TYPE = "event-answer"
ANON_ANSWER_TYPE = "event-answer-anon"
ROSTER_TYPE = "event-roster"
#: Invitees of an event with anonymous answers: the ring of a vote sealed in one envelope.
MAX_ANONYMOUS_INVITEES = 16
_VOTE_OF = {"going": "up", "not going": "down", "maybe": "none"}
ANSWERS = ("going", "maybe", "not going")
#: Envelopes and device records live this long after the event ends.
GRACE = 3600
MAX_TITLE = 100
MAX_PLACE = 100
MAX_DESCRIPTION = 400


def event_slot(event_id: bytes) -> bytes:
    """``BLAKE2b-160("komrade/event/v1" | event id)``: the event's updates."""
    return hashlib.blake2b(b"komrade/event/v1" + event_id, digest_size=20).digest()


def answer_slot(event_id: bytes) -> bytes:
    """``BLAKE2b-160("komrade/event-answers/v1" | event id)``: answers sealed to the event key."""
    return hashlib.blake2b(b"komrade/event-answers/v1" + event_id, digest_size=20).digest()


@dataclass(frozen=True)
class Event:
    """An event as this device knows it (hosted here, or an invitation)."""

    id: str
    title: str
    starts_at: int
    ends_at: int
    place: str
    position: list[float] | None
    """``[lat, lon, level_km]``: the coarsened position and its cell size."""
    description: str
    version: int
    cancelled: bool
    hosting: bool
    anonymous_host: bool
    host_name: str | None
    host_fingerprint: str | None
    my_answer: str | None = None
    image: list[bytes] | None = field(default=None, repr=False)
    anonymous_answers: bool = False
    seen_version: int | None = None
    """An invitation: the version last shown to this device's user (:func:`mark_seen`), None if never shown; a
    higher :attr:`version` means it changed since. For the host, always the current version."""

    @property
    def unseen(self) -> str | None:
        """``"new"`` (never shown), ``"changed"`` (edited or cancelled since it was last shown) or None."""
        if self.seen_version is None:
            return "new"
        return "changed" if self.version > self.seen_version else None


@dataclass(frozen=True)
class Answer:
    name: str
    fingerprint: str
    answer: str
    at: int


@dataclass(frozen=True)
class Invitee:
    """Someone the host invited: their name in the host's contacts, else the name they gave with their answer, else
    ""; address and fingerprint; their answer as last read by :func:`answers` (None: none yet, or answers are
    anonymous)."""

    name: str
    address: str
    fingerprint: str
    answer: str | None


# -- details ------------------------------------------------------------------------------------------------------
def _details(title: str, starts_at: int, ends_at: int, place: str, position: list[float] | None, description: str,
             image: list[bytes] | None, version: int, cancelled: bool, now: float) -> dict[str, Any]:
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
        raise KomradeError(f"an event needs a title of 1 to {MAX_TITLE} characters")
    if not isinstance(place, str) or len(place) > MAX_PLACE:
        raise KomradeError(f"a place is at most {MAX_PLACE} characters")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise KomradeError(f"a description is at most {MAX_DESCRIPTION} characters")
    for t in (starts_at, ends_at):
        if isinstance(t, bool) or not isinstance(t, int) or not 0 < t < 2**32:
            raise KomradeError("times are unix seconds")
    if ends_at <= starts_at:
        raise KomradeError("an event ends after it starts")
    if ends_at <= now:
        raise KomradeError("that event has already ended")
    if ends_at + GRACE - now > MAX_TTL:
        raise KomradeError("an event must end within 30 days (what the network keeps)")
    out = {"t": title, "s": starts_at, "e": ends_at, "p": place, "pos": position, "d": description, "img": image,
           "v": version, "x": cancelled}
    if len(codec.pack(out)) > env.max_body(INVITE_TYPE) - 160:
        raise KomradeError("the event's texts are too long to fit an invitation: shorten the description")
    return out


def check_event(title: str, starts_at: int, ends_at: int, place: str = "", description: str = "",
                image: bytes | None = None, *, now: float | None = None) -> None:
    """Every check :func:`create_event` makes before anything is sent (KomradeError / ImageError saying what)."""
    _details(title, int(starts_at), int(ends_at), place, None, description, None, 1, False,
             time.time() if now is None else now)
    if image is not None:
        media.sanitize_image(image)


def _check_details(obj: Any) -> dict[str, Any]:
    ok = (isinstance(obj, dict) and set(obj) == {"t", "s", "e", "p", "pos", "d", "img", "v", "x"}
          and isinstance(obj["t"], str) and len(obj["t"]) <= MAX_TITLE and isinstance(obj["p"], str)
          and len(obj["p"]) <= MAX_PLACE and isinstance(obj["d"], str) and len(obj["d"]) <= MAX_DESCRIPTION
          and all(isinstance(obj[k], int) and not isinstance(obj[k], bool) for k in ("s", "e", "v"))
          and isinstance(obj["x"], bool))
    if ok and obj["pos"] is not None:
        ok = isinstance(obj["pos"], list) and len(obj["pos"]) == 3
        try:
            ok = ok and bool(geo.check_position(obj["pos"][0], obj["pos"][1]))
        except geo.GeoError:
            ok = False
    if ok and obj["img"] is not None:
        ok = (isinstance(obj["img"], list) and len(obj["img"]) == 2 and all(isinstance(x, bytes) for x in obj["img"])
              and len(obj["img"][0]) == 20 and len(obj["img"][1]) == 32)
    if not ok:
        raise EnvelopeError("malformed event details")
    return obj


def _ttl(details: dict[str, Any], now: float) -> int:
    return max(1, min(MAX_TTL, int(details["e"] + GRACE - now)))


def _event(record: dict[str, Any], hosting: bool) -> Event:
    d = record["details"]
    host = record.get("host")
    return Event(record["id"].hex(), d["t"], d["s"], d["e"], d["p"], d["pos"], d["d"], d["v"], d["x"], hosting,
                 record["anon"], host["name"] if host else None, host["fingerprint"] if host else None,
                 record.get("answer"), d["img"], bool(record.get("aa")),
                 d["v"] if hosting else record.get("seen"))


def _event_key(event_id: str) -> bytes:
    try:
        raw = bytes.fromhex(event_id)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise KomradeError(f"not an event id: {event_id!r} (32 hex characters)")
    return raw


# -- hosting ------------------------------------------------------------------------------------------------------
async def create_event(
    account: Account, node: KomradeNode, title: str, starts_at: int, ends_at: int, *, place: str = "",
    at: tuple[float, float] | None = None, precision_km: float = 1.0, description: str = "",
    image: bytes | None = None, anonymous: bool = False, anonymous_answers: bool = False, now: float | None = None,
) -> Event:
    """Create an event and publish its first version (to no one yet: :func:`invite` next). ``at`` is coarsened to
    ``precision_km`` before it leaves the device. KomradeError before anything is sent if something is wrong."""
    now = time.time() if now is None else now
    position = None
    if at is not None:
        level = geo.coarsening_level_km(precision_km)
        lat, lon = geo.coarsen(*geo.check_position(*at), level)
        position = [lat, lon, level]
    details = _details(title, int(starts_at), int(ends_at), place, position, description, None, 1, False, now)
    picture = await asyncio.to_thread(media.sanitize_image, image) if image is not None else None
    event_id = os.urandom(16)
    if picture is not None:
        pow_params = node.config.pow
        content = await asyncio.to_thread(
            media.encrypt_chunks, picture.data, mime=picture.mime, expires_at=details["e"] + GRACE,
            burn_root=os.urandom(media.BURN_ROOT_BYTES), now=now,
            mint=lambda b: env.mint_pow(b, pow_params, env.NO_SLOT, now))
        await node.store_blobs(content.chunks)
        details["img"] = [content.manifest.root_id, content.key]
    record = {"id": event_id, "seed": Identity.generate().seed, "secret": os.urandom(32), "anon": bool(anonymous),
              "details": details, "invitees": {}, "aa": bool(anonymous_answers)}
    await _publish_update(node, record, now)
    account.data.put("event_host", event_id, record)
    return _event(record, True)


async def _publish_update(node: KomradeNode, record: dict[str, Any], now: float) -> int:
    signer = Identity.from_seed(record["seed"])
    slot = event_slot(record["id"])
    body = codec.pack(record["details"])
    data = await asyncio.to_thread(env.make_shared, signer, record["secret"], body, content_type=UPDATE_TYPE,
                                   ttl=_ttl(record["details"], now), now=now, pow=node.config.pow, slot=slot)
    return await node.send(slot, data)


def _hosted(account: Account, event_id: str) -> dict[str, Any]:
    record = account.data.get("event_host", _event_key(event_id))
    if record is None:
        raise KomradeError(f"you host no event {event_id}")
    return record


async def invite(account: Account, node: KomradeNode, event_id: str, addresses: list[str], *,
                 params: SlotParams = SlotParams(), now: float | None = None) -> int:
    """Seal an invitation to each address (a contact's, or any valid address); returns how many were sent."""
    record = _hosted(account, event_id)
    now = time.time() if now is None else now
    if record["details"]["x"]:
        raise KomradeError("the event is cancelled")
    recipients = [decode_address(a) for a in addresses]  # every address checked before anything is sent
    signer = Identity.from_seed(record["seed"])
    sender = signer if record["anon"] else account.identity
    body = {"id": record["id"], "k": record["secret"], "ek": signer.verify_key, "d": record["details"]}
    if record.get("aa"):
        if record["invitees"]:
            raise KomradeError("answers to this event are anonymous: everyone is invited at once (the ring of the "
                               "answers is that list)")
        roster = sorted({a.verify_key for a in recipients})
        if not 1 <= len(roster) <= MAX_ANONYMOUS_INVITEES:
            raise KomradeError(f"an event with anonymous answers invites 1 to {MAX_ANONYMOUS_INVITEES} people")
        record["roster"] = roster
        slot = event_slot(record["id"])
        data = await asyncio.to_thread(env.make_shared, signer, record["secret"], codec.pack(roster),
                                       content_type=ROSTER_TYPE, ttl=_ttl(record["details"], now), now=now,
                                       pow=node.config.pow, slot=slot)
        await node.send(slot, data)
        body["ri"] = ring.ring_id(roster)
    if not record["anon"]:
        body["h"] = [account.name[:64], account.width]
    packed = codec.pack(body)

    async def one(address: Any) -> None:
        slot = slot_id(address.verify_key, address.width, params.epoch(now))
        # every device of theirs gets it (a header each); as many envelopes as the details need to fit
        to_keys = await devices.recipient_keys(account, node, address.public, now=now)
        per = next((k for k in range(len(to_keys), 1, -1) if len(packed) <= env.max_body(INVITE_TYPE, k)), 1)
        for i in range(0, len(to_keys), per):
            data = await asyncio.to_thread(env.seal, sender, address.public, packed, content_type=INVITE_TYPE,
                                           ttl=_ttl(record["details"], now), now=now, pow=node.config.pow, slot=slot,
                                           to_keys=to_keys[i : i + per])
            await node.send(slot, data)
        record["invitees"][address.verify_key.hex()] = address.text

    await asyncio.gather(*(one(a) for a in recipients))
    account.data.put("event_host", record["id"], record)
    return len(recipients)


async def edit_event(account: Account, node: KomradeNode, event_id: str, *, now: float | None = None,
                     **changes: Any) -> Event:
    """Change some of ``title, starts_at, ends_at, place, description`` and publish the new version: every invitee
    sees it at their next :func:`refresh_event`."""
    record = _hosted(account, event_id)
    now = time.time() if now is None else now
    d = record["details"]
    if d["x"]:
        raise KomradeError("the event is cancelled")
    names = {"title": "t", "starts_at": "s", "ends_at": "e", "place": "p", "description": "d"}
    unknown = set(changes) - set(names)
    if unknown:
        raise KomradeError(f"an edit changes {', '.join(names)}, not {', '.join(sorted(unknown))}")
    new = {**d, **{names[k]: v for k, v in changes.items() if v is not None}}
    record["details"] = _details(new["t"], new["s"], new["e"], new["p"], new["pos"], new["d"], new["img"],
                                 d["v"] + 1, False, now)
    await _publish_update(node, record, now)
    account.data.put("event_host", record["id"], record)
    return _event(record, True)


async def cancel_event(account: Account, node: KomradeNode, event_id: str, *, now: float | None = None) -> Event:
    """Cancel: a last version, marked cancelled, that every invitee sees at their next refresh."""
    record = _hosted(account, event_id)
    now = time.time() if now is None else now
    record["details"] = {**record["details"], "v": record["details"]["v"] + 1, "x": True}
    await _publish_update(node, record, now)
    account.data.put("event_host", record["id"], record)
    return _event(record, True)


async def answers(account: Account, node: KomradeNode, event_id: str, *, now: float | None = None) -> list[Answer]:
    """The host reads the answers (sealed to the event key): the newest of each invitee, by name."""
    record = _hosted(account, event_id)
    if record.get("aa"):
        raise KomradeError("answers to this event are anonymous: only their counts exist (answer_counts)")
    now = time.time() if now is None else now
    signer = Identity.from_seed(record["seed"])
    decryptor = env.TrialDecryptor(signer)
    got = await node.read_slot(answer_slot(record["id"]), set(), lambda head: decryptor.content_key(head) is not None)
    best: dict[bytes, tuple[int, Answer]] = dict((bytes.fromhex(k), (v[0], Answer(*v[1])))
                                                 for k, v in record.get("answers", {}).items())
    for data in got.wanted:
        try:
            opened = decryptor.open(data, now)
        except EnvelopeError:
            continue
        if opened is not None and opened.content_type.startswith(devices.VIA):
            await devices.fresh_list_for(account, node, opened.body, now)  # a device paired since we last looked
            opened = devices.unwrap(account, opened, now)  # from a paired device: as its identity's, if certified
        if opened is None or opened.content_type != ANSWER_TYPE:
            continue
        try:
            obj = codec.unpack(opened.body, max_len=512, max_depth=1)
        except CodecError:
            continue
        if not (isinstance(obj, dict) and obj.get("id") == record["id"] and obj.get("a") in ANSWERS
                and isinstance(obj.get("s"), int) and isinstance(obj.get("n"), str)):
            continue
        who = opened.sender.verify_key
        if who.hex() not in record["invitees"]:
            continue  # only invitees answer
        contact = account.contact(who)
        answer = Answer(contact.name if contact else obj["n"][:64], opened.sender.fingerprint(), obj["a"],
                        opened.created)
        if who not in best or best[who][0] < obj["s"]:
            best[who] = (obj["s"], answer)
    record["answers"] = {k.hex(): [s, [a.name, a.fingerprint, a.answer, a.at]] for k, (s, a) in best.items()}
    account.data.put("event_host", record["id"], record)
    return sorted((a for _, a in best.values()), key=lambda a: (a.answer, a.name.lower()))


async def answer_counts(account: Account, node: KomradeNode, event_id: str, *,
                        now: float | None = None) -> dict[str, int]:
    """``{"going": N, "maybe": M, "not going": K}``: counted from the anonymous answers (one per invitee, the
    newest; tallied here from the ring signatures) or from the signed ones."""
    record = _hosted(account, event_id)
    if not record.get("aa"):
        got = await answers(account, node, event_id, now=now)
        return {a: sum(1 for x in got if x.answer == a) for a in ANSWERS}
    now = time.time() if now is None else now
    if not record.get("roster"):
        return {a: 0 for a in ANSWERS}
    decryptor = env.TrialDecryptor(Identity.from_seed(record["seed"]))
    got = await node.read_slot(answer_slot(record["id"]), set(), lambda head: decryptor.content_key(head) is not None)
    ballots = []
    for data in got.wanted:
        try:
            opened = decryptor.open(data, now)
        except EnvelopeError:
            continue
        if opened is not None and opened.content_type == ANON_ANSWER_TYPE:
            ballots.append(opened.body)
    t = await asyncio.to_thread(votes.tally, ballots, votes.Electorate.roster(record["roster"]), record["id"])
    return {"going": t.up, "maybe": t.voters - t.up - t.down, "not going": t.down}


def invitees(account: Account, event_id: str) -> list[Invitee]:
    """Whom the host invited (this device's record, no network), by name then address, each with their answer
    as last read by :func:`answers` (call it first for fresh ones; always None when answers are anonymous)."""
    record = _hosted(account, event_id)
    got = record.get("answers", {}) if not record.get("aa") else {}
    out = []
    for key_hex, address in record["invitees"].items():
        key = bytes.fromhex(key_hex)
        contact = account.contact(key)
        answer = got.get(key_hex)
        name = contact.name if contact else (answer[1][0] if answer else "")
        out.append(Invitee(name, address, PublicIdentity(key).fingerprint(), answer[1][2] if answer else None))
    return sorted(out, key=lambda i: (i.name == "", i.name.lower(), i.address))


# -- invitees -----------------------------------------------------------------------------------------------------
def receive_invite(account: Account, opened: env.Opened, slot: bytes, now: float) -> None:
    """An ``event-invite`` found by a sync: keep it (a newer version of the details replaces an older one)."""
    try:
        obj = codec.unpack(opened.body, max_len=2048, max_depth=3)
        if not (isinstance(obj, dict) and isinstance(obj.get("id"), bytes) and len(obj["id"]) == 16
                and isinstance(obj.get("k"), bytes) and len(obj["k"]) == 32 and isinstance(obj.get("ek"), bytes)):
            raise EnvelopeError("malformed invitation")
        details = _check_details(obj.get("d"))
        PublicIdentity(obj["ek"])
        host = obj.get("h")
        if host is None:
            if opened.sender.verify_key != obj["ek"]:
                raise EnvelopeError("an anonymous invitation comes from the event key")
        elif not (isinstance(host, list) and len(host) == 2 and isinstance(host[0], str)
                  and isinstance(host[1], int) and 0 <= host[1] <= MAX_WIDTH):
            raise EnvelopeError("malformed host")
    except (CodecError, EnvelopeError, ValueError) as exc:
        log.warning("dropped an invitation: %s", exc)
        return
    old = account.data.get("event_invite", obj["id"])
    if old is not None and old["details"]["v"] >= details["v"]:
        return
    ri = obj.get("ri")
    record = {"id": obj["id"], "secret": obj["k"], "ek": obj["ek"], "anon": host is None, "details": details,
              "aa": isinstance(ri, bytes) and len(ri) == 32, "ri": ri if isinstance(ri, bytes) else None,
              "answer": old.get("answer") if old else None, "seq": old.get("seq", 0) if old else 0,
              "seen": old.get("seen") if old else None,
              "host": None if host is None else {
                  "name": (account.contact(opened.sender.verify_key).name
                           if account.contact(opened.sender.verify_key) else host[0][:64]),
                  "fingerprint": opened.sender.fingerprint(),
                  "address": encode_address(opened.sender.verify_key, host[1])}}
    account.data.put("event_invite", obj["id"], record)


dm.RECEIVERS[INVITE_TYPE] = receive_invite


def mark_seen(account: Account, event_id: str) -> Event:
    """Remember that this device's user was shown the invitation's current version (what "new" and "changed"
    compare to: :attr:`Event.unseen`). Kept with the invitation, encrypted; a no-op for an event you host."""
    key = _event_key(event_id)
    record = account.data.get("event_invite", key)
    if record is None:
        return _event(_hosted(account, event_id), True)
    if record.get("seen") != record["details"]["v"]:
        record["seen"] = record["details"]["v"]
        account.data.put("event_invite", key, record)
    return _event(record, False)


def _invited(account: Account, event_id: str) -> dict[str, Any]:
    record = account.data.get("event_invite", _event_key(event_id))
    if record is None:
        raise KomradeError(f"no invitation to event {event_id} (sync your inbox first)")
    return record


async def refresh_event(account: Account, node: KomradeNode, event_id: str, *, now: float | None = None) -> Event:
    """Pull the event's updates (edits, cancellation): the highest valid version signed by the event key wins."""
    key = _event_key(event_id)
    hosting = account.data.get("event_host", key)
    if hosting is not None:
        return _event(hosting, True)
    record = _invited(account, event_id)
    now = time.time() if now is None else now
    got = await node.read_slot(event_slot(key))
    record = _invited(account, event_id)  # read again: an answer or a "seen" may have been kept while we waited
    for data in got.wanted:
        try:
            opened = env.open_shared(data, record["secret"], now)
            if opened is None or opened.author is None or opened.author.verify_key != record["ek"]:
                continue  # not under this secret, or signed by someone else than the event key
            if opened.content_type == ROSTER_TYPE and record.get("ri"):
                roster = codec.unpack(opened.body, max_len=2048, max_depth=2)
                if isinstance(roster, list) and all(isinstance(k, bytes) for k in roster) and \
                        ring.ring_id(roster) == record["ri"]:
                    record["roster"] = roster
                continue
            if opened.content_type != UPDATE_TYPE:
                continue
            details = _check_details(codec.unpack(opened.body, max_len=2048, max_depth=3))
        except (EnvelopeError, CodecError, KomradeError):
            continue
        if details["v"] > record["details"]["v"]:
            record["details"] = details
    account.data.put("event_invite", key, record)
    return _event(record, False)


async def answer_event(account: Account, node: KomradeNode, event_id: str, answer: str, *,
                       now: float | None = None) -> Event:
    """Answer ``going``, ``maybe`` or ``not going``: sealed to the event key (the host), replacing an earlier
    answer. KomradeError if there is no such invitation or the event is cancelled or over."""
    if answer not in ANSWERS:
        raise KomradeError(f"an answer is going, maybe or not going, not {answer!r}")
    record = _invited(account, event_id)
    now = time.time() if now is None else now
    if record["details"]["x"]:
        raise KomradeError("the event is cancelled")
    if record["details"]["e"] <= now:
        raise KomradeError("the event is over")
    seq = max(int(now), record.get("seq", 0) + 1)
    slot = answer_slot(record["id"])
    if record.get("aa"):
        if not record.get("roster"):
            await refresh_event(account, node, event_id, now=now)
            record = _invited(account, event_id)
        if not record.get("roster"):
            raise KomradeError("the list of invitees (the ring of anonymous answers) has not arrived yet: try again")
        if not account.has_root:
            raise KomradeError("an anonymous answer is a ring signature with your identity's key, which only your "
                               "first device (or one joined with the recovery phrase) holds: answer from there")
        try:
            ballot = await asyncio.to_thread(votes.make_vote, account.identity, votes.Electorate.roster(
                record["roster"]), record["id"], _VOTE_OF[answer], seq)
        except KomradeError as exc:
            raise KomradeError(f"you cannot answer this event: {exc}") from None
        data = await asyncio.to_thread(env.seal, Identity.generate(), PublicIdentity(record["ek"]), ballot,
                                       content_type=ANON_ANSWER_TYPE, ttl=_ttl(record["details"], now), now=now,
                                       pow=node.config.pow, slot=slot)
    else:
        body = codec.pack({"id": record["id"], "a": answer, "s": seq, "n": account.name[:64]})
        sender, body, content_type = devices.signer(account, body, ANSWER_TYPE)  # a paired device: its certificate
        data = await asyncio.to_thread(env.seal, sender, PublicIdentity(record["ek"]), body,
                                       content_type=content_type, ttl=_ttl(record["details"], now), now=now,
                                       pow=node.config.pow, slot=slot)
    await node.send(slot, data)
    record["answer"], record["seq"] = answer, seq
    account.data.put("event_invite", record["id"], record)
    return _event(record, False)


def invitations(account: Account, *, now: float | None = None) -> list[Event]:
    """Events this identity is invited to and that have not ended (ended ones are forgotten here), soonest first."""
    return _list(account, "event_invite", False, now)


def hosted(account: Account, *, now: float | None = None) -> list[Event]:
    """Events hosted on this device that have not ended, soonest first."""
    return _list(account, "event_host", True, now)


def _list(account: Account, kind: str, hosting: bool, now: float | None) -> list[Event]:
    now = time.time() if now is None else now
    out = []
    for record in account.data.all(kind):
        if record["details"]["e"] + GRACE <= now:
            account.data.delete(kind, record["id"])
            pictures.forget(account, pictures.event_name(record["id"].hex()))
            continue
        out.append(_event(record, hosting))
    return sorted(out, key=lambda e: (e.starts_at, e.id))


async def fetch_image(account: Account, node: KomradeNode, event_id: str) -> bytes | None:
    """The event's picture (JPEG bytes): from this device if fetched before (kept encrypted with the account's
    data), else fetched whole from the network and kept; None if the event has none. ChunksUnavailable /
    ContentError (never a partial picture) if it cannot be fetched whole."""
    from .posts import MAX_IMAGE_BYTES, fetch_content

    ev = show(account, event_id)
    if ev.image is None:
        return None
    name = pictures.event_name(ev.id)
    kept = pictures.load(account, name)
    if kept is not None:  # an edit never changes the picture
        return kept
    picture = await fetch_content(node, ev.image[0], ev.image[1], max_length=MAX_IMAGE_BYTES)  # as a post's
    pictures.keep(account, name, picture)
    return picture


def show(account: Account, event_id: str) -> Event:
    """An event known here (hosted or invited), without reading the network."""
    key = _event_key(event_id)
    record = account.data.get("event_host", key)
    if record is not None:
        return _event(record, True)
    return _event(_invited(account, event_id), False)
