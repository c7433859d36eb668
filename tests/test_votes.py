"""Anonymous votes: format, electorates, tallies under junk, registrations (komrade_dht.votes)."""

from __future__ import annotations

import os
import random

import pytest

from komrade_dht import codec, ring, votes
from komrade_dht.errors import RegistrationError, VoteError
from komrade_dht.identity import Identity
from komrade_dht.votes import Electorate

IDS = [Identity.from_seed(bytes([i + 50]) * 32) for i in range(40)]
KEYS = [i.verify_key for i in IDS]
POST = b"P" * 32
OTHER_POST = b"Q" * 32

ROSTER = Electorate.roster(KEYS[:12])
REGISTRY = Electorate.registry(KEYS[:40], subring=8)

#: Cheap registrations for tests (8 expected trials, the minimum Argon2id memory).
CHEAP = votes.RegistrationParams(trials=8, memlimit=8192)


def test_roster_vote_roundtrip_and_fields() -> None:
    data = votes.make_vote(IDS[3], ROSTER, POST, "up", 7)
    assert len(data) <= votes.MAX_VOTE_BYTES
    obj = codec.unpack(data)
    assert obj[:4] == [1, POST, 1, 7] and obj[4] == ring.ring_id(KEYS[:12])
    opened = votes.open_vote(data, ROSTER, POST)
    assert opened.tag == ring.link_tag(IDS[3], POST)
    assert (opened.choice, opened.seq, opened.choice_name) == (1, 7, "up")
    assert votes.open_vote(votes.make_vote(IDS[3], ROSTER, POST, "none", 8), ROSTER, POST).choice == 0
    assert votes.open_vote(votes.make_vote(IDS[3], ROSTER, POST, -1, 9), ROSTER, POST).choice_name == "down"


def test_registry_vote_names_an_eligible_subring_that_is_stable_per_scope() -> None:
    data = votes.make_vote(IDS[5], REGISTRY, POST, "down", 1)
    members = codec.unpack(data)[4]
    assert len(members) == 8 and KEYS[5] in members and all(k in REGISTRY.keys for k in members)
    again = codec.unpack(votes.make_vote(IDS[5], REGISTRY, POST, "up", 2))[4]
    assert again == members  # a changed vote reuses its ring: no intersection narrows the voter down
    other = codec.unpack(votes.make_vote(IDS[5], REGISTRY, OTHER_POST, "up", 1))[4]
    assert other != members  # another scope, other decoys
    assert votes.open_vote(data, REGISTRY, POST).tag == ring.link_tag(IDS[5], POST)


def test_largest_rings_fit_a_datagram() -> None:
    big = Electorate.roster(KEYS[: votes.MAX_ROSTER_RING])
    assert len(votes.make_vote(IDS[0], big, b"s" * votes.MAX_SCOPE, "up", votes.MAX_SEQ)) <= votes.MAX_VOTE_BYTES
    reg = Electorate.registry(KEYS, subring=votes.DEFAULT_SUBRING)
    assert len(votes.make_vote(IDS[0], reg, b"s" * votes.MAX_SCOPE, "up", votes.MAX_SEQ)) <= votes.MAX_VOTE_BYTES
    with pytest.raises(VoteError, match="registry"):
        Electorate.roster(KEYS[: votes.MAX_ROSTER_RING + 1])


def test_make_vote_refusals() -> None:
    with pytest.raises(VoteError) as err:
        votes.make_vote(IDS[20], ROSTER, POST, "up", 1)
    assert err.value.reason == "not-eligible"
    for bad_choice in ("sideways", 2, True):
        with pytest.raises(VoteError, match="choice"):
            votes.make_vote(IDS[0], ROSTER, POST, bad_choice, 1)  # type: ignore[arg-type]
    for bad_seq in (-1, 2**32, 1.5):
        with pytest.raises(VoteError, match="seq"):
            votes.make_vote(IDS[0], ROSTER, POST, "up", bad_seq)  # type: ignore[arg-type]
    with pytest.raises(VoteError, match="scope"):
        votes.make_vote(IDS[0], ROSTER, b"", "up", 1)
    with pytest.raises(VoteError) as err:
        Electorate.roster([KEYS[0], KEYS[0]])
    assert err.value.reason == "bad-ring"
    with pytest.raises(VoteError, match="roster"):
        Electorate(frozenset(KEYS[:3]), True)
    with pytest.raises(VoteError):
        Electorate.registry(KEYS, subring=0)


def _reason(data: object, electorate: Electorate = ROSTER, scope: bytes = POST) -> str:
    with pytest.raises(VoteError) as err:
        votes.open_vote(data, electorate, scope)  # type: ignore[arg-type]
    return err.value.reason


def test_open_vote_refusals_with_reasons() -> None:
    good = votes.make_vote(IDS[1], ROSTER, POST, "up", 3)
    fields = codec.unpack(good)

    def variant(i: int, value: object) -> bytes:
        f = list(fields)
        f[i] = value
        return codec.pack(f)

    assert _reason(good, scope=OTHER_POST) == "wrong-scope"
    assert _reason(b"\x00" * (votes.MAX_VOTE_BYTES + 1)) == "too-large"
    assert _reason(b"\xc1garbage") == "malformed"
    assert _reason("text") == "malformed"
    assert _reason(codec.pack(fields[:5])) == "malformed"
    assert _reason(variant(0, 2)) == "version"
    assert _reason(variant(2, 5)) == "malformed"
    assert _reason(variant(3, -4)) == "malformed"
    assert _reason(variant(4, bytes(32))) == "wrong-ring"
    assert _reason(variant(5, fields[5][:-1])) == "malformed"
    assert _reason(variant(2, -1)) == "forged"  # the choice is signed
    assert _reason(variant(3, 4)) == "forged"  # so is the sequence
    assert _reason(good, Electorate.roster(KEYS[1:13])) == "wrong-ring"
    sig = bytearray(fields[5])
    sig[40] ^= 1
    assert _reason(variant(5, bytes(sig))) in ("forged", "malformed")
    small_order_tag = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
    assert _reason(variant(5, small_order_tag + fields[5][32:])) == "malformed"
    non_canonical = (int.from_bytes(fields[5][64:96], "little") + ring.GROUP_ORDER).to_bytes(32, "little")
    assert _reason(variant(5, fields[5][:64] + non_canonical + fields[5][96:])) == "malformed"


def test_registry_refusals() -> None:
    good = votes.make_vote(IDS[2], REGISTRY, POST, "up", 1)
    fields = codec.unpack(good)
    members = fields[4]
    outsider = Identity.from_seed(b"\x99" * 32).verify_key
    swapped = [outsider if k != KEYS[2] and i == 0 else k for i, k in enumerate(members)]
    assert _reason(codec.pack(fields[:4] + [swapped, fields[5]]), REGISTRY) == "not-eligible"
    assert _reason(codec.pack(fields[:4] + [members[:7], fields[5]]), REGISTRY) == "malformed"  # signature length
    assert _reason(codec.pack(fields[:4] + [members + members[:1], fields[5]]), REGISTRY) == "wrong-ring"
    # A vote cast while the registry was smaller (a ring of 3) still counts once the registry has grown.
    early = votes.make_vote(IDS[2], Electorate.registry(KEYS[:3]), POST, "up", 1)
    assert votes.open_vote(early, REGISTRY, POST).choice_name == "up"
    assert _reason(codec.pack(fields[:4] + [members[:7] + members[:1], fields[5]]), REGISTRY) == "wrong-ring"
    assert _reason(codec.pack(fields[:4] + [ring.ring_id(members), fields[5]]), REGISTRY) == "wrong-ring"
    # A voter outside the electorate signs over a ring of eligible decoys plus itself: not eligible.
    stranger = Identity.from_seed(b"\x98" * 32)
    forged_ring = sorted(members[:7] + [stranger.verify_key])
    sig = ring.sign(stranger, forged_ring, POST, votes._signed_message(1, 1))
    assert _reason(codec.pack([1, POST, 1, 1, forged_ring, sig]), REGISTRY) == "not-eligible"
    # ... or claims an all-eligible ring: the signature does not verify.
    assert _reason(codec.pack([1, POST, 1, 1, members, sig]), REGISTRY) == "forged"


def test_voter_outside_the_roster_cannot_slip_in() -> None:
    stranger = IDS[30]
    ring_with_stranger = KEYS[:11] + [stranger.verify_key]
    sig = ring.sign(stranger, ring_with_stranger, POST, votes._signed_message(1, 1))
    assert _reason(codec.pack([1, POST, 1, 1, ROSTER.ring_id, sig])) == "forged"


def test_tally_one_vote_per_tag_newest_wins() -> None:
    ballots = [
        votes.make_vote(IDS[0], ROSTER, POST, "up", 1),
        votes.make_vote(IDS[0], ROSTER, POST, "down", 2),  # changes its vote
        votes.make_vote(IDS[1], ROSTER, POST, "up", 5),
        votes.make_vote(IDS[1], ROSTER, POST, "up", 6),  # votes again: still one vote
        votes.make_vote(IDS[2], ROSTER, POST, "up", 1),
        votes.make_vote(IDS[2], ROSTER, POST, "none", 9),  # withdraws
        votes.make_vote(IDS[3], ROSTER, POST, "up", 1),
    ]
    random.Random(1).shuffle(ballots)
    t = votes.tally(ballots, ROSTER, POST)
    assert (t.up, t.down, t.voters) == (2, 1, 4)
    assert t.superseded == 3 and t.verified == 4 and t.rejected == {}
    assert t.by_tag[ring.link_tag(IDS[0], POST)].choice_name == "down"
    assert t.by_tag[ring.link_tag(IDS[2], POST)].choice_name == "none"


def test_a_forged_newer_vote_does_not_hide_the_valid_older_one() -> None:
    old = votes.make_vote(IDS[4], ROSTER, POST, "up", 1)
    f = codec.unpack(votes.make_vote(IDS[4], ROSTER, POST, "down", 2))
    forged = codec.pack([1, POST, -1, 50, f[4], f[5]])  # same tag, higher seq, signature over seq 2
    t = votes.tally([forged, old], ROSTER, POST)
    assert (t.up, t.down, t.voters) == (1, 0, 1) and t.rejected == {"forged": 1}


def test_equivocation_resolves_the_same_for_every_reader() -> None:
    a = votes.make_vote(IDS[6], ROSTER, POST, "up", 3)
    b = votes.make_vote(IDS[6], ROSTER, POST, "down", 3)
    t1, t2 = votes.tally([a, b], ROSTER, POST), votes.tally([b, a], ROSTER, POST)
    assert (t1.up, t1.down) == (t2.up, t2.down) and t1.voters == 1


def _junk(rng: random.Random, n: int, template: list) -> list[bytes]:
    """n cheap-to-refuse entries of many kinds (random bytes, oversize, wrong version/scope/ring/signature size)."""
    out: list[bytes] = []
    kinds = ["random", "oversize", "version", "scope", "ring", "siglen", "shape", "choice"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        f = list(template)
        if kind == "random":
            out.append(rng.randbytes(rng.randrange(0, 1200)))
            continue
        if kind == "oversize":
            out.append(rng.randbytes(votes.MAX_VOTE_BYTES + 1 + rng.randrange(4000)))
            continue
        if kind == "version":
            f[0] = rng.randrange(2, 100)
        elif kind == "scope":
            f[1] = rng.randbytes(32)
        elif kind == "ring":
            f[4] = rng.randbytes(32)
        elif kind == "siglen":
            f[5] = rng.randbytes(64 + 32 * rng.randrange(0, 12))
        elif kind == "shape":
            f = f[: rng.randrange(0, 6)]
        elif kind == "choice":
            f[2] = rng.choice([2, -2, "up", None])
        out.append(codec.pack(f))
    return out


def test_ten_thousand_junk_entries_are_refused_by_the_cheap_path(monkeypatch: pytest.MonkeyPatch) -> None:
    choices = ["up"] * 7 + ["down"] * 4 + ["none"]
    valid = [votes.make_vote(IDS[i], ROSTER, POST, choices[i], 1) for i in range(12)]
    junk = _junk(random.Random(11), 10_000, codec.unpack(valid[0]))
    entries = junk + valid + valid[:3]  # and three verbatim copies
    random.Random(12).shuffle(entries)
    calls = []
    real_verify = ring.verify

    def counting_verify(*args: object) -> bytes:
        calls.append(1)
        return real_verify(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ring, "verify", counting_verify)
    t = votes.tally(entries, ROSTER, POST)
    assert (t.up, t.down, t.voters) == (7, 4, 12)
    assert len(calls) == t.verified == 12  # not one junk entry reached the ring verification
    assert t.rejected.pop("duplicate") == 3
    assert sum(t.rejected.values()) == 10_000
    assert set(t.rejected) <= {"too-large", "malformed", "version", "wrong-scope", "wrong-ring"}
    assert t.rejected["wrong-scope"] == t.rejected["version"] == 1250


def test_forged_junk_is_counted_and_max_verify_bounds_the_work() -> None:
    valid = [votes.make_vote(IDS[i], ROSTER, POST, "up", 1) for i in range(3)]
    f = codec.unpack(valid[0])
    forged = [codec.pack([1, POST, 1, 1, f[4], os.urandom(32) + f[5][32:]]) for _ in range(20)]
    t = votes.tally(forged + valid, ROSTER, POST)
    assert t.up == 3 and sum(t.rejected.values()) == 20
    bounded = votes.tally(forged + valid, ROSTER, POST, max_verify=5)
    assert bounded.verified == 5 and bounded.rejected.get("unchecked", 0) == 23 - 5 - bounded.superseded
    assert bounded == votes.tally(list(reversed(forged + valid)), ROSTER, POST, max_verify=5)


def test_slot_and_registration_keys() -> None:
    assert len(votes.slot_key(POST)) == 20
    assert votes.slot_key(POST) != votes.slot_key(OTHER_POST)
    assert len(votes.registration_id(KEYS[0], 5)) == len(votes.registry_slot(5)) == 20
    assert votes.registration_id(KEYS[0], 5) != votes.registration_id(KEYS[0], 6) != votes.registration_id(KEYS[1], 6)
    assert votes.registry_slot(5) != votes.registry_slot(6)


def test_a_plain_key_list_is_a_roster() -> None:
    data = votes.make_vote(IDS[2], KEYS[:5], POST, "up", 1)
    tag, choice, seq = votes.open_vote(data, list(reversed(KEYS[:5])), POST)
    assert (tag, choice, seq) == (ring.link_tag(IDS[2], POST), 1, 1)
    assert votes.tally([data], KEYS[:5], POST).up == 1
    with pytest.raises(VoteError):
        votes.open_vote(data, b"not a list", POST)  # type: ignore[arg-type]


# -- registrations --------------------------------------------------------------------------------------------


def test_registration_roundtrip_and_refusals() -> None:
    now = 1_800_000_000.0
    period = votes.period_of(now, CHEAP)
    reg = votes.mint_registration(KEYS[0], period, CHEAP)
    assert votes.check_registration(reg, CHEAP, now) == KEYS[0]
    assert votes.check_registration(reg, CHEAP, now + CHEAP.period_seconds) == KEYS[0]  # still valid next period
    with pytest.raises(RegistrationError, match="period"):
        votes.check_registration(reg, CHEAP, now + 2 * CHEAP.period_seconds)
    hard = votes.RegistrationParams(trials=2**40, memlimit=8192)
    with pytest.raises(RegistrationError, match="too little work"):
        votes.check_registration(reg, hard, now)
    _, key, per, nonce = codec.unpack(reg)
    # The work is bound to the key: the same nonce under other keys passes only by luck (1 in 8 here).
    passed = 0
    for other in KEYS[1:13]:
        try:
            votes.check_registration(codec.pack([1, other, per, nonce]), CHEAP, now)
            passed += 1
        except RegistrationError:
            pass
    assert passed < 12
    for bad in (b"", b"\x01", codec.pack([1, b"x", per, nonce]), codec.pack([2, key, per, nonce])):
        with pytest.raises(RegistrationError):
            votes.check_registration(bad, CHEAP, now)
    with pytest.raises(RegistrationError):
        votes.mint_registration(bytes(32), period, CHEAP)


def test_electorate_from_registrations() -> None:
    now = 1_800_000_000.0
    period = votes.period_of(now, CHEAP)
    regs = [votes.mint_registration(k, period, CHEAP) for k in KEYS[:10]]
    electorate, refused = votes.electorate_from_registrations(regs + [b"junk"], CHEAP, now, subring=4)
    assert refused == 1 and electorate.keys == frozenset(KEYS[:10]) and electorate.ring_size == 4
    data = votes.make_vote(IDS[9], electorate, POST, "up", 1)
    assert votes.tally([data], electorate, POST).up == 1
    with pytest.raises(VoteError):
        votes.make_vote(IDS[10], electorate, POST, "up", 1)


# -- hostile input never escapes as anything but a VoteError ------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=80),
    lambda inner: st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=1400), _msgpack_values.map(codec.pack)))
def test_hostile_bytes_only_raise_vote_error(data: bytes) -> None:
    for electorate in (ROSTER, REGISTRY):
        with pytest.raises(VoteError):
            votes.open_vote(data, electorate, POST)


@settings(max_examples=100, deadline=None)
@given(st.lists(_msgpack_values, min_size=6, max_size=6))
def test_hostile_six_field_votes_only_raise_vote_error(fields: list) -> None:
    fields[1] = POST
    with pytest.raises(VoteError):
        votes.open_vote(codec.pack(fields), ROSTER, POST)


def test_max_verify_zero_checks_nothing() -> None:
    valid = [votes.make_vote(IDS[i], ROSTER, POST, "up", 1) for i in range(3)]
    t = votes.tally(valid, ROSTER, POST, max_verify=0)
    assert (t.up, t.voters, t.verified) == (0, 0, 0) and t.rejected == {"unchecked": 3}
