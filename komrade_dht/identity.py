"""User identity: one 32-byte secret seed, and everything derived from it.

From the seed come:

* an Ed25519 signing key (the identity itself; signatures),
* its X25519 conversion (decryption of sealed boxes addressed to this identity),
* a local data key (encryption of decrypted messages, contacts and drafts at rest).

The public identity is the 32-byte Ed25519 verify key (:class:`PublicIdentity`). Its X25519 public key is
derived from it, so an address only needs to carry the verify key.

Nothing in this module logs, and no exception message or ``repr`` contains secret material.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from .errors import RootKeyAbsent

__all__ = [
    "SEED_BYTES",
    "VERIFY_KEY_BYTES",
    "SIGNATURE_BYTES",
    "Identity",
    "PublicIdentity",
    "RootlessIdentity",
    "fingerprint",
    "is_valid_verify_key",
]

SEED_BYTES = 32
VERIFY_KEY_BYTES = 32
SIGNATURE_BYTES = 64
LOCAL_DATA_KEY_BYTES = 32

# BLAKE2b personalisation strings (at most 16 bytes) keep every derived value in its own domain.
_PERSON_FINGERPRINT = b"komrade/fpr"
_PERSON_LOCAL_DATA = b"komrade/local"

_FINGERPRINT_GROUPS = 6
_FINGERPRINT_CHUNK_BYTES = 5


def is_valid_verify_key(verify_key: bytes) -> bool:
    """Return True if ``verify_key`` is a usable Ed25519 public key.

    Usable means: exactly 32 bytes, a canonical encoding of a point on the curve, in the prime-order subgroup,
    not of small order, and convertible to an X25519 public key (so sealed boxes can be addressed to it).
    """
    if not isinstance(verify_key, (bytes, bytearray, memoryview)):
        return False
    key = bytes(verify_key)
    if len(key) != VERIFY_KEY_BYTES:
        return False
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(key):
        return False
    try:
        nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(key)
    except nacl.exceptions.CryptoError:
        return False
    return True


def fingerprint(verify_key: bytes) -> str:
    """Return the human-comparable fingerprint of an Ed25519 verify key.

    BLAKE2b-240 (personalisation ``komrade/fpr``) of the key, split into six 5-byte chunks; each chunk is read
    as a big-endian integer and shown as ``% 100000`` with five digits (as Signal's safety numbers do).
    Result: ``"01234 56789 01234 56789 01234 56789"`` (about 99.7 bits to compare).

    Raises ValueError if ``verify_key`` is not 32 bytes.
    """
    key = bytes(verify_key)
    if len(key) != VERIFY_KEY_BYTES:
        raise ValueError(f"a verify key is {VERIFY_KEY_BYTES} bytes, got {len(key)}")
    digest = hashlib.blake2b(
        key, digest_size=_FINGERPRINT_GROUPS * _FINGERPRINT_CHUNK_BYTES, person=_PERSON_FINGERPRINT
    ).digest()
    groups = []
    for i in range(_FINGERPRINT_GROUPS):
        chunk = digest[i * _FINGERPRINT_CHUNK_BYTES : (i + 1) * _FINGERPRINT_CHUNK_BYTES]
        groups.append(f"{int.from_bytes(chunk, 'big') % 100000:05d}")
    return " ".join(groups)


@dataclass(frozen=True)
class PublicIdentity:
    """The public half of an identity: a 32-byte Ed25519 verify key.

    Raises ValueError on construction if the key is not a valid Ed25519 public key (see
    :func:`is_valid_verify_key`).
    """

    verify_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.verify_key, (bytes, bytearray, memoryview)):
            raise ValueError("a verify key must be bytes")
        key = bytes(self.verify_key)
        if len(key) != VERIFY_KEY_BYTES:
            raise ValueError(f"a verify key is {VERIFY_KEY_BYTES} bytes, got {len(key)}")
        if not is_valid_verify_key(key):
            raise ValueError("not a valid Ed25519 public key")
        object.__setattr__(self, "verify_key", key)

    @property
    def box_public_key(self) -> bytes:
        """The X25519 public key (32 bytes) converted from the verify key; seal boxes to this."""
        return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(self.verify_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return True if ``signature`` is a valid detached Ed25519 signature of ``message``.

        Never raises for a bad signature (wrong length, wrong type, forged): returns False.
        """
        if not isinstance(message, (bytes, bytearray, memoryview)):
            return False
        if not isinstance(signature, (bytes, bytearray, memoryview)):
            return False
        signature = bytes(signature)
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            VerifyKey(self.verify_key).verify(bytes(message), signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
            return False
        return True

    def fingerprint(self) -> str:
        """The human-comparable fingerprint of this identity (see :func:`fingerprint`)."""
        return fingerprint(self.verify_key)


class Identity:
    """A full (secret) identity, built from a 32-byte seed.

    The seed is the only secret: keep it in the keystore. ``repr`` shows only the fingerprint.
    """

    __slots__ = ("_seed", "_signing_key", "_public")

    def __init__(self, seed: bytes) -> None:
        """Prefer :meth:`from_seed` or :meth:`generate`; raises ValueError unless ``seed`` is 32 bytes."""
        if not isinstance(seed, (bytes, bytearray, memoryview)):
            raise ValueError("a seed must be bytes")
        seed = bytes(seed)
        if len(seed) != SEED_BYTES:
            raise ValueError(f"a seed is {SEED_BYTES} bytes, got {len(seed)}")
        self._seed = seed
        self._signing_key = SigningKey(seed)
        self._public = PublicIdentity(bytes(self._signing_key.verify_key))

    @classmethod
    def generate(cls) -> Identity:
        """A new identity from a fresh random seed (libsodium's CSPRNG)."""
        return cls(bytes(SigningKey.generate()))

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity of a 32-byte seed (deterministic). Raises ValueError if it is not 32 bytes."""
        return cls(seed)

    @property
    def seed(self) -> bytes:
        """The 32-byte secret seed."""
        return self._seed

    @property
    def signing_key(self) -> SigningKey:
        """The Ed25519 signing key."""
        return self._signing_key

    @property
    def verify_key(self) -> bytes:
        """The 32-byte Ed25519 verify key (the public identity)."""
        return self._public.verify_key

    @property
    def box_private_key(self) -> PrivateKey:
        """The X25519 private key converted from the signing key; opens boxes sealed to ``public.box_public_key``."""
        return PrivateKey(bytes(self._signing_key.to_curve25519_private_key()))

    @property
    def public(self) -> PublicIdentity:
        """The public half of this identity."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """A 64-byte detached Ed25519 signature of ``message``."""
        return bytes(self._signing_key.sign(bytes(message)).signature)

    def local_data_key(self) -> bytes:
        """A 32-byte symmetric key for local data at rest, derived deterministically from the seed.

        BLAKE2b-256 keyed by the seed, personalisation ``komrade/local``, empty message: independent of the
        signing and decryption keys.
        """
        return hashlib.blake2b(
            b"", digest_size=LOCAL_DATA_KEY_BYTES, key=self._seed, person=_PERSON_LOCAL_DATA
        ).digest()

    def fingerprint(self) -> str:
        """The fingerprint of the public identity."""
        return self._public.fingerprint()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return hmac.compare_digest(self._seed, other._seed)

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"Identity(fingerprint={self.fingerprint()!r})"

    def __copy__(self) -> Identity:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, object]) -> Identity:
        return self  # immutable

    def __reduce__(self) -> object:
        raise TypeError("an Identity holds a secret and cannot be pickled; store its seed in the keystore")


class RootlessIdentity:
    """The identity as a device paired to it holds it (issue 14): its public half, and none of its secrets.

    Whatever needs the root key (signing as the identity, its seed, its box key) raises RootKeyAbsent with a
    sentence saying what to do instead; a paired device sends and reads with its own device keys
    (:mod:`komrade_dht.social.devices`)."""

    __slots__ = ("_public",)

    def __init__(self, public: PublicIdentity) -> None:
        self._public = public

    @property
    def public(self) -> PublicIdentity:
        return self._public

    @property
    def verify_key(self) -> bytes:
        return self._public.verify_key

    def fingerprint(self) -> str:
        return self._public.fingerprint()

    def _absent(self, *_: object) -> object:
        raise RootKeyAbsent(
            "this device was paired and holds no root key: do this on the identity's first device, or join from "
            "the recovery phrase (a full copy that cannot be revoked)"
        )

    seed = property(_absent)
    signing_key = property(_absent)
    box_private_key = property(_absent)
    sign = _absent
    local_data_key = _absent

    def __repr__(self) -> str:
        return f"RootlessIdentity(fingerprint={self.fingerprint()!r})"
