"""Tests of komrade_dht.storage: real SQLite files in tmp_path, no mocks."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from komrade_dht.errors import QuotaExceeded, StorageError
from komrade_dht.storage import Store, StoreLimits, StoreStats, blob_id
from komrade_dht.storage.store import ENTRY_BYTES, ID_BYTES

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000


class Clock:
    """A settable clock for the store (seconds)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def slot(n: int) -> bytes:
    return blob_id(b"slot %d" % n)


def data(n: int, size: int = 100) -> bytes:
    return (b"envelope %d " % n).ljust(size, b".")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = Store(tmp_path / "store.db", clock=clock)
    yield s
    s.close()


# ---------------------------------------------------------------------- blobs


def test_blob_id_is_blake2b_160() -> None:
    import hashlib

    assert blob_id(b"abc") == hashlib.blake2b(b"abc", digest_size=20).digest()
    assert len(blob_id(b"")) == 20


def test_put_get_round_trip(store: Store) -> None:
    d = data(1)
    bid = blob_id(d)
    assert store.get_blob(bid) is None and not store.has_blob(bid)
    assert store.put_blob(bid, d, T0 + 60) is True
    assert store.get_blob(bid) == d and store.has_blob(bid)
    assert store.put_blob(bid, d, T0 + 60) is False  # idempotent
    assert store.stats() == StoreStats(blobs=1, bytes=ID_BYTES + len(d), slots=0, slot_entries=0, records=0)


def test_blob_must_hash_to_its_id(store: Store) -> None:
    with pytest.raises(ValueError, match="does not match"):
        store.put_blob(blob_id(b"other"), b"poison", T0 + 60)
    with pytest.raises(ValueError, match="20 bytes"):
        store.put_blob(blob_id(b"x")[:19], b"x", T0 + 60)
    assert store.get_blob(blob_id(b"other")) is None
    assert store.stats().blobs == 0


def test_invalid_arguments_are_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="limit is 4096"):
        store.append(slot(1), b"x" * 4097, T0 + 60)
    with pytest.raises(ValueError, match="not in the future"):
        store.append(slot(1), b"x", T0)
    with pytest.raises(ValueError, match="slot_id must be 20 bytes"):
        store.append(b"short", b"x", T0 + 60)
    with pytest.raises(TypeError):
        store.append(slot(1), "text", T0 + 60)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.append(slot(1), b"x", float(T0 + 60))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.read_slot(slot(1), cursor=-1)
    with pytest.raises(ValueError):
        store.read_slot(slot(1), limit=0)
    with pytest.raises(ValueError):
        Store(":memory:")
    assert store.stats().blobs == 0


def test_append_is_idempotent_and_blob_shared_between_slots(store: Store) -> None:
    d = data(1)
    assert store.append(slot(1), d, T0 + 60) is True
    assert store.append(slot(1), d, T0 + 60) is False
    assert store.append(slot(2), d, T0 + 60) is True
    assert store.read_slot(slot(1))[0] == [blob_id(d)]
    st_ = store.stats()
    assert (st_.blobs, st_.slot_entries, st_.slots) == (1, 2, 2)
    assert st_.bytes == ID_BYTES + len(d) + 2 * ENTRY_BYTES
    assert store.slot_entries(slot(2)) == [(blob_id(d), d, T0 + 60)]
    assert store.slot_ids() == sorted([slot(1), slot(2)])
    # the blob is also readable directly, and deleting it removes it from every slot
    assert store.get_blob(blob_id(d)) == d
    assert store.delete_blob(blob_id(d)) is True
    assert store.delete_blob(blob_id(d)) is False
    assert store.read_slot(slot(1))[0] == [] and store.read_slot(slot(2))[0] == []
    assert store.stats() == StoreStats(0, 0, 0, 0, 0)


def test_paging_through_120_entries(store: Store) -> None:
    ids = [blob_id(data(i)) for i in range(120)]
    for i in range(120):
        assert store.append(slot(1), data(i), T0 + 60)
    store.append(slot(2), data(999), T0 + 60)  # another slot interleaved does not leak in
    seen: list[bytes] = []
    cursor = 0
    pages = []
    while True:
        page, cursor2 = store.read_slot(slot(1), cursor, 50)
        if not page:
            assert cursor2 == cursor
            break
        assert cursor2 > cursor
        pages.append(len(page))
        seen.extend(page)
        cursor = cursor2
    assert pages == [50, 50, 20]
    assert seen == ids
    assert len(set(seen)) == 120


def test_cursor_stays_valid_after_purge(store: Store, clock: Clock) -> None:
    """Arrival numbers are never reused, so a reader's cursor never skips new entries."""
    store.append(slot(1), data(1), T0 + 10)
    ids, cursor = store.read_slot(slot(1))
    assert len(ids) == 1
    clock.now = T0 + 20
    assert store.purge_expired() == 1
    store.append(slot(1), data(2), T0 + 100)
    assert store.read_slot(slot(1), cursor)[0] == [blob_id(data(2))]


# ---------------------------------------------------------------------- expiry


def test_expired_data_is_invisible_then_purged(store: Store, clock: Clock) -> None:
    store.append(slot(1), data(1), T0 + 10)
    store.append(slot(1), data(2), T0 + 100)
    store.append(slot(2), data(3), T0 + 10)
    store.put_record(slot(9), 1, b"rec", T0 + 10)
    clock.now = T0 + 10  # expires_at <= now means expired
    assert store.get_blob(blob_id(data(1))) is None
    assert not store.has_blob(blob_id(data(1)))
    assert store.read_slot(slot(1))[0] == [blob_id(data(2))]
    assert store.read_slot(slot(2)) == ([], 0)
    assert [e[0] for e in store.slot_entries(slot(1))] == [blob_id(data(2))]
    assert store.slot_ids() == [slot(1)]
    assert store.get_record(slot(9)) is None
    assert store.stats().blobs == 3  # still on disk until purged
    assert store.purge_expired() == 2
    assert store.stats() == StoreStats(
        blobs=1, bytes=ID_BYTES + len(data(2)) + ENTRY_BYTES, slots=1, slot_entries=1, records=0
    )
    assert store.purge_expired() == 0
    # an expired blob can be stored again afterwards, fresh
    assert store.append(slot(2), data(3), T0 + 50) is True
    assert store.read_slot(slot(2))[0] == [blob_id(data(3))]


def test_purge_in_steps(store: Store, clock: Clock) -> None:
    for i in range(7):
        store.append(slot(1), data(i), T0 + 10 + i)
        store.put_record(blob_id(b"key %d" % i), 1, b"v", T0 + 10)
    store.append(slot(1), data(99), T0 + 100)
    clock.now = T0 + 50
    assert [store.purge_expired(limit=3) for _ in range(4)] == [3, 3, 1, 0]
    assert store.read_slot(slot(1))[0] == [blob_id(data(99))]
    assert store.stats() == StoreStats(1, ID_BYTES + 100 + ENTRY_BYTES, 1, 1, 0)


def test_expired_but_unpurged_blob_is_replaced(store: Store, clock: Clock) -> None:
    d = data(1)
    store.append(slot(1), d, T0 + 10)
    clock.now = T0 + 11
    assert store.put_blob(blob_id(d), d, T0 + 100) is True  # expired copy does not count as held
    assert store.get_blob(blob_id(d)) == d
    assert store.read_slot(slot(1))[0] == []  # the old slot entry went with the expired copy
    assert store.stats().slot_entries == 0


# ---------------------------------------------------------------------- quotas


def test_total_quota_raises_and_stores_nothing(tmp_path: Path, clock: Clock) -> None:
    cost = ID_BYTES + 100
    with Store(tmp_path / "q.db", StoreLimits(max_bytes=3 * cost + 10), clock) as s:
        for i in range(3):
            s.put_blob(blob_id(data(i)), data(i), T0 + 60)
        before = s.stats()
        with pytest.raises(QuotaExceeded, match="total quota"):
            s.put_blob(blob_id(data(3)), data(3), T0 + 60)
        with pytest.raises(QuotaExceeded):
            s.append(slot(1), data(3), T0 + 60)
        with pytest.raises(QuotaExceeded):
            s.put_record(slot(5), 1, b"v" * 100, T0 + 60)
        assert s.stats() == before
        assert not s.has_blob(blob_id(data(3)))
        assert s.read_slot(slot(1))[0] == [] and s.get_record(slot(5)) is None
        # already-held data is still acknowledged at full quota
        assert s.put_blob(blob_id(data(0)), data(0), T0 + 60) is False


def test_per_slot_quota_raises_and_stores_nothing(tmp_path: Path, clock: Clock) -> None:
    with Store(tmp_path / "q.db", StoreLimits(max_entries_per_slot=3), clock) as s:
        for i in range(3):
            s.append(slot(1), data(i), T0 + 60)
        before = s.stats()
        with pytest.raises(QuotaExceeded, match="slot"):
            s.append(slot(1), data(3), T0 + 60)
        assert s.stats() == before
        assert not s.has_blob(blob_id(data(3)))
        assert s.append(slot(1), data(0), T0 + 60) is False  # re-append of a held entry is fine
        assert s.append(slot(2), data(3), T0 + 60) is True  # other slots are not affected


def test_expired_data_is_purged_to_make_room(tmp_path: Path, clock: Clock) -> None:
    cost = ID_BYTES + 100 + ENTRY_BYTES
    limits = StoreLimits(max_bytes=3 * cost, max_entries_per_slot=2)
    with Store(tmp_path / "q.db", limits, clock) as s:
        s.append(slot(1), data(1), T0 + 10)
        s.append(slot(1), data(2), T0 + 10)
        s.append(slot(2), data(3), T0 + 10)
        clock.now = T0 + 10
        assert s.append(slot(1), data(4), T0 + 60) is True  # slot full of expired entries
        assert s.append(slot(3), data(5), T0 + 60) is True
        assert s.put_blob(blob_id(data(6)), data(6), T0 + 60) is True
        st_ = s.stats()
        assert (st_.blobs, st_.slot_entries) == (3, 2)
        assert st_.bytes <= limits.max_bytes


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        StoreLimits(max_bytes=0)


# ---------------------------------------------------------------------- records and meta


def test_records_higher_seq_wins(store: Store, clock: Clock) -> None:
    key = slot(7)
    assert store.get_record(key) is None
    assert store.put_record(key, 5, b"five", T0 + 60) is True
    assert store.put_record(key, 5, b"other five", T0 + 60) is False
    assert store.put_record(key, 4, b"four", T0 + 60) is False
    assert store.get_record(key) == (5, b"five")
    assert store.put_record(key, 6, b"six!!", T0 + 60) is True
    assert store.get_record(key) == (6, b"six!!")
    assert store.stats().records == 1
    assert store.stats().bytes == ID_BYTES + len(b"six!!")
    with pytest.raises(ValueError):
        store.put_record(key, -1, b"x", T0 + 60)
    with pytest.raises(ValueError):
        store.put_record(key, 7, b"x" * 5000, T0 + 60)


def test_meta(store: Store) -> None:
    assert store.get_meta("node_id") is None
    store.set_meta("node_id", b"\x01" * 20)
    store.set_meta("node_id", b"\x02" * 20)
    assert store.get_meta("node_id") == b"\x02" * 20


# ---------------------------------------------------------------------- files: reopen, durability, corruption


def test_reopen_keeps_data(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "store.db"
    with Store(path, clock=clock) as s:
        s.append(slot(1), data(1), T0 + 60)
        s.put_record(slot(2), 3, b"rec", T0 + 60)
        s.set_meta("routing", b"{}")
        stats = s.stats()
    with Store(str(path), clock=clock) as s:
        assert s.read_slot(slot(1))[0] == [blob_id(data(1))]
        assert s.get_blob(blob_id(data(1))) == data(1)
        assert s.get_record(slot(2)) == (3, b"rec")
        assert s.get_meta("routing") == b"{}"
        assert s.stats() == stats
    s.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        s.stats()


_WRITER = r"""
import os, sys, time
from komrade_dht.storage import Store, blob_id
store = Store(sys.argv[1])
slot = bytes.fromhex(sys.argv[2])
i = 0
while True:
    data = i.to_bytes(8, "big") + os.urandom(120)
    store.append(slot, data, int(time.time()) + 3600)
    sys.stdout.write(blob_id(data).hex() + "\n")
    sys.stdout.flush()
    i += 1
"""


def test_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    sl = slot(1)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), sl.hex()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        text=True,
    )
    printed: list[str] = []
    try:
        assert proc.stdout is not None
        while len(printed) < 150:
            line = proc.stdout.readline()
            if not line:
                break
            printed.append(line)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the writer is busy appending
        printed.extend(proc.stdout.readlines())  # whatever it acknowledged before dying
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err
    acked = [bytes.fromhex(x.strip()) for x in printed if len(x.strip()) == 40]
    assert len(acked) >= 150, err
    assert (tmp_path / "store.db-wal").exists()  # it really died without a clean close
    with Store(path) as s:
        held, _ = s.read_slot(sl, 0, 100_000)
        assert all(s.has_blob(bid) for bid in acked)
        assert held[: len(acked)] == acked


def _make_good_db(path: Path) -> None:
    with Store(path, clock=Clock()) as s:
        for i in range(300):
            s.append(slot(i % 3), data(i, 1000), T0 + 60)


def _assert_refused(path: Path, match: str) -> None:
    before = path.read_bytes()
    with pytest.raises(StorageError, match=match) as info:
        Store(path)
    assert str(path) in str(info.value)
    assert "move this file" in str(info.value) or "upgrade" in str(info.value)
    assert path.read_bytes() == before  # refused files are not touched


def test_random_bytes_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(os.urandom(64 * 1024))
    _assert_refused(path, "not an SQLite database")
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(64 * 1024))  # right magic, garbage after
    _assert_refused(path, "store.db")


def test_truncated_db_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.db"
    _make_good_db(good)
    bad = tmp_path / "store.db"
    shutil.copy(good, bad)
    os.truncate(bad, bad.stat().st_size // 2)
    _assert_refused(bad, "damaged|corrupt")


def test_zero_length_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.touch()
    _assert_refused(path, "zero-length")


def test_other_applications_db_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE blobs (id BLOB PRIMARY KEY, data BLOB)")
    conn.commit()
    conn.close()
    _assert_refused(path, "another application")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    _assert_refused(path, "newer komrade")


def test_missing_file_is_created_but_not_its_directory(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        Store(tmp_path / "nope" / "store.db")
    Store(tmp_path / "store.db").close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]


# ---------------------------------------------------------------------- model-based check of counters and reads

MODEL_MAX_BYTES = 500
_append = st.tuples(st.just("append"), st.integers(0, 2), st.integers(0, 7), st.integers(1, 30))
_op = st.one_of(
    _append,
    _append,
    _append,
    st.tuples(st.just("put"), st.integers(0, 7), st.integers(1, 30)),
    st.tuples(st.just("delete"), st.integers(0, 7)),
    st.tuples(st.just("tick"), st.integers(1, 20)),
    st.tuples(st.just("purge")),
    st.tuples(st.just("record"), st.integers(0, 1), st.integers(0, 4), st.integers(0, 7), st.integers(1, 30)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_op, min_size=15, max_size=30))
def test_store_matches_a_model(ops: list[tuple[Any, ...]]) -> None:
    """Random operations against the store and a plain-Python model: counters, pages, quotas agree."""
    limits = StoreLimits(max_bytes=MODEL_MAX_BYTES, max_blob_bytes=100, max_entries_per_slot=3)
    payloads = [data(i, 10 + 12 * i) for i in range(8)]
    clock = Clock()
    blobs: dict[bytes, tuple[bytes, int]] = {}
    entries: list[tuple[bytes, bytes]] = []
    records: dict[bytes, tuple[int, bytes, int]] = {}

    def model_purge() -> int:
        dead = {b for b, (_, exp) in blobs.items() if exp <= clock.now}
        for b in dead:
            del blobs[b]
        entries[:] = [e for e in entries if e[1] not in dead]
        for k in [k for k, r in records.items() if r[2] <= clock.now]:
            del records[k]
        return len(dead)

    def model_bytes() -> int:
        return (
            sum(ID_BYTES + len(d) for d, _ in blobs.values())
            + ENTRY_BYTES * len(entries)
            + sum(ID_BYTES + len(v) for _, v, _ in records.values())
        )

    def live(b: bytes) -> bool:
        return b in blobs and blobs[b][1] > clock.now

    def model_write(try_it: Callable[[], bool | None]) -> bool | None:
        """Run a model write; None means over quota: purge once and retry, as the store does."""
        result = try_it()
        if result is None:
            model_purge()
            result = try_it()
        return result

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "m.db", limits, clock) as s:
        for op in ops:
            kind = op[0]
            if kind == "append":
                sl, d, exp = slot(op[1]), payloads[op[2]], int(clock.now) + op[3]
                b = blob_id(d)

                def try_append() -> bool | None:
                    if live(b) and (sl, b) in entries:
                        return False
                    need = ENTRY_BYTES + (0 if live(b) else ID_BYTES + len(d))
                    if sum(1 for e in entries if e[0] == sl) >= 3 or model_bytes() + need > MODEL_MAX_BYTES:
                        return None
                    if not live(b):
                        entries[:] = [e for e in entries if e[1] != b]
                        blobs[b] = (d, exp)
                    entries.append((sl, b))
                    return True

                expected = model_write(try_append)
                if expected is None:
                    with pytest.raises(QuotaExceeded):
                        s.append(sl, d, exp)
                else:
                    assert s.append(sl, d, exp) is expected
            elif kind == "put":
                d, exp = payloads[op[1]], int(clock.now) + op[2]
                b = blob_id(d)

                def try_put() -> bool | None:
                    if live(b):
                        return False
                    if model_bytes() + ID_BYTES + len(d) > MODEL_MAX_BYTES:
                        return None
                    entries[:] = [e for e in entries if e[1] != b]
                    blobs[b] = (d, exp)
                    return True

                expected = model_write(try_put)
                if expected is None:
                    with pytest.raises(QuotaExceeded):
                        s.put_blob(b, d, exp)
                else:
                    assert s.put_blob(b, d, exp) is expected
            elif kind == "delete":
                b = blob_id(payloads[op[1]])
                assert s.delete_blob(b) is (b in blobs)
                blobs.pop(b, None)
                entries[:] = [e for e in entries if e[1] != b]
            elif kind == "tick":
                clock.now += op[1]
            elif kind == "purge":
                assert s.purge_expired() == model_purge()
            else:
                key, seq, value, exp = slot(100 + op[1]), op[2], payloads[op[3]], int(clock.now) + op[4]

                def try_record() -> bool | None:
                    held = records.get(key)
                    if held is not None and held[2] > clock.now and seq <= held[0]:
                        return False
                    old = ID_BYTES + len(held[1]) if held is not None else 0
                    if model_bytes() - old + ID_BYTES + len(value) > MODEL_MAX_BYTES:
                        return None
                    records[key] = (seq, value, exp)
                    return True

                expected = model_write(try_record)
                if expected is None:
                    with pytest.raises(QuotaExceeded):
                        s.put_record(key, seq, value, exp)
                else:
                    assert s.put_record(key, seq, value, exp) is expected

            assert s.stats() == StoreStats(
                blobs=len(blobs),
                bytes=model_bytes(),
                slots=len({e[0] for e in entries}),
                slot_entries=len(entries),
                records=len(records),
            )
            for n in range(3):
                want = [b for sl, b in entries if sl == slot(n) and live(b)]
                assert s.read_slot(slot(n), 0, 100)[0] == want
            for n in range(2):
                r = records.get(slot(100 + n))
                want_r = (r[0], r[1]) if r is not None and r[2] > clock.now else None
                assert s.get_record(slot(100 + n)) == want_r
            assert s.stats().bytes <= MODEL_MAX_BYTES


def test_a_burned_or_purged_envelope_leaves_no_bytes_on_disk(tmp_path: Path, clock: Clock) -> None:
    """Deleted pages are zeroed (secure_delete) and :meth:`Store.scrub` empties the write-ahead log that still held
    them: a seized relay's files no longer contain a burned or expired envelope."""
    store = Store(tmp_path / "relay.sqlite", clock=clock)
    try:
        burned, expiring, kept = os.urandom(700), os.urandom(700), os.urandom(700)
        store.put_blob(blob_id(burned), burned, int(clock()) + 600)
        store.append(bytes(20), expiring, int(clock()) + 10)
        store.put_blob(blob_id(kept), kept, int(clock()) + 600)

        def on_disk(data: bytes) -> bool:
            return any(data[100:164] in p.read_bytes() for p in tmp_path.iterdir() if p.is_file())

        assert on_disk(burned) and on_disk(expiring)
        assert not store.scrub()  # nothing deleted yet: nothing to do
        assert store.delete_blob(blob_id(burned))
        clock.now += 60
        assert store.purge_expired() == 1
        assert store.scrub()
        assert not on_disk(burned) and not on_disk(expiring) and on_disk(kept)
        assert store.get_blob(blob_id(kept)) == kept
    finally:
        store.close()
