"""A typed Python client of the local node API, async (:class:`ApiClient`) and sync (:class:`SyncApiClient`).

It finds a running node through its data directory: ``api.json`` says where the API listens and ``api.token``
holds the token (readable by the account's owner only)::

    async with ApiClient.from_data_dir("~/.local/share/komrade") as api:
        sent = await api.send("komrade1q...", "hello")
        page = await api.messages()
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from ..errors import KomradeError
from ..social import Contact, Message

TOKEN_FILE = "api.token"
INFO_FILE = "api.json"

T = TypeVar("T")


class ApiError(KomradeError):
    """The node answered a request with an error; ``status`` is the HTTP status and ``code`` the API's code
    (bad_request, not_found, network_unavailable, ...). The message is the node's, meant for a person."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NodeNotRunning(KomradeError):
    """No komrade node is running for this data directory (or it stopped): start one with `komrade node`."""


@dataclass(frozen=True)
class IdentityInfo:
    """Your public identity, as the node reports it."""

    address: str
    fingerprint: str
    name: str
    width: int


@dataclass(frozen=True)
class Sent:
    """A DM that left: its envelope id and how many nodes acknowledged it."""

    id: str
    acks: int


@dataclass(frozen=True)
class MessagePage:
    """One page of the inbox (oldest first) and how many messages there are in all."""

    total: int
    offset: int
    limit: int
    messages: list[Message]


@dataclass(frozen=True)
class SentMessage:
    """A DM sent from this device; ``acks`` counts the holders that acknowledged storing it (not a delivery)."""

    id: str
    to: str
    text: str
    sent_at: int
    acks: int


@dataclass(frozen=True)
class SentPage:
    """One page of the sent DMs (oldest first) and how many there are in all."""

    total: int
    offset: int
    limit: int
    messages: list[SentMessage]


@dataclass(frozen=True)
class Settings:
    """The node's settings: data directory and slot width (fixed), bootstrap peers (used at the next start) and
    the sync interval in seconds (applies at once)."""

    data_dir: str
    width: int
    bootstrap: list[str]
    sync_interval: float
    tor: dict[str, Any] | None = None
    """Untraceable mode for the next start: ``{"socks": "HOST:PORT", "relays": [...]}``, or None."""
    untraceable: bool = False
    """Whether the node runs in untraceable mode now."""


@dataclass(frozen=True)
class Burned:
    """A burned message: deleted here, and ``deleted_copies`` copies deleted in the network."""

    id: str
    deleted_copies: int


@dataclass(frozen=True)
class Crowd:
    """How many people share your slot (see the Crowd schema in openapi.json)."""

    network_size: int
    width: int
    crowd: float
    target: int
    advised_width: int
    envelopes_per_day: float
    download_bytes_per_day: float


@dataclass(frozen=True)
class Status:
    """The node's status (see the Status schema in openapi.json)."""

    version: str
    node_id: str
    address: str
    read_only: bool
    peers: int
    routing_table_size: int
    buckets: int
    envelopes: int
    bytes: int
    slots: int
    uptime_s: float
    last_sync: int | None
    last_sync_error: str | None
    subscribers: int
    counters: dict[str, int]


@dataclass(frozen=True)
class Event:
    """One event from the stream: ``kind`` is "message" (``message`` set), "status" (``status`` set), or, with
    ``data`` as the OpenAPI document's shapes, "post" (a feed item), "invitation" (an event) or "collective"."""

    kind: str
    id: str
    data: dict[str, Any]

    @property
    def message(self) -> Message | None:
        return _build(Message, self.data) if self.kind == "message" else None

    @property
    def status(self) -> Status | None:
        return _build(Status, self.data) if self.kind == "status" else None


def _build(cls: type[T], data: Any) -> T:
    """A dataclass from a JSON object, ignoring fields a newer node may add."""
    if not isinstance(data, dict):
        raise KomradeError(f"the node sent a malformed {cls.__name__}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise KomradeError(f"the node sent a malformed {cls.__name__}: {exc}") from None


def read_endpoint(data_dir: Path | str) -> tuple[str, str]:
    """(url, token) of the node running for ``data_dir``, from its ``api.json`` and ``api.token``.
    NodeNotRunning if they are not there."""
    data_dir = Path(data_dir).expanduser()
    try:
        info = json.loads((data_dir / INFO_FILE).read_text())
        token = (data_dir / TOKEN_FILE).read_text().strip()
    except FileNotFoundError:
        raise NodeNotRunning(f"no komrade node is running for {data_dir}: start one with `komrade node`") from None
    except (OSError, ValueError) as exc:
        raise NodeNotRunning(f"cannot read the node's API files in {data_dir}: {exc}") from None
    url = info.get("url") if isinstance(info, dict) else None
    if not isinstance(url, str) or not url.startswith("http://") or not token:
        raise NodeNotRunning(f"{data_dir / INFO_FILE} is not a komrade API file")
    return url, token


class ApiClient:
    """Async client of one node's API. Use :meth:`from_data_dir` (or give the url and token), then ``close``
    (or ``async with``). Every method raises :class:`ApiError` when the node refuses and :class:`NodeNotRunning`
    when nothing answers."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_data_dir(cls, data_dir: Path | str, *, timeout: float = 60.0) -> ApiClient:
        url, token = read_endpoint(data_dir)
        return cls(url, token, timeout=timeout)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self._token}"})
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _request(self, method: str, path: str, *, json_body: Any = None,
                       params: dict[str, Any] | None = None) -> Any:
        try:
            async with self._client().request(
                method, self.url + path, json=json_body, params=params, timeout=self._timeout
            ) as response:
                if response.status == 204:
                    return None
                if response.content_type == "application/json":
                    body = await response.json()
                else:
                    body = await response.read()
                if response.status >= 400:
                    if isinstance(body, dict):
                        raise ApiError(response.status, str(body.get("error")), str(body.get("message")))
                    raise ApiError(response.status, "http_error", f"the node answered HTTP {response.status}")
                return body
        except aiohttp.ClientConnectionError as exc:
            raise NodeNotRunning(f"the komrade node at {self.url} does not answer ({exc}): is it running?") from None
        except asyncio.TimeoutError:
            raise NodeNotRunning(f"the komrade node at {self.url} did not answer in time") from None

    # -- routes --------------------------------------------------------------------------------------------
    async def health(self) -> bool:
        """True if the node answers (no token needed)."""
        body = await self._request("GET", "/v1/health")
        return isinstance(body, dict) and body.get("ok") is True

    async def identity(self) -> IdentityInfo:
        return _build(IdentityInfo, await self._request("GET", "/v1/identity"))

    async def qr_png(self, scale: int = 8) -> bytes:
        body = await self._request("GET", "/v1/identity/qr.png", params={"scale": scale})
        assert isinstance(body, bytes)
        return body

    async def contacts(self) -> list[Contact]:
        body = await self._request("GET", "/v1/contacts")
        return [_build(Contact, c) for c in body["contacts"]]

    async def add_contact(self, address: str, name: str) -> Contact:
        return _build(Contact, await self._request("POST", "/v1/contacts", json_body={"address": address, "name": name}))

    async def verify_contact(self, contact: str) -> Contact:
        """Mark as verified the contact named by its address, public key (hex) or fingerprint."""
        return _build(Contact, await self._request("POST", f"/v1/contacts/{quote(contact, safe='')}/verify"))

    async def remove_contact(self, contact: str) -> None:
        await self._request("DELETE", f"/v1/contacts/{quote(contact, safe='')}")

    async def rename_contact(self, contact: str, name: str) -> Contact:
        return _build(Contact, await self._request("PATCH", f"/v1/contacts/{quote(contact, safe='')}",
                                                    json_body={"name": name}))

    async def sent(self, offset: int = 0, limit: int = 50) -> SentPage:
        body = await self._request("GET", "/v1/sent", params={"offset": offset, "limit": limit})
        return SentPage(body["total"], body["offset"], body["limit"], [_build(SentMessage, m) for m in body["messages"]])

    async def all_sent(self) -> list[SentMessage]:
        """Every DM sent from this device, oldest first."""
        out: list[SentMessage] = []
        while True:
            page = await self.sent(len(out), 500)
            out.extend(page.messages)
            if not page.messages or len(out) >= page.total:
                return out

    async def settings(self) -> Settings:
        return _build(Settings, await self._request("GET", "/v1/settings"))

    async def update_settings(self, *, bootstrap: list[str] | None = None,
                              sync_interval: float | None = None, tor: Any = ...) -> Settings:
        """Change settings; ``tor`` ({"socks", "relays"} or None for off) applies at the node's next start."""
        body: dict[str, Any] = {}
        if tor is not ...:
            body["tor"] = tor
        if bootstrap is not None:
            body["bootstrap"] = bootstrap
        if sync_interval is not None:
            body["sync_interval"] = sync_interval
        return _build(Settings, await self._request("PUT", "/v1/settings", json_body=body))

    async def send(self, to: str, text: str) -> Sent:
        return _build(Sent, await self._request("POST", "/v1/messages", json_body={"to": to, "text": text}))

    async def room(self, to: str) -> dict[str, Any]:
        """How long a DM to ``to`` may be: ``{to, devices, text_bytes}`` (each of the recipient's devices takes room)."""
        return await self._request("GET", "/v1/messages/room", params={"to": to})  # type: ignore[no-any-return]

    async def messages(self, offset: int = 0, limit: int = 50) -> MessagePage:
        body = await self._request("GET", "/v1/messages", params={"offset": offset, "limit": limit})
        return MessagePage(body["total"], body["offset"], body["limit"], [_build(Message, m) for m in body["messages"]])

    async def all_messages(self) -> list[Message]:
        """Every message on the device, oldest first (page after page)."""
        out: list[Message] = []
        while True:
            page = await self.messages(len(out), 500)
            out.extend(page.messages)
            if not page.messages or len(out) >= page.total:
                return out

    async def mark_read(self, message_id: str) -> Message:
        return _build(Message, await self._request("POST", f"/v1/messages/{quote(message_id, safe='')}/read"))

    async def burn(self, message_id: str) -> Burned:
        return _build(Burned, await self._request("POST", f"/v1/messages/{quote(message_id, safe='')}/burn"))

    async def sync(self) -> list[Message]:
        """Pull the inbox now; returns the new messages."""
        body = await self._request("POST", "/v1/sync")
        return [_build(Message, m) for m in body["messages"]]

    async def status(self) -> Status:
        return _build(Status, await self._request("GET", "/v1/status"))

    async def crowd(self, target: int = 1000) -> Crowd:
        """The crowd you hide in and the slot width advised for ``target`` people (a few lookups: ~1 s)."""
        return _build(Crowd, await self._request("GET", f"/v1/crowd?target={int(target)}"))

    async def openapi(self) -> dict[str, Any]:
        body = await self._request("GET", "/v1/openapi.json")
        assert isinstance(body, dict)
        return body

    async def events(self) -> AsyncIterator[Event]:
        """The node's event stream: first a ``status`` event, then ``message`` and ``status`` events as they
        happen. Ends when the node stops (or raises NodeNotRunning if it cannot connect)."""
        try:
            async with self._client().get(
                self.url + "/v1/events", timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
            ) as response:
                if response.status != 200:
                    body = await response.json(content_type=None)
                    raise ApiError(response.status, str(body.get("error")), str(body.get("message")))
                kind, event_id, data = "message", "", []
                async for raw in response.content:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if not line:
                        if data:
                            yield Event(kind, event_id, json.loads("\n".join(data)))
                        kind, event_id, data = "message", "", []
                    elif line.startswith(":"):
                        continue
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            kind = value
                        elif name == "data":
                            data.append(value)
                        elif name == "id":
                            event_id = value
        except aiohttp.ClientConnectionError as exc:
            raise NodeNotRunning(f"the komrade node at {self.url} does not answer ({exc}): is it running?") from None


class SyncApiClient:
    """The same calls, blocking: for scripts and the CLI. Runs its own event loop; do not use it inside one."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._api = ApiClient(url, token, timeout=timeout)

    @classmethod
    def from_data_dir(cls, data_dir: Path | str, *, timeout: float = 60.0) -> SyncApiClient:
        url, token = read_endpoint(data_dir)
        return cls(url, token, timeout=timeout)

    @property
    def url(self) -> str:
        return self._api.url

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._api.close())
            self._loop.close()

    def __enter__(self) -> SyncApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> bool:
        return self._run(self._api.health())

    def identity(self) -> IdentityInfo:
        return self._run(self._api.identity())

    def qr_png(self, scale: int = 8) -> bytes:
        return self._run(self._api.qr_png(scale))

    def contacts(self) -> list[Contact]:
        return self._run(self._api.contacts())

    def add_contact(self, address: str, name: str) -> Contact:
        return self._run(self._api.add_contact(address, name))

    def verify_contact(self, contact: str) -> Contact:
        return self._run(self._api.verify_contact(contact))

    def remove_contact(self, contact: str) -> None:
        self._run(self._api.remove_contact(contact))

    def rename_contact(self, contact: str, name: str) -> Contact:
        return self._run(self._api.rename_contact(contact, name))

    def sent(self, offset: int = 0, limit: int = 50) -> SentPage:
        return self._run(self._api.sent(offset, limit))

    def settings(self) -> Settings:
        return self._run(self._api.settings())

    def update_settings(self, *, bootstrap: list[str] | None = None, sync_interval: float | None = None,
                        tor: Any = ...) -> Settings:
        return self._run(self._api.update_settings(bootstrap=bootstrap, sync_interval=sync_interval, tor=tor))

    def send(self, to: str, text: str) -> Sent:
        return self._run(self._api.send(to, text))

    def messages(self, offset: int = 0, limit: int = 50) -> MessagePage:
        return self._run(self._api.messages(offset, limit))

    def all_messages(self) -> list[Message]:
        return self._run(self._api.all_messages())

    def mark_read(self, message_id: str) -> Message:
        return self._run(self._api.mark_read(message_id))

    def burn(self, message_id: str) -> Burned:
        return self._run(self._api.burn(message_id))

    def sync(self) -> list[Message]:
        return self._run(self._api.sync())

    def status(self) -> Status:
        return self._run(self._api.status())

    def crowd(self, target: int = 1000) -> Crowd:
        return self._run(self._api.crowd(target))


def node_running(data_dir: Path | str, timeout: float = 2.0) -> bool:
    """True if ``data_dir`` has API files and the node behind them answers /v1/health (blocking)."""
    try:
        url, token = read_endpoint(data_dir)
    except NodeNotRunning:
        return False
    client = SyncApiClient(url, token, timeout=timeout)
    try:
        return client.health()
    except (NodeNotRunning, ApiError):
        return False
    finally:
        client.close()


__all__ = [
    "ApiClient",
    "ApiError",
    "Burned",
    "Event",
    "IdentityInfo",
    "MessagePage",
    "NodeNotRunning",
    "Sent",
    "SentMessage",
    "SentPage",
    "Settings",
    "Status",
    "SyncApiClient",
    "node_running",
    "read_endpoint",
]
