"""An event's picture in the app: made with the New event form from a file, fetched whole through the node's API
and shown on the event's screen (headless, real window, real relays on loopback)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from . import app_driver as ui  # sets Kivy's environment first
from .support import start_relays
from .test_api_posts import jpeg_with_gps
from .test_app import bg, close, create_identity, make_app, start, stop_all  # noqa: F401 (bg: fixture)
from .test_app_organize import open_new_event


def test_an_event_picture_is_shown_on_its_screen(tmp_path: Path, bg: ui.LoopThread) -> None:  # noqa: F811
    async def main() -> None:
        relays = bg.run(start_relays(tmp_path / "net", 5))
        picture = tmp_path / "banner.jpg"
        picture.write_bytes(jpeg_with_gps())
        app = make_app(tmp_path / "alice", relays[0].address)
        task = await start(app)
        try:
            await create_identity(app)
            new = await open_new_event(app)
            day = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%d")
            new.title_field.text = "Mural painting"
            new.start_field.text, new.end_field.text = f"{day} 10:00", f"{day} 16:00"
            new.image_field.text = str(picture)
            await ui.press(new.create_button)
            await ui.until(lambda: app.shell.manager.current == "event", 90,
                           lambda: f"the event created: {new.error.text} {app.notices[-3:]}")
            detail = app.screen("event")
            await ui.until(lambda: detail.event is not None and detail.event.get("has_image"), 60, "the event")
            await ui.until(lambda: getattr(detail, "picture", None) is not None and detail.picture.texture is not None,
                           60, lambda: f"the picture: {detail.error.text} {app.notices[-3:]}")
            assert detail.picture.texture.size[0] > 0 and detail.picture.get_root_window() is not None
            await ui.screenshot("33-event-picture")
        finally:
            await close(app, task)
            bg.run(stop_all(relays))

    asyncio.run(main())
