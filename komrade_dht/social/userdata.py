"""A user's local data (contacts, messages, sync state), encrypted at rest in SQLite.

Every row is ``SecretBox(key, msgpack(record))``; the row id is a keyed BLAKE2b of the record's natural id, so
neither plaintext nor linkable ids (envelope ids, public keys) reach the file, its journal or its WAL.
What the file does show: how many rows of each kind it holds, and their sizes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import nacl.secret
from nacl.exceptions import CryptoError

from .. import codec
from ..errors import CodecError, StorageError, UserDataError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (kind TEXT NOT NULL, id BLOB NOT NULL, box BLOB NOT NULL, PRIMARY KEY (kind, id));
"""
_APP_ID = 0x4B4D5544  # "KMUD"


class UserData:
    """Encrypted key/value records grouped by kind. ``key`` is the identity's local data key (32 bytes)."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = Path(path)
        existed = self.path.exists()
        if existed and self.path.stat().st_size == 0:
            raise StorageError(f"{self.path} is empty: the user database was damaged; restore it from a backup")
        self._box = nacl.secret.SecretBox(key)
        self._idkey = hashlib.blake2b(key, digest_size=32, person=b"komrade/rowid").digest()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in free pages
            if existed:
                app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
                if app_id != _APP_ID:
                    raise StorageError(f"{self.path} is not a komrade user database")
                if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise StorageError(f"{self.path} is corrupt; restore it from a backup")
            else:
                self._db.execute(f"PRAGMA application_id={_APP_ID}")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{self.path} cannot be opened as a komrade user database: {exc}") from None
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        self._db.close()

    def _row_id(self, kind: str, natural_id: bytes) -> bytes:
        return hashlib.blake2b(kind.encode() + b"\0" + natural_id, key=self._idkey, digest_size=20).digest()

    def put(self, kind: str, natural_id: bytes, record: dict[str, Any]) -> None:
        """Insert or replace one record (committed before returning)."""
        box = self._box.encrypt(codec.pack(record))
        self._db.execute(
            "INSERT OR REPLACE INTO items (kind, id, box) VALUES (?, ?, ?)",
            (kind, self._row_id(kind, natural_id), bytes(box)),
        )

    def has(self, kind: str, natural_id: bytes) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM items WHERE kind=? AND id=?", (kind, self._row_id(kind, natural_id))
        ).fetchone()
        return row is not None

    def get(self, kind: str, natural_id: bytes) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT box FROM items WHERE kind=? AND id=?", (kind, self._row_id(kind, natural_id))
        ).fetchone()
        return None if row is None else self._open(row[0])

    def delete(self, kind: str, natural_id: bytes) -> bool:
        cur = self._db.execute("DELETE FROM items WHERE kind=? AND id=?", (kind, self._row_id(kind, natural_id)))
        return cur.rowcount > 0

    def scrub(self) -> None:
        """Make what was deleted unrecoverable from the files now: the zeroed pages go into the database file and
        the write-ahead log, which still holds their earlier versions, is emptied (after a burn: a passphrase
        given up later must not open what the user deleted)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def clear(self, kind: str) -> int:
        """Delete every record of ``kind``; how many there were."""
        return self._db.execute("DELETE FROM items WHERE kind=?", (kind,)).rowcount

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [self._open(box) for (box,) in self._db.execute("SELECT box FROM items WHERE kind=?", (kind,))]

    def _open(self, box: bytes) -> dict[str, Any]:
        try:
            record = codec.unpack(self._box.decrypt(box), max_len=1 << 20)
        except (CryptoError, CodecError):
            raise UserDataError(
                f"a record in {self.path} does not decrypt: wrong key or the file was tampered with"
            ) from None
        if not isinstance(record, dict):
            raise UserDataError(f"a record in {self.path} is malformed")
        return record
