"""Anonymous votes on posts and pins, on the network (the format and the tally are :mod:`komrade_dht.votes`).

**A vote** is an *anonymous* public envelope (content type ``vote``, no key, no name, no signature outside the
ring signature, fresh padding and burn hash) carrying :func:`komrade_dht.votes.make_vote`, appended with the slot's
proof of work to ``komrade/votes/v1 | scope`` (:func:`komrade_dht.votes.slot_key`; the scope is the post's or the
pin's id) and sent with :meth:`KomradeNode.send`, so it leaves through a Dandelion stem: the holders of the vote
slot see the stem relay's address, not the voter's. It lives as long as what it votes on.

**Who may vote on world posts and pins: the registry.** Every identity that paid the registration's proof of work
for the current period (:func:`komrade_dht.votes.mint_registration`, ~22 core-seconds at the default, done in a
thread) and published it, as an anonymous public envelope of content type ``registration``, to
``registry_slot(period)``. Registrations are valid for their period and the next; their envelopes live at most 30
days, so :func:`ensure_registered` republishes the same registration (no new work) when its last copy is older
than :data:`REPUBLISH_AFTER`. A reader builds the electorate from the registry slots of the current and the
previous period (:func:`world_electorate`), keeping the keys it has already checked on the device.

A registry vote names a sub-ring of :data:`WORLD_SUBRING` eligible keys (its own and decoys drawn from the
registry, :func:`komrade_dht.votes.choose_subring`): the largest ring whose vote fits one anonymous public envelope
of 1024 bytes. **The anonymity set of one world vote is that sub-ring**, not the registry.

**Tallies** are computed by every reader (:func:`tally_scope`): read the vote slot with
:meth:`KomradeNode.read_slot` (bounded whatever holders and writers do), open every envelope, keep the bodies of
anonymous ``vote`` envelopes, and :func:`komrade_dht.votes.tally` them (cheap checks first, one ring verification
per link tag, at most ``max_verify`` of them). Envelopes that are not votes are counted as ``not-a-vote``.

**Refusals before anything is sent**: a vote on a post this device has not read (not in a feed it pulled, not one
of its own posts) or on an unknown pin is refused (:class:`KomradeError`: the voter cannot know the post exists, nor
how long its votes should live); an identity that is not in the electorate is refused (``not-eligible``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .. import envelope as env
from .. import votes
from ..errors import EnvelopeError, KomradeError, RegistrationError
from ..node import KomradeNode
from ..node.reader import ReadLimits
from ..slots import MAX_TTL
from ..votes import Electorate, RegistrationParams, Tally
from . import dm
from .account import Account

log = logging.getLogger(__name__)

VOTE_CONTENT_TYPE = "vote"
REG_CONTENT_TYPE = "registration"
#: A copy of one's registration is published again when the last one is older than this (envelopes live 30 days).
REPUBLISH_AFTER = 20 * 86400
#: Ring verifications one tally may spend at most (an honest slot needs one per voter).
DEFAULT_MAX_VERIFY = 4000
#: Pages one vote-slot or registry read may ask of one holder (50 ids each): past 10,000 junk entries.
READ_PAGES = 260
_FEEDS = ("world", "friends", "local")


def _largest_subring() -> int:
    """The largest registry sub-ring whose vote fits an anonymous public envelope of 1024 bytes."""
    room = env.public_capacity(VOTE_CONTENT_TYPE, signed=False)
    n = votes.MAX_ROSTER_RING
    while n > 1:
        size = 7 + 66 + 2 + 5 + 3 + n * 34 + 3 + votes.ring.signature_size(n)  # list, scope, choice, seq, ring, sig
        if size <= room:
            return n
        n -= 1
    return 1  # pragma: no cover


#: Keys a world vote's ring names (the anonymity set of one vote): 12 with today's envelope sizes.
WORLD_SUBRING = _largest_subring()


def registration_params() -> RegistrationParams:
    """The registration difficulty of this process: the default, or ``KOMRADE_REGISTRATION_TRIALS`` (environment)
    on a test network (every voter and reader of one network must use the same value, or registrations are
    refused)."""
    trials = os.environ.get("KOMRADE_REGISTRATION_TRIALS")
    if not trials:
        return RegistrationParams()
    try:
        return RegistrationParams(trials=float(trials), memlimit=8192)
    except ValueError:
        raise KomradeError("KOMRADE_REGISTRATION_TRIALS is a number") from None


@dataclass(frozen=True)
class VoteCast:
    """What :func:`vote_on_post` / :func:`vote_on_scope` sent. ``envelope``: the vote as sent, so the voter's own
    tally can count it before the stem has delivered it (:func:`tally_scope`'s ``extra``)."""

    scope: str
    choice: str
    seq: int
    ring_size: int
    acks: int
    envelope: bytes = field(default=b"", repr=False)


def _limits(node: KomradeNode) -> ReadLimits:
    base = node.config.read
    return replace(base, pages_per_holder=max(base.pages_per_holder, READ_PAGES),
                   requests_per_holder=max(base.requests_per_holder, READ_PAGES + 100))


def _scope_bytes(scope: str | bytes, what: str = "post") -> bytes:
    if isinstance(scope, bytes):
        raw = scope
    else:
        try:
            raw = bytes.fromhex(scope)
        except ValueError:
            raw = b""
    if len(raw) != 20:
        raise KomradeError(f"not a {what} id: {scope!r} (40 hex characters)")
    return raw


# -- registration ------------------------------------------------------------------------------------------------
async def ensure_registered(
    account: Account, node: KomradeNode, *, reg_params: RegistrationParams = RegistrationParams(),
    now: float | None = None,
) -> bool:
    """Make this identity eligible for world votes: mint this period's registration once (in a thread; ~22 s of one
    core at the default) and publish it to the period's registry slot, again when the last copy is older than
    :data:`REPUBLISH_AFTER`. Returns True if something was published."""
    now = time.time() if now is None else now
    period = votes.period_of(now, reg_params)
    key = period.to_bytes(8, "big")
    record = account.data.get("vote_registration", key)
    if record is None:
        data = await asyncio.to_thread(votes.mint_registration, account.identity.verify_key, period, reg_params)
        record = {"period": period, "data": data, "published": 0}
        account.data.put("vote_registration", key, record)
    if now - record["published"] < REPUBLISH_AFTER:
        return False
    slot = votes.registry_slot(period)
    envelope = await asyncio.to_thread(env.make_public, None, record["data"], content_type=REG_CONTENT_TYPE,
                                       ttl=MAX_TTL, now=now, pow=node.config.pow, slot=slot)
    await node.send(slot, envelope)
    record["published"] = int(now)
    account.data.put("vote_registration", key, record)
    return True


def _my_registrations(account: Account, params: RegistrationParams, now: float) -> list[bytes]:
    return [r["data"] for r in account.data.all("vote_registration")]


async def world_electorate(
    account: Account, node: KomradeNode, *, reg_params: RegistrationParams = RegistrationParams(),
    now: float | None = None, subring: int = WORLD_SUBRING,
) -> Electorate:
    """The identities eligible for world votes now: every valid registration in the registry slots of the current
    and the previous period (each checked once, one Argon2id each, then remembered on this device), and ours."""
    now = time.time() if now is None else now
    current = votes.period_of(now, reg_params)
    keys: set[bytes] = set()
    for period in (current - 1, current):
        slot = votes.registry_slot(period)
        cache_key = period.to_bytes(8, "big")
        cache = account.data.get("vote_registry", cache_key) or {"keys": []}
        seen = dm._load_seen(account, slot, now)
        got = await node.read_slot(slot, set(seen), limits=_limits(node))
        seen.update(got.skipped)
        found = set(cache["keys"])
        records = []
        for data in got.wanted:
            seen[env.envelope_id(data)] = int.from_bytes(data[2:6], "big")
            try:
                opened = env.open_public(data, now)
            except EnvelopeError:
                continue
            if opened.content_type == REG_CONTENT_TYPE and opened.author is None:
                records.append(opened.body)

        def check(batch: list[bytes]) -> set[bytes]:
            out = set()
            for data in batch:
                try:
                    out.add(votes.check_registration(data, reg_params, now))
                except RegistrationError:
                    pass
            return out

        found |= await asyncio.to_thread(check, records)
        dm._save_seen(account, slot, seen, now)
        account.data.put("vote_registry", cache_key, {"keys": sorted(found)})
        keys |= found
    for data in _my_registrations(account, reg_params, now):
        try:
            keys.add(votes.check_registration(data, reg_params, now))
        except RegistrationError:
            pass
    return Electorate.registry(keys, subring)


# -- voting ------------------------------------------------------------------------------------------------------
def find_post(account: Account, post_id: str) -> dict[str, Any]:
    """The post this device knows under ``post_id`` (read in a feed, or one of its own): ``{"expires_at": ...}``.
    KomradeError if there is none: nobody votes on a post they cannot find."""
    raw = _scope_bytes(post_id)
    for feed in _FEEDS:
        record = account.data.get("feed_post", feed.encode() + raw)
        if record is not None:
            return record
    mine = account.data.get("my_post", raw)
    if mine is not None:
        return mine
    raise KomradeError(f"no post {raw.hex()} found: read the feed that shows it first (komrade feed), "
                       "a vote needs the post")


async def vote_on_scope(
    account: Account, node: KomradeNode, scope: bytes, choice: str, electorate: Electorate, *,
    expires_at: int, now: float | None = None,
) -> VoteCast:
    """Sign ``choice`` (up, down, none) on ``scope`` over ``electorate`` and send it to the scope's vote slot. The
    sequence number is above every earlier vote of this device on the scope, so a new vote replaces the last."""
    now = time.time() if now is None else now
    if choice not in votes.CHOICES:
        raise KomradeError(f"a vote is up, down or none, not {choice!r}")
    if expires_at <= now:
        raise KomradeError("what you vote on has expired")
    if account.identity.verify_key not in electorate.keys:
        raise KomradeError("this identity is not eligible to vote here (for world posts and pins: register first; "
                           "it costs a one-time proof of work per period)")
    mine = account.data.get("my_vote", scope) or {"seq": 0}
    seq = min(votes.MAX_SEQ, max(int(now), mine["seq"] + 1))
    ballot = await asyncio.to_thread(votes.make_vote, account.identity, electorate, scope, choice, seq)
    slot = votes.slot_key(scope)
    ttl = max(1, min(MAX_TTL, int(expires_at - now)))
    envelope = await asyncio.to_thread(env.make_public, None, ballot, content_type=VOTE_CONTENT_TYPE, ttl=ttl,
                                       now=now, pow=node.config.pow, slot=slot)
    acks = await node.send(slot, envelope)
    account.data.put("my_vote", scope, {"scope": scope, "choice": choice, "seq": seq, "at": int(now)})
    return VoteCast(scope.hex(), choice, seq, electorate.ring_size, acks, envelope)


async def vote_on_post(
    account: Account, node: KomradeNode, post_id: str, choice: str, *,
    electorate: Electorate | None = None, reg_params: RegistrationParams = RegistrationParams(),
    now: float | None = None,
) -> VoteCast:
    """Vote up, down or none (withdraw) on a post this device has read; registers this identity first if it is
    not yet (world electorate). KomradeError if the post is unknown here or the choice is not one of the three."""
    if choice not in votes.CHOICES:
        raise KomradeError(f"a vote is up, down or none, not {choice!r}")
    post = find_post(account, post_id)
    now = time.time() if now is None else now
    if electorate is None:
        await ensure_registered(account, node, reg_params=reg_params, now=now)
        electorate = await world_electorate(account, node, reg_params=reg_params, now=now)
    return await vote_on_scope(account, node, _scope_bytes(post_id), choice, electorate,
                               expires_at=int(post["expires_at"]), now=now)


def my_vote(account: Account, scope: str | bytes) -> str | None:
    """This device's last vote on a scope (``up``, ``down``, ``none``), or None."""
    record = account.data.get("my_vote", _scope_bytes(scope, "vote scope"))
    return None if record is None else record["choice"]


# -- tallying ----------------------------------------------------------------------------------------------------
def tally_envelopes(envelopes: list[bytes], electorate: Electorate, scope: bytes, *,
                    max_verify: int | None = DEFAULT_MAX_VERIFY, now: float | None = None) -> Tally:
    """Tally the vote envelopes of a slot (what :func:`tally_scope` does after reading it); CPU-bound."""
    bodies: list[bytes] = []
    not_votes = 0
    for data in envelopes:
        try:
            opened = env.open_public(data, now)
        except EnvelopeError:
            not_votes += 1
            continue
        if opened.content_type != VOTE_CONTENT_TYPE or opened.author is not None:
            not_votes += 1
            continue
        bodies.append(opened.body)
    result = votes.tally(bodies, electorate, scope, max_verify=max_verify)
    if not_votes:
        rejected = dict(result.rejected)
        rejected["not-a-vote"] = rejected.get("not-a-vote", 0) + not_votes
        result = replace(result, rejected=rejected)
    return result


async def tally_scope(node: KomradeNode, scope: bytes, electorate: Electorate, *,
                      max_verify: int | None = DEFAULT_MAX_VERIFY, now: float | None = None,
                      extra: Sequence[bytes] = ()) -> Tally:
    """Read the vote slot of ``scope`` (bounded) and count it here; nothing a node says is trusted. ``extra``:
    vote envelopes this reader holds itself (its own vote, still on its way through a stem), checked like the rest;
    a newer vote of the same voter wins as always."""
    got = await node.read_slot(votes.slot_key(scope), limits=_limits(node))
    return await asyncio.to_thread(tally_envelopes, list(got.wanted) + list(extra), electorate, scope,
                                   max_verify=max_verify, now=now)


async def tally_post(node: KomradeNode, post_id: str | bytes, electorate: Electorate, *,
                     max_verify: int | None = DEFAULT_MAX_VERIFY, now: float | None = None) -> Tally:
    """The tally of a post's votes as this reader counts them (``.up``, ``.down``, ``.rejected`` by reason)."""
    return await tally_scope(node, _scope_bytes(post_id), electorate, max_verify=max_verify, now=now)
