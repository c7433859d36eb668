"""The app's map of anonymous pins (issue 11), driven headless as a person would, against a real network of relays
on loopback and a local MBTiles file this test writes (no network beyond loopback): Alice drops a pin in the app,
Bob sees it with the CLI within its radius and not from far away, Carol confirms it, and Alice's list shows the
confirmation after a refresh, with the pin's marker on the map."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import sqlite3
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from . import app_driver as ui  # sets Kivy's environment first
from .support import start_relays
from .test_app import BOB_PASS, DAVE_PASS, PASSPHRASE, bg, close, make_app, rail, start  # noqa: F401  (bg: fixture)
from .test_app_posts import _stop

HERE = (52.52, 13.405)


def tile_xy(lat: float, lon: float, zoom: int) -> tuple[int, int]:
    """The XYZ (slippy map) tile holding (lat, lon)."""
    n = 2 ** zoom
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def write_mbtiles(path: Path, at: tuple[float, float], zooms: range, span: int = 3) -> int:
    """A small raster MBTiles file: for each zoom, the (2*span+1)^2 tiles around ``at``, drawn as a plan of streets
    (256x256 PNGs). MBTiles rows count from the south (TMS). Returns how many tiles it holds."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
    db.executemany("INSERT INTO metadata VALUES (?, ?)", [
        ("name", "test town"), ("format", "png"), ("minzoom", str(zooms.start)), ("maxzoom", str(zooms.stop - 1)),
        ("center", f"{at[1]},{at[0]},{zooms.start}"), ("attribution", "drawn by the test")])
    count = 0
    for z in zooms:
        cx, cy = tile_xy(*at, z)
        for x in range(cx - span, cx + span + 1):
            for y in range(cy - span, cy + span + 1):
                image = Image.new("RGB", (256, 256), (238, 232, 218))
                draw = ImageDraw.Draw(image)
                for i in range(0, 256, 64):  # streets every quarter tile, a park, the tile's name
                    draw.line([(i + 20, 0), (i + 20, 255)], fill=(255, 255, 255), width=6)
                    draw.line([(0, i + 40), (255, i + 40)], fill=(255, 255, 255), width=6)
                if (x + y) % 3 == 0:
                    draw.rectangle([(90, 110), (140, 150)], fill=(190, 222, 180))
                draw.text((6, 6), f"{z}/{x}/{y}", fill=(150, 140, 120))
                out = io.BytesIO()
                image.save(out, format="PNG")
                db.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, 2 ** z - 1 - y, out.getvalue()))
                count += 1
    db.commit()
    db.close()
    return count


def test_map_pins_drop_see_confirm(tmp_path: Path, bg: ui.LoopThread,  # noqa: F811
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tiles = tmp_path / "town.mbtiles"
    assert write_mbtiles(tiles, HERE, range(11, 15)) == 4 * 49
    monkeypatch.setenv("KOMRADE_MAP_TILES", str(tiles))
    monkeypatch.setenv("KOMRADE_REGISTRATION_TRIALS", "1")  # cheap registrations to vote (every process)

    async def main() -> None:
        relays = bg.run(start_relays(tmp_path / "net", 5))
        net = ["--bootstrap", "%s:%d" % relays[0].address, "--bootstrap-file", os.devnull]
        bob_dir, carol_dir = tmp_path / "bob", tmp_path / "carol"
        inits = asyncio.gather(ui.komrade(bob_dir, "init", "--name", "Bob", passphrase=BOB_PASS),
                               ui.komrade(carol_dir, "init", "--name", "Carol", passphrase=DAVE_PASS))
        app = make_app(tmp_path / "alice", relays[0].address)
        task = await start(app)
        try:
            welcome = app.screen("welcome")
            welcome.name_field.text = "Alice"
            welcome.pass_field.text = welcome.confirm_field.text = PASSPHRASE
            await ui.frames(3)
            await ui.press(welcome.create_button)
            await ui.until(lambda: app.shell.manager.current == "me", 60, "identity created, node started")
            for code, _, err in await inits:
                assert code == 0, err

            # -- the map draws the local tiles; a click on it is your position ----------------------------------
            await ui.press(rail(app, "map"))
            screen = app.screen("map")
            assert "nothing leaves" in screen.tiles_note.text and not screen.tiles_error.text
            await ui.until(lambda: sum(1 for t in screen.map._tiles if tuple(t.texture.size) == (256, 256)) >= 4, 30,
                           "tiles drawn from the MBTiles file")
            ui.mark("map tiles drawn")
            screen.tiles_field.text = str(tmp_path / "nowhere.mbtiles")
            await ui.press(screen.tiles_button)
            assert "no MBTiles file" in screen.tiles_error.text, "an unusable file is said, never gone online"
            screen.tiles_field.text = str(tiles)
            await ui.press(screen.tiles_button)
            assert not screen.tiles_error.text and "nothing leaves" in screen.tiles_note.text
            await ui.press(screen.refresh_button)
            assert "Your position first" in screen.error.text
            await ui.press(screen.map)
            await ui.until(lambda: screen.lat_field.text and screen.lon_field.text, 10, "the click placed you")
            assert abs(float(screen.lat_field.text) - HERE[0]) < 0.01
            assert abs(float(screen.lon_field.text) - HERE[1]) < 0.01
            await ui.until(lambda: screen.status.text.startswith("No live pins"), 60,
                           lambda: f"an empty list; notices {app.notices[-3:]}")

            # -- Alice drops a pin: the form says what is published ----------------------------------------------
            await ui.press(screen.drop_open_button)
            await ui.until(lambda: screen.drop_box.parent is not None, 10)
            assert "~1 km cell" in screen.precision_note.text and "nothing about you" in screen.precision_note.text
            await ui.press(screen.kind_buttons["medical"])
            screen.text_field.text = "x" * 141
            await ui.press(screen.drop_button)
            assert "at most 140" in screen.drop_error.text
            screen.text_field.text = "first aid at the fountain"
            screen.hours_field.text = "2"
            await ui.press(screen.drop_button)
            await ui.until(lambda: screen.cards, 90, lambda: f"the pin listed; notices {app.notices[-3:]}")
            ui.mark("pin dropped and listed")
            [(pin_id, card)] = screen.cards.items()
            assert pin_id in screen.markers and screen.markers[pin_id].parent is not None, "its marker on the map"
            assert card.remove_button is not None, "Alice may remove her own pin"

            # -- Bob sees it within the radius, not from Paris, and drops one; Carol confirms Alice's -------------
            bob_drop, carol = await asyncio.gather(
                ui.komrade(bob_dir, "pin", "drop", *net, "police", "kettling on the bridge", "--at", "52.514,13.392",
                           passphrase=BOB_PASS),
                ui.komrade(carol_dir, "pin", "list", *net, "--at", "52.52,13.40", "--json", passphrase=DAVE_PASS))
            for code, _, err in (bob_drop, carol):
                assert code == 0, err
            bob_pin = bob_drop[1].split("\n")[0]
            near, confirmed = await asyncio.gather(
                ui.komrade(bob_dir, "pin", "list", *net, "--at", "52.53,13.41", "--json", passphrase=BOB_PASS),
                ui.komrade(carol_dir, "pin", "confirm", *net, pin_id, passphrase=DAVE_PASS))
            for code, _, err in (near, confirmed):
                assert code == 0, err
            assert [(p["kind"], p["text"]) for p in json.loads(near[1])["pins"] if p["id"] == pin_id] == [
                ("medical", "first aid at the fountain")]
            code, out, err = await ui.komrade(bob_dir, "pin", "list", *net, "--at", "48.85,2.35", "--json",
                                              passphrase=BOB_PASS)
            assert code == 0, err
            assert not [p for p in json.loads(out)["pins"] if p["id"] == pin_id]
            ui.mark("Bob saw it (not from Paris) and dropped one, Carol confirmed Alice's")

            # -- Alice refreshes: Carol's confirmation is counted; she confirms Bob's pin (her choice filled) ------
            await ui.press_until(screen.refresh_button,
                                 lambda: bob_pin in screen.cards and "confirmed 1" in screen.cards[pin_id].counts.text,
                                 60, lambda: f"both pins, the confirmation counted; notices {app.notices[-3:]}")
            assert bob_pin in screen.markers and screen.cards[bob_pin].remove_button is None
            here = (screen.lat_field.text, screen.lon_field.text)
            await ui.press(screen.markers[bob_pin])  # a marker says its pin; you stay where you were
            await ui.until(lambda: app.notices and app.notices[-1] == "POLICE: kettling on the bridge", 10,
                           lambda: f"the marker's pin said; notices {app.notices[-3:]}")
            assert (screen.lat_field.text, screen.lon_field.text) == here
            await ui.press(screen.cards[bob_pin].buttons["confirm"])
            await ui.until(lambda: "confirmed 1" in screen.cards[bob_pin].counts.text
                           and screen.cards[bob_pin].buttons["confirm"].style == "filled", 60,
                           lambda: f"Alice's confirmation counted and shown; notices {app.notices[-3:]}")
            assert "confirmed 1" in screen.cards[pin_id].counts.text, "Carol's vote still counts after Alice's"
            await ui.screenshot("24-map")
            # Alice removes her own pin: gone from the list and the map
            await ui.press(screen.cards[pin_id].remove_button)
            await ui.until(lambda: bob_pin in screen.cards and pin_id not in screen.cards, 60,
                           lambda: f"Alice's pin removed; notices {app.notices[-3:]}")
            assert pin_id not in screen.markers
            assert not app.errors, app.errors
        finally:
            await close(app, task)
            bg.run(_stop(relays))

    asyncio.run(main())
