"""Signed mutable records (BEP 44 model): only the owner writes, nobody rolls back, every failure says why."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from komrade_dht import codec, records
from komrade_dht.errors import (
    KomradeError,
    RecordConflict,
    RecordError,
    RecordExpired,
    RecordForged,
    RecordKeyMismatch,
    RecordMalformed,
    RecordStale,
    RecordTooLarge,
)
from komrade_dht.identity import Identity
from komrade_dht.slots import MAX_TTL

NOW = 1_800_000_000
EXP = NOW + 14 * 86400
ALICE, EVE = Identity.from_seed(bytes(range(32))), Identity.from_seed(bytes(range(1, 33)))
SALT = b"profile"
KEY = records.record_key(ALICE.verify_key, SALT)


def make(seq: int = 1, value: bytes = b"name: Alice", **kw: object) -> bytes:
    args = dict(identity=ALICE, salt=SALT, seq=seq, value=value, expires_at=EXP, now=NOW)
    args.update(kw)
    return records.make_record(**args)  # type: ignore[arg-type]


def fields(data: bytes) -> list:
    return msgpack.unpackb(data)


def encode(f: list) -> bytes:
    return codec.pack(f)


def test_round_trip() -> None:
    data = make(7, b"hello")
    rec = records.verify_record(KEY, data, NOW)
    assert (rec.key, rec.public_key, rec.salt, rec.seq, rec.expires_at, rec.value) == (
        KEY, ALICE.verify_key, SALT, 7, EXP, b"hello"
    )
    assert rec.data == data and rec.owner == ALICE.public and len(rec.signature) == 64
    assert make(7, b"hello") == data  # Ed25519 is deterministic and the encoding canonical: one record, one byte string


def test_record_key_is_per_owner_and_per_salt() -> None:
    assert len(KEY) == 20
    assert records.record_key(ALICE.verify_key, b"devices") != KEY
    assert records.record_key(EVE.verify_key, SALT) != KEY
    assert records.record_key(ALICE.verify_key) == records.record_key(ALICE.verify_key, b"")
    with pytest.raises(RecordMalformed, match="32 bytes"):
        records.record_key(b"short", SALT)
    with pytest.raises(RecordTooLarge, match="salt"):
        records.record_key(ALICE.verify_key, bytes(65))
    with pytest.raises(RecordMalformed, match="salt"):
        records.record_key(ALICE.verify_key, "profile")  # type: ignore[arg-type]


def test_all_record_errors_are_komrade_errors() -> None:
    for cls in (RecordConflict, RecordExpired, RecordForged, RecordKeyMismatch, RecordMalformed, RecordStale,
                RecordTooLarge):
        assert issubclass(cls, RecordError) and issubclass(cls, KomradeError)


# --- forgery and tampering -------------------------------------------------------------------------------------


def test_eve_cannot_sign_for_alice() -> None:
    """Eve puts Alice's key in a record and signs it with her own: every holder and reader refuses it."""
    f = fields(make(99, b"name: Alice the fool"))
    f[6] = EVE.sign(records._signed_bytes(ALICE.verify_key, SALT, 99, EXP, b"name: Alice the fool"))
    with pytest.raises(RecordForged, match="signature"):
        records.verify_record(KEY, encode(f), NOW)


def test_eves_own_record_offered_under_alices_key_is_a_key_mismatch() -> None:
    eves = records.make_record(EVE, SALT, 99, b"name: Alice", EXP, now=NOW)
    assert records.verify_record(records.record_key(EVE.verify_key, SALT), eves, NOW).seq == 99
    with pytest.raises(RecordKeyMismatch, match="another key"):
        records.verify_record(KEY, eves, NOW)


def test_a_record_for_another_salt_is_a_key_mismatch() -> None:
    other = records.make_record(ALICE, b"devices", 1, b"x", EXP, now=NOW)
    with pytest.raises(RecordKeyMismatch):
        records.verify_record(KEY, other, NOW)


@pytest.mark.parametrize("index, replacement", [(3, 2), (4, EXP + 60), (5, b"name: Mallory")])
def test_tampered_seq_expiry_or_value_breaks_the_signature(index: int, replacement: object) -> None:
    f = fields(make(1))
    f[index] = replacement
    with pytest.raises(RecordForged):
        records.verify_record(KEY, encode(f), NOW)


def test_tampered_salt_moves_the_record_to_another_key() -> None:
    f = fields(make(1))
    f[2] = b"devices"
    with pytest.raises(RecordKeyMismatch):
        records.verify_record(KEY, encode(f), NOW)
    with pytest.raises(RecordForged):  # and under that other key the signature fails
        records.verify_record(records.record_key(ALICE.verify_key, b"devices"), encode(f), NOW)


def test_a_signature_over_something_else_is_not_a_record_signature() -> None:
    """Alice's signature of the same fields without the record domain (e.g. elsewhere in the protocol) is useless."""
    f = fields(make(1))
    f[6] = ALICE.sign(codec.pack([ALICE.verify_key, SALT, 1, EXP, f[5]]))
    with pytest.raises(RecordForged):
        records.verify_record(KEY, encode(f), NOW)


def test_an_invalid_public_key_is_refused() -> None:
    bad_pk = bytes(32)  # a small-order point, not a usable key
    f = fields(make(1))
    f[1] = bad_pk
    with pytest.raises(RecordForged, match="not a valid"):
        records.verify_record(records.record_key(bad_pk, SALT), encode(f), NOW)


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_any_changed_byte_is_refused_with_a_record_error(data: st.DataObject) -> None:
    original = make(3, b"bio: organiser")
    position = data.draw(st.integers(min_value=0, max_value=len(original) - 1))
    new_byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != original[position]))
    changed = original[:position] + bytes([new_byte]) + original[position + 1 :]
    with pytest.raises(RecordError):
        records.verify_record(KEY, changed, NOW)


@given(st.binary(max_size=1000))
@settings(max_examples=300, deadline=None)
def test_random_bytes_are_refused_with_a_record_error(blob: bytes) -> None:
    with pytest.raises(RecordError):
        records.verify_record(KEY, blob, NOW)


ITEMS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1), st.binary(max_size=40), st.text(max_size=5), st.none(),
    st.booleans(),
)


@given(st.lists(ITEMS, max_size=9))
@settings(max_examples=300, deadline=None)
def test_wrong_structures_are_malformed(items: list) -> None:
    with pytest.raises(RecordError):
        records.verify_record(KEY, encode(items), NOW)


# --- format ----------------------------------------------------------------------------------------------------


def test_unknown_version_is_named() -> None:
    f = fields(make(1))
    f[0] = 2
    with pytest.raises(RecordMalformed, match="unknown record version 2"):
        records.verify_record(KEY, encode(f), NOW)


def test_a_non_canonical_encoding_is_refused() -> None:
    """Same fields, seq written as a uint64: a holder must not keep (or serve) a second spelling of a record."""
    data = make(1)
    f = fields(data)
    seq_at = data.index(bytes([0xC4, len(SALT)]) + SALT) + 2 + len(SALT)
    assert data[seq_at] == 0x01
    variant = data[:seq_at] + b"\xcf" + (1).to_bytes(8, "big") + data[seq_at + 1 :]
    assert msgpack.unpackb(variant) == f
    with pytest.raises(RecordMalformed, match="canonical"):
        records.verify_record(KEY, variant, NOW)


@pytest.mark.parametrize(
    "index, value, reason",
    [(1, b"x" * 31, "public key"), (3, -1, "sequence"), (3, True, "sequence"), (3, 2**64 - 1, "sequence"),
     (4, -5, "expiry"), (4, 2**32, "expiry"), (5, "text", "value"), (6, bytes(63), "signature"),
     (2, 7, "salt")],
)
def test_wrong_field_types_are_named(index: int, value: object, reason: str) -> None:
    f = fields(make(1))
    f[index] = value
    with pytest.raises(RecordMalformed, match=reason):
        records.verify_record(KEY, encode(f), NOW)


def test_wrong_key_argument_is_refused() -> None:
    with pytest.raises(RecordMalformed, match="20 bytes"):
        records.verify_record(KEY[:10], make(1), NOW)


# --- size ------------------------------------------------------------------------------------------------------


def test_largest_value_fits_and_one_more_byte_is_refused() -> None:
    room = records.max_value_len(SALT)
    assert 700 < room < records.MAX_RECORD_BYTES
    data = make(records.MAX_SEQ, bytes(room))
    assert len(data) <= records.MAX_RECORD_BYTES
    assert records.verify_record(KEY, data, NOW).value == bytes(room)
    with pytest.raises(RecordTooLarge, match=f"at most {room} bytes"):
        make(1, bytes(room + 1))
    assert records.max_value_len(bytes(64)) == room - (64 - len(SALT))


def test_an_oversized_record_is_refused_before_decoding() -> None:
    with pytest.raises(RecordTooLarge, match="at most 900 bytes"):
        records.verify_record(KEY, make(1) + bytes(900), NOW)


# --- expiry ----------------------------------------------------------------------------------------------------


def test_expired_record_is_refused() -> None:
    data = make(1)
    assert records.verify_record(KEY, data, EXP - 1).seq == 1
    with pytest.raises(RecordExpired, match="expired"):
        records.verify_record(KEY, data, EXP)


def test_a_record_cannot_claim_a_life_beyond_30_days() -> None:
    with pytest.raises(RecordExpired, match="30 days"):
        make(1, expires_at=NOW + MAX_TTL + records.CLOCK_SKEW + 1)
    with pytest.raises(RecordExpired, match="expired"):
        make(1, expires_at=NOW)
    far = make(1, expires_at=NOW + MAX_TTL)
    with pytest.raises(RecordExpired, match="30 days"):  # a reader whose clock is behind by more than the skew
        records.verify_record(KEY, far, NOW - records.CLOCK_SKEW - 1)


@pytest.mark.parametrize(
    "kw, reason",
    [(dict(seq=-1), "sequence"), (dict(seq=2**63), "sequence"), (dict(seq=True), "sequence"),
     (dict(value="text"), "value"), (dict(expires_at=1.5), "expiry"), (dict(salt="s"), "salt"),
     (dict(identity=ALICE.public), "Identity")],
)
def test_make_record_refuses_bad_arguments_clearly(kw: dict, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        make(**kw)


# --- ordering: no rollback ---------------------------------------------------------------------------------------


def rec(seq: int, value: bytes = b"v") -> records.Record:
    return records.verify_record(KEY, make(seq, value), NOW)


def test_higher_seq_wins_whatever_the_order() -> None:
    old, new = rec(4), rec(5)
    assert records.newer(old, new) is new and records.newer(new, old) is new
    assert records.supersedes(None, old) and records.supersedes(old, new)


def test_rollback_to_a_lower_seq_is_refused() -> None:
    with pytest.raises(RecordStale, match="roll it back"):
        records.supersedes(rec(5), rec(4, b"the old bio"))


def test_the_same_record_again_is_a_no_op() -> None:
    a, b = rec(5), rec(5)
    assert records.supersedes(a, b) is False and records.newer(a, b) is a


def test_two_different_records_with_one_seq_conflict() -> None:
    with pytest.raises(RecordConflict, match="sequence number 5"):
        records.supersedes(rec(5, b"one"), rec(5, b"two"))
    with pytest.raises(RecordConflict):
        records.newer(rec(5, b"one"), rec(5, b"two"))


def test_records_of_different_keys_are_not_compared() -> None:
    eves = records.verify_record(
        records.record_key(EVE.verify_key, SALT), records.make_record(EVE, SALT, 9, b"v", EXP, now=NOW), NOW
    )
    with pytest.raises(RecordError, match="different keys"):
        records.newer(rec(1), eves)
    with pytest.raises(RecordError, match="different keys"):
        records.supersedes(rec(1), eves)


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=12))
@settings(max_examples=50, deadline=None)
def test_a_holder_fed_any_order_ends_with_the_highest_seq(seqs: list[int]) -> None:
    """Whatever order copies arrive in (replays, old copies from lying holders), what is held only moves forward."""
    held: records.Record | None = None
    cache = {s: rec(s, b"v%d" % s) for s in set(seqs)}
    for s in seqs:
        try:
            if records.supersedes(held, cache[s]):
                held = cache[s]
        except RecordStale:
            assert held is not None and s < held.seq
    assert held is not None and held.seq == max(seqs)
