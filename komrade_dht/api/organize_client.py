"""Client calls for votes, events, map pins and collectives (issue 11), on top of :class:`.client.ApiClient`.

``OrganizeApi(api)`` returns plain dicts shaped as the OpenAPI document says (``PostVotes``, ``OrgEvent``, ``Pin``,
``CollectiveState``...); errors are the client's ``ApiError`` / ``NodeNotRunning``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .client import ApiClient


def _q(value: str) -> str:
    return quote(value, safe="")


class OrganizeApi:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def _call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        return await self.api._request(method, path, json_body=body, params=params)

    # -- votes ----------------------------------------------------------------------------------------------
    async def vote(self, post_id: str, choice: str) -> dict[str, Any]:
        """Vote ``up``, ``down`` or ``none`` (withdraw) on a post read on this device: ``{"post_id", "choice",
        "ring_size", "votes": {"up", "down", "mine", "tallied_at"}}``."""
        return await self._call("POST", f"/v1/posts/{_q(post_id)}/vote", {"choice": choice})

    async def votes(self, post_id: str) -> dict[str, Any]:
        """Tally a post's votes now: ``{"post_id", "up", "down", "mine", "tallied_at"}``."""
        return await self._call("GET", f"/v1/posts/{_q(post_id)}/votes")

    # -- events ---------------------------------------------------------------------------------------------
    async def events(self) -> dict[str, Any]:
        """``{"hosted": [event], "invitations": [event]}``, soonest first."""
        return await self._call("GET", "/v1/organize/events")

    async def create_event(self, title: str, starts_at: int, ends_at: int, **fields: Any) -> dict[str, Any]:
        """Fields: place, description, at=(lat, lon), precision_km, image_path, anonymous, anonymous_answers,
        invite=[address]."""
        body: dict[str, Any] = {"title": title, "starts_at": starts_at, "ends_at": ends_at}
        for key, value in fields.items():
            if value is not None:
                body[key] = {"lat": value[0], "lon": value[1]} if key == "at" else value
        return await self._call("POST", "/v1/organize/events", body)

    async def picture(self, event_id: str) -> bytes:
        """The event's picture (JPEG bytes); ApiError 404 if it has none."""
        return await self._call("GET", f"/v1/organize/events/{_q(event_id)}/picture")  # type: ignore[no-any-return]

    async def event(self, event_id: str) -> dict[str, Any]:
        """An event; for its host also ``answers`` and ``counts`` (read from the network)."""
        return await self._call("GET", f"/v1/organize/events/{_q(event_id)}")

    async def refresh_event(self, event_id: str) -> dict[str, Any]:
        """Pull the event's latest version (edits, cancellation) from the network."""
        return await self._call("POST", f"/v1/organize/events/{_q(event_id)}/refresh")

    async def invite(self, event_id: str, addresses: list[str]) -> dict[str, Any]:
        return await self._call("POST", f"/v1/organize/events/{_q(event_id)}/invite", {"addresses": addresses})

    async def answer(self, event_id: str, answer: str) -> dict[str, Any]:
        """``going``, ``maybe`` or ``not-going``."""
        return await self._call("POST", f"/v1/organize/events/{_q(event_id)}/answer", {"answer": answer})

    async def edit_event(self, event_id: str, **changes: Any) -> dict[str, Any]:
        """Changes: title, starts_at, ends_at, place, description."""
        body = {k: v for k, v in changes.items() if v is not None}
        return await self._call("PATCH", f"/v1/organize/events/{_q(event_id)}", body)

    async def cancel_event(self, event_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/organize/events/{_q(event_id)}/cancel")

    # -- pins -----------------------------------------------------------------------------------------------
    async def pins(self, at: tuple[float, float], radius_km: float | None = None) -> list[dict[str, Any]]:
        """The live pins around ``at`` (read from the network now), nearest first."""
        params: dict[str, Any] = {"lat": at[0], "lon": at[1]}
        if radius_km is not None:
            params["radius_km"] = radius_km
        return (await self._call("GET", "/v1/organize/pins", params=params))["pins"]

    async def drop_pin(self, kind: str, text: str, at: tuple[float, float], *, radius_km: float = 5.0,
                       precision_km: float = 1.0, hours: float = 3.0) -> dict[str, Any]:
        """Drop an anonymous pin; the answer is the pin with its published (coarsened) position."""
        body = {"kind": kind, "text": text, "at": {"lat": at[0], "lon": at[1]}, "radius_km": radius_km,
                "precision_km": precision_km, "hours": hours}
        return await self._call("POST", "/v1/organize/pins", body)

    async def confirm_pin(self, pin_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/organize/pins/{_q(pin_id)}/confirm")

    async def dismiss_pin(self, pin_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/organize/pins/{_q(pin_id)}/dismiss")

    async def remove_pin(self, pin_id: str) -> dict[str, Any]:
        return await self._call("DELETE", f"/v1/organize/pins/{_q(pin_id)}")

    # -- collectives ----------------------------------------------------------------------------------------
    async def collectives(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/v1/organize/collectives"))["collectives"]

    async def found_collective(self, name: str, members: list[str] | None = None, *, quorum: int | None = None,
                               quorum_share: tuple[int, int] | None = None,
                               amend_share: tuple[int, int] | None = None,
                               remove_share: tuple[int, int] | None = None,
                               vote_window: int | None = None) -> dict[str, Any]:
        """Found a collective with these founding members' addresses (and you); shares are (numerator,
        denominator)."""
        body: dict[str, Any] = {"name": name, "members": list(members or [])}
        for key, value in (("quorum", quorum), ("quorum_share", quorum_share), ("amend_share", amend_share),
                           ("remove_share", remove_share), ("vote_window", vote_window)):
            if value is not None:
                body[key] = list(value) if isinstance(value, tuple) else value
        return await self._call("POST", "/v1/organize/collectives", body)

    async def collective(self, cid: str) -> dict[str, Any]:
        """Sync, then the state: members, constitution, joins, proposals."""
        return await self._call("GET", f"/v1/organize/collectives/{_q(cid)}")

    async def request_join(self, cid: str, member_address: str, note: str = "") -> dict[str, Any]:
        body = {"member_address": member_address, **({"note": note} if note else {})}
        return await self._call("POST", f"/v1/organize/collectives/{_q(cid)}/join", body)

    async def vouch(self, cid: str, join_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/organize/collectives/{_q(cid)}/vouch", {"join_id": join_id})

    async def propose(self, cid: str, set: dict[str, Any] | None = None,  # noqa: A002 - the contract's name
                      remove: str | None = None) -> dict[str, Any]:
        """An amendment (``set={"vouch_min": 3}``, shares as [n, d]) or a removal (``remove=`` a member's address
        or key): ``{"proposal_id", "collective"}``."""
        body: dict[str, Any] = {"set": set} if set is not None else {"remove": remove}
        return await self._call("POST", f"/v1/organize/collectives/{_q(cid)}/proposals", body)

    async def vote_proposal(self, cid: str, proposal_id: str, choice: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/organize/collectives/{_q(cid)}/proposals/{_q(proposal_id)}/vote",
                                {"choice": choice})

    async def collective_posts(self, cid: str, days: int = 3) -> list[dict[str, Any]]:
        return (await self._call("GET", f"/v1/organize/collectives/{_q(cid)}/posts", params={"days": days}))["posts"]

    async def collective_post(self, cid: str, text: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/organize/collectives/{_q(cid)}/posts", {"text": text})
