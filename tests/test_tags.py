"""Contact tags (issue 12): a contact's mail is found by a dictionary lookup before any trial decryption; tags never
repeat, mean nothing to anyone else, and a stranger's mail is still found by trial decryption."""

from __future__ import annotations

import asyncio
from pathlib import Path

from komrade_dht import envelope as env
from komrade_dht.node import NodeConfig
from komrade_dht.slots import SlotParams, slot_id
from komrade_dht.social import send_dm, sync_inbox
from komrade_dht.social.tags import TagBook, pair_key, tag

from .support import CHEAP_POW, account, client, shutdown, start_relays


def test_tags_are_pairwise_never_repeat_and_need_both_secrets() -> None:
    from komrade_dht.identity import Identity

    a, b, c = Identity.generate(), Identity.generate(), Identity.generate()
    assert pair_key(a, b.public) == pair_key(b, a.public) != pair_key(a, c.public)
    tags = {tag(pair_key(a, b.public), e, n) for e in range(3) for n in range(200)}
    assert len(tags) == 600


def test_contacts_mail_is_tagged_and_found_by_its_tag_strangers_mail_by_trial(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = NodeConfig(pow=CHEAP_POW, id_bits=0)
        relays = await start_relays(tmp_path, 8, config)
        alice, bob, carol = account(tmp_path, "Alice"), account(tmp_path, "Bob"), account(tmp_path, "Carol")
        alice.add_contact(bob.address.text, "Bob")
        bob.add_contact(alice.address.text, "Alice")
        carol.add_contact(bob.address.text, "Bob")  # Carol knows Bob; Bob does not know Carol
        node = await client(relays[2].address, config)
        try:
            k1 = await send_dm(alice, node, bob.address.text, "first")
            k2 = await send_dm(alice, node, bob.address.text, "second")
            k3 = await send_dm(carol, node, bob.address.text, "hello stranger")
            blobs = {k: next(r.store.get_blob(k) for r in relays if r.store.has_blob(k)) for k in (k1, k2, k3)}
            t1, t2, t3 = (env.tags_of(blobs[k]) for k in (k1, k2, k3))
            assert len(t1) == len(t2) == len(t3) == 1 and t1 != t2, "one tag each, never the same twice"
            epoch = SlotParams().epoch(__import__("time").time())
            book = TagBook(bob, [epoch])
            assert book.sender_of(env.head(blobs[k1])) == alice.identity.verify_key
            assert book.sender_of(env.head(blobs[k2])) == alice.identity.verify_key
            assert book.sender_of(env.head(blobs[k3])) is None, "Bob expects no tag from a stranger"
            got = await sync_inbox(bob, node)
            assert sorted(m.text for m in got) == ["first", "hello stranger", "second"]
            assert [m.request for m in got if m.text == "hello stranger"] == [True]
            assert slot_id(bob.identity.verify_key, bob.width, epoch)  # the slot all three went to
        finally:
            await shutdown([node, *relays], (alice, bob, carol))

    asyncio.run(scenario())
