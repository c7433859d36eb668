"""The app's organizing screens (issue 11), driven headless as a person would, against a real network of relays on
loopback: Alice votes on Bob's post, hosts an anonymous event Bob answers (CLI), cancels it, answers Bob's
invitation, founds a collective with Bob, vouches for Carol (CLI) asking to join, and votes on a proposal. Screenshots go to docs/screenshots/ when asked."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from . import app_driver as ui  # sets Kivy's environment first
from komrade_dht.address import decode_address

from .support import start_relays
from .test_app import BOB_PASS, bg, close, create_identity, make_app, rail, start, stop_all  # noqa: F401 (bg: fixture)


async def open_new_event(app: Any) -> Any:
    """Events, then New event, tapping again until each screen shows (a tap can be lost on a loaded machine)."""
    await ui.press_until(rail(app, "events"), lambda: app.shell.manager.current == "events", 30, "events")
    await ui.press_until(app.screen("events").new_button, lambda: app.shell.manager.current == "new_event", 30,
                         "the New event form")
    return app.screen("new_event")

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
            alice_address = await create_identity(app)
            (code_b, out_b, err_b), (code_c, out_c, err_c) = await people
            assert code_b == 0 and code_c == 0, err_b + err_c
            bob_address, carol_address = out_b.splitlines()[1], out_c.splitlines()[1]
            bob_fp = decode_address(bob_address).public.fingerprint()
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

            # -- an anonymous event, Bob answers with the CLI, Alice cancels it ----------------------------------
            new = await open_new_event(app)
            events = app.screen("events")
            day = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%d")
            new.title_field.text = "Assembly"
            new.start_field.text, new.end_field.text = f"{day} 18:00", f"{day} 20:00"
            new.place_field.text = "the old library"
            new.description_field.text = "bring a friend"
            new.lat_field.text, new.lon_field.text, new.precision_field.text = "52.52", "13.405", "2"
            await ui.press(new.anonymous)
            await ui.until(lambda: new.picker.boxes.get("Bob") is not None, 10, "contacts to invite")
            await ui.press(new.picker.boxes["Bob"])
            assert new.picker.chosen() == [bob_address]
            await ui.screenshot("18-event-new")
            await ui.press(new.create_button)
            await ui.until(lambda: app.shell.manager.current == "event", 90,
                           lambda: f"the event created: {new.error.text} {app.notices[-3:]}")
            detail = app.screen("event")
            await ui.until(lambda: detail.event is not None and detail.event["title"] == "Assembly", 60)
            event_id = detail.event["id"]
            assert detail.event["anonymous_host"] and detail.host_box.parent is not None
            code, out, err = await ui.komrade(bob_dir, "event", "list", *net, "--json", passphrase=BOB_PASS)
            assert code == 0, err
            assert [e["title"] for e in json.loads(out)["events"]] == ["Assembly"]
            code, out, err = await ui.komrade(bob_dir, "event", "answer", *net, event_id, "going", passphrase=BOB_PASS)
            assert code == 0, err
            ui.mark("Bob answered")
            answers = detail.answers_list
            await ui.press_until(detail.refresh_button, lambda: any("Going: Bob" in w.text for w in answers.children),
                                 60, lambda: f"Bob's answer shown: {[w.text for w in detail.answers_list.children]}")
            # whom the host invited, with the answer each gave (names from the host's contacts)
            assert [w.text for w in detail.invitees_list.children] == [f"Bob  [{bob_fp}]  ·  Going"], \
                [w.text for w in detail.invitees_list.children]
            await ui.screenshot("19-event-host")
            await ui.press(detail.edit_button)
            await ui.until(lambda: detail.edit_box.parent is not None, 10, "the edit form")
            assert detail.place_field.text == "the old library"
            detail.place_field.text = "the new library"
            await ui.press(detail.save_button)
            await ui.until(lambda: detail.event["place"] == "the new library" and detail.edit_box.parent is None, 60,
                           lambda: f"edited: {detail.error.text} {app.notices[-3:]}")
            await ui.press(detail.cancel_button)
            await ui.until(lambda: getattr(detail, "cancel_dialog", None) is not None, 10)
            await ui.press(detail.cancel_dialog.ok_button)
            await ui.until(lambda: detail.event["cancelled"] and "cancelled" in detail.header.text, 60,
                           lambda: f"cancelled: {detail.error.text} {app.notices[-3:]}")
            await ui.press(rail(app, "events"))
            await ui.until(lambda: event_id in events.cards and events.cards[event_id].summary == "cancelled", 30)
            # Bob invites Alice: her node's sync pushes the invitation, the list shows it, she answers
            starts = int(time.time()) + 2 * 86400
            code, out, err = await ui.komrade(bob_dir, "event", "create", *net, "--title", "Picnic", "--start",
                                              str(starts), "--end", str(starts + 7200), "--place", "the park",
                                              "--invite", alice_address, passphrase=BOB_PASS)
            assert code == 0, err
            picnic = out.splitlines()[0]
            await ui.until(lambda: picnic in events.cards and "Invitation: Picnic" in app.notices, 60,
                           lambda: f"the invitation pushed: {list(events.cards)} {app.notices[-3:]}")
            assert events.cards[picnic].summary == "new"
            await ui.screenshot("20-events")
            await ui.press(events.cards[picnic])
            await ui.until(lambda: detail.event is not None and detail.event["id"] == picnic, 30)
            assert detail.answer_box.parent is not None and detail.host_box.parent is None
            await ui.press(detail.answer_buttons["maybe"])
            await ui.until(lambda: detail.event["my_answer"] == "maybe", 60,
                           lambda: f"answered: {detail.error.text} {app.notices[-3:]}")
            assert detail.answer_buttons["maybe"].style == "filled"
            await ui.screenshot("21-event-invited")
            # opened once, it is no longer new: the node keeps the version Alice saw (encrypted with her data)
            await ui.press(rail(app, "events"))
            await ui.until(lambda: picnic in events.cards and events.cards[picnic].summary == "answered: Maybe", 30,
                           lambda: f"seen: {events.cards[picnic].summary if picnic in events.cards else None}")
            # anonymous answers: the host sees counts only, and invites no one later
            await open_new_event(app)
            new.title_field.text = "Vote on the strike"
            new.start_field.text, new.end_field.text = f"{day} 19:00", f"{day} 21:00"
            await ui.press(new.anonymous_answers)
            await ui.press(new.picker.boxes["Carol"])
            await ui.press(new.create_button)
            await ui.until(lambda: app.shell.manager.current == "event" and detail.event["title"] ==
                           "Vote on the strike", 90, lambda: f"created: {new.error.text} {app.notices[-3:]}")
            await ui.until(lambda: "Anonymous answers" in detail.answers_list.children[-1].text, 60)
            assert detail.invite_box.parent is None

            # -- a collective with Bob; Carol asks to join; Alice vouches -------------------------------------------
            await ui.press(rail(app, "collectives"))
            colls = app.screen("collectives")
            colls.name_field.text = "Tenants of Block 4"
            await ui.until(lambda: colls.picker.boxes.get("Bob") is not None, 10, "contacts to found with")
            await ui.press(colls.picker.boxes["Bob"])
            # bad input is said under the form, before anything is sent
            colls.amend_field.text = "3/2"
            await ui.frames(2)
            assert "between 0/1 and 1/1" in colls.found_error.text
            colls.join_id_field.text, colls.join_member_field.text = "not-an-id", bob_address
            await ui.scroll_to(colls.join_button)
            await ui.press(colls.join_button)
            await ui.until(lambda: colls.join_error.text, 30, "a bad collective id refused")
            colls.join_id_field.text = colls.join_member_field.text = colls.join_error.text = ""
            await ui.scroll_to(colls.name_field)
            colls.quorum_field.text = "2"
            colls.amend_field.text = "2/3"
            await ui.frames(2)
            assert "two thirds" in " ".join(w.text for w in colls.rules.children)
            await ui.screenshot("22-collective-found")
            await ui.press(colls.found_button)
            await ui.until(lambda: app.shell.manager.current == "collective", 90,
                           lambda: f"founded: {colls.found_error.text} {app.notices[-3:]}")
            group = app.screen("collective")
            await ui.until(lambda: group.state is not None and len(group.state["members"]) == 2, 60)
            cid = group.state["id"]
            code, out, err = await ui.komrade(carol_dir, "collective", "join", *net, cid, alice_address,
                                              "--note", "I live on the 3rd floor", passphrase=CAROL_PASS)
            assert code == 0, err
            join_id = out.strip()
            ui.mark("Carol asked to join")
            await ui.press_until(group.refresh_button, lambda: join_id in group.join_rows, 60,
                                 lambda: f"Carol's request shown: {group.state['joins']} {app.notices[-3:]}")
            assert "Carol: 0 of 2 vouches" in group.join_rows[join_id].text
            assert "I live on the 3rd floor" in group.join_rows[join_id].text
            # a second press (the row redrawn under the finger by a pushed update) changes nothing: one vouch each
            await ui.press_until(lambda: group.join_rows[join_id].vouch_button,
                                 lambda: "1 of 2 vouches" in getattr(group.join_rows.get(join_id), "text", ""),
                                 60, lambda: f"vouched: {group.error.text} {app.notices[-3:]}")
            # a proposal to raise the quorum, voted on anonymously
            group.amend_quorum.text = "3"
            await ui.press(group.propose_button)
            await ui.until(lambda: group.proposal_rows, 60, lambda: f"proposed: {group.error.text} {app.notices[-3:]}")
            proposal = next(iter(group.proposal_rows.values()))
            assert "a newcomer needs 3 vouches" in proposal.title.text
            await ui.press(proposal.votes.buttons["up"])
            await ui.until(lambda: "1 yes of 2 needed" in next(iter(group.proposal_rows.values())).tally.text, 60,
                           lambda: f"voted: {group.error.text} {app.notices[-3:]}")
            assert next(iter(group.proposal_rows.values())).votes.mine == "up"
            await ui.screenshot("23-collective")
            group.post_field.text = "meeting on Thursday"
            await ui.scroll_to(group.post_button)
            await ui.press(group.post_button)
            await ui.until(lambda: any("meeting on Thursday" in w.text for box in group.posts_box.children
                                       for w in box.children), 60, lambda: f"posted: {app.notices[-3:]}")
        finally:
            await close(app, task)
            bg.run(stop_all(relays))

    asyncio.run(main())


def test_form_values_are_checked_before_anything_is_sent() -> None:
    from app.screens.collectives import parse_share, rules_in_words
    from app.screens.events import parse_time

    assert parse_share(" 2/3 ", "x") == [2, 3]
    for bad in ("2", "a/b", "3/2", "1/0", "-1/2"):
        with pytest.raises(ValueError, match="fraction|between"):
            parse_share(bad, "the share to amend")
    assert parse_time("2026-12-01 18:00", "Starts") == int(datetime(2026, 12, 1, 18, 0).timestamp())
    with pytest.raises(ValueError, match="Starts: a date and time like"):
        parse_time("tomorrow", "Starts")
    words = " ".join(rules_in_words({"vouch_min": 2, "vouch_share": [1, 3], "amend_share": [2, 3],
                                     "remove_share": [1, 2], "vote_window": 7 * 86400}))
    assert "after 2 vouches" in words and "a third of the members" in words
    assert "two thirds" in words and "half" in words and "7 day(s)" in words
