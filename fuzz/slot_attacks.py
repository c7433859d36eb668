"""Long runner for the slot-layer attacks of issue 9: `python -m fuzz.slot_attacks [--junk 5000] [--json]`.

Runs every attack of ``tests/test_slot_attacks.py`` on a real loopback network (UDP on 127.0.0.1, SQLite stores,
real crypto; the scenarios are the tests', in ``tests/adversary.py``), bigger where that is cheap, and prints the
figures the tests do not assert: how long Bob's sync took, how many datagrams and bytes his node sent, how much of
his routing table he kept, whether the real DM arrived (also with a slot filled past its quota from one
source and from 20); the cost of one ``slot_digest`` on a 20,000-entry slot and
honest ping latency under the digest flood and under fresh-id pings; the bytes reflected to a silent address; what
stuffing and an 8-hop gossip request achieve; the reader's cost of an 8-header envelope.

Bounded: every sync stops at ``--timeout`` seconds or ``--max-datagrams`` datagrams (reported as not finished),
every attack at ``--deadline`` seconds; nothing leaves 127.0.0.1. Prints one JSON document (``--json``: compact,
on one line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from komrade_dht import envelope as env
from komrade_dht.identity import Identity
from komrade_dht.storage import StoreLimits

from tests import adversary as adv


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent.parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "komrade_dht"], capture_output=True, text=True,
                               timeout=10, cwd=Path(__file__).resolve().parent.parent)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def header_cost(rounds: int = 200) -> dict[str, Any]:
    """Attack 8's figures: what a reader who is not a recipient pays for an 8-header vs a 1-header envelope (one
    trial decryption each), and whether an 8-header envelope with 1-header work passes check_pow."""
    params = adv.cheap_pow()
    people = [Identity.generate() for _ in range(8)]
    reader = env.TrialDecryptor(Identity.generate())
    one = adv.multi_recipient_envelope(people[:1])
    eight = adv.multi_recipient_envelope(people)
    costs = {}
    for name, data in (("one_header_us", one), ("eight_headers_us", eight)):
        t0 = time.perf_counter()
        for _ in range(rounds):
            reader.content_key(data)
        costs[name] = round(1e6 * (time.perf_counter() - t0) / rounds, 1)
    slot, now = os.urandom(20), time.time()
    target = adv.pow_target(params, 1024, int.from_bytes(eight[2:6], "big") - now, headers=1)
    minted = adv.mint_in_band(eight, params, slot, target // 2, target)
    costs["reader_cost_ratio"] = round(costs["eight_headers_us"] / costs["one_header_us"], 2)
    costs["eight_headers_with_one_header_work_accepted"] = adv.check(minted, params, slot, now=now)
    return costs


def scenarios(args: argparse.Namespace) -> dict[str, Callable[[Path], Awaitable[dict[str, Any]]]]:
    config = adv.net_config()
    sync = dict(relays=args.relays, config=config, timeout=args.timeout, abort_datagrams=args.max_datagrams)
    return {
        "baseline": lambda tmp: adv.dm_scenario(tmp, hostile=None, **sync),
        "lying_holder": lambda tmp: adv.dm_scenario(tmp, hostile=adv.lying_holder, **sync),
        "lying_holder_fake_heads": lambda tmp: adv.dm_scenario(tmp, hostile=adv.lying_holder_fake_heads, **sync),
        "junk": lambda tmp: adv.dm_scenario(tmp, hostile=adv.junk_in_slot(args.junk), **sync),
        "fill_one_source": lambda tmp: adv.dm_scenario(
            tmp, hostile=adv.fill_from_one_source(150), limits=StoreLimits(max_entries_per_slot=100), **sync),
        "fill_many_sources": lambda tmp: adv.dm_scenario(
            tmp, hostile=adv.fill_from_one_source(300, sockets=20), limits=StoreLimits(max_entries_per_slot=100),
            **sync),
        "stuffing": lambda tmp: adv.stuffing(tmp, relays=args.relays, slots_per_relay=args.stuff_slots, targets=3),
        "digest_flood": lambda tmp: adv.digest_flood(tmp, entries=args.digest_entries, seconds=args.flood_seconds,
                                                     rate=100.0, burst=300),
        "fresh_id_pings": lambda tmp: adv.fresh_id_pings(tmp, slots=args.digest_entries, seconds=args.flood_seconds,
                                                         rate=20.0, relays=args.relays),
        "reflection": lambda tmp: adv.reflection(tmp, relays=args.relays),
        "eclipse": lambda tmp: adv.dm_scenario(tmp, hostile=adv.sybils(args.sybils, 144), **sync),
        "hop_budget": lambda tmp: adv.hop_budget(tmp, relays=max(args.relays, 16), asked_hops=8, hops=3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    chosen = scenarios(args)
    names = args.attacks or [*chosen, "recipient_headers"]
    result: dict[str, Any] = {
        "commit": _commit(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "relays": args.relays,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for name in names:
        if name == "recipient_headers":
            result[name] = header_cost()
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"slot-{name}-"))
        started = time.monotonic()

        async def one() -> dict[str, Any]:
            return await asyncio.wait_for(chosen[name](tmp), args.deadline)

        try:
            figures = asyncio.run(one())
        except asyncio.TimeoutError:
            figures = {"error": f"attack did not finish within {args.deadline:.0f} s"}
        except Exception as exc:  # reported, the next attack still runs
            figures = {"error": repr(exc)}
        figures["wall_s"] = round(time.monotonic() - started, 1)
        result[name] = figures
        print(f"{name}: {json.dumps(figures, default=str)}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attacks", nargs="*", help="which to run (default: all): " + ", ".join(
        [*scenarios(argparse.Namespace(relays=0, timeout=0, max_datagrams=0, junk=0, stuff_slots=0, digest_entries=0,
                                       flood_seconds=0, sybils=0)), "recipient_headers"]))
    parser.add_argument("--relays", type=int, default=12, help="honest relays per network (12)")
    parser.add_argument("--junk", type=int, default=5000, help="junk entries in Bob's slot (5000)")
    parser.add_argument("--digest-entries", type=int, default=20_000, help="entries of the flooded slot, and slots "
                        "held for the fresh-id pings (20000)")
    parser.add_argument("--flood-seconds", type=float, default=5.0, help="length of each flood (5)")
    parser.add_argument("--stuff-slots", type=int, default=200, help="made-up slots per relay when stuffing (200)")
    parser.add_argument("--sybils", type=int, default=8, help="sybil ids next to Bob's slot (8)")
    parser.add_argument("--timeout", type=float, default=60.0, help="a sync is stopped after this many seconds (60)")
    parser.add_argument("--max-datagrams", type=int, default=100_000, help="... or this many datagrams (100000)")
    parser.add_argument("--deadline", type=float, default=300.0, help="an attack is abandoned after this (300 s)")
    parser.add_argument("--json", action="store_true", help="compact JSON on one line")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    result = run(args)
    print(json.dumps(result, default=str, sort_keys=False, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
