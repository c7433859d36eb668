"""One identity on several devices, with real revocation (issue 14), on a real loopback network."""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from komrade_dht import envelope as env
from komrade_dht.errors import DeviceError, KomradeError, RootKeyAbsent
from komrade_dht.identity import Identity
from komrade_dht.node import NodeConfig
from komrade_dht.social.dm import MAX_TEXT_BYTES
from komrade_dht.address import encode_address
from komrade_dht.social import Account, burn, devices, friends, inbox, mark_read, pairing, send_dm, sync_inbox

from .support import CHEAP_POW, FAST_KDF, account, client, shutdown, start_relays, wait_for

CONFIG = NodeConfig(pow=CHEAP_POW, id_bits=0)


def paired_device(tmp: Path, root: Account, name: str) -> Account:
    """A device of ``root``'s identity with keys of its own (what pairing makes; its certificate comes later)."""
    return Account.create_paired(tmp / name, root.identity.public, root.name, root.width, f"{name} passphrase",
                                 os.urandom(32), **FAST_KDF)


@asynccontextmanager
async def certified_phone_and(tmp: Path, other: str) -> AsyncIterator[tuple[Any, ...]]:
    """12 relays; Alice's laptop and a phone paired to it (certificate installed); ``other``, a second person; each
    on a client node. Yields ``(relays, nodes, laptop, phone, other, laptop_node, phone_node, other_node)``;
    ``nodes`` (every node, stopped at the end) takes more."""
    relays = await start_relays(tmp / "net", 12, CONFIG)
    laptop = account(tmp, "Alice")
    phone = paired_device(tmp, laptop, "phone")
    person = account(tmp, other)
    nodes = list(relays)
    try:
        laptop_node, phone_node, other_node = [await client(relays[i].address, CONFIG) for i in (2, 5, 9)]
        nodes += [laptop_node, phone_node, other_node]
        devices.install_certificate(phone, await devices.add_device(laptop, laptop_node, phone.device.verify_key,
                                                                    "phone"))
        yield relays, nodes, laptop, phone, person, laptop_node, phone_node, other_node
    finally:
        await shutdown(nodes, (laptop, phone, person))


def test_two_devices_read_offline_mail_and_a_removed_device_is_cut_off(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 20, CONFIG)
        laptop = account(tmp_path, "Alice")
        phone = paired_device(tmp_path, laptop, "phone")
        sam = account(tmp_path, "Sam")
        nodes = list(relays)
        try:
            laptop_node, phone_node, sam_node = [await client(relays[i].address, CONFIG) for i in (2, 7, 12)]
            nodes += [laptop_node, phone_node, sam_node]
            assert phone.identity.verify_key == laptop.identity.verify_key and not phone.has_root
            assert phone.device.verify_key != laptop.identity.verify_key
            with pytest.raises(RootKeyAbsent):
                phone.identity.sign(b"anything")

            # The laptop lists the phone and publishes the list; the phone keeps its certificate.
            cert = await devices.add_device(laptop, laptop_node, phone.device.verify_key, "phone")
            devices.install_certificate(phone, cert)
            with pytest.raises(DeviceError, match="already listed"):
                await devices.add_device(laptop, laptop_node, phone.device.verify_key, "phone")
            assert [d.name for d in devices.my_devices(laptop)] == ["first device", "phone"]

            # Sam writes while both devices are offline: the envelope carries one header per device.
            first = await send_dm(sam, sam_node, laptop.address.text, "both of you, read this")
            held = await wait_for(lambda: relays_holding(relays, first), timeout=30)
            assert held[0][30] == 2
            with pytest.raises(KomradeError, match="to 2 devices holds at most"):
                await send_dm(sam, sam_node, laptop.address.text, "x" * MAX_TEXT_BYTES)
            assert [m.text for m in await sync_inbox(laptop, laptop_node)] == ["both of you, read this"]
            got = await sync_inbox(phone, phone_node)
            assert [(m.text, m.sender_address) for m in got] == [("both of you, read this", sam.address.text)]
            await devices.keep_list(phone, phone_node)
            assert [d.name for d in devices.my_devices(phone)] == ["first device", "phone"]

            # The phone answers as Alice, with its own key and its certificate: Sam sees Alice.
            await send_dm(phone, phone_node, sam.address.text, "from my phone")
            got = await sync_inbox(sam, sam_node)
            assert [(m.text, m.sender_address, m.sender_fingerprint) for m in got] == [
                ("from my phone", laptop.address.text, laptop.fingerprint)]

            # A copy restored from the recovery phrase holds the root key: it reads everything and follows the list.
            copy = account(tmp_path, "Copy", seed=laptop.identity.seed)
            nodes.append(copy_node := await client(relays[15].address, CONFIG))
            try:
                assert [m.text for m in await sync_inbox(copy, copy_node)] == ["both of you, read this"]
                assert [d.name for d in devices.my_devices(copy)] == ["first device", "phone"]
            finally:
                copy.close()

            # The laptop removes the phone.
            removed = await devices.remove_device(laptop, laptop_node, phone.device.verify_key.hex())
            assert removed.name == "phone"
            with pytest.raises(DeviceError, match="cannot be removed"):
                await devices.remove_device(laptop, laptop_node, laptop.identity.verify_key.hex())
            with pytest.raises(DeviceError, match="no device"):
                await devices.remove_device(laptop, laptop_node, "zz")

            # The removed phone still writes as Alice; Sam, opening it a minute later, looks at Alice's list first
            # (his copy is a minute old) and refuses it.
            await send_dm(phone, phone_node, sam.address.text, "still me?")
            later = time.time() + devices.LIST_MAX_AGE + 1
            assert await sync_inbox(sam, sam_node, now=later) == []

            # Sam's next DM to Alice is sealed to the new list: one header, the laptop's.
            second = await send_dm(sam, sam_node, laptop.address.text, "only the laptop now")
            data = (await wait_for(lambda: relays_holding(relays, second), timeout=30))[0]
            assert data[30] == 1
            assert [m.text for m in await sync_inbox(laptop, laptop_node)] == ["only the laptop now"]
            # The phone's keys cannot open it (tried directly), its sync finds nothing, its old mail stays.
            assert env.TrialDecryptor(phone.identity, [phone.device]).open(data) is None
            assert await sync_inbox(phone, phone_node) == []
            assert [m.text for m in inbox(phone)] == ["both of you, read this"]
            # Its sync refreshed its copy of the list: it knows it was removed and says so instead of sending.
            assert not any(d.this for d in devices.my_devices(phone))
            with pytest.raises(DeviceError, match="was removed"):
                await send_dm(phone, phone_node, sam.address.text, "hello?")
            # A stranger's key opens nothing either.
            assert env.TrialDecryptor(Identity.generate()).open(data) is None
        finally:
            await shutdown(nodes, (laptop, phone, sam))

    asyncio.run(scenario())


def relays_holding(relays: list, key: bytes) -> list[bytes]:
    return [r.store.get_blob(key) for r in relays if r.store.has_blob(key)]


def test_an_envelope_sealed_to_several_device_keys_opens_with_each_and_names_the_identity() -> None:
    root, sender = Identity.generate(), Identity.generate()
    phones = [Identity.generate() for _ in range(2)]
    keys = [root.public.box_public_key] + [p.public.box_public_key for p in phones]
    data = env.seal(sender, root.public, b"hi", to_keys=keys, tag=bytes(16))
    assert data[30] == 3 and len(env.tags_of(data)) == 3 and bytes(16) in env.tags_of(data)
    for opener in (env.TrialDecryptor(root), *(env.TrialDecryptor(root.public, [p]) for p in phones)):
        opened = opener.open(data)
        assert opened is not None and opened.body == b"hi" and opened.recipient == root.verify_key
    assert env.TrialDecryptor(Identity.generate()).open(data) is None
    # a device key opening an envelope that names another identity is refused (a forwarded copy)
    with pytest.raises(env.EnvelopeError, match="names another recipient"):
        env.TrialDecryptor(Identity.generate().public, [phones[0]]).open(data)
    with pytest.raises(env.EnvelopeError, match="1..8"):
        env.seal(sender, root.public, b"hi", to_keys=[os.urandom(32) for _ in range(9)])


def test_a_device_certificate_must_be_the_identitys(tmp_path: Path) -> None:
    root = account(tmp_path, "Root")
    phone = paired_device(tmp_path, root, "phone")
    try:
        with pytest.raises(DeviceError, match="does not check"):
            devices.install_certificate(phone, devices.certificate(Identity.generate(), phone.device.verify_key))
        with pytest.raises(DeviceError, match="needs no certificate"):
            devices.install_certificate(root, devices.certificate(root.identity, phone.device.verify_key))
        with pytest.raises(DeviceError, match="no certificate"):
            devices.signer(phone, b"x", "dm")
        devices.install_certificate(phone, devices.certificate(root.identity, phone.device.verify_key))
        sender, body, content_type = devices.signer(phone, b"x", "dm")
        assert sender == phone.device and content_type == "via/dm"
        # reopened from its keystore, the phone is still a paired device of the same identity
        phone.close()
        phone = Account.open(tmp_path / "phone", "phone passphrase")
        assert phone.identity.verify_key == root.identity.verify_key and not phone.has_root
        assert phone.data.get("device_cert", b"me") is not None
        with pytest.raises(DeviceError, match="1 to 32"):
            devices.clean_name(" ")
    finally:
        root.close()
        phone.close()


def test_pairing_and_own_devices_sync(tmp_path: Path) -> None:
    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", 20, CONFIG)
        laptop = account(tmp_path, "Alice")
        bob = account(tmp_path, "Bob")
        phone = None
        nodes = list(relays)
        try:
            laptop_node, phone_node, bob_node, other_node = [await client(relays[i].address, CONFIG)
                                                             for i in (2, 7, 12, 17)]
            nodes += [laptop_node, phone_node, bob_node, other_node]
            laptop.add_contact(bob.address.text, "Bob")
            bob.add_contact(laptop.address.text, "Alice")

            # A malformed or expired code is refused before anything is published.
            with pytest.raises(DeviceError, match="not a pairing code"):
                pairing.parse_code("komrade-pair:hello")
            stale = pairing.PairingCode(os.urandom(16), int(time.time()) - 1)
            with pytest.raises(DeviceError, match="expired"):
                await pairing.join(tmp_path / "late", other_node, stale.text, "tablet", "pw", **FAST_KDF)
            assert not (tmp_path / "late").exists()

            code = pairing.new_code(laptop)
            assert pairing.parse_code(code.text[len(pairing.PREFIX):].lower().replace("-", " ")) == code
            added, phone = await asyncio.gather(
                pairing.accept(laptop, laptop_node, code, timeout=60),
                pairing.join(tmp_path / "phone", phone_node, code.text, "phone", "phone pw", timeout=60, **FAST_KDF),
            )
            assert added.name == "phone" and added.key == phone.device.verify_key.hex()
            assert phone.identity.verify_key == laptop.identity.verify_key and not phone.has_root
            assert not (tmp_path / "phone" / "identity.keystore").read_bytes().count(laptop.identity.seed)
            # The code is spent: another device, or the first device again, is refused with a clear error.
            with pytest.raises(DeviceError, match="already used"):
                await pairing.join(tmp_path / "thief", other_node, code.text, "thief", "pw", **FAST_KDF)
            with pytest.raises(DeviceError, match="already used"):
                await pairing.accept(laptop, laptop_node, code)
            # The pairing envelope opens with the phone's key only: not the laptop's, a stranger's, nor the code's.
            replies = await other_node.fetch_slot(code.reply_slot)
            assert len(replies) == 1
            assert env.TrialDecryptor(phone.device).open(replies[0]) is not None
            assert env.TrialDecryptor(laptop.identity).open(replies[0]) is None
            assert env.TrialDecryptor(Identity.generate()).open(replies[0]) is None
            assert env.open_shared(replies[0], code.key) is None

            # The contacts came through own-devices sync.
            await sync_inbox(phone, phone_node)
            assert [c.name for c in phone.contacts()] == ["Bob"]

            # Bob's circle key (a DM of another type) reaches both devices too: the phone can read his friends' posts.
            friends.add_friend(bob, laptop.address.text)
            assert await friends.deliver_keys(bob, bob_node) == 1
            await sync_inbox(laptop, laptop_node)
            assert phone.data.get("circle_in", bob.identity.verify_key) is None
            await sync_inbox(phone, phone_node)
            assert phone.data.get("circle_in", bob.identity.verify_key) is not None

            # Bob writes while both are offline; both read it.
            first = await send_dm(bob, bob_node, laptop.address.text, "hello both")
            assert [m.text for m in await sync_inbox(laptop, laptop_node)] == ["hello both"]
            assert [m.text for m in await sync_inbox(phone, phone_node)] == ["hello both"]

            # Each shows what the other sent, the longest DM too (its copy takes two envelopes).
            longest = "L" * (MAX_TEXT_BYTES - 8)
            await send_dm(laptop, laptop_node, bob.address.text, longest)
            await send_dm(phone, phone_node, bob.address.text, "from the phone")
            await sync_inbox(laptop, laptop_node)
            await sync_inbox(phone, phone_node)
            for device in (laptop, phone):
                assert sorted(r["text"] for r in device.data.all("sent")) == sorted(["from the phone", longest])
                assert device.data.all("devsync_parts") == []
            assert sorted(m.text for m in await sync_inbox(bob, bob_node)) == sorted(["from the phone", longest])

            # A read mark on the phone shows on the laptop; a burn on the laptop shows on the phone.
            mark_read(phone, first.hex())
            await sync_inbox(phone, phone_node)
            await sync_inbox(laptop, laptop_node)
            assert [m.read for m in inbox(laptop)] == [True]
            await burn(laptop, laptop_node, first.hex())
            await sync_inbox(phone, phone_node)
            assert inbox(phone) == [] and inbox(laptop) == []

            # A contact added on the laptop appears on the phone; renamed on the phone, renamed on the laptop;
            # removed on the laptop, gone on the phone.
            carol = Identity.generate()
            carol_address = encode_address(carol.verify_key, 8)
            laptop.add_contact(carol_address, "Carol")
            await sync_inbox(laptop, laptop_node)
            await sync_inbox(phone, phone_node)
            assert [c.name for c in phone.contacts()] == ["Bob", "Carol"]
            phone.rename_contact(carol.verify_key, "Caz")
            await sync_inbox(phone, phone_node)
            await sync_inbox(laptop, laptop_node)
            assert [c.name for c in laptop.contacts()] == ["Bob", "Caz"]
            laptop.remove_contact(carol.verify_key)
            await sync_inbox(laptop, laptop_node)
            await sync_inbox(phone, phone_node)
            assert [c.name for c in phone.contacts()] == ["Bob"]
        finally:
            await shutdown(nodes, (laptop, bob) + ((phone,) if phone else ()))

    asyncio.run(scenario())


def test_a_dm_too_long_for_every_device_header_is_refused_with_the_room_left() -> None:
    room_one, room_three = env.max_body("dm"), env.max_body("dm", 3)
    assert room_one - room_three == 2 * (env.HEADER_LEN + env.TAG_LEN)
    key = os.urandom(32)
    sender, root = Identity.generate(), Identity.generate()
    keys = [root.public.box_public_key, Identity.generate().public.box_public_key, key]
    env.seal(sender, root.public, bytes(room_three), to_keys=keys, tag=bytes(16))  # fits exactly
    with pytest.raises(env.EnvelopeError, match="shorten"):
        env.seal(sender, root.public, bytes(room_three + 1), to_keys=keys, tag=bytes(16))


def test_a_change_for_every_other_device_fits_in_its_pieces() -> None:
    from komrade_dht import codec

    event = codec.pack({"k": "sent", "id": "a" * 40, "to": "komrade1" + "q" * 60, "text": "L" * MAX_TEXT_BYTES,
                        "at": 2**31})
    for others in range(1, devices.MAX_DEVICES):
        pieces = devices._pieces(event, others)
        assert 2 <= len(pieces) <= devices.MAX_PIECES
        wrapped = len(codec.pack({"as": bytes(32), "c": bytes(64), "b": max(pieces, key=len)}))
        assert wrapped <= env.max_body(devices.VIA + devices.SYNC_TYPE, others)
    # with every device of the identity as a header, a DM still carries text
    assert env.max_body("dm", devices.MAX_DEVICES) > 300


def test_a_paired_device_posts_as_its_identity_until_it_is_removed(tmp_path: Path) -> None:
    """World posts from a paired device: signed with its own key, wrapped in its certificate, shown by readers as the
    identity's; once the identity removes the device, readers look at the fresh list and drop what it posted."""
    from komrade_dht.social import posts

    async def scenario() -> None:
        async with certified_phone_and(tmp_path, "Sam") as (relays, nodes, laptop, phone, sam, laptop_node, phone_node,
                                                            sam_node):
            long_text = "from the phone " + "x" * 900  # too long for one envelope with the wrapper: chunked
            sent = await posts.publish_post(phone, phone_node, long_text, to="world", shard=3)
            short = await posts.publish_post(phone, phone_node, "short one", to="world", shard=3)
            with pytest.raises(RootKeyAbsent, match="circle key"):
                await posts.publish_post(phone, phone_node, "friends?", to="friends")
            seen: dict[str, posts.Post] = {}

            async def both() -> bool:
                seen.update({p.id: p for p in (await posts.read_feed(sam, sam_node, "world")).new})
                return {sent.id, short.id} <= set(seen)

            await wait_for(both, timeout=30, interval=0.3)
            for post_id, text in ((sent.id, long_text), (short.id, "short one")):
                post = seen[post_id]
                assert (post.text, post.author_fingerprint, post.author_address, post.anonymous) == (
                    text, laptop.fingerprint, laptop.address.text, False)

            await devices.remove_device(laptop, laptop_node, phone.device.verify_key.hex())
            late = await posts.publish_post(phone, phone_node, "after my removal", to="world", shard=3)
            fresh = account(tmp_path, "Fresh")  # no cached list: it fetches Alice's, which no longer names the phone
            try:
                fresh_node = await client(relays[10].address, CONFIG)
                nodes.append(fresh_node)
                ids: set[str] = set()
                dropped = 0

                async def settled() -> bool:
                    nonlocal dropped
                    got = await posts.read_feed(fresh, fresh_node, "world")
                    ids.update(p.id for p in got.new)
                    dropped += got.dropped
                    return dropped >= 3

                # removing a device withdraws what it posted as the identity (a stolen phone's posts included): the
                # list does not say when a device was removed, so a reader cannot tell before from after
                await wait_for(settled, timeout=30, interval=0.3)
                assert not ids & {sent.id, short.id, late.id}
            finally:
                fresh.close()

    asyncio.run(scenario())


def test_invitations_and_collective_keys_reach_every_device_and_a_paired_device_answers_as_its_identity(tmp_path: Path) -> None:
    """Hal invites Alice, who has a laptop and a phone: both devices get the invitation (a header each); the phone
    answers, signed with its own key under its certificate, and Hal sees Alice's answer. An anonymous-answers event
    needs the identity's key for its ring: the phone says so instead of answering. A collective Hal founds with Alice
    is readable on the phone too."""
    from komrade_dht.social import collectives, events

    async def scenario() -> None:
        async with certified_phone_and(tmp_path, "Hal") as (_, _, laptop, phone, hal, laptop_node, phone_node,
                                                            hal_node):
            now = int(time.time())
            ev = await events.create_event(hal, hal_node, "Reading group", now + 600, now + 4000,
                                           description="chapter 3 " + "." * 300)  # a long one: still delivered
            vote = await events.create_event(hal, hal_node, "Strike?", now + 600, now + 4000, anonymous_answers=True)
            for event_id in (ev.id, vote.id):
                await events.invite(hal, hal_node, event_id, [laptop.address.text])

            for device, node in ((laptop, laptop_node), (phone, phone_node)):
                async def invited(d: Account = device, n=node) -> bool:
                    await sync_inbox(d, n)
                    return {e.id for e in events.invitations(d)} == {ev.id, vote.id}

                await wait_for(invited, timeout=30, interval=0.3)
            await events.answer_event(phone, phone_node, ev.id, "going")

            async def answered() -> list:
                return [(a.fingerprint, a.answer) for a in await events.answers(hal, hal_node, ev.id)]

            assert await wait_for(answered, timeout=30, interval=0.3) == [(laptop.fingerprint, "going")]
            with pytest.raises(KomradeError, match="first device"):
                await events.answer_event(phone, phone_node, vote.id, "going")

            # a collective's keys reach the phone too: it reads the collective (its duties stay with the laptop)
            founded = await collectives.found_collective(hal, hal_node, "Tenants", [laptop.address.text])

            async def phone_reads_it() -> Any:
                try:
                    return await collectives.sync_collective(phone, phone_node, founded.collective_id)
                except KomradeError:
                    return None  # the keys are still on their way

            state = await wait_for(phone_reads_it, timeout=30, interval=0.3)
            assert state.name == "Tenants" and laptop.identity.verify_key in state.members

    asyncio.run(scenario())


def test_a_paired_device_posts_to_friends_with_the_circle_key_its_first_device_sent(tmp_path: Path) -> None:
    """The first device makes the circle key and sends it (signed by the root key) to its other devices with its
    device sync; the phone's friends post then reaches Sam as Alice's. A circle key sent by anyone else is refused,
    and a rotation (a friend removed) reaches the phone too."""
    from komrade_dht.social import posts

    async def scenario() -> None:
        async with certified_phone_and(tmp_path, "Sam") as (_, _, laptop, phone, sam, laptop_node, phone_node,
                                                            sam_node):
            with pytest.raises(RootKeyAbsent, match="circle key"):  # not made yet: nothing to send
                await posts.publish_post(phone, phone_node, "too early", to="friends")
            assert (await posts.read_feed(phone, phone_node, "friends")).new == []  # reading needs no circle of mine
            friends.add_friend(laptop, sam.address.text, "Sam")
            friends.add_friend(sam, laptop.address.text, "Alice")
            await friends.deliver_keys(laptop, laptop_node)
            await friends.deliver_keys(sam, sam_node)
            await sync_inbox(laptop, laptop_node)  # sends the queued device sync (the circle keys) to the phone

            async def phone_has_it() -> bool:
                await sync_inbox(phone, phone_node)
                return phone.data.get("circle_out", b"me") is not None

            await wait_for(phone_has_it, timeout=30, interval=0.3)
            assert friends.my_circle(phone)["key"] == friends.my_circle(laptop)["key"]
            sent = await posts.publish_post(phone, phone_node, "for friends, from the phone", to="friends")

            async def sam_reads_it() -> Any:
                got = await posts.read_feed(sam, sam_node, "friends")
                return [p for p in got.new if p.id == sent.id]

            [post] = await wait_for(sam_reads_it, timeout=30, interval=0.3)
            assert (post.text, post.author_fingerprint) == ("for friends, from the phone", laptop.fingerprint)

            # forged circle keys (signed by the phone, not the root key) are refused
            forged = {"v": 99, "keys": [[99, os.urandom(32), int(time.time())]]}
            from komrade_dht import codec

            payload = codec.pack(forged)
            with pytest.raises(ValueError, match="root key"):
                friends.receive_circle(phone, payload, phone.device.sign(b"komrade/circle-sync/v1" + payload))
            assert friends.my_circle(phone)["version"] == 1

            # a rotation on the first device reaches the phone
            friends.remove_friend(laptop, sam.address.text)
            await sync_inbox(laptop, laptop_node)

            async def rotated() -> bool:
                await sync_inbox(phone, phone_node)
                return friends.my_circle(phone)["version"] == 2

            await wait_for(rotated, timeout=30, interval=0.3)
            assert friends.my_circle(phone)["key"] == friends.my_circle(laptop)["key"]

    asyncio.run(scenario())
