"""Komrade addresses: text a person can copy, read aloud or scan, with a checksum that catches typos.

Format (bech32m, BIP-350)::

    komrade1<55 data characters><6 checksum characters>      (69 characters in all)

* human-readable prefix ``komrade``, separator ``1``;
* data = 34 bytes: version (0), slot width (0..32), 32-byte Ed25519 verify key; regrouped from 8-bit bytes
  into 5-bit characters of the bech32 alphabet (3 zero padding bits at the end);
* checksum = bech32m (constant ``0x2bc830a3``) over the prefix and the data. It detects any error in up to 4
  characters, and unlike the original bech32 it also catches inserting or deleting ``q`` before a final ``p``.

Addresses are written in lowercase. All-uppercase input is accepted (QR codes encode it more compactly);
mixed case is rejected, and so is any non-ASCII character, checked before case mapping (Unicode lowercases
U+212A KELVIN SIGN to ``k``). :func:`decode_address` raises :class:`~komrade_dht.errors.AddressError` with a
distinct message per failure.

The bech32m functions are implemented here (a few lines, no dependency).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import AddressError
from .identity import VERIFY_KEY_BYTES, PublicIdentity, is_valid_verify_key

__all__ = [
    "HRP",
    "ADDRESS_VERSION",
    "MAX_WIDTH",
    "ADDRESS_LENGTH",
    "Address",
    "encode_address",
    "decode_address",
]

HRP = "komrade"
SEPARATOR = "1"
PREFIX = HRP + SEPARATOR
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32M_CONST = 0x2BC830A3
BECH32_CONST = 1  # the original bech32 (BIP-173); kept only to document/test the weakness bech32m fixes

ADDRESS_VERSION = 0
MAX_WIDTH = 32
_DATA_BYTES = 2 + VERIFY_KEY_BYTES  # version, width, key
_DATA_CHARS = (_DATA_BYTES * 8 + 4) // 5  # 55
_CHECKSUM_CHARS = 6
ADDRESS_LENGTH = len(PREFIX) + _DATA_CHARS + _CHECKSUM_CHARS  # 69
_CHARSET_REV = {c: i for i, c in enumerate(CHARSET)}

assert ADDRESS_LENGTH < 90  # bech32's error-detection guarantees hold below 90 characters


# --- bech32m primitives (BIP-350) -------------------------------------------------------------------------


def _polymod(values: Iterable[int]) -> int:
    """The BCH checksum polynomial of BIP-173/350 over 5-bit values."""
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                chk ^= generator[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    """The human-readable part as checksum input: high bits, a zero, low bits."""
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _create_checksum(hrp: str, data: Sequence[int], const: int = BECH32M_CONST) -> list[int]:
    """The six 5-bit checksum values for ``data`` (bech32m unless ``const`` says otherwise)."""
    polymod = _polymod(_hrp_expand(hrp) + list(data) + [0] * _CHECKSUM_CHARS) ^ const
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(_CHECKSUM_CHARS)]


def _verify_checksum(hrp: str, data_with_checksum: Sequence[int], const: int = BECH32M_CONST) -> bool:
    """True if the 5-bit values (data followed by checksum) carry a valid checksum for ``hrp``."""
    return _polymod(_hrp_expand(hrp) + list(data_with_checksum)) == const


def _convert_bits(data: Iterable[int], from_bits: int, to_bits: int, pad: bool) -> list[int] | None:
    """Regroup a sequence of ``from_bits``-bit integers into ``to_bits``-bit integers.

    With ``pad`` the last group is zero-padded; without it, leftover bits must be fewer than ``from_bits`` and
    all zero, else None is returned (a non-canonical encoding).
    """
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        if value < 0 or value >> from_bits:
            return None
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        return None
    return out


# --- addresses ---------------------------------------------------------------------------------------------


def _check_width(width: int) -> None:
    if isinstance(width, bool) or not isinstance(width, int) or not 0 <= width <= MAX_WIDTH:
        raise ValueError(f"slot width must be an integer from 0 to {MAX_WIDTH}")


@dataclass(frozen=True)
class Address:
    """A komrade address: the recipient's Ed25519 verify key and slot width.

    Construction validates (ValueError on a bad key or width); use :func:`decode_address` for text from a
    person, which raises :class:`AddressError` instead.
    """

    verify_key: bytes
    width: int

    def __post_init__(self) -> None:
        if not isinstance(self.verify_key, (bytes, bytearray, memoryview)):
            raise ValueError("a verify key must be bytes")
        key = bytes(self.verify_key)
        if len(key) != VERIFY_KEY_BYTES:
            raise ValueError(f"a verify key is {VERIFY_KEY_BYTES} bytes, got {len(key)}")
        if not is_valid_verify_key(key):
            raise ValueError("not a valid Ed25519 public key")
        _check_width(self.width)
        object.__setattr__(self, "verify_key", key)

    @property
    def text(self) -> str:
        """The address as lowercase text, ``komrade1...`` (69 characters)."""
        values = _convert_bits(bytes([ADDRESS_VERSION, self.width]) + self.verify_key, 8, 5, pad=True)
        assert values is not None and len(values) == _DATA_CHARS
        values += _create_checksum(HRP, values)
        return PREFIX + "".join(CHARSET[v] for v in values)

    @property
    def public(self) -> PublicIdentity:
        """The recipient's public identity."""
        return PublicIdentity(self.verify_key)

    def __str__(self) -> str:
        return self.text


def encode_address(verify_key: bytes, width: int) -> str:
    """The address text of ``verify_key`` with slot ``width``. Raises ValueError on a bad key or width."""
    return Address(verify_key, width).text


def decode_address(text: str) -> Address:
    """Parse address text (surrounding whitespace ignored; all-lowercase or all-uppercase).

    Raises :class:`AddressError` with a message naming the problem: not a komrade address (prefix), invalid
    character (which and where), mixed case, wrong length, checksum mismatch (a typo), unknown version, slot
    width out of range, or a key that is not a valid public key.
    """
    if not isinstance(text, str):
        raise AddressError("an address must be text")
    s = text.strip()
    if not s:
        raise AddressError("the address is empty")
    # Before any case mapping: str.lower() maps U+212A KELVIN SIGN to "k", U+0130 to "i" + a combining dot, and
    # str.upper() maps "ß" to "SS", so a look-alike would decode as a different, or the same, address.
    for index, char in enumerate(s):
        if not char.isascii():
            raise AddressError(
                f"invalid character {char!r} at position {index + 1} (U+{ord(char):04X} "
                f"{unicodedata.name(char, 'unnamed')}, not ASCII): an address uses only ASCII letters and digits"
            )
    if s[: len(PREFIX)].lower() != PREFIX:
        raise AddressError(f"not a komrade address: it must start with {PREFIX}")
    for index in range(len(PREFIX), len(s)):
        char = s[index]
        if char.lower() not in _CHARSET_REV:
            raise AddressError(
                f"invalid character {char!r} at position {index + 1}: after {PREFIX} an address uses only "
                f"the letters and digits {CHARSET!r} (never b, i, o or 1)"
            )
    if s != s.lower() and s != s.upper():
        raise AddressError("mixed case: an address must be all lowercase or all uppercase")
    s = s.lower()
    if len(s) != ADDRESS_LENGTH:
        raise AddressError(
            f"wrong length: a komrade address has {ADDRESS_LENGTH} characters, this one has {len(s)}"
        )
    values = [_CHARSET_REV[c] for c in s[len(PREFIX) :]]
    if not _verify_checksum(HRP, values):
        raise AddressError("checksum mismatch: the address has a typo")
    data = _convert_bits(values[:-_CHECKSUM_CHARS], 5, 8, pad=False)
    if data is None or len(data) != _DATA_BYTES:
        raise AddressError("malformed address: its data is not canonically encoded")
    version, width, key = data[0], data[1], bytes(data[2:])
    if version != ADDRESS_VERSION:
        raise AddressError(
            f"unknown address version {version}: this software understands version {ADDRESS_VERSION} "
            "(it may need an update)"
        )
    if width > MAX_WIDTH:
        raise AddressError(f"slot width {width} out of range: it must be from 0 to {MAX_WIDTH}")
    if not is_valid_verify_key(key):
        raise AddressError("the key in this address is not a valid public key")
    return Address(key, width)
