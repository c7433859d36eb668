"""Anonymous votes on world posts and anonymous map pins (issue 11) on real loopback networks.

Real UDP sockets on 127.0.0.1 (ports from the OS), SQLite stores, real ring signatures; cheap proof of work,
cheap registrations and short lifetimes through parameters. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Awaitable

import pytest

from komrade_dht import codec, ring, votes
from komrade_dht import envelope as env
from komrade_dht.errors import KomradeError, NetworkError
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.social import pins, posts, voting

from .support import CHEAP_POW, account, client, shutdown, start_relays, wait_for

CONFIG = NodeConfig(pow=CHEAP_POW, id_bits=8)
#: One Argon2id of 8 KiB per registration: eligibility without the cost, for tests.
REG = votes.RegistrationParams(trials=1, memlimit=8192)
DEADLINE = 150.0


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, DEADLINE)

    return asyncio.run(main())


def windows(blobs: list[bytes], n: int = 8) -> set[bytes]:
    return {b[i : i + n] for b in blobs for i in range(len(b) - n + 1)}


class Recorder:
    """Every envelope a node sends (what leaves the device)."""

    def __init__(self, node: KomradeNode) -> None:
        self.sent: list[bytes] = []
        send = node.send

        async def recorded(slot: bytes, data: bytes) -> int:
            self.sent.append(data)
            return await send(slot, data)

        node.send = recorded  # type: ignore[method-assign]


def test_twelve_identities_vote_on_two_posts_on_twenty_relays(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 20, CONFIG)
        people = [account(tmp_path, f"Voter{i}") for i in range(12)]
        nodes: list[KomradeNode] = []
        try:
            for i in range(4):
                nodes.append(await client(relays[1 + 4 * i].address, CONFIG))
            node_of = lambda i: nodes[i % len(nodes)]  # noqa: E731
            author = people[0]
            t0 = time.time()
            p1 = await posts.publish_post(author, nodes[0], "first post to vote on", shard=0, now=t0)
            p2 = await posts.publish_post(author, nodes[0], "second post to vote on", shard=1, now=t0)
            # a voter who has not read the post cannot vote on it (nor on a post that does not exist)
            with pytest.raises(KomradeError, match="no post"):
                await voting.vote_on_post(people[5], node_of(5), p1.id, "up", reg_params=REG)
            with pytest.raises(KomradeError, match="no post"):
                await voting.vote_on_post(people[5], node_of(5), os.urandom(20).hex(), "up", reg_params=REG)
            with pytest.raises(KomradeError, match="not a post id"):
                await voting.vote_on_post(people[5], node_of(5), "nonsense", "up", reg_params=REG)

            async def read(i: int) -> None:
                async def both() -> bool:
                    await posts.read_feed(people[i], node_of(i), "world", images=False)
                    return bool(voting.find_post(people[i], p1.id) and voting.find_post(people[i], p2.id))

                async def has_both() -> bool:
                    try:
                        return await both()
                    except KomradeError:
                        return False

                await wait_for(has_both, 30)

                async def registered() -> bool:  # as a person would: again, if a loaded network did not answer
                    try:
                        await voting.ensure_registered(people[i], node_of(i), reg_params=REG)
                    except NetworkError:
                        return False
                    return True

                await wait_for(registered, 60)

            await asyncio.gather(*(read(i) for i in range(1, 12)))
            await voting.ensure_registered(author, nodes[0], reg_params=REG)
            everyone = {p.identity.verify_key for p in people}

            async def full_registry(i: int) -> votes.Electorate:
                e = await voting.world_electorate(people[i], node_of(i), reg_params=REG)
                return e if e.keys == everyone else None

            electorates = [await wait_for(lambda i=i: full_registry(i), 30) for i in range(12)]
            assert all(e.ring_size == voting.WORLD_SUBRING == 12 for e in electorates)

            rec = [Recorder(n) for n in nodes]
            # post 1: 8 up, 4 down; post 2: 3 up, 5 down, 4 abstain
            plan1 = ["up"] * 8 + ["down"] * 4
            plan2 = ["up"] * 3 + ["down"] * 5 + [None] * 4
            for i in range(12):
                await voting.vote_on_post(people[i], node_of(i), p1.id, plan1[i], electorate=electorates[i])
                if plan2[i]:
                    await voting.vote_on_post(people[i], node_of(i), p2.id, plan2[i], electorate=electorates[i])
            # voter 0 changes its mind on post 1 (up -> down), voter 1 withdraws (up -> none)
            await voting.vote_on_post(people[0], nodes[0], p1.id, "down", electorate=electorates[0])
            await voting.vote_on_post(people[1], node_of(1), p1.id, "none", electorate=electorates[1])

            async def exact(node: KomradeNode, post_id: str, want: tuple[int, int, int]) -> Any:
                t = await voting.tally_post(node, post_id, electorates[3])
                return t if (t.up, t.down, t.voters) == want else None

            for node in nodes:  # every reader counts the same, from the slot
                t1 = await wait_for(lambda n=node: exact(n, p1.id, (6, 5, 12)), 40)
                t2 = await wait_for(lambda n=node: exact(n, p2.id, (3, 5, 8)), 40)
                assert t1.superseded == 2 and not t1.rejected and not t2.rejected

            # tags: one per voter and post, unrelated across posts; a voter finds its own
            for person in people:
                tag1 = ring.link_tag(person.identity, bytes.fromhex(p1.id))
                tag2 = ring.link_tag(person.identity, bytes.fromhex(p2.id))
                assert tag1 != tag2 and tag1 in t1.by_tag
            assert t1.by_tag[ring.link_tag(people[0].identity, bytes.fromhex(p1.id))].choice == votes.DOWN
            tags1 = set(t1.by_tag)
            tags2 = set(t2.by_tag)
            assert not tags1 & tags2 and len(tags1) == 12 and len(tags2) == 8

            # what holders and readers see: anonymous envelopes, each signed over a ring of all 12
            sent = [e for r in rec for e in r.sent]
            assert len(sent) == 12 + 8 + 2
            for data in sent:
                opened = env.open_public(data)
                assert opened.author is None and opened.content_type == "vote"
                fields = codec.unpack(opened.body)
                assert sorted(fields[4]) == sorted(everyone)
            # the same voter's votes on the two posts: their signatures (tag included) share no 8 bytes
            sig1, sig2 = (codec.unpack(env.open_public(e).body)[5] for e in rec[0].sent[:2])
            assert not windows([sig1]) & windows([sig2])

            # refusals, each with its reason: forged, malformed, a small-order tag, a voter outside the registry
            scope = bytes.fromhex(p1.id)
            good = codec.unpack(votes.make_vote(people[4].identity, electorates[4], scope, "up", votes.MAX_SEQ))
            forged = list(good)
            forged[2] = votes.DOWN  # the choice is signed (the newest seq: checked first, not superseded)
            small_order = list(good)
            small_order[5] = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a") + \
                good[5][32:]
            stranger = Identity.generate()
            outside_ring = sorted(good[4][:11] + [stranger.verify_key])
            outsider_sig = ring.sign(stranger, outside_ring, scope, votes._signed_message(1, 1))
            bad = {
                "forged": codec.pack(forged),
                "malformed": codec.pack(small_order),
                "not-eligible": codec.pack([1, scope, 1, 1, outside_ring, outsider_sig]),
            }
            slot = votes.slot_key(scope)
            for body in [*bad.values(), b"\xc1 not msgpack at all"]:
                data = env.make_public(None, body, content_type="vote", pow=CONFIG.pow, slot=slot)
                assert await relays[2].publish(slot, data) > 0
            data = env.make_public(Identity.generate(), b"signed, so not a vote", content_type="vote",
                                   pow=CONFIG.pow, slot=slot)
            await relays[2].publish(slot, data)

            async def refused(node: KomradeNode) -> Any:
                t = await voting.tally_post(node, p1.id, electorates[0])
                return t if sum(t.rejected.values()) == 5 else None

            t = await wait_for(lambda: refused(nodes[2]), 30)
            assert (t.up, t.down, t.voters) == (6, 5, 12)
            assert t.rejected == {"forged": 1, "malformed": 2, "not-eligible": 1, "not-a-vote": 1}, t.rejected

            # a stranger who is not registered cannot vote; a bad choice is refused before anything is sent
            outsider = account(tmp_path, "Outsider")
            await posts.read_feed(outsider, nodes[1], "world", images=False)
            with pytest.raises(KomradeError, match="not eligible"):
                await voting.vote_on_post(outsider, nodes[1], p1.id, "up", electorate=electorates[1])
            with pytest.raises(KomradeError, match="up, down or none"):
                await voting.vote_on_post(outsider, nodes[1], p1.id, "sideways", electorate=electorates[1])
            outsider.close()
        finally:
            await shutdown([*nodes, *relays], tuple(people))

    run(scenario())


def test_pin_seen_within_its_radius_confirmed_and_gone_after_its_lifetime(tmp_path: Path) -> None:
    config = NodeConfig(pow=CHEAP_POW, id_bits=8, purge_interval=0.5)

    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 8, config)
        alice, bob, carol, dave = (account(tmp_path, n) for n in ("Alice", "Bob", "Carol", "Dave"))
        nodes: list[KomradeNode] = []
        try:
            for i in range(4):
                nodes.append(await client(relays[1 + i].address, config))
            a, b, c, d = nodes
            rec = Recorder(a)
            for person, node in ((bob, b), (carol, c)):
                await voting.ensure_registered(person, node, reg_params=REG)
            here = (52.52003, 13.40497)
            with pytest.raises(KomradeError, match="kind"):
                await pins.drop_pin(alice, a, "rumour", "?", here)
            with pytest.raises(KomradeError, match="hours"):
                await pins.drop_pin(alice, a, "police", "x", here, ttl=3 * 86400)
            assert rec.sent == []
            lifetime = 20  # long enough for a loaded machine to read, vote and tally before it ends
            dropped = await pins.drop_pin(alice, a, "police", "kettle at the square", here, radius_km=3,
                                          ttl=lifetime)
            assert dropped.envelopes >= 1 and dropped.area.level_km == 1.0
            # Bob, 2 km away, sees it; Dave, 9 km away, does not; Bob with a 1 km radius does not either
            near, far = (52.5380, 13.4000), (52.6000, 13.4050)
            # Alice sees hers at once (it is still on its stem), where its circle reaches, and only there
            assert [p.id for p in await pins.read_pins(alice, a, near)] == [dropped.id]
            assert dropped.id not in [p.id for p in await pins.read_pins(alice, a, far)]

            async def bob_sees() -> Any:
                got = await pins.read_pins(bob, b, near)
                return [p for p in got if p.id == dropped.id]

            [pin] = await wait_for(bob_sees, 20)
            assert (pin.kind, pin.text, pin.radius_km) == ("police", "kettle at the square", 3.0)
            assert abs(pin.lat - here[0]) < 0.01 and (pin.lat, pin.lon) != here
            assert not [p for p in await pins.read_pins(bob, b, near, radius_km=1) if p.id == dropped.id]
            assert not [p for p in await pins.read_pins(dave, d, far) if p.id == dropped.id]
            # Carol confirms it anonymously; Bob dismisses; a reader tallies
            electorate = await wait_for(lambda: _registry_of(carol, c, 2), 20)
            await pins.read_pins(carol, c, here)
            await pins.vote_on_pin(carol, c, dropped.id, True, electorate=electorate)
            await pins.vote_on_pin(bob, b, dropped.id, False, electorate=electorate)
            with pytest.raises(KomradeError, match="no live pin"):
                await pins.vote_on_pin(dave, d, dropped.id, True, electorate=electorate)

            async def tallied() -> Any:
                got = [p for p in await pins.read_pins(dave, d, here, electorate=electorate) if p.id == dropped.id]
                return got if got and (got[0].confirmed, got[0].dismissed) == (1, 1) else None

            await wait_for(tallied, 20)
            # its bytes hold nothing of Alice's: not her key, not a piece of it, not her name, not her position
            key = alice.identity.verify_key
            assert rec.sent
            for data in rec.sent:
                assert key not in data and not windows([key]) & windows([data])
                assert b"Alice" not in data and env.open_public(data).author is None
                assert codec.pack(here[0]) not in data
            # gone from every node after its lifetime
            ids = {env.envelope_id(e) for e in rec.sent}
            assert any(r.store.get_blob(i) for r in relays for i in ids)
            await asyncio.sleep(max(0.0, dropped.expires_at - time.time()))

            def gone() -> bool:
                return not any(r.store.get_blob(i) for r in relays if r.store is not None for i in ids)

            await wait_for(gone, 10)
            assert not [p for p in await pins.read_pins(bob, b, near) if p.id == dropped.id]
        finally:
            await shutdown([*nodes, *relays], (alice, bob, carol, dave))

    run(scenario())


async def _registry_of(person: Any, node: KomradeNode, n: int) -> Any:
    e = await voting.world_electorate(person, node, reg_params=REG)
    return e if len(e.keys) >= n else None


JUNK = 10_000


def test_tally_stays_exact_under_junk_in_the_vote_slot(tmp_path: Path) -> None:
    """10,000 anonymous 'vote' envelopes with real (cheap) work for the slot, held by the slot's closest relay
    (planted in its store: floods are tested in test_slot_attacks), beside 3 real roster votes: a reader's tally is exact, the junk refused by its cheap checks
    (never a ring verification), in bounded time and datagrams: the read looks at what its bounds let through."""
    from . import adversary as adv

    async def scenario() -> None:
        relays = await adv.start_network(tmp_path / "net", 10, CONFIG)
        people = [account(tmp_path, f"M{i}") for i in range(3)]
        nodes: list[Any] = []
        try:
            roster = votes.Electorate.roster([p.identity.verify_key for p in people])
            scope = os.urandom(20)
            slot = votes.slot_key(scope)
            c = await client(relays[1].address, CONFIG)
            nodes.append(c)
            for p, choice in zip(people, ("up", "up", "down")):
                await voting.vote_on_scope(p, c, scope, choice, roster, expires_at=int(time.time()) + 3600)

            def junk() -> list[bytes]:
                return [env.make_public(None, os.urandom(40), content_type="vote", pow=CHEAP_POW, slot=slot,
                                        ttl=3600) for _ in range(JUNK)]

            planted = adv.plant(adv.closest(relays, slot, 1)[0], slot, await asyncio.to_thread(junk))
            assert planted == JUNK, planted
            reader = await client(relays[-1].address, CONFIG)
            nodes.append(reader)

            async def exact() -> Any:
                t = await voting.tally_scope(reader, scope, roster)
                return t if (t.up, t.down, t.voters) == (2, 1, 3) else None

            figures = await adv.measured(reader, wait_for(exact, 60), timeout=90)
            t = figures.pop("result")
            assert figures["finished"], figures
            # junk costs cheap refusals only (what the read bound lets through), never a ring verification
            assert t.rejected.get("malformed", 0) > 0 and set(t.rejected) == {"malformed"} and t.verified == 3, t
            print("junk tally:", figures)
        finally:
            await shutdown([*nodes, *relays], tuple(people))

    run(scenario())
