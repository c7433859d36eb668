"""Tests for komrade_dht.keystore."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from pathlib import Path
from typing import Any

import nacl.pwhash.argon2id as argon2id
import pytest

import komrade_dht.keystore as ks
from komrade_dht.errors import (
    KeystoreCorrupt,
    KeystoreError,
    KeystoreNotFound,
    KeystoreTruncated,
    WrongPassphrase,
)
from komrade_dht.keystore import (
    HEADER_BYTES,
    MAGIC,
    KeystoreExists,
    change_passphrase,
    create_keystore,
    open_keystore,
)

FAST: dict[str, int] = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}
SEED = bytes(range(100, 132))
META: dict[str, Any] = {"name": "Rosa", "width": 8, "created": 1_700_000_000}
PASS = "correct horse battery staple"


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    path = tmp_path / "keystore"
    create_keystore(path, SEED, PASS, META, **FAST)
    return path


def _rewrite_checksum(body: bytes) -> bytes:
    return body + hashlib.blake2b(body, digest_size=32).digest()


def test_round_trip(store: Path) -> None:
    seed, meta = open_keystore(store, PASS)
    assert seed == SEED
    assert meta == META


def test_round_trip_with_default_params(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    create_keystore(path, SEED, "pässwörd", {**META, "extra": [1, "two"]})
    data = path.read_bytes()
    _, _, ops, mem_kib, _, _ = struct.unpack_from(">16sBII16sI", data)
    assert ops == argon2id.OPSLIMIT_INTERACTIVE and mem_kib * 1024 == argon2id.MEMLIMIT_INTERACTIVE
    assert open_keystore(path, "pässwörd") == (SEED, {**META, "extra": [1, "two"]})


def test_passphrase_unicode_normalisation(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    create_keystore(path, SEED, "caf\u00e9", META, **FAST)  # NFC
    assert open_keystore(path, "cafe\u0301")[0] == SEED  # NFD


def test_file_mode_0600(store: Path) -> None:
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert [p.name for p in store.parent.iterdir()] == ["keystore"]  # no temp file left behind


def test_mode_0600_despite_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        create_keystore(tmp_path / "ks", SEED, PASS, META, **FAST)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ks").stat().st_mode) == 0o600


def test_wrong_passphrase(store: Path) -> None:
    with pytest.raises(WrongPassphrase) as info:
        open_keystore(store, PASS + "!")
    assert PASS not in str(info.value)
    with pytest.raises(WrongPassphrase):
        open_keystore(store, "")


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(KeystoreNotFound, match="komrade init"):
        open_keystore(tmp_path / "nope", PASS)


def test_directory_is_not_a_keystore(tmp_path: Path) -> None:
    with pytest.raises(KeystoreCorrupt):
        open_keystore(tmp_path, PASS)


def test_every_flipped_byte_is_detected(store: Path) -> None:
    original = store.read_bytes()
    for index in range(len(original)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(original)
            damaged[index] ^= mask
            store.write_bytes(bytes(damaged))
            with pytest.raises((KeystoreCorrupt, KeystoreTruncated)):
                open_keystore(store, PASS)
            if index >= HEADER_BYTES or index < len(MAGIC):
                # past the header (and in the magic), damage is always reported as corruption
                with pytest.raises(KeystoreCorrupt):
                    open_keystore(store, PASS)


def test_truncation_never_succeeds(store: Path) -> None:
    original = store.read_bytes()
    for length in range(len(original)):
        store.write_bytes(original[:length])
        with pytest.raises(KeystoreTruncated):
            open_keystore(store, PASS)


def test_trailing_garbage_is_corrupt(store: Path) -> None:
    store.write_bytes(store.read_bytes() + b"\x00")
    with pytest.raises(KeystoreCorrupt):
        open_keystore(store, PASS)


@pytest.mark.parametrize("content", [b"hello world, not a keystore at all", b"{}", b"X", b"KOMRADE-KEYSTORX" + b"\0" * 200])
def test_not_a_keystore(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ks"
    path.write_bytes(content)
    with pytest.raises(KeystoreCorrupt, match="not a komrade keystore"):
        open_keystore(path, PASS)


def test_empty_file_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    path.write_bytes(b"")
    with pytest.raises(KeystoreTruncated):
        open_keystore(path, PASS)


def test_unknown_version_is_corrupt(store: Path) -> None:
    data = bytearray(store.read_bytes())
    data[len(MAGIC)] = 2
    store.write_bytes(_rewrite_checksum(bytes(data[:-32])))
    with pytest.raises(KeystoreCorrupt, match="version 2"):
        open_keystore(store, PASS)


def _tamper_params(store: Path, opslimit: int | None = None, memlimit_kib: int | None = None) -> None:
    data = store.read_bytes()
    magic, version, ops, mem, salt, ct_len = struct.unpack_from(">16sBII16sI", data)
    header = struct.pack(
        ">16sBII16sI",
        magic,
        version,
        ops if opslimit is None else opslimit,
        mem if memlimit_kib is None else memlimit_kib,
        salt,
        ct_len,
    )
    store.write_bytes(_rewrite_checksum(header + data[HEADER_BYTES:-32]))


@pytest.mark.parametrize(
    "params",
    [
        {"memlimit_kib": 2 * 1024 * 1024},  # 2 GiB
        {"memlimit_kib": 0xFFFFFFFF},
        {"memlimit_kib": 0},
        {"opslimit": 33},
        {"opslimit": 0xFFFFFFFF},
        {"opslimit": 0},
    ],
)
def test_absurd_params_rejected_without_running_kdf(
    store: Path, monkeypatch: pytest.MonkeyPatch, params: dict[str, int]
) -> None:
    _tamper_params(store, **params)

    def no_kdf(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the KDF must not run with absurd parameters")

    monkeypatch.setattr(ks.argon2id, "kdf", no_kdf)
    with pytest.raises(KeystoreCorrupt, match="absurd"):
        open_keystore(store, PASS)


def test_changed_params_with_fixed_checksum_is_wrong_passphrase(store: Path) -> None:
    # Plausible parameters, checksum recomputed: the derived key differs, the MAC fails.
    _tamper_params(store, memlimit_kib=16)
    with pytest.raises(WrongPassphrase):
        open_keystore(store, PASS)


def test_refuses_to_overwrite(store: Path) -> None:
    before = store.read_bytes()
    with pytest.raises(KeystoreExists):
        create_keystore(store, bytes(32), "other", META, **FAST)
    assert store.read_bytes() == before
    assert isinstance(KeystoreExists("x"), KeystoreError)
    create_keystore(store, bytes(32), "other", META, overwrite=True, **FAST)
    assert open_keystore(store, "other")[0] == bytes(32)
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert [p.name for p in store.parent.iterdir()] == ["keystore"]


def test_fresh_salt_each_time(tmp_path: Path) -> None:
    create_keystore(tmp_path / "a", SEED, PASS, META, **FAST)
    create_keystore(tmp_path / "b", SEED, PASS, META, **FAST)
    assert (tmp_path / "a").read_bytes() != (tmp_path / "b").read_bytes()


@pytest.mark.parametrize(
    ("seed", "passphrase", "meta"),
    [
        (SEED, "", META),
        (SEED[:31], PASS, META),
        (SEED + b"x", PASS, META),
        (SEED, PASS, {"name": "x", "width": 33, "created": 0}),
        (SEED, PASS, {"name": "x", "width": True, "created": 0}),
        (SEED, PASS, {"name": 1, "width": 1, "created": 0}),
        (SEED, PASS, {"width": 1, "created": 0}),
        (SEED, PASS, {"name": "x", "width": 1, "created": -1}),
        (SEED, PASS, {"name": "x", "width": 1, "created": 0, "t": (1, 2)}),
        (SEED, PASS, {"name": "x", "width": 1, "created": 0, "f": float("nan")}),
        (SEED, PASS, {"name": "x", "width": 1, "created": 0, "b": b"bytes"}),
        (SEED, PASS, {"name": "x" * 20000, "width": 1, "created": 0}),
    ],
)
def test_create_validates_inputs(tmp_path: Path, seed: bytes, passphrase: str, meta: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        create_keystore(tmp_path / "ks", seed, passphrase, meta, **FAST)
    assert not (tmp_path / "ks").exists()


@pytest.mark.parametrize(
    "params",
    [
        {"opslimit": 33, "memlimit": argon2id.MEMLIMIT_MIN},
        {"opslimit": 1, "memlimit": (1 << 30) + 1024},
        {"opslimit": 1, "memlimit": argon2id.MEMLIMIT_MIN + 1},
        {"opslimit": 0, "memlimit": argon2id.MEMLIMIT_MIN},
    ],
)
def test_create_validates_params(tmp_path: Path, params: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        create_keystore(tmp_path / "ks", SEED, PASS, META, **params)


def test_change_passphrase(store: Path) -> None:
    change_passphrase(store, PASS, "new passphrase")
    assert open_keystore(store, "new passphrase") == (SEED, META)
    with pytest.raises(WrongPassphrase):
        open_keystore(store, PASS)
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    # parameters kept from the existing file
    _, _, ops, mem_kib, _, _ = struct.unpack_from(">16sBII16sI", store.read_bytes())
    assert (ops, mem_kib * 1024) == (FAST["opslimit"], FAST["memlimit"])


def test_change_passphrase_errors(store: Path) -> None:
    before = store.read_bytes()
    with pytest.raises(WrongPassphrase):
        change_passphrase(store, "wrong", "new")
    with pytest.raises(ValueError):
        change_passphrase(store, PASS, "")
    assert store.read_bytes() == before
    with pytest.raises(KeystoreNotFound):
        change_passphrase(store.parent / "missing", PASS, "new")
