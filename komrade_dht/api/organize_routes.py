"""Routes for votes, events, map pins and collectives (issue 11), added to the local API by :class:`.server.ApiServer`.

Every handler reads its path, query and body and calls ``service.organize``
(:class:`komrade_dht.social.organize_service.OrganizeService`), which checks the values; bad input is 400 with a
reason, an unknown post, event, pin or collective 404, a network that did not answer 503, as everywhere in the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import KomradeError
from .social_routes import _at, _float

if TYPE_CHECKING:
    from .server import ApiServer

#: Query parameters of these routes (merged into the server's table).
ORGANIZE_QUERY_PARAMS: dict[str, frozenset[str]] = {
    "/v1/organize/pins": frozenset({"lat", "lon", "radius_km"}),
    "/v1/organize/collectives/{cid}/posts": frozenset({"days"}),
}


def add_organize_routes(app: web.Application, server: ApiServer) -> None:
    from .server import _int_param, _json_any

    organize = server.service.organize

    def ok(doc: dict, status: int = 200) -> web.Response:
        return web.json_response(doc, status=status)

    # -- votes ----------------------------------------------------------------------------------------------
    async def vote(request: web.Request) -> web.Response:
        body = await _json_any(request)
        if set(body) != {"choice"}:
            raise KomradeError('the body is {"choice": "up" | "down" | "none"}')
        return ok(await organize.vote(request.match_info["id"], body["choice"]))

    async def votes(request: web.Request) -> web.Response:
        return ok(await organize.votes(request.match_info["id"]))

    # -- events ---------------------------------------------------------------------------------------------
    async def list_events(request: web.Request) -> web.Response:
        return ok(organize.events())

    async def create_event(request: web.Request) -> web.Response:
        return ok(await organize.create_event(await _json_any(request)), 201)

    async def event(request: web.Request) -> web.Response:
        return ok(await organize.event(request.match_info["event_id"]))

    async def event_picture(request: web.Request) -> web.Response:
        return web.Response(body=await organize.picture(request.match_info["event_id"]), content_type="image/jpeg")

    async def refresh_event(request: web.Request) -> web.Response:
        return ok(await organize.refresh_event(request.match_info["event_id"]))

    async def invite(request: web.Request) -> web.Response:
        return ok(await organize.invite(request.match_info["event_id"], await _json_any(request)))

    async def answer(request: web.Request) -> web.Response:
        return ok(await organize.answer(request.match_info["event_id"], await _json_any(request)))

    async def edit_event(request: web.Request) -> web.Response:
        return ok(await organize.edit_event(request.match_info["event_id"], await _json_any(request)))

    async def cancel_event(request: web.Request) -> web.Response:
        return ok(await organize.cancel_event(request.match_info["event_id"]))

    # -- pins -----------------------------------------------------------------------------------------------
    async def list_pins(request: web.Request) -> web.Response:
        at = _at(request)
        if at is None:
            raise KomradeError("the pins around you need your position: lat and lon")
        radius = _float(request, "radius_km")
        if radius is not None:
            from ..geo import check_radius

            check_radius(radius)
        return ok(await organize.pins(at, radius))

    async def drop_pin(request: web.Request) -> web.Response:
        return ok(await organize.drop_pin(await _json_any(request)), 201)

    async def confirm_pin(request: web.Request) -> web.Response:
        return ok(await organize.vote_pin(request.match_info["pin_id"], True))

    async def dismiss_pin(request: web.Request) -> web.Response:
        return ok(await organize.vote_pin(request.match_info["pin_id"], False))

    async def remove_pin(request: web.Request) -> web.Response:
        return ok(await organize.remove_pin(request.match_info["pin_id"]))

    # -- collectives ----------------------------------------------------------------------------------------
    async def list_collectives(request: web.Request) -> web.Response:
        return ok(organize.collectives())

    async def found(request: web.Request) -> web.Response:
        return ok(await organize.found_collective(await _json_any(request)), 201)

    async def collective(request: web.Request) -> web.Response:
        return ok(await organize.collective(request.match_info["cid"]))

    async def join(request: web.Request) -> web.Response:
        return ok(await organize.request_join(request.match_info["cid"], await _json_any(request)), 201)

    async def vouch(request: web.Request) -> web.Response:
        return ok(await organize.vouch(request.match_info["cid"], await _json_any(request)))

    async def propose(request: web.Request) -> web.Response:
        return ok(await organize.propose(request.match_info["cid"], await _json_any(request)), 201)

    async def vote_proposal(request: web.Request) -> web.Response:
        info = request.match_info
        return ok(await organize.vote_proposal(info["cid"], info["pid"], await _json_any(request)))

    async def group_posts(request: web.Request) -> web.Response:
        days = _int_param(request, "days", 3, 1, 30)
        return ok(await organize.collective_posts(request.match_info["cid"], days))

    async def group_post(request: web.Request) -> web.Response:
        return ok(await organize.collective_post(request.match_info["cid"], await _json_any(request)), 201)

    r = app.router
    r.add_post("/v1/posts/{id}/vote", vote)
    r.add_get("/v1/posts/{id}/votes", votes, allow_head=False)
    r.add_get("/v1/organize/events", list_events, allow_head=False)
    r.add_post("/v1/organize/events", create_event)
    r.add_get("/v1/organize/events/{event_id}", event, allow_head=False)
    r.add_get("/v1/organize/events/{event_id}/picture", event_picture, allow_head=False)
    r.add_patch("/v1/organize/events/{event_id}", edit_event)
    r.add_post("/v1/organize/events/{event_id}/refresh", refresh_event)
    r.add_post("/v1/organize/events/{event_id}/invite", invite)
    r.add_post("/v1/organize/events/{event_id}/answer", answer)
    r.add_post("/v1/organize/events/{event_id}/cancel", cancel_event)
    r.add_get("/v1/organize/pins", list_pins, allow_head=False)
    r.add_post("/v1/organize/pins", drop_pin)
    r.add_post("/v1/organize/pins/{pin_id}/confirm", confirm_pin)
    r.add_post("/v1/organize/pins/{pin_id}/dismiss", dismiss_pin)
    r.add_delete("/v1/organize/pins/{pin_id}", remove_pin)
    r.add_get("/v1/organize/collectives", list_collectives, allow_head=False)
    r.add_post("/v1/organize/collectives", found)
    r.add_get("/v1/organize/collectives/{cid}", collective, allow_head=False)
    r.add_post("/v1/organize/collectives/{cid}/join", join)
    r.add_post("/v1/organize/collectives/{cid}/vouch", vouch)
    r.add_post("/v1/organize/collectives/{cid}/proposals", propose)
    r.add_post("/v1/organize/collectives/{cid}/proposals/{pid}/vote", vote_proposal)
    r.add_get("/v1/organize/collectives/{cid}/posts", group_posts, allow_head=False)
    r.add_post("/v1/organize/collectives/{cid}/posts", group_post)




__all__ = ["ORGANIZE_QUERY_PARAMS", "add_organize_routes"]
