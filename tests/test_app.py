"""The desktop app, driven headless as a person would, against a real network of relays on loopback.

The app runs its own node as a process (`komrade node`) and talks to it only through the local API; Bob and Dave
are other people using the CLI. Screenshots of every screen go to docs/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import segno

from . import app_driver as ui  # sets Kivy's environment first
from .support import start_relays

from app.main import KomradeApp  # noqa: E402
from app.node_host import NodeOptions  # noqa: E402
from komrade_dht.address import encode_address  # noqa: E402
from komrade_dht.identity import Identity  # noqa: E402

PASSPHRASE = "tangerine lighthouse orbit 1917"
BOB_PASS = "Bob walks the quiet orbit 1917"
DAVE_PASS = "Dave walks the quiet orbit 1917"


def make_app(data_dir: Path, relay: tuple[str, int]) -> KomradeApp:
    app = KomradeApp(NodeOptions(data_dir, ("%s:%d" % relay,), os.devnull, sync_interval=1.0))
    app.theme_cls.theme_style_switch_animation = False
    return app


async def start(app: KomradeApp) -> asyncio.Task:
    task = asyncio.ensure_future(app.async_run(async_lib="asyncio"))
    await ui.until(lambda: app.root is not None and app.shell is not None, 30, "the window")
    await ui.frames(5)
    return task


async def create_identity(app: KomradeApp, name: str = "Alice") -> str:
    """Onboarding as a person does it (a name, a good passphrase twice, Create); the address the Me screen shows."""
    welcome = app.screen("welcome")
    welcome.name_field.text = name
    welcome.pass_field.text = welcome.confirm_field.text = PASSPHRASE
    await ui.frames(3)
    await ui.press(welcome.create_button)
    await ui.until(lambda: app.shell.manager.current == "me", 60, "identity created, node started")
    me = app.screen("me")
    await ui.until(lambda: me.address.text.startswith("komrade1"), 40)
    return me.address.text


async def close(app: KomradeApp, task: asyncio.Task) -> int | None:
    """Close the window as its close button does; the node must stop with it."""
    pid = app.host.pid
    ui.Window.dispatch("on_request_close")
    await asyncio.wait_for(task, 40)
    return pid


def rail(app: KomradeApp, name: str):
    return app.shell.items[name]


async def has_blob(relay, message_id: str) -> bool:
    return relay.store.has_blob(bytes.fromhex(message_id))


async def stop_all(relays) -> None:
    for r in relays:
        await r.stop_async()


@pytest.fixture
def bg() -> Iterator[ui.LoopThread]:
    """The relays run on their own loop and thread (other people's machines): the window's frames never delay
    their answers."""
    loop = ui.LoopThread()
    yield loop
    loop.stop()


def test_onboarding_contacts_messages_burn_and_close(tmp_path: Path, bg: ui.LoopThread) -> None:
    async def main() -> None:
        relays = bg.run(start_relays(tmp_path / "net", 5))
        relay = "%s:%d" % relays[0].address
        net = ["--bootstrap", relay, "--bootstrap-file", os.devnull]
        bob_dir, dave_dir, alice_dir = tmp_path / "bob", tmp_path / "dave", tmp_path / "alice"
        # Bob and Dave use the CLI; they set up while Alice starts the app.
        people = asyncio.gather(ui.komrade(bob_dir, "init", "--name", "Bob", passphrase=BOB_PASS),
                                ui.komrade(dave_dir, "init", "--name", "Dave", passphrase=DAVE_PASS))
        app = make_app(alice_dir, relays[0].address)
        task = await start(app)
        node_pid = None
        try:
            # -- onboarding ---------------------------------------------------------------------------------------
            welcome = app.screen("welcome")
            assert app.shell.manager.current == "welcome"
            welcome.name_field.text = "Alice"
            welcome.pass_field.text = "alice"
            await ui.press(welcome.create_button)
            assert "stronger" in welcome.error.text and not alice_dir.joinpath("identity.keystore").exists()
            welcome.pass_field.text = PASSPHRASE
            welcome.confirm_field.text = PASSPHRASE + "x"
            await ui.press(welcome.create_button)
            assert "differ" in welcome.error.text
            welcome.confirm_field.text = PASSPHRASE
            await ui.frames(3)
            assert "Strength: " in welcome.strength.text
            await ui.screenshot("01-welcome")
            await ui.press(welcome.create_button)
            await ui.until(lambda: app.shell.manager.current == "me", 60, "identity created, node started")
            node_pid = app.host.pid
            me = app.screen("me")
            await ui.until(lambda: me.address.text.startswith("komrade1"), 40)
            assert me.fingerprint.text.count(" ") == 5 and len(app.backend.recovery_text) == 69
            await ui.screenshot("02-identity")
            await ui.press(me.copy_address)
            assert app.notices[-1].startswith("Address")
            # The keystore the app made opens from the CLI, with the same address (checked below).
            alice_address = me.address.text
            from_cli = asyncio.ensure_future(ui.komrade(alice_dir, "address", "--no-qr", passphrase=PASSPHRASE))
            for code, out, err in await people:
                assert code == 0, err
            bob_address = (await people)[0][1].splitlines()[1]
            assert bob_address.startswith("komrade1")

            # -- contacts: a typo is refused inline, a pasted address and a QR image work -------------------------
            await ui.press(rail(app, "contacts"))
            contacts = app.screen("contacts")
            assert app.shell.manager.current == "contacts"
            typo = bob_address[:-3] + ("q" if bob_address[-3] != "q" else "p") + bob_address[-2:]
            contacts.address_field.text = typo
            contacts.name_field.text = "Bob"
            await ui.frames(2)
            assert "checksum" in contacts.address_error.text
            await ui.press(contacts.add_button)
            await ui.screenshot("03-contacts-typo")
            assert app.backend.contacts == [] and "checksum" in contacts.address_error.text
            contacts.address_field.text = bob_address
            await ui.frames(2)
            assert contacts.address_error.text == ""
            await ui.press(contacts.add_button)
            await ui.until(lambda: [c.name for c in app.backend.contacts] == ["Bob"], 40, "Bob added")

            carol_address = encode_address(Identity.generate().verify_key, 8)
            qr = tmp_path / "carol-qr.png"
            segno.make(carol_address, error="m").save(qr, scale=6, border=4)
            contacts.image_field.text = str(qr)
            await ui.press(contacts.decode_button)
            await ui.until(lambda: contacts.address_field.text == carol_address, 40, "QR decoded")
            contacts.name_field.text = "Carol"
            await ui.press(contacts.add_button)
            await ui.until(lambda: len(app.backend.contacts) == 2, 40, "Carol added")
            # Rename Carol through the dialog.
            await ui.until(lambda: "Carol" in contacts.rows, 40)
            await ui.press(contacts.rows["Carol"].buttons["rename"])
            dialog = await ui.until(lambda: getattr(contacts, "dialog", None), 40, "the rename dialog")
            await ui.frames(5)
            dialog.name_field.text = "Caroline"
            await ui.press(dialog.ok_button)
            await ui.until(lambda: sorted(c.name for c in app.backend.contacts) == ["Bob", "Caroline"], 40)
            await ui.screenshot("04-contacts")

            code, out, err = await from_cli
            assert code == 0 and out.split()[0] == alice_address, err

            # -- verify Bob -----------------------------------------------------------------------------------
            await ui.until(lambda: "Bob" in contacts.rows, 40)
            await ui.press(contacts.rows["Bob"].buttons["verify"])
            verify = app.screen("verify")
            assert app.shell.manager.current == "verify"
            await ui.press(verify.verify_button)
            await ui.until(lambda: app.backend.contacts[0].verified, 40, "Bob verified")
            await ui.until(lambda: verify.state.text == "Verified.", 40)
            await ui.screenshot("05-verify")

            # -- a DM from the app, read by Bob through the CLI ------------------------------------------------------
            await ui.press(verify.back_button)
            await ui.until(lambda: "Bob" in contacts.rows, 40)
            await ui.press(contacts.rows["Bob"].buttons["message"])
            thread = app.screen("thread")
            assert app.shell.manager.current == "thread"
            # the node says how many devices Bob has (each takes a header's room): one, so the whole envelope
            await ui.until(lambda: len(thread.rooms) == 1, 30, "the room for Bob's devices")
            assert [r["devices"] for r in thread.rooms.values()] == [1]
            thread.compose.text = "x" * 700
            await ui.frames(2)
            assert thread.send_button.disabled and "too long" in thread.budget.text
            text = "meeting moved to the library " + os.urandom(3).hex()
            thread.compose.text = text
            await ui.frames(2)
            assert not thread.send_button.disabled and "left in one envelope" in thread.budget.text
            await ui.press(thread.send_button)
            await ui.until(lambda: any(s.text == text for s in app.backend.sent), 30, "sent")
            await ui.until(lambda: thread.compose.text == "", 40)
            sent = next(s for s in app.backend.sent if s.text == text)
            assert sent.acks >= 1 and sent.id in thread.bubble_widgets
            code, out, err = await ui.komrade(bob_dir, "inbox", "--json", *net, passphrase=BOB_PASS)
            assert code == 0, err
            inbox = json.loads(out)["messages"]
            assert [(m["text"], m["sender_name"], m["sender_address"]) for m in inbox] == [(text, "Alice", alice_address)]

            # -- Bob replies from the CLI; it appears in the open thread through the event stream ------------------
            reply = "see you there " + os.urandom(3).hex()
            code, out, err = await ui.komrade(bob_dir, "send", alice_address, reply, *net, passphrase=BOB_PASS)
            assert code == 0, err
            reply_id = out.split()[1]
            await ui.until(lambda: reply_id in thread.bubble_widgets, 30, "the reply in the thread")
            await ui.until(lambda: app.backend.unread == 0, 40, "read when shown")
            await ui.screenshot("06-thread")

            # -- a stranger writes: a message request, counted in the window title -------------------------------------
            code, out, err = await ui.komrade(dave_dir, "send", alice_address, "hello, we met at the fair", *net,
                                              passphrase=DAVE_PASS)
            assert code == 0, err
            await ui.until(lambda: app.backend.unread == 1, 30, "Dave's request")
            assert app.title == "komrade (1 unread)"
            await ui.press(rail(app, "chats"))
            chats = app.screen("chats")
            await ui.until(lambda: "Dave" in chats.request_cards and "Bob" in chats.cards, 40)
            await ui.screenshot("07-messages")
            await ui.press(chats.request_cards["Dave"].accept)
            await ui.until(lambda: "Dave" in [c.name for c in app.backend.contacts], 40, "request accepted")
            await ui.until(lambda: "Dave" in chats.cards and not chats.request_cards, 40)

            # -- burn Bob's reply: gone here and from every relay ------------------------------------------------
            await ui.press(chats.cards["Bob"])
            await ui.until(lambda: app.shell.manager.current == "thread" and reply_id in thread.bubble_widgets
                           and thread.bubble_widgets[reply_id].get_root_window() is not None, 40)
            await ui.press_until(lambda: thread.bubble_widgets[reply_id].burn_button,
                                 lambda: getattr(thread, "dialog", None) is not None, 40, "the burn confirmation")
            await ui.frames(5)
            await ui.screenshot("08-burn-confirm")
            await ui.press(thread.dialog.ok_button)
            await ui.until(lambda: all(m.id != reply_id for m in app.backend.messages), 40, "burned")
            assert not any(bg.run(has_blob(r, reply_id)) for r in relays)
            assert reply_id not in thread.bubble_widgets and any("Burned" in n for n in app.notices)

            # -- node status, sync now, settings ----------------------------------------------------------------
            await ui.press(rail(app, "status"))
            status = app.screen("status")
            await ui.press(status.sync_button)
            await ui.until(lambda: any(n.startswith("Synced") for n in app.notices), 40, "sync now")
            await ui.until(lambda: status.lines["peers"].text not in ("-", "0"), 40)
            await ui.screenshot("09-node")
            await ui.press(rail(app, "settings"))
            settings = app.screen("settings")
            assert settings.data_dir.text.startswith(str(alice_dir))
            assert "1 in 256 users" in settings.width_label.text
            settings.interval_field.text = "abc"
            await ui.press(settings.save_button)
            assert "number of seconds" in settings.error.text
            settings.interval_field.text = "20"
            settings.bootstrap_field.text = relay
            await ui.press(settings.save_button)
            await ui.until(lambda: app.backend.settings.sync_interval == 20.0, 40, "settings saved")
            assert json.loads((alice_dir / "settings.json").read_text()) == {
                "bootstrap": [relay], "sync_interval": 20.0, "tor": None}
            # untraceable mode: refused without a SOCKS port, then saved for the next start
            await ui.press(settings.tor_button)
            assert settings.tor_on
            await ui.press(settings.save_button)
            assert "SOCKS" in settings.error.text
            settings.tor_socks_field.text = "127.0.0.1:9050"
            settings.tor_relays_field.text = "relay.example:9476"
            await ui.press(settings.save_button)
            await ui.until(lambda: app.backend.settings.tor is not None, 40, "untraceable mode saved")
            saved = json.loads((alice_dir / "settings.json").read_text())
            assert saved["tor"] == {"socks": "127.0.0.1:9050", "relays": ["relay.example:9476"]}
            await ui.press(settings.tor_button)  # and off again
            await ui.press(settings.save_button)
            await ui.until(lambda: app.backend.settings.tor is None, 40, "untraceable mode off")
            await ui.press(settings.crowd_button)  # the crowd sharing our slot, measured through the node
            await ui.until(lambda: "people share your slot" in settings.crowd_label.text, 60, "crowd measured")
            assert "nodes in the network" in settings.crowd_label.text
            await ui.screenshot("10-settings")
            ui.mark(f"{ui.Clock.frames_displayed} frames drawn")
        finally:
            await close(app, task)
            bg.run(stop_all(relays))
        assert app.errors == []
        # Closing the window stopped the node (cleanly: it removed its API files) and left no process.
        assert node_pid is not None and not ui.pid_alive(node_pid)
        assert not (alice_dir / "api.json").exists() and not (alice_dir / "api.token").exists()

    asyncio.run(main())


def test_unlock_errors_and_a_node_that_stops(tmp_path: Path, bg: ui.LoopThread) -> None:
    """Later starts ask the passphrase (a wrong one and a damaged keystore each say what to do); when the node
    stops, the window keeps responding and says what is wrong."""
    async def main() -> None:
        relays = bg.run(start_relays(tmp_path / "net", 5))
        home = tmp_path / "erin"
        code, _, err = await ui.komrade(home, "init", "--name", "Erin", passphrase=PASSPHRASE)
        assert code == 0, err
        app = make_app(home, relays[0].address)
        task = await start(app)
        try:
            unlock = app.screen("unlock")
            assert app.shell.manager.current == "unlock" and app.shell.rail.disabled
            keystore = home / "identity.keystore"
            good = keystore.read_bytes()
            keystore.write_bytes(good[:60] + bytes([good[60] ^ 1]) + good[61:])
            unlock.pass_field.text = PASSPHRASE
            await ui.press(unlock.unlock_button)
            await ui.until(lambda: "damaged" in unlock.error.text, 40, "damaged keystore explained")
            assert "recovery text" in unlock.error.text and "backup" in unlock.error.text
            keystore.write_bytes(good)
            unlock.pass_field.text = "not my passphrase"
            await ui.press(unlock.unlock_button)
            await ui.until(lambda: "Wrong passphrase" in unlock.error.text, 40, "wrong passphrase explained")
            assert app.shell.manager.current == "unlock" and app.host.pid is None
            await ui.screenshot("11-unlock-wrong-passphrase")
            unlock.pass_field.text = PASSPHRASE
            await ui.press(unlock.unlock_button)
            await ui.until(lambda: app.shell.manager.current == "chats", 60, "unlocked")
            assert not app.shell.rail.disabled and app.backend.connected

            # The node stops under the app (crash, or someone stopped it).
            pid = app.host.pid
            os.kill(pid, signal.SIGTERM)
            await ui.until(lambda: not app.backend.connected, 40, "the app notices")
            assert "node not answering" in app.title
            await ui.press(rail(app, "status"))
            status = app.screen("status")
            assert app.shell.manager.current == "status" and "does not answer" in status.problem.text
            assert status.lines["state"].text.startswith("not answering")
            await ui.press_until(status.sync_button,
                                 lambda: any(n.startswith("Sync failed") and "does not answer" in n
                                             for n in app.notices), 60, lambda: f"the failure said (notices: {app.notices})")
            await ui.screenshot("12-node-down")
            await ui.press(rail(app, "contacts"))  # still responds
            assert app.shell.manager.current == "contacts"
            await ui.frames(10, timeout=30)
            assert app.errors == []
        finally:
            await close(app, task)
            bg.run(stop_all(relays))
        assert not ui.pid_alive(pid)

    asyncio.run(main())


def test_without_a_display_one_line_points_to_relay_and_node() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    for cmd in ([sys.executable, "-m", "app"], ["bash", "scripts/run.sh"]):
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 2 and done.stdout == "", (cmd, done.stderr)
        [line] = done.stderr.splitlines()
        assert "no display" in line and "run.sh relay" in line and "run.sh node" in line


def test_restore_from_recovery_text(tmp_path: Path, bg: ui.LoopThread) -> None:
    """The first screen restores an identity from its recovery text (a typo is refused inline)."""
    async def main() -> None:
        relays = bg.run(start_relays(tmp_path / "net", 5))
        old = tmp_path / "old-device"
        code, _, err = await ui.komrade(old, "init", "--name", "Fran", passphrase=PASSPHRASE)
        assert code == 0, err
        text = (await ui.komrade(old, "recovery", passphrase=PASSPHRASE))[1].strip()
        address = (await ui.komrade(old, "address", "--no-qr", passphrase=PASSPHRASE))[1].split()[0]
        app = make_app(tmp_path / "new-device", relays[0].address)
        task = await start(app)
        try:
            welcome = app.screen("welcome")
            await ui.press(welcome.restore_button)
            assert welcome.create_button.text_widget.text == "Restore my identity"
            welcome.name_field.text = "Fran"
            welcome.pass_field.text = welcome.confirm_field.text = "a different long passphrase 2048"
            welcome.recovery_field.text = ("Z" if text[0] != "Z" else "Y") + text[1:]
            await ui.press(welcome.create_button)
            assert "typo" in welcome.error.text and app.host.pid is None
            welcome.recovery_field.text = text.lower().replace("-", " ")
            await ui.press(welcome.create_button)
            await ui.until(lambda: app.shell.manager.current == "chats", 60, "restored and started")
            assert app.backend.identity.address == address and app.backend.recovery_text == ""
            assert app.errors == []
        finally:
            await close(app, task)
            bg.run(stop_all(relays))

    asyncio.run(main())
