"""Anonymous votes: LSAG ring signatures vs ring size, beside a plain Ed25519 signature, and tallying votes.

Measured in one run on one machine:

* **sign / verify** with ``komrade_dht.ring`` for rings of 8, 16 and 64 members (``--sizes``), beside
  **Ed25519** sign / verify of the same message with PyNaCl (the baseline: what a signed, non-anonymous vote
  would cost), interleaved round-robin and best of ``--repeat``;
* **tally**: ``votes.tally`` over ``--votes`` (1,000) vote entries on one post in registry mode (sub-rings of
  16 drawn from ``--electorate`` eligible identities): 80% first votes and 20% changed votes (older entries of
  the same voters, superseded), verified and deduplicated by link tag, newest ``seq`` winning; and the same
  entries plus ``--junk`` (10,000) junk entries refused by the cheap checks;
* **registration**: one Argon2id trial of the voter registration (16 MiB) and the expected one-core cost of a
  registration (trials x trial time): the Sybil price of one extra vote on every world post for a period.

    python -m benchmarks.ring [--sizes 8,16,64] [--votes 1000] [--json]
"""

from __future__ import annotations

import argparse
import random
import time

from nacl.signing import SigningKey

from komrade_dht import ring, votes
from komrade_dht.identity import Identity

from ._common import Out, best_of_interleaved, code_fingerprint, machine

MESSAGE = b"komrade/vote/v1" + b"\x92\x01\x01"  # what a vote signs, roughly
SCOPE = b"P" * 32


def bench_sizes(sizes: list[int], ops: int, repeat: int) -> dict[str, dict[str, float]]:
    idents = [Identity.generate() for _ in range(max(sizes))]
    fns = {}
    sigs = {}
    for n in sizes:
        keys = [i.verify_key for i in idents[:n]]
        signer = idents[n // 2]
        sigs[n] = ring.sign(signer, keys, SCOPE, MESSAGE)

        def sign(keys: list[bytes] = keys, signer: Identity = signer) -> None:
            for _ in range(ops):
                ring.sign(signer, keys, SCOPE, MESSAGE)

        def verify(keys: list[bytes] = keys, sig: bytes = sigs[n]) -> None:
            for _ in range(ops):
                ring.verify(keys, SCOPE, MESSAGE, sig)

        fns[f"sign{n}"] = sign
        fns[f"verify{n}"] = verify
    sk = SigningKey.generate()
    vk = sk.verify_key
    ed_sig = sk.sign(MESSAGE).signature
    ed_ops = ops * 50

    def ed_sign() -> None:
        for _ in range(ed_ops):
            sk.sign(MESSAGE)

    def ed_verify() -> None:
        for _ in range(ed_ops):
            vk.verify(MESSAGE, ed_sig)

    def hash_to_point() -> None:
        for i in range(ed_ops):
            ring._tag_base.__wrapped__(i.to_bytes(4, "big"))  # uncached: the cost of one hash to point

    fns["ed_sign"], fns["ed_verify"], fns["hp"] = ed_sign, ed_verify, hash_to_point
    best = best_of_interleaved(fns, repeat)
    out: dict[str, dict[str, float]] = {}
    for n in sizes:
        out[str(n)] = {
            "sign_ms": round(best[f"sign{n}"] / ops * 1e3, 3),
            "verify_ms": round(best[f"verify{n}"] / ops * 1e3, 3),
            "signature_bytes": ring.signature_size(n),
        }
    out["ed25519"] = {
        "sign_ms": round(best["ed_sign"] / ed_ops * 1e3, 4),
        "verify_ms": round(best["ed_verify"] / ed_ops * 1e3, 4),
        "signature_bytes": 64,
    }
    out["hash_to_point"] = {"ms": round(best["hp"] / ed_ops * 1e3, 4)}
    return out


def build_votes(n_votes: int, n_electorate: int, changed: float, seed: int) -> tuple[votes.Electorate, list[bytes]]:
    """``n_votes`` entries on SCOPE: a share ``changed`` of them are older votes of voters who voted again."""
    rng = random.Random(seed)
    idents = [Identity.from_seed(rng.randbytes(32)) for _ in range(n_electorate)]
    electorate = votes.Electorate.registry([i.verify_key for i in idents], subring=votes.DEFAULT_SUBRING)
    n_changes = int(n_votes * changed)
    voters = rng.sample(idents, n_votes - n_changes)
    entries = [votes.make_vote(v, electorate, SCOPE, rng.choice(["up", "down"]), 2) for v in voters]
    entries += [votes.make_vote(v, electorate, SCOPE, "up", 1) for v in voters[:n_changes]]  # older votes
    rng.shuffle(entries)
    return electorate, entries


def junk_entries(n: int, seed: int, template: bytes) -> list[bytes]:
    """Junk of three kinds: random bytes, a damaged vote (trailing bytes), a vote for another post."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(rng.randbytes(rng.randrange(1, 1200)))
        elif i % 3 == 1:
            out.append(template[:-40] + rng.randbytes(40) + b"\x00")  # trailing byte: malformed msgpack
        else:
            out.append(template.replace(SCOPE, rng.randbytes(32)))  # another post's slot
    return out


def run(args: argparse.Namespace, say: Out) -> dict:
    sizes = [int(s) for s in args.sizes.split(",")]
    say(f"ring signatures, best of {args.repeat} after warm-up, {args.ops} ops per figure, interleaved")
    figures = bench_sizes(sizes, args.ops, args.repeat)
    ed = figures["ed25519"]
    say(f"  {'':22} {'sign ms':>9} {'verify ms':>10} {'bytes':>7}  (x Ed25519 verify)")
    say(f"  {'Ed25519 (baseline)':22} {ed['sign_ms']:9.3f} {ed['verify_ms']:10.3f} {64:7d}")
    for n in sizes:
        f = figures[str(n)]
        say(f"  {'LSAG ring of ' + str(n):22} {f['sign_ms']:9.3f} {f['verify_ms']:10.3f} {f['signature_bytes']:7d}"
            f"  (x{f['verify_ms'] / ed['verify_ms']:.0f})")
    say(f"  hash to point (tag base): {figures['hash_to_point']['ms']:.3f} ms")

    t0 = time.perf_counter()
    electorate, entries = build_votes(args.votes, args.electorate, 0.2, args.seed)
    t_build = time.perf_counter() - t0
    tallies: dict[str, votes.Tally] = {}
    junk = junk_entries(args.junk, args.seed + 1, entries[0])
    mixed = entries + junk
    random.Random(args.seed + 2).shuffle(mixed)

    def t_votes() -> None:
        tallies["votes"] = votes.tally(entries, electorate, SCOPE)

    def t_mixed() -> None:
        tallies["mixed"] = votes.tally(mixed, electorate, SCOPE)

    def t_junk() -> None:
        tallies["junk"] = votes.tally(junk, electorate, SCOPE)

    best = best_of_interleaved({"votes": t_votes, "mixed": t_mixed, "junk": t_junk}, max(1, args.repeat - 1), 0)
    tv, tm = tallies["votes"], tallies["mixed"]
    assert (tv.up, tv.down, tv.voters) == (tm.up, tm.down, tm.voters)
    assert tv.voters == args.votes - int(args.votes * 0.2) and tv.superseded == int(args.votes * 0.2)
    assert sum(tm.rejected.values()) == args.junk and tm.verified == tv.verified == tv.voters

    say(f"tally of {args.votes} votes on one post (registry mode, sub-rings of {votes.DEFAULT_SUBRING} from "
        f"{args.electorate} eligible; {tv.voters} voters, {tv.superseded} older votes superseded; built in "
        f"{t_build:.1f} s)")
    say(f"  tally: {best['votes']:.3f} s ({tv.verified} ring verifications, "
        f"{best['votes'] / tv.verified * 1e3:.2f} ms each), up {tv.up}, down {tv.down}")
    say(f"  with {args.junk} junk entries added: {best['mixed']:.3f} s; the junk alone: {best['junk'] * 1e3:.1f} ms "
        f"({best['junk'] / args.junk * 1e6:.1f} µs per junk entry, refused {dict(tallies['junk'].rejected)})")

    params = votes.RegistrationParams()
    key = Identity.generate().verify_key
    t_trial = min(_time(lambda: votes._reg_work(key, 1, bytes(8), params)) for _ in range(5))
    reg_cost = t_trial * params.trials
    say(f"registration: one Argon2id trial ({params.memlimit >> 20} MiB) {t_trial * 1e3:.1f} ms; expected "
        f"{params.trials:.0f} trials = {reg_cost:.0f} s of one core per identity per {params.period_seconds // 86400} "
        f"days (1,000 fake voters: {1000 * reg_cost / 3600:.1f} core-hours)")

    return {
        "benchmark": "ring",
        "repeat": args.repeat,
        "ops": args.ops,
        "sizes": figures,
        "tally": {
            "votes": args.votes,
            "voters": tv.voters,
            "superseded": tv.superseded,
            "subring": votes.DEFAULT_SUBRING,
            "electorate": args.electorate,
            "seconds": round(best["votes"], 3),
            "ms_per_verified_vote": round(best["votes"] / tv.verified * 1e3, 3),
            "junk": args.junk,
            "seconds_with_junk": round(best["mixed"], 3),
            "us_per_junk_entry": round(best["junk"] / args.junk * 1e6, 2),
            "junk_rejected": dict(tallies["junk"].rejected),
            "build_s": round(t_build, 2),
        },
        "registration": {
            "trial_ms": round(t_trial * 1e3, 2),
            "expected_trials": params.trials,
            "expected_core_seconds": round(reg_cost, 1),
            "period_days": params.period_seconds // 86400,
        },
        "machine": machine(),
        "code": code_fingerprint(),
    }


def _time(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ring", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="8,16,64", help="ring sizes, comma-separated (default 8,16,64)")
    parser.add_argument("--ops", type=int, default=10, help="ring signs/verifies per timed repetition")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions, best kept (default 3)")
    parser.add_argument("--votes", type=int, default=1000, help="vote entries to tally (default 1000)")
    parser.add_argument("--electorate", type=int, default=2000, help="eligible identities (default 2000)")
    parser.add_argument("--junk", type=int, default=10000, help="junk entries added (default 10000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    if args.votes < 10 or args.repeat < 1 or args.ops < 1 or args.electorate < args.votes:
        parser.error("need --votes >= 10, --repeat >= 1, --ops >= 1, --electorate >= --votes")
    out = Out(args.json)
    out.json(run(args, out))


if __name__ == "__main__":
    main()
