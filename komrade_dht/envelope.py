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
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from nacl import bindings
from nacl.exceptions import CryptoError

from . import codec
from .errors import CodecError, EnvelopeError
from .identity import Identity, PublicIdentity, RootlessIdentity
from .slots import DEFAULT_TTL, MAX_TTL

VERSION = 1
KIND_SEALED, KIND_SHARED, KIND_PUBLIC = 1, 2, 3
SIZE_CLASSES = (256, 512, 1024)
MAX_RECIPIENTS = 8
HEADER_LEN = 80  # 32 ephemeral key + 16 MAC + 32 content key
#: A contact tag (issue 12): 16 bytes per recipient that only that recipient can recognise without public-key work.
TAG_LEN = 16
#: Bit of the kind byte that marks a sealed envelope carrying contact tags.
TAGGED = 0x80
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
    """The fields of an envelope that every node can see and check. ``kind`` is the base kind; ``tagged`` says a
    sealed envelope carries a 16-byte contact tag per recipient header (kind byte | TAGGED)."""

    version: int
    kind: int
    expires_at: int
    burn_hash: bytes
    pow_nonce: bytes
    n_headers: int
    tagged: bool = False

    @property
    def headers_at(self) -> int:
        """Offset of the first recipient header (after the tags, if any)."""
        return FIXED_LEN + (TAG_LEN * self.n_headers if self.tagged else 0)


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
    outer = _check_fixed(data, now)
    if outer.headers_at + outer.n_headers * HEADER_LEN + _SECRETBOX_OVERHEAD > len(data):
        raise EnvelopeError("headers leave no room for a body")
    return outer


def head(data: bytes) -> bytes:
    """The part of an envelope a reader needs to decide whether it is theirs: fixed fields and recipient headers
    (``get_heads`` carries these, so a miss costs a reader a tenth of a datagram, not a whole envelope)."""
    tags = TAG_LEN * data[30] if data[1] & TAGGED else 0
    return data[: FIXED_LEN + tags + data[30] * HEADER_LEN]


def tags_of(head_or_envelope: bytes) -> list[bytes]:
    """The contact tags an envelope (or its head) carries, one per recipient header; [] if untagged."""
    if len(head_or_envelope) < FIXED_LEN or not head_or_envelope[1] & TAGGED:
        return []
    n = head_or_envelope[30]
    return [head_or_envelope[FIXED_LEN + i * TAG_LEN : FIXED_LEN + (i + 1) * TAG_LEN] for i in range(n)]


def parse_head(data: bytes, now: float | None = None) -> Outer:
    """Check a head as :func:`parse_outer` checks an envelope; raise EnvelopeError if it is not a valid head."""
    if not isinstance(data, bytes) or len(data) < FIXED_LEN:
        raise EnvelopeError("an envelope head must be at least the fixed fields")
    outer = _check_fixed(data, now)
    if len(data) != outer.headers_at + outer.n_headers * HEADER_LEN:
        raise EnvelopeError("an envelope head must end after its recipient headers")
    return outer


def _check_fixed(data: bytes, now: float | None) -> Outer:
    version, kind_byte, expires_at, bhash, nonce, n = _OUTER.unpack_from(data)
    if version != VERSION:
        raise EnvelopeError(f"unknown envelope version {version}; this node speaks version {VERSION}")
    kind, tagged = kind_byte & ~TAGGED, bool(kind_byte & TAGGED)
    if kind not in (KIND_SEALED, KIND_SHARED, KIND_PUBLIC):
        raise EnvelopeError(f"unknown envelope kind {kind}")
    if tagged and kind != KIND_SEALED:
        raise EnvelopeError("only sealed envelopes carry contact tags")
    if kind == KIND_SEALED and not 1 <= n <= MAX_RECIPIENTS:
        raise EnvelopeError(f"a sealed envelope needs 1..{MAX_RECIPIENTS} recipient headers, not {n}")
    if kind != KIND_SEALED and n != 0:
        raise EnvelopeError("only sealed envelopes carry recipient headers")
    now = time.time() if now is None else now
    if expires_at <= now:
        raise EnvelopeError("envelope has expired")
    if expires_at > now + MAX_TTL + CLOCK_SKEW:
        raise EnvelopeError("envelope expires further ahead than the 30-day maximum")
    return Outer(version, kind, expires_at, bhash, nonce, n, tagged)


#: The "slot" of an envelope that is stored only under its own id and appended to no slot (e.g. an image chunk).
NO_SLOT = bytes(20)
#: Argon2id salt of the proof of work (a constant: what varies per envelope is the hashed input).
_POW_SALT = b"komrade/pow/v2\x00\x00"


@dataclass(frozen=True)
class PowParams:
    """Proof-of-work difficulty, Bitmessage's formula with two changes. Expected trials =
    ``trials_per_byte x (L + extra_bytes) x headers x (1 + max(TTL, min_ttl) / 2^16)`` for an envelope of L bytes
    with ``headers`` recipient headers (at least 1) living TTL seconds. Every node of a network must agree.

    - Work scales with recipient headers, because each header costs every reader of the slot one X25519 on a miss.
    - Lifetimes shorter than ``min_ttl`` are priced as ``min_ttl``: a burst of short-lived junk is not nearly free.

    One trial is one Argon2id evaluation (libsodium, ``memlimit`` bytes, one pass) over a hash of the envelope, the
    slot it is appended to and the nonce. Argon2id runs in C for everyone, so an honest sender in Python pays what
    an attacker with a C minter pays per trial (with BLAKE2b the attacker was ~10x faster than Python); and the work
    binds the slot, so one proof of work buys one slot entry, not one in every slot an attacker names.
    """

    trials_per_byte: float = 0.35
    """0.35: a 14-day DM (512 bytes, one header) needs ~10,000 trials, ~0.4 s on one core here (benchmarks/pow.py)."""
    extra_bytes: int = 1000
    """Added to every length, so small envelopes are not nearly free (Bitmessage's payloadLengthExtraBytes)."""
    min_ttl: int = 86400
    """Lifetimes below this are priced as this (one day)."""
    memlimit: int = 65536
    """Argon2id memory per trial, in bytes (64 KiB: ~40 us per trial here)."""
    blob_factor: float = 1 / 16
    """Price of a blob stored under its own id only (``NO_SLOT``: an image chunk), relative to a slot entry. It
    lands on its id's holders, not in anyone's slot, so it costs readers nothing unless they ask for it; a 200 KB
    image (~220 chunks) then mints in ~8 s instead of ~2 minutes."""

    def target(self, length: int, ttl: float, headers: int = 1, blob: bool = False) -> int:
        """The highest acceptable 64-bit work value for this length, remaining lifetime and header count
        (``blob``: stored under its own id only, priced at ``blob_factor``)."""
        size = (length + self.extra_bytes) * max(1, headers)
        work = self.trials_per_byte * size * (1 + max(ttl, self.min_ttl) / 2**16)
        if blob:
            work *= self.blob_factor
        return 2**64 - 1 if work <= 1 else int(2**64 / work)


def _pow_base(data: bytes, slot: bytes) -> bytes:
    if not (isinstance(slot, bytes) and len(slot) == 20):
        raise ValueError("the proof of work binds a 20-byte slot id (NO_SLOT for a blob stored under its id only)")
    return hashlib.blake2b(data[:22] + bytes(8) + data[30:] + slot, digest_size=32, person=b"komrade/pow2").digest()


def _trial(base: bytes, nonce: bytes, params: PowParams) -> bytes:
    return bindings.crypto_pwhash_alg(
        16, base + nonce, _POW_SALT, 1, params.memlimit, bindings.crypto_pwhash_ALG_ARGON2ID13
    )[:8]


def pow_value(data: bytes, slot: bytes, params: PowParams = PowParams()) -> int:
    """The 64-bit work value of an envelope appended to ``slot`` (lower is more work)."""
    return int.from_bytes(_trial(_pow_base(data, slot), data[22:30], params), "big")


def _target_of(data: bytes, params: PowParams, now: float, slot: bytes) -> int:
    expires_at = int.from_bytes(data[2:6], "big")
    headers = data[30] if len(data) > 30 else 1
    return params.target(len(data), expires_at - now, headers, blob=slot == NO_SLOT)


def check_pow(data: bytes, params: PowParams, slot: bytes, now: float | None = None) -> bool:
    """Whether the envelope carries enough work, for ``slot``, for its size, headers and remaining lifetime."""
    now = time.time() if now is None else now
    target = _target_of(data, params, now, slot)
    if target == 2**64 - 1:
        return True
    return pow_value(data, slot, params) <= target


def mint_pow(data: bytes, params: PowParams, slot: bytes, now: float | None = None) -> bytes:
    """Find a nonce that meets the target for ``slot`` and return the envelope with it (~40 us per trial)."""
    now = time.time() if now is None else now
    target = _target_of(data, params, now, slot).to_bytes(8, "big")
    base = _pow_base(data, slot)
    nonce = int.from_bytes(os.urandom(8), "big")
    while True:
        candidate = nonce.to_bytes(8, "big")
        if target == b"\xff" * 8 or _trial(base, candidate, params) <= target:
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
    slot: bytes = NO_SLOT,
    tag: bytes | None = None,
    to_keys: Sequence[bytes] | None = None,
) -> bytes:
    """Seal ``body`` from ``sender`` to ``recipient``; returns the envelope bytes (padded to a size class, with
    the proof of work ``pow`` asks for, bound to ``slot``: the slot it will be appended to). ``tag``: a 16-byte
    contact tag the recipient can recognise without public-key work (:mod:`komrade_dht.social.tags`).
    ``to_keys``: the X25519 keys to write a recipient header for (the recipient's devices,
    :mod:`komrade_dht.social.devices`), in random order; by default the recipient's own box key. The envelope
    still names ``recipient``, whichever of these keys opens it."""
    if tag is not None and len(tag) != TAG_LEN:
        raise EnvelopeError(f"a contact tag is {TAG_LEN} bytes")
    keys = [recipient.box_public_key] if to_keys is None else list(dict.fromkeys(to_keys))
    if not 1 <= len(keys) <= MAX_RECIPIENTS or any(not isinstance(k, bytes) or len(k) != 32 for k in keys):
        raise EnvelopeError(f"a sealed envelope goes to 1..{MAX_RECIPIENTS} X25519 keys of 32 bytes")
    random.SystemRandom().shuffle(keys)
    if not 0 < ttl <= MAX_TTL:
        raise EnvelopeError(f"lifetime must be between 1 second and 30 days, not {ttl} s")
    now = time.time() if now is None else now
    created = int(now)
    expires_at = created + ttl
    burn_secret = os.urandom(16) if burn_secret is None else burn_secret
    kind = KIND_SEALED | (TAGGED if tag is not None else 0)
    # one tag per header: the contact's where its reader looks, random bytes in the others
    tags = b"".join(tag if i == 0 else os.urandom(TAG_LEN) for i in range(len(keys))) if tag is not None else b""
    prefix = struct.pack(">BBI16s", VERSION, kind, expires_at, burn_hash(burn_secret))
    payload = codec.pack(
        [content_type, sender.verify_key, recipient.verify_key, created, body, burn_secret, _outer_hash(prefix)]
    )
    inner = codec.pack([payload, sender.sign(_SIG_DOMAIN + payload)])
    plain_len = 2 + len(inner)
    headers_len = HEADER_LEN * len(keys)
    size = _pick_class(FIXED_LEN + len(tags) + headers_len + _SECRETBOX_OVERHEAD + plain_len)
    plaintext = len(inner).to_bytes(2, "big") + inner
    plaintext += bytes(size - FIXED_LEN - len(tags) - headers_len - _SECRETBOX_OVERHEAD - len(plaintext))
    content_key = os.urandom(32)
    nonce = os.urandom(24)
    boxed = nonce + bindings.crypto_secretbox(plaintext, nonce, content_key)
    headers = b"".join(bindings.crypto_box_seal(content_key, k) for k in keys)
    out = prefix + bytes(8) + bytes([len(keys)]) + tags + headers + boxed
    assert len(out) == size
    return mint_pow(out, pow, slot, now)


def _needed(content_type: str, body_len: int, headers: int = 1) -> int:
    """Envelope bytes a sealed envelope with ``headers`` recipient headers needs for a body of ``body_len`` bytes."""
    payload = codec.pack([content_type, bytes(32), bytes(32), 2**32 - 1, bytes(body_len), bytes(16), bytes(16)])
    inner = codec.pack([payload, bytes(64)])
    return FIXED_LEN + headers * (TAG_LEN + HEADER_LEN) + _SECRETBOX_OVERHEAD + 2 + len(inner)  # room for tags


def max_body(content_type: str = "dm", headers: int = 1) -> int:
    """The longest body that fits one sealed envelope with ``headers`` recipient headers (one per device of the
    recipient, :mod:`komrade_dht.social.devices`)."""
    low, high = 0, SIZE_CLASSES[-1]
    while low < high:
        mid = (low + high + 1) // 2
        if _needed(content_type, mid, headers) <= SIZE_CLASSES[-1]:
            low = mid
        else:
            high = mid - 1
    return low


class TrialDecryptor:
    """Tries envelopes against one identity's keys; a miss costs one X25519 per recipient header and key.

    ``identity``: the identity envelopes must name as their recipient; its own box key is tried if it is a full
    :class:`Identity`. ``devices``: further keys that open envelopes sealed to that identity (a device's own key,
    :mod:`komrade_dht.social.devices`); a device paired without the root key passes only its public identity."""

    def __init__(
        self, identity: Identity | PublicIdentity | RootlessIdentity, devices: Sequence[Identity] = ()
    ) -> None:
        self._recipient = identity.verify_key
        keys = ([identity] if isinstance(identity, Identity) else []) + list(devices)
        pairs = {k.verify_key: (k.public.box_public_key, bytes(k.box_private_key)) for k in keys}
        if not pairs:
            raise ValueError("a trial decryptor needs at least one secret key")
        self._keys = list(pairs.values())

    def content_key(self, data: bytes) -> bytes | None:
        """The content key if one of the headers is for us, else None. ``data`` must have passed parse_outer."""
        n = data[30]
        first = FIXED_LEN + (TAG_LEN * n if data[1] & TAGGED else 0)
        for i in range(n):
            start = first + i * HEADER_LEN
            for pk, sk in self._keys:
                try:
                    return bindings.crypto_box_seal_open(data[start : start + HEADER_LEN], pk, sk)
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
        body_start = outer.headers_at + outer.n_headers * HEADER_LEN
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
        if recipient_vk != self._recipient:
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


# --- public envelopes (world and local posts) ------------------------------------------------------------------
#
# Layout: the fixed fields (kind 3, no recipient headers), then ``u16 length | inner | random padding`` in clear.
# ``inner = msgpack([payload, signature])``, ``payload = msgpack([content_type, author key or nil, created, body,
# outer hash])``. A signed envelope's Ed25519 signature covers ``"komrade/public/v1" | payload`` (so it is never
# valid as a DM's, whose domain differs) and, through the outer hash, its expiry and burn hash. An anonymous one
# has nil for the key and the signature: nothing in it names its author or repeats across two of their posts (the
# burn hash, the padding and the proof-of-work nonce are fresh random bytes; the burn secret stays with the author).

_PUBLIC_DOMAIN = b"komrade/public/v1"


@dataclass(frozen=True)
class OpenedPublic:
    """A public envelope that parsed, with its signature checked (``author`` None: anonymous)."""

    envelope_id: bytes
    post_id: bytes
    """BLAKE2b-160 of the outer fields before the nonce and the (decrypted) inner part: the same for the copies of
    one post appended to several slots (each copy has its own work and padding, so its own envelope id)."""
    content_type: str
    author: PublicIdentity | None
    created: int
    body: bytes
    expires_at: int


def _post_id(prefix: bytes, inner: bytes) -> bytes:
    return hashlib.blake2b(prefix[:22] + inner, digest_size=20, person=b"komrade/postid").digest()


def make_public(
    author: Identity | None,
    body: bytes,
    *,
    content_type: str = "post",
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
    burn_secret: bytes | None = None,
    pow: PowParams = PowParams(),
    slot: bytes = NO_SLOT,
) -> bytes:
    """A public envelope carrying ``body`` in clear, signed by ``author`` (None: anonymous), in the smallest size
    class that fits, with the proof of work for ``slot``. EnvelopeError if it does not fit 1024 bytes or the
    lifetime is out of range. Keep ``burn_secret`` to delete it later (a fresh random one if None)."""
    if not 0 < ttl <= MAX_TTL:
        raise EnvelopeError(f"lifetime must be between 1 second and 30 days, not {ttl} s")
    now = time.time() if now is None else now
    created = int(now)
    burn_secret = os.urandom(16) if burn_secret is None else burn_secret
    prefix = struct.pack(">BBI16s", VERSION, KIND_PUBLIC, created + ttl, burn_hash(burn_secret))
    vk = author.verify_key if author is not None else None
    payload = codec.pack([content_type, vk, created, body, _outer_hash(prefix)])
    signature = author.sign(_PUBLIC_DOMAIN + payload) if author is not None else None
    inner = codec.pack([payload, signature])
    size = _pick_class(FIXED_LEN + 2 + len(inner))
    rest = len(inner).to_bytes(2, "big") + inner
    out = prefix + bytes(8) + bytes([0]) + rest + os.urandom(size - FIXED_LEN - len(rest))
    assert len(out) == size
    return mint_pow(out, pow, slot, now)


def public_capacity(content_type: str = "post", signed: bool = True) -> int:
    """The longest body a signed (or anonymous) public envelope of 1024 bytes carries."""
    def needed(n: int) -> int:
        payload = codec.pack([content_type, bytes(32) if signed else None, 2**32 - 1, bytes(n), bytes(16)])
        return FIXED_LEN + 2 + len(codec.pack([payload, bytes(64) if signed else None]))

    low, high = 0, SIZE_CLASSES[-1]
    while low < high:
        mid = (low + high + 1) // 2
        if needed(mid) <= SIZE_CLASSES[-1]:
            low = mid
        else:
            high = mid - 1
    return low


def open_public(data: bytes, now: float | None = None) -> OpenedPublic:
    """Parse a public envelope and check its signature (when signed); EnvelopeError if it is not a valid one."""
    outer = parse_outer(data, now)
    if outer.kind != KIND_PUBLIC:
        raise EnvelopeError("not a public envelope")
    length = int.from_bytes(data[FIXED_LEN : FIXED_LEN + 2], "big")
    if not 0 < length <= len(data) - FIXED_LEN - 2:
        raise EnvelopeError("public envelope inner length is out of range")
    try:
        payload, signature = codec.unpack(data[FIXED_LEN + 2 : FIXED_LEN + 2 + length], max_len=len(data))
        content_type, vk, created, body, outer_hash = codec.unpack(payload, max_len=len(data))
    except (CodecError, ValueError, TypeError):
        raise EnvelopeError("public envelope inner structure is malformed") from None
    if not (
        isinstance(payload, bytes)
        and isinstance(content_type, str)
        and isinstance(created, int)
        and isinstance(body, bytes)
        and isinstance(outer_hash, bytes)
        and (vk is None) == (signature is None)
        and (vk is None or (isinstance(vk, bytes) and isinstance(signature, bytes)))
    ):
        raise EnvelopeError("public envelope inner fields have the wrong types")
    if outer_hash != _outer_hash(data[:22]):
        raise EnvelopeError("public envelope outer fields were changed after it was made")
    author = None
    if vk is not None:
        try:
            author = PublicIdentity(vk)
        except ValueError:
            raise EnvelopeError("public envelope author key is not a valid public key") from None
        if not author.verify(_PUBLIC_DOMAIN + payload, signature):
            raise EnvelopeError("public envelope signature does not verify: forged author")
    return OpenedPublic(envelope_id(data), _post_id(data, data[FIXED_LEN + 2 : FIXED_LEN + 2 + length]),
                        content_type, author, created, body, outer.expires_at)


# --- shared-key envelopes (friends' posts under a circle key) ----------------------------------------------------
#
# Layout: the fixed fields (kind 2, no recipient headers), then ``nonce (24) | SecretBox(key, u16 length | inner |
# zero padding)`` as for content chunks (:mod:`komrade_dht.media`), so holders cannot tell a friends' post from a
# chunk of the same size class. ``inner`` is a public envelope's signed inner (domain ``komrade/shared/v1``):
# whoever holds the key can open it, and only the author's signature makes it theirs (friends hold the key too).

_SHARED_DOMAIN = b"komrade/shared/v1"


def make_shared(
    author: Identity,
    key: bytes,
    body: bytes,
    *,
    content_type: str = "post",
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
    burn_secret: bytes | None = None,
    pow: PowParams = PowParams(),
    slot: bytes = NO_SLOT,
) -> bytes:
    """``body`` signed by ``author`` and encrypted under the 32-byte shared ``key``, in the smallest size class
    that fits, with the proof of work for ``slot``. EnvelopeError if it does not fit 1024 bytes."""
    if not 0 < ttl <= MAX_TTL:
        raise EnvelopeError(f"lifetime must be between 1 second and 30 days, not {ttl} s")
    now = time.time() if now is None else now
    created = int(now)
    burn_secret = os.urandom(16) if burn_secret is None else burn_secret
    prefix = struct.pack(">BBI16s", VERSION, KIND_SHARED, created + ttl, burn_hash(burn_secret))
    payload = codec.pack([content_type, author.verify_key, created, body, _outer_hash(prefix)])
    inner = codec.pack([payload, author.sign(_SHARED_DOMAIN + payload)])
    size = _pick_class(FIXED_LEN + _SECRETBOX_OVERHEAD + 2 + len(inner))
    plaintext = len(inner).to_bytes(2, "big") + inner
    plaintext += bytes(size - FIXED_LEN - _SECRETBOX_OVERHEAD - len(plaintext))
    nonce = os.urandom(24)
    out = prefix + bytes(8) + bytes([0]) + nonce + bindings.crypto_secretbox(plaintext, nonce, key)
    assert len(out) == size
    return mint_pow(out, pow, slot, now)


def open_shared(data: bytes, key: bytes, now: float | None = None) -> OpenedPublic | None:
    """Open a shared-key envelope with ``key``: None if it is not under this key (a miss costs one SecretBox),
    EnvelopeError if it opens but is forged or malformed."""
    outer = parse_outer(data, now)
    if outer.kind != KIND_SHARED:
        return None
    boxed = data[FIXED_LEN:]
    try:
        plaintext = bindings.crypto_secretbox_open(boxed[24:], boxed[:24], key)
    except CryptoError:
        return None
    length = int.from_bytes(plaintext[:2], "big")
    if not 0 < length <= len(plaintext) - 2:
        raise EnvelopeError("shared envelope inner length is out of range")
    try:
        payload, signature = codec.unpack(plaintext[2 : 2 + length], max_len=len(data))
        content_type, vk, created, body, outer_hash = codec.unpack(payload, max_len=len(data))
    except (CodecError, ValueError, TypeError):
        raise EnvelopeError("shared envelope inner structure is malformed") from None
    if not (isinstance(payload, bytes) and isinstance(content_type, str) and isinstance(vk, bytes)
            and isinstance(created, int) and isinstance(body, bytes) and isinstance(signature, bytes)
            and isinstance(outer_hash, bytes)):
        raise EnvelopeError("shared envelope inner fields have the wrong types")
    if outer_hash != _outer_hash(data[:22]):
        raise EnvelopeError("shared envelope outer fields were changed after signing")
    try:
        author = PublicIdentity(vk)
    except ValueError:
        raise EnvelopeError("shared envelope author key is not a valid public key") from None
    if not author.verify(_SHARED_DOMAIN + payload, signature):
        raise EnvelopeError("shared envelope signature does not verify: forged author")
    return OpenedPublic(envelope_id(data), _post_id(data, plaintext[2 : 2 + length]), content_type, author,
                        created, body, outer.expires_at)
