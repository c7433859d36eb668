"""One user's running node: an open :class:`~komrade_dht.social.Account`, a full DHT node holding data for others
(its own SQLite store, ``node.sqlite`` in the data directory), a periodic inbox sync and a stream of events.

This is what the local HTTP API (``komrade_dht.api``) serves: each public method of :class:`UserService` is one
route. It owns every background task it starts (the sync loop and the status watcher) and cancels them in
:meth:`UserService.close`; the node owns its own periodic jobs and stops them in ``stop_async``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Awaitable, Callable, Literal

from . import __version__
from .address import decode_address
from .errors import AddressError, KomradeError
from .node import KomradeNode, NodeConfig
from .social import Account, Contact, Message, burn, devices, inbox, mark_read, send_dm, sync_inbox
from .social.dm import text_room
from .social.device_service import DeviceService, qr_png
from .storage import Store, StoreLimits
from .votes import RegistrationParams

try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

NODE_DB = "node.sqlite"
LOCK_FILE = "node.lock"
#: Settings a person changed in an interface (the app's settings screen): bootstrap peers and sync interval, JSON.
SETTINGS_FILE = "settings.json"
#: Bounds of the settings the API accepts.
MAX_BOOTSTRAP = 32
SYNC_INTERVAL_RANGE = (1.0, 86400.0)


class InvalidInput(KomradeError):
    """A request carried a value that cannot be used (its message says which and why)."""


class NotFound(KomradeError):
    """The message or contact named in a request is not on this device."""


class AlreadyRunning(KomradeError):
    """Another komrade node already runs for this data directory (one node per account at a time)."""


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of one user's node. Defaults suit a desktop: loopback, a sync every 30 seconds."""

    listen_host: str = "127.0.0.1"
    """Interface of the node's UDP socket. Loopback reaches only peers on this machine; use 0.0.0.0 (or the
    machine's address) to join a network elsewhere."""
    listen_port: int = 0
    """UDP port of the node (0: any free port)."""
    bootstrap: tuple[tuple[str, int], ...] = ()
    """Peers to join through (the saved routing.json in the data directory is tried too)."""
    sync_interval: float = 30.0
    """Seconds between automatic inbox syncs (the first one runs as soon as the node has joined)."""
    status_interval: float = 5.0
    """Seconds between checks for a status change worth an event (peers, stored envelopes, last sync)."""
    node: NodeConfig = NodeConfig()
    """The DHT node's tunables."""
    limits: StoreLimits = StoreLimits()
    """Quotas of the node's store (what it holds for others)."""
    tor_socks: tuple[str, int] | None = None
    """Untraceable mode: Tor's SOCKS port. The service then runs no DHT node and opens no UDP socket: every action
    goes to a relay's TCP service (``relay_tcp``) through Tor, each on its own circuit (:mod:`komrade_dht.torclient`)."""
    relay_tcp: tuple[tuple[str, int], ...] = ()
    """Relays' TCP services (IP, name or .onion) for untraceable mode."""
    registration: RegistrationParams | None = None
    """Work of a world-vote registration (None: the default, or ``KOMRADE_REGISTRATION_TRIALS`` on a test network;
    every voter and reader of a network must agree)."""
    event_queue: int = 256
    """Events buffered per subscriber; a subscriber that falls this far behind is disconnected (it can re-read
    the inbox and subscribe again) so a stuck reader never makes the node's memory grow."""

    def __post_init__(self) -> None:
        if not self.sync_interval > 0 or not self.status_interval > 0:
            raise ValueError("sync_interval and status_interval must be positive")
        if self.event_queue < 1:
            raise ValueError("event_queue must be at least 1")


#: What an event is about: a new DM, a status change, a new feed item (issue 10), an event invitation or an
#: update of an event you are invited to, a collective's key or a join request for one (issue 11).
EventKind = Literal["message", "status", "post", "invitation", "collective"]


@dataclass(frozen=True)
class Event:
    """One thing subscribers are told: ``kind`` is ``"message"`` (``data`` is a Message as a dict),
    ``"status"`` (``data`` is what :meth:`UserService.status` returns), ``"post"`` (a feed item), ``"invitation"``
    (an event, as the API gives it) or ``"collective"`` (a collective's line of the list, and ``what``: ``key`` or
    ``join_request``). ``seq`` counts up from 1 per service."""

    kind: EventKind
    data: dict[str, Any]
    seq: int


class Subscription:
    """A subscriber's queue of events. Iterate it (``async for event in sub``); it ends when the service closes or
    when this subscriber fell more than ``ServiceConfig.event_queue`` events behind (then ``overflowed`` is True)."""

    def __init__(self, hub: EventHub, size: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(size + 1)  # +1: room for the closing sentinel
        self._size = size
        self.overflowed = False
        self.closed = False

    def _offer(self, event: Event) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self._size:
            self.overflowed = True
            self._end()
            return
        self._queue.put_nowait(event)

    def _end(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event; None when the subscription ended. Raises TimeoutError after ``timeout`` seconds."""
        if self.closed and self._queue.empty():
            return None
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is None:
            self._queue.put_nowait(None)  # later get() calls see the end too
        return item

    def close(self) -> None:
        self._hub._subscribers.discard(self)
        self._end()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        item = await self.get()
        if item is None:
            raise StopAsyncIteration
        return item

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """In-process publish/subscribe: every subscriber gets every event published after it subscribed."""

    def __init__(self, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._seq = 0
        self.closed = False

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self._queue_size)
        if self.closed:
            sub._end()
        else:
            self._subscribers.add(sub)
        return sub

    def publish(self, kind: EventKind, data: dict[str, Any]) -> Event:
        self._seq += 1
        event = Event(kind, data, self._seq)
        for sub in list(self._subscribers):
            sub._offer(event)
            if sub.closed:
                self._subscribers.discard(sub)
        return event

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        self.closed = True
        for sub in list(self._subscribers):
            sub._end()
        self._subscribers.clear()


@dataclass(frozen=True)
class Sent:
    """A DM that left: its envelope id (hex) and how many nodes acknowledged storing it."""

    id: str
    acks: int


@dataclass(frozen=True)
class Page:
    """One page of the inbox, oldest first."""

    total: int
    offset: int
    limit: int
    messages: list[Message] = field(default_factory=list)


_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_FINGERPRINT = re.compile(r"[0-9]{5}(?:[ -]?[0-9]{5}){5}")


def message_key(message_id: str) -> bytes:
    """The 20-byte id of a message from its 40 lowercase hex characters (InvalidInput otherwise)."""
    if not isinstance(message_id, str) or not _HEX40.fullmatch(message_id):
        raise InvalidInput(f"not a message id: {str(message_id)[:60]!r} (40 lowercase hex characters)")
    return bytes.fromhex(message_id)


def parse_peer(text: str) -> tuple[str, int]:
    """``(ip, port)`` from ``IP:PORT`` or ``[IPv6]:PORT`` (an IP literal: settings are used without DNS)."""
    if not isinstance(text, str) or len(text) > 60:
        raise InvalidInput("a bootstrap peer is IP:PORT, e.g. 203.0.113.5:9475 or [2001:db8::1]:9475")
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(host)
        number = int(port) if port.isdigit() and len(port) <= 5 else -1
    except ValueError:
        number = -1
    if not sep or not 1 <= number <= 65535:
        raise InvalidInput(f"not a bootstrap peer: {text[:60]!r} (IP:PORT, e.g. 203.0.113.5:9475)")
    return str(ip), number


def format_peer(peer: tuple[str, int]) -> str:
    host, port = peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$")


def parse_tor(value: Any) -> dict[str, Any] | None:
    """Untraceable-mode settings: None (off), or ``{"socks": "HOST:PORT", "relays": ["HOST:PORT", ...]}`` (Tor's
    SOCKS port; relays' TCP services, by IP, name or .onion name). Raises InvalidInput with the reason."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"socks", "relays"}:
        raise InvalidInput('tor must be null or {"socks": "HOST:PORT", "relays": ["HOST:PORT", ...]}')
    socks, relays = value["socks"], value["relays"]
    if not (isinstance(socks, str) and _HOST.match(socks) and 1 <= int(socks.rsplit(":", 1)[1]) <= 65535):
        raise InvalidInput(f"tor.socks must be HOST:PORT (Tor's SOCKS port, e.g. 127.0.0.1:9050), not {str(socks)[:60]!r}")
    if not (isinstance(relays, list) and 1 <= len(relays) <= MAX_BOOTSTRAP):
        raise InvalidInput(f"tor.relays must list 1 to {MAX_BOOTSTRAP} relays' TCP services (HOST:PORT)")
    for relay in relays:
        if not (isinstance(relay, str) and _HOST.match(relay) and 1 <= int(relay.rsplit(":", 1)[1]) <= 65535):
            raise InvalidInput(f"not a relay's TCP service: {str(relay)[:60]!r} (HOST:PORT, an IP, a name or a .onion)")
    return {"socks": socks, "relays": list(dict.fromkeys(relays))}


def load_settings(data_dir: os.PathLike[str] | str) -> dict[str, Any]:
    """The settings saved in ``data_dir`` (``settings.json``): ``bootstrap`` (list of IP:PORT) and
    ``sync_interval`` (seconds or None). A missing or unreadable file means no settings (logged, not fatal)."""
    path = os.path.join(data_dir, SETTINGS_FILE)
    out: dict[str, Any] = {"bootstrap": [], "sync_interval": None, "tor": None}
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        return out
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return out
    if not isinstance(raw, dict):
        return out
    peers = raw.get("bootstrap")
    if isinstance(peers, list):
        for text in peers[:MAX_BOOTSTRAP]:
            try:
                out["bootstrap"].append(format_peer(parse_peer(text)))
            except InvalidInput:
                log.warning("ignoring bootstrap peer %r in %s", str(text)[:60], path)
    interval = raw.get("sync_interval")
    if isinstance(interval, (int, float)) and not isinstance(interval, bool):
        if SYNC_INTERVAL_RANGE[0] <= interval <= SYNC_INTERVAL_RANGE[1]:
            out["sync_interval"] = float(interval)
    try:
        out["tor"] = parse_tor(raw.get("tor"))
    except InvalidInput as exc:
        log.warning("ignoring the untraceable-mode settings in %s: %s", path, exc)
    return out


class UserService:
    """An open account and its node. ``await start()``, use it, ``await close()`` (or ``async with``)."""

    def __init__(self, account: Account, config: ServiceConfig = ServiceConfig()) -> None:
        self.account = account
        self.config = config
        self.data_dir = account.data_dir
        self.events = EventHub(config.event_queue)
        self.node: KomradeNode | None = None
        self.started_at = time.time()
        self.last_sync: int | None = None
        self.last_sync_error: str | None = None
        self._sync_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock_fd: int | None = None
        self._last_summary: dict[str, Any] | None = None
        self._settings = load_settings(self.data_dir)
        #: Seconds between automatic syncs: the saved setting if there is one, else the configuration's.
        self.sync_interval: float = self._settings["sync_interval"] or config.sync_interval
        self._wake_sync = asyncio.Event()
        from .social.organize_service import OrganizeService  # votes, events, pins, collectives (issue 11)
        from .social.social_service import SocialService  # posts, feeds, friends, profiles (issue 10)

        self.organize = OrganizeService(account, self._node, self.events.publish, self.sync, config.registration)
        self.social = SocialService(account, self._node, self.events.publish, self.sync, votes=self.organize)
        self.devices = DeviceService(account, self._node, self._spawn)  # issue 14

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Take the data directory's lock, open the store, listen, join, and start the sync and status tasks."""
        self._take_lock()
        if self.config.tor_socks is not None:
            await self._start_untraceable()
            return
        store: Store | None = None
        try:
            store = Store(self.data_dir / NODE_DB, self.config.limits)
            self.node = KomradeNode(store, config=self.config.node, state_dir=self.data_dir)
            store = None  # the node owns it now and closes it in stop_async
            await self.node.listen(self.config.listen_port, self.config.listen_host)
            peers = list(self.config.bootstrap)
            peers += [p for p in map(parse_peer, self._settings["bootstrap"]) if p not in peers]
            joined = await self.node.bootstrap(peers)
            log.info("user node joined with %d peers known", len(joined))
        except BaseException:
            if store is not None:
                store.close()
            await self._stop_node()
            self._release_lock()
            raise
        self.started_at = time.time()
        self._spawn(self._sync_loop(), "sync")
        self._spawn(self._every(self.config.status_interval, self._check_status), "status")

    async def _start_untraceable(self) -> None:
        from .torclient import TorClient

        try:
            client = TorClient(list(self.config.relay_tcp), self.config.tor_socks)
            await client.start()
        except BaseException:
            self._release_lock()
            raise
        self.node = client  # type: ignore[assignment]  # the operations sync, send and burn need
        log.info("untraceable mode: no DHT node, every action through Tor to %d relay(s)", len(self.config.relay_tcp))
        self.started_at = time.time()
        self._spawn(self._sync_loop(), "sync")
        self._spawn(self._every(self.config.status_interval, self._check_status), "status")

    @property
    def untraceable(self) -> bool:
        return self.config.tor_socks is not None

    async def close(self) -> None:
        """Cancel the tasks this service owns, end every subscription, stop the node (its store is closed),
        release the data directory. The account stays open: whoever opened it closes it."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.organize.close()
        self.events.close()
        await self._stop_node()
        self._release_lock()

    async def __aenter__(self) -> UserService:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _stop_node(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            await node.stop_async()

    def _take_lock(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise AlreadyRunning(
                    f"a komrade node already runs for {self.data_dir}: stop it first, or talk to it (komrade send/inbox do)"
                ) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        task.set_name(f"komrade-service-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _every(interval: float, job: Callable[[], Awaitable[Any]], first: float | None = None) -> None:
        """Run ``job`` after ``first`` seconds (default: ``interval``), then every ``interval`` seconds."""
        delay = interval if first is None else first
        while True:
            await asyncio.sleep(delay)
            delay = interval
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic %s failed; it runs again in %.0f s", job.__name__, interval)

    async def _sync_loop(self) -> None:
        """Sync at once, then every ``self.sync_interval`` seconds (re-read each time: the setting may change)."""
        while True:
            try:
                await self._periodic_sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic sync failed; it runs again in %.0f s", self.sync_interval)
            self._wake_sync.clear()
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._wake_sync.wait(), self.sync_interval)

    def _node(self) -> KomradeNode:
        if self.node is None:
            raise KomradeError("the node is not running")
        return self.node

    # -- identity ------------------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {
            "address": self.account.address.text,
            "fingerprint": self.account.fingerprint,
            "name": self.account.name,
            "width": self.account.width,
        }

    def qr_png(self, scale: int = 8) -> bytes:
        """The address as a QR code, PNG bytes."""
        if not 1 <= scale <= 32:
            raise InvalidInput("scale must be between 1 and 32")
        return qr_png(self.account.address.text, scale)

    # -- contacts ------------------------------------------------------------------------------------------
    def contacts(self) -> list[Contact]:
        return self.account.contacts()

    def add_contact(self, address: str, name: str) -> Contact:
        if not name.strip() or len(name) > 64:
            raise InvalidInput("a contact's name must be 1 to 64 characters, not only spaces")
        return self.account.add_contact(address, name.strip())

    def _contact_key(self, ref: str) -> bytes:
        """The verify key of the contact named by ``ref``: its address, its public key (64 hex) or its fingerprint
        (30 digits, spaces or dashes between the groups allowed). NotFound if it names no contact, or is none of
        those forms (a reference to nothing is a missing contact, as for a path that names no resource)."""
        ref = ref.strip() if isinstance(ref, str) else ""
        if ref.startswith("komrade1"):
            try:
                return decode_address(ref).verify_key
            except AddressError as exc:
                raise NotFound(f"no contact {ref[:80]!r}: {exc}") from None
        if _HEX64.fullmatch(ref):
            return bytes.fromhex(ref)
        if _FINGERPRINT.fullmatch(ref):
            digits = re.sub(r"[ -]", "", ref)
            for contact in self.account.contacts():
                if contact.fingerprint.replace(" ", "") == digits:
                    return decode_address(contact.address).verify_key
            raise NotFound(f"no contact with fingerprint {ref}")
        raise NotFound(
            f"no contact {ref[:60]!r}: name a contact by its address, its public key (64 hex digits) or its fingerprint"
        )

    def verify_contact(self, ref: str) -> Contact:
        key = self._contact_key(ref)
        if self.account.contact(key) is None:
            raise NotFound(f"no contact {ref}")
        return self.account.verify_contact(key)

    def rename_contact(self, ref: str, name: str) -> Contact:
        """Give a contact another name (the address, fingerprint and verified mark stay)."""
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise InvalidInput("a contact's name must be 1 to 64 characters, not only spaces")
        key = self._contact_key(ref)
        if self.account.contact(key) is None:
            raise NotFound(f"no contact {ref}")
        return self.account.rename_contact(key, name)

    def remove_contact(self, ref: str) -> None:
        if not self.account.remove_contact(self._contact_key(ref)):
            raise NotFound(f"no contact {ref}")

    # -- direct messages -----------------------------------------------------------------------------------
    async def send(self, to: str, text: str) -> Sent:
        """Seal ``text`` to the address ``to`` and publish it. AddressError/KomradeError for bad input,
        NetworkError when no node acknowledged it."""
        if not text:
            raise InvalidInput("the message is empty")
        recipient = decode_address(to)  # a typo fails here, before any work
        key = await send_dm(self.account, self._node(), recipient.text, text)
        record = self.account.data.get("sent", key) or {}
        return Sent(key.hex(), int(record.get("acks", 0)))

    async def room(self, to: str) -> dict[str, Any]:
        """How long a DM to the address ``to`` may be: ``{to, devices, text_bytes}`` (each of the recipient's devices
        takes a header's room; its list is fetched when this device's copy is more than a minute old)."""
        recipient = decode_address(to)
        keys = await devices.recipient_keys(self.account, self._node(), recipient.public)
        return {"to": recipient.text, "devices": len(keys),
                "text_bytes": text_room(self.account.name, self.account.width, len(keys), not self.account.has_root)}

    def messages(self, offset: int = 0, limit: int = 50) -> Page:
        if offset < 0 or not 1 <= limit <= 500:
            raise InvalidInput("offset must be >= 0 and limit between 1 and 500")
        everything = inbox(self.account)
        return Page(len(everything), offset, limit, everything[offset : offset + limit])

    def sent(self, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """The DMs sent from this device, oldest first, by pages: ``{total, offset, limit, messages}``; each
        message is ``{id, to, text, sent_at, acks}`` (acks: holders that acknowledged storing it, not delivery)."""
        if offset < 0 or not 1 <= limit <= 500:
            raise InvalidInput("offset must be >= 0 and limit between 1 and 500")
        records = [
            {"id": str(r.get("id", "")), "to": str(r.get("to", "")), "text": str(r.get("text", "")),
             "sent_at": int(r.get("at", 0)), "acks": int(r.get("acks", 0))}
            for r in self.account.data.all("sent")
        ]
        records.sort(key=lambda r: (r["sent_at"], r["id"]))
        return {"total": len(records), "offset": offset, "limit": limit, "messages": records[offset : offset + limit]}

    def mark_read(self, message_id: str) -> Message:
        key = message_key(message_id)
        if not self.account.data.has("message", key):
            raise NotFound(f"no message {message_id}")
        return mark_read(self.account, message_id)

    async def burn(self, message_id: str) -> int:
        """Delete a received message here and its envelope wherever the network holds it; returns the number of
        network copies deleted."""
        key = message_key(message_id)
        if not self.account.data.has("message", key):
            raise NotFound(f"no message {message_id}")
        return await burn(self.account, self._node(), message_id)

    async def sync(self) -> list[Message]:
        """Pull the inbox now; publishes a ``message`` event per new message. Syncs never overlap."""
        async with self._sync_lock:
            try:
                new = await sync_inbox(self.account, self._node())
            except KomradeError as exc:
                self.last_sync_error = str(exc)
                raise
            self.last_sync = int(time.time())
            self.last_sync_error = None
        for message in new:
            self.events.publish("message", asdict(message))
        # invitations, collective keys and join requests that came with it; edits of the events you are invited to
        await self.organize.refresh_invitations()
        await self._check_status()
        return new

    async def _periodic_sync(self) -> None:
        try:
            await self.sync()
        except KomradeError as exc:
            log.warning("inbox sync failed: %s", exc)
            await self._check_status()

    async def crowd(self, target: int = 1000) -> dict[str, Any]:
        """How many people share this identity's slot, the width advised for ``target``, and what the crowd costs
        (:mod:`komrade_dht.social.crowd`)."""
        from .social.crowd import crowd_report

        if self.untraceable:
            raise KomradeError("the crowd is measured by a DHT node; in untraceable mode this device runs none")
        return asdict(await crowd_report(self.account, self._node(), target))

    # -- settings -------------------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What the settings screen shows: the data directory and slot width (fixed for this identity: the address
        carries them), the saved bootstrap peers (used at the next start) and the sync interval (applies now)."""
        return {
            "data_dir": str(self.data_dir),
            "width": self.account.width,
            "bootstrap": list(self._settings["bootstrap"]),
            "sync_interval": self.sync_interval,
            "tor": self._settings.get("tor"),
            "untraceable": self.untraceable,
        }

    def update_settings(
        self, bootstrap: list[str] | None = None, sync_interval: float | None = None, tor: Any = ...
    ) -> dict[str, Any]:
        """Change and save (``settings.json``, 0600, atomically) the settings given; the others stay. ``tor``
        (None turns it off) applies at the next start of the node, as ``bootstrap`` does."""
        new = dict(self._settings)
        if tor is not ...:
            new["tor"] = parse_tor(tor)
        if bootstrap is not None:
            if len(bootstrap) > MAX_BOOTSTRAP:
                raise InvalidInput(f"at most {MAX_BOOTSTRAP} bootstrap peers")
            peers: list[str] = []
            for text in bootstrap:
                peer = format_peer(parse_peer(text))
                if peer not in peers:
                    peers.append(peer)
            new["bootstrap"] = peers
        if sync_interval is not None:
            low, high = SYNC_INTERVAL_RANGE
            if isinstance(sync_interval, bool) or not isinstance(sync_interval, (int, float)) \
                    or not low <= sync_interval <= high:
                raise InvalidInput(f"sync_interval must be a number of seconds from {low:g} to {high:g}")
            new["sync_interval"] = float(sync_interval)
        path = self.data_dir / SETTINGS_FILE
        tmp = path.with_name(f".{SETTINGS_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (json.dumps(new, indent=1) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._settings = new
        if sync_interval is not None:
            self.sync_interval = float(sync_interval)
            self._wake_sync.set()  # the sleeping loop picks up the new interval now
        return self.settings()

    # -- status ---------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        node = self._node()
        if self.untraceable:  # no node of our own: what there is to say is the Tor client's
            return {
                "version": __version__, "node_id": "", "address": "", "read_only": True, "peers": 0,
                "routing_table_size": 0, "buckets": 0, "envelopes": 0, "bytes": 0, "slots": 0,
                "uptime_s": round(time.time() - self.started_at, 1), "last_sync": self.last_sync,
                "last_sync_error": self.last_sync_error, "subscribers": self.events.subscribers,
                "counters": {"untraceable": 1, "tor_actions": int(getattr(node, "actions", 0))},
            }
        raw = node.status()
        buckets = len(node.protocol.router.buckets) if node.protocol is not None else 0
        return {
            "version": __version__,
            "node_id": raw.get("node_id", ""),
            "address": raw.get("address", ""),
            "read_only": bool(raw.get("read_only", False)),
            "peers": int(raw.get("peers", 0)),
            "routing_table_size": int(raw.get("peers", 0)),
            "buckets": buckets,
            "envelopes": int(raw.get("envelopes", 0)),
            "bytes": int(raw.get("bytes", 0)),
            "slots": int(raw.get("slots", 0)),
            "uptime_s": round(time.time() - self.started_at, 1),
            "last_sync": self.last_sync,
            "last_sync_error": self.last_sync_error,
            "subscribers": self.events.subscribers,
            "counters": {str(k): int(v) for k, v in dict(raw.get("counters", {})).items()},
        }

    async def _check_status(self) -> None:
        """Publish a ``status`` event when something a UI shows changed."""
        if self.node is None:
            return
        status = self.status()
        summary = {k: status[k] for k in ("peers", "envelopes", "bytes", "last_sync", "last_sync_error")}
        if summary != self._last_summary:
            self._last_summary = summary
            self.events.publish("status", status)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Events from now on; the first one is the current status."""
        sub = self.events.subscribe()
        try:
            if self.node is not None:
                sub._offer(Event("status", self.status(), 0))
            yield sub
        finally:
            sub.close()
