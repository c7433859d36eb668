"""What proof of work costs an honest sender and an attacker, ours (Argon2id, bound to the slot) beside the scheme
it replaced (BLAKE2b, 4 trials per byte, no floor on lifetime), measured in the same run.

- **Honest send**: minting a 14-day DM (512 bytes, one header) in this process, as `send_dm` does (p50 of N).
- **Attacker, per junk entry**: the cheapest junk a slot accepts (256 bytes, shortest lifetime), at the speed of a
  C minter. For Argon2id the trial *is* C (libsodium): its measured time per trial is what the attacker pays
  too. For BLAKE2b a C minter runs one compression per trial: measured here as hashlib's bulk throughput in
  128-byte blocks (an upper bound a C minter reaches; the issue's own C minter made 256-byte junk in ~1.2 ms).
- **Verify**: what every holder pays per envelope it checks.
- **Chunk**: a 1024-byte image chunk living 14 days, stored under its id only (``NO_SLOT``: 1/16 of the price).

    python -m benchmarks.pow [--n 20] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from typing import Any

from komrade_dht import envelope as env
from komrade_dht.identity import Identity

from ._common import Out, code_fingerprint, machine, summary_ms

DAY = 86400
OLD_TRIALS_PER_BYTE = 4.0


def old_expected_trials(length: int, ttl: float) -> float:
    """The replaced scheme: Bitmessage's formula at 4 trials per byte, no lifetime floor, no header factor."""
    size = length + 1000
    return OLD_TRIALS_PER_BYTE * (size + max(ttl, 0) * size / 2**16)


def new_expected_trials(params: env.PowParams, length: int, ttl: float, headers: int = 1, blob: bool = False) -> float:
    return 2**64 / params.target(length, ttl, headers, blob)


def old_mint(data: bytes, ttl: float) -> None:
    """The replaced minter, in Python as honest senders ran it (BLAKE2b-64 over a base hash and a nonce)."""
    target = int(2**64 / old_expected_trials(len(data), ttl)).to_bytes(8, "big")
    base = hashlib.blake2b(data, digest_size=32).digest()
    nonce = int.from_bytes(os.urandom(8), "big")
    while hashlib.blake2b(base + nonce.to_bytes(8, "big"), digest_size=8).digest() > target:
        nonce += 1


def c_blake2b_trials_per_s() -> float:
    """BLAKE2b compressions per second in C (hashlib over 16 MiB): what a C minter of the old scheme reaches."""
    block = os.urandom(16 * 2**20)
    t0 = time.perf_counter()
    hashlib.blake2b(block).digest()
    return len(block) / 128 / (time.perf_counter() - t0)


def argon2_trial_seconds(params: env.PowParams, n: int = 2000) -> float:
    data = os.urandom(256)
    slot = os.urandom(20)
    t0 = time.perf_counter()
    for _ in range(n):
        env.pow_value(data, slot, params)
    return (time.perf_counter() - t0) / n


def run(args: argparse.Namespace, say: Out) -> dict[str, Any]:
    params = env.PowParams()
    alice, bob = Identity.generate(), Identity.generate()
    slot = os.urandom(20)

    honest_new, honest_old = [], []
    for _ in range(args.n):
        t0 = time.perf_counter()
        data = env.seal(alice, bob.public, b"see you at the meeting", slot=slot, pow=params)
        honest_new.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        old_mint(data, 14 * DAY)
        honest_old.append(time.perf_counter() - t0)

    trial_s = argon2_trial_seconds(params)
    c_rate = c_blake2b_trials_per_s()
    junk_new = new_expected_trials(params, 256, 60) * trial_s
    junk_old = old_expected_trials(256, 60) / c_rate
    chunk_new = new_expected_trials(params, 1024, 14 * DAY, blob=True) * trial_s

    t0 = time.perf_counter()
    for _ in range(200):
        env.check_pow(data, params, slot)
    verify_new = (time.perf_counter() - t0) / 200
    base = hashlib.blake2b(data, digest_size=32).digest()
    t0 = time.perf_counter()
    for _ in range(200):
        hashlib.blake2b(data, digest_size=32).digest()
        hashlib.blake2b(base + data[22:30], digest_size=8).digest()
    verify_old = (time.perf_counter() - t0) / 200

    result = {
        "benchmark": "pow",
        "machine": machine(),
        "code": code_fingerprint(),
        "params": {"trials_per_byte": params.trials_per_byte, "min_ttl": params.min_ttl,
                   "memlimit": params.memlimit, "blob_factor": params.blob_factor},
        "honest_dm_mint_ms": {"ours": summary_ms(honest_new), "old_blake2b_python": summary_ms(honest_old)},
        "argon2id_trial_us": round(trial_s * 1e6, 1),
        "c_blake2b_trials_per_s": round(c_rate),
        "attacker_junk_entry_ms": {"ours": round(junk_new * 1000, 2), "old_c_minter": round(junk_old * 1000, 3)},
        "attacker_10000_junk_cpu_s": {"ours": round(junk_new * 10_000, 1), "old_c_minter": round(junk_old * 10_000, 2)},
        "honest_to_attacker_ratio": {
            "ours": round(summary_ms(honest_new)["p50"] / 1000 / junk_new, 2),
            "old": round(summary_ms(honest_old)["p50"] / 1000 / junk_old, 1),
        },
        "verify_us": {"ours": round(verify_new * 1e6, 1), "old": round(verify_old * 1e6, 1)},
        "image_chunk_mint_ms_expected": round(chunk_new * 1000, 1),
    }
    say(f"honest 14-day DM mint p50: ours {result['honest_dm_mint_ms']['ours']['p50']:.0f} ms, "
        f"old {result['honest_dm_mint_ms']['old_blake2b_python']['p50']:.0f} ms (Python)")
    say(f"one Argon2id trial {result['argon2id_trial_us']} us; C BLAKE2b {c_rate / 1e6:.1f} M compressions/s")
    say(f"attacker, one junk entry: ours {result['attacker_junk_entry_ms']['ours']} ms, "
        f"old {result['attacker_junk_entry_ms']['old_c_minter']} ms (C minter)")
    say(f"attacker, 10,000 junk entries: ours {result['attacker_10000_junk_cpu_s']['ours']} CPU s, "
        f"old {result['attacker_10000_junk_cpu_s']['old_c_minter']} CPU s")
    say(f"verify per envelope: ours {result['verify_us']['ours']} us, old {result['verify_us']['old']} us")
    say(f"image chunk (1 KB, 14 days, NO_SLOT) expected mint: {result['image_chunk_mint_ms_expected']} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pow", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="honest mints timed per scheme")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    say = Out(args.json)
    say.json(run(args, say))


if __name__ == "__main__":
    main()
