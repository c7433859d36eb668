"""Signed mutable records: what a person may change in place (profile, device list, circle manifest...).

The model is BitTorrent's BEP 44 ("mutable items"): a record lives under ``key = record_key(public key, salt)``,
carries a sequence number, and is signed by the owner of the public key. A holder keeps a record only if its
signature verifies and its ``seq`` is higher than the one it holds, so nobody but the owner can write it, and
nobody (not even a holder replaying an old copy) can roll it back. One key may own many records, one per salt
(``b"profile"``, ``b"devices"``...). Pure functions, no I/O.

Format (version 1), the canonical msgpack encoding (:mod:`komrade_dht.codec`) of the array::

    [1, public_key (bin 32), salt (bin <= 64), seq (uint), expires_at (uint, unix seconds), value (bin),
     signature (bin 64)]

- The Ed25519 signature covers ``"komrade/record/v1" | msgpack([public_key, salt, seq, expires_at, value])``: the
  domain keeps a record signature from ever being valid as an envelope or anything else the key signs, and
  ``expires_at`` is signed so a holder cannot stretch a record's life.
- Only the canonical encoding is accepted (what :func:`make_record` writes), so one record has exactly one byte
  string: two holders' copies of the same record are byte-for-byte equal, and nobody can mint variants of a
  record they did not sign.
- The whole record is at most :data:`MAX_RECORD_BYTES` (900), so it fits one datagram with room for the RPC
  around it (every datagram stays under 1232 bytes). With a short salt that leaves about 770 bytes of value
  (:func:`max_value_len`).
- Records expire like envelopes (at most 30 days ahead, :data:`komrade_dht.slots.MAX_TTL`): an owner who wants a
  record to live on republishes it with a higher ``seq`` before it expires.

Ordering (:func:`newer`, :func:`supersedes`): the higher ``seq`` wins; at equal ``seq`` the two must be the same
record (byte-identical), otherwise they conflict and neither replaces the other (BEP 44 leaves this case to
compare-and-swap; we refuse it: only the owner can produce it, and their devices must agree on ``seq``). A
holder forgets a record once it expires; after that any valid record under the key is new to it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from . import codec
from .errors import (
    CodecError,
    RecordConflict,
    RecordError,
    RecordExpired,
    RecordForged,
    RecordKeyMismatch,
    RecordMalformed,
    RecordStale,
    RecordTooLarge,
)
from .identity import SIGNATURE_BYTES, VERIFY_KEY_BYTES, Identity, PublicIdentity
from .slots import MAX_TTL

__all__ = [
    "VERSION",
    "MAX_RECORD_BYTES",
    "MAX_SALT_BYTES",
    "MAX_SEQ",
    "KEY_BYTES",
    "Record",
    "record_key",
    "make_record",
    "verify_record",
    "max_value_len",
    "newer",
    "supersedes",
]

VERSION = 1
#: Largest encoded record: fits one datagram (1232 bytes) with room for the RPC that carries it.
MAX_RECORD_BYTES = 900
#: Longest salt (as BEP 44).
MAX_SALT_BYTES = 64
#: Largest sequence number (int64, as BEP 44, so any language can hold it).
MAX_SEQ = 2**63 - 1
#: Length of a record key (the DHT key a record is stored under), as every other DHT key.
KEY_BYTES = 20
#: How far in the future a clock may be before an expiry counts as implausible (as for envelopes).
CLOCK_SKEW = 3600

_SIG_DOMAIN = b"komrade/record/v1"
_KEY_PERSON = b"komrade/record"


def record_key(public_key: bytes, salt: bytes = b"") -> bytes:
    """The 20-byte DHT key of the record ``salt`` owned by ``public_key``: BLAKE2b-160 (personalised
    ``komrade/record``) of ``public_key | salt``. The public key has a fixed length, so the split is unambiguous.

    Raises RecordMalformed if the key is not 32 bytes or the salt is not bytes of at most 64.
    """
    if not isinstance(public_key, bytes) or len(public_key) != VERIFY_KEY_BYTES:
        raise RecordMalformed(f"a record's public key is {VERIFY_KEY_BYTES} bytes")
    _check_salt(salt)
    return hashlib.blake2b(public_key + salt, digest_size=KEY_BYTES, person=_KEY_PERSON).digest()


@dataclass(frozen=True)
class Record:
    """A record that passed :func:`verify_record` (or was just made): every field is authenticated."""

    key: bytes
    """The DHT key it lives under (:func:`record_key` of ``public_key`` and ``salt``)."""
    public_key: bytes
    """The owner's Ed25519 verify key."""
    salt: bytes
    seq: int
    expires_at: int
    value: bytes
    signature: bytes
    data: bytes
    """The exact (canonical) bytes; what a holder stores and serves."""

    @property
    def owner(self) -> PublicIdentity:
        """The owner as a :class:`~komrade_dht.identity.PublicIdentity`."""
        return PublicIdentity(self.public_key)


def _check_salt(salt: object) -> bytes:
    if not isinstance(salt, bytes):
        raise RecordMalformed("a record's salt must be bytes")
    if len(salt) > MAX_SALT_BYTES:
        raise RecordTooLarge(f"a record's salt is at most {MAX_SALT_BYTES} bytes, not {len(salt)}")
    return salt


def _signed_bytes(public_key: bytes, salt: bytes, seq: int, expires_at: int, value: bytes) -> bytes:
    return _SIG_DOMAIN + codec.pack([public_key, salt, seq, expires_at, value])


def _encode(public_key: bytes, salt: bytes, seq: int, expires_at: int, value: bytes, signature: bytes) -> bytes:
    return codec.pack([VERSION, public_key, salt, seq, expires_at, value, signature])


def max_value_len(salt: bytes = b"") -> int:
    """The longest value a record with this salt can carry and still fit :data:`MAX_RECORD_BYTES`."""
    _check_salt(salt)
    overhead = len(_encode(bytes(32), salt, MAX_SEQ, 2**32 - 1, b"", bytes(64)))
    room = MAX_RECORD_BYTES - overhead
    # msgpack's bin header grows from 2 to 3 bytes past 255 bytes of value
    return room if room <= 255 else room - 1


def _check_expiry(expires_at: int, now: float) -> None:
    if expires_at <= now:
        raise RecordExpired("the record has expired")
    if expires_at > now + MAX_TTL + CLOCK_SKEW:
        raise RecordExpired("the record claims to expire more than 30 days ahead")


def make_record(
    identity: Identity,
    salt: bytes,
    seq: int,
    value: bytes,
    expires_at: int,
    *,
    now: float | None = None,
) -> bytes:
    """Sign and encode a record owned by ``identity``; returns its canonical bytes.

    ``seq`` (0..2^63-1) must be higher than any earlier version's for holders to take it; ``expires_at`` (unix
    seconds) must be in the future and at most 30 days ahead. Raises RecordTooLarge if it would not fit
    :data:`MAX_RECORD_BYTES` (see :func:`max_value_len`), RecordExpired for a bad expiry, RecordMalformed for
    wrong types or an out-of-range ``seq``.
    """
    if not isinstance(identity, Identity):
        raise RecordMalformed("a record is signed by an Identity")
    _check_salt(salt)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise RecordMalformed(f"a record's sequence number is a whole number from 0 to 2^63-1, not {seq!r}")
    if not isinstance(value, bytes):
        raise RecordMalformed("a record's value must be bytes")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or not 0 <= expires_at < 2**32:
        raise RecordMalformed(f"a record's expiry is a unix time in whole seconds, not {expires_at!r}")
    _check_expiry(expires_at, time.time() if now is None else now)
    if len(value) > max_value_len(salt):
        raise RecordTooLarge(
            f"a record's value is at most {max_value_len(salt)} bytes with this salt, not {len(value)}"
        )
    public_key = identity.verify_key
    signature = identity.sign(_signed_bytes(public_key, salt, seq, expires_at, value))
    data = _encode(public_key, salt, seq, expires_at, value, signature)
    assert len(data) <= MAX_RECORD_BYTES
    return data


def _decode(data: object) -> list[Any]:
    if not isinstance(data, bytes):
        raise RecordMalformed("a record must be bytes")
    if len(data) > MAX_RECORD_BYTES:
        raise RecordTooLarge(f"a record is at most {MAX_RECORD_BYTES} bytes, this one is {len(data)}")
    try:
        fields = codec.unpack(data, max_len=MAX_RECORD_BYTES, max_depth=1)
    except CodecError as exc:
        raise RecordMalformed(f"the record does not decode: {exc}") from None
    if not isinstance(fields, list) or not fields:
        raise RecordMalformed("a record is a msgpack array")
    if isinstance(fields[0], bool) or fields[0] != VERSION:
        raise RecordMalformed(f"unknown record version {fields[0]!r}; this node speaks version {VERSION}")
    if len(fields) != 7:
        raise RecordMalformed(f"a version-{VERSION} record has 7 fields, not {len(fields)}")
    _, public_key, salt, seq, expires_at, value, signature = fields
    if not (isinstance(public_key, bytes) and len(public_key) == VERIFY_KEY_BYTES):
        raise RecordMalformed(f"a record's public key is {VERIFY_KEY_BYTES} bytes")
    _check_salt(salt)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise RecordMalformed("a record's sequence number is out of range")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or not 0 <= expires_at < 2**32:
        raise RecordMalformed("a record's expiry is out of range")
    if not isinstance(value, bytes):
        raise RecordMalformed("a record's value must be bytes")
    if not (isinstance(signature, bytes) and len(signature) == SIGNATURE_BYTES):
        raise RecordMalformed(f"a record's signature is {SIGNATURE_BYTES} bytes")
    if _encode(public_key, salt, seq, expires_at, value, signature) != data:
        raise RecordMalformed("the record is not in its canonical encoding")
    return fields


def key_of(data: bytes) -> bytes:
    """The key a record claims to live under (from its public key and salt); raises RecordError if malformed.
    Checking it still takes :func:`verify_record`."""
    _, public_key, salt, *_ = _decode(data)
    return record_key(public_key, salt)


def verify_record(key: bytes, data: bytes, now: float | None = None) -> Record:
    """Check a record fetched or offered under ``key`` and return it; every holder and every reader calls this.

    Raises (all :class:`~komrade_dht.errors.RecordError`): RecordTooLarge over :data:`MAX_RECORD_BYTES`,
    RecordMalformed for anything that is not a canonical version-1 record, RecordKeyMismatch if it does not
    belong under ``key`` (another person's record, or another salt's), RecordExpired if it has expired or claims
    to live more than 30 days, RecordForged if the signature does not verify (forged or tampered with).
    """
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise RecordMalformed(f"a record key is {KEY_BYTES} bytes")
    _, public_key, salt, seq, expires_at, value, signature = _decode(data)
    if record_key(public_key, salt) != key:
        raise RecordKeyMismatch("this record belongs under another key (another owner or another salt)")
    _check_expiry(expires_at, time.time() if now is None else now)
    try:
        owner = PublicIdentity(public_key)
    except ValueError:
        raise RecordForged("the record's public key is not a valid Ed25519 key") from None
    if not owner.verify(_signed_bytes(public_key, salt, seq, expires_at, value), signature):
        raise RecordForged("the record's signature does not verify: forged or tampered with")
    return Record(key, public_key, salt, seq, expires_at, value, signature, data)


def newer(a: Record, b: Record) -> Record:
    """The one of two records under the same key to keep: the higher ``seq``; at equal ``seq`` the records must be
    identical (then ``a`` is returned). Raises RecordConflict for two different records with one ``seq``, and
    RecordError for records of two different keys."""
    if a.key != b.key:
        raise RecordError("these records live under different keys and cannot be compared")
    if a.seq != b.seq:
        return a if a.seq > b.seq else b
    if a.data != b.data:
        raise RecordConflict(f"two different records carry sequence number {a.seq}; neither replaces the other")
    return a


def supersedes(held: Record | None, incoming: Record) -> bool:
    """Whether a holder (or a reader's cache) should replace ``held`` with ``incoming``.

    True if nothing is held or ``incoming`` has a higher ``seq``; False if it is the very record already held
    (nothing to do). Raises RecordStale if ``incoming`` is older (a rollback), RecordConflict if it differs at the
    same ``seq``, RecordError if the keys differ.
    """
    if held is None:
        return True
    if held.key != incoming.key:
        raise RecordError("these records live under different keys and cannot be compared")
    if incoming.seq < held.seq:
        raise RecordStale(
            f"a record with sequence number {held.seq} is held; refusing {incoming.seq} (that would roll it back)"
        )
    return newer(held, incoming) is not held
