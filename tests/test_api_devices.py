"""This identity's devices through the local API over real HTTP on 127.0.0.1 (issue 14): list, pair (the code and
its QR while the node waits in the background), remove; a new device joins with the code as `komrade device join`
does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

from komrade_dht.api.server import ApiServer
from komrade_dht.service import ServiceConfig, UserService
from komrade_dht.social import pairing

from .support import FAST_KDF, account, client, shutdown, start_relays, wait_for
from .test_api_posts import CONFIG, _raw


def test_list_pair_and_remove_devices_through_the_api(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 20, CONFIG)
        alice = account(tmp_path, "Alice")
        svc = UserService(alice, ServiceConfig(bootstrap=(relays[0].address,), node=CONFIG, sync_interval=3600))
        api: ApiServer | None = None
        phone = None
        nodes = list(relays)
        try:
            await svc.start()
            api = ApiServer(svc)
            await api.start()
            status, listed = await _raw("GET", api, "/v1/devices")
            assert status == 200 and listed == {"root": True, "removed": False, "pairing": None, "devices": [
                {"key": alice.identity.verify_key.hex(), "name": "first device", "added": alice.created,
                 "root": True, "this": True}]}
            assert (await _raw("GET", api, "/v1/pairing"))[0] == 404
            assert (await _raw("GET", api, "/v1/pairing/qr.png"))[0] == 404

            status, room = await _raw("GET", api, "/v1/messages/room?to=" + quote(alice.address.text))
            assert status == 200 and room["devices"] == 1, room  # type: ignore[index]
            one_device = room["text_bytes"]  # type: ignore[index]
            assert (await _raw("GET", api, "/v1/messages/room"))[0] == 400
            status, body = await _raw("GET", api, "/v1/messages/room?to=nobody")
            assert status == 400 and "address" in body["message"], body  # type: ignore[index]

            status, made = await _raw("POST", api, "/v1/pairing")
            assert status == 201 and made["state"] == "waiting" and made["code"].startswith("komrade-pair:")
            status, png = await _raw("GET", api, "/v1/pairing/qr.png?scale=4")
            assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
            assert (await _raw("GET", api, "/v1/pairing/qr.png?scale=99"))[0] == 400

            phone_node = await client(relays[5].address, CONFIG)
            nodes.append(phone_node)
            phone = await pairing.join(tmp_path / "phone", phone_node, made["code"], "phone", "pw", timeout=60,
                                       **FAST_KDF)

            async def paired() -> dict | None:
                state = (await _raw("GET", api, "/v1/pairing"))[1]
                return state if state["state"] == "paired" else None  # type: ignore[index]

            state = await wait_for(paired, timeout=30)
            assert state["device"]["key"] == phone.device.verify_key.hex()
            names = [d["name"] for d in (await _raw("GET", api, "/v1/devices"))[1]["devices"]]  # type: ignore[index]
            assert names == ["first device", "phone"]
            # a DM to Alice now carries a header per device: less room for its text (what the compose field shows)
            status, room = await _raw("GET", api, "/v1/messages/room?to=" + quote(alice.address.text))
            assert status == 200 and room["devices"] == 2 and room["text_bytes"] < one_device - 90, room  # type: ignore[index]

            # The phone runs a node of its own: it syncs, lists itself, posts to the world as Alice, and refuses what
            # needs the root key with a clear 400 (pairing, a friends post), never a 5xx.
            phone_svc = UserService(phone, ServiceConfig(bootstrap=(relays[9].address,), node=CONFIG,
                                                         sync_interval=3600))
            phone_api = None
            try:
                await phone_svc.start()
                phone_api = ApiServer(phone_svc)
                await phone_api.start()
                status, synced = await _raw("POST", phone_api, "/v1/sync")
                assert status == 200, synced
                status, listed = await _raw("GET", phone_api, "/v1/devices")
                assert status == 200 and listed["root"] is False  # type: ignore[index]
                assert [d["this"] for d in listed["devices"]] == [False, True]  # type: ignore[index]
                status, body = await _raw("POST", phone_api, "/v1/pairing")
                assert status == 400 and "root key" in body["message"], body  # type: ignore[index]
                status, body = await _raw("POST", phone_api, "/v1/posts", json={"text": "friends?", "to": "friends"})
                assert status == 400 and "circle key" in body["message"], body  # type: ignore[index]
                # a world post works from the phone, and Alice's own node shows it as hers
                status, sent = await _raw("POST", phone_api, "/v1/posts", json={"text": "as Alice, from the phone"})
                assert status == 201, sent

                async def on_alices_node() -> dict | None:
                    status, page = await _raw("POST", api, "/v1/feeds/world/refresh")
                    assert status == 200, page
                    return next((p for p in page["posts"] if p["id"] == sent["id"]), None)  # type: ignore[index]

                post = await wait_for(on_alices_node, timeout=30, interval=0.3)
                assert post["text"] == "as Alice, from the phone" and post["author_fingerprint"] == alice.fingerprint
                status, identity = await _raw("GET", phone_api, "/v1/identity")
                assert status == 200 and identity["address"] == alice.address.text  # type: ignore[index]
            finally:
                if phone_api is not None:
                    await phone_api.close()
                await phone_svc.close()

            # bad input and unknown devices: 4xx with a reason
            status, body = await _raw("DELETE", api, "/v1/devices/" + alice.identity.verify_key.hex())
            assert status == 400 and "cannot be removed" in body["message"]  # type: ignore[index]
            assert (await _raw("DELETE", api, "/v1/devices/nothing"))[0] == 404
            status, removed = await _raw("DELETE", api, "/v1/devices/" + phone.device.verify_key.hex())
            assert status == 200 and removed["name"] == "phone"  # type: ignore[index]
            assert (await _raw("DELETE", api, "/v1/devices/" + phone.device.verify_key.hex()))[0] == 404
        finally:
            if api is not None:
                await api.close()
            await svc.close()
            await shutdown(nodes, (alice,) + ((phone,) if phone else ()))

    asyncio.run(scenario())
