"""The app's posts, friends and profile screens (issue 10), driven headless as a person would, against a real
network of relays on loopback; Bob uses the CLI on the other side. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

from PIL import Image

from . import app_driver as ui  # sets Kivy's environment first
from kivy.uix.image import Image as KivyImage  # noqa: E402  (after the environment)

from app.main import Notice  # noqa: E402

from .support import start_relays
from .test_app import BOB_PASS, bg, close, create_identity, make_app, rail, start  # noqa: F401  (bg: the fixture)


def photo(path: Path) -> Path:
    image = Image.frombytes("RGB", (160, 120), os.urandom(160 * 120 * 3))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 18.0)}
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    path.write_bytes(out.getvalue())
    return path


def test_feeds_compose_friends_profile_screens(tmp_path: Path, bg: ui.LoopThread) -> None:  # noqa: F811
    async def main() -> None:
        relays = bg.run(start_relays(tmp_path / "net", 5))
        relay = "%s:%d" % relays[0].address
        net = ["--bootstrap", relay, "--bootstrap-file", os.devnull]
        bob_dir, alice_dir = tmp_path / "bob", tmp_path / "alice"
        bob_init = asyncio.ensure_future(ui.komrade(bob_dir, "init", "--name", "Bob", passphrase=BOB_PASS))
        app = make_app(alice_dir, relays[0].address)
        task = await start(app)
        try:
            alice_address = await create_identity(app)
            code, out, err = await bob_init
            assert code == 0, err
            bob_address = out.splitlines()[1]

            # -- compose: a world post with a picture, then an anonymous one --------------------------------------
            await ui.press(rail(app, "feeds"))
            feeds = app.screen("feeds")
            await ui.press(feeds.compose_button)
            compose = app.screen("compose")
            assert app.shell.manager.current == "compose"
            compose.text_field.text = "x" * 1001
            await ui.frames(2)
            assert "too long" in compose.counter.text
            compose.text_field.text = "hello from the app"
            compose.image_field.text = str(photo(tmp_path / "cat.jpg"))
            await ui.press(compose.post_button)
            await ui.until(lambda: compose.result.text.startswith("Posted"), 90, "the post published")
            await ui.until(lambda: compose.text_field.text == "", 10)
            compose.text_field.text = "anonymous from the app"
            await ui.press(compose.anonymous)
            assert compose.anonymous.active
            await ui.screenshot("13-compose")
            before = compose.result.text
            await ui.press(compose.post_button)
            await ui.until(lambda: compose.result.text != before and compose.result.text.startswith("Posted"), 90)
            # a local post says what it published
            await ui.press(compose.audience["local"])
            compose.text_field.text = "market on the square"
            compose.lat_field.text, compose.lon_field.text, compose.radius_field.text = "52.52", "13.405", "10"
            before = compose.result.text
            await ui.press(compose.post_button)
            await ui.until(lambda: compose.result.text != before and "2 km cell" in compose.result.text, 90)

            # Bob reads them with the CLI: the picture has no metadata, the anonymous post no author
            code, out, err = await ui.komrade(bob_dir, "feed", *net, "--json", "--save-pictures",
                                              str(tmp_path / "saved"), passphrase=BOB_PASS)
            assert code == 0, err
            posts = {p["text"]: p for p in json.loads(out)["posts"]}
            assert posts["hello from the app"]["author_name"] == "Alice"
            assert b"SpyCam" not in Path(posts["hello from the app"]["saved"]).read_bytes()
            assert posts["anonymous from the app"]["author_name"] is None

            # -- feeds: world and local tabs --------------------------------------------------------------------
            await ui.press(rail(app, "feeds"))
            # the snackbars of the posts above may still be opening and take the touch: press until it starts
            for _ in range(4):
                await ui.press(feeds.refresh_button)
                started = len(app.notices)
                try:
                    await ui.until(lambda: feeds.refresh_button.disabled or len(app.notices) > started, 3, "pulling")
                    break
                except AssertionError:
                    continue
            try:
                await ui.until(lambda: len(feeds.cards) >= 2, 60, "the world feed shown")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; cards {list(feeds.cards)}; notices {app.notices[-4:]}") from None
            # the picture comes through the node's API (kept there encrypted), not from a file

            def shown_pictures() -> list[KivyImage]:
                return [w for card in feeds.cards.values() for w in card.walk()
                        if isinstance(w, KivyImage) and w.texture is not None and w.texture.size[0] > 32]

            await ui.until(shown_pictures, 30, "the post's picture shown")
            await ui.screenshot("14-feeds-world")
            await ui.press(feeds.tabs["local"])
            feeds.lat_field.text, feeds.lon_field.text = "52.53", "13.41"
            await ui.press(feeds.refresh_button)
            await ui.until(lambda: len(feeds.cards) == 1, 60, "the local feed shown")

            # -- friends: Alice adds Bob, Bob adds Alice with the CLI ---------------------------------------------
            await ui.press(feeds.friends_button)  # Friends and Profile live behind Posts
            friends = app.screen("friends")
            friends.address_field.text = bob_address
            friends.name_field.text = "Bob"
            await ui.press(friends.add_button)
            await ui.until(lambda: "Bob" in friends.rows, 60, "Bob in the friends list")
            await ui.screenshot("15-friends")
            code, out, err = await ui.komrade(bob_dir, "friend", "add", *net, alice_address, "--name", "Alice",
                                              passphrase=BOB_PASS)
            assert code == 0, err

            # -- profile: set, read back by Bob ------------------------------------------------------------------
            await ui.press(rail(app, "feeds"))
            await ui.press(feeds.profile_button)
            profile = app.screen("profile")
            profile.name_field.text = "Alice from the app"
            profile.bio_field.text = "organiser"
            await ui.press(profile.save_button)
            await ui.until(lambda: profile.saved.text.startswith("Published version"), 60, "profile published")
            code, out, err = await ui.komrade(bob_dir, "profile", "show", *net, alice_address, "--json",
                                              passphrase=BOB_PASS)
            assert code == 0, err
            shown = json.loads(out)
            assert (shown["name"], shown["bio"]) == ("Alice from the app", "organiser")
            profile.address_field.text = bob_address
            await ui.press(profile.show_button)
            await ui.until(lambda: "no profile" in profile.other_error.text, 40, "Bob has none, said under the field")
            # Bob publishes one with a photo (CLI); Alice's screen shows it, the photo through the node's API
            code, out, err = await ui.komrade(bob_dir, "profile", "set", *net, "--name", "Bob B", "--photo",
                                              str(photo(tmp_path / "bob.jpg")), passphrase=BOB_PASS)
            assert code == 0, err

            def bobs_photo() -> list[KivyImage]:
                return [w for w in profile.other.walk() if isinstance(w, KivyImage) and w.texture is not None
                        and w.texture.size[0] > 32]

            await ui.press_until(profile.show_button, bobs_photo, 60, "Bob's profile photo shown")
            assert any(getattr(w, "text", "") == "Bob B" for w in profile.other.walk())
            assert profile.other_error.text == ""  # the earlier "no profile" is gone with the profile shown
            await ui.scroll_to(bobs_photo()[0])
            # the snackbar of the first, failed attempt closes by itself (4 s): a screenshot without it
            await ui.until(lambda: not any(isinstance(w, Notice) for w in ui.Window.children), 15, "snackbars closed")
            await ui.screenshot("16-profile")
        finally:
            await close(app, task)
            bg.run(_stop(relays))

    asyncio.run(main())


async def _stop(relays: list) -> None:
    for r in relays:
        await r.stop_async()
