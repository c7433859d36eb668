"""Anonymous map pins (issue 11): a map with the live pins around your position, their confirmations and
dismissals, anonymous confirm / dismiss, and "Drop a pin" (kind, short text, position, radius, lifetime).

Every call goes through the local API (``komrade_dht.api.organize_client.OrganizeApi``) as a task owned by the
backend; a failure becomes a snackbar and an inline error.

**Tiles.** By default the map draws OpenStreetMap's public tiles, fetched over HTTPS: the tile server learns which
area you look at (and your IP address), so the screen says so. ``KOMRADE_MAP_TILES=/path/to/file.mbtiles`` (or the
field under the list, for this session) draws a local MBTiles file instead: nothing leaves the machine. Online
tiles are cached only for the session, in a temporary directory removed at exit.
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import requests
from kivy.graphics import Color, Line
from kivy.metrics import dp
from kivy.properties import NumericProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy_garden.mapview import MapLayer, MapSource, MapView
from kivy_garden.mapview import downloader as tile_downloader
from kivy_garden.mapview.downloader import Downloader
from kivy_garden.mapview.mbtsource import MBTilesMapSource
from kivymd.uix.boxlayout import MDBoxLayout
from kivymd.uix.card import MDCard
from kivymd.uix.label import MDIcon

from komrade_dht import __version__
from komrade_dht.api.organize_client import OrganizeApi
from komrade_dht.social.pins import DEFAULT_PRECISION_KM, DEFAULT_RADIUS_KM, KINDS, MAX_PIN_TTL, MAX_TEXT

from ..backend import describe
from ..widgets import (BaseScreen, button, choices, column, error_label, field, icon_button, label, mark, position, row,
                       show_if)

#: The environment variable naming a local MBTiles file to draw instead of online tiles.
TILES_ENV = "KOMRADE_MAP_TILES"
OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = "Map data (c) OpenStreetMap contributors"
#: The radius a reader may choose, in km.
MIN_RADIUS_KM, MAX_RADIUS_KM = 1.0, 50.0
DEFAULT_HOURS = 3.0
#: (icon, colour) per kind: what a marker and a list entry look like.
STYLE: dict[str, tuple[str, tuple[float, float, float, float]]] = {
    "danger": ("alert", (0.85, 0.16, 0.12, 1)),
    "police": ("police-badge", (0.13, 0.33, 0.75, 1)),
    "medical": ("medical-bag", (0.05, 0.55, 0.25, 1)),
    "help": ("hand-heart", (0.55, 0.25, 0.65, 1)),
}
ONLINE_NOTE = ("Map tiles come from OpenStreetMap's tile server, which learns which area you look at and your IP "
               "address (not your pins). For a map that sends nothing, use an offline MBTiles file below or set "
               f"{TILES_ENV}.")
UNTRACEABLE_NOTE = ("Untraceable mode is on: online map tiles would show the tile server your IP address and the "
                    "area you look at, so none are drawn. An offline MBTiles file (below) draws the map.")
OFFLINE_NOTE = "Offline map from {name}: tiles are read from this machine, nothing leaves it."

# OpenStreetMap's tile policy asks for a User-Agent that names the application.
tile_downloader.USER_AGENT = f"komrade/{__version__} (kivy_garden.mapview)"
_session_cache: str | None = None


def _tile_cache() -> str:
    """One temporary directory per run for online tiles (a record of where you looked), removed at exit."""
    global _session_cache
    if _session_cache is None:
        _session_cache = tempfile.mkdtemp(prefix="komrade-tiles-")
        atexit.register(shutil.rmtree, _session_cache, True)
    return _session_cache


class _NoTiles(MapSource):
    """A blank map (markers only): what an unusable offline file leaves, rather than going online unasked."""

    def fill_tile(self, tile: Any) -> None:
        tile.state = "done"


class _OnlineTiles(MapSource):
    """OpenStreetMap's tiles over HTTPS; a tile that cannot be fetched is left blank and reported once to
    ``on_error`` (in the window's thread), not as a traceback per tile."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        super().__init__(url=OSM_URL, cache_key="osm", min_zoom=0, max_zoom=19, attribution=OSM_ATTRIBUTION,
                         cache_dir=_tile_cache())
        self.on_error = on_error
        self.failed = False

    def fill_tile(self, tile: Any) -> None:
        if tile.state != "done":
            Downloader.instance(self.cache_dir).submit(self._fetch, tile)

    def _fetch(self, tile: Any) -> Any:
        try:
            return Downloader.instance(self.cache_dir)._load_tile(tile)
        except requests.RequestException as exc:
            return self._failed, (tile, exc)

    def _failed(self, tile: Any, exc: Exception) -> None:
        tile.state = "done"
        if not self.failed:
            self.failed = True
            self.on_error(f"Online map tiles did not load ({type(exc).__name__}): no internet connection? An "
                          "offline MBTiles file works without one.")


def tile_source(mbtiles: str | None, on_error: Callable[[str], None], untraceable: bool = False
                ) -> tuple[MapSource, str]:
    """The map source for ``mbtiles`` (a path; online OpenStreetMap if empty, none in untraceable mode) and the
    sentence the screen shows. ValueError saying why a file cannot be used."""
    if not mbtiles:
        if untraceable:
            return _NoTiles(cache_dir=_tile_cache()), UNTRACEABLE_NOTE
        return _OnlineTiles(on_error), ONLINE_NOTE
    path = Path(mbtiles).expanduser()
    if not path.is_file():
        raise ValueError(f"no MBTiles file at {path}")
    try:
        source = MBTilesMapSource(str(path), cache_dir=_tile_cache())
    except (sqlite3.Error, KeyError, ValueError) as exc:
        raise ValueError(f"{path.name} is not a raster MBTiles file ({exc})") from None
    return source, OFFLINE_NOTE.format(name=path.name)


class PinMarker(ButtonBehavior, MDIcon):
    """A pin (or your position) on the map: a coloured icon whose bottom centre is at (lat, lon)."""

    lat = NumericProperty(0)
    lon = NumericProperty(0)
    anchor_x = NumericProperty(0.5)
    anchor_y = NumericProperty(0)
    _layer: Any = None

    def __init__(self, icon: str, colour: tuple[float, ...], **kw: Any) -> None:
        super().__init__(icon=icon, theme_icon_color="Custom", icon_color=colour, size_hint=(None, None), adaptive_size=False,
                         size=(dp(34), dp(34)), theme_font_size="Custom", font_size=dp(30), halign="center", **kw)

    def detach(self) -> None:
        if self._layer:
            self._layer.remove_widget(self)
            self._layer = None


class RadiusLayer(MapLayer):
    """The circle of the radius you read within, around your position."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.at: tuple[float, float] | None = None
        self.radius_km = DEFAULT_RADIUS_KM

    def reposition(self) -> None:
        self.canvas.clear()
        mapview = self.parent
        if self.at is None or mapview is None:
            return
        lat, lon = self.at
        x, y = mapview.get_window_xy_from(lat, lon, mapview.zoom)
        _, y2 = mapview.get_window_xy_from(min(85.0, lat + self.radius_km / 111.32), lon, mapview.zoom)
        with self.canvas:
            Color(0.55, 0.05, 0.05, 0.8)
            Line(circle=(x, y, abs(y - y2)), width=dp(1.5))


class PinMap(MapView):
    """The map; a click (a touch that did not drag it) reports its (lat, lon) to ``on_click``."""

    def __init__(self, on_click: Callable[[float, float], None], **kw: Any) -> None:
        super().__init__(**kw)
        self.on_click = on_click
        self.radius = RadiusLayer()
        self.add_layer(self.radius)

    def on_touch_up(self, touch: Any) -> Any:
        # the wheel zooms without grabbing; a grabbed touch that ends where it began, not on a marker, is a click
        clicked = (touch.grab_current is self and math.hypot(touch.x - touch.ox, touch.y - touch.oy) < dp(6)
                   and not any(m.collide_point(*touch.pos) for layer in self._layers
                               for m in getattr(layer, "markers", ())))
        handled = super().on_touch_up(touch)
        if clicked:
            at = self.get_latlon_at(touch.x - self.x, touch.y - self.y)
            self.on_click(round(at.lat, 5), round(at.lon, 5))
        return handled


def _api(screen: BaseScreen) -> OrganizeApi | None:
    api = screen.app.backend.api
    if api is None:
        screen.app.notify("Your node does not answer yet.")
        return None
    return OrganizeApi(api)


async def _shown(error: Any, call: Awaitable[Any]) -> Any:
    """Await ``call``; a failure is also written in ``error`` (the backend shows it as a snackbar too)."""
    try:
        return await call
    except Exception as exc:
        error.text = describe(exc)
        raise


def _number(f: Any, what: str, low: float, high: float, default: float | None = None) -> float:
    """The number typed in ``f`` (``default`` if empty), ValueError with a reason outside [low, high]."""
    text = f.text.strip()
    if not text and default is not None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} is a number from {low:g} to {high:g}, not {text!r}") from None
    if not low <= value <= high or math.isnan(value):
        raise ValueError(f"{what} is from {low:g} to {high:g}, not {value:g}")
    return value


def _position(lat_field: Any, lon_field: Any, whose: str) -> tuple[float, float]:
    """The position typed in two fields; ValueError saying ``whose`` is missing or not numbers (the API checks the
    ranges and says so)."""
    try:
        at = position(lat_field, lon_field)
    except ValueError as exc:
        raise ValueError(f"{whose}: {exc}") from None
    if at is None:
        raise ValueError(f"{whose} first: type it or click the map")
    return at


def _span(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


class MapScreen(BaseScreen):
    """The map on the left; your position, the drop form and the pins' list on the right."""

    def build(self) -> None:
        self.at: tuple[float, float] | None = None
        self.kind = "danger"
        self.pins: list[dict[str, Any]] = []
        self.cards: dict[str, Any] = {}
        self.markers: dict[str, PinMarker] = {}
        # no tiles until the screen is first shown (refresh): an app whose map is never opened asks no tile server
        self.map = PinMap(self.clicked, zoom=12, lat=52.52, lon=13.405, double_tap_zoom=False,
                          cache_dir=_tile_cache(), map_source=_NoTiles(cache_dir=_tile_cache()))
        self.me_marker = PinMarker("crosshairs-gps", (0.1, 0.1, 0.1, 1), anchor_y=0.5)
        self.tiles_note = label("", role="small")
        zoom = row(icon_button("magnify-minus", lambda: self.zoom(-1)), icon_button("magnify-plus",
                                                                                   lambda: self.zoom(1)),
                   self.tiles_note, spacing=4)
        map_box = MDBoxLayout(orientation="vertical", size_hint_x=0.56, spacing=dp(4))
        map_box.add_widget(self.map)
        map_box.add_widget(zoom)
        # the map sits beside the scrolling column, not in it: dragging the map must not scroll the page
        scroll = self.body.parent
        outer = scroll.parent
        index = outer.children.index(scroll)
        outer.remove_widget(scroll)
        scroll.size_hint_x = 0.44
        outer.add_widget(MDBoxLayout(map_box, scroll, orientation="horizontal", spacing=dp(12)), index=index)

        self.lat_field, self.lon_field = field("Your latitude"), field("Your longitude")
        self.radius_field = field(f"Within km ({MIN_RADIUS_KM:g}-{MAX_RADIUS_KM:g})", text=f"{DEFAULT_RADIUS_KM:g}")
        self.refresh_button = button("Refresh", self.load, style="tonal")
        self.drop_open_button = button("Drop a pin", self.open_drop, style="filled")
        self.error = error_label()
        self.status = label("", style="Title", role="small")
        self.list_box = column(spacing=8)

        kinds, self.kind_buttons = choices(KINDS, self.pick)
        self.text_field = field(f"What is happening? ({MAX_TEXT} characters)")
        self.pin_lat, self.pin_lon = field("Pin latitude"), field("Pin longitude")
        self.pin_radius = field("Seen within km", text=f"{DEFAULT_RADIUS_KM:g}")
        self.hours_field = field(f"Lifetime hours (at most {MAX_PIN_TTL // 3600})", text=f"{DEFAULT_HOURS:g}")
        self.precision_note = label("", role="small")
        for f in (self.text_field, self.hours_field, self.pin_radius):
            f.bind(text=lambda *_: self._say_precision())
        self.drop_button = button("Drop it", self.drop)
        self.drop_error = error_label()
        self.drop_box = column(
            label("Drop a pin", style="Title", role="medium"), kinds, self.text_field,
            row(self.pin_lat, self.pin_lon, button("Map centre", self.use_centre, style="outlined")),
            label("Click the map to place it there.", role="small"), row(self.pin_radius, self.hours_field),
            self.precision_note, row(self.drop_button, button("Cancel", self.close_drop, style="text")),
            self.drop_error, spacing=6)
        self.drop_slot = column(spacing=0)

        self.tiles_field = field("Offline map: an MBTiles file (empty: online tiles)",
                                 text=os.environ.get(TILES_ENV, ""))
        self.tiles_button = button("Use", self.use_tiles, style="outlined")
        self.tiles_error = error_label()
        for widget in (label("Where you are", style="Title", role="small"),
                       row(self.lat_field, self.lon_field, self.radius_field),
                       label("Typed, or click the map (a desktop has no GPS). Never sent: the holders you ask learn "
                             "only the ~5 km cell you are in.", role="small"),
                       row(self.refresh_button, self.drop_open_button), self.error, self.drop_slot, self.status,
                       self.list_box,
                       label("Map tiles", style="Title", role="small"), row(self.tiles_field, self.tiles_button),
                       self.tiles_error):
            self.body.add_widget(widget)
        self.pick("danger")
        self._tiles_wanted: tuple[str, bool] | None = None
        self.tiles_note.text = "The map's tiles load when you open this screen."
        self.show_pins([])
        self.status.text = "Your position first: type it or click the map, then Refresh."

    # -- tiles and the map ------------------------------------------------------------------------------------------
    def refresh(self, *_: Any) -> None:
        self.use_tiles(again=False)  # untraceable mode may have been switched since

    def use_tiles(self, again: bool = True) -> None:
        """Draw the tiles the field names (online if empty, none in untraceable mode); ``again=False``: only if
        that changed."""
        settings = self.app.backend.settings
        wanted = (self.tiles_field.text.strip(), settings is not None and settings.tor is not None)
        if not again and wanted == self._tiles_wanted:
            return
        self._tiles_wanted = wanted
        try:
            source, note = tile_source(wanted[0], self._tiles_failed, untraceable=wanted[1])
            self.tiles_error.text = ""
        except ValueError as exc:
            source, note = _NoTiles(cache_dir=_tile_cache()), "No map tiles: the offline file cannot be used."
            self.tiles_error.text = str(exc)
        self.map.map_source = source
        self.tiles_note.text = note

    def _tiles_failed(self, why: str) -> None:
        self.tiles_error.text = why

    def zoom(self, step: int) -> None:
        self.map.zoom = max(self.map.map_source.get_min_zoom(),
                            min(self.map.map_source.get_max_zoom(), self.map.zoom + step))

    def clicked(self, lat: float, lon: float) -> None:
        """A click places the pin being dropped, or else your position."""
        if self.drop_box.parent is not None:
            self.pin_lat.text, self.pin_lon.text = f"{lat:.5f}", f"{lon:.5f}"
        else:
            self.lat_field.text, self.lon_field.text = f"{lat:.5f}", f"{lon:.5f}"
            self.load()

    def _place_me(self) -> None:
        if self.at is None:
            return
        self.me_marker.lat, self.me_marker.lon = self.at
        if self.me_marker.parent is None and self.me_marker._layer is None:
            self.map.add_marker(self.me_marker)
        self.map.radius.at, self.map.radius.radius_km = self.at, self.radius_km
        self.map.trigger_update(False)

    # -- reading ------------------------------------------------------------------------------------------------------
    def _where(self) -> bool:
        try:
            self.at = _position(self.lat_field, self.lon_field, "Your position")
            self.radius_km = _number(self.radius_field, "The radius", MIN_RADIUS_KM, MAX_RADIUS_KM,
                                     DEFAULT_RADIUS_KM)
        except ValueError as exc:
            self.error.text = f"{exc}."
            return False
        self.error.text = ""
        return True

    def load(self) -> None:
        if not self._where():
            return
        api = _api(self)
        if api is None:
            return
        at, radius = self.at, self.radius_km
        self.map.center_on(*at)
        self._place_me()

        async def run() -> None:
            self.refresh_button.disabled = True
            try:
                found = await _shown(self.error, api.pins(at, radius_km=radius))
            finally:
                self.refresh_button.disabled = False
            self.show_pins(found)
            self.status.text = (f"{len(found) or 'No'} live pin{'s' if len(found) != 1 else ''} within {radius:g} km, "
                                f"read at {time.strftime('%H:%M')}")

        self.app.backend.spawn(run(), "Reading the pins")

    def show_pins(self, pins: list[dict[str, Any]]) -> None:
        self.pins = pins
        self.list_box.clear_widgets()
        self.cards = {}
        for marker in self.markers.values():
            self.map.remove_marker(marker)
        self.markers = {}
        for pin in pins:
            icon, colour = STYLE[pin["kind"]]
            marker = PinMarker(icon, colour, lat=pin["lat"], lon=pin["lon"])
            marker.bind(on_release=lambda _m, p=pin: self.app.notify(f"{p['kind'].upper()}: {p['text']}"))
            self.markers[pin["id"]] = marker
            self.map.add_marker(marker)
            self.list_box.add_widget(self._card(pin))

    def _card(self, pin: dict[str, Any]) -> Any:
        icon, colour = STYLE[pin["kind"]]
        now = time.time()
        when = f"{_span(pin['expires_at'] - now)} left"
        if pin.get("posted_at"):
            ago = now - pin["posted_at"]
            when = f"dropped {_span(ago) + ' ago' if ago >= 60 else 'just now'}, {when}"
        where = f"{pin['distance_km']:.1f} km away" if pin.get("distance_km") is not None else ""
        title = row(PinMarker(icon, colour), label(f"{pin['kind'].upper()}   {where}", style="Title", role="small"),
                    spacing=6)
        counts = label(f"confirmed {pin['confirmations']}  ·  dismissed {pin['dismissals']}", role="small")
        votes, buttons = choices(("confirm", "dismiss"), lambda choice, p=pin["id"]: self.vote(p, choice))
        mark(buttons, pin.get("mine"))
        parts: list[Any] = [title, label(pin["text"], role="medium"), label(when, role="small"), counts, votes]
        remove = None
        if pin.get("dropped_by_me"):
            remove = button("Remove my pin", lambda p=pin["id"]: self.remove(p), style="text")
            parts.append(row(label("You dropped it (nobody else can tell).", role="small"), remove))
        card = MDCard(column(*parts, spacing=4), style="outlined", size_hint_y=None, padding=dp(10))
        card.bind(minimum_height=card.setter("height"))
        card.counts, card.buttons, card.remove_button = counts, buttons, remove
        self.cards[pin["id"]] = card
        return card

    # -- confirm, dismiss, remove -------------------------------------------------------------------------------------
    def vote(self, pin_id: str, choice: str) -> None:
        api = _api(self)
        if api is None:
            return

        async def run() -> None:
            await (api.confirm_pin(pin_id) if choice == "confirm" else api.dismiss_pin(pin_id))
            self.app.notify(f"{choice.capitalize()}ed anonymously")
            self.load()

        self.app.backend.spawn(run(), f"{choice.capitalize()}ing the pin")

    def remove(self, pin_id: str) -> None:
        api = _api(self)
        if api is None:
            return

        async def run() -> None:
            await api.remove_pin(pin_id)
            self.app.notify("Pin removed from the network")
            self.load()

        self.app.backend.spawn(run(), "Removing the pin")

    # -- dropping -------------------------------------------------------------------------------------------------------
    def pick(self, kind: str) -> None:
        self.kind = kind
        mark(self.kind_buttons, kind)

    def open_drop(self) -> None:
        show_if(self.drop_slot, self.drop_box, True)
        if not self.pin_lat.text.strip() and not self.pin_lon.text.strip():
            self.use_centre()
        self._say_precision()

    def close_drop(self) -> None:
        show_if(self.drop_slot, self.drop_box, False)

    def use_centre(self) -> None:
        self.pin_lat.text, self.pin_lon.text = f"{self.map.lat:.5f}", f"{self.map.lon:.5f}"

    def _say_precision(self) -> None:
        try:
            radius = _number(self.pin_radius, "The radius", MIN_RADIUS_KM, MAX_RADIUS_KM, DEFAULT_RADIUS_KM)
            hours = _number(self.hours_field, "The lifetime", 0.01, MAX_PIN_TTL / 3600, DEFAULT_HOURS)
        except ValueError as exc:
            self.precision_note.text = str(exc)
            return
        self.precision_note.text = (
            f"Published as a ~{DEFAULT_PRECISION_KM:g} km cell (its centre, not your position), seen by people "
            f"within {radius:g} km of it, for {hours:g} h; nothing about you is in it. It leaves through other "
            "people's nodes, so the holders do not learn your IP address either.")

    def drop(self) -> None:
        text = self.text_field.text.strip()
        try:
            if not text:
                raise ValueError("Say in a few words what is happening.")
            if len(text) > MAX_TEXT:
                raise ValueError(f"The text is {len(text)} characters; at most {MAX_TEXT}.")
            at = _position(self.pin_lat, self.pin_lon, "The pin's position")
            radius = _number(self.pin_radius, "The radius", MIN_RADIUS_KM, MAX_RADIUS_KM, DEFAULT_RADIUS_KM)
            hours = _number(self.hours_field, "The lifetime in hours", 0.01, MAX_PIN_TTL / 3600, DEFAULT_HOURS)
        except ValueError as exc:
            self.drop_error.text = str(exc)
            return
        api = _api(self)
        if api is None:
            return
        self.drop_error.text = ""
        kind = self.kind

        async def run() -> None:
            self.drop_button.disabled = True
            try:
                dropped = await _shown(self.drop_error, api.drop_pin(
                    kind, text, at, radius_km=radius, precision_km=DEFAULT_PRECISION_KM, hours=hours))
            finally:
                self.drop_button.disabled = False
            self.text_field.text = ""
            self.close_drop()
            cell = dropped.get("precision_km") or DEFAULT_PRECISION_KM
            self.app.notify(f"Pin dropped; published at {dropped['lat']:.4f}, {dropped['lon']:.4f} (a {cell:g} km "
                            "cell)")
            if not self.lat_field.text.strip() and not self.lon_field.text.strip():
                self.lat_field.text, self.lon_field.text = f"{at[0]:.5f}", f"{at[1]:.5f}"
            self.load()

        self.app.backend.spawn(run(), "Dropping the pin")
