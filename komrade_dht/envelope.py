"""Envelopes: the only thing the network ever carries for users.

Layout (all integers big-endian)::

    0   version      u8    = 1; anything else is refused with a clear reason
    1   kind         u8    1 sealed, 2 shared-key, 3 public
    2   expires_at   u32   unix seconds; at most MAX_TTL ahead
    6   burn_hash    16    BLAKE2b-128(burn_secret): revealing the secret lets anyone holding it delete it
    22  pow_nonce    8     proof of work: BLAKE2b-64(hash of the envelope with this field zeroed | nonce) must be
                           at most PowParams.target(length, remaining lifetime)
    30  n_headers    u8    sealed: 1..MAX_RECIPIENTS, other kinds: 0
    31  headers      n*80  crypto_box_seal(content key) per recipient: a miss costs one X25519
    ..  body               SecretBox(content key, u16 length | inner | zero padding)

The total length is one of :data:`SIZE_CLASSES`, so length leaks only the class. The id of an envelope is
``BLAKE2b-160(bytes)``: any node can check a value against its key. The inner part is
``msgpack([payload, signature])`` where payload binds content type, sender, recipient, time, body, burn
secret and a hash of the outer fields, and the Ed25519 signature covers it, so the recipient knows who wrote
it, that it was meant for them, and that nobody changed its expiry.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from dataclasses import dataclass

from nacl import bindings
from nacl.exceptions import CryptoError

from . import codec
from .errors import CodecError, EnvelopeError
from .identity import Identity, PublicIdentity
from .slots import DEFAULT_TTL, MAX_TTL

VERSION = 1
KIND_SEALED, KIND_SHARED, KIND_PUBLIC = 1, 2, 3
SIZE_CLASSES = (256, 512, 1024)
MAX_RECIPIENTS = 8
HEADER_LEN = 80  # 32 ephemeral key + 16 MAC + 32 content key
FIXED_LEN = 31
_OUTER = struct.Struct(">BBI16s8sB")
_SECRETBOX_OVERHEAD = 24 + 16
#: How far in the future a clock may be before we call an expiry implausible.
CLOCK_SKEW = 3600
_SIG_DOMAIN = b"komrade/envelope/v1"


def envelope_id(data: bytes) -> bytes:
    """The self-certifying id of an envelope: BLAKE2b-160 of its bytes."""
    return hashlib.blake2b(data, digest_size=20).digest()


def burn_hash(secret: bytes) -> bytes:
    """What an envelope carries so that whoever knows ``secret`` can have it deleted."""
    return hashlib.blake2b(secret, digest_size=16, person=b"komrade/burn").digest()


@dataclass(frozen=True)
class Outer:
    """The fields of an envelope that every node can see and check."""

    version: int
    kind: int
    expires_at: int
    burn_hash: bytes
    pow_nonce: bytes
    n_headers: int


@dataclass(frozen=True)
class Opened:
    """An envelope this identity could open, with its authenticated contents."""

    envelope_id: bytes
    content_type: str
    sender: PublicIdentity
    recipient: bytes
    created: int
    body: bytes
    burn_secret: bytes
    expires_at: int


def parse_outer(data: bytes, now: float | None = None) -> Outer:
    """Check the structure every node must check before storing or forwarding; raise EnvelopeError if wrong."""
    if not isinstance(data, bytes):
        raise EnvelopeError("an envelope must be bytes")
    if len(data) not in SIZE_CLASSES:
        raise EnvelopeError(f"envelope of {len(data)} bytes is not one of the size classes {SIZE_CLASSES}")
    version, kind, expires_at, bhash, nonce, n = _OUTER.unpack_from(data)
    if version != VERSION:
        raise EnvelopeError(f"unknown envelope version {version}; this node speaks version {VERSION}")
    if kind not in (KIND_SEALED, KIND_SHARED, KIND_PUBLIC):
        raise EnvelopeError(f"unknown envelope kind {kind}")
    if kind == KIND_SEALED and not 1 <= n <= MAX_RECIPIENTS:
        raise EnvelopeError(f"a sealed envelope needs 1..{MAX_RECIPIENTS} recipient headers, not {n}")
    if kind != KIND_SEALED and n != 0:
        raise EnvelopeError("only sealed envelopes carry recipient headers")
    if FIXED_LEN + n * HEADER_LEN + _SECRETBOX_OVERHEAD > len(data):
        raise EnvelopeError("headers leave no room for a body")
    now = time.time() if now is None else now
    if expires_at <= now:
        raise EnvelopeError("envelope has expired")
    if expires_at > now + MAX_TTL + CLOCK_SKEW:
        raise EnvelopeError("envelope expires further ahead than the 30-day maximum")
    return Outer(version, kind, expires_at, bhash, nonce, n)


@dataclass(frozen=True)
class PowParams:
    """Proof-of-work difficulty, Bitmessage's formula: expected trials = trials_per_byte x (L + extra) x
    (1 + TTL / 2^16), for an envelope of L bytes living TTL seconds. Every node of a network must agree."""

    trials_per_byte: float = 4.0
    """Bitmessage uses 1000 for C minting; 4 makes a 14-day 1 KB DM cost ~0.4 s of pure Python on one core."""
    extra_bytes: int = 1000
    """Added to every length, so small envelopes are not nearly free (Bitmessage's payloadLengthExtraBytes)."""

    def target(self, length: int, ttl: float) -> int:
        """The highest acceptable 64-bit work value for this length and remaining lifetime."""
        size = length + self.extra_bytes
        work = self.trials_per_byte * (size + max(ttl, 0) * size / 2**16)
        return 2**64 - 1 if work <= 1 else int(2**64 / work)


def _pow_base(data: bytes) -> bytes:
    return hashlib.blake2b(data[:22] + bytes(8) + data[30:], digest_size=32, person=b"komrade/pow").digest()


def pow_value(data: bytes) -> int:
    """The 64-bit work value of an envelope (lower is more work): BLAKE2b-64(base hash | nonce)."""
    return int.from_bytes(hashlib.blake2b(_pow_base(data) + data[22:30], digest_size=8).digest(), "big")


def check_pow(data: bytes, params: PowParams, now: float | None = None) -> bool:
    """Whether the envelope carries enough work for its size and its remaining lifetime."""
    now = time.time() if now is None else now
    expires_at = int.from_bytes(data[2:6], "big")
    return pow_value(data) <= params.target(len(data), expires_at - now)


def mint_pow(data: bytes, params: PowParams, now: float | None = None) -> bytes:
    """Find a nonce that meets the target and return the envelope with it (pure Python: ~430k trials/s here)."""
    now = time.time() if now is None else now
    expires_at = int.from_bytes(data[2:6], "big")
    target = params.target(len(data), expires_at - now).to_bytes(8, "big")
    base = _pow_base(data)
    nonce = int.from_bytes(os.urandom(8), "big")
    while True:
        candidate = nonce.to_bytes(8, "big")
        if hashlib.blake2b(base + candidate, digest_size=8).digest() <= target:
            return data[:22] + candidate + data[30:]
        nonce = (nonce + 1) % 2**64


def _outer_hash(prefix: bytes) -> bytes:
    return hashlib.blake2b(prefix, digest_size=16, person=b"komrade/outer").digest()


def _pick_class(needed: int) -> int:
    for size in SIZE_CLASSES:
        if needed <= size:
            return size
    raise EnvelopeError(
        f"content needs {needed} bytes but the largest envelope is {SIZE_CLASSES[-1]}; shorten the message"
    )


def seal(
    sender: Identity,
    recipient: PublicIdentity,
    body: bytes,
    *,
    content_type: str = "dm",
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
    burn_secret: bytes | None = None,
    pow: PowParams = PowParams(),
) -> bytes:
    """Seal ``body`` from ``sender`` to ``recipient``; returns the envelope bytes (padded to a size class, with
    the proof of work ``pow`` asks for)."""
    if not 0 < ttl <= MAX_TTL:
        raise EnvelopeError(f"lifetime must be between 1 second and 30 days, not {ttl} s")
    now = time.time() if now is None else now
    created = int(now)
    expires_at = created + ttl
    burn_secret = os.urandom(16) if burn_secret is None else burn_secret
    prefix = struct.pack(">BBI16s", VERSION, KIND_SEALED, expires_at, burn_hash(burn_secret))
    payload = codec.pack(
        [content_type, sender.verify_key, recipient.verify_key, created, body, burn_secret, _outer_hash(prefix)]
    )
    inner = codec.pack([payload, sender.sign(_SIG_DOMAIN + payload)])
    plain_len = 2 + len(inner)
    size = _pick_class(FIXED_LEN + HEADER_LEN + _SECRETBOX_OVERHEAD + plain_len)
    plaintext = len(inner).to_bytes(2, "big") + inner
    plaintext += bytes(size - FIXED_LEN - HEADER_LEN - _SECRETBOX_OVERHEAD - len(plaintext))
    content_key = os.urandom(32)
    nonce = os.urandom(24)
    boxed = nonce + bindings.crypto_secretbox(plaintext, nonce, content_key)
    header = bindings.crypto_box_seal(content_key, recipient.box_public_key)
    out = prefix + bytes(8) + bytes([1]) + header + boxed
    assert len(out) == size
    return mint_pow(out, pow, now)


def _needed(content_type: str, body_len: int) -> int:
    """Envelope bytes a single-recipient sealed envelope needs for a body of ``body_len`` bytes."""
    payload = codec.pack([content_type, bytes(32), bytes(32), 2**32 - 1, bytes(body_len), bytes(16), bytes(16)])
    inner = codec.pack([payload, bytes(64)])
    return FIXED_LEN + HEADER_LEN + _SECRETBOX_OVERHEAD + 2 + len(inner)


def max_body(content_type: str = "dm") -> int:
    """The longest body that fits one single-recipient sealed envelope."""
    low, high = 0, SIZE_CLASSES[-1]
    while low < high:
        mid = (low + high + 1) // 2
        if _needed(content_type, mid) <= SIZE_CLASSES[-1]:
            low = mid
        else:
            high = mid - 1
    return low


class TrialDecryptor:
    """Tries envelopes against one identity's key; a miss costs one X25519 per recipient header."""

    def __init__(self, identity: Identity) -> None:
        self._identity = identity
        self._pk = identity.public.box_public_key
        self._sk = bytes(identity.box_private_key)

    def content_key(self, data: bytes) -> bytes | None:
        """The content key if one of the headers is for us, else None. ``data`` must have passed parse_outer."""
        n = data[30]
        for i in range(n):
            start = FIXED_LEN + i * HEADER_LEN
            try:
                return bindings.crypto_box_seal_open(data[start : start + HEADER_LEN], self._pk, self._sk)
            except CryptoError:
                continue
        return None

    def open(self, data: bytes, now: float | None = None) -> Opened | None:
        """Open an envelope meant for us; None if it is not ours; EnvelopeError if ours but forged or broken."""
        outer = parse_outer(data, now)
        if outer.kind != KIND_SEALED:
            return None
        key = self.content_key(data)
        if key is None:
            return None
        body_start = FIXED_LEN + outer.n_headers * HEADER_LEN
        boxed = data[body_start:]
        try:
            plaintext = bindings.crypto_secretbox_open(boxed[24:], boxed[:24], key)
        except CryptoError:
            raise EnvelopeError("envelope body does not decrypt under its own header key") from None
        length = int.from_bytes(plaintext[:2], "big")
        if length > len(plaintext) - 2:
            raise EnvelopeError("envelope inner length is out of range")
        try:
            inner = codec.unpack(plaintext[2 : 2 + length], max_len=len(data))
            payload, signature = inner
            fields = codec.unpack(payload, max_len=len(data))
            content_type, sender_vk, recipient_vk, created, body, burn_secret, outer_hash = fields
        except (CodecError, ValueError, TypeError):
            raise EnvelopeError("envelope inner structure is malformed") from None
        if not (
            isinstance(content_type, str)
            and isinstance(sender_vk, bytes)
            and isinstance(recipient_vk, bytes)
            and isinstance(created, int)
            and isinstance(body, bytes)
            and isinstance(burn_secret, bytes)
            and isinstance(outer_hash, bytes)
            and isinstance(signature, bytes)
        ):
            raise EnvelopeError("envelope inner fields have the wrong types")
        if recipient_vk != self._identity.verify_key:
            raise EnvelopeError("envelope was sealed to us but names another recipient (forwarded copy?)")
        if outer_hash != _outer_hash(data[:22]) or burn_hash(burn_secret) != outer.burn_hash:
            raise EnvelopeError("envelope outer fields were changed after signing")
        try:
            sender = PublicIdentity(sender_vk)
        except ValueError:
            raise EnvelopeError("envelope sender key is not a valid public key") from None
        if not sender.verify(_SIG_DOMAIN + payload, signature):
            raise EnvelopeError("envelope signature does not verify: forged sender")
        return Opened(
            envelope_id=envelope_id(data),
            content_type=content_type,
            sender=sender,
            recipient=recipient_vk,
            created=created,
            body=body,
            burn_secret=burn_secret,
            expires_at=outer.expires_at,
        )
