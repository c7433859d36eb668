"""Collectives as replayed logs of signed operations (komrade_dht.collective)."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from komrade_dht import codec, ring, votes
from komrade_dht import collective as C
from komrade_dht.errors import CollectiveError, VoteError
from komrade_dht.identity import Identity

IDS = [Identity.from_seed(bytes([i + 100]) * 32) for i in range(12)]
A, B, CC, D, E = IDS[:5]  # the five founders
N1, N2, N3 = IDS[5], IDS[6], IDS[7]  # newcomers
T = 1_800_000_000


class Log:
    """A member's view: the ops it has, replayed after each addition."""

    def __init__(self, ops: list[bytes]) -> None:
        self.ops = list(ops)
        self.state = C.replay(self.ops)

    def add(self, op: bytes) -> bytes:
        self.ops.append(op)
        self.state = C.replay(self.ops)
        return C.op_hash(op)


def _founded(constitution: C.Constitution = C.Constitution(vouch_min=2)) -> Log:
    return Log([C.found(A, "Kollektiv", constitution, [i.verify_key for i in (A, B, CC, D, E)], T)])


def test_constitution_quorum_and_shares() -> None:
    c = C.Constitution(vouch_min=2, vouch_share=(1, 3), amend_share=(2, 3))
    assert [c.quorum(n) for n in (1, 2, 5, 6, 9, 12)] == [1, 2, 2, 2, 3, 4]
    assert c.needed("amend", 6) == 4 and c.needed("remove", 6) == 3
    assert C.Constitution.from_wire(c.to_wire()) == c
    for bad in ({"vouch_min": 0}, {"amend_share": (0, 2)}, {"remove_share": (3, 2)}, {"vouch_share": (1, 0)},
                {"vote_window": -1}, {"vouch_min": True}, {"amend_share": (1.5, 2)}):
        with pytest.raises(CollectiveError):
            C.Constitution(**bad)  # type: ignore[arg-type]
    with pytest.raises(CollectiveError):
        c.amended({"nonsense": 1})
    with pytest.raises(CollectiveError):
        c.amended({})


def test_five_with_quorum_two_admit_after_exactly_two_vouches() -> None:
    log = _founded()
    assert len(log.state.members) == 5 and log.state.constitution.quorum(5) == 2
    jh = log.add(C.join(N1, log.state, "let me in", T + 1))
    assert log.state.joins[jh].status == "pending"
    log.add(C.vouch(A, log.state, jh, T + 2))
    assert N1.verify_key not in log.state.members  # one vouch is not enough
    log.add(C.vouch(A, log.state, jh, T + 3))  # the same member twice still counts once
    assert N1.verify_key not in log.state.members
    assert "duplicate-vouch" in log.state.ignored.values()
    log.add(C.vouch(B, log.state, jh, T + 4))
    assert N1.verify_key in log.state.members and log.state.joins[jh].status == "admitted"
    assert len(log.state.members) == 6
    assert any("admitted" in e for _, e in log.state.events)


def _pass_amendment(log: Log, changes: dict, voters: list[Identity], t: int) -> bytes:
    ph = log.add(C.propose_amend(voters[0], log.state, changes, t))
    for i, voter in enumerate(voters):
        log.add(C.vote(voter, log.state, ph, "up", 1))
    return ph


def test_amend_to_quorum_three_by_anonymous_vote() -> None:
    log = _founded()
    jh = log.add(C.join(N1, log.state, "", T + 1))
    log.add(C.vouch(A, log.state, jh, T + 2))
    log.add(C.vouch(B, log.state, jh, T + 3))
    ph = log.add(C.propose_amend(CC, log.state, {"vouch_min": 3}, T + 10))
    prop = log.state.proposals[ph]
    assert len(prop.ring) == 6 and prop.needed == 3  # half of the 6 members, the newcomer included
    log.add(C.vote(A, log.state, ph, "up", 1))
    log.add(C.vote(B, log.state, ph, "down", 1))
    log.add(C.vote(B, log.state, ph, "up", 2))  # B changes its mind: still one vote
    log.add(C.vote(A, log.state, ph, "up", 2))  # A votes again: still one vote
    assert log.state.proposals[ph].status == "open" and log.state.proposals[ph].up == 2
    assert log.state.constitution.vouch_min == 2
    log.add(C.vote(N1, log.state, ph, "up", 1))
    assert log.state.proposals[ph].status == "passed" and log.state.constitution.vouch_min == 3
    # The vote operations name nobody: no author, no signer key, no time.
    for data in log.ops:
        op = C.decode_op(data)
        if op.kind == "vote":
            assert op.author == b"" and op.time == 0
            for ident in (A, B, N1):
                assert ident.verify_key not in op.body["vote"][-ring.signature_size(6):]
    # Now a newcomer needs three vouches.
    jh2 = log.add(C.join(N2, log.state, "", T + 20))
    log.add(C.vouch(A, log.state, jh2, T + 21))
    log.add(C.vouch(B, log.state, jh2, T + 22))
    assert N2.verify_key not in log.state.members
    log.add(C.vouch(CC, log.state, jh2, T + 23))
    assert N2.verify_key in log.state.members
    # A vote after the decision is late.
    log.add(_late_vote(log, D, ph))
    assert list(log.state.ignored.values())[-1] == "late"


def _late_vote(log: Log, voter: Identity, ph: bytes) -> bytes:
    """A vote on a decided proposal (the builder refuses; a client that had not seen the decision would not)."""
    prop = log.state.proposals[ph]
    ballot = votes.make_vote(voter, C._electorate(prop.ring), C.proposal_scope(ph), "up", 1)
    return C._make(None, log.state, "vote", {"proposal": ph, "vote": ballot}, 0)


def test_remove_a_member_by_vote_rotates_the_key() -> None:
    log = _founded()
    ph = log.add(C.propose_remove(A, log.state, E.verify_key, T + 5))
    assert log.state.proposals[ph].needed == 3
    for voter in (A, B, E):  # E votes too (it is in the ring): nobody can tell
        log.add(C.vote(voter, log.state, ph, "up" if voter is not E else "down", 1))
    assert E.verify_key in log.state.members and log.state.key_epoch == 0
    log.add(C.vote(D, log.state, ph, "up", 1))
    assert E.verify_key not in log.state.members and log.state.key_epoch == 1 and log.state.key_id is None
    key_id = os.urandom(32)
    log.add(C.rekey(B, log.state, key_id, T + 7))
    assert log.state.key_id == key_id
    log.add(C.rekey(CC, log.state, os.urandom(32), T + 8))  # a later rekey loses
    assert log.state.key_id == key_id and list(log.state.ignored.values())[-1] == "already-rekeyed"
    # The removed member can no longer act.
    jh = log.add(C.join(N1, log.state, "", T + 9))
    log.add(C.vouch(E, log.state, jh, T + 10))
    assert list(log.state.ignored.values())[-1] == "not-a-member"
    log.add(C.rekey(E, log.state, os.urandom(32), T + 11))
    assert list(log.state.ignored.values())[-1] == "not-a-member"
    with pytest.raises(CollectiveError):
        C.propose_remove(A, log.state, E.verify_key, T + 12)


def test_vouch_from_a_member_being_removed() -> None:
    log = _founded()
    jh = log.add(C.join(N1, log.state, "", T + 1))
    log.add(C.vouch(E, log.state, jh, T + 2))  # 1 of 2, from the member about to be removed
    ph = log.add(C.propose_remove(A, log.state, E.verify_key, T + 3))
    for voter in (A, B, CC):
        log.add(C.vote(voter, log.state, ph, "up", 1))
    assert E.verify_key not in log.state.members
    assert log.state.joins[jh].vouchers == set()  # the removed member's pending vouch is dropped
    log.add(C.vouch(B, log.state, jh, T + 5))
    assert N1.verify_key not in log.state.members  # B alone is not a quorum of 2
    log.add(C.vouch(CC, log.state, jh, T + 6))
    assert N1.verify_key in log.state.members


def test_deadlines_and_results() -> None:
    log = _founded()
    ph = log.add(C.propose_amend(A, log.state, {"vouch_min": 4}, T))
    closes = log.state.proposals[ph].closes_at
    assert closes == T + log.state.constitution.vote_window
    log.add(C.vote(A, log.state, ph, "up", 1))
    log.add(C.result(B, log.state, ph, "failed", closes - 1))  # too early
    assert list(log.state.ignored.values())[-1] == "bad-result"
    log.add(C.result(B, log.state, ph, "passed", closes + 1))  # it has not passed
    assert list(log.state.ignored.values())[-1] == "bad-result"
    log.add(C.result(B, log.state, ph, "failed", closes + 1))
    assert log.state.proposals[ph].status == "failed"
    log.add(_late_vote(log, B, ph))
    log.add(_late_vote(log, CC, ph))
    assert list(log.state.ignored.values())[-2:] == ["late", "late"]
    assert log.state.constitution.vouch_min == 2
    with pytest.raises(CollectiveError, match="failed"):
        C.vote(D, log.state, ph, "up", 1)


def test_proposal_refusals_and_votes_from_outside_the_ring() -> None:
    log = _founded()
    with pytest.raises(CollectiveError):
        C.propose_amend(A, log.state, {"vouch_min": 0}, T)
    with pytest.raises(CollectiveError):
        C.propose_remove(A, log.state, N1.verify_key, T)
    log.add(C.propose_amend(N1, log.state, {"vouch_min": 3}, T))  # not a member
    assert list(log.state.ignored.values())[-1] == "not-a-member"
    bad = C._make(A, log.state, "propose", {"action": "amend", "changes": {"vouch_min": -1}, "closes_at": T}, T)
    log.add(bad)
    assert list(log.state.ignored.values())[-1] == "bad-proposal"
    ph = log.add(C.propose_amend(A, log.state, {"vouch_min": 3}, T))
    # An outsider signs over the roster plus itself: refused as a vote over another ring.
    ring6 = sorted(log.state.proposals[ph].ring + (N1.verify_key,))
    ballot = votes.make_vote(N1, votes.Electorate.roster(ring6), C.proposal_scope(ph), "up", 1)
    log.add(C._make(None, log.state, "vote", {"proposal": ph, "vote": ballot}, 0))
    assert list(log.state.ignored.values())[-1] == "vote-wrong-ring"
    # A vote for another scope (another proposal's id) is refused too.
    ballot = votes.make_vote(A, C._electorate(log.state.proposals[ph].ring), C.proposal_scope(bytes(32)), "up", 1)
    log.add(C._make(None, log.state, "vote", {"proposal": ph, "vote": ballot}, 0))
    assert list(log.state.ignored.values())[-1] == "vote-wrong-scope"
    log.add(C._make(None, log.state, "vote", {"proposal": bytes(32), "vote": ballot}, 0))
    assert list(log.state.ignored.values())[-1] == "unknown-proposal"
    assert log.state.proposals[ph].up == 0


def test_junk_forged_foreign_and_orphaned_operations() -> None:
    log = _founded()
    other = C.found(B, "Other", C.Constitution(), [B.verify_key], T)
    jh = log.add(C.join(N1, log.state, "", T + 1))
    good = C.vouch(A, log.state, jh, T + 2)
    forged = bytearray(good)
    forged[-5] ^= 1
    fields = codec.unpack(good)
    wrong_lamport = codec.pack(fields[:5] + [fields[5] + 3] + fields[6:])  # signature now wrong too
    head = [1, log.state.collective_id, "vouch", B.verify_key, fields[4], fields[5] + 3, T + 3, {"join": jh}]
    bad_lamport = codec.pack([*head, B.sign(C._signed(head))])
    orphan_head = [1, log.state.collective_id, "vouch", CC.verify_key, [os.urandom(32)], 5, T + 4, {"join": jh}]
    orphan = codec.pack([*orphan_head, CC.sign(C._signed(orphan_head))])
    child_head = [1, log.state.collective_id, "vouch", D.verify_key, [C.op_hash(orphan)], 6, T + 5, {"join": jh}]
    orphan_child = codec.pack([*child_head, D.sign(C._signed(child_head))])
    below_bad_head = [1, log.state.collective_id, "vouch", D.verify_key, [C.op_hash(bad_lamport)],
                      fields[5] + 4, T + 6, {"join": jh}]
    below_bad = codec.pack([*below_bad_head, D.sign(C._signed(below_bad_head))])
    junk = [os.urandom(50), b"", b"\x93\x01\x02\x03", bytes(forged), wrong_lamport, bad_lamport, orphan,
            orphan_child, below_bad, other, b"x" * (C.MAX_OP_BYTES + 1)]
    state = C.replay(log.ops + junk, log.state.collective_id)
    assert state.rejected[C.op_hash(bytes(forged))] == "forged"
    assert state.rejected[C.op_hash(wrong_lamport)] == "forged"
    assert state.rejected[C.op_hash(bad_lamport)] == "bad-lamport"
    assert state.rejected[C.op_hash(below_bad)] == "bad-parent"
    assert state.rejected[C.op_hash(other)] == "another-collective"
    assert state.pending == {C.op_hash(orphan), C.op_hash(orphan_child)}
    assert N1.verify_key not in state.members
    with pytest.raises(CollectiveError, match="several"):
        C.replay(log.ops + [other])
    with pytest.raises(CollectiveError, match="no founding"):
        C.replay(log.ops[1:])
    # The orphan's parent arrives later: nothing. A replica keeps it pending, the state is otherwise the same.
    assert C.replay(log.ops + junk, log.state.collective_id).summary() == state.summary()


# -- convergence ----------------------------------------------------------------------------------------------


def _scenario() -> tuple[list[bytes], C.State]:
    """A log with admissions, an amendment, a removal, concurrent operations and a rekey."""
    log = _founded()
    jh = log.add(C.join(N1, log.state, "", T + 1))
    # Two members vouch at once (same parents): N1 is admitted once, whichever order they arrive in.
    base = log.state
    v1, v2 = C.vouch(A, base, jh, T + 2), C.vouch(B, base, jh, T + 2)
    log.add(v1)
    log.add(v2)
    # Two members propose at once, to set the same field to different values; both pass.
    base = log.state
    p1, p2 = C.propose_amend(A, base, {"vouch_min": 3}, T + 3), C.propose_amend(B, base, {"vouch_min": 4}, T + 3)
    h1, h2 = log.add(p1), log.add(p2)
    for voter in (A, B, CC):
        log.add(C.vote(voter, log.state, h1, "up", 1))
        log.add(C.vote(voter, log.state, h2, "up", 1))
    # A removal, with a concurrent vouch from the member being removed.
    jh2 = log.add(C.join(N2, log.state, "", T + 4))
    ph = log.add(C.propose_remove(CC, log.state, E.verify_key, T + 5))
    for voter in (A, B):
        log.add(C.vote(voter, log.state, ph, "up", 1))
    base = log.state
    last_vote = C.vote(D, base, ph, "up", 1)
    e_vouch = C.vouch(E, base, jh2, T + 6)
    log.add(last_vote)
    log.add(e_vouch)
    # Two members rekey at once.
    base = log.state
    log.add(C.rekey(A, base, b"\x01" * 32, T + 7))
    log.add(C.rekey(B, base, b"\x02" * 32, T + 7))
    return log.ops, log.state


SCENARIO_OPS, SCENARIO_STATE = _scenario()


def test_scenario_outcome() -> None:
    s = SCENARIO_STATE
    assert not s.rejected and not s.pending
    assert N1.verify_key in s.members and E.verify_key not in s.members
    assert s.constitution.vouch_min in (3, 4)  # the later of the two amendments to pass wins
    passed = [p for p in s.proposals.values() if p.status == "passed"]
    assert len(passed) == 3
    assert s.key_epoch == 1 and s.key_id in (b"\x01" * 32, b"\x02" * 32)
    assert sum(1 for e in s.events if "admitted" in e[1]) == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(SCENARIO_OPS))
def test_any_arrival_order_gives_the_same_state(ops: list[bytes]) -> None:
    assert C.replay(ops).summary() == SCENARIO_STATE.summary()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(SCENARIO_OPS), st.integers(min_value=1, max_value=len(SCENARIO_OPS) - 1))
def test_partial_logs_converge_once_complete(ops: list[bytes], cut: int) -> None:
    """A replica that has only some ops (genesis included) replays what it can; with the rest it converges."""
    genesis = SCENARIO_OPS[0]
    first = [genesis] + [o for o in ops[:cut] if o != genesis]
    partial = C.replay(first)
    assert {C.op_hash(o) for o in first} <= set(partial.order) | partial.pending | set(partial.rejected)
    assert not partial.rejected  # missing parents make ops wait, never fail
    assert C.replay(first + ops).summary() == SCENARIO_STATE.summary()


def test_two_members_acting_at_once_converge_on_every_replica() -> None:
    log = _founded()
    jh = log.add(C.join(N1, log.state, "", T + 1))
    base = log.state
    by_a = [C.vouch(A, base, jh, T + 2), C.propose_amend(A, base, {"vote_window": 3600}, T + 2)]
    by_b = [C.vouch(B, base, jh, T + 2), C.propose_remove(B, base, D.verify_key, T + 2)]
    replica_1 = C.replay(log.ops + by_a + by_b)
    replica_2 = C.replay(log.ops + by_b + by_a)
    replica_3 = C.replay(list(reversed(log.ops + by_a + by_b)))
    assert replica_1.summary() == replica_2.summary() == replica_3.summary()
    assert N1.verify_key in replica_1.members
    assert len(replica_1.heads) == 4  # four concurrent heads; the next op of anyone merges them
    nxt = C.vouch(CC, replica_1, jh, T + 3)
    assert len(C.decode_op(nxt).parents) == 4


def test_decode_op_refusals() -> None:
    log = _founded()
    good = C.join(N1, log.state, "", T)
    f = codec.unpack(good)
    for bad in (
        codec.pack(f[:8]),
        codec.pack([2, *f[1:]]),
        codec.pack(f[:2] + ["explode"] + f[3:]),
        codec.pack(f[:4] + [[bytes(32), bytes(32)]] + f[5:]),  # duplicate parents
        codec.pack(f[:7] + [{"note": 5}] + f[8:]),
        codec.pack(f[:7] + [{"note": "x" * (C.MAX_NAME + 1)}] + f[8:]),
        "text",
    ):
        with pytest.raises(CollectiveError):
            C.decode_op(bad)  # type: ignore[arg-type]
    assert C.decode_op(good).kind == "join"


def test_big_rosters_vote_over_sub_rings() -> None:
    many = [Identity.from_seed(random.Random(i).randbytes(32)) for i in range(votes.MAX_ROSTER_RING + 2)]
    log = Log([C.found(many[0], "Big", C.Constitution(), [m.verify_key for m in many], T)])
    ph = log.add(C.propose_amend(many[0], log.state, {"vouch_min": 3}, T + 1))
    log.add(C.vote(many[5], log.state, ph, "up", 1))
    assert log.state.proposals[ph].up == 1 and not log.state.ignored


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=9) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=24,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300), _values.map(codec.pack)), max_size=6))
def test_hostile_operations_are_rejected_never_raised(junk: list[bytes]) -> None:
    state = C.replay(SCENARIO_OPS[:3] + junk)
    assert set(state.order) >= {C.op_hash(o) for o in SCENARIO_OPS[:3]}
    for data in junk:
        with pytest.raises(CollectiveError):
            C.decode_op(data)


def test_a_newcomer_joins_from_the_founding_operation_alone() -> None:
    """An invitation carries the founding op: the newcomer's join names it as parent; members accept it."""
    log = _founded()
    log.add(C.vouch(A, log.state, bytes(32), T + 1))  # some history the newcomer has not seen (unknown join)
    request = C.join(N1, C.replay(log.ops[:1]), "hello", T + 2)
    assert C.decode_op(request).parents == (log.state.collective_id,)
    jh = log.add(request)
    assert log.state.joins[jh].newcomer == N1.verify_key
    log.add(C.vouch(A, log.state, jh, T + 3))
    log.add(C.vouch(B, log.state, jh, T + 4))
    assert N1.verify_key in log.state.members


def test_who_votes_on_a_proposal_is_fixed_when_it_is_made() -> None:
    log = _founded()
    ph = log.add(C.propose_remove(A, log.state, E.verify_key, T + 1))
    jh = log.add(C.join(N1, log.state, "", T + 2))
    log.add(C.vouch(A, log.state, jh, T + 3))
    log.add(C.vouch(B, log.state, jh, T + 4))
    assert N1.verify_key in log.state.members
    with pytest.raises(VoteError):  # admitted after the proposal: not in its ring
        C.vote(N1, log.state, ph, "up", 1)
    assert N1.verify_key not in log.state.proposals[ph].ring
