"""Positions: validation, geohash, distances, coarsening, and the cells that carry local posts."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from komrade_dht import geo
from komrade_dht.errors import GeoError, KomradeError

LAT = st.floats(min_value=-90, max_value=90, allow_nan=False)
LON = st.floats(min_value=-180, max_value=180, allow_nan=False)
RADIUS = st.floats(min_value=0.01, max_value=geo.MAX_RADIUS_KM)
FRACTION = st.floats(min_value=0, max_value=1)
BEARING = st.floats(min_value=0, max_value=360)


def destination(lat: float, lon: float, bearing: float, distance_km: float) -> tuple[float, float]:
    """The point ``distance_km`` from a position along ``bearing`` degrees (great circle)."""
    p1, l1, theta = math.radians(lat), math.radians(lon), math.radians(bearing)
    d = distance_km / geo.EARTH_RADIUS_KM
    p2 = math.asin(max(-1.0, min(1.0, math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(theta))))
    l2 = l1 + math.atan2(math.sin(theta) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    lon2 = (math.degrees(l2) + 180.0) % 360.0 - 180.0
    return max(-90.0, min(90.0, math.degrees(p2))), lon2


# --- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lat, lon, reason",
    [
        (float("nan"), 0.0, "finite"),
        (0.0, float("nan"), "finite"),
        (float("inf"), 0.0, "finite"),
        (0.0, float("-inf"), "finite"),
        (90.0001, 0.0, "between -90 and 90"),
        (-91, 0.0, "between -90 and 90"),
        (0.0, 180.5, "between -180 and 180"),
        (0.0, -181, "between -180 and 180"),
        ("48.8", 2.3, "must be a number"),
        (True, 2.3, "must be a number"),
        (None, 2.3, "must be a number"),
    ],
)
def test_bad_positions_are_clear_errors(lat: object, lon: object, reason: str) -> None:
    for call in (
        lambda: geo.check_position(lat, lon),
        lambda: geo.geohash_encode(lat, lon),  # type: ignore[arg-type]
        lambda: geo.coarsen(lat, lon, 5),  # type: ignore[arg-type]
        lambda: geo.cells_covering(lat, lon, 5),  # type: ignore[arg-type]
        lambda: geo.reader_cells(lat, lon),  # type: ignore[arg-type]
        lambda: geo.haversine_km(lat, lon, 0, 0),  # type: ignore[arg-type]
    ):
        with pytest.raises(GeoError, match=reason):
            call()


def test_geo_errors_are_komrade_errors() -> None:
    assert issubclass(GeoError, KomradeError)


@pytest.mark.parametrize("radius", [0, -1, float("nan"), float("inf"), geo.MAX_RADIUS_KM + 0.1, "5", None])
def test_bad_radius_is_refused(radius: object) -> None:
    with pytest.raises(GeoError, match="radius"):
        geo.cells_covering(10, 10, radius)  # type: ignore[arg-type]


def test_edges_of_the_ranges_are_valid() -> None:
    for lat, lon in [(90, 180), (-90, -180), (90, -180), (-90, 180), (0, 0)]:
        assert geo.check_position(lat, lon) == (float(lat), float(lon))
    assert geo.check_radius(geo.MAX_RADIUS_KM) == geo.MAX_RADIUS_KM


@pytest.mark.parametrize("precision", [0, -2, 100, 0.0, float("nan"), float("inf"), "5", None])
def test_bad_coarsening_precision_is_refused(precision: object) -> None:
    with pytest.raises(GeoError, match="precision"):
        geo.coarsen(10, 10, precision)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "abc", "u4pr!", "a" * 13, 5, None, "ilo"])
def test_bad_geohash_is_refused(text: object) -> None:
    with pytest.raises(GeoError, match="geohash"):
        geo.geohash_decode(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("precision", [0, 13, True, 2.0])
def test_bad_geohash_precision_is_refused(precision: object) -> None:
    with pytest.raises(GeoError, match="precision"):
        geo.geohash_encode(0, 0, precision)  # type: ignore[arg-type]


# --- geohash and distance --------------------------------------------------------------------------------------


def test_geohash_matches_the_published_examples() -> None:
    assert geo.geohash_encode(57.64911, 10.40744, 11) == "u4pruydqqvj"  # Wikipedia's example
    lat, lon = geo.geohash_decode("ezs42")
    assert round(lat, 1) == 42.6 and round(lon, 1) == -5.6
    assert geo.geohash_bounds("EZS42") == geo.geohash_bounds("ezs42")
    assert geo.geohash_encode(0, 0, 1) == "s" and geo.geohash_encode(-90, -180, 3) == "000"
    assert geo.geohash_encode(90, 180, 2) == geo.geohash_encode(90, -180, 2) == "bp"  # 180 is -180


@given(LAT, LON, st.integers(min_value=1, max_value=12))
@settings(max_examples=300, deadline=None)
def test_geohash_round_trip(lat: float, lon: float, precision: int) -> None:
    code = geo.geohash_encode(lat, lon, precision)
    assert len(code) == precision
    south, north, west, east = geo.geohash_bounds(code)
    assert south <= lat <= north
    assert west <= lon <= east or (lon == 180.0 and west == -180.0)
    assert geo.geohash_encode(*geo.geohash_decode(code), precision) == code
    assert geo.geohash_encode(lat, lon, 12).startswith(code)  # a prefix is the enclosing cell


def test_haversine_known_distances() -> None:
    paris, london = (48.8566, 2.3522), (51.5074, -0.1278)
    assert geo.haversine_km(*paris, *london) == pytest.approx(343.5, abs=1.0)
    assert geo.haversine_km(0, 0, 0, 180) == pytest.approx(math.pi * geo.EARTH_RADIUS_KM)
    assert geo.haversine_km(90, 0, -90, 0) == pytest.approx(math.pi * geo.EARTH_RADIUS_KM)
    assert geo.haversine_km(0, 179.9, 0, -179.9) == pytest.approx(22.24, abs=0.01)  # across the antimeridian
    assert geo.haversine_km(12.3, 45.6, 12.3, 45.6) == 0.0


@given(LAT, LON, LAT, LON)
@settings(max_examples=200, deadline=None)
def test_haversine_is_a_symmetric_bounded_distance(a: float, b: float, c: float, d: float) -> None:
    dist = geo.haversine_km(a, b, c, d)
    assert 0.0 <= dist <= math.pi * geo.EARTH_RADIUS_KM + 1e-6
    assert dist == pytest.approx(geo.haversine_km(c, d, a, b), abs=1e-9)


# --- coarsening ------------------------------------------------------------------------------------------------


def test_requested_precision_rounds_up_to_a_level() -> None:
    assert geo.coarsening_level_km(0.2) == 1.0
    assert geo.coarsening_level_km(1) == 1.0
    assert geo.coarsening_level_km(3) == 5.0
    assert geo.coarsening_level_km(50) == 50.0
    with pytest.raises(GeoError, match="at most 50"):
        geo.coarsening_level_km(51)


def test_coarsening_publishes_a_cell_centre_not_the_position() -> None:
    home = (48.85661, 2.35222)
    published = geo.coarsen(*home, 5)
    assert published != home
    assert geo.haversine_km(*home, *published) < 5
    # anywhere nearby in the same cell publishes exactly the same numbers
    assert geo.coarsen(home[0] + 1e-4, home[1] - 1e-4, 5) == published
    assert geo.coarsen(*published, 5) == published


@given(LAT, LON, st.sampled_from(geo.PRECISION_LEVELS_KM))
@settings(max_examples=300, deadline=None)
def test_coarsening_is_idempotent_and_stays_in_range(lat: float, lon: float, level: float) -> None:
    c = geo.coarsen(lat, lon, level)
    geo.check_position(*c)
    assert geo.coarsen(*c, level) == c
    if abs(lat) <= 80:
        assert geo.haversine_km(lat, lon, *c) <= level  # about half a cell diagonal (0.71 level)


@given(LAT, LON, BEARING, st.floats(min_value=0, max_value=3), st.sampled_from(geo.PRECISION_LEVELS_KM))
@settings(max_examples=300, deadline=None)
def test_distinct_published_centres_are_at_least_a_level_apart(
    lat: float, lon: float, bearing: float, hops: float, level: float
) -> None:
    """Two published positions either coincide or differ by at least the level: nothing finer leaks."""
    other = destination(lat, lon, bearing, hops * level)
    a, b = geo.coarsen(lat, lon, level), geo.coarsen(*other, level)
    assert a == b or geo.haversine_km(*a, *b) >= 0.99 * level


def test_coarsening_at_the_poles_and_the_antimeridian() -> None:
    assert geo.coarsen(90, 12.0, 1)[1] == geo.coarsen(90, -170.0, 1)[1] == 0.0  # one column at the pole
    assert geo.coarsen(-90, 33.0, 50) == geo.coarsen(-89.9, -33.0, 50)
    assert geo.coarsen(0, 180, 5) == geo.coarsen(0, -180, 5)


# --- cells -----------------------------------------------------------------------------------------------------


@given(LAT, LON, RADIUS, BEARING, FRACTION)
@settings(max_examples=400, deadline=None)
@example(89.99, 0.0, 5.0, 180.0, 1.0)  # across the north pole
@example(-89.99, 17.0, 30.0, 0.0, 1.0)  # across the south pole
@example(0.0, 179.999, 10.0, 90.0, 1.0)  # across the antimeridian, eastwards
@example(10.0, -179.999, 10.0, 270.0, 0.99)  # and westwards
@example(90.0, 0.0, geo.MAX_RADIUS_KM, 45.0, 1.0)
@example(0.0, 0.0, 0.01, 225.0, 1.0)  # a tiny circle on the corner of four cells
def test_every_point_of_the_circle_lies_in_a_covering_cell(
    lat: float, lon: float, radius: float, bearing: float, fraction: float
) -> None:
    cells = geo.cells_covering(lat, lon, radius)
    precision = len(cells[0])
    assert all(len(c) == precision for c in cells) and cells == sorted(set(cells))
    assert len(cells) <= 16 or precision == min(geo.GEOHASH_LEVELS)
    point = destination(lat, lon, bearing, fraction * radius)
    assert geo.haversine_km(lat, lon, *point) <= radius * (1 + 1e-9) + 1e-9
    assert geo.geohash_encode(*point, precision) in cells
    # and so a reader standing there finds the post: its cell at that precision is one of the post's cells
    assert set(geo.reader_cells(*point)) & set(cells)


@given(LAT, LON, RADIUS)
@settings(max_examples=200, deadline=None)
def test_covering_cells_all_touch_the_circle(lat: float, lon: float, radius: float) -> None:
    """No cell is listed for nothing: each one's centre-nearest point is within the radius (+ a cell's size)."""
    for code in geo.cells_covering(lat, lon, radius):
        south, north, west, east = geo.geohash_bounds(code)
        corners = [(y, x) for y in (south, north) for x in (west, east)]
        diag = max(geo.haversine_km(*a, *b) for a in corners for b in corners)
        assert geo.haversine_km(lat, lon, *geo.geohash_decode(code)) <= radius + diag


def test_cell_counts_for_typical_radii_are_small() -> None:
    for radius in (0.5, 1, 5, 10, 20, 50, 100):
        for lat in (0, 45, 60, -33.9):
            cells = geo.cells_covering(lat, 151.2, radius)
            assert 1 <= len(cells) <= 16, (radius, lat, cells)
    assert len(geo.cells_covering(48.85, 2.35, 1)[0]) == 5  # 1 km: precision-5 cells (~5 km)
    assert len(geo.cells_covering(48.85, 2.35, 50)[0]) == 3


def test_pole_and_antimeridian_coverings() -> None:
    north = geo.cells_covering(90, 0, 20)
    for lon in range(-180, 180, 15):
        assert geo.geohash_encode(89.9, lon, len(north[0])) in north
    east = geo.cells_covering(0, 179.99, 30)
    assert geo.geohash_encode(0.0, -179.9, len(east[0])) in east
    assert geo.geohash_encode(0.0, 179.9, len(east[0])) in east


def test_max_cells_and_levels_can_be_chosen() -> None:
    assert len(geo.cells_covering(0.1, 0.1, 0.5, max_cells=1, levels=(3, 4, 5))) == 1
    assert len(geo.cells_covering(0, 0, 5, max_cells=1, levels=(3, 4, 5))) == 4  # a corner: coarsest level
    cells = geo.cells_covering(0, 0, 0.1, levels=(7,))
    assert len(cells[0]) == 7
    with pytest.raises(GeoError, match="max_cells"):
        geo.cells_covering(0, 0, 5, max_cells=0)
    with pytest.raises(GeoError, match="at least one"):
        geo.cells_covering(0, 0, 5, levels=())


def test_reader_cells_are_one_per_level_coarsest_first() -> None:
    cells = geo.reader_cells(48.85, 2.35)
    assert [len(c) for c in cells] == sorted(geo.GEOHASH_LEVELS)
    assert all(cells[-1].startswith(c) for c in cells)


@given(LAT, LON, RADIUS, LAT, LON)
@settings(max_examples=200, deadline=None)
def test_a_reader_outside_every_covering_cell_is_outside_the_circle(
    lat: float, lon: float, radius: float, rlat: float, rlon: float
) -> None:
    """The converse of the covering property, from the reader's side: missing a post means being outside it."""
    if not set(geo.reader_cells(rlat, rlon)) & set(geo.cells_covering(lat, lon, radius)):
        assert geo.haversine_km(lat, lon, rlat, rlon) > radius * (1 - 1e-9)


def test_a_circle_too_big_for_the_only_level_is_a_clear_error() -> None:
    with pytest.raises(GeoError, match="too many cells"):
        geo.cells_covering(0, 0, 500, levels=(7,))


# --- local posts -----------------------------------------------------------------------------------------------


def test_publish_area_reveals_the_cell_centre_and_cells_from_it() -> None:
    area = geo.publish_area(48.85661, 2.35222, 10, 3)
    assert area.level_km == 5.0 and area.radius_km == 10.0
    assert (area.lat, area.lon) == geo.coarsen(48.85661, 2.35222, 5)
    assert list(area.cells) == geo.cells_covering(area.lat, area.lon, 10)
    # the same area from anywhere else in the author's cell: nothing finer than the cell leaks, cells included
    assert geo.publish_area(48.85661 + 1e-4, 2.35222 + 1e-4, 10, 3) == area
    with pytest.raises(GeoError, match="radius"):
        geo.publish_area(48.8, 2.3, 0, 3)
    with pytest.raises(GeoError, match="precision"):
        geo.publish_area(48.8, 2.3, 10, 80)


@given(LAT, LON, st.floats(min_value=0.5, max_value=100), st.sampled_from(geo.PRECISION_LEVELS_KM), BEARING,
       FRACTION)
@settings(max_examples=200, deadline=None)
def test_a_reader_inside_a_published_area_reads_one_of_its_cells(
    lat: float, lon: float, radius: float, level: float, bearing: float, fraction: float
) -> None:
    area = geo.publish_area(lat, lon, radius, level)
    reader = destination(area.lat, area.lon, bearing, fraction * radius * (1 - 1e-9))
    assert geo.in_area(area.lat, area.lon, area.radius_km, *reader)
    assert set(geo.reader_cells(*reader)) & set(area.cells)


def test_in_area() -> None:
    assert geo.in_area(0, 0, 100, 0, 0.5)  # ~56 km
    assert not geo.in_area(0, 0, 50, 0, 0.5)
    assert geo.in_area(0, 179.9, 30, 0, -179.9)  # ~22 km across the antimeridian
    with pytest.raises(GeoError):
        geo.in_area(0, 0, float("nan"), 0, 0)
