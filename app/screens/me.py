"""Your identity: address, its QR code and your fingerprint, with copy buttons; the recovery text once."""

from __future__ import annotations

import io
from typing import Any

from kivy.core.clipboard import Clipboard
from kivy.core.image import Image as CoreImage
from kivy.metrics import dp
from kivy.uix.image import Image

from ..widgets import BaseScreen, button, column, label, row


class MeScreen(BaseScreen):
    def build(self) -> None:
        self.name_label = label("", style="Title", role="large")
        self.address = label("", role="medium")
        self.qr = Image(size_hint=(None, None), size=(dp(220), dp(220)), fit_mode="contain")
        self.fingerprint = label("", style="Title", role="medium")
        self.copy_address = button("Copy address", lambda: self.copy(self.address.text, "Address"), style="outlined")
        self.copy_fp = button("Copy fingerprint", lambda: self.copy(self.fingerprint.text, "Fingerprint"),
                              style="outlined")
        self.recovery_box = column(spacing=6)
        self.devices_button = button("Your devices", lambda: self.app.show("devices"), style="tonal")
        for widget in (self.name_label, label("Your address (give it to people who may write to you):", role="medium"),
                       self.address, self.qr, label("Your fingerprint (compare it in person to verify):", role="medium"),
                       self.fingerprint, row(self.copy_address, self.copy_fp), row(self.devices_button),
                       self.recovery_box):
            self.body.add_widget(widget)
        self.app.backend.bind(identity=self.refresh, qr_png=self.refresh, recovery_text=self.refresh)

    def refresh(self, *_: Any) -> None:
        me = self.app.backend.identity
        if me is None:
            return
        self.name_label.text = me.name
        self.address.text = me.address
        self.fingerprint.text = me.fingerprint
        if self.app.backend.qr_png:
            self.qr.texture = CoreImage(io.BytesIO(self.app.backend.qr_png), ext="png").texture
            self.qr.texture.mag_filter = "nearest"
        self.recovery_box.clear_widgets()
        text = self.app.backend.recovery_text
        if text:
            self.recovery_box.add_widget(label("Your recovery text: write it on paper and keep it safe. With it "
                                               "anyone can become you; without it a lost device means a lost "
                                               "identity. It is shown only now.", role="medium"))
            self.recovery_label = label(text, style="Title", role="small")
            self.recovery_box.add_widget(self.recovery_label)
            self.recovery_box.add_widget(button("I wrote it down", self.hide_recovery, style="tonal"))

    def hide_recovery(self) -> None:
        self.app.backend.recovery_text = ""

    def copy(self, text: str, what: str) -> None:
        try:
            Clipboard.copy(text)
        except Exception:  # no clipboard provider (headless): say so rather than fail
            self.app.notify(f"{what}: no clipboard here; select the text instead")
            return
        self.app.notify(f"{what} copied")
