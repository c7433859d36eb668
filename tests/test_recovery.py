"""Recovery text: round trips, forgiving reading, and every single-character typo caught."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from komrade_dht.identity import Identity
from komrade_dht.recovery import ALPHABET, RecoveryError, decode_recovery, encode_recovery


@given(st.binary(min_size=32, max_size=32))
@settings(max_examples=200, deadline=None)
def test_round_trip(seed: bytes) -> None:
    text = encode_recovery(seed)
    assert len(text) == 14 * 4 + 13 and all(len(g) == 4 for g in text.split("-"))
    assert decode_recovery(text) == seed


def test_reading_is_forgiving_about_case_separators_and_lookalikes() -> None:
    seed = os.urandom(32)
    text = encode_recovery(seed)
    assert decode_recovery(text.lower()) == seed
    assert decode_recovery(" " + text.replace("-", " \n ") + " ") == seed
    assert decode_recovery(text.replace("-", "")) == seed
    assert decode_recovery(text.replace("1", "l").replace("0", "O")) == seed


def test_every_single_character_typo_is_caught() -> None:
    seed = bytes(range(32))
    text = encode_recovery(seed).replace("-", "")
    for i, ch in enumerate(text):
        for other in ALPHABET:
            if other != ch:
                with pytest.raises(RecoveryError, match="typo"):
                    decode_recovery(text[:i] + other + text[i + 1 :])


def test_clear_errors() -> None:
    text = encode_recovery(os.urandom(32))
    with pytest.raises(RecoveryError, match="'U'"):
        decode_recovery("U" + text[1:])
    with pytest.raises(RecoveryError, match="56 characters"):
        decode_recovery(text[:-2])
    with pytest.raises(RecoveryError, match="56 characters"):
        decode_recovery("")
    with pytest.raises(ValueError):
        encode_recovery(b"short")


def test_restores_the_same_identity() -> None:
    me = Identity.generate()
    again = Identity.from_seed(decode_recovery(encode_recovery(me.seed)))
    assert again.verify_key == me.verify_key and again.fingerprint() == me.fingerprint()
