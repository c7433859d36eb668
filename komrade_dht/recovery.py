"""Recovery text: the 32-byte identity seed written out so a person can copy it to paper and restore from it.

Format: the seed followed by a 3-byte checksum (BLAKE2b-24 of the seed, personalised ``komrade/recover``), 35
bytes, written in Crockford's base32 (digits and letters without I, L, O, U) as 14 groups of 4 characters::

    7ZQ4-K1M8-...-3F0A   (56 characters in all)

Reading is forgiving the way Crockford's alphabet intends: case, spaces, dashes and line breaks do not matter,
``I``/``L`` read as ``1`` and ``O`` as ``0``. A typo is caught by the checksum (a wrong seed never restores
silently: 1 in 16.7 million random errors slip through, and a restored identity then has another address, which
the person sees at once). The text restores the identity (keys, address at the chosen width), not contacts or
messages, which live encrypted on the device only.
"""

from __future__ import annotations

import hashlib

from .errors import KomradeError

SEED_BYTES = 32
CHECK_BYTES = 3
GROUP = 4
#: Crockford's base32 alphabet.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(ALPHABET)}
_DECODE.update({"I": 1, "L": 1, "O": 0})
#: Characters in the text without separators.
LENGTH = (SEED_BYTES + CHECK_BYTES) * 8 // 5  # 56


class RecoveryError(KomradeError):
    """The recovery text cannot be read: a character that is not in it, too short or long, or a failed checksum
    (a typo: compare it again with what you wrote down)."""


def _checksum(seed: bytes) -> bytes:
    return hashlib.blake2b(seed, digest_size=CHECK_BYTES, person=b"komrade/recover").digest()


def encode_recovery(seed: bytes) -> str:
    """The recovery text of a 32-byte seed: 14 groups of 4 characters joined by dashes."""
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise ValueError(f"a seed is {SEED_BYTES} bytes")
    number = int.from_bytes(seed + _checksum(seed), "big")
    chars = [ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(LENGTH))]
    text = "".join(chars)
    return "-".join(text[i : i + GROUP] for i in range(0, LENGTH, GROUP))


def decode_recovery(text: str) -> bytes:
    """The seed in a recovery text; RecoveryError (saying what is wrong) if it is not one."""
    if not isinstance(text, str):
        raise RecoveryError("the recovery text must be text")
    cleaned = "".join(ch for ch in text.upper() if ch not in " -\t\r\n")
    bad = sorted({ch for ch in cleaned if ch not in _DECODE})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad[:5])
        raise RecoveryError(f"the recovery text cannot contain {shown}: it uses digits and letters except U")
    if len(cleaned) != LENGTH:
        raise RecoveryError(f"the recovery text has {LENGTH} characters (14 groups of 4), not {len(cleaned)}")
    number = 0
    for ch in cleaned:
        number = (number << 5) | _DECODE[ch]
    raw = number.to_bytes(SEED_BYTES + CHECK_BYTES, "big")
    seed, check = raw[:SEED_BYTES], raw[SEED_BYTES:]
    if _checksum(seed) != check:
        raise RecoveryError("the recovery text has a typo (its checksum fails): compare it with what you wrote down")
    return seed


__all__ = ["RecoveryError", "decode_recovery", "encode_recovery"]
