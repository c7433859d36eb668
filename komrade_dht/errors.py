"""Every error komrade_dht raises on purpose, each written for the person who will read it.

The CLI turns any :class:`KomradeError` into one line on stderr and exit code 1 (see ``komrade_dht.cli``).
"""

from __future__ import annotations


class KomradeError(Exception):
    """Base of every error this package raises on purpose; its message is meant for a person."""


class CodecError(KomradeError):
    """Bytes from the network or a file could not be decoded within our limits (malformed, too big, too deep)."""


class AddressError(KomradeError):
    """The text is not a valid komrade address (wrong prefix, bad character, checksum mismatch: likely a typo)."""


class KeystoreError(KomradeError):
    """Base for keystore problems."""


class KeystoreNotFound(KeystoreError):
    """There is no keystore in this data directory: run `komrade init` first."""


class WrongPassphrase(KeystoreError):
    """The keystore is intact but the passphrase does not open it."""


class KeystoreCorrupt(KeystoreError):
    """The keystore file was changed or damaged on disk (its checksum does not match)."""


class KeystoreTruncated(KeystoreError):
    """The keystore file is shorter than its format requires (an interrupted write or a damaged copy)."""


class EnvelopeError(KomradeError):
    """An envelope is malformed, of an unknown version, expired, or too large for its size class."""


class StorageError(KomradeError):
    """The local database cannot be used (corrupt, unreadable, or not a komrade database)."""


class QuotaExceeded(StorageError):
    """Storing this would exceed a configured size quota; nothing was stored."""


class NetworkError(KomradeError):
    """The network could not complete an operation (no peer reachable, nobody acknowledged a write)."""


class UserDataError(KomradeError):
    """The encrypted local user data cannot be read (wrong key, tampering, or damage)."""


class GeoError(KomradeError):
    """A position or radius is not usable: not a finite number, or out of range (latitude -90..90, longitude
    -180..180, radius within the limits of ``komrade_dht.geo``)."""


class ImageError(KomradeError):
    """A picture was refused before anything was published: not an image we can read, damaged or truncated,
    too large, a decompression bomb, or impossible to shrink under the size limit."""


class ContentError(KomradeError):
    """Chunked content cannot be built or read back: too large, a manifest that does not decode under its key,
    or a result whose length or hash differs from what its manifest promises."""


class ChunksUnavailable(ContentError):
    """Some chunks of a piece of content are missing or failed their checks; nothing partial is returned.

    ``missing`` lists the ids (20 bytes each) nobody has given us yet: fetch them (from other holders) and try
    again. ``bad`` lists the ids whose bytes did not hash to the id, or did not decrypt: drop those copies and
    fetch them from another holder.
    """

    def __init__(self, message: str, *, missing: tuple[bytes, ...] = (), bad: tuple[bytes, ...] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(missing)
        self.bad = tuple(bad)


class RecordError(KomradeError):
    """A signed mutable record (profile, device list, manifest...) was refused; the subclass says why."""


class RecordMalformed(RecordError):
    """The bytes are not a record of a format version we speak (wrong structure, types, or encoding)."""


class RecordTooLarge(RecordMalformed):
    """The record, its salt or its value is larger than a record may be (it must fit one datagram)."""


class RecordKeyMismatch(RecordError):
    """The record is signed by a key whose record key (hash of public key and salt) is not the one asked for."""


class RecordForged(RecordError):
    """The record's signature does not verify under its public key: forged or tampered with."""


class RecordExpired(RecordError):
    """The record has expired, or claims to expire further ahead than the maximum lifetime."""


class RecordStale(RecordError):
    """A record with a higher sequence number is already held: accepting this one would roll the record back."""


class RecordConflict(RecordError):
    """Two different records carry the same key and sequence number; neither replaces the other."""


class RingError(KomradeError):
    """A linkable ring signature cannot be made or was refused; the subclass says why.

    ``reason`` is a short stable word for counters and logs (``"malformed"``, ``"forged"``...).
    """

    reason = "ring"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class RingMalformed(RingError):
    """The ring or the signature is not well formed: wrong length, a scalar not below the group order L (or
    zero), a point that is not a canonical point of Ed25519's prime-order subgroup (off the curve, of small
    order, the identity), or a ring with duplicate or invalid keys. Nothing expensive was computed."""

    reason = "malformed"


class RingForged(RingError):
    """The signature is well formed but does not verify: forged, made over another ring, scope or message, or
    made by a key outside the ring."""

    reason = "forged"


class NotInRing(RingError):
    """The signer's public key is not a member of the ring it asked to sign for."""

    reason = "not-in-ring"


class VoteError(KomradeError):
    """A vote cannot be made or was refused. ``reason`` is a short stable word (``"too-large"``,
    ``"malformed"``, ``"wrong-scope"``, ``"wrong-ring"``, ``"not-eligible"``, ``"forged"``...) that tallies count
    refusals by."""

    reason = "vote"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class RegistrationError(KomradeError):
    """A voter registration (the one-time proof of work that makes an identity eligible to vote on world posts)
    is malformed, for another period, or carries too little work."""


class CollectiveError(KomradeError):
    """A collective's operation cannot be built, or its log cannot be replayed (no founding operation, or
    several for different collectives). Single bad operations do not raise during a replay: they are listed in
    the state with a reason."""


class DeviceError(KomradeError):
    """A device of an identity (issue 14) cannot be paired, listed or removed; the message says why."""


class RootKeyAbsent(DeviceError):
    """This device was paired: it holds its own device keys, not the identity's root key."""
