"""The app's organizing screens (issue 11), driven headless as a person would, against a real network of relays on
loopback: Alice votes on Bob's post. Screenshots go to docs/screenshots/ when asked."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from . import app_driver as ui  # sets Kivy's environment first
from .support import start_relays
from .test_app import BOB_PASS, PASSPHRASE, bg, close, make_app, rail, start  # noqa: F401  (bg: the fixture)

CAROL_PASS = "Carol walks the quiet orbit 1917"


def test_votes_events_collectives_screens(tmp_path: Path, bg: ui.LoopThread,  # noqa: F811
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A test network's registration for world votes: cheap, and the same for the app's node and the CLI.
    monkeypatch.setenv("KOMRADE_REGISTRATION_TRIALS", "1")

    async def main() -> None:
        relays = bg.run(start_relays(tmp_path / "net", 5))
        net = ["--bootstrap", "%s:%d" % relays[0].address, "--bootstrap-file", os.devnull]
        bob_dir, carol_dir, alice_dir = tmp_path / "bob", tmp_path / "carol", tmp_path / "alice"
        people = asyncio.gather(ui.komrade(bob_dir, "init", "--name", "Bob", passphrase=BOB_PASS),
                                ui.komrade(carol_dir, "init", "--name", "Carol", passphrase=CAROL_PASS))
        app = make_app(alice_dir, relays[0].address)
        task = await start(app)
        try:
            welcome = app.screen("welcome")
            welcome.name_field.text = "Alice"
            welcome.pass_field.text = welcome.confirm_field.text = PASSPHRASE
            await ui.frames(3)
            await ui.press(welcome.create_button)
            await ui.until(lambda: app.shell.manager.current == "me", 60, "identity created, node started")
            me = app.screen("me")
            await ui.until(lambda: me.address.text.startswith("komrade1"), 40)
            alice_address = me.address.text
            (code_b, out_b, err_b), (code_c, out_c, err_c) = await people
            assert code_b == 0 and code_c == 0, err_b + err_c
            bob_address, carol_address = out_b.splitlines()[1], out_c.splitlines()[1]
            code, out, err = await ui.komrade(bob_dir, "post", *net, "meet at the square", passphrase=BOB_PASS)
            assert code == 0, err
            ui.mark("Bob posted")

            # -- the rail: every area fits the window, Friends and Profile behind Posts --------------------------
            items = list(app.shell.items.values())
            assert all(0 <= i.to_window(*i.pos)[1] and i.to_window(i.x, i.top)[1] <= ui.Window.height
                       for i in items), "the rail is taller than the window"
            await ui.press(rail(app, "contacts"))
            contacts = app.screen("contacts")
            for address, name in ((bob_address, "Bob"), (carol_address, "Carol")):
                contacts.address_field.text, contacts.name_field.text = address, name
                await ui.press(contacts.add_button)
                await ui.until(lambda name=name: any(c.name == name for c in app.backend.contacts), 30, name)

            # -- votes on a post card ---------------------------------------------------------------------------
            await ui.press(rail(app, "feeds"))
            feeds = app.screen("feeds")
            await ui.press_until(feeds.refresh_button, lambda: feeds.cards, 60, "Bob's post in the world feed")
            card = next(iter(feeds.cards.values()))
            await ui.press(card.votes.buttons["up"])
            await ui.until(lambda: (card.votes.up, card.votes.mine) == (1, "up"), 60,
                           lambda: f"the up vote counted: {card.votes.up} up, notices {app.notices[-3:]}")
            assert card.votes.buttons["up"].text_widget.text == "1" and card.votes.buttons["up"].style == "filled"
            await ui.screenshot("17-post-votes")
            await ui.press(card.votes.buttons["down"])
            await ui.until(lambda: (card.votes.up, card.votes.down, card.votes.mine) == (0, 1, "down"), 60,
                           lambda: f"the vote changed: {card.votes.up}/{card.votes.down}, {app.notices[-3:]}")
            assert card.votes.buttons["up"].style == "outlined"
            await ui.press(card.votes.buttons["down"])  # pressing your choice again withdraws it
            await ui.until(lambda: (card.votes.up, card.votes.down, card.votes.mine) == (0, 0, None), 60,
                           lambda: f"the vote withdrawn: {card.votes.up}/{card.votes.down}, {app.notices[-3:]}")
            ui.mark("voted")

        finally:
            await close(app, task)
            bg.run(_stop(relays))

    asyncio.run(main())


async def _stop(relays: list) -> None:
    for r in relays:
        await r.stop_async()

