"""Contact tags: mail from a contact found without public-key work (issue 12).

A sender whose recipient is in its contacts puts a 16-byte tag in the envelope's head:
``tag = BLAKE2b-128(key = K, epoch | counter)`` with ``K = BLAKE2b(X25519(sender, recipient))``, the pair's shared
secret, and a counter the sender increments per recipient and epoch, so tags never repeat and look random to
everyone else. The recipient computes, for each contact, the next ``window`` tags of the epochs it reads and
checks each head's tags against that set (a dictionary lookup) before any trial decryption.

What a tag reveals: to holders and co-tenants, nothing (16 random-looking bytes, never repeated, unlinkable to the
pair or to each other without K). To the recipient, which contact sent it before opening it (what opening tells
it anyway). A tag is a hint, not a proof: the envelope is still opened and its signature checked; a stranger who
knows both public keys cannot compute K (it takes one of the two secret keys). Envelopes from strangers carry no
tag the recipient expects and still cost one trial decryption each.
"""

from __future__ import annotations

import hashlib

from nacl import bindings

from ..address import decode_address
from ..envelope import TAG_LEN, tags_of
from ..identity import Identity, PublicIdentity
from .account import Account

#: Tags per contact and epoch a recipient looks for (a contact who sends more in one epoch widens it next time).
WINDOW = 64


def pair_key(me: Identity, peer: PublicIdentity) -> bytes:
    """The pair's tag key: the same from both sides (X25519 is symmetric), known to nobody else."""
    shared = bindings.crypto_scalarmult(bytes(me.box_private_key), peer.box_public_key)
    return hashlib.blake2b(shared, digest_size=32, person=b"komrade/tagkey").digest()


def tag(key: bytes, epoch: int, counter: int) -> bytes:
    """The ``counter``-th tag of ``epoch`` for a pair."""
    return hashlib.blake2b(
        epoch.to_bytes(4, "big") + counter.to_bytes(4, "big"), key=key, digest_size=TAG_LEN, person=b"komrade/tag"
    ).digest()


def next_tag(account: Account, recipient: PublicIdentity, epoch: int) -> bytes | None:
    """The tag for our next envelope to ``recipient`` in ``epoch`` (and count it), or None if they are not a
    contact of ours (then they would not be looking for it either), or this device holds no root key (the tag
    key is the identity's; a paired device's envelopes go untagged and cost one trial decryption)."""
    if account.contact(recipient.verify_key) is None or not account.has_root:
        return None
    record_id = recipient.verify_key + epoch.to_bytes(4, "big")
    counter = int((account.data.get("tagctr", record_id) or {}).get("n", 0))
    account.data.put("tagctr", record_id, {"n": counter + 1, "epoch": epoch})
    return tag(pair_key(account.identity, recipient), epoch, counter)


class TagBook:
    """What a recipient looks for: every contact's next ``window`` tags for the given epochs."""

    def __init__(self, account: Account, epochs: list[int], window: int = WINDOW) -> None:
        self._expected: dict[bytes, bytes] = {}
        for contact in account.contacts() if account.has_root else []:  # a paired device cannot compute tag keys
            peer = decode_address(contact.address).public
            key = pair_key(account.identity, peer)
            for epoch in epochs:
                for counter in range(window):
                    self._expected[tag(key, epoch, counter)] = peer.verify_key

    def sender_of(self, head: bytes) -> bytes | None:
        """The contact whose tag the head carries, or None (untagged, or not one of ours)."""
        for t in tags_of(head):
            found = self._expected.get(t)
            if found is not None:
                return found
        return None

    def __len__(self) -> int:
        return len(self._expected)
