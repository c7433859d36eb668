"""The app's pure parts, without a window: conversations from API records, the inline address check, the byte
budget of the compose field against what one DM envelope really holds."""

from __future__ import annotations

import time

from . import app_driver  # noqa: F401  (Kivy's environment before anything imports kivy)

from app.screens.contacts import address_problem
from app.screens.thread import room_left
from app.threads import conversations, when
from komrade_dht.address import encode_address
from komrade_dht.api.client import SentMessage
from komrade_dht.errors import KomradeError
from komrade_dht.identity import Identity
from komrade_dht.social import Contact, Message
from komrade_dht.social.dm import encode_dm, text_room

import pytest


def person(name: str) -> tuple[str, str]:
    ident = Identity.generate()
    return encode_address(ident.verify_key, 8), ident.fingerprint()


def test_conversations_group_by_fingerprint_and_keep_requests_apart() -> None:
    bob, bob_fp = person("Bob")
    eve, eve_fp = person("Eve")
    carol, carol_fp = person("Carol")
    contacts = [Contact("Bob", bob, bob_fp, True)]
    messages = [
        Message("01" * 20, "Bobby", bob_fp, bob, 100, 101, "hi", False, True, read=True),
        Message("02" * 20, "Bobby", bob_fp, bob, 300, 301, "still there?", False, True),
        Message("03" * 20, "Eve", eve_fp, eve, 200, 201, "psst", True, False),
    ]
    sent = [SentMessage("04" * 20, bob, "yes", 400, 6), SentMessage("05" * 20, carol, "hello Carol", 50, 3)]
    convs = conversations(messages, sent, contacts)
    assert [c.name for c in convs] == ["Bob", "Eve", f"{carol_fp[:11]}..."]  # newest first
    bob_conv, eve_conv, carol_conv = convs
    assert [i.text for i in bob_conv.items] == ["hi", "still there?", "yes"] and bob_conv.unread == 1
    assert bob_conv.last.mine and bob_conv.last.acks == 6 and not bob_conv.request
    assert eve_conv.request and eve_conv.unread == 1  # a stranger: kept apart until accepted
    assert not carol_conv.request  # we wrote first: not a request


def test_inline_address_check() -> None:
    good, _ = person("x")
    assert address_problem(good) == "" and address_problem("") == ""
    typo = good[:-3] + ("q" if good[-3] != "q" else "p") + good[-2:]
    assert "checksum" in address_problem(typo)
    assert address_problem("hello") != ""


@pytest.mark.parametrize("name", ["Al", "Alexandra Kollontai " * 3])
def test_compose_budget_is_what_one_envelope_holds(name: str) -> None:
    room = text_room(name, 8)
    left = room_left(room, "")
    assert left > 500
    encode_dm(name, 8, "é" * (left // 2))  # fits exactly (2 bytes each)
    assert room_left(room, "x" * left) == 0
    encode_dm(name, 8, "x" * left)
    with pytest.raises(KomradeError):
        encode_dm(name, 8, "x" * (left + 1))
    assert room_left(room, "x" * (left + 1)) == -1


@pytest.mark.parametrize("headers", [1, 2, 3, 4])
@pytest.mark.parametrize("wrapped", [False, True])
def test_compose_budget_counts_the_recipients_devices_and_a_paired_senders_certificate(
    headers: int, wrapped: bool
) -> None:
    """What the send path checks (devices.signer's wrapper, one header per device): the budget's text fits, and a
    few bytes more does not."""
    from komrade_dht import codec
    from komrade_dht.envelope import max_body
    from komrade_dht.social.devices import VIA

    def body_len(n: int) -> int:
        body = encode_dm("Alice", 16, "x" * n) if n <= text_room("Alice", 16) else codec.pack(
            {"name": "Alice", "w": 16, "text": "x" * n})
        if wrapped:
            body = codec.pack({"as": bytes(32), "c": bytes(64), "b": body})
        return len(body)

    room = text_room("Alice", 16, headers, wrapped)
    limit = max_body(VIA + "dm" if wrapped else "dm", headers)
    assert body_len(room) <= limit < body_len(room + 3)
    assert room < text_room("Alice", 16, headers - 1, wrapped) - 90 if headers > 1 else room > 500


def test_when_is_short() -> None:
    now = time.time()
    assert len(when(int(now), now)) == 5 and ":" in when(int(now), now)
    assert len(when(int(now - 10 * 86400), now)) > 5


def test_a_vote_says_how_many_it_hides_among() -> None:
    from app.screens.social import hidden_among

    assert "names you" in hidden_among("up", 1)
    assert "hidden among 3" in hidden_among("down", 3) and "small network" in hidden_among("down", 3)
    assert hidden_among("up", 12) == "Voted up, anonymously: hidden among 12 registered people"
    assert hidden_among("up", None) == "Voted up, anonymously"
