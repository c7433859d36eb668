"""Public (world, local) and shared-key (friends) envelopes: format, signatures, tampering, anonymity. Pure."""

from __future__ import annotations

import os

import pytest

from komrade_dht import codec
from komrade_dht import envelope as env
from komrade_dht.errors import EnvelopeError
from komrade_dht.identity import Identity
from komrade_dht.social import posts

from .support import CHEAP_POW


def test_signed_public_envelope_round_trip_and_size_classes() -> None:
    alice = Identity.generate()
    for size, body in ((256, b"x" * 50), (512, b"x" * 300), (1024, b"x" * 800)):
        data = env.make_public(alice, body, pow=CHEAP_POW)
        assert len(data) == size and data[1] == env.KIND_PUBLIC and data[30] == 0
        opened = env.open_public(data)
        assert opened.author is not None and opened.author.verify_key == alice.verify_key and opened.body == body
        assert env.check_pow(data, CHEAP_POW, env.NO_SLOT)
    with pytest.raises(EnvelopeError, match="largest envelope"):
        env.make_public(alice, b"x" * (env.public_capacity() + 1), pow=CHEAP_POW)
    env.make_public(alice, b"x" * env.public_capacity(), pow=CHEAP_POW)


def test_tampering_is_refused() -> None:
    alice = Identity.generate()
    data = bytearray(env.make_public(alice, b"original text", pow=CHEAP_POW))
    at = bytes(data).index(b"original")
    forged = bytes(data[:at]) + b"ORIGINAL" + bytes(data[at + 8 :])
    with pytest.raises(EnvelopeError, match="signature"):
        env.open_public(forged)
    stretched = bytes(data[:2]) + (int.from_bytes(data[2:6], "big") + 86400).to_bytes(4, "big") + bytes(data[6:])
    with pytest.raises(EnvelopeError, match="outer fields"):
        env.open_public(stretched)
    with pytest.raises(EnvelopeError):
        env.open_public(bytes(data[:31]) + b"\xff\xff" + bytes(data[33:]))


def test_anonymous_envelope_carries_no_key_and_nothing_repeated() -> None:
    alice = Identity.generate()
    one = env.make_public(None, b"same words", pow=CHEAP_POW, now=1_800_000_000)
    two = env.make_public(None, b"same words", pow=CHEAP_POW, now=1_800_000_000)
    for data in (one, two):
        assert alice.verify_key not in data
        opened = env.open_public(data, now=1_800_000_001)
        assert opened.author is None
    assert env.open_public(one, now=1_800_000_001).post_id != env.open_public(two, now=1_800_000_001).post_id
    # a signer cannot be added to an anonymous post: the inner part says nil for both key and signature
    payload, signature = codec.unpack(one[33 : 33 + int.from_bytes(one[31:33], "big")])
    assert signature is None and codec.unpack(payload)[1] is None


def test_shared_envelope_opens_with_its_key_only_and_names_its_signer() -> None:
    alice, mallory = Identity.generate(), Identity.generate()
    key = os.urandom(32)
    data = env.make_shared(alice, key, b"for friends", pow=CHEAP_POW)
    assert data[1] == env.KIND_SHARED and len(data) == 256
    assert env.open_shared(data, os.urandom(32)) is None
    opened = env.open_shared(data, key)
    assert opened is not None and opened.author is not None and opened.author.verify_key == alice.verify_key
    # a friend (who holds the key) signs a post under Alice's circle key: readers of Alice's circle refuse it
    forged = env.make_shared(mallory, key, codec.pack({"t": "from alice, honest"}), content_type="post",
                             pow=CHEAP_POW)
    with pytest.raises(EnvelopeError, match="someone else"):
        opened = posts._open(forged, key, now=None)  # type: ignore[arg-type]
        assert opened is not None
        posts.check_circle_author(opened, alice.verify_key)


def test_post_ids_are_the_same_for_every_copy_of_a_local_post() -> None:
    alice = Identity.generate()
    secret = os.urandom(16)
    copies = [env.make_public(alice, b"local", burn_secret=secret, now=1_800_000_000, pow=CHEAP_POW,
                              slot=posts.geo_slot(1, cell)) for cell in ("u33d", "u33e")]
    assert copies[0] != copies[1]
    ids = {env.open_public(c, now=1_800_000_001).post_id for c in copies}
    assert len(ids) == 1
