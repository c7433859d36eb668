"""Collectives (issue 11) on a real loopback network: 5 founders with quorum 2 admit a newcomer after exactly 2
vouches, amend the constitution to quorum 3 by anonymous vote, remove a member (who then reads nothing new, the key
rotated), and converge when members act at once."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Awaitable

import pytest

from komrade_dht import codec
from komrade_dht import envelope as env
from komrade_dht.collective import Constitution
from komrade_dht.identity import Identity
from komrade_dht.slots import SlotParams, slot_id
from komrade_dht.errors import KomradeError
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.social import collectives as coll

from .support import CHEAP_POW, account, client, shutdown, start_relays, wait_for

CONFIG = NodeConfig(pow=CHEAP_POW, id_bits=8)


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, 150)

    return asyncio.run(main())


def essence(state: Any) -> dict[str, Any]:
    s = state.summary()
    return {k: s[k] for k in ("members", "constitution", "key", "joins", "proposals", "order")}


def test_collective_admits_at_quorum_amends_removes_and_converges(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 8, CONFIG)
        founders = [account(tmp_path, f"Founder{i}") for i in range(5)]
        newcomer = account(tmp_path, "Newcomer")
        people = [*founders, newcomer]
        nodes = [await client(relays[1 + i % 7].address, CONFIG) for i in range(6)]
        node = dict(zip((p.name for p in people), nodes))
        n_of = lambda p: node[p.name]  # noqa: E731
        try:
            f0 = founders[0]
            state = await coll.found_collective(f0, n_of(f0), "Tenants union",
                                                [f.address.text for f in founders[1:]],
                                                constitution=Constitution(vouch_min=2))
            cid = state.collective_id.hex()

            async def sync(p: Any) -> Any:
                try:
                    return await coll.sync_collective(p, n_of(p), cid)
                except KomradeError:
                    return None

            async def synced(p: Any, pred: Any) -> Any:
                async def check() -> Any:
                    s = await sync(p)
                    return s if s is not None and pred(s) else None

                return await wait_for(check, 30)

            for f in founders:
                s = await synced(f, lambda s: len(s.members) == 5)
                assert s.name == "Tenants union" and s.constitution.vouch_min == 2

            # the newcomer asks Founder1; before any vouch it holds no key
            join_id = await coll.request_join(newcomer, n_of(newcomer), cid, founders[1].address.text)
            # Mallory knows the id and sends the newcomer a key of hers first: it must never be written under
            fake = os.urandom(32)
            body = codec.pack({"c": bytes.fromhex(cid), "keys": [[coll.key_id(fake), fake]], "k0": coll.key_id(fake),
                               "w": [], "n": "Tenants union"})
            dm_slot = slot_id(newcomer.identity.verify_key, newcomer.width, SlotParams().epoch(time.time()))
            mallory = Identity.generate()
            await n_of(f0).send(dm_slot, env.seal(mallory, newcomer.address.public, body, content_type=coll.KEY_TYPE,
                                                  pow=CONFIG.pow, slot=dm_slot))
            with pytest.raises(KomradeError, match="waits for the members' vouches"):
                await coll.sync_collective(newcomer, n_of(newcomer), cid)
            await synced(founders[1], lambda s: bytes.fromhex(join_id) in s.joins)
            await synced(founders[2], lambda s: bytes.fromhex(join_id) in s.joins)
            await coll.vouch(founders[1], n_of(founders[1]), cid, join_id[:12])
            with pytest.raises(KomradeError, match="no join request"):
                await coll.vouch(founders[1], n_of(founders[1]), cid, "deadbeefdead")
            s = await synced(founders[2], lambda s: s.joins[bytes.fromhex(join_id)].vouchers)
            assert s.joins[bytes.fromhex(join_id)].status == "pending"  # one vouch is not enough
            assert newcomer.identity.verify_key not in s.members
            await coll.vouch(founders[2], n_of(founders[2]), cid, join_id)
            # the vouchers seal the key at their next sync; the newcomer replays the same state
            await sync(founders[1])
            await sync(founders[2])
            mine = await synced(newcomer, lambda s: newcomer.identity.verify_key in s.members)
            assert len(mine.members) == 6
            assert newcomer.data.get("collective", mine.collective_id)["k0"] == f0.data.get(
                "collective", mine.collective_id)["k0"] != coll.key_id(fake)
            assert sorted(mine.joins[bytes.fromhex(join_id)].vouchers) == sorted(
                f.identity.verify_key for f in founders[1:3])

            # amend: quorum 3, by anonymous vote (3 of the 6: half the ring)
            s = await coll.propose_amend(f0, n_of(f0), cid, {"vouch_min": 3})
            [prop] = [h for h, p in s.proposals.items() if p.action == "amend"]
            for voter in (founders[1], founders[3], newcomer):
                await synced(voter, lambda s: prop in s.proposals)
                await coll.vote(voter, n_of(voter), cid, prop.hex(), "up")
            for p in people:
                s = await synced(p, lambda s: s.proposals[prop].status == "passed")
                assert s.constitution.vouch_min == 3 and s.proposals[prop].up == 3

            # remove Founder4 by vote; the key rotates
            gone = founders[4]
            s = await coll.propose_remove(f0, n_of(f0), cid, gone.address.text)
            [rm] = [h for h, p in s.proposals.items() if p.action == "remove"]
            for voter in (f0, founders[1], founders[2]):
                await synced(voter, lambda s: rm in s.proposals)
                await coll.vote(voter, n_of(voter), cid, rm.hex()[:16], "up")
            # two members sync at once after the removal: both may rekey; the first rekey in the order wins
            results = await asyncio.gather(sync(founders[1]), sync(founders[2]))
            assert all(r is not None and gone.identity.verify_key not in r.members for r in results)
            remaining = [p for p in people if p is not gone]
            for p in remaining:
                await synced(p, lambda s: s.key_id is not None and s.key_id in dict(
                    (i, k) for i, k in p.data.get("collective", s.collective_id)["keys"]))
            before_gone = await sync(gone)
            assert gone.identity.verify_key not in before_gone.members

            # after the rotation: a new proposal, read by every remaining member, never by the removed one
            s = await coll.propose_amend(founders[3], n_of(founders[3]), cid, {"vote_window": 86400})
            [late] = [h for h, p in s.proposals.items() if p.action == "amend" and h != prop]
            for p in remaining:
                await synced(p, lambda s: late in s.proposals)
            after = await sync(gone)
            assert late not in after.proposals and set(after.order) == set(before_gone.order)
            # group posts: under the new key, read by members, not by the removed one
            await coll.post(founders[1], n_of(founders[1]), cid, "meeting moved to thursday")
            for p in (f0, newcomer):
                got = await wait_for(lambda p=p: _posts(p, n_of(p), cid), 20)
                assert [(x.text, x.author_fingerprint) for x in got] == [("meeting moved to thursday",
                                                                          founders[1].fingerprint)]
            assert await coll.read_posts(gone, n_of(gone), cid) == []
            with pytest.raises(KomradeError, match="not a member"):
                await coll.vouch(gone, n_of(gone), cid, join_id)

            # two members act at once (a vote and a proposal from the same heads): every member ends the same
            await asyncio.gather(
                coll.vote(founders[1], n_of(founders[1]), cid, late.hex(), "up"),
                coll.propose_amend(founders[2], n_of(founders[2]), cid, {"amend_share": [2, 3]}),
            )

            async def converged() -> Any:
                states = [await sync(p) for p in remaining]
                views = [essence(st) for st in states]
                ok = len(states[0].proposals) == 4 and all(v == views[0] for v in views)
                return states if ok else None

            states = await wait_for(converged, 40)
            assert (await nodes[0].read_slot(coll.group_slot(fake))).wanted == []  # nobody wrote under Mallory's key
            assert states[0].proposals[late].up == 1 and len(states[0].members) == 5
        finally:
            await shutdown([*nodes, *relays], tuple(people))

    run(scenario())


async def _posts(person: Any, node: KomradeNode, cid: str) -> Any:
    return await coll.read_posts(person, node, cid)


def test_a_large_founding_roster_gets_its_keys_in_several_messages(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 4, CONFIG)
        people = [account(tmp_path, f"Member{i}") for i in range(16)]
        nodes = [await client(relays[1].address, CONFIG), await client(relays[2].address, CONFIG)]
        try:
            state = await coll.found_collective(people[0], nodes[0], "Big", [p.address.text for p in people[1:]])
            assert len(state.members) == 16

            async def synced() -> Any:
                try:
                    s = await coll.sync_collective(people[15], nodes[1], state.collective_id.hex())
                except KomradeError:
                    return None
                record = people[15].data.get("collective", state.collective_id)
                return s if len(record["addresses"]) == 16 else None

            s = await wait_for(synced, 20)
            assert s.summary() == (await coll.sync_collective(people[0], nodes[0], s.collective_id.hex())).summary()
        finally:
            await shutdown([*nodes, *relays], tuple(people))

    run(scenario())
