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
