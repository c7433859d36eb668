"""Envelopes and slots: format, size classes, trial decryption, binding of outer fields, slot math."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from komrade_dht import envelope as env
from komrade_dht.errors import EnvelopeError
from komrade_dht.identity import Identity
from komrade_dht.slots import DEFAULT_TTL, MAX_TTL, SlotParams, key_prefix, slot_id

NOW = 1_800_000_000
ALICE, BOB, EVE = Identity.generate(), Identity.generate(), Identity.generate()


from .support import CHEAP_POW

CHEAP = CHEAP_POW


def sealed(body: bytes = b"hello", **kw) -> bytes:
    return env.seal(ALICE, BOB.public, body, now=NOW, pow=CHEAP, **kw)


def test_round_trip_authenticates_sender_and_recipient() -> None:
    data = sealed(b"hi bob")
    opened = env.TrialDecryptor(BOB).open(data, now=NOW)
    assert opened is not None
    assert opened.body == b"hi bob" and opened.sender.verify_key == ALICE.verify_key
    assert opened.recipient == BOB.verify_key and opened.created == NOW
    assert opened.envelope_id == env.envelope_id(data)
    assert env.burn_hash(opened.burn_secret) == env.parse_outer(data, NOW).burn_hash


def test_someone_else_opens_nothing() -> None:
    assert env.TrialDecryptor(EVE).open(sealed(), now=NOW) is None
    assert env.TrialDecryptor(ALICE).open(sealed(), now=NOW) is None  # not even the sender


@given(st.integers(min_value=0, max_value=env.max_body()))
@settings(max_examples=40, deadline=None)
def test_lengths_are_padded_to_size_classes(n: int) -> None:
    data = sealed(os.urandom(n))
    assert len(data) in env.SIZE_CLASSES
    assert env.TrialDecryptor(BOB).open(data, now=NOW).body is not None


def test_largest_body_fits_and_one_more_byte_is_refused_clearly() -> None:
    """max_body leaves room for a contact tag, so it fits tagged or not."""
    tag = os.urandom(env.TAG_LEN)
    assert len(sealed(bytes(env.max_body()), tag=tag)) == env.SIZE_CLASSES[-1]
    assert len(sealed(bytes(env.max_body()))) == env.SIZE_CLASSES[-1]
    with pytest.raises(EnvelopeError, match="shorten"):
        sealed(bytes(env.max_body() + 1), tag=tag)


def test_a_tagged_envelope_opens_and_shows_its_tag_in_the_head() -> None:
    tag = os.urandom(env.TAG_LEN)
    data = sealed(b"tagged hello", tag=tag)
    head = env.head(data)
    assert env.parse_head(head, now=NOW).tagged and env.tags_of(head) == [tag] == env.tags_of(data)
    assert len(head) == env.FIXED_LEN + env.TAG_LEN + env.HEADER_LEN
    assert env.TrialDecryptor(BOB).content_key(head) is not None
    opened = env.TrialDecryptor(BOB).open(data, now=NOW)
    assert opened is not None and opened.body == b"tagged hello"
    assert env.tags_of(sealed(b"plain")) == []
    # the kind byte is signed into the outer hash: with the TAGGED bit flipped nothing opens
    flipped = bytearray(data)
    flipped[1] ^= env.TAGGED
    try:
        assert env.TrialDecryptor(BOB).open(bytes(flipped), now=NOW) is None
    except EnvelopeError:
        pass


def test_same_content_never_gives_the_same_envelope() -> None:
    assert sealed(b"x") != sealed(b"x")


@pytest.mark.parametrize("offset", [2, 3, 4, 5, 6, 12, 21])
def test_changing_expiry_or_burn_hash_breaks_the_signature_binding(offset: int) -> None:
    data = bytearray(sealed())
    data[offset] ^= 0x01
    try:
        outer = env.parse_outer(bytes(data), NOW)
    except EnvelopeError:
        return  # the change made the expiry implausible: refused even earlier
    assert outer is not None
    with pytest.raises(EnvelopeError, match="changed after signing"):
        env.TrialDecryptor(BOB).open(bytes(data), now=NOW)


def test_forged_signature_is_detected() -> None:
    """A sender who claims to be Alice but signs with another key is caught by the recipient."""
    forger = Identity.generate()
    data = env.seal(forger, BOB.public, b"x", now=NOW, pow=CHEAP)
    # re-seal the same inner with Alice's key claimed: simplest forgery is swapping the signing identity object
    class Impostor:
        verify_key = ALICE.verify_key
        sign = forger.sign
    forged = env.seal(Impostor(), BOB.public, b"x", now=NOW, pow=CHEAP)  # type: ignore[arg-type]
    assert env.TrialDecryptor(BOB).open(data, now=NOW) is not None
    with pytest.raises(EnvelopeError, match="forged"):
        env.TrialDecryptor(BOB).open(forged, now=NOW)


def test_body_tampering_is_detected() -> None:
    data = bytearray(sealed())
    data[-1] ^= 1
    with pytest.raises(EnvelopeError, match="decrypt"):
        env.TrialDecryptor(BOB).open(bytes(data), now=NOW)


def test_outer_checks_name_the_problem() -> None:
    good = sealed()
    with pytest.raises(EnvelopeError, match="version 9"):
        env.parse_outer(b"\x09" + good[1:], NOW)
    with pytest.raises(EnvelopeError, match="size classes"):
        env.parse_outer(good + b"\0", NOW)
    with pytest.raises(EnvelopeError, match="expired"):
        env.parse_outer(good, NOW + DEFAULT_TTL + 1)
    far = good[:2] + struct.pack(">I", NOW + MAX_TTL + 2 * env.CLOCK_SKEW) + good[6:]
    with pytest.raises(EnvelopeError, match="30-day"):
        env.parse_outer(far, NOW)
    with pytest.raises(EnvelopeError, match="recipient headers"):
        env.parse_outer(good[:30] + b"\x00" + good[31:], NOW)
    with pytest.raises(EnvelopeError, match="kind"):
        env.parse_outer(good[:1] + b"\x07" + good[2:], NOW)
    with pytest.raises(EnvelopeError, match="lifetime"):
        sealed(ttl=MAX_TTL + 1)


def test_slots_depend_on_epoch_width_and_prefix() -> None:
    vk = BOB.verify_key
    assert len(slot_id(vk, 8, 100)) == 20
    assert slot_id(vk, 8, 100) != slot_id(vk, 8, 101)
    assert slot_id(vk, 8, 100) != slot_id(vk, 9, 100)
    assert slot_id(vk, 0, 100) == slot_id(ALICE.verify_key, 0, 100)  # width 0: everyone shares one slot
    assert key_prefix(vk, 3)[0] & 0x1F == 0 and len(key_prefix(vk, 3)) == 1
    assert len(key_prefix(vk, 32)) == 4
    with pytest.raises(ValueError):
        key_prefix(vk, 33)


def test_epochs_since_is_bounded_by_the_longest_ttl() -> None:
    params = SlotParams(epoch_seconds=86400)
    assert params.epochs_since(NOW, NOW) == [params.epoch(NOW)]
    assert len(params.epochs_since(0, NOW)) == 31
