"""Votes, events, map pins and collectives (issue 11) for the local API (:class:`komrade_dht.service.UserService`
holds one, ``service.organize``).

As :class:`.social_service.SocialService`: every method takes plain values (what a JSON body carries) and returns
JSON-ready dicts; bad input raises KomradeError (the API answers 400 with its message), an unknown post, event, pin
or collective NotFound (404), a network that did not answer NetworkError (503). The ``*_dict`` functions here are
the one mapping of the library's results to JSON: the API and the CLI's ``--json`` both use them.

Events pushed on the service's hub: ``invitation`` (an event invitation arrived, or an event you are invited to
changed: the event as data) and ``collective`` (a collective's key arrived, or a join request for one: ``{"id",
"name", "members", "key_epoch", "status", "what": "key" | "join_request"}``). Invitations, keys and join requests
are DMs handled by :data:`komrade_dht.social.dm.RECEIVERS` during a sync; :meth:`OrganizeService.announce` compares
what the device holds with what it announced last and publishes the difference (the service calls it after every
sync).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from .. import geo
from ..address import decode_address
from ..errors import CollectiveError, KomradeError
from ..node import KomradeNode
from ..votes import RegistrationParams, Tally
from . import collectives as coll
from . import events, pins, voting
from .account import Account
from .social_service import SocialNotFound, _image, _number, _position

#: Posts of a feed whose votes a refresh tallies (the newest: what a first page shows).
TALLY_ON_REFRESH = 50
#: Vote slots read at once when tallying several posts.
TALLY_PARALLEL = 8
#: Invitations whose updates one sync pulls at once.
REFRESH_PARALLEL = 4
log = logging.getLogger(__name__)
_ANSWER_OUT = {"going": "going", "maybe": "maybe", "not going": "not-going"}
_ANSWER_IN = {v: k for k, v in _ANSWER_OUT.items()}
_PIN_VOTE = {"up": "confirm", "down": "dismiss"}


# -- the one mapping (API and CLI --json) -------------------------------------------------------------------------
def votes_dict(up: int, down: int, mine: str | None, tallied_at: int | None) -> dict[str, Any]:
    """A post's votes: ``{"up", "down", "mine", "tallied_at"}`` (``mine``: this device's vote, ``none`` when
    withdrawn; ``tallied_at``: when this reader last counted them, null if never)."""
    return {"up": up, "down": down, "mine": mine, "tallied_at": tallied_at}


def event_dict(e: events.Event) -> dict[str, Any]:
    """An event as the API and ``event show/list --json`` give it."""
    position = None if e.position is None else {"lat": e.position[0], "lon": e.position[1],
                                                 "precision_km": e.position[2]}
    return {"id": e.id, "title": e.title, "starts_at": e.starts_at, "ends_at": e.ends_at, "place": e.place,
            "position": position, "description": e.description, "has_image": e.image is not None,
            "hosting": e.hosting, "anonymous_host": e.anonymous_host, "host": e.host_name,
            "host_fingerprint": e.host_fingerprint, "cancelled": e.cancelled,
            "my_answer": _ANSWER_OUT.get(e.my_answer or ""), "version": e.version,
            "anonymous_answers": e.anonymous_answers, "seen_version": e.seen_version, "unseen": e.unseen}


def answer_dict(a: events.Answer) -> dict[str, Any]:
    return {"who": a.name, "fingerprint": a.fingerprint, "answer": _ANSWER_OUT[a.answer], "at": a.at}


def invitee_dict(i: events.Invitee) -> dict[str, Any]:
    return {"name": i.name, "address": i.address, "fingerprint": i.fingerprint,
            "answer": _ANSWER_OUT[i.answer] if i.answer else None}


def counts_dict(counts: dict[str, int]) -> dict[str, int]:
    return {_ANSWER_OUT[k]: v for k, v in counts.items()}


def pin_dict(account: Account, p: pins.Pin) -> dict[str, Any]:
    """A pin as the API and ``pin list --json`` give it (``precision_km`` is known for your own pins only: a pin
    carries its coarsened centre, not the cell size it was coarsened to)."""
    key = bytes.fromhex(p.id)
    mine = account.data.get("my_pin", key)
    vote = account.data.get("my_vote", key)
    return {"id": p.id, "kind": p.kind, "text": p.text, "lat": p.lat, "lon": p.lon,
            "precision_km": mine.get("precision_km") if mine else None, "radius_km": p.radius_km,
            "posted_at": p.posted_at, "expires_at": p.expires_at, "distance_km": p.distance_km,
            "confirmations": p.confirmed, "dismissals": p.dismissed,
            "mine": _PIN_VOTE.get(vote["choice"]) if vote else None, "dropped_by_me": mine is not None}


def _proposal_what(p: Any) -> str:
    if p.action == "remove":
        return f"remove {p.target.hex() if isinstance(p.target, bytes) else p.target}"
    return "amend " + ", ".join(f"{k}={'/'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                                for k, v in sorted(dict(p.target).items()))


def state_dict(account: Account, state: Any) -> dict[str, Any]:
    """A collective's replayed state as the API and ``collective show --json`` give it."""
    record = account.data.get("collective", state.collective_id) or {"addresses": {}}
    me = account.identity.verify_key
    quorum = state.constitution.quorum(len(state.members))

    from .. import collective

    ops = {collective.op_hash(op): op for op in record.get("ops", [])}

    def address(key: bytes, join: bytes | None = None) -> str | None:
        """A member's address as the log told us, or a newcomer's from their join request's note."""
        known = record["addresses"].get(key.hex())
        if known is None and join in ops:
            note = collective.decode_op(ops[join]).body.get("note")
            known = note if isinstance(note, str) else None
        return known

    def who(key: bytes, join: bytes) -> str:
        contact = account.contact(key)
        return contact.name if contact else address(key, join) or key.hex()

    return {
        "id": state.collective_id.hex(), "name": state.name, "constitution": state.constitution.to_wire(),
        "key_epoch": state.key_epoch, "member": me in state.members,
        "members": [{**m.__dict__, "address": record["addresses"].get(m.key),
                     "me": m.key == me.hex()} for m in coll.members(account, state)],
        "joins": [{"id": h.hex(), "newcomer": j.newcomer.hex(), "who": who(j.newcomer, h),
                   "address": address(j.newcomer, h), "note": record.get("notes", {}).get(h.hex()),
                   "vouches": len(j.vouchers),
                   "needed": quorum, "status": j.status, "vouched": me in j.vouchers}
                  for h, j in state.joins.items()],
        "proposals": [{"id": h.hex(), "kind": p.action,
                       "target": p.target.hex() if isinstance(p.target, bytes) else p.target,
                       "what": _proposal_what(p), "status": p.status, "open": p.status == "open",
                       "up": p.up, "down": p.down, "needed": p.needed, "closes_at": p.closes_at,
                       "mine": coll.my_vote(account, h)}
                      for h, p in state.proposals.items()],
    }


def collective_item(account: Account, record: dict[str, Any]) -> dict[str, Any]:
    """One line of the collectives list, from this device's copy of the log (no network)."""
    from .. import collective

    status, members, epoch = "waiting", 0, 0
    if any(collective.op_hash(op) == record["id"] for op in record["ops"]):
        state = collective.replay(record["ops"], record["id"])
        members, epoch = len(state.members), state.key_epoch
        status = "member" if account.identity.verify_key in state.members else "removed"
    return {"id": record["id"].hex(), "name": record["name"], "members": members, "key_epoch": epoch,
            "status": status}


def post_votes(tally: Tally) -> dict[str, int]:
    """What ``feed --json`` carries per post: ``{"up", "down"}`` as this reader tallied them."""
    return {"up": tally.up, "down": tally.down}


async def tally_posts(account: Account, node: KomradeNode, post_ids: list[str],
                      reg_params: RegistrationParams) -> dict[str, Tally]:
    """Each post's tally as this reader counts it, over today's world electorate (read once)."""
    if not post_ids:
        return {}
    electorate = await voting.world_electorate(account, node, reg_params=reg_params)
    gate = asyncio.Semaphore(TALLY_PARALLEL)

    async def one(post_id: str) -> tuple[str, Tally]:
        async with gate:
            return post_id, await voting.tally_post(node, post_id, electorate)

    return dict(await asyncio.gather(*(one(p) for p in post_ids)))


# -- input checks -------------------------------------------------------------------------------------------------
def _fields(body: dict[str, Any], allowed: set[str], required: set[str] = frozenset(),  # type: ignore[assignment]
            nullable: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Refuse unknown and missing fields, and a null where a field has no null meaning (leave it out instead)."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise KomradeError(f"unknown field(s): {', '.join(str(k)[:40] for k in unknown[:5])}")
    missing = sorted(required - set(body))
    if missing:
        raise KomradeError(f"missing field(s): {', '.join(missing)}")
    nulls = sorted(k for k, v in body.items() if v is None and k not in nullable)
    if nulls:
        raise KomradeError(f"{', '.join(nulls[:5])} cannot be null: leave the field out for its default")


def _str(body: dict[str, Any], key: str, default: str | None = None, limit: int = 1000) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise KomradeError(f"{key} must be a string")
    if len(value) > limit:
        raise KomradeError(f"{key} is at most {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise KomradeError(f"{key} is not valid Unicode text (lone surrogates)") from None
    return value


def _int(body: dict[str, Any], key: str, default: int | None = None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise KomradeError(f"{key} must be a whole number")
    return value


def _num(body: dict[str, Any], key: str, default: float) -> float:
    value = _number(body.get(key), key)
    return default if value is None else value


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise KomradeError(f"{key} must be true or false")
    return value


def _addresses(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise KomradeError(f"{key} must be a list of addresses")
    if len(value) > 64:
        raise KomradeError(f"{key} lists at most 64 addresses")
    return [decode_address(a).text for a in value]  # every one checked before anything is sent


def _share(value: Any, key: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10**6 for v in value)):
        raise KomradeError(f"{key} is a fraction [numerator, denominator], e.g. [1, 2]")
    return value[0], value[1]


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise KomradeError(f"{what} is {', '.join(allowed[:-1])} or {allowed[-1]}, not {str(value)[:40]!r}")
    return str(value)


class OrganizeService:
    """Votes, events, pins and collectives of one account on one node (``node()`` returns the running node).
    ``sync`` is the service's inbox sync (it announces new DMs); every inbox sync here goes through it."""

    def __init__(self, account: Account, node: Callable[[], KomradeNode], publish: Callable[[str, dict], Any],
                 sync: Callable[[], Awaitable[Any]], reg_params: RegistrationParams | None = None) -> None:
        self.account = account
        self._node = node
        self._publish = publish
        self._sync = sync
        self.reg_params = reg_params or voting.registration_params()
        self._registering: asyncio.Task[bool] | None = None
        self._announced_invites: dict[str, int] = {}
        self._announced_collectives: dict[str, tuple[int, int]] = {}
        self.announce(publish=False)  # what the device holds at start is not news

    # -- what arrived with a sync -------------------------------------------------------------------------------
    async def refresh_invitations(self) -> None:
        """Pull the edits and cancellations of the events you are invited to (those not cancelled; ended ones are
        forgotten), a few at a time, then announce what changed: an invitation's line can say "changed" before you
        open it. One slot read per invitation; a failed one waits for the next sync."""
        node = self._node()
        gate = asyncio.Semaphore(REFRESH_PARALLEL)

        async def one(event_id: str) -> None:
            async with gate:
                try:
                    await events.refresh_event(self.account, node, event_id)
                except KomradeError as exc:
                    log.info("could not refresh event %s: %s", event_id[:8], exc)

        await asyncio.gather(*(one(e.id) for e in events.invitations(self.account) if not e.cancelled))
        self.announce()

    def announce(self, publish: bool = True) -> None:
        """Publish an ``invitation`` per invitation that is new or changed and a ``collective`` per collective whose
        keys or queued join requests grew since the last call."""
        for e in events.invitations(self.account):
            if self._announced_invites.get(e.id) != e.version:
                self._announced_invites[e.id] = e.version
                if publish:
                    self._publish("invitation", event_dict(e))
        for record in self.account.data.all("collective"):
            cid = record["id"].hex()
            keys, queued = len(record["keys"]), len(record["to_append"])
            old_keys, old_queued = self._announced_collectives.get(cid, (0, 0))
            self._announced_collectives[cid] = (keys, queued)
            what = "key" if keys > old_keys else "join_request" if queued > old_queued else None
            if publish and what is not None and keys:
                self._publish("collective", {**collective_item(self.account, record), "what": what})

    async def _registered(self, node: KomradeNode) -> None:
        """This period's registration (a one-time proof of work of ~22 s of one core): one task owned here, shared
        by every caller and shielded from them, so a request that gives up (a client's timeout) loses no work and
        the next vote finds it done."""
        if self._registering is None or self._registering.done():  # (done: a cheap check that all is published)
            self._registering = asyncio.ensure_future(
                voting.ensure_registered(self.account, node, reg_params=self.reg_params))
        await asyncio.shield(self._registering)

    async def close(self) -> None:
        """Stop the registration's proof of work if one runs (its thread finishes its trial and is dropped)."""
        task, self._registering = self._registering, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _synced(self) -> None:
        await self._sync()  # the service's sync calls announce() when it is done

    # -- votes --------------------------------------------------------------------------------------------------
    def _post(self, post_id: str) -> dict[str, Any]:
        voting._scope_bytes(post_id)  # malformed: 400
        try:
            return voting.find_post(self.account, post_id)
        except KomradeError as exc:
            raise SocialNotFound(str(exc)) from None

    def _cache(self, post_id: str, tally: Tally) -> dict[str, Any]:
        record = {"up": tally.up, "down": tally.down, "at": int(time.time())}
        self.account.data.put("vote_tally", bytes.fromhex(post_id), record)
        return votes_dict(tally.up, tally.down, voting.my_vote(self.account, post_id), record["at"])

    def cached_votes(self, post_id: str) -> dict[str, Any]:
        """A post's votes as last tallied on this device (zeros and ``tallied_at`` null if never): no network."""
        record = self.account.data.get("vote_tally", bytes.fromhex(post_id)) or {"up": 0, "down": 0, "at": None}
        return votes_dict(record["up"], record["down"], voting.my_vote(self.account, post_id), record["at"])

    async def vote(self, post_id: str, choice: Any) -> dict[str, Any]:
        """Vote up, down or none (withdraw) on a post read here (registering this identity on the first vote:
        a one-time proof of work), then tally it."""
        choice = _choice(choice, ("up", "down", "none"), "a vote")
        self._post(post_id)
        node = self._node()
        await self._registered(node)
        electorate = await voting.world_electorate(self.account, node, reg_params=self.reg_params)
        cast = await voting.vote_on_post(self.account, node, post_id, choice, electorate=electorate)
        tally = await voting.tally_scope(node, bytes.fromhex(post_id), electorate, extra=[cast.envelope])
        return {"post_id": post_id, "choice": choice, "ring_size": cast.ring_size,
                "votes": self._cache(post_id, tally)}

    async def votes(self, post_id: str) -> dict[str, Any]:
        """Tally a post's votes now, from its vote slot (never trusted from a node)."""
        self._post(post_id)
        tally = (await tally_posts(self.account, self._node(), [post_id], self.reg_params))[post_id]
        return {"post_id": post_id, **self._cache(post_id, tally)}

    async def tally_feed(self, post_ids: list[str]) -> None:
        """Tally (and cache) the votes of these posts: what a feed refresh does for its newest."""
        for post_id, tally in (await tally_posts(self.account, self._node(), post_ids, self.reg_params)).items():
            self._cache(post_id, tally)

    # -- events -------------------------------------------------------------------------------------------------
    def _event(self, event_id: str) -> events.Event:
        events._event_key(event_id)  # malformed: 400
        try:
            return events.show(self.account, event_id)
        except KomradeError as exc:
            raise SocialNotFound(f"no event {event_id} on this device (an invitation arrives with a sync)") \
                from exc

    def _hosting(self, event_id: str) -> events.Event:
        ev = self._event(event_id)
        if not ev.hosting:
            raise KomradeError("only the host changes an event or invites to it")
        return ev

    def events(self) -> dict[str, Any]:
        return {"hosted": [event_dict(e) for e in events.hosted(self.account)],
                "invitations": [event_dict(e) for e in events.invitations(self.account)]}

    async def create_event(self, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, {"title", "starts_at", "ends_at", "place", "description", "at", "precision_km",
                       "image_path", "image_base64", "anonymous", "anonymous_answers", "invite"},
                {"title", "starts_at", "ends_at"}, nullable={"at"})
        title = _str(body, "title", limit=events.MAX_TITLE)
        place = _str(body, "place", "", events.MAX_PLACE)
        description = _str(body, "description", "", events.MAX_DESCRIPTION)
        starts_at, ends_at = _int(body, "starts_at"), _int(body, "ends_at")
        at = _position(body.get("at"))
        if at is not None:
            at = geo.check_position(*at)
        precision = _num(body, "precision_km", 1.0)
        geo.coarsening_level_km(precision)
        anonymous, anonymous_answers = _bool(body, "anonymous"), _bool(body, "anonymous_answers")
        invite = _addresses(body.get("invite", []), "invite")
        if anonymous_answers and not 1 <= len(invite) <= events.MAX_ANONYMOUS_INVITEES:
            raise KomradeError("an event with anonymous answers invites everyone at once (invite: 1 to "
                               f"{events.MAX_ANONYMOUS_INVITEES} addresses)")
        image = _image(body, "image")
        await asyncio.to_thread(events.check_event, title, starts_at, ends_at, place, description, image)
        node = self._node()
        ev = await events.create_event(self.account, node, title, starts_at, ends_at, place=place, at=at,
                                       precision_km=precision, description=description, image=image,
                                       anonymous=anonymous, anonymous_answers=anonymous_answers)
        if invite:
            await events.invite(self.account, node, ev.id, invite)
        return {**event_dict(events.show(self.account, ev.id)), "invited": len(invite)}

    async def picture(self, event_id: str) -> bytes:
        """The event's picture (JPEG bytes), fetched whole and decrypted; SocialNotFound if it has none."""
        ev = self._event(event_id)
        if ev.image is None:
            raise SocialNotFound(f"event {event_id} has no picture")
        picture = await events.fetch_image(self.account, self._node(), event_id)
        assert picture is not None
        return picture

    async def event(self, event_id: str) -> dict[str, Any]:
        """An event known here, marked seen (its user is shown this version); for its host, also whom they invited
        and who answered what (or the counts, when answers are anonymous), read from the network now."""
        self._event(event_id)
        ev = events.mark_seen(self.account, event_id)
        out = event_dict(ev)
        if ev.hosting:
            node = self._node()
            if ev.anonymous_answers:
                out["answers"] = None
                out["counts"] = counts_dict(await events.answer_counts(self.account, node, event_id))
            else:
                got = await events.answers(self.account, node, event_id)
                out["answers"] = [answer_dict(a) for a in got]
                out["counts"] = {v: sum(1 for a in got if a.answer == k) for k, v in _ANSWER_OUT.items()}
            out["invitees"] = [invitee_dict(i) for i in events.invitees(self.account, event_id)]
        return out

    async def refresh_event(self, event_id: str) -> dict[str, Any]:
        """Pull the event's latest version (edits, cancellation) from the network."""
        self._event(event_id)
        await events.refresh_event(self.account, self._node(), event_id)
        self.announce()
        return await self.event(event_id)

    async def invite(self, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._hosting(event_id)
        _fields(body, {"addresses"}, {"addresses"})
        addresses = _addresses(body["addresses"], "addresses")
        if not addresses:
            raise KomradeError("addresses lists whom to invite")
        n = await events.invite(self.account, self._node(), event_id, addresses)
        return {**event_dict(events.show(self.account, event_id)), "invited": n}

    async def answer(self, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._event(event_id).hosting:
            raise KomradeError("you host this event: answers come from the invitees")
        _fields(body, {"answer"}, {"answer"})
        answer = _choice(body["answer"], tuple(_ANSWER_IN), "an answer")
        node = self._node()
        await events.refresh_event(self.account, node, event_id)
        return event_dict(await events.answer_event(self.account, node, event_id, _ANSWER_IN[answer]))

    async def edit_event(self, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._hosting(event_id)
        _fields(body, {"title", "starts_at", "ends_at", "place", "description"})
        if not body:
            raise KomradeError("give at least one of title, starts_at, ends_at, place, description")
        limits = {"title": events.MAX_TITLE, "place": events.MAX_PLACE, "description": events.MAX_DESCRIPTION}
        changes: dict[str, Any] = {k: _str(body, k, limit=n) for k, n in limits.items() if k in body}
        changes.update({k: _int(body, k) for k in ("starts_at", "ends_at") if k in body})
        return event_dict(await events.edit_event(self.account, self._node(), event_id, **changes))

    async def cancel_event(self, event_id: str) -> dict[str, Any]:
        self._hosting(event_id)
        return event_dict(await events.cancel_event(self.account, self._node(), event_id))

    # -- pins ---------------------------------------------------------------------------------------------------
    def _pin(self, pin_id: str) -> dict[str, Any]:
        key = voting._scope_bytes(pin_id, "pin")  # malformed: 400
        record = self.account.data.get("pin", key)
        if record is None or record["expires_at"] <= time.time():
            raise SocialNotFound(f"no live pin {pin_id} on this device: list the pins around you first")
        return record

    async def pins(self, at: tuple[float, float], radius_km: float | None = None) -> dict[str, Any]:
        """The live pins whose circle contains ``at`` (within ``radius_km`` if given), read from the network now,
        with their confirmations and dismissals tallied here."""
        node = self._node()
        electorate = await voting.world_electorate(self.account, node, reg_params=self.reg_params)
        found = await pins.read_pins(self.account, node, at, radius_km=radius_km, electorate=electorate)
        return {"pins": [pin_dict(self.account, p) for p in found]}

    async def drop_pin(self, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, {"kind", "text", "at", "radius_km", "precision_km", "hours"}, {"kind", "at"})
        hours = _num(body, "hours", pins.DEFAULT_TTL / 3600)
        if not 1 / 60 <= hours <= pins.MAX_PIN_TTL / 3600:
            raise KomradeError(f"a pin lives from a minute to {pins.MAX_PIN_TTL // 3600} hours, not {hours:g} hours")
        ttl = max(1, int(hours * 3600))
        kind, text, ttl = pins.check_pin(body["kind"], _str(body, "text", "", pins.MAX_TEXT), ttl)
        at = _position(body["at"])
        assert at is not None
        radius = geo.check_radius(_num(body, "radius_km", pins.DEFAULT_RADIUS_KM))
        precision = _num(body, "precision_km", pins.DEFAULT_PRECISION_KM)
        geo.coarsening_level_km(precision)
        d = await pins.drop_pin(self.account, self._node(), kind, text, geo.check_position(*at), radius_km=radius,
                                precision_km=precision, ttl=ttl)
        pin = pins.Pin(d.id, kind, text, d.area.lat, d.area.lon, d.area.radius_km, d.expires_at - ttl,
                       d.expires_at, round(geo.haversine_km(at[0], at[1], d.area.lat, d.area.lon), 3), 0, 0)
        return {**pin_dict(self.account, pin), "envelopes": d.envelopes, "acks": d.acks}

    async def vote_pin(self, pin_id: str, confirm: bool) -> dict[str, Any]:
        """Confirm or dismiss a pin anonymously, then tally its votes."""
        record = self._pin(pin_id)
        node = self._node()
        await self._registered(node)
        electorate = await voting.world_electorate(self.account, node, reg_params=self.reg_params)
        cast = await pins.vote_on_pin(self.account, node, pin_id, confirm, electorate=electorate)
        t = await voting.tally_scope(node, bytes.fromhex(pin_id), electorate, extra=[cast.envelope])
        pin = pins.Pin(**{**record, "confirmed": t.up, "dismissed": t.down})
        self.account.data.put("pin", bytes.fromhex(pin_id), pin.__dict__)
        return pin_dict(self.account, pin)

    async def remove_pin(self, pin_id: str) -> dict[str, Any]:
        key = voting._scope_bytes(pin_id, "pin")
        if self.account.data.get("my_pin", key) is None:
            raise SocialNotFound(f"no pin of yours with id {pin_id}")
        return {"id": pin_id, "deleted": await pins.remove_pin(self.account, self._node(), pin_id)}

    # -- collectives --------------------------------------------------------------------------------------------
    def _known(self, cid: str) -> bytes:
        raw = coll._cid(cid)  # malformed: 400
        if self.account.data.get("collective", raw) is None:
            if self.account.data.get("collective_join", raw) is not None:
                raise SocialNotFound(f"your request to join {cid} waits for the members' vouches: no key yet")
            raise SocialNotFound(f"you are in no collective {cid}")
        return raw

    def collectives(self) -> dict[str, Any]:
        """The collectives this device holds a key of, and those it asked to join (``status``: member,
        removed, waiting)."""
        out = [collective_item(self.account, r) for r in self.account.data.all("collective") if r["keys"]]
        held = {c["id"] for c in out}
        out += [{"id": r["id"].hex(), "name": None, "members": 0, "key_epoch": 0, "status": "waiting"}
                for r in self.account.data.all("collective_join") if r["id"].hex() not in held]
        return {"collectives": sorted(out, key=lambda c: ((c["name"] or "").lower(), c["id"]))}

    async def found_collective(self, body: dict[str, Any]) -> dict[str, Any]:
        from ..collective import Constitution

        _fields(body, {"name", "members", "quorum", "quorum_share", "amend_share", "remove_share", "vote_window"},
                {"name"})
        name = _str(body, "name", limit=64)
        if not name.strip():
            raise KomradeError("a collective needs a name")
        members = _addresses(body.get("members", []), "members")
        base = Constitution()
        try:
            constitution = Constitution(
                vouch_min=_int(body, "quorum", base.vouch_min),
                vouch_share=_share(body.get("quorum_share", list(base.vouch_share)), "quorum_share"),
                amend_share=_share(body.get("amend_share", list(base.amend_share)), "amend_share"),
                remove_share=_share(body.get("remove_share", list(base.remove_share)), "remove_share"),
                vote_window=_int(body, "vote_window", base.vote_window))
        except CollectiveError as exc:
            raise KomradeError(f"invalid constitution: {exc}") from None
        state = await coll.found_collective(self.account, self._node(), name, members, constitution=constitution)
        self.announce(publish=False)
        return state_dict(self.account, state)

    async def collective(self, cid: str) -> dict[str, Any]:
        """Sync (inbox, then the log) and the replayed state."""
        raw = coll._cid(cid)
        await self._synced()  # the key of a collective we were invited to or asked to join may be in it
        self._known(cid)
        return state_dict(self.account, await coll.sync_collective(self.account, self._node(), raw, inbox=False))

    async def request_join(self, cid: str, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, {"member_address", "note"}, {"member_address"})
        raw = coll._cid(cid)
        member = decode_address(_str(body, "member_address", limit=200)).text
        note = _str(body, "note", "", 200)
        join_id = await coll.request_join(self.account, self._node(), raw.hex(), member, note=note)
        return {"collective_id": raw.hex(), "join_id": join_id}

    async def vouch(self, cid: str, body: dict[str, Any]) -> dict[str, Any]:
        self._known(cid)
        _fields(body, {"join_id"}, {"join_id"})
        join = _str(body, "join_id", limit=64)
        await self._synced()
        return state_dict(self.account, await coll.vouch(self.account, self._node(), cid, join, inbox=False))

    async def propose(self, cid: str, body: dict[str, Any]) -> dict[str, Any]:
        self._known(cid)
        _fields(body, {"set", "remove"})
        if ("set" in body) == ("remove" in body):
            raise KomradeError('propose either {"set": {field: value}} (an amendment) or {"remove": member}')
        if "set" in body:
            changes = body["set"]
            names = ("vouch_min", "vouch_share", "amend_share", "remove_share", "vote_window")
            if not isinstance(changes, dict) or not changes or set(changes) - set(names):
                raise KomradeError(f"set changes some of {', '.join(names)}")
            checked = {k: list(_share(v, k)) if k.endswith("_share") else _int(changes, k)
                       for k, v in changes.items()}
            await self._synced()
            try:
                state = await coll.propose_amend(self.account, self._node(), cid, checked, inbox=False)
            except CollectiveError as exc:
                raise KomradeError(f"invalid amendment: {exc}") from None
        else:
            member = _str(body, "remove", limit=200)
            await self._synced()
            state = await coll.propose_remove(self.account, self._node(), cid, member, inbox=False)
        newest = max(state.proposals, key=lambda h: state.order.index(h))
        return {"proposal_id": newest.hex(), "collective": state_dict(self.account, state)}

    async def vote_proposal(self, cid: str, proposal_id: str, body: dict[str, Any]) -> dict[str, Any]:
        raw = self._known(cid)
        _fields(body, {"choice"}, {"choice"})
        choice = _choice(body["choice"], ("up", "down", "none"), "a vote")
        record = self.account.data.get("collective", raw)
        from .. import collective

        if any(collective.op_hash(op) == raw for op in record["ops"]):
            state = collective.replay(record["ops"], raw)
            if not any(h.hex().startswith(proposal_id.lower()) for h in state.proposals):
                raise SocialNotFound(f"no proposal {proposal_id} in this collective (as last synced here)")
        await self._synced()
        return state_dict(self.account, await coll.vote(self.account, self._node(), cid, proposal_id, choice, inbox=False))

    async def collective_posts(self, cid: str, days: int = 3) -> dict[str, Any]:
        self._known(cid)
        await self._synced()
        got = await coll.read_posts(self.account, self._node(), cid, days=days, inbox=False)
        return {"posts": [p.__dict__ for p in got]}

    async def collective_post(self, cid: str, body: dict[str, Any]) -> dict[str, Any]:
        self._known(cid)
        _fields(body, {"text"}, {"text"})
        text = _str(body, "text", limit=1000)
        await self._synced()
        return {"id": await coll.post(self.account, self._node(), cid, text, inbox=False)}
