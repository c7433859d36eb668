"""A collective (a group that governs itself) as a log of signed operations, replayed to the same state by all.

The group's state is never stored as such: every member appends *operations* to the group's slot (encrypted
under the group key by the layer above) and computes the state with :func:`replay`, which gives the same
result whatever order the operations arrived in, whatever duplicates or junk the slot holds, and when two
members act at once.

**Operations** (msgpack, at most :data:`MAX_OP_BYTES`)::

    [1, collective, kind, author, parents, lamport, time, body, signature]
    collective  bytes(32)   the collective's id: the hash of its founding operation (empty in that one)
    kind        str         found | join | vouch | propose | vote | result | rekey
    author      bytes(32)   the Ed25519 key that signs; empty for an anonymous vote
    parents     [bytes(32)] hashes of the operations the author had seen and nothing had yet followed
                            (the heads), sorted; 1..8, none for ``found``
    lamport     int         1 + the largest lamport of the parents (0 for ``found``)
    time        int         seconds since the epoch, as the author claims it (0 for a vote)
    body        map         per kind, below
    signature   bytes(64)   Ed25519 by ``author`` over "komrade/collective/v1" | pack(the 8 fields above);
                            empty for a vote, whose body carries a ring signature instead

    found    {name, constitution, members}   the founder is one of ``members``
    join     {note}                          by the newcomer (not a member)
    vouch    {join}                          by a member, for a join request
    propose  {action: "amend", changes} | {action: "remove", member}, and {closes_at}
    vote     {proposal, vote}                ``vote`` is a komrade_dht.votes vote, scope = "komrade/proposal" |
                                             proposal hash, over the roster at the proposal (anonymous)
    result   {proposal, outcome}             by a member: closes a proposal, "passed" or "failed"
    rekey    {epoch, key_id}                 by a member after a removal: announces the new group key's id

An operation's hash is BLAKE2b-256 of its bytes. Admissions and the effects of a proposal are not operations:
every replica derives them at the same point of the order.

**Order.** Valid operations are applied in the order of ``(lamport, hash)``. Lamport clocks make this a
linear extension of causality (an operation comes after everything its author had seen), and the hash breaks
ties between operations made at once by different members, the same way on every replica. An operation whose
parents are not all known is *pending* (not applied until they arrive); a malformed or forged one, or one whose
lamport is not 1 + its parents', is *rejected* and cannot be a parent.

**Rules**, applied at the operation's place in the order (an operation that breaks one is *ignored* with a
reason; it stays a valid parent, its effect is just nil):

* Only members (at that point) may vouch, propose, close or rekey. A vouch counts once per member and join.
* A join request from a member, or from someone with a join already pending, is ignored.
* **Admission**: a newcomer is admitted at the first point where the vouches from current members reach the
  constitution's quorum for the current size (``max(vouch_min, ceil(vouch_share x members))``, at most the
  number of members). Pending joins are re-checked, in the order of their requests, after every change of
  the constitution or the roster.
* **A vouch from a member who is removed**: a vouch applied after the removal is ignored; an admission already
  made stands; the removed member's vouches for joins still pending are dropped.
* **Proposals**: the ring of a proposal is the roster at the proposal's place; members admitted later do not
  vote on it, members removed later still may (the ring cannot tell them apart). It needs
  ``max(1, ceil(share x ring size))`` up-votes (share: ``amend_share`` or ``remove_share`` of the constitution
  at the proposal), counted one per link tag, newest ``seq`` per tag; it **passes at the first vote that brings
  the up-votes to that number**, and its effect applies right there. A down or none vote only matters by not
  being an up-vote.
* **Large collectives**: a roster of up to 32 members votes over the whole roster (a vote fits a datagram);
  a larger one votes in registry mode over its roster (komrade_dht.votes), each vote naming a sub-ring of 16
  members, so the anonymity set of one vote is 16, not the roster.
* **Deadlines**: a proposal is open until it passes or a ``result`` closes it. A member may close it with
  ``failed`` once its ``closes_at`` has passed (by the result's own claimed time); ``passed`` only confirms a
  proposal that has passed. A result that says otherwise is ignored (``bad-result``). **A vote after the
  proposal is decided** (passed or closed) is ignored (``late``), so a vote cast after the deadline counts only
  if no member has closed the proposal yet.
* **Two proposals at once** are independent; each takes effect when it passes, in the order they pass.
  Amendments change only the fields they name (two amendments to different fields both apply; to the same
  field, the later to pass wins). A removal whose target is no longer a member by then changes nothing.
  Amendments are checked when proposed: a constitution they would make invalid is refused (``bad-proposal``).
* **Key rotation**: a removal that passes moves the collective to a new key epoch; the first ``rekey`` (in the
  order) by a member for that epoch names the new key (its id: the key's hash); concurrent ones lose. The layer
  above seals the new key to every remaining member; the removed member reads nothing sealed after.

**Trust.** Members are accountable (signed operations), anonymous votes are not (ring signatures), so the
unsigned wrapper of a vote (parents, lamport) could be rewritten by a member who holds it; doing so can only
move that vote in the order, never change or multiply it (one vote per tag). Claimed times are the author's word:
a member who closes a proposal early by lying about the time signs that lie.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from . import codec, votes
from .errors import CodecError, CollectiveError, VoteError
from .identity import Identity, PublicIdentity, is_valid_verify_key

__all__ = [
    "VERSION",
    "MAX_OP_BYTES",
    "MAX_PARENTS",
    "KINDS",
    "Constitution",
    "Op",
    "JoinState",
    "ProposalState",
    "State",
    "op_hash",
    "decode_op",
    "proposal_scope",
    "found",
    "join",
    "vouch",
    "propose_amend",
    "propose_remove",
    "vote",
    "result",
    "rekey",
    "replay",
]

VERSION = 1
MAX_OP_BYTES = 2048
MAX_PARENTS = 8
MAX_MEMBERS = 4096
MAX_NAME = 200
KINDS = ("found", "join", "vouch", "propose", "vote", "result", "rekey")
_SIG_DOMAIN = b"komrade/collective/v1"
_SCOPE_PREFIX = b"komrade/proposal"
_SHARE_MAX = 1000
_TIME_MAX = 2**40


@dataclass(frozen=True)
class Constitution:
    """The rules a collective sets itself (and amends by vote). Shares are fractions (numerator, denominator)."""

    vouch_min: int = 2
    """A newcomer needs at least this many vouches from members..."""
    vouch_share: tuple[int, int] = (0, 1)
    """...and at least this share of the members (rounded up): the quorum grows with the group if non-zero."""
    amend_share: tuple[int, int] = (1, 2)
    """Share of the proposal's ring whose up-votes amend the constitution."""
    remove_share: tuple[int, int] = (1, 2)
    """Share of the proposal's ring whose up-votes remove a member."""
    vote_window: int = 7 * 86400
    """Seconds a proposal stays open before a member may close it as failed."""

    def __post_init__(self) -> None:
        if not (_is_int(self.vouch_min) and 1 <= self.vouch_min <= MAX_MEMBERS):
            raise CollectiveError(f"vouch_min is 1 to {MAX_MEMBERS}")
        for name in ("vouch_share", "amend_share", "remove_share"):
            share = getattr(self, name)
            if isinstance(share, list):
                share = tuple(share)
                object.__setattr__(self, name, share)
            if not (isinstance(share, tuple) and len(share) == 2 and all(_is_int(v) for v in share)):
                raise CollectiveError(f"{name} is a fraction [numerator, denominator]")
            num, den = share
            low = 0 if name == "vouch_share" else 1
            if not (1 <= den <= _SHARE_MAX and low <= num <= den):
                raise CollectiveError(f"{name} must be between {low}/{den} and 1 (denominator up to {_SHARE_MAX})")
        if not (_is_int(self.vote_window) and 0 <= self.vote_window <= 366 * 86400):
            raise CollectiveError("vote_window is 0 to 366 days, in seconds")

    def quorum(self, members: int) -> int:
        """Vouches a newcomer needs when the collective has ``members`` members."""
        num, den = self.vouch_share
        return max(1, min(members, max(self.vouch_min, -(-num * members // den))))

    def needed(self, action: str, ring_size: int) -> int:
        """Up-votes a proposal of ``action`` (``amend`` or ``remove``) needs over a ring of ``ring_size``."""
        num, den = self.amend_share if action == "amend" else self.remove_share
        return max(1, -(-num * ring_size // den))

    def to_wire(self) -> dict[str, Any]:
        """As carried in a ``found`` operation."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_wire(cls, obj: Any) -> Constitution:
        """From a ``found`` operation's map; CollectiveError if a field is unknown, missing or invalid."""
        if not isinstance(obj, dict) or set(obj) != {f.name for f in fields(cls)}:
            raise CollectiveError("a constitution names exactly its five fields")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in obj.items()})

    def amended(self, changes: Mapping[str, Any]) -> Constitution:
        """This constitution with ``changes`` applied; CollectiveError if a field is unknown or the result invalid."""
        names = {f.name for f in fields(self)}
        if not changes or not set(changes) <= names:
            raise CollectiveError(f"an amendment changes some of {sorted(names)}")
        return replace(self, **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Op:
    """A decoded, signature-checked operation."""

    hash: bytes
    collective: bytes
    kind: str
    author: bytes
    parents: tuple[bytes, ...]
    lamport: int
    time: int
    body: dict[str, Any]
    raw: bytes = field(repr=False)


def op_hash(data: bytes) -> bytes:
    """The 32-byte hash of an operation's bytes (BLAKE2b-256): its name as a parent and a reference."""
    return hashlib.blake2b(bytes(data), digest_size=32, person=b"komrade/coll-op").digest()


def _signed(fields8: list[Any]) -> bytes:
    return _SIG_DOMAIN + codec.pack(fields8)


def proposal_scope(proposal: bytes) -> bytes:
    """The vote scope of a proposal: "komrade/proposal" | its hash (48 bytes, apart from every post id)."""
    return _SCOPE_PREFIX + bytes(proposal)


def _check_body(kind: str, body: Any) -> None:
    """Shape of each kind's body (types and sizes only; meaning is checked at replay)."""

    def is_hash(v: Any) -> bool:
        return isinstance(v, bytes) and len(v) == 32

    ok = isinstance(body, dict)
    if ok and kind == "found":
        ok = (
            set(body) == {"name", "constitution", "members"}
            and isinstance(body["name"], str)
            and len(body["name"]) <= MAX_NAME
            and isinstance(body["members"], list)
            and 1 <= len(body["members"]) <= MAX_MEMBERS
            and all(isinstance(m, bytes) and is_valid_verify_key(m) for m in body["members"])
            and len(set(body["members"])) == len(body["members"])
        )
        if ok:
            Constitution.from_wire(body["constitution"])
    elif ok and kind == "join":
        ok = set(body) == {"note"} and isinstance(body["note"], str) and len(body["note"]) <= MAX_NAME
    elif ok and kind == "vouch":
        ok = set(body) == {"join"} and is_hash(body["join"])
    elif ok and kind == "propose":
        ok = _is_int(body.get("closes_at")) and 0 <= body["closes_at"] <= _TIME_MAX
        if ok and body.get("action") == "amend":
            ok = set(body) == {"action", "changes", "closes_at"} and isinstance(body["changes"], dict)
        elif ok and body.get("action") == "remove":
            ok = set(body) == {"action", "member", "closes_at"} and is_hash(body["member"])
        else:
            ok = False
    elif ok and kind == "vote":
        ok = set(body) == {"proposal", "vote"} and is_hash(body["proposal"]) and isinstance(body["vote"], bytes)
    elif ok and kind == "result":
        ok = set(body) == {"proposal", "outcome"} and is_hash(body["proposal"])
        ok = ok and body["outcome"] in ("passed", "failed")
    elif ok and kind == "rekey":
        ok = set(body) == {"epoch", "key_id"} and _is_int(body["epoch"]) and 1 <= body["epoch"] <= 2**32
        ok = ok and is_hash(body["key_id"])
    if not ok:
        raise CollectiveError(f"the body of a {kind} operation is malformed")


def decode_op(data: bytes) -> Op:
    """Decode an operation and check its shape and signature (not its place in the log).

    Raises :class:`CollectiveError` (malformed) or :class:`CollectiveError` whose message says ``forged``.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) > MAX_OP_BYTES:
        raise CollectiveError(f"an operation is bytes, at most {MAX_OP_BYTES}")
    data = bytes(data)
    try:
        obj = codec.unpack(data, max_len=MAX_OP_BYTES, max_depth=4)
    except CodecError:
        raise CollectiveError("an operation is not well-formed msgpack") from None
    if not (isinstance(obj, list) and len(obj) == 9 and obj[0] == VERSION and not isinstance(obj[0], bool)):
        raise CollectiveError("an operation is a list of 9 fields, version 1")
    _, cid, kind, author, parents, lamport, time, body, sig = obj
    if kind not in KINDS:
        raise CollectiveError(f"unknown operation kind {kind!r}")
    if not (isinstance(cid, bytes) and isinstance(author, bytes) and isinstance(sig, bytes)):
        raise CollectiveError("collective, author and signature are bytes")
    if not (isinstance(parents, list) and all(isinstance(p, bytes) and len(p) == 32 for p in parents)):
        raise CollectiveError("parents are 32-byte hashes")
    if parents != sorted(set(parents)) or len(parents) > MAX_PARENTS:
        raise CollectiveError(f"parents are sorted, distinct, at most {MAX_PARENTS}")
    if not (_is_int(lamport) and 0 <= lamport <= 2**40 and _is_int(time) and 0 <= time <= _TIME_MAX):
        raise CollectiveError("lamport and time are non-negative integers")
    if kind == "found":
        if cid or parents or lamport != 0:
            raise CollectiveError("a founding operation has no collective id, no parents and lamport 0")
    elif len(cid) != 32 or not parents or lamport == 0:
        raise CollectiveError("an operation names its collective and at least one parent")
    _check_body(kind, body)
    if kind == "vote":
        if author or sig or time:
            raise CollectiveError("an anonymous vote has no author, no time and no signature")
    else:
        if not is_valid_verify_key(author) or len(sig) != 64:
            raise CollectiveError("an operation's author is an Ed25519 key and its signature 64 bytes")
        if not PublicIdentity(author).verify(_signed(obj[:8]), sig):
            raise CollectiveError("forged: the operation's signature does not verify")
    return Op(op_hash(data), cid, kind, author, tuple(parents), lamport, time, body, data)


# -- building operations --------------------------------------------------------------------------------------


def _make(identity: Identity | None, state: State | None, kind: str, body: dict[str, Any], time: int) -> bytes:
    if state is None:
        cid, parents, lamport = b"", [], 0
    else:
        cid, parents = state.collective_id, sorted(state.heads)[-MAX_PARENTS:]
        lamport = 1 + max(state.lamport[p] for p in parents)
    _check_body(kind, body)
    if identity is None:
        head = [VERSION, cid, kind, b"", parents, lamport, 0, body]
        data = codec.pack([*head, b""])
    else:
        head = [VERSION, cid, kind, identity.verify_key, parents, lamport, int(time), body]
        data = codec.pack([*head, identity.sign(_signed(head))])
    if len(data) > MAX_OP_BYTES:
        raise CollectiveError(f"the operation is larger than {MAX_OP_BYTES} bytes")
    return data


def found(
    identity: Identity, name: str, constitution: Constitution, members: Iterable[bytes], time: int
) -> bytes:
    """The founding operation: ``name``, the constitution and the founding roster (which must include the
    founder). Its hash is the collective's id."""
    roster = sorted({bytes(m) for m in members} | {identity.verify_key})
    return _make(identity, None, "found", {"name": name, "constitution": constitution.to_wire(),
                                           "members": roster}, time)


def join(identity: Identity, state: State, note: str, time: int) -> bytes:
    """A newcomer's request to join (the newcomer has the state it was invited with)."""
    return _make(identity, state, "join", {"note": note}, time)


def vouch(identity: Identity, state: State, join_op: bytes, time: int) -> bytes:
    """A member vouches for the join request whose hash is ``join_op``."""
    return _make(identity, state, "vouch", {"join": bytes(join_op)}, time)


def propose_amend(identity: Identity, state: State, changes: Mapping[str, Any], time: int) -> bytes:
    """A member proposes to change some fields of the constitution (checked now: CollectiveError if invalid)."""
    state.constitution.amended(changes)
    wire = {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}
    closes_at = int(time) + state.constitution.vote_window
    return _make(identity, state, "propose", {"action": "amend", "changes": wire, "closes_at": closes_at}, time)


def propose_remove(identity: Identity, state: State, member: bytes, time: int) -> bytes:
    """A member proposes to remove ``member``."""
    if member not in state.members:
        raise CollectiveError("only a member can be proposed for removal")
    closes_at = int(time) + state.constitution.vote_window
    return _make(identity, state, "propose", {"action": "remove", "member": bytes(member), "closes_at": closes_at},
                 time)


@functools.lru_cache(maxsize=64)
def _electorate(ring_keys: tuple[bytes, ...]) -> votes.Electorate:
    if len(ring_keys) <= votes.MAX_ROSTER_RING:
        return votes.Electorate.roster(ring_keys)
    return votes.Electorate.registry(ring_keys)


def vote(identity: Identity, state: State, proposal: bytes, choice: str, seq: int) -> bytes:
    """An anonymous vote (``up`` = yes, ``down`` = no, ``none`` = withdraw) on an open proposal; the operation
    carries no author, no time and no Ed25519 signature."""
    prop = state.proposals.get(bytes(proposal))
    if prop is None:
        raise CollectiveError("no such proposal")
    if prop.status != "open":
        raise CollectiveError(f"the proposal is {prop.status}")
    ballot = votes.make_vote(identity, _electorate(prop.ring), proposal_scope(proposal), choice, seq)
    return _make(None, state, "vote", {"proposal": bytes(proposal), "vote": ballot}, 0)


def result(identity: Identity, state: State, proposal: bytes, outcome: str, time: int) -> bytes:
    """A member closes a proposal: ``failed`` (after its deadline) or ``passed`` (confirming it)."""
    return _make(identity, state, "result", {"proposal": bytes(proposal), "outcome": outcome}, time)


def rekey(identity: Identity, state: State, key_id: bytes, time: int) -> bytes:
    """A member announces the new group key (by its 32-byte id) for the current key epoch, after a removal."""
    return _make(identity, state, "rekey", {"epoch": state.key_epoch, "key_id": bytes(key_id)}, time)


# -- replay ---------------------------------------------------------------------------------------------------


@dataclass
class JoinState:
    """A join request and its vouches."""

    newcomer: bytes
    vouchers: set[bytes]
    status: str = "pending"
    """``pending``, ``admitted``."""


@dataclass
class ProposalState:
    """A proposal and its anonymous votes (newest per link tag)."""

    author: bytes
    action: str
    target: Any
    """The changes (amend) or the member (remove)."""
    ring: tuple[bytes, ...]
    needed: int
    closes_at: int
    status: str = "open"
    """``open``, ``passed``, ``failed``."""
    ballots: dict[bytes, tuple[int, bytes, int]] = field(default_factory=dict)
    """link tag -> (seq, vote hash, choice)."""

    @property
    def up(self) -> int:
        return sum(1 for _, _, c in self.ballots.values() if c == votes.UP)

    @property
    def down(self) -> int:
        return sum(1 for _, _, c in self.ballots.values() if c == votes.DOWN)


@dataclass
class State:
    """What a replay derives. ``summary()`` is the comparable essence (identical on every replica)."""

    collective_id: bytes
    name: str
    constitution: Constitution
    members: set[bytes]
    founders: tuple[bytes, ...]
    key_epoch: int = 0
    key_id: bytes | None = None
    joins: dict[bytes, JoinState] = field(default_factory=dict)
    proposals: dict[bytes, ProposalState] = field(default_factory=dict)
    order: list[bytes] = field(default_factory=list)
    """Hashes of the valid operations, in the order applied."""
    lamport: dict[bytes, int] = field(default_factory=dict)
    heads: set[bytes] = field(default_factory=set)
    """Valid operations nothing follows yet: the parents of the next operation."""
    events: list[tuple[bytes, str]] = field(default_factory=list)
    """(operation hash, what happened), in order: admissions, passes, removals, amendments, rekeys."""
    ignored: dict[bytes, str] = field(default_factory=dict)
    """Valid operations that had no effect, with the rule they broke."""
    rejected: dict[bytes, str] = field(default_factory=dict)
    """Operations that are malformed, forged, from another collective or with a wrong lamport."""
    pending: set[bytes] = field(default_factory=set)
    """Operations waiting for a parent that has not arrived."""

    def summary(self) -> dict[str, Any]:
        """Everything that must be the same on every replica, in plain comparable types."""
        return {
            "id": self.collective_id.hex(),
            "name": self.name,
            "constitution": self.constitution.to_wire(),
            "members": sorted(m.hex() for m in self.members),
            "key": [self.key_epoch, self.key_id.hex() if self.key_id else None],
            "joins": {h.hex(): [j.newcomer.hex(), sorted(v.hex() for v in j.vouchers), j.status]
                      for h, j in sorted(self.joins.items())},
            "proposals": {h.hex(): [p.action, p.status, p.up, p.down, p.needed, len(p.ring)]
                          for h, p in sorted(self.proposals.items())},
            "order": [h.hex() for h in self.order],
            "events": [(h.hex(), e) for h, e in self.events],
            "ignored": {h.hex(): r for h, r in sorted(self.ignored.items())},
            "rejected": {h.hex(): r for h, r in sorted(self.rejected.items())},
            "pending": sorted(h.hex() for h in self.pending),
        }


def replay(ops: Iterable[bytes], collective_id: bytes | None = None) -> State:
    """Derive a collective's state from its operations (any order, duplicates and junk allowed).

    ``collective_id`` picks the collective when the input holds several founding operations; without it there
    must be exactly one. Raises :class:`CollectiveError` only when no usable founding operation is found.
    """
    decoded: dict[bytes, Op] = {}
    rejected: dict[bytes, str] = {}
    for data in ops:
        h = op_hash(bytes(data)) if isinstance(data, (bytes, bytearray, memoryview)) else b"\x00" * 32
        if h in decoded:
            continue
        try:
            decoded[h] = decode_op(data)
        except CollectiveError as exc:
            rejected[h] = "forged" if str(exc).startswith("forged") else "malformed"
    genesis = [op for op in decoded.values() if op.kind == "found"]
    if collective_id is not None:
        genesis = [op for op in genesis if op.hash == collective_id]
    if len(genesis) != 1:
        raise CollectiveError(
            "no founding operation for this collective" if not genesis
            else "several founding operations: name the collective"
        )
    g = genesis[0]
    body = g.body
    if g.author not in body["members"]:
        raise CollectiveError("the founder is not among the founding members")
    state = State(g.hash, body["name"], Constitution.from_wire(body["constitution"]), set(body["members"]),
                  tuple(sorted(body["members"])))
    state.rejected = rejected
    state.order.append(g.hash)
    state.lamport[g.hash] = 0
    state.heads.add(g.hash)
    state.events.append((g.hash, f"founded with {len(state.members)} members"))

    rest = [op for op in decoded.values() if op is not g]
    for op in sorted(rest, key=lambda o: (o.lamport, o.hash)):
        if op.kind == "found":
            state.rejected[op.hash] = "another-collective"
            continue
        if op.collective != state.collective_id:
            state.rejected[op.hash] = "another-collective"
            continue
        missing = [p for p in op.parents if p not in state.lamport]
        if missing:
            if any(p in state.rejected for p in missing):
                state.rejected[op.hash] = "bad-parent"
            else:
                state.pending.add(op.hash)
            continue
        if op.lamport != 1 + max(state.lamport[p] for p in op.parents):
            state.rejected[op.hash] = "bad-lamport"
            continue
        state.lamport[op.hash] = op.lamport
        state.order.append(op.hash)
        state.heads.difference_update(op.parents)
        state.heads.add(op.hash)
        reason = _apply(state, op)
        if reason:
            state.ignored[op.hash] = reason
    # Every op whose parents are all valid was applied above (parents sort first). A pending op whose parents
    # are now all known claimed a lamport below a parent's; one below a rejected op can never apply.
    changed = True
    while changed:
        changed = False
        for h in sorted(state.pending):
            parents = decoded[h].parents
            if all(p in state.lamport for p in parents) or any(p in state.rejected for p in parents):
                state.pending.discard(h)
                state.rejected[h] = "bad-lamport" if all(p in state.lamport for p in parents) else "bad-parent"
                changed = True
    return state


def _member_only(state: State, op: Op) -> str | None:
    return None if op.author in state.members else "not-a-member"


def _apply(state: State, op: Op) -> str | None:
    """Apply one valid operation at its place; the reason it had no effect, or None."""
    if op.kind == "vote":
        return _apply_vote(state, op)  # anonymous: no author to check
    return _apply_signed(state, op)


def _apply_signed(state: State, op: Op) -> str | None:
    body = op.body
    if op.kind == "join":
        if op.author in state.members:
            return "already-a-member"
        if any(j.newcomer == op.author and j.status == "pending" for j in state.joins.values()):
            return "duplicate-join"
        state.joins[op.hash] = JoinState(op.author, set())
        _admit_ready(state, op.hash)
        return None
    if (reason := _member_only(state, op)) is not None:
        return reason
    if op.kind == "vouch":
        j = state.joins.get(body["join"])
        if j is None:
            return "unknown-join"
        if j.status != "pending":
            return "already-admitted"
        if op.author in j.vouchers:
            return "duplicate-vouch"
        j.vouchers.add(op.author)
        _admit_ready(state, op.hash)
        return None
    if op.kind == "propose":
        if body["action"] == "amend":
            try:
                state.constitution.amended(body["changes"])
            except (CollectiveError, TypeError):
                return "bad-proposal"
            target: Any = dict(body["changes"])
            share_action = "amend"
        else:
            if body["member"] not in state.members:
                return "bad-proposal"
            target = body["member"]
            share_action = "remove"
        ring_keys = tuple(sorted(state.members))
        state.proposals[op.hash] = ProposalState(
            op.author, body["action"], target, ring_keys,
            state.constitution.needed(share_action, len(ring_keys)), body["closes_at"],
        )
        return None
    if op.kind == "result":
        prop = state.proposals.get(body["proposal"])
        if prop is None:
            return "unknown-proposal"
        if body["outcome"] == "passed":
            return None if prop.status == "passed" else "bad-result"
        if prop.status != "open" or op.time < prop.closes_at:
            return "bad-result"
        prop.status = "failed"
        state.events.append((op.hash, f"proposal {body['proposal'].hex()[:12]} failed ({prop.up}/{prop.needed})"))
        return None
    if op.kind == "rekey":
        if body["epoch"] != state.key_epoch or state.key_epoch == 0:
            return "wrong-epoch"
        if state.key_id is not None:
            return "already-rekeyed"
        state.key_id = body["key_id"]
        state.events.append((op.hash, f"key epoch {state.key_epoch}: new key announced"))
        return None
    raise AssertionError(op.kind)  # pragma: no cover - "found" handled in replay, "vote" in _apply


def _apply_vote(state: State, op: Op) -> str | None:
    prop = state.proposals.get(op.body["proposal"])
    if prop is None:
        return "unknown-proposal"
    if prop.status != "open":
        return "late"
    try:
        opened = votes.open_vote(op.body["vote"], _electorate(prop.ring), proposal_scope(op.body["proposal"]))
    except VoteError as exc:
        return f"vote-{exc.reason}"
    digest = hashlib.blake2b(op.body["vote"], digest_size=32).digest()
    old = prop.ballots.get(opened.tag)
    if old is not None and (old[0], _neg(old[1])) >= (opened.seq, _neg(digest)):
        return "superseded"
    prop.ballots[opened.tag] = (opened.seq, digest, opened.choice)
    if prop.up >= prop.needed:
        prop.status = "passed"
        _enact(state, op, prop)
    return None


def _neg(digest: bytes) -> bytes:
    """For ties on seq the lowest digest wins (as votes.tally): compare inverted bytes."""
    return bytes(255 - b for b in digest)


def _enact(state: State, op: Op, prop: ProposalState) -> None:
    if prop.action == "amend":
        try:
            state.constitution = state.constitution.amended(prop.target)
        except CollectiveError:  # pragma: no cover - fields are checked one by one when proposed
            state.events.append((op.hash, "amendment passed but no longer valid; nothing changed"))
            return
        state.events.append((op.hash, f"constitution amended: {sorted(prop.target)}"))
    else:
        member = prop.target
        if member not in state.members:
            state.events.append((op.hash, "removal passed; already not a member"))
        else:
            state.members.discard(member)
            for j in state.joins.values():
                if j.status == "pending":
                    j.vouchers.discard(member)
            state.key_epoch += 1
            state.key_id = None
            state.events.append((op.hash, f"member {member.hex()[:12]} removed; key epoch {state.key_epoch}"))
    _admit_ready(state, op.hash)


def _admit_ready(state: State, at: bytes) -> None:
    """Admit every pending newcomer whose vouches from current members reach the quorum, in request order."""
    changed = True
    while changed:
        changed = False
        for jh in [h for h in state.order if h in state.joins]:
            j = state.joins[jh]
            if j.status != "pending" or j.newcomer in state.members:
                continue
            if len(j.vouchers & state.members) >= state.constitution.quorum(len(state.members)):
                j.status = "admitted"
                state.members.add(j.newcomer)
                state.events.append((at, f"admitted {j.newcomer.hex()[:12]} with {len(j.vouchers)} vouches"))
                changed = True

