"""The node's local storage: one SQLite file holding blobs, index slots, signed records and node state.

What lives here (see DESIGN.md, "Storage", "Index slots", "Signed mutable records"):

* **Blobs**: ``blob_id -> (envelope bytes, expires_at)``, where ``blob_id = BLAKE2b-160(bytes)``, so a
  stored value can always be checked against its key and nobody can overwrite or poison one.
* **Slot entries**: ``slot_id -> blob ids`` in arrival order (append-only, read in pages with a cursor).
  A blob referenced from several slots is stored once.
* **Records**: signed mutable records (BEP 44 model). The signature is checked by the caller; this layer
  only enforces "strictly higher ``seq`` wins".
* **Meta**: a small key/value table for the node's own state (routing table snapshot, node id, ...).

Rules this module keeps:

* Every write is one transaction, committed (WAL, ``synchronous=FULL``) before the method returns, so an
  acknowledged write survives ``kill -9`` of the process.
* Expired data is invisible to every read as soon as it expires, and deleted by :meth:`Store.purge_expired`.
* Size is bounded by :class:`StoreLimits`: a write that would pass a quota (even after purging expired
  rows) raises :class:`~komrade_dht.errors.QuotaExceeded` and stores nothing.
* A file that is not an intact komrade database is refused with :class:`~komrade_dht.errors.StorageError`;
  the store never silently starts empty on top of something it does not understand.

The store is synchronous and meant to be called from the node's event loop: every call is a few indexed
statements on one connection. It is not thread-safe; use it from one thread.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from komrade_dht.errors import QuotaExceeded, StorageError

__all__ = [
    "APPLICATION_ID",
    "ENTRY_BYTES",
    "ID_BYTES",
    "SCHEMA_VERSION",
    "Store",
    "StoreLimits",
    "StoreStats",
    "blob_id",
    "ids_digest",
]

ID_BYTES = 20
"""Length of every id this store handles (blob ids, slot ids, record keys): BLAKE2b-160."""

APPLICATION_ID = 0x4B4D5244
"""``PRAGMA application_id`` of a komrade storage database (ASCII ``KMRD``)."""

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the schema this code writes."""

ENTRY_BYTES = 2 * ID_BYTES
"""Bytes a slot entry counts against the total quota (its slot id and blob id)."""

MAX_META_NAME = 200
MAX_META_BYTES = 1 << 20

_SQLITE_MAGIC = b"SQLite format 3\x00"
_INT64_MAX = 2**63 - 1
_BUSY_TIMEOUT_MS = 2000
_WHAT_TO_DO = (
    "If the node is pointed at the wrong file, fix the path; otherwise stop the node, move this file "
    "(and any -wal/-shm files next to it) aside, and start again: the node will create a new, empty store "
    "and refill it from the network."
)

_SCHEMA = f"""
CREATE TABLE blobs (
    id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = {ID_BYTES}),
    data        BLOB    NOT NULL,
    size        INTEGER NOT NULL,             -- accounted bytes: id + data
    expires_at  INTEGER NOT NULL
);
CREATE INDEX blobs_by_expiry ON blobs (expires_at);

CREATE TABLE slot_entries (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order; never reused, so cursors stay valid
    slot_id  BLOB    NOT NULL CHECK (length(slot_id) = {ID_BYTES}),
    blob_id  BLOB    NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
    UNIQUE (blob_id, slot_id)
);
CREATE INDEX slot_entries_by_slot ON slot_entries (slot_id, seq, blob_id);

CREATE TABLE slots (
    slot_id  BLOB    NOT NULL PRIMARY KEY,
    entries  INTEGER NOT NULL                 -- rows in slot_entries, expired or not
) WITHOUT ROWID;

CREATE TABLE records (
    key         BLOB    NOT NULL PRIMARY KEY CHECK (length(key) = {ID_BYTES}),
    seq         INTEGER NOT NULL,
    value       BLOB    NOT NULL,
    size        INTEGER NOT NULL,             -- accounted bytes: key + value
    expires_at  INTEGER NOT NULL
);
CREATE INDEX records_by_expiry ON records (expires_at);

CREATE TABLE meta (
    name   TEXT NOT NULL PRIMARY KEY,
    value  BLOB NOT NULL
);

CREATE TABLE counters (
    name   TEXT    NOT NULL PRIMARY KEY,
    value  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('blobs', 0), ('bytes', 0), ('slot_entries', 0), ('records', 0);

CREATE TRIGGER blobs_count_insert AFTER INSERT ON blobs BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'blobs';
    UPDATE counters SET value = value + NEW.size WHERE name = 'bytes';
END;
CREATE TRIGGER blobs_count_delete AFTER DELETE ON blobs BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'blobs';
    UPDATE counters SET value = value - OLD.size WHERE name = 'bytes';
END;
CREATE TRIGGER blobs_count_update AFTER UPDATE OF size ON blobs BEGIN
    UPDATE counters SET value = value - OLD.size + NEW.size WHERE name = 'bytes';
END;

CREATE TRIGGER slot_entries_count_insert AFTER INSERT ON slot_entries BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'slot_entries';
    UPDATE counters SET value = value + {ENTRY_BYTES} WHERE name = 'bytes';
    INSERT OR IGNORE INTO slots (slot_id, entries) VALUES (NEW.slot_id, 0);
    UPDATE slots SET entries = entries + 1 WHERE slot_id = NEW.slot_id;
END;
CREATE TRIGGER slot_entries_count_delete AFTER DELETE ON slot_entries BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'slot_entries';
    UPDATE counters SET value = value - {ENTRY_BYTES} WHERE name = 'bytes';
    UPDATE slots SET entries = entries - 1 WHERE slot_id = OLD.slot_id;
    DELETE FROM slots WHERE slot_id = OLD.slot_id AND entries <= 0;
END;

CREATE TRIGGER records_count_insert AFTER INSERT ON records BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'records';
    UPDATE counters SET value = value + NEW.size WHERE name = 'bytes';
END;
CREATE TRIGGER records_count_delete AFTER DELETE ON records BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'records';
    UPDATE counters SET value = value - OLD.size WHERE name = 'bytes';
END;
CREATE TRIGGER records_count_update AFTER UPDATE OF size ON records BEGIN
    UPDATE counters SET value = value - OLD.size + NEW.size WHERE name = 'bytes';
END;
"""

_REQUIRED_OBJECTS = frozenset(
    {
        ("table", "blobs"),
        ("table", "slot_entries"),
        ("table", "slots"),
        ("table", "records"),
        ("table", "meta"),
        ("table", "counters"),
        ("index", "blobs_by_expiry"),
        ("index", "slot_entries_by_slot"),
        ("index", "records_by_expiry"),
        ("trigger", "blobs_count_insert"),
        ("trigger", "blobs_count_delete"),
        ("trigger", "blobs_count_update"),
        ("trigger", "slot_entries_count_insert"),
        ("trigger", "slot_entries_count_delete"),
        ("trigger", "records_count_insert"),
        ("trigger", "records_count_delete"),
        ("trigger", "records_count_update"),
    }
)


_DIGEST_CACHE = 4096


def _id_hash(bid: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(bid, digest_size=16).digest(), "big")


def ids_digest(ids: Iterable[bytes]) -> bytes:
    """An order-independent 16-byte digest of a set of ids (XOR of their BLAKE2b-128): equal sets, equal digests.
    What :meth:`Store.slot_digest` answers, so anti-entropy can compare a peer's slot with its own."""
    acc = 0
    for key in set(ids):
        acc ^= _id_hash(key)
    return acc.to_bytes(16, "big")


def blob_id(data: bytes) -> bytes:
    """Return the id of a blob: BLAKE2b with a 20-byte digest of its bytes."""
    return hashlib.blake2b(data, digest_size=ID_BYTES).digest()


@dataclass(frozen=True)
class StoreLimits:
    """Quotas of one store. Every write that would pass one raises QuotaExceeded and stores nothing.

    ``max_bytes`` bounds the accounted bytes: for each blob its id and data, for each slot entry
    :data:`ENTRY_BYTES`, for each record its key and value. Counting ids too means that no kind of row
    (an empty blob, one blob appended to a million slots) can grow the file without bound.
    """

    max_bytes: int = 512 * 2**20
    max_blob_bytes: int = 4096
    max_entries_per_slot: int = 20_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_blob_bytes", "max_entries_per_slot"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"StoreLimits.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class StoreStats:
    """Row counts and accounted bytes held on disk (expired rows count until they are purged)."""

    blobs: int
    bytes: int
    slots: int
    slot_entries: int
    records: int


class Store:
    """SQLite storage of one node. See the module docstring for the rules it keeps.

    Opening an existing file checks it (header, ``application_id``, ``PRAGMA quick_check``, schema version
    and objects) and raises :class:`StorageError` naming the file if it is not an intact komrade store.
    Only a missing file is created. Usable as a context manager (closes on exit).
    """

    def __init__(
        self,
        path: Path | str,
        limits: StoreLimits = StoreLimits(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open the store at ``path``, creating it (and only it, not its directory) if it does not exist."""
        if isinstance(path, str) and (path in ("", ":memory:") or path.startswith("file:")):
            raise ValueError(f"Store needs a real file path, not {path!r} (in-memory and URI names are not supported)")
        if not isinstance(limits, StoreLimits):
            raise TypeError(f"limits must be a StoreLimits, not {type(limits).__name__}")
        self.path = Path(path)
        self.limits = limits
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        #: slot id -> (entries, XOR of the entries' id hashes); dropped for every slot a delete or purge may touch
        self._digests: dict[bytes, tuple[int, int]] = {}
        #: something was deleted since the last :meth:`scrub`
        self._unscrubbed = False
        if not os.path.lexists(self.path):
            self._create()
        self._conn = self._open_existing()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the database (idempotent). Later calls raise StorageError."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the main file, WAL emptied
                conn.close()
            except sqlite3.Error as exc:
                raise self._error("could not be closed cleanly", exc) from exc

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"<Store {str(self.path)!r} {state}>"

    # ------------------------------------------------------------------ blobs

    def put_blob(self, blob_id: bytes, data: bytes, expires_at: int) -> bool:
        """Store ``data`` under ``blob_id`` until ``expires_at`` (Unix seconds); committed before returning.

        Returns True if newly stored, False if a live copy was already held (its expiry is kept).
        Raises ValueError if the id is not 20 bytes or not BLAKE2b-160 of ``data``, if ``data`` is larger
        than ``max_blob_bytes`` or if ``expires_at`` is not in the future; QuotaExceeded if the total quota
        would be passed even after purging expired rows.
        """
        bid = _check_id(blob_id, "blob_id")
        payload = self._check_payload(data, "blob data")
        _check_matches(bid, payload)
        now = self._now()
        expiry = _check_expiry(expires_at, now)
        problem = ""
        for attempt in range(2):
            with self._write() as conn:
                live, present = self._blob_state(conn, bid, now)
                if live:
                    return False
                problem = self._quota_problem(conn, ID_BYTES + len(payload), None)
                if not problem:
                    if present:
                        self._delete_blob_rows(conn, bid)
                    self._insert_blob(conn, bid, payload, expiry)
                    return True
            if attempt == 0:
                self.purge_expired(now)
        raise QuotaExceeded(f"{self.path}: blob {bid.hex()} not stored: {problem}")

    def get_blob(self, blob_id: bytes) -> bytes | None:
        """Return the blob's bytes, or None if it is not held or has expired."""
        bid = _check_id(blob_id, "blob_id")
        with self._read() as conn:
            row = conn.execute(
                "SELECT data FROM blobs WHERE id = ? AND expires_at > ?", (bid, self._now())
            ).fetchone()
        return None if row is None else bytes(row[0])

    def has_blob(self, blob_id: bytes) -> bool:
        """True if a live (unexpired) copy of the blob is held."""
        bid = _check_id(blob_id, "blob_id")
        with self._read() as conn:
            row = conn.execute(
                "SELECT 1 FROM blobs WHERE id = ? AND expires_at > ?", (bid, self._now())
            ).fetchone()
        return row is not None

    def delete_blob(self, blob_id: bytes) -> bool:
        """Delete the blob and every slot entry that points at it (e.g. for a burn). True if it was held."""
        bid = _check_id(blob_id, "blob_id")
        self._digests.clear()
        with self._write() as conn:
            return self._delete_blob_rows(conn, bid)

    # ------------------------------------------------------------------ slots

    def append(self, slot_id: bytes, data: bytes, expires_at: int, *, reserve: int = 0) -> bool:
        """Store ``data`` as a blob (as :meth:`put_blob`) and append it to ``slot_id``, in one transaction.

        Idempotent per (slot, blob): returns True if the slot entry is new, False if the slot already held
        this blob. Raises QuotaExceeded (storing nothing) if the slot already has ``max_entries_per_slot``
        (plus ``reserve``, which the node grants to sources that hold few entries in the slot) entries or the
        total quota would be passed, in both cases after purging expired rows.
        """
        (result,) = self.append_many([(slot_id, data, expires_at, reserve)])
        if isinstance(result, str):
            raise QuotaExceeded(
                f"{self.path}: blob {blob_id(bytes(data)).hex()} not appended to slot {bytes(slot_id).hex()}: {result}"
            )
        return result

    def append_many(self, items: list[tuple[bytes, bytes, int, int]]) -> list[bool | str]:
        """Group commit: append each ``(slot_id, data, expires_at, reserve)`` as :meth:`append` does, all in one
        transaction (one fsync for the batch). Returns, per item, True (new entry), False (already held) or the
        quota problem that refused it (that item stores nothing; the others are committed). Arguments are checked
        as :meth:`append` checks them (ValueError/TypeError before anything is written)."""
        prepared = []
        now = self._now()
        for slot_id, data, expires_at, reserve in items:
            slot = _check_id(slot_id, "slot_id")
            payload = self._check_payload(data, "blob data")
            prepared.append((slot, payload, blob_id(payload), _check_expiry(expires_at, now), reserve))
        results: list[bool | str] = [False] * len(prepared)
        todo = list(range(len(prepared)))
        for attempt in range(2):
            refused = []
            with self._write() as conn:
                for i in todo:
                    slot, payload, bid, expiry, reserve = prepared[i]
                    live, present = self._blob_state(conn, bid, now)
                    if live and self._entry_exists(conn, slot, bid):
                        results[i] = False
                        continue
                    need = ENTRY_BYTES + (0 if live else ID_BYTES + len(payload))
                    problem = self._quota_problem(conn, need, slot, reserve)
                    if problem:
                        results[i] = problem
                        refused.append(i)
                        continue
                    if not live:
                        if present:
                            self._delete_blob_rows(conn, bid)
                        self._insert_blob(conn, bid, payload, expiry)
                    conn.execute("INSERT INTO slot_entries (slot_id, blob_id) VALUES (?, ?)", (slot, bid))
                    cached = self._digests.get(slot)
                    if cached is not None:
                        self._digests[slot] = (cached[0] + 1, cached[1] ^ _id_hash(bid))
                    results[i] = True
            if not refused or attempt == 1:
                break
            self.purge_expired(now)
            todo = refused
        return results

    def read_slot(self, slot_id: bytes, cursor: int = 0, limit: int = 50) -> tuple[list[bytes], int]:
        """Return a page of live blob ids of the slot that arrived after ``cursor``, in arrival order.

        Returns ``(ids, next_cursor)``: at most ``limit`` ids, and the arrival sequence number of the last
        one returned (``cursor`` itself if none), to pass back for the next page. Cursors are local to
        this store: they mean nothing to another node.
        """
        slot = _check_id(slot_id, "slot_id")
        if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
            raise ValueError(f"cursor must be an int >= 0, got {cursor!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an int >= 1, got {limit!r}")
        cursor = min(cursor, _INT64_MAX)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT e.seq, e.blob_id FROM slot_entries AS e JOIN blobs AS b ON b.id = e.blob_id"
                " WHERE e.slot_id = ? AND e.seq > ? AND b.expires_at > ? ORDER BY e.seq LIMIT ?",
                (slot, cursor, self._now(), limit),
            ).fetchall()
        if not rows:
            return [], cursor
        return [bytes(row[1]) for row in rows], int(rows[-1][0])

    def slot_digest(self, slot_id: bytes) -> tuple[int, bytes]:
        """``(entries, digest)`` of the slot: how many entries it holds and an order-free 16-byte digest of their
        ids (equal sets, equal digests; :func:`ids_digest`). Answered from memory after the first call, so it costs
        the same whatever the slot's size; recomputed after a purge or a delete. Entries that expired since the
        last purge still count."""
        slot = _check_id(slot_id, "slot_id")
        cached = self._digests.get(slot)
        if cached is None:
            with self._read() as conn:
                rows = conn.execute("SELECT blob_id FROM slot_entries WHERE slot_id = ?", (slot,)).fetchall()
            acc = 0
            for (bid,) in rows:
                acc ^= _id_hash(bytes(bid))
            cached = (len(rows), acc)
            if len(self._digests) >= _DIGEST_CACHE:
                self._digests.pop(next(iter(self._digests)))
            self._digests[slot] = cached
        return cached[0], cached[1].to_bytes(16, "big")

    def get_blobs(self, blob_ids: list[bytes]) -> list[bytes | None]:
        """Each blob's bytes (None where not held or expired), in the order asked."""
        return [self.get_blob(bid) for bid in blob_ids]

    def slot_ids(self) -> list[bytes]:
        """Return the ids of every slot with at least one live entry (sorted)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT s.slot_id FROM slots AS s WHERE EXISTS ("
                " SELECT 1 FROM slot_entries AS e JOIN blobs AS b ON b.id = e.blob_id"
                " WHERE e.slot_id = s.slot_id AND b.expires_at > ?) ORDER BY s.slot_id",
                (self._now(),),
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def slot_entries(self, slot_id: bytes) -> list[tuple[bytes, bytes, int]]:
        """Return ``(blob_id, data, expires_at)`` of every live entry of the slot, in arrival order."""
        slot = _check_id(slot_id, "slot_id")
        with self._read() as conn:
            rows = conn.execute(
                "SELECT e.blob_id, b.data, b.expires_at FROM slot_entries AS e JOIN blobs AS b ON b.id = e.blob_id"
                " WHERE e.slot_id = ? AND b.expires_at > ? ORDER BY e.seq",
                (slot, self._now()),
            ).fetchall()
        return [(bytes(row[0]), bytes(row[1]), int(row[2])) for row in rows]

    # ------------------------------------------------------------------ expiry

    def purge_expired(self, now: float | None = None, *, limit: int | None = None) -> int:
        """Delete expired blobs (and their slot entries) and expired records; return how many blobs went.

        A row is expired when ``expires_at <= now``; ``now`` defaults to the store's clock.
        With ``limit``, at most ``limit`` blobs and ``limit`` records (the longest expired first) are
        deleted, so a scheduled purge can run in small steps without stalling the event loop (about
        55 µs per blob here): call again while it returns ``limit``.
        """
        t = self._now() if now is None else float(now)
        self._digests.clear()
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be an int >= 1 or None, got {limit!r}")
        with self._write() as conn:
            if limit is None:
                conn.execute(
                    "DELETE FROM slot_entries WHERE blob_id IN (SELECT id FROM blobs WHERE expires_at <= ?)", (t,)
                )
                removed = conn.execute("DELETE FROM blobs WHERE expires_at <= ?", (t,)).rowcount
                conn.execute("DELETE FROM records WHERE expires_at <= ?", (t,))
            else:
                ids = conn.execute(
                    "SELECT id FROM blobs WHERE expires_at <= ? ORDER BY expires_at LIMIT ?", (t, limit)
                ).fetchall()
                conn.executemany("DELETE FROM slot_entries WHERE blob_id = ?", ids)
                conn.executemany("DELETE FROM blobs WHERE id = ?", ids)
                removed = len(ids)
                conn.execute(
                    "DELETE FROM records WHERE key IN"
                    " (SELECT key FROM records WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
                    (t, limit),
                )
        self._unscrubbed |= removed > 0
        return max(removed, 0)

    # ------------------------------------------------------------------ signed mutable records

    def put_record(self, key: bytes, seq: int, value: bytes, expires_at: int) -> bool:
        """Store a signed mutable record if ``seq`` is strictly higher than the live one held (or none is).

        The caller must have checked the signature. Returns True if stored, False if refused because a
        live record with an equal or higher ``seq`` is held. An expired record counts as not held.
        Raises QuotaExceeded if the total quota would be passed even after purging expired rows.
        """
        k = _check_id(key, "record key")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= _INT64_MAX:
            raise ValueError(f"record seq must be an int in [0, 2**63), got {seq!r}")
        payload = self._check_payload(value, "record value")
        now = self._now()
        expiry = _check_expiry(expires_at, now)
        size = ID_BYTES + len(payload)
        problem = ""
        for attempt in range(2):
            with self._write() as conn:
                row = conn.execute("SELECT seq, size, expires_at FROM records WHERE key = ?", (k,)).fetchone()
                if row is not None and row[2] > now and seq <= row[0]:
                    return False
                problem = self._quota_problem(conn, size - (row[1] if row is not None else 0), None)
                if not problem:
                    conn.execute(
                        "INSERT INTO records (key, seq, value, size, expires_at) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET seq = excluded.seq, value = excluded.value,"
                        " size = excluded.size, expires_at = excluded.expires_at",
                        (k, seq, payload, size, expiry),
                    )
                    return True
            if attempt == 0:
                self.purge_expired(now)
        raise QuotaExceeded(f"{self.path}: record {k.hex()} not stored: {problem}")

    def get_record(self, key: bytes) -> tuple[int, bytes] | None:
        """Return ``(seq, value)`` of the live record under ``key``, or None."""
        k = _check_id(key, "record key")
        with self._read() as conn:
            row = conn.execute(
                "SELECT seq, value FROM records WHERE key = ? AND expires_at > ?", (k, self._now())
            ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    # ------------------------------------------------------------------ node state

    def get_meta(self, name: str) -> bytes | None:
        """Return the node-state value stored under ``name``, or None."""
        _check_meta_name(name)
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, name: str, value: bytes) -> None:
        """Store a small node-state value (at most 1 MiB) under ``name``, replacing any previous one."""
        _check_meta_name(name)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"meta value must be bytes, not {type(value).__name__}")
        payload = bytes(value)
        if len(payload) > MAX_META_BYTES:
            raise ValueError(f"meta value for {name!r} is {len(payload)} bytes, the limit is {MAX_META_BYTES}")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, payload),
            )

    def stats(self) -> StoreStats:
        """Return row counts and accounted bytes (expired rows included until purged)."""
        with self._read() as conn:
            conn.execute("BEGIN")
            try:
                counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
                slots = conn.execute("SELECT count(*) FROM slots").fetchone()[0]
            finally:
                conn.execute("COMMIT")
        return StoreStats(
            blobs=int(counters["blobs"]),
            bytes=int(counters["bytes"]),
            slots=int(slots),
            slot_entries=int(counters["slot_entries"]),
            records=int(counters["records"]),
        )

    # ------------------------------------------------------------------ internals: rows

    def _blob_state(self, conn: sqlite3.Connection, bid: bytes, now: float) -> tuple[bool, bool]:
        """Return (live, present) for a blob id."""
        row = conn.execute("SELECT expires_at FROM blobs WHERE id = ?", (bid,)).fetchone()
        if row is None:
            return False, False
        return row[0] > now, True

    @staticmethod
    def _entry_exists(conn: sqlite3.Connection, slot: bytes, bid: bytes) -> bool:
        row = conn.execute("SELECT 1 FROM slot_entries WHERE blob_id = ? AND slot_id = ?", (bid, slot)).fetchone()
        return row is not None

    @staticmethod
    def _insert_blob(conn: sqlite3.Connection, bid: bytes, payload: bytes, expiry: int) -> None:
        conn.execute(
            "INSERT INTO blobs (id, data, size, expires_at) VALUES (?, ?, ?, ?)",
            (bid, payload, ID_BYTES + len(payload), expiry),
        )

    def _delete_blob_rows(self, conn: sqlite3.Connection, bid: bytes) -> bool:
        self._digests.clear()
        conn.execute("DELETE FROM slot_entries WHERE blob_id = ?", (bid,))
        deleted = conn.execute("DELETE FROM blobs WHERE id = ?", (bid,)).rowcount > 0
        self._unscrubbed |= deleted
        return deleted

    def scrub(self) -> bool:
        """If anything was deleted since the last call (a burn, a purge), checkpoint the write-ahead log into the
        database (whose deleted pages ``secure_delete`` zeroed) and truncate it, so the deleted envelopes' bytes are
        in no file any more. Returns whether it did. The node calls it after each scheduled purge."""
        if not self._unscrubbed:
            return False
        try:
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise self._error("could not checkpoint its write-ahead log", exc) from exc
        self._unscrubbed = False
        return True

    def _quota_problem(self, conn: sqlite3.Connection, need: int, slot: bytes | None, reserve: int = 0) -> str:
        """Return why storing ``need`` more bytes (and one entry in ``slot``) would break a quota, or ''."""
        if slot is not None:
            row = conn.execute("SELECT entries FROM slots WHERE slot_id = ?", (slot,)).fetchone()
            entries = 0 if row is None else int(row[0])
            if entries >= self.limits.max_entries_per_slot + reserve:
                return f"the slot already holds {entries} entries (quota {self.limits.max_entries_per_slot})"
        held = int(conn.execute("SELECT value FROM counters WHERE name = 'bytes'").fetchone()[0])
        if held + need > self.limits.max_bytes:
            return f"{need} more bytes would pass the total quota of {self.limits.max_bytes} bytes ({held} held)"
        return ""

    def _check_payload(self, data: bytes, what: str) -> bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{what} must be bytes, not {type(data).__name__}")
        payload = bytes(data)
        if len(payload) > self.limits.max_blob_bytes:
            raise ValueError(f"{what} is {len(payload)} bytes, the limit is {self.limits.max_blob_bytes}")
        return payload

    def _now(self) -> float:
        return float(self._clock())

    # ------------------------------------------------------------------ internals: connection

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"{self.path}: the store is closed")
        return self._conn

    def _error(self, what: str, exc: BaseException | None = None) -> StorageError:
        detail = f" ({exc})" if exc is not None else ""
        return StorageError(f"storage database {self.path} {what}{detail}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (durably) on normal exit, rolled back on any exception."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error("could not start a write transaction", exc) from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            _rollback(conn)
            raise self._error("write failed, nothing was stored", exc) from exc
        except BaseException:
            _rollback(conn)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._digests.clear()
            _rollback(conn)
            raise self._error("could not commit, nothing was stored", exc) from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            yield conn
        except sqlite3.Error as exc:
            if conn.in_transaction:
                _rollback(conn)
            raise self._error("read failed", exc) from exc

    def _create(self) -> None:
        """Create a new, fully initialised database at ``self.path`` atomically (temp file + link)."""
        path = self.path
        parent = path.parent
        if not parent.is_dir():
            raise StorageError(f"cannot create storage database {path}: directory {parent} does not exist")
        for suffix in ("-wal", "-journal"):
            leftover = path.with_name(path.name + suffix)
            if os.path.lexists(leftover):
                raise StorageError(
                    f"storage database {path} is missing but {leftover} is still there: it belongs to a database "
                    f"that was moved or deleted. Move {leftover} aside (or restore the database) and start again."
                )
        tmp = path.with_name(f"{path.name}.init-{os.getpid()}")
        try:
            for stale in (tmp, tmp.with_name(tmp.name + "-journal")):
                if os.path.lexists(stale):
                    os.unlink(stale)
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = DELETE")
                conn.execute("PRAGMA synchronous = FULL")
                conn.executescript(
                    "BEGIN IMMEDIATE;\n"
                    f"PRAGMA application_id = {APPLICATION_ID};\n"
                    f"PRAGMA user_version = {SCHEMA_VERSION};\n"
                    f"{_SCHEMA}\nCOMMIT;"
                )
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # fails if someone created the file meanwhile: then we open theirs
            except FileExistsError:
                pass
            except OSError:
                os.replace(tmp, path)  # filesystems without hard links
            _fsync_dir(parent)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot create storage database {path}: {exc}") from exc
        finally:
            for stale in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                try:
                    os.unlink(stale)
                except FileNotFoundError:
                    pass
                except OSError:
                    pass

    def _open_existing(self) -> sqlite3.Connection:
        """Open and verify an existing file; nothing is written to it before it is known to be ours."""
        path = self.path
        try:
            if not path.is_file():
                raise StorageError(f"storage database {path} is not a regular file. {_WHAT_TO_DO}")
            size = path.stat().st_size
            with open(path, "rb") as f:
                header = f.read(100)
        except OSError as exc:
            raise StorageError(f"storage database {path} cannot be read: {exc}") from exc
        if size == 0:
            raise StorageError(
                f"storage database {path} is an empty (zero-length) file, probably from an interrupted write "
                f"or a failed copy. {_WHAT_TO_DO}"
            )
        if not header.startswith(_SQLITE_MAGIC):
            raise StorageError(f"storage database {path} is not an SQLite database (wrong header). {_WHAT_TO_DO}")
        if len(header) < 100:
            raise StorageError(f"storage database {path} is truncated ({size} bytes). {_WHAT_TO_DO}")
        try:
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=rw", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"storage database {path} cannot be opened: {exc}. {_WHAT_TO_DO}") from exc
        try:
            self._verify(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"storage database {path} could not be switched to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            # a burned or expired envelope's bytes are zeroed, not left in free pages for whoever takes the disk
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        except StorageError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"storage database {path} is damaged or unreadable: {exc}. {_WHAT_TO_DO}") from exc
        return conn

    def _verify(self, conn: sqlite3.Connection) -> None:
        """Check that ``conn`` is an intact komrade store of a schema version this code knows (read-only)."""
        path = self.path
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise StorageError(
                f"storage database {path} is an SQLite database of another application "
                f"(application_id {app_id:#x}, komrade uses {APPLICATION_ID:#x}); refusing to touch it. {_WHAT_TO_DO}"
            )
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
        if problems != ["ok"]:
            raise StorageError(
                f"storage database {path} is corrupt (quick_check: {'; '.join(problems)}). {_WHAT_TO_DO}"
            )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"storage database {path} has schema version {version}, written by a newer komrade "
                f"(this one knows up to {SCHEMA_VERSION}): upgrade komrade, or move the file aside to start empty."
            )
        if version != SCHEMA_VERSION:
            raise StorageError(f"storage database {path} has an unknown schema version {version}. {_WHAT_TO_DO}")
        present = {(str(t), str(n)) for t, n in conn.execute("SELECT type, name FROM sqlite_schema")}
        missing = sorted(name for kind, name in _REQUIRED_OBJECTS - present)
        if missing:
            raise StorageError(
                f"storage database {path} is missing schema objects ({', '.join(missing)}). {_WHAT_TO_DO}"
            )


# ---------------------------------------------------------------------- helpers


def _check_id(value: bytes, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    raw = bytes(value)
    if len(raw) != ID_BYTES:
        raise ValueError(f"{what} must be {ID_BYTES} bytes, got {len(raw)}")
    return raw


def _check_matches(bid: bytes, payload: bytes) -> None:
    actual = blob_id(payload)
    if actual != bid:
        raise ValueError(
            f"blob_id {bid.hex()} does not match the data: BLAKE2b-160 of the data is {actual.hex()} "
            "(a blob is only stored under its own hash)"
        )


def _check_expiry(expires_at: int, now: float) -> int:
    if isinstance(expires_at, bool) or not isinstance(expires_at, int):
        raise TypeError(f"expires_at must be an int (Unix seconds), not {type(expires_at).__name__}")
    if expires_at > _INT64_MAX:
        raise ValueError(f"expires_at {expires_at} is out of range")
    if expires_at <= now:
        raise ValueError(f"expires_at {expires_at} is not in the future (now is {now:.0f})")
    return expires_at


def _check_meta_name(name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_META_NAME:
        raise ValueError(f"meta name must be a non-empty str of at most {MAX_META_NAME} characters, got {name!r}")


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. platforms that cannot open directories
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
