"""The new-passphrase rule (komrade_dht.passphrase.check): zxcvbn score >= 3 and at least 10 characters."""

from __future__ import annotations

import dataclasses

import pytest

from komrade_dht.passphrase import MIN_LENGTH, MIN_SCORE, PassphraseCheck, check


@pytest.mark.parametrize("weak", ["", "a", "password", "password123", "qwertyuiop", "aaaaaaaaaaaa",
                                  "1234567890", "komrade2024!", "iloveyou12"])
def test_weak_passphrases_are_refused_with_a_hint(weak: str) -> None:
    result = check(weak)
    assert isinstance(result, PassphraseCheck)
    assert not result.ok
    assert 0 <= result.score < MIN_SCORE
    assert result.hint.endswith(".")
    if len(weak) >= 4:
        assert weak not in result.hint  # never echoed back


def test_short_but_random_is_refused_for_length() -> None:
    result = check("x7#Qp!")  # zxcvbn may find this hard; the length rule still applies
    assert not result.ok
    assert result.score < MIN_SCORE
    assert str(MIN_LENGTH) in result.hint


@pytest.mark.parametrize("strong", ["correct horse battery staple", "violet tractor mumbles quietly",
                                    "Tr0ub4dor&3-lantern", "s3cret passphrase for tests"])
def test_strong_passphrases_pass(strong: str) -> None:
    result = check(strong, name="alice")
    assert result.ok, result
    assert MIN_SCORE <= result.score <= 4
    assert result.hint


def test_the_name_counts_as_known_to_the_attacker() -> None:
    phrase = "zebulonquixote"
    assert check(phrase).ok
    weak = check(phrase, name="Zebulon Quixote")
    assert not weak.ok
    assert weak.score < check(phrase).score


@pytest.mark.parametrize("spaced", ["hello world", "Mallory Mallory", "Mallory komrade", "correct horse"])
def test_a_space_between_common_words_does_not_make_them_strong(spaced: str) -> None:
    """zxcvbn alone scores "hello world" 3 (the space counts as brute force) and "helloworld" 1."""
    assert not check(spaced, name="Mallory").ok


def test_very_long_passphrases_are_scored_not_refused() -> None:
    assert check("correct horse battery staple " * 10).ok  # zxcvbn alone raises past 72 characters
    assert not check("a" * 200).ok


def test_result_is_frozen_and_rejects_non_str() -> None:
    result = check("correct horse battery staple")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ok = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        check(b"bytes passphrase")  # type: ignore[arg-type]
