"""Passphrase keystore: the 32-byte identity seed and a little metadata, encrypted on disk.

File format (version 1; all integers big-endian)::

    offset  size  field
    0       16    magic  b"KOMRADE-KEYSTORE"
    16      1     format version (1)
    17      4     Argon2id opslimit (u32)
    21      4     Argon2id memlimit in KiB (u32; the library takes bytes = KiB * 1024)
    25      16    salt
    41      4     length N of the ciphertext (u32)
    45      N     SecretBox ciphertext: 24-byte nonce, 16-byte MAC, then the plaintext
                  seed (32 bytes) || UTF-8 JSON of the metadata object
    45+N    32    BLAKE2b-256 (unkeyed) of every byte before it

The encryption key is ``nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit, memlimit)``. The passphrase is
Unicode-normalised (NFC) and UTF-8 encoded first, so the same passphrase typed on different systems works.

The unkeyed checksum lets us tell a damaged or tampered file (:class:`KeystoreCorrupt`) from a wrong
passphrase (:class:`WrongPassphrase`): only an intact file reaches the SecretBox. The KDF parameters and salt
are not separately authenticated, but changing them changes the derived key, so the MAC fails. Parameters
outside sane bounds (opslimit > 32, memlimit > 1 GiB) are rejected *before* running the KDF, so a crafted file
cannot make us allocate huge amounts of memory or spin for minutes.

Defaults are Argon2id ``OPSLIMIT_INTERACTIVE`` / ``MEMLIMIT_INTERACTIVE`` (2 passes, 64 MiB, roughly 0.1 s):
every CLI command opens the keystore, so the cost is paid on each invocation and must stay interactive.

Writes are atomic: a 0600 temporary file in the same directory, fsync, rename over (or hard-link into) the
final name, fsync of the directory. The final file has mode 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import struct
import unicodedata
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from .errors import KeystoreCorrupt, KeystoreError, KeystoreNotFound, KeystoreTruncated, WrongPassphrase

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "DEFAULT_OPSLIMIT",
    "DEFAULT_MEMLIMIT",
    "MAX_OPSLIMIT",
    "MAX_MEMLIMIT",
    "KeystoreExists",
    "create_keystore",
    "open_keystore",
    "change_passphrase",
]

MAGIC = b"KOMRADE-KEYSTORE"
FORMAT_VERSION = 1
SEED_BYTES = 32
SALT_BYTES = argon2id.SALTBYTES  # 16
CHECKSUM_BYTES = 32

DEFAULT_OPSLIMIT: int = argon2id.OPSLIMIT_INTERACTIVE
DEFAULT_MEMLIMIT: int = argon2id.MEMLIMIT_INTERACTIVE
MIN_OPSLIMIT: int = argon2id.OPSLIMIT_MIN
MIN_MEMLIMIT: int = argon2id.MEMLIMIT_MIN
MAX_OPSLIMIT = 32
MAX_MEMLIMIT = 1 << 30  # 1 GiB

_HEADER = struct.Struct(">16sBII16sI")  # magic, version, opslimit, memlimit KiB, salt, ciphertext length
HEADER_BYTES = _HEADER.size  # 45
_BOX_OVERHEAD = nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES  # 40
_MIN_PLAINTEXT = SEED_BYTES + 2  # seed and "{}"
_MIN_CIPHERTEXT = _BOX_OVERHEAD + _MIN_PLAINTEXT
MAX_META_BYTES = 16 * 1024
_MAX_CIPHERTEXT = _BOX_OVERHEAD + SEED_BYTES + MAX_META_BYTES
MIN_FILE_BYTES = HEADER_BYTES + _MIN_CIPHERTEXT + CHECKSUM_BYTES
MAX_FILE_BYTES = HEADER_BYTES + _MAX_CIPHERTEXT + CHECKSUM_BYTES

_MAX_WIDTH = 32


class KeystoreExists(KeystoreError):
    """A keystore already exists at this path and overwriting was not asked for."""


# --- validation helpers ------------------------------------------------------------------------------------


def _passphrase_bytes(passphrase: str) -> bytes:
    if not isinstance(passphrase, str):
        raise TypeError("a passphrase must be a str")
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _check_new_passphrase(passphrase: str) -> bytes:
    encoded = _passphrase_bytes(passphrase)
    if not encoded:
        raise ValueError("the passphrase must not be empty")
    return encoded


def _check_params(opslimit: int, memlimit: int) -> None:
    """ValueError unless the Argon2id parameters are within the bounds we also accept when reading."""
    if isinstance(opslimit, bool) or not isinstance(opslimit, int) or not MIN_OPSLIMIT <= opslimit <= MAX_OPSLIMIT:
        raise ValueError(f"opslimit must be an integer from {MIN_OPSLIMIT} to {MAX_OPSLIMIT}")
    if isinstance(memlimit, bool) or not isinstance(memlimit, int) or not MIN_MEMLIMIT <= memlimit <= MAX_MEMLIMIT:
        raise ValueError(f"memlimit must be an integer number of bytes from {MIN_MEMLIMIT} to {MAX_MEMLIMIT}")
    if memlimit % 1024:
        raise ValueError("memlimit must be a multiple of 1024 bytes (it is stored in KiB)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _meta_problem(meta: Any) -> str | None:
    """Why ``meta`` is not acceptable keystore metadata, or None if it is."""
    if not isinstance(meta, dict):
        return "metadata must be a dict"
    name, width, created = meta.get("name"), meta.get("width"), meta.get("created")
    if not isinstance(name, str):
        return "metadata 'name' must be a str"
    if not _is_int(width) or not 0 <= width <= _MAX_WIDTH:
        return f"metadata 'width' must be an integer from 0 to {_MAX_WIDTH}"
    if not _is_int(created) or created < 0:
        return "metadata 'created' must be a non-negative integer (Unix time)"
    return None


def _encode_meta(meta: dict[str, Any]) -> bytes:
    problem = _meta_problem(meta)
    if problem is not None:
        raise ValueError(problem)
    try:
        encoded = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError("metadata must contain only JSON values") from exc
    if json.loads(encoded) != meta:
        raise ValueError("metadata must survive a JSON round trip (str keys, no tuples)")
    data = encoded.encode("utf-8")
    if len(data) > MAX_META_BYTES:
        raise ValueError(f"metadata is too large (at most {MAX_META_BYTES} bytes of JSON)")
    return data


def _derive_key(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=opslimit, memlimit=memlimit)


# --- serialisation -----------------------------------------------------------------------------------------


def _serialise(seed: bytes, passphrase: bytes, meta_json: bytes, opslimit: int, memlimit: int) -> bytes:
    salt = nacl.utils.random(SALT_BYTES)
    key = _derive_key(passphrase, salt, opslimit, memlimit)
    ciphertext = bytes(nacl.secret.SecretBox(key).encrypt(seed + meta_json))
    body = _HEADER.pack(MAGIC, FORMAT_VERSION, opslimit, memlimit // 1024, salt, len(ciphertext)) + ciphertext
    return body + hashlib.blake2b(body, digest_size=CHECKSUM_BYTES).digest()


def _read_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeystoreNotFound(f"no keystore at {path}: run `komrade init` first") from None
    except IsADirectoryError:
        raise KeystoreCorrupt(f"{path} is a directory, not a komrade keystore") from None
    except PermissionError:
        raise KeystoreError(f"cannot read the keystore at {path}: permission denied") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read the keystore at {path}: {exc.strerror or 'I/O error'}") from None


def _parse(path: Path, data: bytes, passphrase: bytes) -> tuple[bytes, dict[str, Any], int, int]:
    """Check and decrypt keystore bytes; returns (seed, meta, opslimit, memlimit in bytes)."""
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data):
            raise KeystoreTruncated(f"the keystore at {path} is truncated ({len(data)} bytes)")
        raise KeystoreCorrupt(f"{path} is not a komrade keystore")
    if data[: len(MAGIC)] != MAGIC:
        raise KeystoreCorrupt(f"{path} is not a komrade keystore")
    if len(data) <= len(MAGIC):
        raise KeystoreTruncated(f"the keystore at {path} is truncated ({len(data)} bytes)")
    version = data[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise KeystoreCorrupt(
            f"the keystore at {path} has unknown format version {version} (damaged, or written by a newer komrade)"
        )
    if len(data) < HEADER_BYTES:
        raise KeystoreTruncated(f"the keystore at {path} is truncated ({len(data)} bytes)")
    _, _, opslimit, memlimit_kib, salt, ct_len = _HEADER.unpack_from(data)
    if not _MIN_CIPHERTEXT <= ct_len <= _MAX_CIPHERTEXT:
        raise KeystoreCorrupt(f"the keystore at {path} is damaged (impossible length field)")
    expected = HEADER_BYTES + ct_len + CHECKSUM_BYTES
    if len(data) < expected:
        raise KeystoreTruncated(
            f"the keystore at {path} is truncated ({len(data)} of {expected} bytes): "
            "an interrupted write or a damaged copy"
        )
    if len(data) > expected:
        raise KeystoreCorrupt(f"the keystore at {path} is damaged (unexpected bytes after its end)")
    body, checksum = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    if not hmac.compare_digest(hashlib.blake2b(body, digest_size=CHECKSUM_BYTES).digest(), checksum):
        raise KeystoreCorrupt(f"the keystore at {path} was changed or damaged: its checksum does not match")
    # The checksum is unkeyed: a crafted file can carry any parameters, so bound them before running Argon2id.
    if not MIN_OPSLIMIT <= opslimit <= MAX_OPSLIMIT:
        raise KeystoreCorrupt(f"the keystore at {path} is damaged or tampered with (absurd Argon2id opslimit)")
    memlimit = memlimit_kib * 1024
    if not MIN_MEMLIMIT <= memlimit <= MAX_MEMLIMIT:
        raise KeystoreCorrupt(f"the keystore at {path} is damaged or tampered with (absurd Argon2id memlimit)")
    key = _derive_key(passphrase, salt, opslimit, memlimit)
    try:
        plaintext = nacl.secret.SecretBox(key).decrypt(body[HEADER_BYTES:])
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase("wrong passphrase: the keystore is intact but this passphrase does not open it") from None
    seed, meta_json = bytes(plaintext[:SEED_BYTES]), bytes(plaintext[SEED_BYTES:])
    try:
        meta = json.loads(meta_json.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        meta = None
    if len(seed) != SEED_BYTES or _meta_problem(meta) is not None:
        raise KeystoreCorrupt(f"the keystore at {path} decrypted but its contents are malformed")
    return seed, meta, opslimit, memlimit


# --- atomic write ------------------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return  # platforms (Windows) that cannot open directories: nothing more we can do
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, overwrite: bool) -> None:
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # whatever the umask or inherited ACL defaults did
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic "create only if absent", even against a concurrent writer
            except FileExistsError:
                raise KeystoreExists(
                    f"a keystore already exists at {path}; refusing to overwrite it"
                ) from None
            except OSError:
                # File systems without hard links: best effort check then rename.
                if os.path.lexists(path):
                    raise KeystoreExists(f"a keystore already exists at {path}; refusing to overwrite it") from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


# --- public API --------------------------------------------------------------------------------------------


def create_keystore(
    path: Path,
    seed: bytes,
    passphrase: str,
    meta: dict[str, Any],
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
    overwrite: bool = False,
) -> None:
    """Encrypt ``seed`` and ``meta`` under ``passphrase`` and write them atomically to ``path`` (mode 0600).

    ``meta`` must hold ``name`` (str), ``width`` (int 0..32) and ``created`` (int, Unix time); other JSON keys are
    kept. ``memlimit`` is in bytes (a multiple of 1024, at most 1 GiB); ``opslimit`` at most 32.

    Raises ValueError for an empty passphrase, a seed that is not 32 bytes, bad metadata or parameters;
    :class:`KeystoreExists` if ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if not isinstance(seed, (bytes, bytearray, memoryview)) or len(bytes(seed)) != SEED_BYTES:
        raise ValueError(f"the seed must be {SEED_BYTES} bytes")
    passphrase_bytes = _check_new_passphrase(passphrase)
    meta_json = _encode_meta(meta)
    _check_params(opslimit, memlimit)
    if not overwrite and os.path.lexists(path):
        raise KeystoreExists(f"a keystore already exists at {path}; refusing to overwrite it")
    data = _serialise(bytes(seed), passphrase_bytes, meta_json, opslimit, memlimit)
    _write_atomic(path, data, overwrite)


def open_keystore(path: Path, passphrase: str) -> tuple[bytes, dict[str, Any]]:
    """Read and decrypt the keystore at ``path``; returns ``(seed, meta)``.

    Raises :class:`KeystoreNotFound` (no file), :class:`KeystoreTruncated` (file cut short),
    :class:`KeystoreCorrupt` (damaged, tampered, absurd parameters, or not a keystore at all),
    :class:`WrongPassphrase` (intact file, passphrase does not open it).
    """
    path = Path(path)
    seed, meta, _, _ = _parse(path, _read_file(path), _passphrase_bytes(passphrase))
    return seed, meta


def change_passphrase(
    path: Path,
    old: str,
    new: str,
    *,
    opslimit: int | None = None,
    memlimit: int | None = None,
) -> None:
    """Re-encrypt the keystore at ``path`` under ``new`` (fresh salt), atomically replacing the file.

    The Argon2id parameters stay those of the existing file unless given. Raises what :func:`open_keystore`
    raises for ``old``, and ValueError for an empty ``new``.
    """
    path = Path(path)
    new_bytes = _check_new_passphrase(new)
    seed, meta, old_ops, old_mem = _parse(path, _read_file(path), _passphrase_bytes(old))
    opslimit = old_ops if opslimit is None else opslimit
    memlimit = old_mem if memlimit is None else memlimit
    _check_params(opslimit, memlimit)
    data = _serialise(seed, new_bytes, _encode_meta(meta), opslimit, memlimit)
    _write_atomic(path, data, overwrite=True)
