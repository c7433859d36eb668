"""Positions for local posts and pins: validation, coarsening, distances, and the geohash cells of the slots.

Pure functions, no I/O. Everything works on a sphere of radius :data:`EARTH_RADIUS_KM` (the mean radius);
the error against the real ellipsoid (< 0.5 %) is far below the coarsening below.

**What leaves the device.** A local post carries a *coarsened* position (:func:`coarsen`) and a radius. The
position is snapped to the centre of a cell of a fixed grid, so the published numbers reveal only the cell,
whatever the exact position inside it; posting twice from the same place publishes the same centre (a random
jitter instead would average out over several posts). Only a few cell sizes exist (:data:`PRECISION_LEVELS_KM`)
so that the precision an author chose does not single out their posts. Each level publishes:

========  ===========================================================================================
level     the published centre reveals only that the author was inside a cell of about ...
========  ===========================================================================================
1 km      1 x 1 km (rows 1 km tall; each row cut into columns at least 1 km wide at their narrowest)
2 km      2 x 2 km
5 km      5 x 5 km
10 km     10 x 10 km
20 km     20 x 20 km
50 km     50 x 50 km
========  ===========================================================================================

A requested precision is rounded *up* to the next level (asking for 3 km publishes a 5 km cell), never down.
Near the poles the columns widen (a row is cut into fewer columns), so a cell is never narrower than its level.

**Where a post goes and where a reader looks.** A post to the circle of ``radius_km`` around its position is
appended to every geohash cell that the circle touches (:func:`cells_covering`), at the finest geohash
precision in :data:`GEOHASH_LEVELS` that needs at most ``max_cells`` cells. A reader at a position reads the
one cell containing it at *each* precision of :data:`GEOHASH_LEVELS` (:func:`reader_cells`, 5 slots) and keeps
the posts whose circle contains it (:func:`haversine_km`). If the reader is inside a post's circle, the
reader's cell at that post's precision is one of the post's cells: the reader always finds it. The finest
precision is 5 (cells of about 4.9 x 4.9 km at the equator, narrower towards the poles), so a reader reveals to
the holders of its slots no more than which such cell it is in.

The circle is drawn around the *published* centre, which may lie up to about 0.7 x the level from the author's
position: choose a radius larger than the precision. The cells must be computed from the published centre too
(never from the exact position), or they would reveal more than the centre does: :func:`publish_area` does both
steps in that order, and :func:`in_area` is the reader's test.

Geohash: the standard base-32 interleaving of longitude and latitude bits (Niemeyer, 2008), written here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from .errors import GeoError

__all__ = [
    "EARTH_RADIUS_KM",
    "MAX_RADIUS_KM",
    "PRECISION_LEVELS_KM",
    "GEOHASH_LEVELS",
    "check_position",
    "check_radius",
    "geohash_encode",
    "geohash_decode",
    "geohash_bounds",
    "haversine_km",
    "coarsen",
    "coarsening_level_km",
    "cells_covering",
    "reader_cells",
    "PublishedArea",
    "publish_area",
    "in_area",
]

#: Mean Earth radius (IUGG), km.
EARTH_RADIUS_KM = 6371.0088
#: Largest radius of a local post or of a reader's search, km.
MAX_RADIUS_KM = 500.0
#: The cell sizes a published position may be coarsened to, km (see the module docstring).
PRECISION_LEVELS_KM: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
#: The geohash precisions (characters) whose cells carry local posts; readers read one cell of each.
GEOHASH_LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: Longest geohash accepted by the encoder and decoder (12 characters: a cell of a few centimetres).
MAX_GEOHASH_LEN = 12

_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
_DECODE = {c: i for i, c in enumerate(_BASE32)}
_KM_PER_DEG = math.pi * EARTH_RADIUS_KM / 180


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GeoError(f"{what} must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise GeoError(f"{what} must be a finite number, not {value!r}")
    return number


def check_position(lat: object, lon: object) -> tuple[float, float]:
    """Return ``(lat, lon)`` as floats, or raise :class:`GeoError` for NaN, infinity, a non-number, a latitude
    outside -90..90 or a longitude outside -180..180 (degrees, WGS 84)."""
    la, lo = _number(lat, "latitude"), _number(lon, "longitude")
    if not -90.0 <= la <= 90.0:
        raise GeoError(f"latitude must be between -90 and 90 degrees, not {la:g}")
    if not -180.0 <= lo <= 180.0:
        raise GeoError(f"longitude must be between -180 and 180 degrees, not {lo:g}")
    return la, lo


def check_radius(radius_km: object) -> float:
    """Return the radius as a float, or raise :class:`GeoError` unless it is a finite number in
    (0, :data:`MAX_RADIUS_KM`] kilometres."""
    r = _number(radius_km, "radius")
    if not 0.0 < r <= MAX_RADIUS_KM:
        raise GeoError(f"radius must be more than 0 and at most {MAX_RADIUS_KM:g} km, not {r:g} km")
    return r


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two positions, in km (haversine formula, numerically safe near 0 and pi)."""
    lat1, lon1 = check_position(lat1, lon1)
    lat2, lon2 = check_position(lat2, lon2)
    return _distance(lat1, lon1, lat2, lon2)


def _distance(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, max(0.0, h))))


# --- geohash ---------------------------------------------------------------------------------------------------


def _bits(precision: int) -> tuple[int, int]:
    """(longitude bits, latitude bits) of a geohash of ``precision`` characters."""
    total = 5 * precision
    return (total + 1) // 2, total // 2


def _check_precision(precision: object) -> int:
    if isinstance(precision, bool) or not isinstance(precision, int) or not 1 <= precision <= MAX_GEOHASH_LEN:
        raise GeoError(f"geohash precision must be a whole number from 1 to {MAX_GEOHASH_LEN}, not {precision!r}")
    return precision


def _cell_index(lat: float, lon: float, precision: int) -> tuple[int, int]:
    """(row, column) of the geohash cell containing the position; longitude 180 is the same as -180."""
    lon_bits, lat_bits = _bits(precision)
    rows, cols = 1 << lat_bits, 1 << lon_bits
    # exact rational arithmetic: a point on a boundary belongs to the cell whose (exact) bounds contain it
    row = min(int((Fraction(lat) + 90) * rows / 180), rows - 1)
    col = int((Fraction(lon) + 180) * cols / 360) % cols
    return row, col


def _cell_hash(row: int, col: int, precision: int) -> str:
    lon_bits, lat_bits = _bits(precision)
    value = 0
    for k in range(5 * precision):  # even bits (from the most significant) are longitude, odd are latitude
        if k % 2 == 0:
            lon_bits -= 1
            value = (value << 1) | ((col >> lon_bits) & 1)
        else:
            lat_bits -= 1
            value = (value << 1) | ((row >> lat_bits) & 1)
    return "".join(_BASE32[(value >> (5 * (precision - 1 - i))) & 31] for i in range(precision))


def _cell_bounds(row: int, col: int, precision: int) -> tuple[float, float, float, float]:
    lon_bits, lat_bits = _bits(precision)
    height, width = 180.0 / (1 << lat_bits), 360.0 / (1 << lon_bits)
    return -90.0 + row * height, -90.0 + (row + 1) * height, -180.0 + col * width, -180.0 + (col + 1) * width


def geohash_encode(lat: float, lon: float, precision: int = 5) -> str:
    """The geohash (``precision`` characters, 1..12) of the cell containing the position."""
    lat, lon = check_position(lat, lon)
    precision = _check_precision(precision)
    return _cell_hash(*_cell_index(lat, lon, precision), precision)


def _parse_geohash(geohash: object) -> tuple[int, int, int]:
    if not isinstance(geohash, str) or not 1 <= len(geohash) <= MAX_GEOHASH_LEN:
        raise GeoError(f"a geohash is 1 to {MAX_GEOHASH_LEN} characters of text, not {geohash!r}")
    value = 0
    for char in geohash.lower():
        if char not in _DECODE:
            raise GeoError(f"{char!r} is not a geohash character (0-9 and b-z without a, i, l, o)")
        value = (value << 5) | _DECODE[char]
    precision = len(geohash)
    row = col = 0
    for k in range(5 * precision):
        bit = (value >> (5 * precision - 1 - k)) & 1
        if k % 2 == 0:
            col = (col << 1) | bit
        else:
            row = (row << 1) | bit
    return row, col, precision


def geohash_bounds(geohash: str) -> tuple[float, float, float, float]:
    """``(lat_min, lat_max, lon_min, lon_max)`` of a geohash cell (case-insensitive); GeoError if not a geohash."""
    return _cell_bounds(*_parse_geohash(geohash))


def geohash_decode(geohash: str) -> tuple[float, float]:
    """The centre ``(lat, lon)`` of a geohash cell; GeoError if the text is not a geohash."""
    lat0, lat1, lon0, lon1 = geohash_bounds(geohash)
    return (lat0 + lat1) / 2, (lon0 + lon1) / 2


# --- coarsening ------------------------------------------------------------------------------------------------


def coarsening_level_km(precision_km: float) -> float:
    """The level of :data:`PRECISION_LEVELS_KM` a requested precision publishes: the smallest level at least as
    coarse. GeoError if it is not a positive number or is coarser than the coarsest level."""
    p = _number(precision_km, "precision")
    for level in PRECISION_LEVELS_KM:
        if 0.0 < p <= level:
            return level
    raise GeoError(
        f"precision must be more than 0 and at most {PRECISION_LEVELS_KM[-1]:g} km, not {p:g} km"
    )


def coarsen(lat: float, lon: float, precision_km: float) -> tuple[float, float]:
    """Snap a position to the centre of its cell in the grid of the level ``precision_km`` rounds up to.

    The grid: as many equal rows from pole to pole as are each at least ``level`` km tall; each row is cut
    into the largest number of equal columns that are still at least ``level`` km wide along the row's edge
    nearest a pole (one column at the poles). The result reveals only the cell: any two positions in the same
    cell give the same numbers. GeoError for an invalid position or precision.
    """
    lat, lon = check_position(lat, lon)
    level = coarsening_level_km(precision_km)
    n_rows = max(1, math.floor(180.0 * _KM_PER_DEG / level))
    row_height = 180.0 / n_rows
    row = min(int((lat + 90.0) / row_height), n_rows - 1)
    south, north = -90.0 + row * row_height, -90.0 + (row + 1) * row_height
    narrowest = max(abs(south), abs(north))
    circumference = 360.0 * _KM_PER_DEG * math.cos(math.radians(narrowest))
    n_cols = max(1, math.floor(circumference / level + 1e-9))
    col_width = 360.0 / n_cols
    col = int((lon + 180.0) / col_width) % n_cols
    centre_lon = -180.0 + (col + 0.5) * col_width
    return (south + north) / 2, centre_lon


# --- cells of a circle -----------------------------------------------------------------------------------------


def _distance_to_meridian(lat: float, lon: float, meridian: float, south: float, north: float) -> float:
    """Distance from a point to the arc of a meridian between two latitudes (the closest point of a great circle
    is unimodal along it, so clamping the unconstrained closest latitude to the arc is exact)."""
    p, dl = math.radians(lat), math.radians(lon - meridian)
    closest = math.degrees(math.atan2(math.sin(p), math.cos(p) * math.cos(dl)))
    closest = min(max(closest, -90.0, south), 90.0, north)
    return _distance(lat, lon, closest, meridian)


def _distance_to_cell(lat: float, lon: float, bounds: tuple[float, float, float, float]) -> float:
    south, north, west, east = bounds
    if (lon - west) % 360.0 <= east - west:  # inside the cell's longitudes: straight along the meridian
        if south <= lat <= north:
            return 0.0
        return _KM_PER_DEG * min(abs(lat - south), abs(lat - north))
    return min(_distance_to_meridian(lat, lon, m, south, north) for m in (west, east))


def _candidate_cells(
    lat: float, lon: float, radius_km: float, precision: int, max_cells: int
) -> list[tuple[int, int]] | None:
    """The cells of the circle's bounding box, or None if the circle surely touches more than ``max_cells``."""
    lon_bits, lat_bits = _bits(precision)
    rows, cols = 1 << lat_bits, 1 << lon_bits
    angle = radius_km / EARTH_RADIUS_KM
    dlat = math.degrees(angle) * (1 + 1e-9) + 1e-9
    south, north = max(lat - dlat, -90.0), min(lat + dlat, 90.0)
    row_lo, _ = _cell_index(south, 0.0, precision)
    row_hi, _ = _cell_index(north, 0.0, precision)
    if lat + dlat >= 90.0 or lat - dlat <= -90.0 or math.sin(angle) >= math.cos(math.radians(lat)):
        col_lo, n_cols = 0, cols  # the circle holds a pole: every longitude
    else:
        dlon = math.degrees(math.asin(math.sin(angle) / math.cos(math.radians(lat)))) * (1 + 1e-9) + 1e-9
        _, col_lo = _cell_index(0.0, ((lon - dlon + 180.0) % 360.0) - 180.0, precision)
        n_cols = min(cols, math.ceil(2 * dlon / (360.0 / cols)) + 2)
    n_rows = row_hi - row_lo + 1
    if n_rows * n_cols > 4096 or n_rows + n_cols - 5 > max_cells:
        return None  # the circle touches every row and (but for the 2 spare) every column of its box
    col_list = sorted({(col_lo + k) % cols for k in range(n_cols)})
    return [(r, c) for r in range(row_lo, row_hi + 1) for c in col_list]


def cells_covering(
    lat: float, lon: float, radius_km: float, *, max_cells: int = 16, levels: Sequence[int] = GEOHASH_LEVELS
) -> list[str]:
    """The geohash cells (sorted, all of one precision) that the circle of ``radius_km`` around the position
    touches: every point within the radius lies in one of them.

    The precision is the finest of ``levels`` that needs at most ``max_cells`` cells; if none does (a huge
    circle near a pole), the coarsest level's cells are returned whatever their number (at precision 1 there
    are only 32 cells in the world). Works across the antimeridian and around the poles. GeoError for an
    invalid position or radius.
    """
    lat, lon = check_position(lat, lon)
    radius_km = check_radius(radius_km)
    if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
        raise GeoError(f"max_cells must be a positive whole number, not {max_cells!r}")
    precisions = sorted({_check_precision(p) for p in levels}, reverse=True)
    if not precisions:
        raise GeoError("at least one geohash precision is needed")
    tolerance = radius_km * (1 + 1e-9) + 1e-9
    for i, precision in enumerate(precisions):
        last = i == len(precisions) - 1
        candidates = _candidate_cells(lat, lon, radius_km, precision, 4096 if last else max_cells)
        if candidates is None:
            if last:
                raise GeoError(f"a circle of {radius_km:g} km needs too many cells of precision {precision}")
            continue
        cells = [
            _cell_hash(row, col, precision)
            for row, col in candidates
            if _distance_to_cell(lat, lon, _cell_bounds(row, col, precision)) <= tolerance
        ]
        if len(cells) <= max_cells or last:
            return sorted(cells)
    raise AssertionError("unreachable: the coarsest precision always answers")  # pragma: no cover


def reader_cells(lat: float, lon: float, *, levels: Sequence[int] = GEOHASH_LEVELS) -> list[str]:
    """The cells a reader at this position reads: the one containing it at each precision of ``levels``, coarsest
    first. Every post whose circle contains the position was appended to one of them (see the module docstring)."""
    lat, lon = check_position(lat, lon)
    return [_cell_hash(*_cell_index(lat, lon, p), p) for p in sorted({_check_precision(p) for p in levels})]


# --- local posts -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedArea:
    """What a local post reveals of where it was written, and where it is appended."""

    lat: float
    """The published (coarsened) centre."""
    lon: float
    radius_km: float
    level_km: float
    """The coarsening level the centre was snapped to (see the module docstring): say it in the UI."""
    cells: tuple[str, ...]
    """The geohash cells the post is appended to (computed from the published centre)."""


def publish_area(lat: float, lon: float, radius_km: float, precision_km: float) -> PublishedArea:
    """Coarsen a position to ``precision_km`` (rounded up to a level), then find the cells that cover the circle of
    ``radius_km`` around the *published* centre. GeoError for an invalid position, radius or precision."""
    radius_km = check_radius(radius_km)
    level = coarsening_level_km(precision_km)
    centre = coarsen(lat, lon, level)
    return PublishedArea(centre[0], centre[1], radius_km, level, tuple(cells_covering(*centre, radius_km)))


def in_area(centre_lat: float, centre_lon: float, radius_km: float, lat: float, lon: float) -> bool:
    """Whether a reader at ``(lat, lon)`` is inside a post's circle (its published centre and radius); GeoError for
    invalid numbers (a post that carries them is malformed)."""
    return haversine_km(centre_lat, centre_lon, lat, lon) <= check_radius(radius_km)
