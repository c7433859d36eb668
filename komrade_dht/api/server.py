"""The local node API: HTTP/JSON on 127.0.0.1, a bearer token, an event stream (aiohttp).

Safe by default, as Tahoe-LAFS's web API: it binds loopback only (a non-loopback host is refused); at every start
a fresh random token goes to ``api.token`` in the data directory (created 0600) and the URL to ``api.json``;
every route but ``GET /v1/health`` needs ``Authorization: Bearer <token>``, compared in constant time. Every
route is described in ``openapi.json`` next to this file, which is also what ``GET /v1/openapi.json`` serves.

Errors are JSON, ``{"error": code, "message": text}``, with a 4xx status for anything the caller sent wrong; a 5xx
means the network failed (503) or a bug (500, logged with its traceback).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from ..errors import AddressError, EnvelopeError, KomradeError, NetworkError, StorageError, UserDataError
from ..service import InvalidInput, NotFound, Subscription, UserService

log = logging.getLogger(__name__)

TOKEN_FILE = "api.token"
INFO_FILE = "api.json"
#: Largest request body accepted (bytes); a DM is under 1 KB.
MAX_BODY = 64 * 1024
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The query parameters each route takes; any other is refused with 400.
QUERY_PARAMS: dict[str, frozenset[str]] = {
    "/v1/identity/qr.png": frozenset({"scale"}),
    "/v1/messages": frozenset({"offset", "limit"}),
    "/v1/sent": frozenset({"offset", "limit"}),
    "/v1/messages/room": frozenset({"to"}),
    "/v1/crowd": frozenset({"target"}),
}
from .organize_routes import ORGANIZE_QUERY_PARAMS  # noqa: E402 (issue 11)
from .social_routes import SOCIAL_QUERY_PARAMS  # noqa: E402 (issue 10)

QUERY_PARAMS.update(SOCIAL_QUERY_PARAMS)
QUERY_PARAMS.update(ORGANIZE_QUERY_PARAMS)
from .device_routes import DEVICE_QUERY_PARAMS  # noqa: E402 (issue 14)

QUERY_PARAMS.update(DEVICE_QUERY_PARAMS)


def openapi_document() -> bytes:
    """The OpenAPI document, as kept in the package (``komrade_dht/api/openapi.json``)."""
    return resources.files("komrade_dht.api").joinpath("openapi.json").read_bytes()


def check_loopback(host: str) -> str:
    """``host`` if it is a loopback address (or ``localhost``); KomradeError otherwise."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise KomradeError(
        f"the local API listens on loopback only (127.0.0.1 or ::1), not {host!r}: it controls your account"
    )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    421: "bad_host",
    415: "unsupported_media_type",
}


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _text(value: Any, name: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise _BadRequest(400, "bad_request", f"{name} must be a string")
    if not value or len(value) > max_len:
        raise _BadRequest(400, "bad_request", f"{name} must be 1 to {max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _BadRequest(400, "bad_request", f"{name} is not valid Unicode text (lone surrogates)") from None
    return value


async def _json_object(request: web.Request, fields: dict[str, int]) -> dict[str, str]:
    """The request's JSON body: an object with exactly the string ``fields`` (name -> max length)."""
    if request.content_type != "application/json":
        raise _BadRequest(415, "unsupported_media_type", "send the body as application/json")
    raw = await request.read()  # aiohttp refuses more than client_max_size with 413
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _BadRequest(400, "bad_request", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest(400, "bad_request", "the body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise _BadRequest(400, "bad_request", f"unknown field(s): {', '.join(k[:40] for k in unknown[:5])}")
    missing = [k for k in fields if k not in body]
    if missing:
        raise _BadRequest(400, "bad_request", f"missing field(s): {', '.join(missing)}")
    return {k: _text(body[k], k, limit) for k, limit in fields.items()}


async def _json_any(request: web.Request) -> dict[str, Any]:
    """The request's JSON body as an object (fields checked by the caller)."""
    if request.content_type != "application/json":
        raise _BadRequest(415, "unsupported_media_type", "send the body as application/json")
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _BadRequest(400, "bad_request", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest(400, "bad_request", "the body must be a JSON object")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DIGITS = re.compile(r"[0-9]{1,10}")


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    values = request.query.getall(name, [])
    if not values:
        return default
    if len(values) > 1 or not _DIGITS.fullmatch(values[0]) or not low <= int(values[0]) <= high:
        raise _BadRequest(400, "bad_request", f"{name} must be one integer from {low} to {high}")
    return int(values[0])


class ApiServer:
    """Serves one :class:`UserService` on ``http://host:port`` (loopback only). ``await start()`` writes
    ``api.token`` and ``api.json`` to the service's data directory; ``await close()`` removes them."""

    def __init__(self, service: UserService, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        self.host = check_loopback(host)
        self.port = port
        self.data_dir = Path(service.data_dir)
        self.token = ""
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._subscriptions: set[Subscription] = set()
        self.app = self._make_app()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._host, self._errors, self._auth, self._query])
        r = app.router
        r.add_get("/v1/health", self.health, allow_head=False)
        r.add_get("/v1/openapi.json", self.openapi, allow_head=False)
        r.add_get("/v1/identity", self.identity, allow_head=False)
        r.add_get("/v1/identity/qr.png", self.identity_qr, allow_head=False)
        r.add_get("/v1/contacts", self.list_contacts, allow_head=False)
        r.add_post("/v1/contacts", self.add_contact)
        r.add_delete("/v1/contacts/{contact}", self.remove_contact)
        r.add_patch("/v1/contacts/{contact}", self.rename_contact)
        r.add_post("/v1/contacts/{contact}/verify", self.verify_contact)
        r.add_get("/v1/messages", self.list_messages, allow_head=False)
        r.add_post("/v1/messages", self.send_message)
        r.add_get("/v1/messages/room", self.message_room, allow_head=False)
        r.add_post("/v1/messages/{id}/read", self.mark_read)
        r.add_post("/v1/messages/{id}/burn", self.burn_message)
        r.add_get("/v1/sent", self.list_sent, allow_head=False)
        r.add_post("/v1/sync", self.sync)
        r.add_get("/v1/settings", self.get_settings, allow_head=False)
        r.add_put("/v1/settings", self.put_settings)
        r.add_get("/v1/status", self.status, allow_head=False)
        r.add_get("/v1/crowd", self.crowd, allow_head=False)
        r.add_get("/v1/events", self.events, allow_head=False)
        from .social_routes import add_social_routes  # posts, feeds, friends, profiles (issue 10)

        add_social_routes(app, self)
        from .organize_routes import add_organize_routes  # votes, events, pins, collectives (issue 11)

        add_organize_routes(app, self)
        from .device_routes import add_device_routes  # this identity's devices (issue 14)

        add_device_routes(app, self)
        return app

    async def start(self) -> str:
        """Listen, then write a fresh token and where we listen; returns the base URL."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=False)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self.token = secrets.token_urlsafe(32)
        try:
            _write_private(self.data_dir / TOKEN_FILE, self.token + "\n")
            _write_private(self.data_dir / INFO_FILE, json.dumps({"url": self.url, "pid": os.getpid()}) + "\n")
        except BaseException:
            await self.close()
            raise
        log.info("local API on %s", self.url)
        return self.url

    async def close(self) -> None:
        """End the event streams, stop listening, and remove ``api.json`` and ``api.token`` if they are ours."""
        for sub in list(self._subscriptions):
            sub.close()  # each event stream sees its end and returns
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        for name, mine in ((INFO_FILE, self.url), (TOKEN_FILE, self.token)):
            path = self.data_dir / name
            try:
                if mine and mine in path.read_text():
                    path.unlink()
            except OSError:
                pass

    # -- middlewares ------------------------------------------------------------------------------------------
    def allowed_hosts(self) -> frozenset[str]:
        """The ``Host`` header values this server answers: loopback names with our port (DNS rebinding defence)."""
        return frozenset(f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]"))

    @web.middleware
    async def _host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse a request whose ``Host`` is not this loopback server: a web page whose DNS name was rebound to
        127.0.0.1 sends its own name there, and must not reach the API (even /v1/health)."""
        host = request.headers.get("Host", "").strip().lower()
        if host not in self.allowed_hosts():
            return _error(
                421, "bad_host",
                f"this API answers only Host 127.0.0.1:{self.port}, localhost:{self.port} or [::1]:{self.port}, "
                f"not {host[:80]!r} (a web page reaching it under another name is refused: DNS rebinding)",
            )
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every failure becomes a JSON error; input problems are 4xx, never 5xx."""
        try:
            return await handler(request)
        except _BadRequest as exc:
            return _error(exc.status, exc.code, exc.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _HTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            message = exc.reason if exc.status != 413 else f"the body is larger than {MAX_BODY} bytes"
            return _error(exc.status, code, message, headers)
        except NotFound as exc:
            return _error(404, "not_found", str(exc))
        except NetworkError as exc:
            return _error(503, "network_unavailable", str(exc))
        except (StorageError, UserDataError) as exc:
            log.error("local data problem answering %s %s: %s", request.method, request.path, exc)
            return _error(500, "internal", str(exc))
        except (InvalidInput, AddressError, EnvelopeError, KomradeError) as exc:
            return _error(400, "bad_request", str(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("bug answering %s %s", request.method, request.path)
            return _error(500, "internal", "internal error: see the node's log")

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/v1/health":
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if not (self.token and scheme.lower() == "bearer"
                and hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token.encode())):
            return _error(
                401,
                "unauthorized",
                f"send Authorization: Bearer <the token in {TOKEN_FILE} in the node's data directory>",
                {"WWW-Authenticate": 'Bearer realm="komrade"'},
            )
        return await handler(request)

    @web.middleware
    async def _query(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse query parameters a route does not take (a typo should not be silently ignored)."""
        resource = request.match_info.route.resource
        if resource is not None:
            unknown = sorted(set(request.query) - QUERY_PARAMS.get(resource.canonical, frozenset()))
            if unknown:
                names = ", ".join(repr(k[:40]) for k in unknown[:5])
                raise _BadRequest(400, "bad_request", f"unknown query parameter(s) for {resource.canonical}: {names}")
        return await handler(request)

    # -- routes ----------------------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=openapi_document(), content_type="application/json")

    async def identity(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.identity())

    async def identity_qr(self, request: web.Request) -> web.Response:
        scale = _int_param(request, "scale", 8, 1, 32)
        return web.Response(body=self.service.qr_png(scale), content_type="image/png")

    async def list_contacts(self, request: web.Request) -> web.Response:
        return web.json_response({"contacts": [asdict(c) for c in self.service.contacts()]})

    async def add_contact(self, request: web.Request) -> web.Response:
        body = await _json_object(request, {"address": 200, "name": 64})
        contact = self.service.add_contact(body["address"], body["name"])
        return web.json_response(asdict(contact), status=201)

    async def remove_contact(self, request: web.Request) -> web.Response:
        self.service.remove_contact(request.match_info["contact"])
        return web.Response(status=204)

    async def rename_contact(self, request: web.Request) -> web.Response:
        body = await _json_object(request, {"name": 64})
        contact = self.service.rename_contact(request.match_info["contact"], body["name"])
        return web.json_response(asdict(contact))

    async def list_sent(self, request: web.Request) -> web.Response:
        offset = _int_param(request, "offset", 0, 0, 10**9)
        limit = _int_param(request, "limit", 50, 1, 500)
        return web.json_response(self.service.sent(offset, limit))

    async def get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.settings())

    async def put_settings(self, request: web.Request) -> web.Response:
        body = await _json_any(request)
        unknown = sorted(set(body) - {"bootstrap", "sync_interval", "tor"})
        if unknown:
            raise _BadRequest(400, "bad_request", f"unknown field(s): {', '.join(k[:40] for k in unknown[:5])}")
        peers = body.get("bootstrap")
        if "bootstrap" in body and not (isinstance(peers, list) and all(isinstance(p, str) for p in peers)):
            raise _BadRequest(400, "bad_request", "bootstrap must be a list of IP:PORT strings")
        interval = body.get("sync_interval")
        if "sync_interval" in body and (isinstance(interval, bool) or not isinstance(interval, (int, float))):
            raise _BadRequest(400, "bad_request", "sync_interval must be a number of seconds")
        if "tor" in body:
            return web.json_response(self.service.update_settings(peers, interval, body["tor"]))
        return web.json_response(self.service.update_settings(peers, interval))

    async def verify_contact(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.service.verify_contact(request.match_info["contact"])))

    async def list_messages(self, request: web.Request) -> web.Response:
        offset = _int_param(request, "offset", 0, 0, 10**9)
        limit = _int_param(request, "limit", 50, 1, 500)
        page = self.service.messages(offset, limit)
        return web.json_response(
            {"total": page.total, "offset": page.offset, "limit": page.limit,
             "messages": [asdict(m) for m in page.messages]}
        )

    async def send_message(self, request: web.Request) -> web.Response:
        body = await _json_object(request, {"to": 200, "text": 4000})
        sent = await self.service.send(body["to"], body["text"])
        return web.json_response(asdict(sent), status=201)

    async def message_room(self, request: web.Request) -> web.Response:
        to = request.query.get("to")
        if not to:
            raise InvalidInput("say whom the message is for: ?to=ADDRESS")
        return web.json_response(await self.service.room(to))

    async def mark_read(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.service.mark_read(request.match_info["id"])))

    async def burn_message(self, request: web.Request) -> web.Response:
        message_id = request.match_info["id"]
        deleted = await self.service.burn(message_id)
        return web.json_response({"id": message_id, "deleted_copies": deleted})

    async def sync(self, request: web.Request) -> web.Response:
        new = await self.service.sync()
        return web.json_response({"new": len(new), "messages": [asdict(m) for m in new]})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.status())

    async def crowd(self, request: web.Request) -> web.Response:
        target = _int_param(request, "target", 1000, 1, 10**9)
        return web.json_response(await self.service.crowd(target))

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events until the client leaves or the API closes (which ends every subscription)."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        async with self.service.subscribe() as sub:
            self._subscriptions.add(sub)
            try:
                await response.write(b"retry: 3000\n\n")
                while True:
                    try:
                        event = await sub.get(timeout=KEEPALIVE)
                    except (TimeoutError, asyncio.TimeoutError):
                        await response.write(b": keepalive\n\n")
                        continue
                    if event is None:
                        break
                    data = json.dumps(event.data, separators=(",", ":"))
                    await response.write(f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode())
            except ConnectionResetError:
                pass  # the client left
            finally:
                self._subscriptions.discard(sub)
        return response


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (created 0600, never wider)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
