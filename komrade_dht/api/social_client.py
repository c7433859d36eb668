"""Client calls for posts, feeds, friends and profiles (issue 10), on top of :class:`.client.ApiClient`.

``SocialApi(api)`` returns plain dicts shaped as the OpenAPI document says (``Post``, ``FeedPage``, ``Friend``,
``Profile``...); errors are the client's ``ApiError`` / ``NodeNotRunning``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .client import ApiClient


class SocialApi:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    @staticmethod
    def _at(at: tuple[float, float] | None) -> dict[str, Any]:
        return {} if at is None else {"lat": at[0], "lon": at[1]}

    async def feed(self, feed: str = "world", *, at: tuple[float, float] | None = None,
                   radius_km: float | None = None, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        params: dict[str, Any] = {**self._at(at), "offset": offset, "limit": limit}
        if radius_km is not None:
            params["radius_km"] = radius_km
        return await self.api._request("GET", f"/v1/feeds/{quote(feed, safe='')}", params=params)

    async def refresh(self, feed: str = "world", *, at: tuple[float, float] | None = None) -> dict[str, Any]:
        return await self.api._request("POST", f"/v1/feeds/{quote(feed, safe='')}/refresh", params=self._at(at))

    async def post(self, text: str, *, to: str = "world", anonymous: bool = False, image_path: str | None = None,
                   at: tuple[float, float] | None = None, radius_km: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"text": text, "to": to, "anonymous": anonymous}
        if image_path:
            body["image_path"] = image_path
        if at is not None:
            body["at"] = {"lat": at[0], "lon": at[1]}
        if radius_km is not None:
            body["radius_km"] = radius_km
        return await self.api._request("POST", "/v1/posts", json_body=body)

    async def burn(self, post_id: str) -> dict[str, Any]:
        return await self.api._request("POST", f"/v1/posts/{quote(post_id, safe='')}/burn")

    async def image(self, post_id: str) -> bytes:
        return await self.api._request("GET", f"/v1/posts/{quote(post_id, safe='')}/image")

    async def friends(self) -> list[dict[str, Any]]:
        return (await self.api._request("GET", "/v1/friends"))["friends"]

    async def add_friend(self, address: str, name: str | None = None) -> dict[str, Any]:
        body = {"address": address, **({"name": name} if name else {})}
        return await self.api._request("POST", "/v1/friends", json_body=body)

    async def remove_friend(self, address: str) -> dict[str, Any]:
        return await self.api._request("DELETE", f"/v1/friends/{quote(address, safe='')}")

    async def my_profile(self) -> dict[str, Any]:
        return await self.api._request("GET", "/v1/profile")

    async def set_profile(self, **fields: Any) -> dict[str, Any]:
        return await self.api._request("PUT", "/v1/profile", json_body={k: v for k, v in fields.items()
                                                                          if v is not None})

    async def profile(self, address: str, *, at: tuple[float, float] | None = None) -> dict[str, Any]:
        return await self.api._request("GET", f"/v1/profiles/{quote(address, safe='')}", params=self._at(at))

    async def photo(self, address: str) -> bytes:
        """The photo of a profile shown on this device (JPEG bytes); ApiError 404 if none is kept."""
        return await self.api._request("GET", f"/v1/profiles/{quote(address, safe='')}/photo")
