"""The app's view of the user's node, fed only by ``komrade_dht.api``: Kivy properties that screens bind to,
refreshed from the API and kept current by the node's event stream (no polling).

Every call runs as a task owned here (cancelled at close); a failure becomes a message for a snackbar
(``notify``), never an exception in the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any, Awaitable, Callable

from kivy.event import EventDispatcher
from kivy.properties import BooleanProperty, DictProperty, ListProperty, NumericProperty, ObjectProperty, StringProperty

from komrade_dht.address import decode_address
from komrade_dht.api import ApiClient, ApiError, NodeNotRunning
from komrade_dht.errors import AddressError
from komrade_dht.identity import fingerprint as fingerprint_of

log = logging.getLogger(__name__)

#: Seconds between attempts to reach the node again after it stopped answering.
RECONNECT_EVERY = 2.0


def peer_fingerprint(address: str) -> str:
    """The fingerprint of the owner of ``address`` ("" if it is not one): how threads group messages."""
    try:
        return fingerprint_of(decode_address(address).verify_key)
    except AddressError:
        return ""


def describe(exc: BaseException) -> str:
    """One line for a person: what failed, without a traceback."""
    if isinstance(exc, NodeNotRunning):
        return "Your node does not answer: it stopped or is starting. Status shows what is wrong."
    if isinstance(exc, ApiError):
        if exc.code == "network_unavailable":
            return f"The network did not answer: {exc}"
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Backend(EventDispatcher):
    """State shown by the screens. ``attach(api)`` once a node answers; ``close()`` at the end."""

    connected = BooleanProperty(False)
    problem = StringProperty("")
    identity = ObjectProperty(None, allownone=True)
    contacts = ListProperty([])
    messages = ListProperty([])
    sent = ListProperty([])
    status = ObjectProperty(None, allownone=True)
    settings = ObjectProperty(None, allownone=True)
    unread = NumericProperty(0)
    busy = StringProperty("")
    recovery_text = StringProperty("")
    qr_png = ObjectProperty(b"")
    last_sync_result = DictProperty({})
    crowd = ObjectProperty(None, allownone=True)
    invitation = DictProperty({})
    """The newest event invitation or update pushed by the node (the events screens bind to it)."""
    collective_news = DictProperty({})
    """The newest collective news pushed by the node (keys received, a join request)."""

    def __init__(self, notify: Callable[[str], None],
                 rediscover: Callable[[], Awaitable[ApiClient | None]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notify = notify
        self.rediscover = rediscover
        self.api: ApiClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stream: asyncio.Task[None] | None = None
        self.bind(messages=self._count_unread)

    # -- tasks ---------------------------------------------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any], what: str = "") -> asyncio.Task[Any]:
        """Run ``coro`` in the background; its failure is shown as a snackbar (``what`` names the action)."""
        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except (NodeNotRunning, ApiError) as exc:
                if isinstance(exc, NodeNotRunning):
                    self._lost(str(exc))
                self.notify(f"{what} failed: {describe(exc)}" if what else describe(exc))
            except Exception as exc:  # a bug: say so, keep the window alive, keep the traceback in the log
                log.exception("%s failed", what or "a background task")
                self.notify(f"{what or 'Something'} failed: {describe(exc)}")
            return None

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        tasks = list(self._tasks) + ([self._stream] if self._stream else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._stream = None
        if self.api is not None:
            await self.api.close()
            self.api = None

    # -- connection ------------------------------------------------------------------------------------------------
    async def attach(self, api: ApiClient) -> None:
        """Use the node behind ``api``: read everything once, then follow its event stream."""
        self.api = api
        await self.refresh()
        self.connected = True
        self.problem = ""
        if self._stream is None or self._stream.done():
            self._stream = asyncio.ensure_future(self._follow())

    def _lost(self, why: str) -> None:
        if self.connected or not self.problem:
            log.warning("node unreachable: %s", why)
        self.problem = ("Your node does not answer (it stopped, or its API moved). Nothing is sent or received "
                        "until it is back: restart komrade, or run `komrade node`.")
        self.connected = False

    def _need(self) -> ApiClient:
        if self.api is None:
            raise NodeNotRunning("no node yet")
        return self.api

    async def refresh(self) -> None:
        api = self._need()
        self.identity = await api.identity()
        self.qr_png = await api.qr_png(scale=6)
        self.contacts = await api.contacts()
        self.messages = await api.all_messages()
        self.sent = await api.all_sent()
        self.settings = await api.settings()
        self.status = await api.status()

    async def _follow(self) -> None:
        """Apply the node's events; when the stream ends or fails, say so and try again every few seconds."""
        while True:
            try:
                async for event in self._need().events():
                    if not self.connected:
                        self.connected, self.problem = True, ""
                        await self.refresh()  # what changed while we were away
                    if event.kind == "message" and event.message is not None:
                        if all(m.id != event.message.id for m in self.messages):
                            self.messages = self.messages + [event.message]
                    elif event.kind == "status" and event.status is not None:
                        self.status = event.status
                    elif event.kind == "invitation":
                        self._invited(event.data)
                    elif event.kind == "collective":
                        self._collective_news(event.data)
                self._lost("the event stream ended")
            except asyncio.CancelledError:
                raise
            except (NodeNotRunning, ApiError) as exc:
                self._lost(str(exc))
            except Exception as exc:
                log.exception("event stream")
                self._lost(str(exc))
            await asyncio.sleep(RECONNECT_EVERY)
            await self._try_elsewhere()

    async def _try_elsewhere(self) -> None:
        """A node restarted for the same data directory (e.g. `komrade node`) has a new URL and token: use it."""
        if self.rediscover is None:
            return
        try:
            found = await self.rediscover()
        except Exception:
            return
        if found is None:
            return
        if self.api is not None and found.url == self.api.url:
            await found.close()
            return
        old, self.api = self.api, found
        if old is not None:
            await old.close()

    def _invited(self, event: dict[str, Any]) -> None:
        title = str(event.get("title") or "an event")
        if event.get("cancelled"):
            self.notify(f"Cancelled: {title}")
        elif int(event.get("version") or 0) > 1:
            self.notify(f"Event changed: {title}")
        else:
            self.notify(f"Invitation: {title}")
        self.invitation = dict(event)

    def _collective_news(self, news: dict[str, Any]) -> None:
        name = str(news.get("name") or "a collective")
        if news.get("what") == "join_request":
            self.notify(f"Someone asks to join {name}")
        else:
            self.notify(f"{name}: its key arrived")
        self.collective_news = dict(news)

    def _count_unread(self, *_: Any) -> None:
        self.unread = sum(1 for m in self.messages if not m.read)

    # -- actions (each returns the task; screens do not await the network) --------------------------------------------
    def add_contact(self, address: str, name: str, done: Callable[[Any], None] | None = None) -> asyncio.Task[Any]:
        async def run() -> None:
            contact = await self._need().add_contact(address, name)
            self.contacts = await self._need().contacts()
            self.notify(f"Added {contact.name}")
            if done:
                done(contact)
        return self.spawn(run(), "Adding the contact")

    def rename_contact(self, address: str, name: str) -> asyncio.Task[Any]:
        async def run() -> None:
            await self._need().rename_contact(address, name)
            self.contacts = await self._need().contacts()
            self.notify(f"Renamed to {name.strip()}")
        return self.spawn(run(), "Renaming")

    def remove_contact(self, address: str) -> asyncio.Task[Any]:
        async def run() -> None:
            await self._need().remove_contact(address)
            self.contacts = await self._need().contacts()
            self.notify("Contact removed")
        return self.spawn(run(), "Removing the contact")

    def verify_contact(self, address: str) -> asyncio.Task[Any]:
        async def run() -> None:
            await self._need().verify_contact(address)
            self.contacts = await self._need().contacts()
            self.notify("Marked as verified")
        return self.spawn(run(), "Verifying")

    def send(self, to: str, text: str, done: Callable[[Any], None] | None = None) -> asyncio.Task[Any]:
        async def run() -> None:
            self.busy = "Sending: proof of work, then storing with the holders..."
            try:
                sent = await self._need().send(to, text)
            finally:
                self.busy = ""
            self.sent = await self._need().all_sent()
            if done:
                done(sent)
        return self.spawn(run(), "Sending")

    def room(self, to: str, done: Callable[[dict[str, Any]], None]) -> asyncio.Task[Any]:
        """Ask the node how long a DM to ``to`` may be (its device count decides); ``done`` gets the answer."""
        async def run() -> None:
            done(await self._need().room(to))
        return self.spawn(run(), "Checking the recipient's devices")

    def mark_read(self, ids: list[str]) -> asyncio.Task[Any]:
        async def run() -> None:
            for message_id in ids:
                await self._need().mark_read(message_id)
            wanted = set(ids)
            self.messages = [replace(m, read=True) if m.id in wanted else m for m in self.messages]
        return self.spawn(run(), "Marking as read")

    def burn(self, message_id: str) -> asyncio.Task[Any]:
        async def run() -> None:
            self.busy = "Burning: asking every holder to delete it..."
            try:
                burned = await self._need().burn(message_id)
            finally:
                self.busy = ""
            self.messages = [m for m in self.messages if m.id != message_id]
            self.notify(f"Burned: deleted here and {burned.deleted_copies} network copies")
        return self.spawn(run(), "Burning")

    def sync_now(self) -> asyncio.Task[Any]:
        async def run() -> None:
            self.busy = "Syncing your inbox..."
            try:
                new = await self._need().sync()
            finally:
                self.busy = ""
            self.status = await self._need().status()
            self.notify(f"Synced: {len(new)} new message{'s' if len(new) != 1 else ''}")
        return self.spawn(run(), "Sync")

    def save_settings(self, bootstrap: list[str], sync_interval: float, tor: Any = ...) -> asyncio.Task[Any]:
        """Save settings; ``tor`` ({"socks", "relays"} or None) switches untraceable mode at the next start."""
        async def run() -> None:
            before = self.settings.tor if self.settings is not None else None
            self.settings = await self._need().update_settings(bootstrap=bootstrap, sync_interval=sync_interval,
                                                               tor=tor)
            changed = tor is not ... and tor != before
            self.notify("Settings saved" + (": untraceable mode changes when the node next starts (restart komrade)"
                                            if changed else ""))
        return self.spawn(run(), "Saving settings")

    def measure_crowd(self, target: int = 1000) -> asyncio.Task[Any]:
        """Estimate the crowd sharing our slot and the width advised for ``target`` (a few lookups)."""
        async def run() -> None:
            self.busy = "Measuring your crowd..."
            try:
                self.crowd = await self._need().crowd(target)
            finally:
                self.busy = ""
        return self.spawn(run(), "Measuring the crowd")

    def accept_request(self, address: str, name: str) -> asyncio.Task[Any]:
        return self.add_contact(address, name)

    def delete_request(self, ids: list[str]) -> asyncio.Task[Any]:
        async def run() -> None:
            for message_id in ids:
                await self._need().burn(message_id)
            gone = set(ids)
            self.messages = [m for m in self.messages if m.id not in gone]
            self.notify("Request deleted here and in the network")
        return self.spawn(run(), "Deleting the request")


__all__ = ["Backend", "describe", "peer_fingerprint"]

