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


def test_cli_shows_and_restores(tmp_path) -> None:
    import subprocess
    import sys

    def komrade(home, *args, **env):
        full = {k: v for k, v in os.environ.items() if k not in ("KOMRADE_PASSPHRASE", "KOMRADE_RECOVERY")}
        full.update(env)
        return subprocess.run([sys.executable, "-m", "komrade_dht", "--data-dir", str(home), *args], env=full,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    made = komrade(tmp_path / "a", "init", "--name", "Ann", KOMRADE_PASSPHRASE="violet harbour gramophone 77")
    assert made.returncode == 0, made.stderr
    text = komrade(tmp_path / "a", "recovery", KOMRADE_PASSPHRASE="violet harbour gramophone 77").stdout.strip()
    assert len(text) == 69
    typo = ("X" if text[0] != "X" else "Y") + text[1:]
    bad = komrade(tmp_path / "b", "init", "--restore", "--name", "Ann", KOMRADE_PASSPHRASE="copper lantern meadow 5150", KOMRADE_RECOVERY=typo)
    assert bad.returncode == 1 and "typo" in bad.stderr and not (tmp_path / "b" / "identity.keystore").exists()
    again = komrade(tmp_path / "b", "init", "--restore", "--name", "Ann", KOMRADE_PASSPHRASE="copper lantern meadow 5150", KOMRADE_RECOVERY=text)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:] == made.stdout.splitlines()[1:]  # same address and fingerprint
