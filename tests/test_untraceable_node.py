"""`komrade node --tor`: the user's node in untraceable mode runs no DHT node (no UDP socket) and does everything its
API offers through relays' TCP services over Tor's SOCKS port (here a recording SOCKS5 proxy on loopback; the real
Tor path is tests/test_tor.py)."""

from __future__ import annotations

import asyncio
import base64
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from komrade_dht.node import KomradeNode
from komrade_dht.relay_tcp import TcpService
from komrade_dht.service import ServiceConfig, UserService
from komrade_dht.social import Account, events, posts, send_dm, sync_inbox
from komrade_dht.torclient import TorClient

from .support import account, client, shutdown, start_relays, wait_for
from .test_api_posts import jpeg_with_gps
from .test_relay_tcp import CONFIG, RecordingSocks


@dataclass
class Untraceable:
    """Alice's user node in untraceable mode (through a recording SOCKS proxy to one relay's TCP service), Bob on
    the DHT, 8 relays."""

    relays: list[KomradeNode]
    tcp_service: TcpService
    tcp: tuple[str, int]
    socks: RecordingSocks
    alice: Account
    bob: Account
    service: UserService
    bob_node: KomradeNode


@asynccontextmanager
async def untraceable(tmp_path: Path) -> AsyncIterator[Untraceable]:
    relays = await start_relays(tmp_path / "net", 8, CONFIG)
    tcp_service = TcpService(relays[1])
    socks = RecordingSocks()
    alice, bob = account(tmp_path, "Alice"), account(tmp_path, "Bob")
    nodes: list[KomradeNode] = list(relays)
    service = None
    try:
        tcp = await tcp_service.start("127.0.0.1", 0)
        proxy = await socks.start()
        service = UserService(alice, ServiceConfig(tor_socks=proxy, relay_tcp=(tcp,), node=CONFIG, sync_interval=3600))
        await service.start()
        bob_node = await client(relays[6].address, CONFIG)
        nodes.append(bob_node)
        yield Untraceable(relays, tcp_service, tcp, socks, alice, bob, service, bob_node)
    finally:
        if service is not None:
            await service.close()
        await socks.close()
        await tcp_service.close()
        await shutdown(nodes, (alice, bob))


def test_the_user_node_in_untraceable_mode_sends_syncs_and_never_joins_the_dht(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with untraceable(tmp_path) as u:
            relays, alice, bob, service, bob_node, socks, tcp = (u.relays, u.alice, u.bob, u.service, u.bob_node,
                                                                 u.socks, u.tcp)
            assert isinstance(service.node, TorClient) and service.untraceable
            status = service.status()
            assert status["counters"]["untraceable"] == 1 and status["peers"] == 0 and status["read_only"]
            for relay in relays:  # nobody's routing table ever heard of this device
                assert relay.protocol.contact_count() <= len(relays)

            sent = await service.send(bob.address.text, "from nowhere")
            got: list = []

            async def bob_has_it() -> bool:
                got.extend(await sync_inbox(bob, bob_node))
                return bool(got)

            await wait_for(bob_has_it, timeout=30, interval=0.3)
            assert [m.text for m in got] == ["from nowhere"] and got[0].id == sent.id
            await send_dm(bob, bob_node, alice.address.text, "back to nowhere")
            new = await service.sync()
            assert [m.text for m in new] == ["back to nowhere"]
            # every action on a circuit of its own (a fresh SOCKS username), all of them to the relay's TCP service
            assert len(socks.users) == len(set(socks.users)) >= 3 and set(socks.targets) == {tcp}

    asyncio.run(scenario())


def test_pictures_travel_through_tor_both_ways_posts_and_events(tmp_path: Path) -> None:
    """Content chunks (a post's picture, an event's picture) are stored and fetched through the relay's TCP service:
    an untraceable user posts a picture a DHT reader sees whole, and sees the pictures of others' posts and events."""

    async def scenario() -> None:
        async with untraceable(tmp_path) as u:
            alice, bob, service, bob_node, socks, tcp, tcp_service = (u.alice, u.bob, u.service, u.bob_node, u.socks,
                                                                      u.tcp, u.tcp_service)
            # Alice (no DHT node) posts a picture; Bob, on the DHT, gets it whole
            mine = await service.social.post({"text": "from nowhere, with a picture",
                                              "image_base64": base64.b64encode(jpeg_with_gps()).decode()})
            assert tcp_service.counters["op_store"] >= 1

            async def bob_sees_it() -> Any:
                await posts.read_feed(bob, bob_node, "world")
                return posts.image(bob, mine["id"])

            picture = await wait_for(bob_sees_it, timeout=30, interval=0.3)
            assert picture[:2] == b"\xff\xd8" and b"SpyCam" not in picture

            # Bob posts a picture and invites Alice to an event with one; she sees both through Tor
            theirs = await posts.publish_post(bob, bob_node, "from the DHT", image=jpeg_with_gps())
            now = int(time.time())
            ev = await events.create_event(bob, bob_node, "Picnic", now + 600, now + 4000, image=jpeg_with_gps())
            await events.invite(bob, bob_node, ev.id, [alice.address.text])

            async def alice_sees_it() -> Any:
                await service.social.refresh("world")
                return posts.image(alice, theirs.id)

            got = await wait_for(alice_sees_it, timeout=30, interval=0.3)
            assert got[:2] == b"\xff\xd8" and tcp_service.counters["op_get_blobs"] >= 1

            async def invited() -> bool:
                await service.sync()
                return any(e.id == ev.id for e in events.invitations(alice))

            await wait_for(invited, timeout=30, interval=0.3)
            event_picture = await service.organize.picture(ev.id)
            assert event_picture[:2] == b"\xff\xd8" and b"SpyCam" not in event_picture
            # all of it through the relay's TCP service, each action on a circuit of its own
            assert len(socks.users) == len(set(socks.users)) and set(socks.targets) == {tcp}

    asyncio.run(scenario())
