"""Posts, images, friends, local posts and profiles (issue 10) on real loopback networks of 20 relays.

Real UDP sockets on 127.0.0.1 (ports picked by the OS), real SQLite stores, real crypto and Pillow; cheap proof of
work (CHEAP_POW) and a cheap node-id puzzle. Waits are conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
import zlib
from pathlib import Path
from typing import Any, Awaitable

import pytest
from PIL import Image

from komrade_dht import envelope as env
from komrade_dht import codec, media, records
from komrade_dht.errors import ChunksUnavailable, GeoError, ImageError, KomradeError, RecordStale
from komrade_dht.identity import Identity
from komrade_dht.node import KomradeNode, NodeConfig
from komrade_dht.slots import SlotParams
from komrade_dht.social import friends, posts, profiles

from .support import CHEAP_POW, account, client, files_containing, shutdown, start_relays

RELAYS = 20
CONFIG = NodeConfig(pow=CHEAP_POW, id_bits=8)
DEADLINE = 120.0


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, DEADLINE)

    return asyncio.run(main())


def photo_with_gps(width: int = 900, height: int = 600, seed: int = 1) -> bytes:
    """A noisy JPEG (so it does not compress to nothing) carrying EXIF with a GPS position and a camera name."""
    rng = os.urandom(width * height * 3) if seed else bytes(width * height * 3)
    image = Image.frombytes("RGB", (width, height), rng).resize((width, height))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc"  # Make
    gps = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 18.0)}
    exif[0x8825] = gps
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90, exif=exif)
    return out.getvalue()


class Recorder:
    """Keeps every byte string a node publishes or stores (what leaves the device)."""

    def __init__(self, node: KomradeNode) -> None:
        self.sent: list[bytes] = []
        send, store_blobs = node.send, node.store_blobs

        async def recorded_send(slot: bytes, data: bytes) -> int:
            self.sent.append(data)
            return await send(slot, data)

        async def recorded_store(blobs: list[bytes]) -> int:
            self.sent.extend(blobs)
            return await store_blobs(blobs)

        node.send = recorded_send  # type: ignore[method-assign]
        node.store_blobs = recorded_store  # type: ignore[method-assign]

    def take(self) -> list[bytes]:
        out, self.sent = self.sent, []
        return out


def windows(blobs: list[bytes], n: int = 8) -> set[bytes]:
    return {b[i : i + n] for b in blobs for i in range(len(b) - n + 1)}


def held(relays: list[KomradeNode]) -> int:
    return sum(r.store.stats().blobs for r in relays if r.store is not None)


def test_world_friends_local_posts_on_twenty_relays(tmp_path: Path) -> None:
    """The issue's "done when" for posts: a signed world post with an image read intact and metadata-free by two
    readers who were offline when it was posted; anonymous posts unlinkable in their bytes; friends posts read by
    friends only, and not by a removed friend after the removal; a local post found inside its radius only; bad
    input refused with nothing published."""

    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", RELAYS, CONFIG)
        alice, bob, carol, dave = (account(tmp_path, n) for n in ("Alice", "Bob", "Carol", "Dave"))
        nodes: list[KomradeNode] = []
        try:
            a = await client(relays[1].address, CONFIG)
            nodes.append(a)
            rec = Recorder(a)
            # -- a signed world post with a photo carrying GPS; Bob and Carol are offline
            original = photo_with_gps()
            sent = await posts.publish_post(alice, a, "hello world, from Alice", image=original)
            assert sent.blobs > 3 and sent.acks > 0
            for name, reader in (("bob", bob), ("carol", carol)):
                node = await client(relays[-1 if name == "bob" else 5].address, CONFIG)
                nodes.append(node)
                got = await posts.read_feed(reader, node, "world")
                [post] = [p for p in got.new if p.id == sent.id]
                assert post.text == "hello world, from Alice" and not post.anonymous
                assert post.author_fingerprint == alice.fingerprint and post.author_name == "Alice"
                assert post.image and post.image_error is None
                picture = posts.image(reader, post.id)
                assert picture is not None
                # kept encrypted: no file of the reader's data directory holds the picture, or a piece of it
                assert not files_containing(reader.data_dir, picture[-4096:-2048])
                decoded = Image.open(io.BytesIO(picture))
                decoded.load()
                assert decoded.format == "JPEG" and decoded.size == (900, 600)
                assert not decoded.getexif() and b"SpyCam" not in picture and b"Exif" not in picture
                assert posts.feed_posts(reader, "world")[0].id == sent.id
            b_node, c_node = nodes[1], nodes[2]
            rec.take()

            # -- anonymous posts: neither Alice's key nor anything equal across two of hers (beyond what Bob's share)
            t0 = time.time()
            anon1 = await posts.publish_post(alice, a, "first note", anonymous=True,
                                             image=photo_with_gps(300, 200), now=t0)
            bytes1 = rec.take()
            anon2 = await posts.publish_post(alice, a, "second thing", anonymous=True,
                                             image=photo_with_gps(300, 200), now=t0 + 3)
            bytes2 = rec.take()
            bob_rec = Recorder(b_node)
            bob_anon = await posts.publish_post(bob, b_node, "bob's post", anonymous=True,
                                                image=photo_with_gps(300, 200), now=t0 + 6)
            bob_bytes = bob_rec.take()
            assert len({anon1.id, anon2.id, bob_anon.id}) == 3
            key = alice.identity.verify_key
            for blob in bytes1 + bytes2:
                assert key not in blob
                assert not windows([key]) & windows([blob]), "a piece of Alice's key is in an anonymous post"
            linking = windows(bytes1) & windows(bytes2)
            # what two anonymous posts of Alice share must be format constants: Bob's anonymous post has them too
            assert linking <= windows(bob_bytes), f"{len(linking - windows(bob_bytes))} 8-byte windows link them"
            # a read fetches at most IMAGES_PER_READ pictures (newest first); the next read fetches the rest
            budget, posts.IMAGES_PER_READ = posts.IMAGES_PER_READ, 2  # Bob's and Alice's second: newest
            try:
                got = await posts.read_feed(carol, c_node, "world")
                anon_posts = [p for p in got.new if p.id in (anon1.id, anon2.id)]
                assert len(anon_posts) == 2 and all(p.anonymous and p.author_name is None
                                                    and p.author_fingerprint is None for p in anon_posts)
                assert [p.id for p in anon_posts if p.image] == [anon2.id]
                await posts.read_feed(carol, c_node, "world")
            finally:
                posts.IMAGES_PER_READ = budget
            cached = {p.id: p for p in posts.feed_posts(carol, "world")}
            assert cached[anon1.id].image and cached[anon2.id].image

            # -- friends: Alice and Bob, Alice and Carol are friends; Dave adds Alice, Alice does not add Dave
            for x, y in ((alice, bob), (bob, alice), (alice, carol), (carol, alice), (dave, alice)):
                friends.add_friend(x, y.address.text, y.name)
            d_node = await client(relays[7].address, CONFIG)
            nodes.append(d_node)
            for person, node in ((bob, b_node), (carol, c_node), (dave, d_node)):
                await friends.deliver_keys(person, node)
            first = await posts.publish_post(alice, a, "friends only: party on friday", to="friends")
            with pytest.raises(KomradeError, match="always signed"):
                await posts.publish_post(alice, a, "anonymous to friends?", to="friends", anonymous=True)
            for person, node in ((bob, b_node), (carol, c_node)):
                got = await posts.read_feed(person, node, "friends")
                assert [p.text for p in got.new if p.id == first.id] == ["friends only: party on friday"]
            got = await posts.read_feed(dave, d_node, "friends")
            assert not [p for p in got.new if p.author_fingerprint == alice.fingerprint]

            friends.remove_friend(alice, bob.address.text)
            later = await posts.publish_post(alice, a, "friends only, after Bob left", to="friends")
            got_carol = await posts.read_feed(carol, c_node, "friends")
            assert [p.text for p in got_carol.new if p.id == later.id] == ["friends only, after Bob left"]
            got_bob = await posts.read_feed(bob, b_node, "friends")
            assert not [p for p in got_bob.new if p.author_fingerprint == alice.fingerprint]
            assert not [p for p in posts.feed_posts(bob, "friends") if p.id == later.id]

            # -- local: Berlin, 10 km; Bob 5 km away reads it, Carol in Potsdam (27 km) and in Paris does not
            local = await posts.publish_post(alice, a, "market on the square", to="local", at=(52.5200, 13.4050),
                                             radius_km=10)
            assert local.area is not None and local.area.level_km == posts.DEFAULT_PRECISION_KM
            got = await posts.read_feed(bob, b_node, "local", at=(52.5450, 13.4700))
            assert [p.text for p in got.new if p.id == local.id] == ["market on the square"]
            for where in ((52.3906, 13.0645), (48.8566, 2.3522)):
                got = await posts.read_feed(carol, c_node, "local", at=where)
                assert not [p for p in got.new if p.id == local.id]

            # -- burn: Alice deletes her signed world post (and its chunks); a reader who never saw it does not
            assert await posts.burn_post(alice, a, sent.id) > 0
            fresh = account(tmp_path, "Erin")
            e_node = await client(relays[9].address, CONFIG)
            nodes.append(e_node)
            got = await posts.read_feed(fresh, e_node, "world")
            assert sent.id not in {p.id for p in got.new} and anon1.id in {p.id for p in got.new}
            fresh.close()
            with pytest.raises(KomradeError, match="no post of yours"):
                await posts.burn_post(alice, a, sent.id)

            # -- bad input: a clear error each, and nothing published
            before = held(relays)
            rec.take()
            truncated = original[: len(original) // 2]
            bomb = png_bomb()
            bad: list[tuple[dict[str, Any], type[Exception], str]] = [
                (dict(text="x" * 1001), KomradeError, "1001 characters"),
                (dict(text="big", image=os.urandom(11 * 2**20)), ImageError, "at most"),
                (dict(text="cut", image=truncated), ImageError, "truncated"),
                (dict(text="not a picture", image=b"GIF89a, or is it? " * 20), ImageError, "picture"),
                (dict(text="bomb", image=bomb), ImageError, "bomb"),
                (dict(text="north of north", to="local", at=(91.0, 0.0), radius_km=5), GeoError, "latitude"),
                (dict(text="far east", to="local", at=(10.0, 181.0), radius_km=5), GeoError, "longitude"),
                (dict(text="too wide", to="local", at=(10.0, 10.0), radius_km=5000), GeoError, "radius"),
                (dict(text="nowhere", to="local"), KomradeError, "position"),
                (dict(text="forever", ttl=31 * 86400), KomradeError, "30 days"),
            ]
            for kwargs, error, words in bad:
                text = kwargs.pop("text")
                with pytest.raises(error, match=words):
                    await posts.publish_post(alice, a, text, **kwargs)
            assert rec.take() == []
            assert held(relays) == before
        finally:
            await shutdown([*nodes, *relays], (alice, bob, carol, dave))

    run(scenario())


def png_bomb(side: int = 100_000) -> bytes:
    """A tiny PNG whose header declares ``side`` x ``side`` pixels (10 gigapixels): a decompression bomb."""
    out = io.BytesIO()
    Image.new("L", (8, 8)).save(out, format="PNG")
    data = bytearray(out.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = side.to_bytes(4, "big") * 2
    data[ihdr + 17 : ihdr + 21] = zlib.crc32(bytes(data[ihdr : ihdr + 17])).to_bytes(4, "big")
    return bytes(data)


def test_profiles_cannot_be_forged_or_rolled_back(tmp_path: Path) -> None:
    """A profile (signed record) with a photo, read by Bob; forged and rolled-back versions offered to every holder
    are refused by each; a holder serving a forged or an old copy does not fool a reader; a reader who saw a newer
    version refuses an older one even when every holder serves it; friends-only and local visibility."""
    from . import adversary as adv

    class LyingRecordHolder(adv.KomradeProtocol):  # type: ignore[misc,name-defined]
        offered: bytes = b""

        def rpc_get_record(self, sender: Any, key: bytes, *, budget: int) -> tuple[bool, Any]:
            return (True, type(self).offered) if type(self).offered else super().rpc_get_record(sender, key,
                                                                                                budget=budget)

    async def scenario() -> None:
        relays = await start_relays(tmp_path / "net", RELAYS, CONFIG)
        alice, bob, carol = (account(tmp_path, n) for n in ("Alice", "Bob", "Carol"))
        nodes: list[KomradeNode] = []
        try:
            a = await client(relays[1].address, CONFIG)
            b = await client(relays[-1].address, CONFIG)
            c = await client(relays[4].address, CONFIG)
            nodes += [a, b, c]
            assert await profiles.set_profile(alice, a, name="Alice A.", bio="organiser", photo=photo_with_gps(400, 300))
            seen = await profiles.show_profile(bob, b, alice.address.text)
            assert (seen.visible, seen.name, seen.bio, seen.visibility) == (True, "Alice A.", "organiser", "world")
            photo = profiles.photo(bob, alice.address.text)
            assert seen.photo and photo is not None and b"SpyCam" not in photo
            assert Image.open(io.BytesIO(photo)).format == "JPEG"
            assert not files_containing(bob.data_dir, photo[-2048:-1024])
            key = records.record_key(alice.identity.verify_key, profiles.SALT)
            first = records.verify_record(key, await b.get_record(key))
            await profiles.set_profile(alice, a, bio="organiser, now with a new bio", now=time.time() + 2)
            assert (await profiles.show_profile(bob, b, alice.address.text)).bio == "organiser, now with a new bio"

            # forged (tampered value, same signature; Mallory's own signature under Alice's key) and rolled back
            mallory = Identity.generate()
            tampered = records._encode(first.public_key, first.salt, first.seq + 10, first.expires_at,
                                       b"\x81\xa3vis\xa5world", first.signature)
            wrong_signer = records._encode(first.public_key, first.salt, first.seq + 10, first.expires_at,
                                           first.value, mallory.sign(b"komrade/record/v1" + first.value))
            holders = await a.closest(key)
            assert len(holders) >= 10
            for bad, code in ((tampered, "forged"), (wrong_signer, "forged"), (first.data, "stale")):
                answers = await asyncio.gather(*(a.protocol.call_put_record(n, key, bad) for n in holders))
                assert all(not ok for ok, _ in answers), f"a holder took a {code} record: {answers}"
            assert (await profiles.show_profile(carol, c, alice.address.text)).bio == "organiser, now with a new bio"

            # a lying holder next to the key serving a forged copy, then the old one: readers still get the newest
            liar = await adv.start_node(tmp_path / "liar", CONFIG, protocol=LyingRecordHolder)
            nodes.append(liar)
            await liar.bootstrap([relays[0].address])
            await adv.join(liar, relays)
            for offered in (tampered, first.data):
                LyingRecordHolder.offered = offered
                fresh = account(tmp_path, f"Reader{len(nodes)}")
                r = await client(relays[2].address, CONFIG)
                nodes.append(r)
                assert (await profiles.show_profile(fresh, r, alice.address.text)).bio.startswith("organiser, now")
                fresh.close()
            LyingRecordHolder.offered = b""

            # every holder rolled back to the first version: Bob, who saw the newer one, refuses it
            for relay in [*relays, liar]:
                if relay.store is not None and relay.store.get_record(key) is not None:
                    relay.store._connection().execute("DELETE FROM records WHERE key = ?", (key,))
                    relay.store.put_record(key, first.seq, first.data, first.expires_at)
            with pytest.raises(RecordStale):
                await profiles.show_profile(bob, b, alice.address.text)

            # friends only: Bob (a friend) reads it, Carol sees only that it is friends-only
            friends.add_friend(alice, bob.address.text, "Bob")
            await friends.deliver_keys(alice, a)
            friends.add_friend(bob, alice.address.text, "Alice")
            await profiles.set_profile(alice, a, visibility="friends", bio="for friends", now=time.time() + 4)
            from komrade_dht.social import dm
            await dm.sync_inbox(bob, b)
            seen = await profiles.show_profile(bob, b, alice.address.text)
            assert (seen.visible, seen.bio, seen.visibility) == (True, "for friends", "friends")
            hidden = await profiles.show_profile(carol, c, alice.address.text)
            assert (hidden.visible, hidden.name, hidden.bio) == (False, None, None)

            # local: shown inside the area only
            await profiles.set_profile(alice, a, visibility="local", at=(52.52, 13.405), radius_km=20,
                                       now=time.time() + 6)
            assert (await profiles.show_profile(bob, b, alice.address.text, at=(52.50, 13.30))).visible
            assert not (await profiles.show_profile(carol, c, alice.address.text, at=(48.85, 2.35))).visible
            with pytest.raises(KomradeError, match="bio"):
                await profiles.set_profile(alice, a, bio="b" * 301)

            # a new photo: the one it replaces is burned (its chunks leave the holders)
            old_root = codec.unpack(records.verify_record(key, await b.get_record(key)).value)["photo"][0]
            assert any(r.store.has_blob(old_root) for r in relays)  # type: ignore[union-attr]
            await profiles.set_profile(alice, a, visibility="world", photo=photo_with_gps(300, 300),
                                       now=time.time() + 8)
            left = sum(r.store.has_blob(old_root) for r in relays)  # type: ignore[union-attr]
            assert left <= 1, left  # a relay pushed out of the k closest by the liar is not asked

            # a chunk of the photo gone from every holder: retried, then reported; never half a picture
            record = records.verify_record(key, await b.get_record(key))
            root, photo_key = codec.unpack(record.value)["photo"]
            blobs = await b.fetch_blobs([root])
            with pytest.raises(ChunksUnavailable) as missing:
                media.resolve_manifest(root, blobs, photo_key)
            blobs.update(await b.fetch_blobs(list(missing.value.missing)))
            leaf = media.resolve_manifest(root, blobs, photo_key).chunk_ids[3]
            for node in [*relays, liar]:
                node.store.delete_blob(leaf)  # type: ignore[union-attr]
            dave = account(tmp_path, "Dave")
            shown = await profiles.show_profile(dave, c, alice.address.text)
            dave.close()
            assert shown.visible and not shown.photo and "1 missing" in (shown.photo_error or "")
        finally:
            await shutdown([*nodes, *relays], (alice, bob, carol))

    run(scenario())


JUNK = 10_000


def test_world_shard_stays_readable_under_ten_thousand_junk_posts(tmp_path: Path) -> None:
    """10,000 valid junk posts (anonymous public envelopes with real, cheap work for the shard) held by the
    shard's 8 closest relays (planted in their stores: the flood that would put them there is tested in
    test_slot_attacks), then Alice's real post: Bob's world feed delivers it, and his read
    costs a bounded number of datagrams (paging, then only the newest ids: no download per junk post). One author
    posting many signed posts takes at most PER_AUTHOR_PER_PAGE places ahead of everyone else on a page."""
    from . import adversary as adv

    async def scenario() -> None:
        relays = await adv.start_network(tmp_path / "net", RELAYS, CONFIG)  # stores without fsync: junk is fast
        alice, bob, mallory = (account(tmp_path, n) for n in ("Alice", "Bob", "Mallory"))
        nodes: list[Any] = []
        try:
            shard = 3
            slot = posts.world_slot(SlotParams().epoch(time.time()), shard)

            def junk() -> list[bytes]:
                return [env.make_public(None, os.urandom(60), pow=CHEAP_POW, slot=slot, ttl=3600)
                        for _ in range(JUNK)]

            envelopes = await asyncio.to_thread(junk)
            assert [adv.plant(holder, slot, envelopes) for holder in adv.closest(relays, slot, 8)] == [JUNK] * 8
            a = await client(relays[1].address, CONFIG)
            m = await client(relays[3].address, CONFIG)
            nodes += [a, m]
            for i in range(12):
                await posts.publish_post(mallory, m, f"mallory again {i}", shard=shard)
            real = await posts.publish_post(alice, a, "the real post", shard=shard)
            b = await client(relays[-1].address, CONFIG)
            nodes.append(b)
            figures = await adv.measured(b, posts.read_feed(bob, b, "world"), timeout=90, abort_datagrams=6000)
            result = figures.pop("result")
            assert figures["finished"], figures
            assert [p.text for p in result.new if p.id == real.id] == ["the real post"], figures
            assert figures["datagrams_out"] <= 4000, figures
            page = posts.feed_posts(bob, "world", limit=10)
            assert sum(p.author_name == "Mallory" for p in page[:6]) <= posts.PER_AUTHOR_PER_PAGE
            assert real.id in [p.id for p in page]
            print("junk read:", figures)
        finally:
            await shutdown([*nodes, *relays], (alice, bob, mallory))

    run(scenario())


def test_pictures_left_decrypted_by_an_earlier_version_move_into_the_encrypted_data(tmp_path: Path) -> None:
    """Earlier versions wrote fetched pictures to ``images/*.jpg`` in the clear; opening the account moves them in
    (encrypted like every other record) and deletes the files; a file that is not a picture of ours stays."""
    from komrade_dht.social import Account, pictures

    alice = account(tmp_path, "Alice")
    post_id = os.urandom(20).hex()
    old = alice.data_dir / "images"
    old.mkdir()
    picture = photo_with_gps(200, 100)
    (old / f"{post_id}.jpg").write_bytes(picture)
    (old / "notes.txt").write_text("not ours")
    alice.close()
    alice = Account.open(alice.data_dir, "Alice passphrase")
    try:
        assert posts.image(alice, post_id) == picture
        assert not (old / f"{post_id}.jpg").exists() and (old / "notes.txt").read_text() == "not ours"
        assert not files_containing(alice.data_dir, picture[-1024:-512])
        assert pictures.forget(alice, pictures.post_name(bytes.fromhex(post_id)))
        assert posts.image(alice, post_id) is None
    finally:
        alice.close()
