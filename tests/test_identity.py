"""Tests for komrade_dht.identity."""

from __future__ import annotations

import copy
import pickle
import re

import nacl.bindings
import pytest
from nacl.public import SealedBox
from nacl.signing import VerifyKey

from komrade_dht.identity import Identity, PublicIdentity, fingerprint, is_valid_verify_key

SEED = bytes(range(32))


def test_from_seed_is_deterministic() -> None:
    a, b = Identity.from_seed(SEED), Identity.from_seed(SEED)
    assert a.seed == SEED
    assert a.verify_key == b.verify_key
    assert a.public == b.public
    assert a == b
    assert bytes(a.signing_key) == SEED
    assert len(a.verify_key) == 32
    assert a.public.verify_key == a.verify_key


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, "a" * 32])
def test_from_seed_rejects_wrong_length(bad: object) -> None:
    with pytest.raises(ValueError):
        Identity.from_seed(bad)  # type: ignore[arg-type]


def test_generate_gives_distinct_identities() -> None:
    a, b = Identity.generate(), Identity.generate()
    assert len(a.seed) == 32
    assert a.seed != b.seed and a.verify_key != b.verify_key
    assert a != b


def test_sign_and_verify() -> None:
    ident = Identity.from_seed(SEED)
    sig = ident.sign(b"hello")
    assert len(sig) == 64
    assert ident.public.verify(b"hello", sig)
    VerifyKey(ident.verify_key).verify(b"hello", sig)  # interoperable with plain Ed25519
    assert not ident.public.verify(b"hellO", sig)
    tampered = bytes([sig[0] ^ 1]) + sig[1:]
    assert not ident.public.verify(b"hello", tampered)
    assert not Identity.generate().public.verify(b"hello", sig)


@pytest.mark.parametrize("bad_sig", [b"", b"\x00" * 63, b"\x00" * 65, b"\xff" * 64, "x" * 64, None, 12])
def test_verify_never_raises_on_bad_signature(bad_sig: object) -> None:
    assert Identity.from_seed(SEED).public.verify(b"m", bad_sig) is False  # type: ignore[arg-type]


def test_x25519_conversion_consistent() -> None:
    ident = Identity.generate()
    box_pub = ident.public.box_public_key
    assert len(box_pub) == 32
    assert bytes(ident.box_private_key.public_key) == box_pub
    sealed = SealedBox(ident.box_private_key.public_key).encrypt(b"secret")
    sealed2 = nacl.bindings.crypto_box_seal(b"secret 2", box_pub)
    opener = SealedBox(ident.box_private_key)
    assert opener.decrypt(sealed) == b"secret"
    assert opener.decrypt(sealed2) == b"secret 2"


def test_local_data_key() -> None:
    a = Identity.from_seed(SEED)
    key = a.local_data_key()
    assert len(key) == 32
    assert key == Identity.from_seed(SEED).local_data_key()
    assert key != Identity.generate().local_data_key()
    assert key not in (a.seed, a.verify_key, bytes(a.box_private_key), a.public.box_public_key)


def test_fingerprint_format_stable_and_distinct() -> None:
    a = Identity.from_seed(SEED)
    fp = a.public.fingerprint()
    assert re.fullmatch(r"\d{5}( \d{5}){5}", fp)
    assert fp == fingerprint(a.verify_key) == a.fingerprint()
    assert fp == Identity.from_seed(SEED).public.fingerprint()
    others = {Identity.generate().public.fingerprint() for _ in range(50)}
    assert fp not in others and len(others) == 50


def test_fingerprint_known_value() -> None:
    # Pin the algorithm: a change here breaks every fingerprint people have already compared.
    import hashlib

    vk = Identity.from_seed(SEED).verify_key
    digest = hashlib.blake2b(vk, digest_size=30, person=b"komrade/fpr").digest()
    expected = " ".join(f"{int.from_bytes(digest[i:i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))
    assert fingerprint(vk) == expected


def test_fingerprint_rejects_wrong_length() -> None:
    with pytest.raises(ValueError):
        fingerprint(b"x" * 31)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x01" * 31,
        b"\x01" * 33,
        b"\x00" * 32,  # small order
        b"\x01" + b"\x00" * 31,  # identity point
        b"\xff" * 32,  # non-canonical
    ],
)
def test_public_identity_rejects_invalid_keys(bad: bytes) -> None:
    assert not is_valid_verify_key(bad)
    with pytest.raises(ValueError):
        PublicIdentity(bad)


def test_public_identity_rejects_off_curve_point() -> None:
    # Find some 32-byte string that is not a point on the curve (about half of all y values are not).
    for i in range(256):
        candidate = bytes([i, 7]) + b"\x11" * 30
        if not is_valid_verify_key(candidate):
            with pytest.raises(ValueError):
                PublicIdentity(candidate)
            return
    pytest.fail("no invalid point found")


def test_public_identity_frozen_and_hashable() -> None:
    pub = Identity.from_seed(SEED).public
    with pytest.raises(AttributeError):
        pub.verify_key = b"x" * 32  # type: ignore[misc]
    assert {pub: 1}[PublicIdentity(pub.verify_key)] == 1
    assert PublicIdentity(bytearray(pub.verify_key)).verify_key == pub.verify_key


def test_no_secret_in_repr_and_no_pickle() -> None:
    ident = Identity.from_seed(SEED)
    text = repr(ident) + str(ident)
    assert SEED.hex() not in text and repr(SEED) not in text
    assert ident.fingerprint() in text
    with pytest.raises(TypeError):
        pickle.dumps(ident)
    assert copy.deepcopy(ident) is ident
