"""Votes, events, map pins and collectives through the local API over real HTTP on 127.0.0.1 (issue 11).

Three users' nodes (UserService + ApiServer), each a full node of one loopback network of relays; the calls go
through the Python client (``OrganizeApi``) and raw HTTP; the event stream pushes invitations. Registrations for
world votes are made cheap (every service of the network uses the same parameters).
"""

from __future__ import annotations

import asyncio
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
            await votes_slice(alice, bob, carol)
            print(f"votes: {time.monotonic() - started:.1f} s")

    asyncio.run(asyncio.wait_for(scenario(), 150))
