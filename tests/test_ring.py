"""LSAG ring signatures with scoped link tags (komrade_dht.ring)."""

from __future__ import annotations

import os
import random

import nacl.bindings as sodium
import nacl.exceptions
import pytest

from komrade_dht import ring
from komrade_dht.errors import NotInRing, RingError, RingForged, RingMalformed
from komrade_dht.identity import Identity

L = ring.GROUP_ORDER
IDENTITY_POINT = b"\x01" + bytes(31)
#: A point of order 8 (from libsodium's small-order blacklist).
ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
#: y = 0: a point of order 4.
ORDER_4 = bytes(32)
#: y = -1: the point of order 2.
ORDER_2 = bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
#: y = p: a non-canonical encoding (of y = 0).
NON_CANONICAL = bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")

IDS = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(20)]
KEYS = [i.verify_key for i in IDS]


def _on_curve(p: bytes) -> bool:
    """libsodium's add checks only that its inputs are on the curve: an oracle for the test."""
    try:
        sodium.crypto_core_ed25519_add(p, KEYS[0])
    except nacl.exceptions.CryptoError:
        return False
    return True


def _off_curve() -> bytes:
    for b in range(2, 256):
        p = bytes([b]) + bytes(31)
        if not _on_curve(p):
            return p
    raise AssertionError("no off-curve encoding found")


def _mixed_order() -> bytes:
    """A point on the curve but outside the prime-order subgroup: a valid key plus a point of order 8."""
    p = sodium.crypto_core_ed25519_add(KEYS[1], ORDER_8)
    assert _on_curve(p) and not sodium.crypto_core_ed25519_is_valid_point(p)
    return p


BAD_POINTS = {
    "identity": IDENTITY_POINT,
    "order-8": ORDER_8,
    "order-4": ORDER_4,
    "order-2": ORDER_2,
    "non-canonical": NON_CANONICAL,
    "off-curve": _off_curve(),
    "mixed-order": _mixed_order(),
}


def _fields(sig: bytes) -> list[bytes]:
    return [sig[i : i + 32] for i in range(0, len(sig), 32)]


def test_secret_scalar_gives_the_identitys_verify_key() -> None:
    for ident in IDS[:8] + [Identity.generate() for _ in range(4)]:
        x = ring.secret_scalar(ident)
        assert int.from_bytes(x, "little") < L
        assert sodium.crypto_scalarmult_ed25519_base_noclamp(x) == ident.verify_key == ident.public.verify_key


@pytest.mark.parametrize("n", range(1, 17))
def test_sign_verify_every_ring_size(n: int) -> None:
    keys = KEYS[:n]
    signer = random.Random(n).randrange(n)
    sig = ring.sign(IDS[signer], keys, b"post-1", b"up")
    assert len(sig) == ring.signature_size(n) == 64 + 32 * n
    assert ring.ring_size_of(sig) == n
    tag = ring.verify(keys, b"post-1", b"up", sig)
    assert tag == ring.link_tag(IDS[signer], b"post-1")
    shuffled = list(keys)
    random.Random(n + 100).shuffle(shuffled)
    assert ring.verify(shuffled, b"post-1", b"up", sig) == tag  # the ring's order does not matter


def test_every_member_of_a_ring_can_sign() -> None:
    keys = KEYS[:6]
    for ident in IDS[:6]:
        assert ring.verify(keys, b"s", b"m", ring.sign(ident, keys, b"s", b"m")) == ring.link_tag(ident, b"s")


def test_ring_id_is_order_independent_and_set_dependent() -> None:
    assert ring.ring_id(KEYS[:5]) == ring.ring_id(list(reversed(KEYS[:5])))
    assert ring.ring_id(KEYS[:5]) != ring.ring_id(KEYS[:4])
    assert len(ring.ring_id(KEYS[:5])) == 32


# -- linkability -------------------------------------------------------------------------------------------


def test_same_voter_same_scope_same_tag_whatever_the_ring_or_message() -> None:
    t1 = ring.verify(KEYS[:5], b"post-A", b"up", ring.sign(IDS[2], KEYS[:5], b"post-A", b"up"))
    t2 = ring.verify(KEYS[:9], b"post-A", b"down", ring.sign(IDS[2], KEYS[:9], b"post-A", b"down"))
    t3 = ring.verify(KEYS[2:4], b"post-A", b"up", ring.sign(IDS[2], KEYS[2:4], b"post-A", b"up"))
    assert t1 == t2 == t3


def test_same_voter_different_scopes_unrelated_tags() -> None:
    tags = {ring.verify(KEYS[:5], s, b"up", ring.sign(IDS[2], KEYS[:5], s, b"up")) for s in (b"a", b"b", b"c")}
    assert len(tags) == 3
    assert KEYS[2] not in tags


def test_different_voters_same_scope_different_tags() -> None:
    keys = KEYS[:10]
    tags = {ring.verify(keys, b"p", b"up", ring.sign(ident, keys, b"p", b"up")) for ident in IDS[:10]}
    assert len(tags) == 10


def test_tag_base_is_a_valid_point_and_domain_separated() -> None:
    h1, h2 = ring.tag_base(b"post-1"), ring.tag_base(b"post-2")
    assert h1 != h2
    assert sodium.crypto_core_ed25519_is_valid_point(h1) and sodium.crypto_core_ed25519_is_valid_point(h2)
    assert h1 == ring.tag_base(b"post-1")


# -- anonymity sanity --------------------------------------------------------------------------------------


def test_signature_holds_neither_the_signers_key_nor_any_ring_key() -> None:
    keys = KEYS[:8]
    for idx in (0, 3, 7):
        sig = ring.sign(IDS[idx], keys, b"scope", b"msg")
        for key in keys:
            assert key not in sig
        assert ring.secret_scalar(IDS[idx]) not in sig
        assert bytes([idx]) * 4 not in sig  # no plain index marker


def test_two_signatures_by_one_signer_on_two_scopes_share_no_field() -> None:
    a = ring.sign(IDS[4], KEYS[:8], b"scope-1", b"up")
    b = ring.sign(IDS[4], KEYS[:8], b"scope-2", b"up")
    assert not set(_fields(a)) & set(_fields(b))


def test_two_signatures_same_signer_same_scope_differ_but_share_the_tag() -> None:
    a = ring.sign(IDS[4], KEYS[:8], b"s", b"up")
    b = ring.sign(IDS[4], KEYS[:8], b"s", b"up")
    assert a != b and a[:32] == b[:32]
    assert not set(_fields(a)[1:]) & set(_fields(b)[1:])


def test_signatures_by_different_members_have_the_same_shape() -> None:
    sigs = [ring.sign(ident, KEYS[:8], b"s", b"m") for ident in IDS[:8]]
    assert {len(s) for s in sigs} == {ring.signature_size(8)}
    for s in sigs:  # every scalar is canonical and non-zero whoever signed
        assert all(0 < int.from_bytes(f, "little") < L for f in _fields(s)[1:])


# -- refusals ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good() -> bytes:
    return ring.sign(IDS[1], KEYS[:4], b"scope", b"message")


def _replace(sig: bytes, field: int, value: bytes) -> bytes:
    return sig[: 32 * field] + value + sig[32 * field + 32 :]


@pytest.mark.parametrize("length_delta", [-1, 1, -32, 32, -len(b"x" * 64)])
def test_wrong_length_is_malformed(good: bytes, length_delta: int) -> None:
    bad = good[:length_delta] if length_delta < 0 else good + bytes(length_delta)
    with pytest.raises(RingMalformed, match="bytes"):
        ring.verify(KEYS[:4], b"scope", b"message", bad)


def test_empty_and_non_bytes_signatures_are_malformed() -> None:
    with pytest.raises(RingMalformed):
        ring.verify(KEYS[:4], b"scope", b"message", b"")
    with pytest.raises(RingMalformed):
        ring.verify(KEYS[:4], b"scope", b"message", "not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("field", [1, 2, 5])  # c_0, s_0, s_3
def test_non_canonical_scalar_is_malformed(good: bytes, field: int) -> None:
    value = int.from_bytes(good[32 * field : 32 * field + 32], "little") + L  # same scalar mod L, >= L
    assert value < 2**256
    bad = _replace(good, field, value.to_bytes(32, "little"))
    with pytest.raises(RingMalformed, match="group order"):
        ring.verify(KEYS[:4], b"scope", b"message", bad)


@pytest.mark.parametrize("field", [1, 3])
def test_zero_and_all_ones_scalars_are_malformed(good: bytes, field: int) -> None:
    for value in (bytes(32), b"\xff" * 32):
        with pytest.raises(RingMalformed):
            ring.verify(KEYS[:4], b"scope", b"message", _replace(good, field, value))


@pytest.mark.parametrize("name", sorted(BAD_POINTS))
def test_bad_tag_point_is_malformed(good: bytes, name: str) -> None:
    with pytest.raises(RingMalformed, match="link tag"):
        ring.verify(KEYS[:4], b"scope", b"message", _replace(good, 0, BAD_POINTS[name]))


def test_tag_shifted_by_a_torsion_point_is_refused(good: bytes) -> None:
    """I + T8 would be a 'new voter' on a cofactor curve without the subgroup check."""
    shifted = sodium.crypto_core_ed25519_add(good[:32], ORDER_8)
    with pytest.raises(RingMalformed):
        ring.verify(KEYS[:4], b"scope", b"message", _replace(good, 0, shifted))


def test_another_valid_tag_does_not_verify(good: bytes) -> None:
    other = ring.link_tag(IDS[2], b"scope")
    with pytest.raises(RingForged):
        ring.verify(KEYS[:4], b"scope", b"message", _replace(good, 0, other))


@pytest.mark.parametrize("name", sorted(BAD_POINTS))
def test_ring_with_a_bad_point_is_malformed(name: str) -> None:
    with pytest.raises(RingMalformed, match="ring member"):
        ring.canonical_ring([KEYS[0], BAD_POINTS[name], KEYS[1]])
    sig = ring.sign(IDS[0], KEYS[:3], b"s", b"m")
    with pytest.raises(RingMalformed):
        ring.verify([KEYS[0], BAD_POINTS[name], KEYS[1]], b"s", b"m", sig)


def test_ring_refusals() -> None:
    with pytest.raises(RingMalformed, match="twice"):
        ring.canonical_ring([KEYS[0], KEYS[1], KEYS[0]])
    with pytest.raises(RingMalformed, match="at least one"):
        ring.canonical_ring([])
    with pytest.raises(RingMalformed):
        ring.canonical_ring([KEYS[0][:31]])
    with pytest.raises(RingMalformed):
        ring.canonical_ring([KEYS[0], "x" * 32])  # type: ignore[list-item]
    with pytest.raises(RingMalformed, match="at most"):
        ring.canonical_ring(os.urandom(32) for _ in range(ring.MAX_RING + 1))
    sig = ring.sign(IDS[0], KEYS[:4], b"s", b"m")
    with pytest.raises(RingMalformed, match="twice"):
        ring.verify([KEYS[0], KEYS[1], KEYS[2], KEYS[1]], b"s", b"m", sig)
    with pytest.raises(RingMalformed, match="bytes"):  # the length is checked first, before any point
        ring.verify([KEYS[0], KEYS[1], KEYS[2]], b"s", b"m", sig)
    with pytest.raises(RingMalformed, match="twice"):
        ring.sign(IDS[0], [KEYS[0], KEYS[0]], b"s", b"m")


def test_wrong_scope_message_or_ring_is_forged(good: bytes) -> None:
    with pytest.raises(RingForged):
        ring.verify(KEYS[:4], b"scope2", b"message", good)
    with pytest.raises(RingForged):
        ring.verify(KEYS[:4], b"scope", b"message2", good)
    with pytest.raises(RingForged):
        ring.verify(KEYS[1:5], b"scope", b"message", good)  # same size, another ring


def test_scope_limits() -> None:
    with pytest.raises(RingMalformed, match="scope"):
        ring.sign(IDS[0], KEYS[:2], b"", b"m")
    with pytest.raises(RingMalformed, match="scope"):
        ring.tag_base(b"x" * (ring.MAX_SCOPE + 1))


def test_every_single_bit_flip_is_refused(good: bytes) -> None:
    rng = random.Random(7)
    for bit in rng.sample(range(len(good) * 8), 40):
        bad = bytearray(good)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(RingError):
            ring.verify(KEYS[:4], b"scope", b"message", bytes(bad))


def test_a_member_outside_the_ring_cannot_sign() -> None:
    with pytest.raises(NotInRing):
        ring.sign(IDS[10], KEYS[:4], b"s", b"m")
    # Signing over a ring that includes the outsider does not verify for the ring without it.
    sig = ring.sign(IDS[10], KEYS[:3] + [KEYS[10]], b"s", b"m")
    with pytest.raises(RingForged):
        ring.verify(KEYS[:4], b"s", b"m", sig)


def test_a_random_signature_does_not_verify() -> None:
    for _ in range(5):
        tag = sodium.crypto_scalarmult_ed25519_base_noclamp(ring._random_scalar())
        fake = tag + b"".join(ring._random_scalar() for _ in range(5))
        with pytest.raises(RingForged):
            ring.verify(KEYS[:4], b"s", b"m", fake)


def test_errors_carry_a_reason() -> None:
    assert RingMalformed("x").reason == "malformed"
    assert RingForged("x").reason == "forged"
    assert NotInRing("x").reason == "not-in-ring"
    assert RingForged("x", reason="custom").reason == "custom"


def test_known_answers_pin_the_format() -> None:
    """Fixed vectors: a change to any hash, domain or encoding shows here (votes already cast would stop linking)."""
    import hashlib

    ident = Identity.from_seed(bytes(range(32)))
    h = hashlib.blake2b(len(b"post-1").to_bytes(8, "big") + b"post-1", digest_size=64,
                        person=b"komrade/lsag-hp").digest()
    expected_base = sodium.crypto_core_ed25519_add(
        sodium.crypto_core_ed25519_from_uniform(h[:32]), sodium.crypto_core_ed25519_from_uniform(h[32:])
    )
    assert ring.tag_base(b"post-1") == expected_base == bytes.fromhex(
        "baf76615b21de6d99f5e404d28aad842f207600c945f671f3f0d03befb48a2ac"
    )
    assert ring.link_tag(ident, b"post-1") == bytes.fromhex(
        "5cd7c3c1a71c3106d848bf8c89d97694a39ab60ca0fe3a54fafb422cd91c33a0"
    )
    assert ring.link_tag(ident, b"post-1") == sodium.crypto_scalarmult_ed25519_noclamp(
        ring.secret_scalar(ident), expected_base
    )
    assert ring.ring_id([ident.verify_key]) == bytes.fromhex(
        "085de5183106e44db1e5ce17d37e88555b6ebe700f8203bb3bc23d2279b680d4"
    )
