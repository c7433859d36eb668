"""Trial decryption: how many envelopes per second one identity can scan, beside the raw X25519 floor.

A recipient downloads every envelope in its slots (its co-tenants' included) and tries each one with
``TrialDecryptor(identity).open(data)``. DESIGN.md ("Envelopes", *cheap miss*) promises that a miss costs
one X25519 operation whatever the body size. This benchmark measures, in one run on one machine:

* **scan**: ``open()`` over N envelopes (default 2000) of which ~1% are sealed to the identity and the rest
  to other random identities, with bodies of different lengths so that several size classes appear;
* **raw seal_open**: ``nacl.bindings.crypto_box_seal_open`` of one 80-byte header under the wrong key
  (the failing case, i.e. the floor a miss cannot go below);
* **full open**: ``open()`` of envelopes that are ours (header, SecretBox, msgpack, Ed25519 verify);
* **miss**: ``open()`` over misses only, in µs per envelope, and ``parse_outer`` alone, for the breakdown.

Every figure is the best of ``--repeat`` timed repetitions (default 3) after one untimed warm-up, using
``time.perf_counter``; the measurements are interleaved round-robin so that noise from other processes on a
shared machine hits them alike. Run: ``python -m benchmarks.trial_decrypt [--n 2000] [--json]``.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from nacl import bindings
from nacl.exceptions import CryptoError

from komrade_dht import envelope as env
from komrade_dht.envelope import FIXED_LEN, HEADER_LEN, SIZE_CLASSES, TrialDecryptor, parse_outer, seal
from komrade_dht.identity import Identity

from ._common import Out, best_of_interleaved, code_fingerprint, machine

#: Body lengths drawn from: short ones land in the 512-byte class, longer ones in the 1024-byte class.
#: (A single-recipient sealed envelope never fits the 256-byte class: its fixed part, one header, the
#: SecretBox overhead, the signed inner structure and the signature alone are about 340 bytes.)
BODY_LENGTHS = (0, 16, 64, 120, 150, 200, 300, 450, 600, 680)


#: Minting is not what this benchmark measures.
CHEAP = env.PowParams(trials_per_byte=0.0)


def build(n: int, hit_rate: float, seed: int) -> tuple[Identity, list[bytes], list[int]]:
    """``n`` envelopes, ``round(n * hit_rate)`` (at least 1) sealed to the returned identity; hit positions."""
    rng = random.Random(seed)
    me = Identity.generate()
    others = [Identity.generate() for _ in range(64)]
    senders = [Identity.generate() for _ in range(8)]
    n_hits = max(1, round(n * hit_rate))
    hits = sorted(rng.sample(range(n), n_hits))
    hit_set = set(hits)
    out = []
    for i in range(n):
        recipient = me if i in hit_set else rng.choice(others)
        body = rng.randbytes(rng.choice(BODY_LENGTHS))
        out.append(seal(rng.choice(senders), recipient.public, body, pow=CHEAP))
    return me, out, hits


def run(args: argparse.Namespace, say: Out) -> dict:
    t_build = time.perf_counter()
    me, envelopes, hits = build(args.n, args.hit_rate, args.seed)
    t_build = time.perf_counter() - t_build
    classes = Counter(len(e) for e in envelopes)
    hit_set = set(hits)
    misses = [e for i, e in enumerate(envelopes) if i not in hit_set]
    ours = [envelopes[i] for i in hits]
    dec = TrialDecryptor(me)

    # Sanity first: exactly the envelopes sealed to us open, and they open to the right recipient.
    opened = [i for i, e in enumerate(envelopes) if dec.open(e) is not None]
    if opened != hits:
        raise SystemExit(f"trial decryption opened {len(opened)} envelopes, expected {len(hits)}: {opened[:5]}...")

    found = [0]

    def scan() -> None:
        count = 0
        for data in envelopes:
            if dec.open(data) is not None:
                count += 1
        found[0] = count

    def scan_misses() -> None:
        for data in misses:
            dec.open(data)

    # The failing case of the raw primitive: a header sealed to someone else, opened with our key.
    header = misses[0][FIXED_LEN : FIXED_LEN + HEADER_LEN]
    pk = me.public.box_public_key
    sk = bytes(me.box_private_key)
    raw_ops = args.raw_ops

    def raw() -> None:
        seal_open = bindings.crypto_box_seal_open
        for _ in range(raw_ops):
            try:
                seal_open(header, pk, sk)
            except CryptoError:
                pass
            else:  # pragma: no cover - would mean the header is ours
                raise AssertionError("the wrong-key header opened")

    # One bare X25519 (what DESIGN.md prices a miss at), for reference.
    peer_pk = header[:32]  # the ephemeral public key of the wrong-key header

    def x25519() -> None:
        mult = bindings.crypto_scalarmult
        for _ in range(raw_ops):
            mult(sk, peer_pk)

    full_ops = max(args.full_ops, len(ours))
    full_list = (ours * (full_ops // len(ours) + 1))[:full_ops]

    def full() -> None:
        for data in full_list:
            if dec.open(data) is None:
                raise AssertionError("an envelope sealed to us did not open")

    def parse_only() -> None:
        for data in misses:
            parse_outer(data)

    best = best_of_interleaved(
        {"scan": scan, "miss": scan_misses, "raw": raw, "x25519": x25519, "full": full, "parse": parse_only},
        args.repeat,
    )
    assert found[0] == len(hits)
    t_scan, t_miss, t_raw, t_x, t_full, t_parse = (
        best[k] for k in ("scan", "miss", "raw", "x25519", "full", "parse")
    )

    scanned_per_s = args.n / t_scan
    raw_per_s = raw_ops / t_raw
    full_per_s = full_ops / t_full
    us_per_miss = t_miss / len(misses) * 1e6
    us_raw = t_raw / raw_ops * 1e6
    us_parse = t_parse / len(misses) * 1e6
    us_x = t_x / raw_ops * 1e6
    result = {
        "benchmark": "trial_decrypt",
        "n": args.n,
        "hits": len(hits),
        "hit_rate": round(len(hits) / args.n, 4),
        "size_classes": {str(k): classes.get(k, 0) for k in SIZE_CLASSES},
        "repeat": args.repeat,
        "scanned_per_s": round(scanned_per_s, 1),
        "raw_seal_open_fail_per_s": round(raw_per_s, 1),
        "ratio_scanned_to_raw": round(scanned_per_s / raw_per_s, 4),
        "full_open_per_s": round(full_per_s, 1),
        "us_per_miss": round(us_per_miss, 2),
        "us_per_raw_seal_open_fail": round(us_raw, 2),
        "us_per_full_open": round(1e6 / full_per_s, 2),
        "us_per_parse_outer": round(us_parse, 2),
        "us_per_x25519": round(us_x, 2),
        "us_miss_overhead_over_raw": round(us_per_miss - us_raw, 2),
        "build_s": round(t_build, 3),
        "machine": machine(),
        "code": code_fingerprint(),
    }

    say(f"trial decryption, {args.n} envelopes, {len(hits)} sealed to us ({100 * len(hits) / args.n:.2f}%), "
        f"size classes {dict(sorted(classes.items()))} (built in {t_build:.2f} s)")
    say(f"best of {args.repeat} after warm-up, time.perf_counter, Python {result['machine']['python']}, "
        f"PyNaCl {result['machine']['pynacl']}, {result['machine']['cpus']} CPUs")
    say(f"  scanned (TrialDecryptor.open, mixed)  {scanned_per_s:12,.0f} envelopes/s  "
        f"({1e6 / scanned_per_s:7.2f} µs each)")
    say(f"  raw crypto_box_seal_open, wrong key   {raw_per_s:12,.0f} ops/s        ({us_raw:7.2f} µs each)")
    say(f"  (one bare X25519, crypto_scalarmult   {1e6 / us_x:12,.0f} ops/s        ({us_x:7.2f} µs each))")
    say(f"  ratio scanned / raw                   {scanned_per_s / raw_per_s:12.3f}")
    say(f"  full open (ours: + SecretBox, verify) {full_per_s:12,.0f} opens/s      ({1e6 / full_per_s:7.2f} µs each)")
    say(f"  miss (open() of misses only)          {us_per_miss:12.2f} µs per miss "
        f"(raw {us_raw:.2f} + parse_outer {us_parse:.2f} + rest {us_per_miss - us_raw - us_parse:.2f})")
    return result


def run_tags(n: int, from_contacts: int, contacts: int, seed: int, say: Out) -> dict:
    """Finding a contact's mail among ``n`` heads: contact tags (a set lookup per head) beside trial decryption
    of every head (one X25519 each), the same heads, the same run."""
    from komrade_dht.social.tags import pair_key, tag

    rng = random.Random(seed)
    me = Identity.generate()
    friends = [Identity.generate() for _ in range(contacts)]
    strangers = [Identity.generate() for _ in range(64)]
    others = [Identity.generate() for _ in range(64)]
    keys = {f.verify_key: pair_key(me, f.public) for f in friends}
    counters: Counter[bytes] = Counter()
    mine = set(rng.sample(range(n), from_contacts))
    heads = []
    for i in range(n):
        if i in mine:
            friend = rng.choice(friends)
            t = tag(keys[friend.verify_key], 0, counters[friend.verify_key])
            counters[friend.verify_key] += 1
            data = seal(friend, me.public, b"hi", pow=CHEAP, tag=t)
        else:  # co-tenants' mail: tagged for someone else, or untagged
            other = rng.choice(others)
            t = tag(pair_key(rng.choice(strangers), other.public), 0, i) if rng.random() < 0.5 else None
            data = seal(rng.choice(strangers), other.public, b"hi", pow=CHEAP, tag=t)
        heads.append(env.head(data))
    t0 = time.perf_counter()
    expected = {tag(k, 0, c): vk for vk, k in keys.items() for c in range(64)}
    book_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    found_tags = [i for i, h in enumerate(heads) if any(t in expected for t in env.tags_of(h))]
    tags_s = time.perf_counter() - t0 + book_s
    decryptor = TrialDecryptor(me)
    t0 = time.perf_counter()
    found_trial = [i for i, h in enumerate(heads) if decryptor.content_key(h) is not None]
    trial_s = time.perf_counter() - t0
    assert set(found_tags) == mine == set(found_trial)
    result = {"heads": n, "from_contacts": from_contacts, "contacts": contacts,
              "tags_ms": round(tags_s * 1000, 2), "tag_book_ms": round(book_s * 1000, 2),
              "trial_decryption_ms": round(trial_s * 1000, 1), "speedup": round(trial_s / tags_s, 1)}
    say(f"contacts' mail among {n} heads ({from_contacts} from {contacts} contacts): tags {tags_s * 1000:.1f} ms "
        f"(of which {book_s * 1000:.1f} ms computing the expected tags), trial decryption {trial_s * 1000:.0f} ms: "
        f"{result['speedup']}x")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trial_decrypt", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="envelopes to scan (default 2000)")
    parser.add_argument("--hit-rate", type=float, default=0.01, help="fraction sealed to us (default 0.01)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions, best kept (default 3)")
    parser.add_argument("--raw-ops", type=int, default=5000, help="raw seal_open calls per repetition")
    parser.add_argument("--full-ops", type=int, default=1000, help="full opens per repetition")
    parser.add_argument("--seed", type=int, default=1, help="seed of the body-length / recipient choices")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    parser.add_argument("--tags", type=int, default=10_000, metavar="N",
                        help="also time finding contacts' mail among N heads with contact tags vs trial decryption "
                             "(0 to skip; default 10000, 100 of them from 50 contacts)")
    args = parser.parse_args(argv)
    if args.n < 2 or not 0 < args.hit_rate < 1 or args.repeat < 1:
        parser.error("need --n >= 2, 0 < --hit-rate < 1, --repeat >= 1")
    out = Out(args.json)
    result = run(args, out)
    if args.tags:
        result["contact_tags"] = run_tags(args.tags, 100, 50, args.seed, out)
    out.json(result)


if __name__ == "__main__":
    main()
