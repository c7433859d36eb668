"""Small helpers shared by the benchmarks: timing, percentiles, output."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable


def best_of(fn: Callable[[], Any], repeat: int = 3, warmup: int = 1) -> float:
    """Seconds taken by the fastest of ``repeat`` calls of ``fn`` (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def best_of_interleaved(fns: dict[str, Callable[[], Any]], repeat: int = 3, warmup: int = 1) -> dict[str, float]:
    """Like :func:`best_of` for several functions, run round-robin (a, b, c, a, b, c, ...) so that a slow
    patch of a shared machine hurts every figure alike and ratios between them stay meaningful."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    best = {name: math.inf for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50 / p99 / mean / min / max of durations given in seconds, in milliseconds (3 decimals)."""
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 3),
        "p99": round(percentile(ms, 99), 3),
        "mean": round(statistics.fmean(ms), 3),
        "min": round(min(ms), 3),
        "max": round(max(ms), 3),
    }


def udp_rcvbuf_errors() -> int | None:
    """The kernel's count of UDP datagrams dropped because a socket's receive buffer was full (Linux only)."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return None


def code_fingerprint() -> dict[str, Any]:
    """A hash of the komrade_dht sources measured (no git here), so figures can be tied to a code state."""
    import hashlib
    from pathlib import Path

    import komrade_dht

    root = Path(komrade_dht.__file__).parent
    h = hashlib.blake2b(digest_size=8)
    newest = 0.0
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    return {
        "komrade_dht_sources": h.hexdigest(),
        "newest_source_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest)),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import nacl

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pynacl": nacl.__version__,
    }


class Out:
    """Human-readable lines (suppressed with ``--json``) and a final one-line JSON object (always printed)."""

    def __init__(self, json_only: bool) -> None:
        self.json_only = json_only

    def __call__(self, *args: Any) -> None:
        if not self.json_only:
            print(*args, flush=True)

    def json(self, obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")
        sys.stdout.flush()
