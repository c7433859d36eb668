"""Linkable ring signatures (LSAG) with a scoped link tag, on Ed25519's prime-order group through libsodium.

A member of a ring of Ed25519 public keys signs a message so that a verifier learns only that *some* member
signed, plus a 32-byte **link tag** that is the same every time the same member signs in the same **scope**
(a post id, a proposal id) and unrelated otherwise. One vote per identity per post, unlinkable across posts.

Scheme: the LSAG of Liu, Wei and Wong (2004), in the compact form of Adam Back (2015) used by CryptoNote and
Monero ("MLSAG with one key"), with the tag base point derived from the scope instead of from the signer's key
(as Liu-Wei-Wong's ``h = H(L)``, with ``L`` replaced by the scope), so that the tag is the same across rings::

    B            Ed25519 base point; L its prime order; every point below is in the order-L subgroup
    x            the member's secret scalar; P = x*B is its Ed25519 public key (see secret_scalar)
    H  = Hp(scope)                               hash to a point (see tag_base)
    I  = x*H                                     the link tag
    sign (signer at index p of the sorted ring P_0..P_{n-1}):
         a random;  c_{p+1} = Hs(prefix, a*B, a*H)
         for i = p+1 .. p-1 (mod n): s_i random; c_{i+1} = Hs(prefix, s_i*B + c_i*P_i, s_i*H + c_i*I)
         s_p = a - c_p*x (mod L)
         signature = I || c_0 || s_0 || ... || s_{n-1}       (64 + 32n bytes)
    verify: recompute c_1 .. c_n from c_0 and the s_i; accept iff c_n == c_0; return I.
    prefix = ring id (hash of the sorted ring) | scope | message | I   (lengths prefixed)

Only libsodium, through PyNaCl's bindings, touches the group: ``crypto_core_ed25519_*`` and
``crypto_scalarmult_ed25519_*noclamp``; there is no field or group arithmetic in Python. Python compares a
scalar's integer value with L, nothing more.

Every hash is BLAKE2b with its own personalisation (``komrade/lsag-*``) and length-prefixed fields.

**What verify checks, cheapest first** (all before the ring equation): the signature is exactly
64 + 32n bytes for a ring of n; every scalar (c_0, each s_i) is canonical (< L) and non-zero; the tag I and every
ring key are canonical encodings of points of the prime-order subgroup that are not of small order
(``crypto_core_ed25519_is_valid_point``, which checks on-curve, canonical, small order and subgroup membership;
the identity is also refused by name); the ring has no duplicates. Then the ring equation.

**Why the tag links only within a scope.** ``I = x * Hp(scope)``. Hp's output has no known discrete logarithm
with respect to B or to any other scope's point (BLAKE2b modelled as a random oracle; two Elligator 2 maps added,
as libsodium's ``crypto_core_ed25519_from_string_ro`` does), so the tags of one member in two scopes are
``x*H1`` and ``x*H2``; deciding that they share x given P = x*B is the decisional Diffie-Hellman problem in the
Ed25519 group. Within a scope, the ring equation forces the same x to be used in ``c*P + s*B`` and in
``c*I + s*H`` (soundness of the LSAG), so a member cannot produce a second, different tag in the same scope,
and ``I`` cannot be shifted by a torsion point (the subgroup check) to look like a new voter.

**Anonymity.** Every s_i and c_0 is uniformly distributed whoever signed (the signer's s_p is masked by the
random ``a``); the ring is sorted before signing, so the order of the caller's list says nothing either. The
signer's index appears nowhere.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Iterable, Sequence

import nacl.bindings as sodium
import nacl.exceptions

from .errors import NotInRing, RingForged, RingMalformed
from .identity import Identity

__all__ = [
    "POINT_BYTES",
    "SCALAR_BYTES",
    "GROUP_ORDER",
    "MAX_RING",
    "MAX_SCOPE",
    "secret_scalar",
    "canonical_ring",
    "ring_id",
    "tag_base",
    "link_tag",
    "signature_size",
    "ring_size_of",
    "sign",
    "verify",
]

POINT_BYTES = 32
SCALAR_BYTES = 32
#: L, the prime order of Ed25519's main subgroup (2^252 + 27742317777372353535851937790883648493).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
#: Largest ring accepted (a signature of 64 + 32 * 1024 bytes; votes set a much smaller limit).
MAX_RING = 1024
#: Longest scope accepted (post and proposal ids are 20 or 32 bytes).
MAX_SCOPE = 256

_IDENTITY_POINT = b"\x01" + bytes(31)

_PERSON_HP = b"komrade/lsag-hp"
_PERSON_C = b"komrade/lsag-c"
_PERSON_RING = b"komrade/lsag-id"


def _lp(data: bytes) -> bytes:
    """``data`` prefixed by its length (8 bytes, big-endian): fields can never run into each other."""
    return len(data).to_bytes(8, "big") + data


@functools.lru_cache(maxsize=8192)
def _valid_point(p: bytes) -> bool:
    # Cached: a deterministic check of public bytes (a ring's keys recur in every vote of a tally).
    return bool(sodium.crypto_core_ed25519_is_valid_point(p))


def _is_group_point(p: bytes) -> bool:
    """True for a 32-byte canonical point of the prime-order subgroup, not of small order, not the identity."""
    return len(p) == POINT_BYTES and p != _IDENTITY_POINT and _valid_point(p)


def _is_scalar(s: bytes) -> bool:
    """True for a canonical (< L), non-zero 32-byte little-endian scalar."""
    return len(s) == SCALAR_BYTES and 0 < int.from_bytes(s, "little") < GROUP_ORDER


def _reduce64(data: bytes) -> bytes:
    return sodium.crypto_core_ed25519_scalar_reduce(data)


def _random_scalar() -> bytes:
    """A uniform non-zero scalar mod L (64 random bytes reduced, as libsodium's scalar_random does)."""
    while True:
        s = _reduce64(os.urandom(64))
        if _is_scalar(s):
            return s


def secret_scalar(identity: Identity) -> bytes:
    """The identity's Ed25519 secret scalar x, reduced mod L, such that ``x * B`` is its verify key.

    As Ed25519 does: SHA-512 of the 32-byte seed, the first half clamped (low 3 bits cleared, bit 255 cleared,
    bit 254 set); then reduced mod L (B has order L, so the point is unchanged and the scalar is canonical).
    """
    a = bytearray(hashlib.sha512(identity.seed).digest()[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return _reduce64(bytes(a) + bytes(32))


def canonical_ring(ring: Iterable[bytes]) -> tuple[bytes, ...]:
    """The ring as a sorted tuple of distinct valid keys; :class:`RingMalformed` otherwise.

    Raises if the ring is empty or larger than :data:`MAX_RING`, holds something that is not 32 bytes, not a
    point of the prime-order subgroup (off the curve, small order, identity, non-canonical), or a duplicate.
    """
    keys: list[bytes] = []
    for key in ring:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise RingMalformed("a ring member must be 32 bytes")
        keys.append(bytes(key))
        if len(keys) > MAX_RING:
            raise RingMalformed(f"a ring has at most {MAX_RING} members")
    if not keys:
        raise RingMalformed("a ring needs at least one member")
    keys.sort()
    for i, key in enumerate(keys):
        if i and key == keys[i - 1]:
            raise RingMalformed("the ring holds the same key twice")
        if not _is_group_point(key):
            raise RingMalformed(f"ring member {i} is not a valid Ed25519 key of the prime-order subgroup")
    return tuple(keys)


def _ring_id_sorted(keys: Sequence[bytes]) -> bytes:
    h = hashlib.blake2b(digest_size=32, person=_PERSON_RING)
    h.update(len(keys).to_bytes(4, "big"))
    for key in keys:
        h.update(key)
    return h.digest()


def ring_id(ring: Iterable[bytes]) -> bytes:
    """A 32-byte id of a ring (BLAKE2b-256 of its sorted keys): the same set gives the same id in any order."""
    return _ring_id_sorted(canonical_ring(ring))


def _check_scope(scope: bytes) -> bytes:
    if not isinstance(scope, (bytes, bytearray, memoryview)):
        raise RingMalformed("a scope must be bytes")
    scope = bytes(scope)
    if not 0 < len(scope) <= MAX_SCOPE:
        raise RingMalformed(f"a scope is 1 to {MAX_SCOPE} bytes, got {len(scope)}")
    return scope


def tag_base(scope: bytes) -> bytes:
    """Hp(scope): the scope's point, whose discrete logarithm nobody knows.

    BLAKE2b-512 (personalisation ``komrade/lsag-hp``) of the length-prefixed scope; each 32-byte half is mapped to
    the prime-order subgroup with ``crypto_core_ed25519_from_uniform`` (Elligator 2, then cofactor cleared) and
    the two points are added (the random-oracle construction of hash-to-curve, so Hp is not restricted to the
    image of one map).
    """
    return _tag_base(_check_scope(scope))


@functools.lru_cache(maxsize=1024)
def _tag_base(scope: bytes) -> bytes:
    """tag_base of a checked scope (cached: the same post's votes share it)."""
    h = hashlib.blake2b(_lp(scope), digest_size=64, person=_PERSON_HP).digest()
    p = sodium.crypto_core_ed25519_add(
        sodium.crypto_core_ed25519_from_uniform(h[:32]), sodium.crypto_core_ed25519_from_uniform(h[32:])
    )
    if not _is_group_point(p):  # pragma: no cover - probability ~2^-250
        raise RingMalformed("this scope hashes to an unusable point; use another scope")
    return p


def link_tag(identity: Identity, scope: bytes) -> bytes:
    """The 32-byte link tag ``x * Hp(scope)`` this identity's signatures in ``scope`` carry."""
    return sodium.crypto_scalarmult_ed25519_noclamp(secret_scalar(identity), tag_base(scope))


def signature_size(ring_size: int) -> int:
    """Bytes of a signature over a ring of ``ring_size`` members: 64 + 32 * ring_size."""
    return 2 * SCALAR_BYTES + SCALAR_BYTES * ring_size


def ring_size_of(signature: bytes) -> int | None:
    """The ring size a signature of this length is for, or None if no ring size gives this length."""
    n, rest = divmod(len(signature) - 2 * SCALAR_BYTES, SCALAR_BYTES)
    return n if rest == 0 and 1 <= n <= MAX_RING else None


def _prefix(rid: bytes, scope: bytes, message: bytes, tag: bytes) -> hashlib._Hash:
    h = hashlib.blake2b(digest_size=64, person=_PERSON_C)
    h.update(rid + _lp(scope) + _lp(message) + tag)
    return h


def _challenge(prefix: hashlib._Hash, left: bytes, right: bytes) -> bytes:
    h = prefix.copy()
    h.update(left + right)
    return _reduce64(h.digest())


def _round(s: bytes, c: bytes, key: bytes, base: bytes, tag: bytes) -> tuple[bytes, bytes]:
    """(s*B + c*P, s*H + c*I); CryptoError from libsodium if a scalar is zero or a product is the identity."""
    left = sodium.crypto_core_ed25519_add(
        sodium.crypto_scalarmult_ed25519_base_noclamp(s), sodium.crypto_scalarmult_ed25519_noclamp(c, key)
    )
    right = sodium.crypto_core_ed25519_add(
        sodium.crypto_scalarmult_ed25519_noclamp(s, base), sodium.crypto_scalarmult_ed25519_noclamp(c, tag)
    )
    return left, right


def _as_bytes(value: bytes, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise RingMalformed(f"{what} must be bytes")
    return bytes(value)


def sign(identity: Identity, ring: Sequence[bytes], scope: bytes, message: bytes) -> bytes:
    """Sign ``message`` in ``scope`` as an anonymous member of ``ring`` (32-byte Ed25519 public keys).

    The ring is sorted first (any order in, the same signature format out). Returns ``I || c_0 || s_0..s_{n-1}``
    (64 + 32n bytes), where I is :func:`link_tag`. Raises :class:`NotInRing` if the identity's key is not in the
    ring, :class:`RingMalformed` for an invalid ring or scope.
    """
    keys = canonical_ring(ring)
    scope = _check_scope(scope)
    message = _as_bytes(message, "a message")
    x = secret_scalar(identity)
    me = sodium.crypto_scalarmult_ed25519_base_noclamp(x)
    if not hmac.compare_digest(me, identity.verify_key):  # pragma: no cover - would be a libsodium change
        raise RingMalformed("the secret scalar does not match the identity's key")
    try:
        p = keys.index(me)
    except ValueError:
        raise NotInRing("this identity is not a member of the ring") from None
    n = len(keys)
    base = tag_base(scope)
    tag = sodium.crypto_scalarmult_ed25519_noclamp(x, base)
    prefix = _prefix(_ring_id_sorted(keys), scope, message, tag)
    while True:  # retried only if a drawn value makes libsodium refuse a zero scalar (probability ~2^-250)
        try:
            a = _random_scalar()
            c: list[bytes] = [b""] * n
            s: list[bytes] = [b""] * n
            c[(p + 1) % n] = _challenge(
                prefix,
                sodium.crypto_scalarmult_ed25519_base_noclamp(a),
                sodium.crypto_scalarmult_ed25519_noclamp(a, base),
            )
            for step in range(1, n):
                i = (p + step) % n
                s[i] = _random_scalar()
                c[(i + 1) % n] = _challenge(prefix, *_round(s[i], c[i], keys[i], base, tag))
            s[p] = sodium.crypto_core_ed25519_scalar_sub(a, sodium.crypto_core_ed25519_scalar_mul(c[p], x))
            if not all(_is_scalar(v) for v in (c[0], *s)):
                continue
        except nacl.exceptions.CryptoError:  # pragma: no cover - see the loop's comment
            continue
        return tag + c[0] + b"".join(s)


def verify(ring: Sequence[bytes], scope: bytes, message: bytes, signature: bytes) -> bytes:
    """Check a ring signature; return its 32-byte link tag.

    Raises :class:`RingMalformed` (before the ring equation is computed) when the signature's length does not match
    the ring, a scalar is not canonical or is zero, the tag is not a valid point of the prime-order subgroup (off
    the curve, small order, identity), or the ring is invalid (see :func:`canonical_ring`); raises
    :class:`RingForged` when the ring equation does not close (forged, another scope, message or ring, or a
    signer outside the ring).
    """
    signature = _as_bytes(signature, "a signature")
    scope = _check_scope(scope)
    message = _as_bytes(message, "a message")
    members = list(ring)
    n = len(members)
    # Cheapest first: lengths, then integer comparisons, then point checks (each a multiplication by L).
    if len(signature) != signature_size(n):
        raise RingMalformed(
            f"a signature over a ring of {n} is {signature_size(n)} bytes, got {len(signature)}"
        )
    tag = signature[:32]
    c0 = signature[32:64]
    s = [signature[64 + 32 * i : 96 + 32 * i] for i in range(n)]
    if not _is_scalar(c0) or not all(_is_scalar(v) for v in s):
        raise RingMalformed("a scalar of the signature is zero or not below the group order")
    keys = canonical_ring(members)
    if not _is_group_point(tag):
        raise RingMalformed("the link tag is not a valid point of the prime-order subgroup")
    base = tag_base(scope)
    prefix = _prefix(_ring_id_sorted(keys), scope, message, tag)
    c = c0
    try:
        for i in range(n):
            c = _challenge(prefix, *_round(s[i], c, keys[i], base, tag))
    except nacl.exceptions.CryptoError:
        # A challenge reduced to zero or a product is the identity: impossible for an honest signature.
        raise RingForged("the ring signature does not verify") from None
    if not hmac.compare_digest(c, c0):
        raise RingForged("the ring signature does not verify (forged, or another ring, scope or message)")
    return tag
