"""The slot layer against one cheap adversary (issue 9): each attack as a test on a real loopback network.

Real UDP sockets on 127.0.0.1 (ports picked by the OS), real SQLite stores, real crypto; the hostile nodes and
sockets, the junk and the scenarios are in ``tests/adversary.py`` (shared with ``fuzz/slot_attacks.py``, which
prints the same figures for bigger runs). Waits are conditions with deadlines. Speed is measured by the runner,
not asserted here: a sync gets a generous hang guard, and what is asserted is what the reader pays (datagrams,
routing table) and whether the real DM arrives.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Awaitable

from komrade_dht import envelope as env
from komrade_dht.identity import Identity
from komrade_dht.storage import StoreLimits

from . import adversary as adv

#: Hang guard of one sync: far above the <= 5 s the issue asks for (that figure is the runner's to report).
SYNC_GUARD = 60.0
#: Datagrams a reader's sync may send whoever lies to it (issue 9, "done when").
SYNC_DATAGRAMS = 2000
#: Hard deadline of one test, set-up included.
TEST_DEADLINE = 150.0
RELAYS = 12


def run(coro: Awaitable[Any]) -> Any:
    """Run a scenario in a fresh loop under the test's hard deadline, recording exceptions that escape into the
    loop (a callback's, or a task's nobody awaited) for :func:`clean`."""
    loop_errors: list[str] = []
    logged = ErrorLog()
    logging.getLogger("komrade_dht").addHandler(logged)

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, ctx: loop_errors.append(f"{ctx.get('message')}: {ctx.get('exception')!r}"))
        try:
            return await asyncio.wait_for(coro, TEST_DEADLINE)
        finally:
            gc.collect()  # "Task exception was never retrieved" is reported when the task is collected
            await asyncio.sleep(0)

    try:
        figures = asyncio.run(main())
        gc.collect()
    finally:
        logging.getLogger("komrade_dht").removeHandler(logged)
    figures["loop_errors"] = loop_errors
    figures["logged_errors"] = logged.messages
    return figures


class ErrorLog(logging.Handler):
    """Collects what the node logs at ERROR or above (a periodic job that failed, a handler that raised)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]!r}"
        self.messages.append(f"{record.name}: {text}")


def clean(figures: dict[str, Any]) -> None:
    """The last check of every network test (after the attack's own, so a failing attack reports its figures): no
    exception reached the loop, no honest handler or task failed, no honest node logged an error."""
    assert figures["loop_errors"] == [], f"exceptions reached the event loop: {figures['loop_errors'][:5]}"
    assert not figures.get("honest_errors"), f"an honest node's handler or task failed: {show(figures)}"
    assert figures["logged_errors"] == [], f"honest nodes logged errors: {figures['logged_errors'][:5]}"


def show(figures: dict[str, Any]) -> str:
    return json.dumps(figures, default=str, sort_keys=True)


def test_lying_holder_next_to_the_slot_costs_the_reader_a_bounded_sync(tmp_path: Path) -> None:
    """Attack 1, a lying holder: a node whose id is the closest to Bob's slot (144 shared bits where ids are free; a
    proof minted until it lands closer than every honest relay where ids need one) answers every slot_page with 50
    random ids and a rising cursor (its digest claims 20,000 entries, so a reader that groups holders by digest
    pages it; it has no head nor blob for any id) and acks appends without storing. After Alice's DM, Bob's sync
    must deliver the real DM, send <= 2,000 datagrams, keep >= 90% of his routing table, and finish (hang guard:
    60 s)."""
    figures = run(adv.dm_scenario(
        tmp_path, relays=RELAYS, config=adv.net_config(), hostile=adv.lying_holder,
        timeout=SYNC_GUARD, abort_datagrams=SYNC_DATAGRAMS,
    ))
    attack = figures["attack"]
    assert attack["liar_known_to_relays"] > 0 and attack["liar_closest_to_slot"], (
        f"the liar must be in the network, next to the slot, for the test to mean much: {show(figures)}")
    assert figures["finished"], f"Bob's sync did not finish: {show(figures)}"
    assert figures["hostile"]["answers_lied"] > 0, f"Bob's sync never asked the liar: {show(figures)}"
    assert figures["datagrams_out"] <= SYNC_DATAGRAMS, show(figures)
    assert figures["routing_kept"] >= 0.9, show(figures)
    assert figures["delivered"], f"the real DM was not delivered: {show(figures)}"
    clean(figures)


JUNK = 5000


def test_five_thousand_junk_entries_do_not_hide_the_real_dm(tmp_path: Path) -> None:
    """Attack 2, junk in a victim's slot: 5,000 valid junk envelopes (real work for the network's params, bound to
    Bob's slot) appended over UDP from 20 attacker sockets to the 8 relays closest to Bob's slot, then Alice's DM.
    Bob's sync must finish (hang guard 60 s), deliver the real DM, and send at most one datagram per junk entry
    plus 2,000 (no lookup or retry per junk id)."""
    figures = run(adv.dm_scenario(
        tmp_path, relays=RELAYS, config=adv.net_config(), hostile=adv.junk_in_slot(JUNK),
        timeout=SYNC_GUARD, abort_datagrams=JUNK + SYNC_DATAGRAMS,
    ))
    assert figures["send"] == "ok", show(figures)
    assert figures["finished"], f"Bob's sync did not finish: {show(figures)}"
    assert figures["delivered"], f"the real DM was not delivered: {show(figures)}"
    assert figures["datagrams_out"] <= JUNK + SYNC_DATAGRAMS, show(figures)
    clean(figures)


def test_junk_from_one_source_cannot_make_holders_refuse_an_honest_dm(tmp_path: Path) -> None:
    """Attack 2, filling a slot: relays hold at most 100 entries per slot; one attacker socket appends 150 valid
    junk envelopes to Bob's slot on every relay (more than the whole quota). Alice's DM must still be accepted
    into the slot by at least half the relays, and Bob's sync must deliver it."""
    figures = run(adv.dm_scenario(
        tmp_path, relays=RELAYS, config=adv.net_config(), hostile=adv.fill_from_one_source(150),
        timeout=SYNC_GUARD, abort_datagrams=SYNC_DATAGRAMS, limits=StoreLimits(max_entries_per_slot=100),
    ))
    assert max(figures["attack"]["accepted"]) > 0, f"the attacker's junk must reach the relays: {show(figures)}"
    assert figures["send"] == "ok", f"holders refused Alice's DM: {show(figures)}"
    assert figures["holders_with_dm"] >= RELAYS // 2, show(figures)
    assert figures["delivered"], show(figures)
    clean(figures)


def test_junk_from_twenty_sources_cannot_make_holders_refuse_an_honest_dm(tmp_path: Path) -> None:
    """Attack 2, filling a slot from many sources (a small botnet): relays hold at most 100 entries per slot; 20
    attacker sockets append 300 valid junk envelopes in all (15 each, light sources every one) to Bob's slot on every
    relay. Alice's DM must still be accepted into the slot by at least half the relays, Bob's sync must deliver it,
    and no honest node may fail on the full slot."""
    figures = run(adv.dm_scenario(
        tmp_path, relays=RELAYS, config=adv.net_config(), hostile=adv.fill_from_one_source(300, sockets=20),
        timeout=SYNC_GUARD, abort_datagrams=SYNC_DATAGRAMS, limits=StoreLimits(max_entries_per_slot=100),
    ))
    assert max(figures["attack"]["accepted"]) > 0, f"the attacker's junk must reach the relays: {show(figures)}"
    assert figures["send"] == "ok", f"holders refused Alice's DM: {show(figures)}"
    assert figures["holders_with_dm"] >= RELAYS // 2, show(figures)
    assert figures["delivered"], show(figures)
    clean(figures)


def test_a_slot_filled_to_its_quota_does_not_break_anti_entropy(tmp_path: Path) -> None:
    """Attack 2, its side effect on repair: relay A holds Bob's slot filled to its quota (10 entries here) and relay B
    holds 30 entries of it. A's anti-entropy round for that slot (``reconcile``) must finish, not raise: a full slot
    must not stop the repair of the other slots of the round (9998cf2 raises QuotaExceeded out of the round)."""

    async def scenario() -> dict[str, Any]:
        config = adv.net_config()
        a = await adv.start_node(tmp_path, config, limits=StoreLimits(max_entries_per_slot=10))
        b = await adv.start_node(tmp_path, config)
        try:
            await b.bootstrap([a.address])
            slot = os.urandom(20)
            envelopes = await asyncio.to_thread(adv.junk, slot, config.pow, 30)
            figures: dict[str, Any] = {
                "held_a": adv.plant(a, slot, envelopes[:10]),
                "held_b": adv.plant(b, slot, envelopes),
            }
            try:
                figures["reconciled"] = list(await a.reconcile(slot))
            except Exception as exc:  # noqa: BLE001 - the failure under test
                figures["raised"] = repr(exc)[:300]
            figures["honest_errors"] = adv.honest_errors([a, b])
            return figures
        finally:
            await adv.shutdown([a, b])

    figures = run(scenario())
    assert (figures["held_a"], figures["held_b"]) == (10, 30), show(figures)
    assert "raised" not in figures, f"anti-entropy raised on a full slot: {show(figures)}"
    clean(figures)


def test_one_envelope_is_accepted_into_at_most_one_slot_per_node(tmp_path: Path) -> None:
    """Attack 3, stuffing: one envelope (work done once, for one slot; 20,000 expected trials so that luck does not
    count) appended from one socket to 200 made-up slot ids next to each of 3 relays. Each relay must accept it into
    at most one of them; and the slot the work was done for still takes it."""
    figures = run(adv.stuffing(tmp_path, relays=10, slots_per_relay=200, targets=3))
    assert max(figures["accepted"]) <= 1, show(figures)
    assert max(figures["slot_entries_added"]) <= 1, show(figures)
    assert figures["own_slot_accepted"], show(figures)
    clean(figures)


def test_work_bound_to_one_slot_is_refused_for_another() -> None:
    """Attack 3, the cause: proof of work minted for one slot must not check for another (nor for none)."""
    params = adv.cheap_pow()
    slot, other = os.urandom(20), os.urandom(20)
    # a short-lived envelope whose target is well below the maximum, so work is really needed
    data = adv.mint(adv.raw_envelope(size=1024, ttl=3600), params, slot)
    assert adv.check(data, params, slot)
    refused = sum(not adv.check(adv.mint(adv.raw_envelope(size=1024), params, slot), params, other) for _ in range(20))
    assert refused >= 15, f"work for one slot passed for another {20 - refused} times in 20"


def test_digest_flood_at_the_per_peer_limit_leaves_honest_pings_answered(tmp_path: Path) -> None:
    """Attack 4, digest flood: a relay holds a slot of 20,000 entries; one socket sends slot_digest for it at the
    per-peer limit (a burst of 300, then 100/s) for 4 s while an honest node pings the relay every 0.2 s. Every
    honest ping must be answered within the honest node's timeout (3 s, retransmissions included)."""
    figures = run(adv.digest_flood(tmp_path, entries=20_000, seconds=4.0, rate=100.0, burst=300))
    assert figures["entries"] == 20_000, show(figures)
    assert figures["requests_sent"] >= 600, show(figures)
    assert figures["pings"] == 20, show(figures)
    assert figures["pings_answered"] == figures["pings"], f"honest pings went unanswered: {show(figures)}"
    clean(figures)


def test_fresh_id_pings_leave_honest_pings_answered_on_a_relay_holding_20000_slots(tmp_path: Path) -> None:
    """Attack 3's sequel, the hand-off scan: a relay (one of 12) holds 20,000 slots next to its id; a socket that never
    answers sends 20 pings a second for 4 s, each with a never-seen node id next to one of them (a newcomer the
    relay would scan its slots for and hand data to), while an honest node pings the relay every 0.1 s. Every honest
    ping must be answered within 1 s (retransmissions included; 100x the issue's 10 ms goal, which the runner
    reports: on 9998cf2 the median was 1.4 s)."""
    figures = run(adv.fresh_id_pings(tmp_path, slots=20_000, seconds=4.0, rate=20.0, honest_timeout=1.0))
    assert figures["requests_sent"] >= 60, show(figures)
    assert figures["pings"] == 40, show(figures)
    assert figures["pings_answered"] == figures["pings"], f"honest pings went unanswered: {show(figures)}"
    clean(figures)


def test_ping_from_a_silent_address_reflects_at_most_three_times_its_bytes(tmp_path: Path) -> None:
    """Attack 5, reflection: a 52-byte ping carrying a fresh node id (next to a slot the relay holds) from a socket
    that never answers, to one relay of 12; then every relay looks that id up once. Once no node has a request to
    that address outstanding, the address must have received at most 3x the ping's bytes in total."""
    figures = run(adv.reflection(tmp_path, relays=RELAYS))
    assert figures["received_bytes"] <= 3 * figures["ping_bytes"], show(figures)
    clean(figures)


def test_eight_sybils_next_to_the_slot_do_not_eclipse_the_reader(tmp_path: Path) -> None:
    """Attack 6, eclipse: 8 nodes with ids closer to Bob's slot than every honest relay (144 shared bits where ids are
    free; where ids need a proof, minted until they land there, paying the network's puzzle) ack appends, store
    nothing and list nothing. After Alice's DM, Bob's sync (hang guard 60 s, <= 2,000 datagrams) must deliver it."""
    figures = run(adv.dm_scenario(
        tmp_path, relays=RELAYS, config=adv.net_config(), hostile=adv.sybils(8, 144),
        timeout=SYNC_GUARD, abort_datagrams=SYNC_DATAGRAMS,
    ))
    assert figures["attack"]["sybils_among_8_closest"] == 8, f"the sybils must surround the slot: {show(figures)}"
    assert figures["attack"]["sybils_known_to_relays"] > 0, show(figures)
    assert figures["send"] == "ok", show(figures)
    assert figures["finished"], show(figures)
    assert figures["datagrams_out"] <= SYNC_DATAGRAMS, show(figures)
    assert figures["hostile"]["slot_requests"] > 0, f"Bob's sync never asked a sybil: {show(figures)}"
    assert figures["delivered"], f"8 sybils eclipsed Bob's slot: {show(figures)}"
    clean(figures)


def test_gossip_hop_budget_is_clamped_to_our_own(tmp_path: Path) -> None:
    """Attack 7, hop budget: a gossip request asking for 8 hops, sent to one relay of 16 configured with hops=3.
    No relay may forward it with a budget above its own configured hops (seen by every relay's recorder)."""
    figures = run(adv.hop_budget(tmp_path, relays=16, asked_hops=8, hops=3))
    assert figures["forwards"] > 0, f"the gossip must be forwarded for the test to mean much: {show(figures)}"
    assert figures["max_forwarded_hops"] <= figures["configured_hops"], show(figures)
    clean(figures)


def test_recipient_headers_need_proportionally_more_work() -> None:
    """Attack 8, recipient headers: an envelope with 8 recipient headers carrying exactly the work a 1-header
    envelope of the same size and lifetime needs (its work value just under the 1-header target) must be refused
    by check_pow; the same work on a 1-header envelope is accepted."""
    params = adv.cheap_pow()
    slot = os.urandom(20)
    people = [Identity.generate() for _ in range(8)]
    now = time.time()
    eight = adv.multi_recipient_envelope(people, size=1024, ttl=3600)
    one = adv.multi_recipient_envelope(people[:1], size=1024, ttl=3600)
    assert env.parse_outer(eight).n_headers == 8 and env.parse_outer(one).n_headers == 1
    ttl = int.from_bytes(eight[2:6], "big") - now
    target = adv.pow_target(params, 1024, ttl, headers=1)
    assert target < 2**63, "the test params must demand real work"
    one = adv.mint_in_band(one, params, slot, target // 2, target)
    eight = adv.mint_in_band(eight, params, slot, target // 2, target)
    assert adv.check(one, params, slot, now=now), "a 1-header envelope with 1-header work passes"
    assert not adv.check(eight, params, slot, now=now), "an 8-header envelope with 1-header work passed check_pow"
