"""Contacts: add by pasting an address (a checksum error shows inline, nothing is sent) or by opening an image of
a QR code; list, rename, remove, verify, write."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kivy.metrics import dp
from kivymd.uix.card import MDCard

from komrade_dht.address import decode_address
from komrade_dht.errors import AddressError

from ..widgets import BaseScreen, button, column, confirm, error_label, field, icon_button, label, row


def address_problem(text: str) -> str:
    """Why ``text`` is not an address ('' if it is one): checked here, before anything reaches the node."""
    text = text.strip()
    if not text:
        return ""
    try:
        decode_address(text)
    except AddressError as exc:
        return f"Not a komrade address: {exc}"
    return ""


def decode_qr_image(path: str) -> str:
    """The komrade address in a QR code in the image at ``path`` (zxing-cpp); ValueError saying what is wrong."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(Path(path).expanduser()) as image:
            image.load()
            results = zxingcpp.read_barcodes(image.convert("RGB"))
    except FileNotFoundError:
        raise ValueError(f"no file {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read {path} as an image: {exc}") from None
    texts = [r.text.strip() for r in results if r.text]
    addresses = [t for t in texts if t.lower().startswith("komrade1")]
    if not texts:
        raise ValueError("no QR code found in that image")
    if not addresses:
        raise ValueError("the QR code in that image is not a komrade address")
    return addresses[0]


class ContactsScreen(BaseScreen):
    def build(self) -> None:
        self.address_field = field("Paste an address (komrade1...)")
        self.address_error = error_label()
        self.name_field = field("Their name")
        self.add_button = button("Add contact", self.add)
        self.image_field = field("Or the path of an image of their QR code")
        self.image_error = error_label()
        self.decode_button = button("Read QR image", self.read_qr, style="outlined")
        self.browse_button = button("Browse...", self.browse, style="text")
        self.list_box = column(spacing=8)
        for widget in (self.address_field, self.address_error, self.name_field, row(self.add_button),
                       self.image_field, self.image_error, row(self.decode_button, self.browse_button),
                       label("Your contacts", style="Title", role="medium"), self.list_box):
            self.body.add_widget(widget)
        self.address_field.bind(text=self._check_address)
        self.app.backend.bind(contacts=self.refresh)

    def _check_address(self, *_: Any) -> None:
        self.address_error.text = address_problem(self.address_field.text)

    def add(self) -> None:
        address = self.address_field.text.strip()
        problem = address_problem(address) or ("" if address else "Paste their address first.")
        if not problem and not self.name_field.text.strip():
            problem = "Give them a name (only you see it)."
        self.address_error.text = problem
        if problem:
            return

        def done(_contact: Any) -> None:
            self.address_field.text = self.name_field.text = ""

        self.app.backend.add_contact(address, self.name_field.text.strip(), done)

    def read_qr(self) -> None:
        path = self.image_field.text.strip()
        if not path:
            self.image_error.text = "Give the path of an image file (PNG, JPEG...)."
            return
        self.image_error.text = ""
        self.app.backend.spawn(self._read_qr(path), "Reading the QR image")

    async def _read_qr(self, path: str) -> None:
        try:
            address = await asyncio.to_thread(decode_qr_image, path)
        except ValueError as exc:
            self.image_error.text = str(exc)
            return
        self.address_field.text = address  # checked inline like a pasted one; the person names and adds it
        self.image_error.text = "Read an address from the image: give them a name and add them."

    def browse(self) -> None:
        from kivymd.uix.filemanager import MDFileManager

        def pick(path: str) -> None:
            manager.close()
            self.image_field.text = path
            self.read_qr()

        manager = MDFileManager(select_path=pick, exit_manager=lambda *_: manager.close(),
                                ext=[".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"])
        manager.show(str(Path.home()))

    def refresh(self, *_: Any) -> None:
        shown = tuple(self.app.backend.contacts)
        if shown == getattr(self, "_shown", None):
            return  # nothing visible changed: keep the widgets
        self._shown = shown
        self.list_box.clear_widgets()
        self.rows: dict[str, Any] = {}
        contacts = self.app.backend.contacts
        if not contacts:
            self.list_box.add_widget(label("No contacts yet.", role="medium"))
        for contact in contacts:
            mark = "verified" if contact.verified else "not verified"
            text = column(label(contact.name, style="Title", role="medium"),
                          label(f"{contact.fingerprint}  ({mark})", role="small"), spacing=2)
            buttons = {
                "message": icon_button("message-text",
                                       lambda c=contact: self.app.show("thread", peer=c.address, name=c.name)),
                "rename": icon_button("pencil", lambda c=contact: self.rename(c)),
                "verify": icon_button("shield-check", lambda c=contact: self.app.show("verify", contact=c)),
                "remove": icon_button("delete", lambda c=contact: self.remove(c)),
            }
            actions = row(*buttons.values(), size_hint_x=None, width=dp(200), spacing=0)
            card = MDCard(row(text, actions, padding=dp(8)), style="outlined", size_hint_y=None, padding=dp(4))
            card.bind(minimum_height=card.setter("height"))
            card.height = dp(72)
            card.buttons = buttons
            self.rows[contact.name] = card
            self.list_box.add_widget(card)

    def rename(self, contact: Any) -> Any:
        new = field("New name", text=contact.name)
        dialog = confirm("Rename contact", f"Only you see this name. Their fingerprint stays {contact.fingerprint}.",
                         "Rename", lambda: self.app.backend.rename_contact(contact.address, new.text), content=new)
        dialog.name_field = new
        self.dialog = dialog
        return dialog

    def remove(self, contact: Any) -> Any:
        self.dialog = confirm("Remove contact", f"Forget {contact.name}? Messages from them will show as requests.",
                              "Remove", lambda: self.app.backend.remove_contact(contact.address))
        return self.dialog
