"""Events (issue 11) on a real loopback network: an anonymously hosted event, its invitations, answers, edit and
cancellation; a named host; a non-invitee who learns nothing; every byte checked for the host's identity."""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path
from typing import Any, Awaitable

import pytest
from PIL import Image

from komrade_dht import codec, ring
from komrade_dht import envelope as env
from komrade_dht.errors import KomradeError
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.social import Account, dm, events

from .support import CHEAP_POW, account, client, files_containing, shutdown, start_relays, wait_for

CONFIG = NodeConfig(pow=CHEAP_POW, id_bits=8)


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, 120)

    return asyncio.run(main())


class Recorder:
    def __init__(self, node: KomradeNode) -> None:
        self.sent: list[tuple[bytes, bytes]] = []
        send = node.send

        async def recorded(slot: bytes, data: bytes) -> int:
            self.sent.append((slot, data))
            return await send(slot, data)

        node.send = recorded  # type: ignore[method-assign]


def windows(blobs: list[bytes], n: int = 8) -> set[bytes]:
    return {b[i : i + n] for b in blobs for i in range(len(b) - n + 1)}


def test_anonymous_event_answers_edit_cancel_and_a_non_invitee(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 8, CONFIG)
        host, ann, ben, cat, dan = (account(tmp_path, n) for n in ("Hostess", "Ann", "Ben", "Cat", "Dan"))
        people = (host, ann, ben, cat, dan)
        nodes = [await client(relays[1 + i].address, CONFIG) for i in range(5)]
        h, a, b, c, d = nodes
        recs = [Recorder(n) for n in nodes]
        try:
            now = time.time()
            with pytest.raises(KomradeError, match="ends after it starts"):
                await events.create_event(host, h, "Demo", int(now) + 100, int(now) + 50)
            with pytest.raises(KomradeError, match="title"):
                await events.create_event(host, h, " ", int(now) + 100, int(now) + 500)
            assert recs[0].sent == []
            ev = await events.create_event(host, h, "Rally for rent control", int(now) + 3600, int(now) + 7200,
                                           place="Town hall steps", at=(52.5163, 13.3777),
                                           description="bring signs", anonymous=True)
            assert ev.anonymous_host and ev.position and ev.position[2] == 1.0
            invitees = (ann, ben, cat)
            assert await events.invite(host, h, ev.id, [p.address.text for p in invitees]) == 3

            async def invited(person: Any, node: KomradeNode) -> Any:
                await dm.sync_inbox(person, node)
                return events.invitations(person)

            for person, node in zip(invitees, (a, b, c)):
                [got] = await wait_for(lambda p=person, n=node: invited(p, n), 20)
                assert (got.title, got.place, got.anonymous_host, got.host_name) == (
                    "Rally for rent control", "Town hall steps", True, None)
                assert dm.inbox(person) == []  # an invitation is not a message
            for person, node, answer in zip(invitees, (a, b, c), ("going", "maybe", "not going")):
                await events.answer_event(person, node, ev.id, answer)
            await events.answer_event(ann, a, ev.id, "maybe")  # Ann changes her mind
            with pytest.raises(KomradeError, match="going, maybe or not going"):
                await events.answer_event(ann, a, ev.id, "perhaps")

            async def all_answers() -> Any:
                got = await events.answers(host, h, ev.id)
                return got if {(x.name, x.answer) for x in got} == {("Ann", "maybe"), ("Ben", "maybe"),
                                                                    ("Cat", "not going")} else None

            await wait_for(all_answers, 20)

            # an edit, then a cancellation, reach every invitee
            await events.edit_event(host, h, ev.id, title="Rally moved to the park", place="Park")
            for person, node in zip(invitees, (a, b, c)):
                await wait_for(lambda p=person, n=node: _titled(p, n, ev.id, "Rally moved to the park"), 20)
            await events.cancel_event(host, h, ev.id)

            async def cancelled(person: Any, node: KomradeNode) -> bool:
                return (await events.refresh_event(person, node, ev.id)).cancelled

            for person, node in zip(invitees, (a, b, c)):
                await wait_for(lambda p=person, n=node: cancelled(p, n), 20)
            with pytest.raises(KomradeError, match="cancelled"):
                await events.answer_event(ben, b, ev.id, "going")

            # a non-invitee learns nothing: no invitation, and nothing in the event's slots opens for them
            await dm.sync_inbox(dan, d)
            assert events.invitations(dan) == []
            with pytest.raises(KomradeError, match="no invitation"):
                await events.refresh_event(dan, d, ev.id)
            dan_decryptor = env.TrialDecryptor(dan.identity)
            for slot in (events.event_slot(bytes.fromhex(ev.id)), events.answer_slot(bytes.fromhex(ev.id))):
                for data in (await d.read_slot(slot)).wanted:
                    assert dan_decryptor.open(data) is None
                    assert env.open_shared(data, bytes(32)) is None

            # the host's identity is in none of the event's envelopes: raw bytes, and every one opened
            record = host.data.get("event_host", bytes.fromhex(ev.id))
            event_key = Identity.from_seed(record["seed"])
            hk = host.identity.verify_key
            host_marks = [hk, host.identity.public.box_public_key, b"Hostess", host.address.text.encode()]
            sent = [data for r in recs[:4] for _, data in r.sent]
            assert len(sent) == 3 + 3 + 4  # invitations, updates, answers
            opened_bodies = []
            for data in sent:
                assert not windows([hk]) & windows([data])
                for person in (ann, ben, cat):
                    o = env.TrialDecryptor(person.identity).open(data)
                    if o is not None:
                        assert o.sender.verify_key == event_key.verify_key
                        opened_bodies.append(o.body)
                o = env.TrialDecryptor(event_key).open(data)
                if o is not None:
                    opened_bodies.append(o.body + o.sender.verify_key)
                o = env.open_shared(data, record["secret"])
                if o is not None:
                    assert o.author is not None and o.author.verify_key == event_key.verify_key
                    opened_bodies.append(o.body)
            assert len(opened_bodies) == 10
            for body in opened_bodies:
                for mark in host_marks:
                    assert mark not in body

            # events expire after they end (on the devices; the network drops the envelopes at the same time)
            later = record["details"]["e"] + events.GRACE + 1
            assert events.invitations(ann, now=later) == [] and events.invitations(ann) == []
        finally:
            await shutdown([*nodes, *relays], people)

    run(scenario())


async def _titled(person: Any, node: KomradeNode, event_id: str, title: str) -> bool:
    return (await events.refresh_event(person, node, event_id)).title == title


async def _titled_place(person: Any, node: KomradeNode, event_id: str) -> Any:
    """The invitation once its edit (place "the back room") has been pulled, else None."""
    ev = await events.refresh_event(person, node, event_id)
    return ev if ev.place == "the back room" else None


def test_named_host_is_shown_and_sees_who_answered(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 5, CONFIG)
        host, ann, bo = account(tmp_path, "Hal"), account(tmp_path, "Ann"), account(tmp_path, "Bo")
        nodes = [await client(relays[1].address, CONFIG), await client(relays[3].address, CONFIG)]
        try:
            now = int(time.time())
            photo = io.BytesIO()
            Image.frombytes("RGB", (64, 48), os.urandom(64 * 48 * 3)).save(photo, format="JPEG")
            ev = await events.create_event(host, nodes[0], "Reading group", now + 60, now + 3600,
                                           image=photo.getvalue())
            assert events.invitees(host, ev.id) == []
            host.add_contact(ann.address.text, "Annie")  # the host's own name for her; Bo is no contact
            await events.invite(host, nodes[0], ev.id, [ann.address.text])
            await events.invite(host, nodes[0], ev.id, [bo.address.text])
            assert events.invitees(host, ev.id) == [
                events.Invitee("Annie", ann.address.text, ann.fingerprint, None),
                events.Invitee("", bo.address.text, bo.fingerprint, None)]
            with pytest.raises(KomradeError, match="you host no event"):
                events.invitees(ann, ev.id)

            async def invited() -> Any:
                await dm.sync_inbox(ann, nodes[1])
                return events.invitations(ann)

            [got] = await wait_for(invited, 20)
            assert (got.anonymous_host, got.host_name, got.host_fingerprint) == (False, "Hal", host.fingerprint)
            # new until shown; shown is kept with the invitation (encrypted), so it survives closing the account
            assert (got.seen_version, got.unseen) == (None, "new")
            assert events.mark_seen(ann, ev.id).unseen is None
            ann.close()
            ann = Account.open(ann.data_dir, "Ann passphrase")
            assert [(e.seen_version, e.unseen) for e in events.invitations(ann)] == [(1, None)]
            await events.edit_event(host, nodes[0], ev.id, place="the back room")
            assert (await wait_for(lambda: _titled_place(ann, nodes[1], ev.id), 20)).unseen == "changed"
            assert events.mark_seen(ann, ev.id).seen_version == 2
            picture = await events.fetch_image(ann, nodes[1], ev.id)
            assert picture is not None and Image.open(io.BytesIO(picture)).size == (64, 48)
            assert not files_containing(ann.data_dir, picture[-1024:-512]), "the picture is kept encrypted"
            assert await events.fetch_image(ann, None, ev.id) == picture  # type: ignore[arg-type]  # kept here
            await events.answer_event(ann, nodes[1], ev.id, "going")

            async def answered() -> Any:
                return [(x.name, x.answer, x.fingerprint) for x in await events.answers(host, nodes[0], ev.id)]

            assert await wait_for(answered, 20) == [("Annie", "going", ann.fingerprint)]
            assert [(i.name, i.answer) for i in events.invitees(host, ev.id)] == [("Annie", "going"), ("", None)]
            assert [e.id for e in events.hosted(host)] == [ev.id]
        finally:
            await shutdown([*nodes, *relays], (host, ann, bo))

    run(scenario())


def test_anonymous_answers_give_the_host_counts_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 5, CONFIG)
        host, ann, ben, cat = (account(tmp_path, n) for n in ("Hal", "Ann", "Ben", "Cat"))
        nodes = [await client(relays[1 + i].address, CONFIG) for i in range(4)]
        h, *others = nodes
        rec = Recorder(h)
        recs = [Recorder(n) for n in others]
        try:
            now = int(time.time())
            ev = await events.create_event(host, h, "Assembly", now + 60, now + 3600, anonymous=True,
                                           anonymous_answers=True)
            await events.invite(host, h, ev.id, [p.address.text for p in (ann, ben, cat)])
            with pytest.raises(KomradeError, match="invited at once"):
                await events.invite(host, h, ev.id, [ann.address.text])
            for person, node in zip((ann, ben, cat), others):
                async def invited(p: Any = person, n: KomradeNode = node) -> Any:
                    await dm.sync_inbox(p, n)
                    return events.invitations(p)

                [got] = await wait_for(invited, 20)
                assert got.anonymous_answers
            for person, node, answer in zip((ann, ben, cat), others, ("going", "going", "maybe")):
                await events.answer_event(person, node, ev.id, answer)
            await events.answer_event(ben, others[1], ev.id, "not going")  # replaces Ben's first answer

            async def counted() -> Any:
                c = await events.answer_counts(host, h, ev.id)
                return c if c == {"going": 1, "maybe": 1, "not going": 1} else None

            await wait_for(counted, 20)
            with pytest.raises(KomradeError, match="anonymous"):
                await events.answers(host, h, ev.id)
            # the host can open every answer: none names an invitee (one-off senders, ring signatures)
            record = host.data.get("event_host", bytes.fromhex(ev.id))
            event_key = Identity.from_seed(record["seed"])
            invitee_keys = [p.identity.verify_key for p in (ann, ben, cat)]
            answers = [d for r in recs for s, d in r.sent if s == events.answer_slot(bytes.fromhex(ev.id))]
            assert len(answers) == 4
            for data in answers:
                opened = env.TrialDecryptor(event_key).open(data)
                assert opened is not None and opened.sender.verify_key not in invitee_keys
                assert not any(k in opened.body for k in invitee_keys) and b"Ann" not in opened.body
                assert codec.unpack(opened.body)[4] == ring.ring_id(invitee_keys)  # the ring's id, no key
            assert rec.sent
        finally:
            await shutdown([*nodes, *relays], (host, ann, ben, cat))

    run(scenario())
