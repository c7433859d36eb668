"""Index slots: where a sender appends an envelope and where a recipient looks for it.

``slot_id = BLAKE2b-160("komrade/slot/v1" | epoch | width | prefix)``, where ``prefix`` is the first ``width``
bits of ``BLAKE2b(recipient public key)``. Everyone whose key hash shares those bits shares the slot; the
recipient chooses ``width`` (carried in its address), trading download volume against anonymity-set size.
Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: Widest slot prefix an address may ask for. 32 bits already means ~1 co-tenant per 4 billion users.
MAX_WIDTH = 32
#: Longest life of an envelope, in seconds (30 days); a recipient never needs to look further back.
MAX_TTL = 30 * 86400
#: Default life of an envelope (14 days, like Session).
DEFAULT_TTL = 14 * 86400


@dataclass(frozen=True)
class SlotParams:
    """Network-wide slot parameters; every node of one network must agree on them."""

    epoch_seconds: int = 86400
    """Length of one epoch (the UTC day by default; tests may shorten it)."""

    def epoch(self, now: float) -> int:
        """The epoch number that contains unix time ``now``."""
        return int(now) // self.epoch_seconds

    def epochs_since(self, since: float, now: float) -> list[int]:
        """Every epoch from the one containing ``since`` (clamped to MAX_TTL ago) to the current one."""
        oldest = max(since, now - MAX_TTL)
        return list(range(self.epoch(oldest), self.epoch(now) + 1))


def key_prefix(verify_key: bytes, width: int) -> bytes:
    """The first ``width`` bits of BLAKE2b(verify_key), as ceil(width/8) bytes with the unused low bits zero."""
    if not 0 <= width <= MAX_WIDTH:
        raise ValueError(f"slot width must be between 0 and {MAX_WIDTH}, not {width}")
    digest = hashlib.blake2b(verify_key, digest_size=32, person=b"komrade/slotkey").digest()
    nbytes = (width + 7) // 8
    prefix = bytearray(digest[:nbytes])
    if width % 8:
        prefix[-1] &= (0xFF << (8 - width % 8)) & 0xFF
    return bytes(prefix)


def slot_id(verify_key: bytes, width: int, epoch: int) -> bytes:
    """The 20-byte DHT key of the recipient's slot for ``epoch``."""
    if epoch < 0 or epoch >= 2**32:
        raise ValueError("epoch out of range")
    material = b"komrade/slot/v1" + epoch.to_bytes(4, "big") + bytes([width]) + key_prefix(verify_key, width)
    return hashlib.blake2b(material, digest_size=20).digest()
