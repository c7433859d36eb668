"""The App: builds the shell from the screen registry, owns the Backend (API state) and the NodeHost (the node
process), shows snackbars, keeps the window title current, and stops the node when the window closes."""

from __future__ import annotations

import logging
from typing import Any

from kivy.base import ExceptionHandler, ExceptionManager
from kivy.core.window import Window
from kivy.metrics import dp
from kivy.uix.screenmanager import NoTransition
from kivymd.app import MDApp
from kivymd.uix.boxlayout import MDBoxLayout
from kivymd.uix.navigationrail import (
    MDNavigationRail,
    MDNavigationRailItem,
    MDNavigationRailItemIcon,
    MDNavigationRailItemLabel,
)
from kivymd.uix.screenmanager import MDScreenManager
from kivymd.uix.snackbar import MDSnackbar, MDSnackbarSupportingText

from .backend import Backend
from .node_host import NodeHost, NodeOptions, UnlockError
from .screens import SCREENS

log = logging.getLogger(__name__)


class _KeepRunning(ExceptionHandler):
    """A bug in a widget callback is logged and shown as a snackbar; the window keeps running."""

    def __init__(self, app: KomradeApp) -> None:
        self.app = app

    def handle_exception(self, exc: BaseException) -> int:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or self.app.closed:
            return ExceptionManager.RAISE
        log.error("bug in the window", exc_info=exc)
        self.app.errors.append(f"{type(exc).__name__}: {exc}")
        try:
            self.app.notify(f"Something went wrong ({type(exc).__name__}); it is in the log.")
        except Exception:
            pass
        return ExceptionManager.PASS


class Notice(MDSnackbar):
    """A snackbar that can be made before its text is laid out (KivyMD sizes it 0 high at first, and a 0-high
    frame buffer fails on software GL)."""

    def init_fbos(self) -> None:
        self.size = (max(self.width, 1), max(self.height, 1))
        super().init_fbos()


class Shell(MDBoxLayout):
    """A navigation rail with a slot per area, and the screen manager holding every registered screen."""

    def __init__(self, app: KomradeApp, **kw: Any) -> None:
        super().__init__(orientation="horizontal", **kw)
        self.rail = MDNavigationRail(type="labeled", anchor="center", size_hint_x=None, width=dp(96))
        self.items: dict[str, MDNavigationRailItem] = {}
        for spec in SCREENS:
            if not spec.nav:
                continue
            item = MDNavigationRailItem(MDNavigationRailItemIcon(icon=spec.icon), MDNavigationRailItemLabel(text=spec.title))
            item.bind(on_release=lambda _item, name=spec.name: app.show(name))
            self.items[spec.name] = item
            self.rail.add_widget(item)
        self.manager = MDScreenManager(transition=NoTransition())  # a desktop window: switch at once
        self.screens: dict[str, Any] = {}
        for spec in SCREENS:
            screen = spec.load()(app, spec.title, name=spec.name)
            self.screens[spec.name] = screen
            self.manager.add_widget(screen)
        self.add_widget(self.rail)
        self.add_widget(self.manager)


class KomradeApp(MDApp):
    """komrade's window. ``options`` says which data directory's node to find or start."""

    def __init__(self, options: NodeOptions, **kw: Any) -> None:
        super().__init__(**kw)
        self.options = options
        self.host = NodeHost(options)
        self.backend: Backend | None = None
        self.shell: Shell | None = None
        self.notices: list[str] = []  # every snackbar text, newest last (tests and the log read it)
        self.errors: list[str] = []  # bugs caught by the exception handler (the window stays up)
        self.closing = False
        self.closed = False
        self.title = "komrade"

    # -- building ------------------------------------------------------------------------------------------------
    def build(self) -> Shell:
        self.theme_cls.primary_palette = "Darkred"
        self.theme_cls.theme_style = "Light"
        self.backend = Backend(self.notify, rediscover=self.host.find)
        self.backend.bind(unread=self._update_title, connected=self._update_title, problem=self._update_title)
        self.shell = Shell(self)
        self.shell.rail.disabled = True  # until an identity is open
        self.backend.bind(busy=lambda _b, text: [sc.working(bool(text)) for sc in self.shell.screens.values()])
        self.show("unlock" if self.host.has_identity() else "welcome")
        Window.bind(on_request_close=self._on_request_close)
        ExceptionManager.add_handler(_KeepRunning(self))
        return self.shell

    def on_start(self) -> None:
        self.backend.spawn(self._find_running_node(), "Looking for your node")

    async def _find_running_node(self) -> None:
        api = await self.host.find()
        if api is not None:  # started by `komrade node` or another run: use it, and leave it running at close
            await self.backend.attach(api)
            self.unlocked()

    # -- navigation and messages -----------------------------------------------------------------------------
    def screen(self, name: str) -> Any:
        return self.shell.screens[name]

    def show(self, screen_name: str, **context: Any) -> Any:
        name = screen_name
        screen = self.shell.screens[name]
        if context:
            screen.context = context
        if self.shell.manager.current == name:
            screen.refresh()
        self.shell.manager.current = name
        for item_name, item in self.shell.items.items():
            item.active = item_name == name
        return screen

    def notify(self, text: str) -> None:
        """A snackbar at the bottom of the window: never blocks, never a traceback."""
        self.notices.append(text)
        log.info("notice: %s", text)
        # Top right: the bottom of a screen holds its actions (send, sync, save), which a snackbar must not cover.
        bar = Notice(MDSnackbarSupportingText(text=text), pos_hint={"right": 0.99, "top": 0.99}, size_hint_x=0.36,
                     duration=4)
        bar.open()

    def _update_title(self, *_: Any) -> None:
        unread = self.backend.unread
        title = "komrade" + (f" ({unread} unread)" if unread else "")
        if not self.backend.connected and self.backend.problem:
            title += " - node not answering"
        self.title = title
        Window.set_title(title)

    # -- identity and node -------------------------------------------------------------------------------------------
    async def open_node(self, passphrase: str) -> None:
        """Start our node with this passphrase (already checked against the keystore) and attach to it."""
        api = await self.host.start(passphrase)
        await self.backend.attach(api)
        self.unlocked()

    def unlocked(self) -> None:
        self.shell.rail.disabled = False
        self._update_title()
        self.show("me" if self.backend.recovery_text else "chats")

    async def unlock(self, passphrase: str) -> str:
        """'' when unlocked, else what is wrong (shown under the field)."""
        try:
            await self.host.check_passphrase(passphrase)
        except UnlockError as exc:
            return str(exc)
        await self.open_node(passphrase)
        return ""

    # -- closing ------------------------------------------------------------------------------------------------------------
    def _on_request_close(self, *_: Any, **__: Any) -> bool:
        if self.closed:
            return False
        if not self.closing:
            self.closing = True
            self.notify("Stopping your node...")
            import asyncio

            asyncio.ensure_future(self.shutdown())
        return True  # the window stays until the node has stopped

    async def shutdown(self) -> None:
        """Stop following the node, stop the node we started (SIGTERM: it closes its stores cleanly), then close."""
        self.closing = True
        try:
            if self.backend is not None:
                await self.backend.close()
            await self.host.stop()
        finally:
            self.closed = True
            self.stop()
