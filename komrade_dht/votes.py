"""Anonymous votes: one per identity per scope, unlinkable across scopes, tallied by every reader.

A vote on a post, a pin or a proposal is a linkable ring signature (:mod:`komrade_dht.ring`) whose link tag is
scoped to what is voted on: the same voter on the same scope always carries the same tag, so a reader keeps one
vote per tag (the highest sequence number: a voter changes or withdraws a vote by signing again with a higher
``seq``); different voters and different scopes give unrelated tags. Nobody learns which ring member voted.

**Format** (msgpack, at most :data:`MAX_VOTE_BYTES`, one datagram)::

    [1, scope, choice, seq, ring, signature]
    scope      bytes, 1..64       the post id, pin id or proposal id voted on
    choice     int                1 = up, -1 = down, 0 = none (withdraws an earlier vote)
    seq        int, 0..2^32-1     newer votes of the same voter carry higher numbers
    ring       bytes(32)          roster mode: the ring id (ring.ring_id) of the whole roster, known to readers
               or [bytes(32)...]  registry mode: the sub-ring the voter signed over, every key eligible
    signature  bytes              ring.sign(voter, ring, scope, "komrade/vote/v1" | pack([choice, seq]))

The ring signature binds the ring (its id is in every challenge), the scope and (choice, seq); nothing else in
the vote is trusted.

**Who may vote: the electorate** (:class:`Electorate`).

* *Roster* (a collective, a proposal): the ring is the whole member roster at the proposal's time; every vote
  is signed over all of it (64 + 32n bytes; a datagram holds rosters up to :data:`MAX_ROSTER_RING` = 32
  members; a larger collective votes in registry mode over its roster, below).
* *Registry* (world posts): the eligible set is every identity holding a valid **registration** for the current
  period: a one-time, per-period proof of work bound to the key (:func:`mint_registration`, Argon2id with 16 MiB
  per trial, :data:`REGISTRATION_TRIALS` expected trials, ~22 s of one core here, see benchmarks/ring.py;
  valid for the period it names and the next, so a registration made once per 90 days keeps an identity
  eligible without a gap). Signing over
  thousands of keys would make each vote tens of kilobytes, so a vote names a **sub-ring** of
  ``Electorate.subring`` (16) eligible keys (fewer while the registry is smaller; readers accept any size up to
  it, so early votes keep counting): the voter's own and decoys drawn pseudo-randomly from the registry
  with a key derived from the voter's secret and the scope (:func:`choose_subring`), so a changed vote on the
  same scope reuses the same ring (no intersection of two rings to narrow the voter down) while the decoys are
  unpredictable to anyone else. The tag does not depend on the ring, so a second sub-ring does not buy a second
  vote.

**What the Sybil cost buys.** One vote per post costs one registration per period: an attacker who wants V
extra votes on *every* post pays V registrations per 90 days (V x ~22 core-seconds at the default; 1,000 fake
voters ~ 6 core-hours a quarter). That stops casual multiplication (a script minting keys for free, which is
what plain per-post pseudonyms allow) and makes vote stuffing cost in proportion to its size, but a funded
attacker can afford it; world tallies are a signal, not an election. Collectives, whose roster is admitted by
vouching, do not have this problem. The anonymity set of a world vote is its sub-ring (16), not the registry.

**Tallying junk.** A vote slot is public. :func:`tally` refuses in order of cost: size (bytes, no decoding),
bounded msgpack decoding, structure and types, scope, ring id or sub-ring membership (set lookups), signature
length for the ring, identical copies; only then the ring signature, and per link tag only from the newest
candidate down until one verifies (older ones are *superseded* without a check). Entries that pass every cheap
check but carry a forged signature cost a reader one ring verification each (~0.6 ms per ring member here):
that is what the slot's proof of work prices (an attacker pays ~43 ms of Argon2id per entry), and
``max_verify`` bounds a tally's expensive work outright.

Two valid votes with the same tag and the same ``seq`` (a voter who equivocates): the one whose bytes have the
lowest BLAKE2b-256 wins, the same on every reader.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

import nacl.bindings as sodium

from . import codec, ring
from .errors import CodecError, RegistrationError, RingError, VoteError
from .identity import Identity, is_valid_verify_key

__all__ = [
    "VERSION",
    "UP",
    "DOWN",
    "NONE",
    "CHOICES",
    "MAX_VOTE_BYTES",
    "MAX_SCOPE",
    "MAX_SEQ",
    "MAX_ROSTER_RING",
    "DEFAULT_SUBRING",
    "Electorate",
    "OpenedVote",
    "Tally",
    "choose_subring",
    "make_vote",
    "open_vote",
    "tally",
    "slot_key",
    "RegistrationParams",
    "REGISTRATION_TRIALS",
    "period_of",
    "registration_id",
    "registry_slot",
    "ElectorateLike",
    "mint_registration",
    "check_registration",
    "electorate_from_registrations",
]

VERSION = 1
UP, DOWN, NONE = 1, -1, 0
#: The words the CLI and API use, and the integers a vote carries.
CHOICES: dict[str, int] = {"up": UP, "down": DOWN, "none": NONE}
_CHOICE_NAMES = {v: k for k, v in CHOICES.items()}

#: A vote fits one datagram.
MAX_VOTE_BYTES = codec.MAX_DATAGRAM
MAX_SCOPE = 64
MAX_SEQ = 2**32 - 1
#: msgpack overhead of a vote besides the signature: list, version, scope (<= 66), choice, seq (<= 5), ring id (34),
#: signature header (3): under 120 bytes.
_OVERHEAD = 120
#: The largest roster whose votes (64 + 32n signature) fit a datagram.
MAX_ROSTER_RING = (MAX_VOTE_BYTES - _OVERHEAD - 64) // 32
#: Sub-ring size in registry mode: 16 keys listed (16 x 34) and a 576-byte signature, ~1.2 KB.
DEFAULT_SUBRING = 16

_MSG_DOMAIN = b"komrade/vote/v1"
_SLOT_DOMAIN = b"komrade/votes/v1"
_PERSON_DECOY = b"komrade/decoy"


def slot_key(scope: bytes) -> bytes:
    """The 20-byte DHT key of the public slot holding the votes on ``scope`` (``komrade/votes/v1 | scope``)."""
    return hashlib.blake2b(_SLOT_DOMAIN + b"|" + bytes(scope), digest_size=20).digest()


def _signed_message(choice: int, seq: int) -> bytes:
    return _MSG_DOMAIN + codec.pack([choice, seq])


@dataclass(frozen=True)
class Electorate:
    """Who may vote on a scope, and how a vote names its ring.

    Build it with :meth:`roster` (every vote signs over all ``keys``) or :meth:`registry` (every vote names a
    sub-ring of ``subring`` keys, all of them in ``keys``).
    """

    keys: frozenset[bytes]
    fixed: bool
    subring: int = DEFAULT_SUBRING
    _ring: tuple[bytes, ...] = field(default=(), repr=False, compare=False)
    _ring_id: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.fixed and len(self._ring) != len(self.keys):
            raise VoteError("build a roster with Electorate.roster(keys)", reason="bad-ring")

    @classmethod
    def roster(cls, keys: Iterable[bytes]) -> Electorate:
        """A fixed ring (a collective's roster). Raises :class:`VoteError` if it is invalid or too large for a
        vote to fit a datagram."""
        try:
            canon = ring.canonical_ring(keys)
        except RingError as exc:
            raise VoteError(f"not a usable roster: {exc}", reason="bad-ring") from None
        if len(canon) > MAX_ROSTER_RING:
            raise VoteError(
                f"a roster vote fits one datagram up to {MAX_ROSTER_RING} members, this roster has {len(canon)}: "
                "use Electorate.registry(roster) (sub-rings)",
                reason="bad-ring",
            )
        return cls(frozenset(canon), True, len(canon), canon, ring.ring_id(canon))

    @classmethod
    def registry(cls, keys: Iterable[bytes], subring: int = DEFAULT_SUBRING) -> Electorate:
        """An eligible set from which each vote names a sub-ring of ``subring`` keys (or all, if fewer).

        Keys that are not valid Ed25519 public keys are dropped (they could never be in a valid ring).
        """
        if not 1 <= subring <= MAX_ROSTER_RING:
            raise VoteError(f"a sub-ring has 1 to {MAX_ROSTER_RING} members", reason="bad-ring")
        valid = frozenset(bytes(k) for k in keys if isinstance(k, bytes) and is_valid_verify_key(k))
        return cls(valid, False, subring)

    @property
    def ring_size(self) -> int:
        """How many keys every valid vote of this electorate is signed over."""
        return len(self._ring) if self.fixed else min(self.subring, len(self.keys))

    @property
    def ring_id(self) -> bytes:
        """Roster mode: the 32-byte ring id every vote carries (empty in registry mode)."""
        return self._ring_id


#: An electorate, or simply the list of a roster's keys (taken as ``Electorate.roster(keys)``).
ElectorateLike = Union[Electorate, Sequence[bytes]]


def _as_electorate(electorate: ElectorateLike) -> Electorate:
    if isinstance(electorate, Electorate):
        return electorate
    if isinstance(electorate, (bytes, str)) or not isinstance(electorate, Sequence):
        raise VoteError("an electorate is an Electorate or a list of keys", reason="bad-ring")
    return Electorate.roster(electorate)


def choose_subring(identity: Identity, electorate: ElectorateLike, scope: bytes) -> tuple[bytes, ...]:
    """The ring ``identity`` signs over in ``scope``: the roster, or its own key and decoys.

    Decoys: the eligible keys with the lowest BLAKE2b(key = a secret derived from the identity and the scope, key_i)
    — deterministic for this voter and scope (a changed vote reuses the ring while the registry is unchanged),
    unpredictable for anyone else, uniform over the registry. Raises :class:`VoteError` (``"not-eligible"``) if
    the identity is not in the electorate.
    """
    electorate = _as_electorate(electorate)
    me = identity.verify_key
    if me not in electorate.keys:
        raise VoteError("this identity is not eligible to vote here", reason="not-eligible")
    if electorate.fixed:
        return electorate._ring
    secret = hashlib.blake2b(
        ring.secret_scalar(identity) + bytes(scope), digest_size=32, person=_PERSON_DECOY
    ).digest()
    others = sorted(
        (k for k in electorate.keys if k != me),
        key=lambda k: hashlib.blake2b(k, digest_size=16, key=secret).digest(),
    )
    return tuple(sorted([me, *others[: electorate.ring_size - 1]]))


def _choice_of(choice: str | int) -> int:
    if isinstance(choice, str) and choice in CHOICES:
        return CHOICES[choice]
    if isinstance(choice, int) and not isinstance(choice, bool) and choice in _CHOICE_NAMES:
        return choice
    raise VoteError(f"a choice is up, down or none, not {choice!r}", reason="malformed")


def make_vote(identity: Identity, electorate: ElectorateLike, scope: bytes, choice: str | int, seq: int) -> bytes:
    """A vote of ``identity`` on ``scope``: ``choice`` is ``"up"``, ``"down"`` or ``"none"`` (or 1, -1, 0).

    ``seq`` orders the same voter's votes on a scope (use a counter or the time in seconds). Raises
    :class:`VoteError` if the identity is not eligible or an argument is out of range.
    """
    scope = bytes(scope)
    if not 1 <= len(scope) <= MAX_SCOPE:
        raise VoteError(f"a scope is 1 to {MAX_SCOPE} bytes", reason="malformed")
    value = _choice_of(choice)
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise VoteError(f"seq is an integer from 0 to {MAX_SEQ}", reason="malformed")
    electorate = _as_electorate(electorate)
    members = choose_subring(identity, electorate, scope)
    signature = ring.sign(identity, members, scope, _signed_message(value, seq))
    ring_field: bytes | list[bytes] = electorate.ring_id if electorate.fixed else list(members)
    data = codec.pack([VERSION, scope, value, seq, ring_field, signature])
    if len(data) > MAX_VOTE_BYTES:  # pragma: no cover - sizes are bounded above
        raise VoteError("the vote does not fit a datagram", reason="too-large")
    return data


class OpenedVote(NamedTuple):
    """A verified vote: its link tag (the same for the same voter on the same scope), choice and sequence.
    A tuple: ``tag, choice, seq = open_vote(...)``."""

    tag: bytes
    choice: int
    seq: int

    @property
    def choice_name(self) -> str:
        """``"up"``, ``"down"`` or ``"none"``."""
        return _CHOICE_NAMES[self.choice]


@dataclass(frozen=True)
class _Parsed:
    scope: bytes
    choice: int
    seq: int
    ring: tuple[bytes, ...]
    signature: bytes


def _is_uint(value: Any, top: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top


def _parse(data: Any, electorate: Electorate, scope: bytes) -> _Parsed:
    """Every check that costs no scalar multiplication, cheapest first; VoteError with a reason."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise VoteError("a vote is bytes", reason="malformed")
    if len(data) > MAX_VOTE_BYTES:
        raise VoteError(f"a vote is at most {MAX_VOTE_BYTES} bytes, got {len(data)}", reason="too-large")
    try:
        obj = codec.unpack(bytes(data), max_len=MAX_VOTE_BYTES, max_depth=2)
    except CodecError:
        raise VoteError("a vote is not well-formed msgpack", reason="malformed") from None
    if not isinstance(obj, list) or len(obj) != 6:
        raise VoteError("a vote is a list of 6 fields", reason="malformed")
    version, v_scope, choice, seq, ring_field, signature = obj
    if version != VERSION or isinstance(version, bool):
        raise VoteError(f"unknown vote version {version!r}", reason="version")
    if not isinstance(v_scope, bytes) or not isinstance(signature, bytes):
        raise VoteError("scope and signature are bytes", reason="malformed")
    if not hmac.compare_digest(v_scope, scope):
        raise VoteError("the vote is for another scope", reason="wrong-scope")
    if not (isinstance(choice, int) and not isinstance(choice, bool) and choice in _CHOICE_NAMES):
        raise VoteError("a choice is 1, -1 or 0", reason="malformed")
    if not _is_uint(seq, MAX_SEQ):
        raise VoteError(f"seq is an integer from 0 to {MAX_SEQ}", reason="malformed")
    if electorate.fixed:
        if not isinstance(ring_field, bytes) or not hmac.compare_digest(ring_field, electorate.ring_id):
            raise VoteError("the vote is signed over another ring than the roster", reason="wrong-ring")
        members = electorate._ring
    else:
        if not isinstance(ring_field, list) or not all(isinstance(k, bytes) for k in ring_field):
            raise VoteError("registry votes list their sub-ring's keys", reason="wrong-ring")
        # At most the sub-ring size; fewer when the registry was smaller as the vote was cast (a young network's
        # votes keep counting as it grows). A small ring only costs its own voter anonymity, never anyone else's.
        if not 1 <= len(ring_field) <= electorate.subring:
            raise VoteError(
                f"a sub-ring has 1 to {electorate.subring} members here, got {len(ring_field)}", reason="wrong-ring"
            )
        if len(set(ring_field)) != len(ring_field):
            raise VoteError("the sub-ring lists a key twice", reason="wrong-ring")
        if not all(k in electorate.keys for k in ring_field):
            raise VoteError("a member of the vote's ring is not eligible", reason="not-eligible")
        members = tuple(sorted(ring_field))
    if len(signature) != ring.signature_size(len(members)):
        raise VoteError("the signature's length does not match the ring", reason="malformed")
    return _Parsed(v_scope, choice, seq, members, signature)


def _verify(parsed: _Parsed) -> bytes:
    try:
        return ring.verify(parsed.ring, parsed.scope, _signed_message(parsed.choice, parsed.seq), parsed.signature)
    except RingError as exc:
        raise VoteError(f"the vote's ring signature is refused: {exc}", reason=exc.reason) from None


def open_vote(data: bytes, electorate: ElectorateLike, scope: bytes) -> OpenedVote:
    """Verify one vote on ``scope`` against ``electorate``; return (tag, choice, seq).

    Raises :class:`VoteError` whose ``reason`` says why: ``too-large``, ``malformed``, ``version``,
    ``wrong-scope``, ``wrong-ring``, ``not-eligible`` (cheap checks), then ``malformed`` (a point or scalar
    refused by the ring layer) or ``forged``.
    """
    parsed = _parse(data, _as_electorate(electorate), bytes(scope))
    return OpenedVote(_verify(parsed), parsed.choice, parsed.seq)


@dataclass(frozen=True)
class Tally:
    """What one reader counts on one scope: the newest valid vote of each link tag."""

    up: int
    down: int
    voters: int
    """Distinct link tags with a valid vote, withdrawn ones (choice none) included."""
    rejected: dict[str, int]
    """Refused entries by reason (see :func:`open_vote`), plus ``duplicate`` (identical bytes) and
    ``unchecked`` (left unverified once ``max_verify`` was spent)."""
    superseded: int = 0
    """Older votes of a tag whose newer vote was valid (never verified)."""
    verified: int = 0
    """Ring verifications performed (the expensive step)."""
    by_tag: dict[bytes, OpenedVote] = field(default_factory=dict)
    """The winning vote of each tag: a voter finds its own with ``ring.link_tag(identity, scope)``."""


def tally(
    votes: Iterable[bytes], electorate: ElectorateLike, scope: bytes, *, max_verify: int | None = None
) -> Tally:
    """Count the votes on ``scope``: one per link tag, the highest ``seq`` winning; refusals counted by reason.

    Cheap checks run on every entry first; then, per tag, candidates are verified from the newest down until
    one verifies, the rest being superseded. At most ``max_verify`` ring verifications are made (default:
    unbounded); entries left over are counted as ``unchecked``.
    """
    scope = bytes(scope)
    electorate = _as_electorate(electorate)
    rejected: dict[str, int] = {}

    def refuse(reason: str, n: int = 1) -> None:
        rejected[reason] = rejected.get(reason, 0) + n

    seen: set[bytes] = set()
    candidates: dict[bytes, list[tuple[int, bytes, _Parsed]]] = {}
    for data in votes:
        try:
            parsed = _parse(data, electorate, scope)
        except VoteError as exc:
            refuse(exc.reason)
            continue
        digest = hashlib.blake2b(bytes(data), digest_size=32).digest()
        if digest in seen:
            refuse("duplicate")
            continue
        seen.add(digest)
        candidates.setdefault(parsed.signature[:32], []).append((parsed.seq, digest, parsed))

    budget = max_verify if max_verify is not None else -1
    verified = superseded = 0
    winners: dict[bytes, OpenedVote] = {}
    # Tags in a fixed order, so a budget cut is the same on every reader holding the same set.
    for claimed in sorted(candidates):
        queue = sorted(candidates[claimed], key=lambda c: (-c[0], c[1]))
        for pos, (_, _, parsed) in enumerate(queue):
            if budget == 0:
                refuse("unchecked", len(queue) - pos)
                break
            budget -= 1
            verified += 1
            try:
                tag = _verify(parsed)
            except VoteError as exc:
                refuse(exc.reason)
                continue
            winners[tag] = OpenedVote(tag, parsed.choice, parsed.seq)
            superseded += len(queue) - pos - 1
            break
    up = sum(1 for v in winners.values() if v.choice == UP)
    down = sum(1 for v in winners.values() if v.choice == DOWN)
    return Tally(up, down, len(winners), rejected, superseded, verified, winners)


# -- registration: the proof of work that makes an identity eligible on world posts --------------------------

_REG_SALT = b"komrade/reg/v1\x00\x00"
_REG_PERSON = b"komrade/reg"
#: Expected Argon2id trials of one registration (16 MiB each, ~5 ms here, 2x under load): ~22 s of one core.
REGISTRATION_TRIALS = 4096


@dataclass(frozen=True)
class RegistrationParams:
    """Difficulty of a registration; every reader of a network must agree."""

    trials: float = REGISTRATION_TRIALS
    memlimit: int = 16 * 1024 * 1024
    period_seconds: int = 90 * 86400

    @property
    def target(self) -> int:
        """The highest acceptable 64-bit work value."""
        return 2**64 - 1 if self.trials <= 1 else int(2**64 / self.trials)


def registration_id(verify_key: bytes, period: int) -> bytes:
    """The 20-byte DHT key a registration is stored under (``komrade/reg/v1 | key | period``), so a reader can
    fetch the registration of each key a vote's sub-ring names."""
    data = bytes(verify_key) + period.to_bytes(8, "big")
    return hashlib.blake2b(data, digest_size=20, person=b"komrade/reg-id").digest()


def registry_slot(period: int) -> bytes:
    """The 20-byte key of the public slot listing a period's registrations (voters draw their decoys from it)."""
    return hashlib.blake2b(b"komrade/registry/v1|" + period.to_bytes(8, "big"), digest_size=20).digest()


def period_of(now: float, params: RegistrationParams = RegistrationParams()) -> int:
    """The registration period (an integer) that contains the time ``now`` (seconds since the epoch)."""
    return int(now // params.period_seconds)


def _reg_work(key: bytes, period: int, nonce: bytes, params: RegistrationParams) -> int:
    base = hashlib.blake2b(key + period.to_bytes(8, "big") + nonce, digest_size=32, person=_REG_PERSON).digest()
    out = sodium.crypto_pwhash_alg(16, base, _REG_SALT, 1, params.memlimit, sodium.crypto_pwhash_ALG_ARGON2ID13)
    return int.from_bytes(out[:8], "big")


def mint_registration(
    verify_key: bytes, period: int, params: RegistrationParams = RegistrationParams()
) -> bytes:
    """Do the work and return the registration ``[1, verify_key, period, nonce]`` (msgpack, ~60 bytes).

    The work binds the key and the period, so it cannot be reused for another identity or another period.
    Registering someone else's key only makes them eligible, so the record needs no signature.
    """
    if not is_valid_verify_key(verify_key):
        raise RegistrationError("not a valid Ed25519 public key")
    target = params.target
    nonce = int.from_bytes(os.urandom(8), "big")
    while True:
        candidate = nonce.to_bytes(8, "big")
        if _reg_work(verify_key, period, candidate, params) <= target:
            return codec.pack([VERSION, bytes(verify_key), period, candidate])
        nonce = (nonce + 1) % 2**64


def check_registration(
    data: bytes, params: RegistrationParams = RegistrationParams(), now: float | None = None
) -> bytes:
    """The verify key a registration makes eligible now; :class:`RegistrationError` if it is malformed, for a
    period other than the current one or the one before, or carries too little work (one Argon2id, ~9 ms)."""
    try:
        obj = codec.unpack(data, max_len=128, max_depth=1)
    except CodecError:
        raise RegistrationError("a registration is not well-formed msgpack") from None
    if not (isinstance(obj, list) and len(obj) == 4 and obj[0] == VERSION):
        raise RegistrationError("a registration is [1, key, period, nonce]")
    _, key, period, nonce = obj
    if not (isinstance(key, bytes) and _is_uint(period, 2**40) and isinstance(nonce, bytes) and len(nonce) == 8):
        raise RegistrationError("a registration is [1, key, period, nonce]")
    current = period_of(time.time() if now is None else now, params)
    if period not in (current, current - 1):
        raise RegistrationError(f"the registration is for period {period}, the current one is {current}")
    if not is_valid_verify_key(key):
        raise RegistrationError("the registered key is not a valid Ed25519 public key")
    if _reg_work(key, period, nonce, params) > params.target:
        raise RegistrationError("the registration carries too little work")
    return key


def electorate_from_registrations(
    records: Iterable[bytes],
    params: RegistrationParams = RegistrationParams(),
    now: float | None = None,
    subring: int = DEFAULT_SUBRING,
) -> tuple[Electorate, int]:
    """The registry electorate of every valid registration among ``records``, and how many were refused."""
    keys: set[bytes] = set()
    refused = 0
    for data in records:
        try:
            keys.add(check_registration(data, params, now))
        except RegistrationError:
            refused += 1
    return Electorate.registry(keys, subring), refused

