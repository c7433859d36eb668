"""Routes for posts, feeds, friends and profiles (issue 10), added to the local API by :class:`.server.ApiServer`.

Every handler checks its input and calls ``service.social`` (:class:`komrade_dht.social.social_service.SocialService`);
bad input is 400 with a reason, an unknown post 404, a network that did not answer 503, as everywhere in the API.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import KomradeError
from ..social.social_service import SocialNotFound

if TYPE_CHECKING:
    from .server import ApiServer

#: Query parameters of these routes (merged into the server's table).
SOCIAL_QUERY_PARAMS: dict[str, frozenset[str]] = {
    "/v1/feeds/{feed}": frozenset({"lat", "lon", "radius_km", "offset", "limit"}),
    "/v1/feeds/{feed}/refresh": frozenset({"lat", "lon"}),
    "/v1/profiles/{address}": frozenset({"lat", "lon"}),
}

_NUMBER = re.compile(r"-?[0-9]{1,3}(\.[0-9]{1,12})?")


def _float(request: web.Request, name: str) -> float | None:
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1 or not _NUMBER.fullmatch(values[0]):
        raise KomradeError(f"{name} must be one decimal number")
    return float(values[0])


def _at(request: web.Request) -> tuple[float, float] | None:
    lat, lon = _float(request, "lat"), _float(request, "lon")
    if (lat is None) != (lon is None):
        raise KomradeError("give both lat and lon, or neither")
    if lat is None or lon is None:
        return None
    from ..geo import check_position

    return check_position(lat, lon)


def _feed(request: web.Request) -> str:
    feed = request.match_info["feed"]
    if feed not in ("world", "friends", "local"):
        raise SocialNotFound(f"no feed {feed[:40]!r}: world, friends or local")
    return feed


def add_social_routes(app: web.Application, server: ApiServer) -> None:
    from .server import _int_param, _json_any

    social = server.service.social

    async def feed(request: web.Request) -> web.Response:
        name = _feed(request)
        at = _at(request)
        if name == "local" and at is None:
            raise KomradeError("the local feed needs your position: lat and lon")
        radius = _float(request, "radius_km")
        if radius is not None:
            from ..geo import check_radius

            check_radius(radius)
        offset = _int_param(request, "offset", 0, 0, 10**9)
        limit = _int_param(request, "limit", 50, 1, 500)
        return web.json_response(social.feed(name, at, radius, offset, limit))

    async def refresh(request: web.Request) -> web.Response:
        name = _feed(request)
        at = _at(request)
        if name == "local" and at is None:
            raise KomradeError("the local feed needs your position: lat and lon")
        new = await social.refresh(name, at)
        return web.json_response({"new": len(new), "posts": new})

    async def post(request: web.Request) -> web.Response:
        return web.json_response(await social.post(await _json_any(request)), status=201)

    async def burn(request: web.Request) -> web.Response:
        return web.json_response(await social.burn(request.match_info["id"]))

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=social.image(request.match_info["id"]), content_type="image/jpeg")

    async def friends(request: web.Request) -> web.Response:
        return web.json_response(social.friends())

    async def add_friend(request: web.Request) -> web.Response:
        body = await _json_any(request)
        unknown = sorted(set(body) - {"address", "name"})
        if unknown or not isinstance(body.get("address"), str) or not isinstance(body.get("name", ""), str):
            raise KomradeError("the body is {\"address\": ..., \"name\": ... (optional)}")
        return web.json_response(await social.add_friend(body["address"], body.get("name") or None), status=201)

    async def remove_friend(request: web.Request) -> web.Response:
        return web.json_response(await social.remove_friend(request.match_info["address"]))

    async def my_profile(request: web.Request) -> web.Response:
        return web.json_response(social.my_profile())

    async def set_profile(request: web.Request) -> web.Response:
        return web.json_response(await social.set_profile(await _json_any(request)))

    async def profile(request: web.Request) -> web.Response:
        return web.json_response(await social.show_profile(request.match_info["address"], _at(request)))

    async def photo(request: web.Request) -> web.Response:
        return web.Response(body=social.photo(request.match_info["address"]), content_type="image/jpeg")

    r = app.router
    r.add_get("/v1/feeds/{feed}", feed, allow_head=False)
    r.add_post("/v1/feeds/{feed}/refresh", refresh)
    r.add_post("/v1/posts", post)
    r.add_post("/v1/posts/{id}/burn", burn)
    r.add_get("/v1/posts/{id}/image", image, allow_head=False)
    r.add_get("/v1/friends", friends, allow_head=False)
    r.add_post("/v1/friends", add_friend)
    r.add_delete("/v1/friends/{address}", remove_friend)
    r.add_get("/v1/profile", my_profile, allow_head=False)
    r.add_put("/v1/profile", set_profile)
    r.add_get("/v1/profiles/{address}", profile, allow_head=False)
    r.add_get("/v1/profiles/{address}/photo", photo, allow_head=False)


__all__ = ["SOCIAL_QUERY_PARAMS", "add_social_routes"]
