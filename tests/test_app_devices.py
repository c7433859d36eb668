"""The app's devices screen (issue 14), driven headless as a person would, against a real network of relays on
loopback: a pairing code shown as QR and text, a new device joining with it from the CLI, and its removal after a
confirmation. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from . import app_driver as ui  # sets Kivy's environment first
from .support import start_relays
from .test_app import bg, close, create_identity, make_app, start  # noqa: F401  (bg: the fixture)
from .test_app_posts import _stop


def test_devices_screen_pairs_and_removes_a_device(tmp_path: Path, bg: ui.LoopThread) -> None:  # noqa: F811
    async def main() -> None:
        relays = bg.run(start_relays(tmp_path / "net", 5))
        net = ["--bootstrap", "%s:%d" % relays[0].address, "--bootstrap-file", os.devnull]
        app = make_app(tmp_path / "alice", relays[0].address)
        task = await start(app)
        try:
            address = await create_identity(app)
            me = app.screen("me")

            await ui.press_until(me.devices_button, lambda: app.shell.manager.current == "devices")
            screen = app.screen("devices")
            await ui.until(lambda: list(screen.rows) == ["first device"], 30, "the list")
            assert screen.rows["first device"].remove_button is None  # the root device cannot be removed

            await ui.press_until(screen.pair_button, lambda: screen.code.text.startswith("komrade-pair:"))
            await ui.until(lambda: screen.qr.texture is not None, 20, "the pairing QR")
            await ui.screenshot("30-devices-pairing")
            code, out, err = await ui.komrade(tmp_path / "phone", "device", "join", *net, screen.code.text,
                                              "--name", "phone", passphrase="the phone's own passphrase 1917")
            assert code == 0, err
            assert address in out
            await ui.until(lambda: list(screen.rows) == ["first device", "phone"], 40, "the phone listed")
            assert screen.code.text == "" and "Paired phone" in screen.pair_state.text
            await ui.screenshot("31-devices-list")

            # removal asks first; Cancel keeps it
            await ui.press(screen.rows["phone"].remove_button)
            await ui.until(lambda: getattr(screen, "dialog", None) is not None, 10, "the confirmation")
            await ui.press(screen.dialog.cancel_button)
            await ui.frames(3)
            assert list(screen.rows) == ["first device", "phone"]
            await ui.press(screen.rows["phone"].remove_button)
            await ui.screenshot("32-devices-remove")
            await ui.press(screen.dialog.ok_button)
            await ui.until(lambda: list(screen.rows) == ["first device"], 40, "the phone removed")
            assert any("Removed phone" in n for n in app.notices)
        finally:
            await close(app, task)
            bg.run(_stop(relays))

    asyncio.run(main())
