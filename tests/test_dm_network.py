"""The core story on a real loopback network: a DM reaches a recipient who was offline when it was sent."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from komrade_dht.envelope import envelope_id
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.slots import SlotParams, key_prefix, slot_id
from komrade_dht.social import burn, inbox, mark_read, send_dm, sync_inbox
from komrade_dht.storage import Store

from .support import account, shutdown, client, files_containing, start_relays, wait_for

WIDTH = 2  # four slots per epoch: Bob and Carol are made to share one


def co_tenant_seed(verify_key: bytes) -> bytes:
    """A seed whose identity shares ``verify_key``'s slot prefix at WIDTH bits (Carol shares Bob's slot)."""
    while True:
        seed = os.urandom(32)
        if key_prefix(Identity.from_seed(seed).verify_key, WIDTH) == key_prefix(verify_key, WIDTH):
            return seed


def test_dm_reaches_offline_recipient_and_co_tenant_reads_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 24)
        alice = account(tmp_path, "Alice")
        bob = account(tmp_path, "Bob", width=WIDTH)
        carol = account(tmp_path, "Carol", width=WIDTH, seed=co_tenant_seed(bob.identity.verify_key))
        text = "meet me at the library at noon, the usual place " + os.urandom(6).hex()
        other_nodes: list[KomradeNode] = []
        try:
            # Bob has never been online: Alice only has his address text.
            alice_node = await client(relays[3].address)
            other_nodes.append(alice_node)
            key = await send_dm(alice, alice_node, bob.address.text, text)
            # through a stem, then a quorum of holders, then the rest of the k closest in the background
            await wait_for(lambda: sum(r.store.has_blob(key) for r in relays) >= 8, timeout=20)
            await alice_node.stop_async()

            # A third of the relays go away, the holders among them included.
            stopped = relays[:8]
            for relay in stopped:
                await relay.stop_async()
            alive = relays[8:]

            bob_node = await client(alive[5].address)
            other_nodes.append(bob_node)
            new = await sync_inbox(bob, bob_node)
            assert [m.text for m in new] == [text]
            message = new[0]
            assert message.sender_fingerprint == alice.fingerprint
            assert message.sender_address == alice.address.text
            assert message.sender_name == "Alice"
            assert message.request, "Alice is not in Bob's contacts, so this is a message request"
            assert [m.id for m in inbox(bob)] == [key.hex()]
            # A second sync finds nothing new and delivers nothing twice.
            assert await sync_inbox(bob, bob_node) == []

            # Carol shares Bob's slot: she downloads the same envelope and can read none of it.
            assert slot_id(carol.identity.verify_key, WIDTH, 0) == slot_id(bob.identity.verify_key, WIDTH, 0)
            carol_node = await client(alive[0].address)
            other_nodes.append(carol_node)
            slot = slot_id(carol.identity.verify_key, WIDTH, SlotParams().epoch(time.time()))
            downloaded = await carol_node.fetch_slot(slot)
            assert key in {envelope_id(d) for d in downloaded}
            assert await sync_inbox(carol, carol_node) == []
            assert inbox(carol) == []

            # The plaintext is on no disk: not the relays', not Alice's, not Bob's (his copy is encrypted at rest).
            assert files_containing(tmp_path, text.encode()) == []
            assert files_containing(tmp_path, text.encode("utf-16-le")) == []
        finally:
            for node in other_nodes + relays[8:]:
                await node.stop_async()
            for acct in (alice, bob, carol):
                acct.close()
        # after closing (WAL checkpointed into the main files), still nowhere
        assert files_containing(tmp_path, text.encode()) == []

    asyncio.run(scenario())


def test_expired_envelopes_disappear_from_every_node(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = NodeConfig(purge_interval=0.3, stem=None)  # published directly: this is about expiry, not stems
        relays = await start_relays(tmp_path, 6, config)
        alice, bob = account(tmp_path, "Alice"), account(tmp_path, "Bob")
        node = await client(relays[1].address, config)
        try:
            key = await send_dm(alice, node, bob.address.text, "this will self-destruct", ttl=3)
            assert sum(r.store.has_blob(key) for r in relays) >= 3, "a quorum holds it when send_dm returns"
            await wait_for(lambda: all(r.store.stats().blobs == 0 for r in relays), timeout=10)
            assert all(r.store.stats().slot_entries == 0 for r in relays)
            assert await sync_inbox(bob, node) == []
        finally:
            await shutdown([node, *relays], (alice, bob))

    asyncio.run(scenario())


def test_relay_restarted_from_its_data_dir_still_serves(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path, 5)
        alice, bob = account(tmp_path, "Alice"), account(tmp_path, "Bob")
        node = await client(relays[0].address)
        key = await send_dm(alice, node, bob.address.text, "still here after a restart")
        await node.stop_async()
        old_id = relays[4].node.id
        for relay in relays:
            await relay.stop_async()
        # Only relay 4 comes back, from its files, on a new port.
        restarted = KomradeNode(Store(tmp_path / "relay4" / "relay.sqlite"), state_dir=tmp_path / "relay4")
        await restarted.listen(0, "127.0.0.1")
        try:
            assert restarted.node.id == old_id, "a relay keeps its node id across restarts"
            assert restarted.store.has_blob(key)
            bob_node = await client(restarted.address)
            new = await sync_inbox(bob, bob_node)
            assert [m.text for m in new] == ["still here after a restart"]
            await bob_node.stop_async()
        finally:
            await restarted.stop_async()
            alice.close()
            bob.close()

    asyncio.run(scenario())


def test_burn_deletes_every_copy_and_needs_the_secret(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path, 6)
        late = await start_relays(tmp_path / "late", 1)  # a relay outside the network: no copy reaches it
        alice, bob = account(tmp_path, "Alice"), account(tmp_path, "Bob")
        node = await client(relays[2].address)
        try:
            key = await send_dm(alice, node, bob.address.text, "burn after reading")
            burned_copy = relays[0].store.get_blob(key)
            [message] = await sync_inbox(bob, node)
            assert sum(r.store.has_blob(key) for r in relays) == 6
            # Without the secret (a guess), nobody deletes anything.
            ok, reply = await node.protocol.call(relays[0].address, "burn", key, bytes(16))
            assert (ok, reply) == (False, "wrong_burn_secret") and relays[0].store.has_blob(key)
            assert mark_read(bob, message.id).read is True
            secret = bob.data.get("burn", key)["secret"]
            [stored] = [box for (box,) in bob.data._db.execute("SELECT box FROM items WHERE kind='message'")]
            assert files_containing(bob.data_dir, stored[-48:])  # the encrypted row, before the burn
            deleted = await burn(bob, node, message.id)
            assert deleted == 6
            # and after it, not even its ciphertext: zeroed, and the write-ahead log emptied (a passphrase given up
            # later opens nothing of it)
            assert not files_containing(bob.data_dir, stored[-48:])
            assert not any(r.store.has_blob(key) for r in relays)
            assert inbox(bob) == []
            # A copy that comes back (from a holder that missed the burn) is refused.
            slot = slot_id(bob.identity.verify_key, bob.width, SlotParams().epoch(time.time()))
            ok, reply = await node.protocol.call(relays[0].address, "append", slot, burned_copy)
            assert (ok, reply) == (False, "burned")
            assert not relays[0].store.has_blob(key)
            # A burn that comes before the copy (the flood still on its way) stops that copy.
            assert not late[0].store.has_blob(key)
            ok, reply = await node.protocol.call(late[0].address, "burn", key, secret)
            assert ok and reply is False  # nothing held yet
            ok, reply = await node.protocol.call(late[0].address, "append", slot, burned_copy)
            assert (ok, reply) == (False, "burned") and not late[0].store.has_blob(key)
        finally:
            await shutdown([node, *relays, *late], (alice, bob))

    asyncio.run(scenario())


def test_a_node_whose_every_contact_timed_out_rejoins_instead_of_failing(tmp_path: Path) -> None:
    """A suspended laptop or a stalled loop can time out every contact, and two timeouts evict one: the table is then
    empty. The next operation joins again through the peers the node joined through (CI once saw a client's vote
    registration fail with "0 slot holders tried")."""

    async def scenario() -> None:
        relays = await start_relays(tmp_path, 6)
        alice, bob = account(tmp_path, "Alice"), account(tmp_path, "Bob")
        node = await client(relays[2].address)
        try:
            router = node.protocol.router
            while contacts := [n for b in router.buckets for n in b.get_nodes()]:
                for n in contacts:
                    router.remove_contact(n)
            assert node.protocol.contact_count() == 0
            await send_dm(alice, node, bob.address.text, "still here")
            assert node.protocol.counters["rejoins"] == 1 and node.protocol.contact_count() > 0
            [got] = await wait_for(lambda: sync_inbox(bob, node), timeout=20)
            assert got.text == "still here"
        finally:
            await shutdown([node, *relays], (alice, bob))

    asyncio.run(scenario())
