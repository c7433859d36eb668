"""Routes for this identity's devices (issue 14), added to the local API by :class:`.server.ApiServer`.

Every handler calls ``service.devices`` (:class:`komrade_dht.social.device_service.DeviceService`); bad input is
400 with a reason, a device not in the list 404, a network that did not answer 503, as everywhere in the API.
Joining an identity happens before a node runs for it (``komrade device join``), so it has no route here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..social.device_service import NoSuchDevice

if TYPE_CHECKING:
    from .server import ApiServer

#: Query parameters of these routes (merged into the server's table).
DEVICE_QUERY_PARAMS: dict[str, frozenset[str]] = {"/v1/pairing/qr.png": frozenset({"scale"})}


def add_device_routes(app: web.Application, server: ApiServer) -> None:
    from ..service import NotFound
    from .server import _int_param

    service = server.service.devices

    async def devices(request: web.Request) -> web.Response:
        return web.json_response(service.list())

    async def pair(request: web.Request) -> web.Response:
        return web.json_response(service.pair(), status=201)

    async def pairing(request: web.Request) -> web.Response:
        state = service.pairing()
        if state is None:
            raise NotFound("no pairing yet: make a code first (POST /v1/pairing)")
        return web.json_response(state)

    async def pair_qr(request: web.Request) -> web.Response:
        scale = _int_param(request, "scale", 8, 1, 32)
        try:
            return web.Response(body=service.pair_qr(scale), content_type="image/png")
        except NoSuchDevice as exc:
            raise NotFound(str(exc)) from None

    async def remove(request: web.Request) -> web.Response:
        try:
            return web.json_response(await service.remove(request.match_info["key"]))
        except NoSuchDevice as exc:
            raise NotFound(str(exc)) from None

    r = app.router
    r.add_get("/v1/devices", devices, allow_head=False)
    r.add_post("/v1/pairing", pair)
    r.add_get("/v1/pairing", pairing, allow_head=False)
    r.add_get("/v1/pairing/qr.png", pair_qr, allow_head=False)
    r.add_delete("/v1/devices/{key}", remove)


__all__ = ["DEVICE_QUERY_PARAMS", "add_device_routes"]
