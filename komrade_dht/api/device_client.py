"""Client calls for this identity's devices (issue 14), on top of :class:`.client.ApiClient`.

``DeviceApi(api)`` returns plain dicts shaped as the OpenAPI document says (``DeviceList``, ``Pairing``,
``Device``); errors are the client's ``ApiError`` / ``NodeNotRunning``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .client import ApiClient


class DeviceApi:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def devices(self) -> dict[str, Any]:
        return await self.api._request("GET", "/v1/devices")

    async def pair(self) -> dict[str, Any]:
        return await self.api._request("POST", "/v1/pairing")

    async def pairing(self) -> dict[str, Any]:
        return await self.api._request("GET", "/v1/pairing")

    async def pairing_qr(self, scale: int = 6) -> bytes:
        return await self.api._request("GET", "/v1/pairing/qr.png", params={"scale": scale})

    async def remove(self, key: str) -> dict[str, Any]:
        return await self.api._request("DELETE", f"/v1/devices/{quote(key, safe='')}")
