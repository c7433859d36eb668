"""Votes, events, map pins and collectives through the local API over real HTTP on 127.0.0.1 (issue 11).

Three users' nodes (UserService + ApiServer), each a full node of one loopback network of relays; the calls go
through the Python client (``OrganizeApi``) and raw HTTP; the event stream pushes invitations. Registrations for
world votes are made cheap (every service of the network uses the same parameters).
"""

from __future__ import annotations

import asyncio
import base64
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp

from komrade_dht.api.client import ApiClient, ApiError
from komrade_dht.api.organize_client import OrganizeApi
from komrade_dht.api.server import ApiServer
from komrade_dht.api.social_client import SocialApi
from komrade_dht.node import NodeConfig
from komrade_dht.service import ServiceConfig, UserService
from komrade_dht.social import voting
from komrade_dht.votes import RegistrationParams

from .support import CHEAP_POW, account, start_relays, wait_for
from .test_api_posts import jpeg_with_gps

CONFIG = NodeConfig(pow=CHEAP_POW, id_bits=8)
REG = RegistrationParams(trials=1, memlimit=8192)


class User:
    def __init__(self, name: str, svc: UserService, api: ApiServer, client: ApiClient) -> None:
        self.name, self.svc, self.api, self.client = name, svc, api, client
        self.org, self.social = OrganizeApi(client), SocialApi(client)
        self.address = svc.account.address.text

    async def raw(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.api.token}"}) as session:
            async with session.request(method, self.api.url + path, **kw) as response:
                body = await response.json() if response.content_type == "application/json" else await response.read()
                return response.status, body


async def _version_known(u: Any, event_id: str, version: int) -> bool:
    """The user's node has pulled ``version`` of the invitation (with a sync: no one opened it)."""
    return any(e["id"] == event_id and e["version"] >= version for e in (await u.org.events())["invitations"])


async def refused(call: Any, status: int, words: str) -> None:
    try:
        await call
    except ApiError as exc:
        assert exc.status == status and words in str(exc), (exc.status, str(exc))
        return
    raise AssertionError(f"accepted: expected {status} ({words})")


async def register(users: list[User]) -> None:
    """Every voter registered, and each one's electorate holds all of them: a world vote names a sub-ring of
    min(12, registered) keys, and readers refuse a smaller one ("wrong-ring"), so a vote cast while the registry was
    smaller than 12 would not count once it grows (a young network's limit, noted in the README)."""
    for u in users:
        await voting.ensure_registered(u.svc.account, u.svc.node, reg_params=REG)
    for u in users:
        async def everyone(u: User = u) -> bool:
            e = await voting.world_electorate(u.svc.account, u.svc.node, reg_params=REG)
            return len(e.keys) == len(users)

        await wait_for(everyone, timeout=30, interval=0.3)


async def votes_slice(alice: User, bob: User, carol: User) -> None:
    await register([alice, bob, carol])
    sent = await alice.social.post("vote on this through the API")
    post_id = sent["id"]
    for u in (bob, carol):
        got = await u.social.refresh("world")
        assert post_id in [p["id"] for p in got["posts"]]
    [item] = [p for p in (await bob.social.feed("world"))["posts"] if p["id"] == post_id]
    assert (item["votes"]["up"], item["votes"]["down"], item["votes"]["mine"]) == (0, 0, None)

    cast = await bob.org.vote(post_id, "up")
    assert cast["choice"] == "up" and cast["votes"]["up"] == 1 and cast["votes"]["mine"] == "up", cast
    cast = await carol.org.vote(post_id, "up")
    assert cast["votes"]["mine"] == "up" and cast["votes"]["up"] >= 1
    cast = await carol.org.vote(post_id, "down")  # a second vote replaces the first
    assert cast["votes"]["mine"] == "down" and cast["votes"]["down"] == 1

    async def agreed(u: User) -> Any:
        v = await u.org.votes(post_id)
        return v if (v["up"], v["down"]) == (1, 1) else None

    for u in (alice, bob, carol):
        v = await wait_for(lambda u=u: agreed(u), timeout=40, interval=0.5)
        assert v["post_id"] == post_id and v["tallied_at"] is not None
    assert (await bob.org.votes(post_id))["mine"] == "up" and (await alice.org.votes(post_id))["mine"] is None
    # a feed refresh tallies, and the page carries the counts
    await alice.social.refresh("world")
    [item] = [p for p in (await alice.social.feed("world"))["posts"] if p["id"] == post_id]
    assert (item["votes"]["up"], item["votes"]["down"]) == (1, 1)

    # bad input: an unknown post is 404, a malformed id or choice 400, each with a reason
    await refused(bob.org.vote("ab" * 20, "up"), 404, "no post")
    await refused(bob.org.votes("ab" * 20), 404, "no post")
    await refused(bob.org.vote(post_id, "sideways"), 400, "up, down or none")
    await refused(bob.org.vote("xyz", "up"), 400, "not a post id")
    status, body = await bob.raw("POST", f"/v1/posts/{post_id}/vote", json={"choice": "up", "weight": 9})
    assert status == 400 and "choice" in body["message"], body
    status, body = await bob.raw("POST", f"/v1/posts/{post_id}/vote", data=b"[", headers={
        "Content-Type": "application/json"})
    assert status == 400 and "JSON" in body["message"], body


class Stream:
    """A user's event stream, collected in the background."""

    def __init__(self, user: User) -> None:
        self.seen: list[tuple[str, dict]] = []

        async def follow() -> None:
            async for event in user.client.events():
                self.seen.append((event.kind, event.data))

        self.task = asyncio.ensure_future(follow())

    def find(self, kind: str, **match: Any) -> dict | None:
        return next((d for k, d in self.seen if k == kind and all(d.get(f) == v for f, v in match.items())), None)


async def events_slice(alice: User, bob: User, carol: User) -> None:
    stream = Stream(bob)
    start = int(time.time()) + 3600
    ev = await alice.org.create_event("Rally", start, start + 7200, place="Town hall", at=(52.5219, 13.4132),
                                      description="bring water", anonymous=True,
                                      invite=[bob.address, carol.address])
    event_id = ev["id"]
    assert ev["hosting"] and ev["anonymous_host"] and ev["invited"] == 2 and ev["version"] == 1, ev
    assert ev["position"]["precision_km"] == 1.0 and ev["position"]["lat"] != 52.5219
    assert [e["id"] for e in (await alice.org.events())["hosted"]] == [event_id]

    async def invited(u: User) -> Any:
        await u.client.sync()
        return [e for e in (await u.org.events())["invitations"] if e["id"] == event_id]

    for u in (bob, carol):
        [inv] = await wait_for(lambda u=u: invited(u), timeout=30, interval=0.3)
        assert (inv["title"], inv["host"], inv["anonymous_host"], inv["hosting"]) == ("Rally", None, True, False)
        assert (inv["unseen"], inv["seen_version"]) == ("new", None)
    # no picture on this one: 404 with a reason; an unknown event: 404 too
    await refused(bob.org.picture(event_id), 404, "no picture")
    await refused(bob.org.picture("00" * 16), 404, "no event")
    # one with a picture: the invitee gets it whole (a JPEG, its GPS tags stripped when it was published)
    picnic = await alice.org.create_event("Picnic", start, start + 3600, invite=[bob.address],
                                          image_base64=base64.b64encode(jpeg_with_gps()).decode())
    assert picnic["has_image"]

    async def picnic_known() -> Any:
        await bob.client.sync()
        return [e for e in (await bob.org.events())["invitations"] if e["id"] == picnic["id"]]

    await wait_for(picnic_known, timeout=30, interval=0.3)
    picture = await bob.org.picture(picnic["id"])
    assert picture[:2] == b"\xff\xd8" and b"SpyCam" not in picture
    pushed = await wait_for(lambda: stream.find("invitation", id=event_id), timeout=15)
    assert pushed["title"] == "Rally" and pushed["host"] is None

    assert (await bob.org.answer(event_id, "going"))["my_answer"] == "going"
    assert (await carol.org.answer(event_id, "not-going"))["my_answer"] == "not-going"

    async def answered() -> Any:
        shown = await alice.org.event(event_id)
        return shown if len(shown["answers"]) == 2 else None

    shown = await wait_for(answered, timeout=30, interval=0.3)
    assert sorted((a["who"], a["answer"]) for a in shown["answers"]) == [("Bob", "going"), ("Carol", "not-going")]
    assert shown["counts"] == {"going": 1, "maybe": 0, "not-going": 1}
    assert sorted((i["address"], i["answer"]) for i in shown["invitees"]) == sorted(
        [(bob.address, "going"), (carol.address, "not-going")])
    # opening an invitation marks the version shown; the list then says nothing is new
    assert (await bob.org.event(event_id))["unseen"] is None
    assert [e["unseen"] for e in (await bob.org.events())["invitations"] if e["id"] == event_id] == [None]

    edited = await alice.org.edit_event(event_id, title="Rally, moved", place="the park")
    assert (edited["title"], edited["version"]) == ("Rally, moved", 2)
    await alice.org.cancel_event(event_id)
    for u in (bob, carol):
        async def cancelled(u: User = u) -> Any:
            got = await u.org.refresh_event(event_id)
            return got if got["cancelled"] else None

        if u is bob:  # a sync pulls the edits of his invitations; he last saw version 1, so his list says "changed"
            async def pulled() -> bool:
                await bob.client.sync()
                return await _version_known(bob, event_id, 3)

            await wait_for(pulled, timeout=30, interval=0.3)
            assert [e["unseen"] for e in (await bob.org.events())["invitations"] if e["id"] == event_id] == ["changed"]
        got = await wait_for(cancelled, timeout=30, interval=0.3)
        assert (got["title"], got["place"], got["version"]) == ("Rally, moved", "the park", 3)
    # the update reached Bob's stream too
    await wait_for(lambda: stream.find("invitation", id=event_id, cancelled=True), timeout=15)
    stream.task.cancel()

    # bad input
    await refused(bob.org.event("00" * 16), 404, "no event")
    await refused(bob.org.event("nope"), 400, "not an event id")
    await refused(bob.org.answer(event_id, "perhaps"), 400, "going, maybe or not-going")
    await refused(bob.org.edit_event(event_id, title="mine now"), 400, "only the host")
    await refused(bob.org.answer(event_id, "going"), 400, "cancelled")
    await refused(alice.org.create_event("Late", start, start - 60), 400, "ends after it starts")
    await refused(alice.org.create_event("Typo", start, start + 60, invite=["komrade1nope"]), 400, "address")
    status, body = await alice.raw("POST", "/v1/organize/events", json={"title": "x", "starts_at": "soon",
                                                                        "ends_at": start})
    assert status == 400 and "starts_at" in body["message"], body


async def pins_slice(alice: User, bob: User, carol: User) -> None:
    dropped = await alice.org.drop_pin("medical", "first aid at the corner", (52.5201, 13.4049), radius_km=3)
    pin_id = dropped["id"]
    assert dropped["dropped_by_me"] and dropped["precision_km"] == 1.0 and dropped["lat"] != 52.5201, dropped
    assert (dropped["confirmations"], dropped["dismissals"], dropped["acks"] > 0) == (0, 0, True)

    async def seen(u: User, at: tuple[float, float], **kw: Any) -> Any:
        return [p for p in await u.org.pins(at, **kw) if p["id"] == pin_id]

    [pin] = await wait_for(lambda: seen(bob, (52.53, 13.41)), timeout=30, interval=0.3)
    assert (pin["kind"], pin["text"], pin["dropped_by_me"], pin["mine"]) == ("medical", "first aid at the corner",
                                                                             False, None)
    assert pin["precision_km"] is None and 0 < pin["distance_km"] < 3
    assert await seen(bob, (48.85, 2.35)) == []  # outside its radius
    assert await seen(bob, (52.53, 13.41), radius_km=0.1) == []  # within its circle, farther than asked

    await refused(carol.org.confirm_pin(pin_id), 404, "no live pin")  # not listed by Carol yet
    assert await wait_for(lambda: seen(carol, (52.52, 13.40)), timeout=30, interval=0.3)
    confirmed = await carol.org.confirm_pin(pin_id)
    assert (confirmed["confirmations"], confirmed["dismissals"], confirmed["mine"]) == (1, 0, "confirm"), confirmed

    async def tallied() -> Any:
        got = await seen(bob, (52.53, 13.41))
        return got if got and got[0]["confirmations"] == 1 else None

    await wait_for(tallied, timeout=30, interval=0.3)

    await refused(bob.org.remove_pin(pin_id), 404, "no pin of yours")
    await refused(bob.org.drop_pin("ufo", "lights", (52.5, 13.4)), 400, "kind")
    await refused(bob.org.drop_pin("help", "x", (52.5, 13.4), hours=25), 400, "24 hours")
    await refused(bob.org.drop_pin("help", "x", (95.0, 13.4)), 400, "latitude")
    status, body = await bob.raw("GET", "/v1/organize/pins?lat=52.5")
    assert status == 400 and "lat and lon" in body["message"], body
    assert (await alice.org.remove_pin(pin_id))["deleted"] > 0


async def collectives_slice(alice: User, bob: User, carol: User) -> None:
    bob_stream, alice_stream = Stream(bob), Stream(alice)
    state = await alice.org.found_collective("Garden club", [bob.address], quorum=2)
    cid = state["id"]
    assert state["member"] and len(state["members"]) == 2 and state["constitution"]["vouch_min"] == 2, state
    assert [(c["id"], c["status"], c["members"]) for c in await alice.org.collectives()] == [(cid, "member", 2)]

    async def synced(u: User) -> Any:
        try:
            return await u.org.collective(cid)
        except ApiError as exc:
            assert exc.status == 404, exc
            return None

    state = await wait_for(lambda: synced(bob), timeout=30, interval=0.3)
    assert state["member"] and {m["name"] for m in state["members"]} >= {"you"}
    assert bob_stream.find("collective", id=cid, what="key") is not None

    sent = await carol.org.request_join(cid, alice.address, note="I grow beans")
    join_id = sent["join_id"]
    assert [(c["id"], c["status"]) for c in await carol.org.collectives()] == [(cid, "waiting")]
    await refused(carol.org.collective(cid), 404, "waits")

    async def pending(u: User) -> Any:
        st = await u.org.collective(cid)
        return st if any(j["id"] == join_id for j in st["joins"]) else None

    state = await wait_for(lambda: pending(alice), timeout=30, interval=0.3)
    assert alice_stream.find("collective", id=cid, what="join_request") is not None
    [join] = state["joins"]
    assert (join["address"], join["note"], join["vouches"], join["needed"], join["status"]) == (
        carol.address, "I grow beans", 0, 2, "pending")

    state = await alice.org.vouch(cid, join_id)
    assert [(j["vouches"], j["status"], j["vouched"]) for j in state["joins"]] == [(1, "pending", True)]
    await wait_for(lambda: pending(bob), timeout=30, interval=0.3)
    state = await bob.org.vouch(cid, join_id[:12])
    assert [(j["vouches"], j["status"]) for j in state["joins"]] == [(2, "admitted")]
    assert len(state["members"]) == 3

    async def admitted() -> Any:
        await bob.org.collective(cid)  # the vouchers seal the key to the newcomer at their next sync
        await alice.org.collective(cid)
        st = await synced(carol)
        return st if st and st["member"] else None

    state = await wait_for(admitted, timeout=30, interval=0.5)
    assert len(state["members"]) == 3 and [m["me"] for m in state["members"]].count(True) == 1

    proposed = await carol.org.propose(cid, set={"vouch_min": 3})
    pid = proposed["proposal_id"]
    assert [p["what"] for p in proposed["collective"]["proposals"]] == ["amend vouch_min=3"]
    for u in (alice, bob):
        await wait_for(lambda u=u: pending_proposal(u, cid, pid), timeout=30, interval=0.3)
        state = await u.org.vote_proposal(cid, pid[:10], "up")
    [p] = state["proposals"]
    assert p["mine"] == "up"

    posted = await carol.org.collective_post(cid, "seeds swap on sunday")

    async def read() -> Any:
        got = await alice.org.collective_posts(cid)
        return got if [p["id"] for p in got] == [posted["id"]] else None

    [post] = await wait_for(read, timeout=30, interval=0.3)
    assert post["text"] == "seeds swap on sunday"
    bob_stream.task.cancel()
    alice_stream.task.cancel()

    await refused(bob.org.collective("00" * 32), 404, "no collective")
    await refused(bob.org.collective("abc"), 400, "not a collective id")
    await refused(bob.org.vote_proposal(cid, "ffffffff", "up"), 404, "no proposal")
    await refused(bob.org.vouch(cid, "ffffffff"), 400, "no join request")
    await refused(bob.org.found_collective("X", ["komrade1nope"]), 400, "address")
    await refused(bob.org.found_collective("X", amend_share=(1, 0)), 400, "constitution")
    await refused(bob.org.propose(cid, set={"colour": 1}), 400, "vouch_min")


async def pending_proposal(u: User, cid: str, pid: str) -> bool:
    return any(p["id"] == pid for p in (await u.org.collective(cid))["proposals"])


def test_organizing_through_the_api(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            relays = await start_relays(tmp_path / "net", 8, CONFIG)
            for relay in relays:
                stack.push_async_callback(relay.stop_async)
            users = []
            for i, name in enumerate(("Alice", "Bob", "Carol")):
                acct = account(tmp_path, name)
                stack.callback(acct.close)
                svc = UserService(acct, ServiceConfig(bootstrap=(relays[i].address,), node=CONFIG,
                                                      sync_interval=3600, registration=REG))
                await svc.start()
                stack.push_async_callback(svc.close)
                api = ApiServer(svc)
                await api.start()
                stack.push_async_callback(api.close)
                client = ApiClient(api.url, api.token)
                stack.push_async_callback(client.close)
                users.append(User(name, svc, api, client))
            alice, bob, carol = users
            started = time.monotonic()
            for part in (votes_slice, events_slice, pins_slice, collectives_slice):
                await part(alice, bob, carol)
                print(f"{part.__name__}: {time.monotonic() - started:.1f} s")

    asyncio.run(asyncio.wait_for(scenario(), 150))
