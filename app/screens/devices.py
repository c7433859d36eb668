"""Your identity's devices (issue 14): the list, pairing a new one (a one-time code as QR and text, valid ten
minutes, once), and removing one after a confirmation. Every call goes through the local API
(``komrade_dht.api.device_client.DeviceApi``) as a task owned by the backend."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

from kivy.core.image import Image as CoreImage
from kivy.metrics import dp
from kivy.uix.image import Image
from kivymd.uix.card import MDCard

from komrade_dht.api.device_client import DeviceApi

from ..widgets import BaseScreen, api_for, button, column, confirm, error_label, icon_button, label, row

#: Seconds between looks at a pairing under way (the node waits for the new device; this screen only shows it).
PAIRING_POLL = 2.0

PAIRING_HELP = ("On the new device run: komrade device join CODE --name NAME (or scan the QR). The code works "
                "once, for ten minutes. The new device gets its own keys, never your root key, so you can remove "
                "it later. Show the code only to that device.")
REMOVE_TEXT = ("Messages sent to you after your contacts see the new device list (within about a minute of their "
               "next send) no longer reach {name}. What it already received stays on it, and it can still write as "
               "you to people who have not looked at your list since.")


class DevicesScreen(BaseScreen):
    def build(self) -> None:
        self.role = label("", role="medium")
        self.pair_button = button("Pair a new device", self.pair)
        self.code = label("", style="Title", role="small")
        self.qr = Image(size_hint=(None, None), size=(dp(0), dp(0)), fit_mode="contain")
        self.pair_state = label("", role="medium")
        self.error = error_label()
        self.list_box = column(spacing=8)
        for widget in (self.role, row(self.pair_button), self.code, self.qr, self.pair_state, self.error,
                       label("Devices of your identity", style="Title", role="medium"), self.list_box):
            self.body.add_widget(widget)
        self.listed: dict[str, Any] = {}
        self.rows: dict[str, Any] = {}
        self._watch: asyncio.Task[Any] | None = None

    def refresh(self, *_: Any) -> None:
        devices = self.app.backend.api and DeviceApi(self.app.backend.api)
        if devices:
            self.app.backend.spawn(self._load(devices), "Loading your devices")

    async def _load(self, devices: DeviceApi) -> None:
        listed = await devices.devices()
        self.listed = listed
        self.role.text = ("This device holds your root key: it pairs and removes devices." if listed["root"] else
                          "This device was removed from your identity: messages sent to you now no longer reach it."
                          if listed["removed"] else
                          "This device was paired: it has its own keys. Pair or remove devices on your first device.")
        self.pair_button.disabled = not listed["root"]
        self.list_box.clear_widgets()
        self.rows = {}
        for device in listed["devices"]:
            flags = ("  root key" if device["root"] else "") + ("  (this device)" if device["this"] else "")
            added = time.strftime("%Y-%m-%d", time.localtime(device["added"])) if device["added"] else "-"
            text = column(label(device["name"] + flags, style="Title", role="medium"),
                          label(f"{device['key'][:16]}...  added {added}", role="small"), spacing=2)
            parts = [text]
            remove = None
            if listed["root"] and not device["root"]:
                remove = icon_button("delete", lambda d=device: self.remove(d))
                parts.append(row(remove, size_hint_x=None, width=dp(56), spacing=0))
            card = MDCard(row(*parts, padding=dp(8)), style="outlined", size_hint_y=None, padding=dp(4))
            card.bind(minimum_height=card.setter("height"))
            card.height = dp(72)
            card.remove_button = remove
            self.rows[device["name"]] = card
            self.list_box.add_widget(card)

    def pair(self) -> None:
        devices = api_for(self, DeviceApi)
        if devices is None:
            return

        async def run() -> None:
            made = await devices.pair()
            self.error.text = ""
            self.code.text = made["code"]
            png = await devices.pairing_qr(scale=6)
            self.qr.texture = CoreImage(io.BytesIO(png), ext="png").texture
            self.qr.texture.mag_filter = "nearest"
            self.qr.size = (dp(220), dp(220))
            self.pair_state.text = PAIRING_HELP
            if self._watch is not None:
                self._watch.cancel()
            self._watch = self.app.backend.spawn(self._follow(devices), "Pairing")

        self.app.backend.spawn(run(), "Making a pairing code")

    async def _follow(self, devices: DeviceApi) -> None:
        while True:
            state = await devices.pairing()
            if state["state"] != "waiting":
                break
            await asyncio.sleep(PAIRING_POLL)
        self.code.text = ""
        self.qr.texture = None
        self.qr.size = (0, 0)
        if state["state"] == "paired":
            self.pair_state.text = f"Paired {state['device']['name']}."
            self.app.notify(f"Paired {state['device']['name']}")
        else:
            self.pair_state.text = ""
            self.error.text = state["error"] or "Pairing failed."
        await self._load(devices)

    def remove(self, device: dict[str, Any]) -> Any:
        def yes() -> None:
            devices = api_for(self, DeviceApi)
            if devices is None:
                return

            async def run() -> None:
                await devices.remove(device["key"])
                self.app.notify(f"Removed {device['name']}")
                await self._load(devices)

            self.app.backend.spawn(run(), "Removing the device")

        self.dialog = confirm(f"Remove {device['name']}?", REMOVE_TEXT.format(name=device["name"]), "Remove", yes)
        return self.dialog
