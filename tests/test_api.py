"""The local node API over real HTTP on 127.0.0.1: token, routes, event stream, client, OpenAPI, `komrade node`.

One loopback network per module (relays, Alice's and Bob's nodes and APIs), run in an event loop on a background
thread so that blocking clients (schemathesis, the CLI in subprocesses) can talk to it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation

from komrade_dht import __version__
from komrade_dht.api.client import ApiClient, ApiError, NodeNotRunning, SyncApiClient, node_running
from komrade_dht.api.server import MAX_BODY, ApiServer, openapi_document
from komrade_dht.errors import KomradeError
from komrade_dht.node import KomradeNode
from komrade_dht.service import AlreadyRunning, ServiceConfig, UserService
from komrade_dht.social import Account

from .support import account, start_relays, wait_for

T = TypeVar("T")
KOMRADE = [sys.executable, "-m", "komrade_dht"]


class LoopThread:
    """An asyncio loop on a daemon thread; ``run`` executes a coroutine there and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api-test-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Net:
    bg: LoopThread
    tmp: Path
    relays: list[KomradeNode]
    alice: Account
    bob: Account
    alice_svc: UserService
    bob_svc: UserService
    alice_api: ApiServer
    bob_api: ApiServer

    def client(self, who: str) -> ApiClient:
        return ApiClient.from_data_dir(getattr(self, who).data_dir)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, who + '_api').token}"}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("api")
    bg = LoopThread()

    async def up() -> Net:
        relays = await start_relays(tmp / "net", 5)
        alice, bob = account(tmp, "Alice"), account(tmp, "Bob")
        alice_svc = UserService(alice, ServiceConfig(bootstrap=(relays[0].address,)))
        # Bob syncs every second: the event-stream test relies on that, not on anyone asking.
        bob_svc = UserService(bob, ServiceConfig(bootstrap=(relays[1].address,), sync_interval=1.0))
        await alice_svc.start()
        await bob_svc.start()
        alice_api, bob_api = ApiServer(alice_svc), ApiServer(bob_svc)
        await alice_api.start()
        await bob_api.start()
        return Net(bg, tmp, relays, alice, bob, alice_svc, bob_svc, alice_api, bob_api)

    n = bg.run(up())
    yield n

    async def down() -> None:
        for api in (n.alice_api, n.bob_api):
            await api.close()
        for svc in (n.alice_svc, n.bob_svc):
            await svc.close()
        for relay in n.relays:
            await relay.stop_async()
        n.alice.close()
        n.bob.close()

    bg.run(down())
    bg.stop()


async def request(method: str, url: str, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers, **kw) as response:
            body = await response.json() if response.content_type == "application/json" else await response.read()
            return response.status, body, response.headers


# -- the token ---------------------------------------------------------------------------------------------
def test_every_route_but_health_needs_the_token(net: Net) -> None:
    api = net.alice_api
    token_file = net.alice.data_dir / "api.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == api.token and len(api.token) >= 40
    info = json.loads((net.alice.data_dir / "api.json").read_text())
    assert info == {"url": api.url, "pid": os.getpid()} and api.url.startswith("http://127.0.0.1:")

    async def check() -> None:
        status, body, _ = await request("GET", api.url + "/v1/health")
        assert status == 200 and body == {"ok": True}
        routes = {(r.method, r.resource.canonical) for r in api.app.router.routes() if r.resource is not None}
        assert len(routes) == 63  # 12: posts, feeds, friends and profiles (issue 10) and a profile's photo; 25 organizing (issue 11); 5 devices (issue 14); the DM room
        for method, path in sorted(routes):
            if path == "/v1/health":
                continue
            path = path.replace("{id}", "00" * 20).replace("{contact}", "x")
            for headers in (None, {"Authorization": "Bearer " + "A" * 43}, {"Authorization": api.token},
                            {"Authorization": f"Basic {api.token}"}):
                status, body, hdrs = await request(method, api.url + path, headers=headers, json={})
                assert status == 401, (method, path, headers, status)
                assert body["error"] == "unauthorized" and "api.token" in body["message"]
                assert hdrs["WWW-Authenticate"].startswith("Bearer")
        status, body, _ = await request("GET", api.url + "/v1/identity", headers=net.headers("alice"))
        assert status == 200 and body["address"] == net.alice.address.text
        assert body["fingerprint"] == net.alice.fingerprint and body["name"] == "Alice"
        status, body, _ = await request("GET", api.url + "/v1/crowd?target=2", headers=net.headers("alice"))
        assert status == 200 and body["target"] == 2 and body["network_size"] >= 2, body
        assert body["crowd"] == round(body["network_size"] / 2 ** body["width"], 2)
        status, body, _ = await request("GET", api.url + "/v1/crowd?target=0", headers=net.headers("alice"))
        assert status == 400 and body["error"] == "bad_request", body

    net.bg.run(check())


def test_a_fresh_token_at_every_start_and_loopback_only(net: Net) -> None:
    with pytest.raises(KomradeError, match="loopback"):
        ApiServer(net.alice_svc, host="0.0.0.0")
    with pytest.raises(KomradeError, match="loopback"):
        ApiServer(net.alice_svc, host="192.168.1.10")

    async def restart() -> None:
        old = net.alice_api
        old_token, old_headers = old.token, net.headers("alice")
        async with ApiClient.from_data_dir(net.alice.data_dir) as api:
            stream = api.events()
            first = await asyncio.wait_for(stream.__anext__(), 10)
            assert first.kind == "status"
            await old.close()
            # Closing the API ends its event streams and removes its files.
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(stream.__anext__(), 10)
        assert not (net.alice.data_dir / "api.json").exists() and not (net.alice.data_dir / "api.token").exists()
        new = ApiServer(net.alice_svc)
        await new.start()
        net.alice_api = new
        assert new.token != old_token
        status, _, _ = await request("GET", new.url + "/v1/identity", headers=old_headers)
        assert status == 401
        status, _, _ = await request("GET", new.url + "/v1/identity", headers=net.headers("alice"))
        assert status == 200

    net.bg.run(restart())


def test_one_node_per_data_directory(net: Net) -> None:
    async def second() -> None:
        other = UserService(net.alice, ServiceConfig())
        with pytest.raises(AlreadyRunning, match="already runs"):
            await other.start()

    net.bg.run(second())


def test_host_header_must_name_this_loopback_server(net: Net) -> None:
    """DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example."""
    api = net.alice_api
    port = api.port

    async def probe() -> None:
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}",
                     f"localhost.evil.example:{port}", ""):
            for path in ("/v1/health", "/v1/identity"):
                status, body, _ = await request("GET", api.url + path, headers={**net.headers("alice"), "Host": host})
                assert status == 421, (host, path, status)
                assert body["error"] == "bad_host" and "DNS rebinding" in body["message"]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
            status, body, _ = await request("GET", api.url + "/v1/identity", headers={**net.headers("alice"), "Host": host})
            assert status == 200 and body["name"] == "Alice", host

    net.bg.run(probe())


def test_rename_sent_list_and_settings(net: Net) -> None:
    async def story() -> None:
        async with net.client("alice") as alice:
            bob_address = net.bob.address.text
            await alice.add_contact(bob_address, "Bob")
            renamed = await alice.rename_contact(bob_address, "  Robert ")
            assert renamed.name == "Robert" and [c.name for c in await alice.contacts()] == ["Robert"]
            with pytest.raises(ApiError) as bad:
                await alice.rename_contact(bob_address, "   ")
            assert bad.value.status == 400
            with pytest.raises(ApiError) as missing:
                await alice.rename_contact(net.alice.address.text, "me")
            assert missing.value.status == 404

            before = (await alice.sent()).total
            sent = await alice.send(bob_address, "for the thread view")
            page = await alice.sent(offset=before)
            assert [(m.id, m.to, m.text, m.acks) for m in page.messages] == [(sent.id, bob_address, "for the thread view", sent.acks)]
            assert page.total == before + 1 and (await alice.all_sent())[-1].id == sent.id
            await alice.remove_contact(bob_address)

            settings = await alice.settings()
            assert settings.data_dir == str(net.alice.data_dir) and settings.width == net.alice.width
            changed = await alice.update_settings(bootstrap=["127.0.0.1:9475", "[::1]:9475", "127.0.0.1:9475"],
                                                  sync_interval=45)
            assert changed.bootstrap == ["127.0.0.1:9475", "[::1]:9475"] and changed.sync_interval == 45.0
            assert net.alice_svc.sync_interval == 45.0
            saved = json.loads((net.alice.data_dir / "settings.json").read_text())
            assert saved == {"bootstrap": ["127.0.0.1:9475", "[::1]:9475"], "sync_interval": 45.0, "tor": None}
            # untraceable mode for the next start: saved, shown, and turned off again
            tor = {"socks": "127.0.0.1:9050", "relays": ["relay.example:9476", "abcdefghijklmnop.onion:80"]}
            changed = await alice.update_settings(tor=tor)
            assert changed.tor == tor and changed.untraceable is False and changed.sync_interval == 45.0
            assert json.loads((net.alice.data_dir / "settings.json").read_text())["tor"] == tor
            assert (await alice.update_settings(tor=None)).tor is None
            assert stat.S_IMODE((net.alice.data_dir / "settings.json").stat().st_mode) == 0o600
            for bad_settings in ({"bootstrap": ["example.org:1"]}, {"bootstrap": ["127.0.0.1:0"]},
                                 {"bootstrap": "127.0.0.1:1"}, {"sync_interval": 0.5}, {"sync_interval": True},
                                 {"sync_interval": 1e999}, {"colour": "red"}, {"tor": "127.0.0.1:9050"},
                                 {"tor": {"socks": "127.0.0.1:9050", "relays": []}},
                                 {"tor": {"socks": "not a port", "relays": ["r:1"]}}):
                status, body, _ = await request("PUT", net.alice_api.url + "/v1/settings",
                                                headers=net.headers("alice"), json=bad_settings)
                assert status == 400 and body["error"] == "bad_request", bad_settings
            await alice.update_settings(bootstrap=[], sync_interval=30)
            assert (await alice.settings()).bootstrap == []

    net.bg.run(story())


# -- the story -----------------------------------------------------------------------------------------------
def test_send_and_inbox_through_two_nodes_apis(net: Net) -> None:
    text = "the printer is fixed, bring paper " + os.urandom(4).hex()

    async def story() -> None:
        async with net.client("alice") as alice, net.client("bob") as bob:
            bob_id = await bob.identity()
            contact = await alice.add_contact(bob_id.address, "Bob")
            assert contact.fingerprint == bob_id.fingerprint and not contact.verified
            assert [c.name for c in await alice.contacts()] == ["Bob"]
            # Verify by fingerprint, as two people compare it, spaces and all.
            assert (await alice.verify_contact(bob_id.fingerprint)).verified

            sent = await alice.send(bob_id.address, text)
            assert len(sent.id) == 40 and sent.acks >= 1

            async def arrived() -> Any:
                await bob.sync()
                page = await bob.messages()
                return [m for m in page.messages if m.id == sent.id]

            [message] = await wait_for(arrived, timeout=15)
            assert message.text == text and message.sender_name == "Alice" and message.request
            assert message.sender_fingerprint == net.alice.fingerprint and not message.read
            assert message.sender_address == net.alice.address.text

            assert (await bob.mark_read(message.id)).read is True
            assert [m.read for m in (await bob.messages()).messages if m.id == sent.id] == [True]
            page = await bob.messages(offset=0, limit=1)
            assert page.total >= 1 and len(page.messages) == 1 and page.limit == 1
            assert (await bob.messages(offset=page.total)).messages == []

            burned = await bob.burn(message.id)
            assert burned.id == message.id and burned.deleted_copies >= 1
            assert all(m.id != message.id for m in await bob.all_messages())
            assert not any(r.store.has_blob(bytes.fromhex(message.id)) for r in net.relays)
            with pytest.raises(ApiError) as again:
                await bob.burn(message.id)
            assert again.value.status == 404 and again.value.code == "not_found"

            # Contacts: remove by public key.
            await alice.remove_contact(bytes(net.bob.identity.verify_key).hex())
            assert await alice.contacts() == []
            with pytest.raises(ApiError) as gone:
                await alice.remove_contact(bob_id.address)
            assert gone.value.status == 404

            status = await bob.status()
            assert status.version == __version__ and status.peers >= 5 and status.routing_table_size == status.peers
            assert status.last_sync is not None and status.last_sync_error is None and status.uptime_s >= 0
            assert status.counters.get("datagrams_in", 0) > 0
            assert (await bob.qr_png(scale=2)).startswith(b"\x89PNG\r\n\x1a\n")

    net.bg.run(story())


def test_bad_input_is_a_clear_4xx(net: Net) -> None:
    url, auth = net.alice_api.url, net.headers("alice")
    address = net.bob.address.text
    typo = address[:-3] + ("q" if address[-3] != "q" else "p") + address[-2:]

    async def probe() -> None:
        cases: list[tuple[str, str, dict[str, Any], int, str]] = [
            ("POST", "/v1/messages", {"json": {"to": typo, "text": "hi"}}, 400, "checksum"),
            ("POST", "/v1/messages", {"json": {"to": address, "text": "x" * 2000}}, 400, "bytes"),
            ("POST", "/v1/messages", {"json": {"to": address}}, 400, "missing"),
            ("POST", "/v1/messages", {"json": {"to": address, "text": "hi", "ttl": 5}}, 400, "unknown"),
            ("POST", "/v1/messages", {"json": {"to": address, "text": 5}}, 400, "string"),
            ("POST", "/v1/messages", {"json": ["to", address]}, 400, "object"),
            ("POST", "/v1/messages", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
            ("POST", "/v1/messages", {"data": b'{"to": "\\ud800", "text": "x"}',
                                      "headers": {"Content-Type": "application/json"}}, 400, "surrogate"),
            ("POST", "/v1/messages", {"data": b"to=x", "headers": {"Content-Type": "text/plain"}}, 415, "json"),
            ("POST", "/v1/messages", {"data": b"{" + b" " * MAX_BODY + b"}",
                                      "headers": {"Content-Type": "application/json"}}, 413, "larger"),
            ("POST", "/v1/contacts", {"json": {"address": address, "name": "   "}}, 400, "name"),
            ("GET", "/v1/messages?limit=0", {}, 400, "limit"),
            ("GET", "/v1/messages?offset=-1", {}, 400, "offset"),
            ("GET", "/v1/messages?offset=1&offset=2", {}, 400, "offset"),
            ("GET", "/v1/messages?limit=1e3", {}, 400, "limit"),
            ("GET", "/v1/identity/qr.png?scale=99", {}, 400, "scale"),
            ("POST", "/v1/messages/XYZ/read", {}, 400, "message id"),
            ("POST", "/v1/messages/" + "ab" * 20 + "/read", {}, 404, "no message"),
            ("POST", "/v1/messages/" + "ab" * 20 + "/burn", {}, 404, "no message"),
            ("POST", "/v1/contacts/nobody/verify", {}, 404, "public key"),
            ("POST", f"/v1/contacts/{quote(net.bob.fingerprint)}/verify", {}, 404, "fingerprint"),
            ("DELETE", "/v1/contacts/" + "00" * 32, {}, 404, "no contact"),
            ("GET", "/v1/nothing-here", {}, 404, "Not Found"),
            ("PUT", "/v1/messages", {}, 405, "Not Allowed"),
        ]
        for method, path, kw, want, words in cases:
            headers = {**auth, **kw.pop("headers", {})}
            status, body, hdrs = await request(method, url + path, headers=headers, **kw)
            assert status == want, (method, path, status, body)
            assert set(body) == {"error", "message"} and words.lower() in body["message"].lower(), body
            if status == 405:
                assert "GET" in hdrs["Allow"] and "POST" in hdrs["Allow"]

    net.bg.run(probe())


# -- the event stream -------------------------------------------------------------------------------------------
def test_event_stream_delivers_a_new_message_without_polling(net: Net) -> None:
    text = "stream me " + os.urandom(4).hex()

    async def stream() -> None:
        async with net.client("alice") as alice, net.client("bob") as bob:
            events = bob.events()
            first = await asyncio.wait_for(events.__anext__(), 10)
            assert first.kind == "status" and first.status is not None and first.status.peers >= 1
            sent = await alice.send(net.bob.address.text, text)
            started = time.monotonic()

            async def next_message() -> Any:
                async for event in events:
                    if event.kind == "message" and event.data["id"] == sent.id:
                        return event
                raise AssertionError("the stream ended")

            # Nobody asks Bob's node to sync: its own periodic sync (1 s here) finds the message and pushes it.
            event = await asyncio.wait_for(next_message(), 15)
            assert event.message is not None and event.message.text == text
            assert event.message.sender_fingerprint == net.alice.fingerprint
            assert time.monotonic() - started < 15
            await events.aclose()

    net.bg.run(stream())


# -- OpenAPI --------------------------------------------------------------------------------------------------
def test_openapi_document_describes_exactly_the_routes(net: Net) -> None:
    doc = json.loads(openapi_document())
    assert doc["openapi"].startswith("3.") and doc["info"]["version"] == __version__
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(r.method, r.resource.canonical) for r in net.alice_api.app.router.routes() if r.resource is not None}
    assert documented == served
    # The file in the repository is what the node serves.
    assert (Path(__file__).parent.parent / "komrade_dht" / "api" / "openapi.json").read_bytes() == openapi_document()

    async def served_doc() -> None:
        status, body, _ = await request("GET", net.alice_api.url + "/v1/openapi.json", headers=net.headers("alice"))
        assert status == 200 and body == doc

    net.bg.run(served_doc())


# Generated from the document in the package (the same bytes the node serves, checked above), sent to the live
# node over HTTP. The event stream never ends, so it is tested above rather than fuzzed.
schema = schemathesis.openapi.from_dict(json.loads(openapi_document())).exclude(path="/v1/events")


#: Operations whose bodies carry an address, a DM text or a peer: JSON Schema can say neither "its bech32m checksum
#: holds", "its UTF-8 fits one envelope with the sender's name" nor "a valid IP and a port from 1 to 65535", so a
#: schema-valid body may rightly get 400 there.
CHECKSUMMED = {"POST /v1/messages", "GET /v1/messages/room", "POST /v1/contacts", "PUT /v1/settings",
               # issue 10: addresses again, and what JSON Schema cannot tie together (a local post or
               # feed needs a position, a friends post cannot be anonymous, a picture path must be a picture)
               "POST /v1/posts", "POST /v1/friends", "DELETE /v1/friends/{address}", "PUT /v1/profile",
               "GET /v1/profiles/{address}", "GET /v1/profiles/{address}/photo", "GET /v1/feeds/{feed}",
               "POST /v1/feeds/{feed}/refresh",
               # issue 11: addresses again, and times JSON Schema cannot tie to now (an event must not have ended
               # and must end within 30 days) or to each other (it ends after it starts); positions in a query are
               # plain decimals (5e-324 is a schema-valid number), as for the feeds
               "POST /v1/organize/events", "POST /v1/organize/collectives", "POST /v1/organize/collectives/{cid}/join",
               "GET /v1/organize/pins"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz_finds_no_5xx_and_no_schema_violation(case: Any, net: Net) -> None:
    excluded = [positive_data_acceptance] if case.operation.label in CHECKSUMMED else []
    # The only header the document declares is Authorization (from its security scheme): when schemathesis made
    # that header invalid on purpose (dropped or garbled), send its case as it is, so the node must answer 401.
    bad_auth = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    case.call_and_validate(
        base_url=net.alice_api.url,
        headers=None if bad_auth else net.headers("alice"),
        excluded_checks=excluded,
        timeout=30,
    )


# -- the client without a node ---------------------------------------------------------------------------------
def test_client_says_clearly_when_no_node_runs(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunning, match="komrade node"):
        ApiClient.from_data_dir(tmp_path)
    assert node_running(tmp_path) is False
    # A node that died without cleaning up: its files remain, nobody listens.
    (tmp_path / "api.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 1}))
    (tmp_path / "api.token").write_text("stale")
    assert node_running(tmp_path) is False
    with SyncApiClient.from_data_dir(tmp_path) as api, pytest.raises(NodeNotRunning, match="does not answer"):
        api.status()


# -- `komrade node` and the CLI through it -------------------------------------------------------------------------
def run_cli(args: list[str], home: Path, passphrase: str | None, **kw: Any) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KOMRADE_PASSPHRASE"}
    if passphrase is not None:
        env["KOMRADE_PASSPHRASE"] = passphrase
    return subprocess.run(KOMRADE + ["--data-dir", str(home), *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, **kw)


def test_komrade_node_daemon_serves_send_and_inbox(net: Net) -> None:
    carol = net.tmp / "carol"
    assert run_cli(["init", "--name", "Carol"], carol, "carol's words").returncode == 0
    relay = "%s:%d" % net.relays[2].address
    env = dict(os.environ, KOMRADE_PASSPHRASE="carol's words")
    daemon = subprocess.Popen(
        KOMRADE + ["--data-dir", str(carol), "node", "--bootstrap", relay, "--bootstrap-file", os.devnull,
                   "--sync-interval", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        line = daemon.stdout.readline()  # the daemon prints where its API listens once it is up
        assert line.startswith("API on http://127.0.0.1:"), line + (daemon.stderr.read() if not line else "")
        assert node_running(carol)
        assert run_cli(["node"], carol, "carol's words").stderr.count("already runs") == 1

        # No passphrase in the environment and no terminal: these can only work through the running node's API.
        text = "the daemon carried this " + os.urandom(3).hex()
        sent = run_cli(["send", net.bob.address.text, text], carol, None)
        assert sent.returncode == 0 and sent.stdout.startswith("sent "), sent.stderr
        message_id = sent.stdout.split()[1]

        async def bob_has_it() -> Any:
            await net.bob_svc.sync()
            return [m for m in net.bob_svc.messages(0, 500).messages if m.id == message_id]

        [got] = net.bg.run(wait_for(bob_has_it, timeout=15))
        assert got.text == text and got.sender_name == "Carol"

        reply = "got it " + os.urandom(3).hex()
        net.bg.run(net.bob_svc.send(got.sender_address, reply))
        inbox = run_cli(["inbox", "--json"], carol, None)
        assert inbox.returncode == 0, inbox.stderr
        doc = json.loads(inbox.stdout)
        assert [m["text"] for m in doc["messages"]] == [reply] and doc["messages"][0]["sender_name"] == "Bob"
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=20)
        errors = daemon.stderr.read()
        daemon.stdout.close()
        daemon.stderr.close()
        assert code == 0, errors
    assert not (carol / "api.json").exists() and not (carol / "api.token").exists()
    assert not node_running(carol)
