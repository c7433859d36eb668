"""Tests for komrade_dht.address."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from komrade_dht.address import (
    ADDRESS_LENGTH,
    BECH32_CONST,
    BECH32M_CONST,
    CHARSET,
    HRP,
    MAX_WIDTH,
    PREFIX,
    Address,
    _convert_bits,
    _create_checksum,
    _verify_checksum,
    decode_address,
    encode_address,
)
from komrade_dht.errors import AddressError
from komrade_dht.identity import Identity

KEY = Identity.from_seed(bytes(range(32))).verify_key
ADDR = encode_address(KEY, 7)


def _raw_address(data: bytes) -> str:
    """Encode arbitrary data bytes with a valid checksum (to reach the post-checksum error paths)."""
    values = _convert_bits(data, 8, 5, pad=True)
    assert values is not None
    values += _create_checksum(HRP, values)
    return HRP + "1" + "".join(CHARSET[v] for v in values)


def _error(text: str) -> str:
    with pytest.raises(AddressError) as info:
        decode_address(text)
    return str(info.value)


def test_round_trip_and_shape() -> None:
    assert ADDR.startswith("komrade1")
    assert ADDR == ADDR.lower()
    assert len(ADDR) == ADDRESS_LENGTH < 90
    addr = decode_address(ADDR)
    assert addr == Address(KEY, 7)
    assert addr.text == ADDR == str(addr)
    assert addr.public.verify_key == KEY


@given(seed=st.binary(min_size=32, max_size=32), width=st.integers(0, MAX_WIDTH))
def test_round_trip_property(seed: bytes, width: int) -> None:
    key = Identity.from_seed(seed).verify_key
    text = encode_address(key, width)
    assert len(text) == ADDRESS_LENGTH
    assert decode_address(text) == Address(key, width)
    assert decode_address(text.upper()) == Address(key, width)


def test_accepts_uppercase_and_surrounding_whitespace() -> None:
    assert decode_address(ADDR.upper()).verify_key == KEY
    assert decode_address(f"  \n{ADDR}\t ").width == 7


def test_encode_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        encode_address(KEY, 33)
    with pytest.raises(ValueError):
        encode_address(KEY, -1)
    with pytest.raises(ValueError):
        encode_address(b"\x00" * 32, 0)
    with pytest.raises(ValueError):
        encode_address(KEY[:31], 0)


def test_error_messages_are_distinct() -> None:
    messages = {
        "prefix": _error("bitcoin1" + ADDR[8:]),
        "char": _error(ADDR[:20] + "b" + ADDR[21:]),
        "mixed": _error(ADDR[:20] + ADDR[20:].upper()),
        "length": _error(ADDR[:-1]),
        "checksum": _error(ADDR[:-1] + ("q" if ADDR[-1] != "q" else "p")),
        "version": _error(_raw_address(bytes([1, 7]) + KEY)),
        "width": _error(_raw_address(bytes([0, 33]) + KEY)),
        "key": _error(_raw_address(bytes([0, 7]) + b"\x00" * 32)),
        "empty": _error("   "),
    }
    assert "not a komrade address: it must start with komrade1" in messages["prefix"]
    assert "invalid character 'b' at position 21" in messages["char"]
    assert "mixed case" in messages["mixed"]
    assert "wrong length" in messages["length"] and "68" in messages["length"]
    assert "checksum mismatch: the address has a typo" in messages["checksum"]
    assert "unknown address version 1" in messages["version"]
    assert "slot width 33 out of range" in messages["width"]
    assert "not a valid public key" in messages["key"]
    assert "empty" in messages["empty"]
    assert len(set(messages.values())) == len(messages)


def test_error_on_separator_missing_or_extra_data() -> None:
    assert "must start with komrade1" in _error("komrade" + ADDR[8:])
    assert "wrong length" in _error(ADDR + "q")


def test_invalid_character_names_non_ascii() -> None:
    msg = _error(ADDR[:30] + "é" + ADDR[31:])
    assert "invalid character 'é' at position 31" in msg


def test_kelvin_sign_in_an_uppercase_address_is_refused() -> None:
    """U+212A KELVIN SIGN lowercases to "k": an uppercase address with it in place of K decoded as the real one."""
    upper = ADDR.upper()
    assert "K" in upper
    assert decode_address(upper).text == ADDR
    spoof = upper.replace("K", "\u212a")
    msg = _error(spoof)
    assert "U+212A KELVIN SIGN" in msg and "not ASCII" in msg and "position 1 " in msg
    # One in the data part too, not only the prefix: an address with a "k" after komrade1.
    other = next(a for a in (encode_address(Identity.from_seed(bytes([i]) * 32).verify_key, 7) for i in range(64))
                 if "k" in a[len(PREFIX) :]).upper()
    data_k = other.index("K", len(PREFIX))
    assert decode_address(other)
    assert "not ASCII" in _error(other[:data_k] + "\u212a" + other[data_k + 1 :])


def test_no_non_ascii_look_alike_decodes() -> None:
    """Every code point that case-maps onto an address character is refused as not ASCII, in either case."""
    targets = set(CHARSET) | set(CHARSET.upper()) | set(PREFIX) | set(PREFIX.upper())
    traps = [chr(c) for c in range(0x80, 0x30000)
             if chr(c).lower() in targets or chr(c).upper() in targets or chr(c).casefold() in targets]
    assert "\u212a" in traps
    for trap in traps:
        for base in (ADDR, ADDR.upper()):
            for position in (2, 40):
                assert "not ASCII" in _error(base[:position] + trap + base[position + 1 :])


def test_non_canonical_padding_rejected() -> None:
    # Same 34 data bytes but the 3 padding bits set: a valid checksum must not make it acceptable.
    values = _convert_bits(bytes([0, 7]) + KEY, 8, 5, pad=True)
    assert values is not None
    values[-1] |= 1
    values += _create_checksum(HRP, values)
    msg = _error(HRP + "1" + "".join(CHARSET[v] for v in values))
    assert "not canonically encoded" in msg


def test_every_single_substitution_in_data_is_a_checksum_mismatch() -> None:
    for i in range(8, len(ADDR)):
        for c in CHARSET:
            if c != ADDR[i]:
                assert _error(ADDR[:i] + c + ADDR[i + 1 :]) == "checksum mismatch: the address has a typo"


@settings(max_examples=300)
@given(
    seed=st.binary(min_size=32, max_size=32),
    width=st.integers(0, MAX_WIDTH),
    data=st.data(),
)
def test_any_single_character_substitution_is_rejected(seed: bytes, width: int, data: st.DataObject) -> None:
    text = encode_address(Identity.from_seed(seed).verify_key, width)
    index = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.one_of(st.sampled_from(CHARSET + CHARSET.upper() + "1bio "), st.characters()))
    assume(replacement != text[index])
    with pytest.raises(AddressError):
        decode_address(text[:index] + replacement + text[index + 1 :])


def _address_ending_in_p() -> str:
    for i in range(10_000):
        text = encode_address(Identity.from_seed(i.to_bytes(32, "big")).verify_key, 0)
        if text.endswith("p"):
            return text
    raise AssertionError("no address ending in p found")


def test_q_insertion_or_deletion_before_final_p_is_caught() -> None:
    text = _address_ending_in_p()
    inserted = text[:-1] + "q" + text[-1]
    with pytest.raises(AddressError):
        decode_address(inserted)
    # The length check fires first; the checksum alone rejects it too (original bech32 might not).
    assert not _verify_checksum(HRP, [CHARSET.index(c) for c in inserted[8:]])


def _data_with_checksum_ending_qp(const: int) -> list[int]:
    """Some 5-bit data whose checksum (under ``const``) ends in the characters "qp" (values 0, 1)."""
    base = [CHARSET.index(c) for c in ADDR[8:-6]]
    for n in range(32 * 32 * 32):
        data = base[:-3] + [n % 32, (n // 32) % 32, n // 1024]
        if _create_checksum(HRP, data, const)[-2:] == [0, 1]:
            return data + _create_checksum(HRP, data, const)
    raise AssertionError("not found")


@pytest.mark.parametrize("const", [BECH32_CONST, BECH32M_CONST])
def test_bech32_weakness_exists_but_bech32m_fixes_it(const: int) -> None:
    """Original bech32 accepts q insertions/deletions before a final p; bech32m rejects them."""
    full = _data_with_checksum_ending_qp(const)
    assert _verify_checksum(HRP, full, const)
    inserted = full[:-1] + [0] + full[-1:]
    deleted = full[:-2] + full[-1:]
    weak = const == BECH32_CONST
    assert _verify_checksum(HRP, inserted, const) is weak
    assert _verify_checksum(HRP, deleted, const) is weak


def test_address_dataclass_validation() -> None:
    with pytest.raises(ValueError):
        Address(KEY, 33)
    with pytest.raises(ValueError):
        Address(KEY, True)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Address(b"\xff" * 32, 0)
    with pytest.raises(AttributeError):
        Address(KEY, 1).width = 2  # type: ignore[misc]


def test_non_text_input() -> None:
    with pytest.raises(AddressError):
        decode_address(b"komrade1")  # type: ignore[arg-type]
