"""One conversation: bubbles (sent right, received left, time; sent ones say how many holders accepted them: that
is storage, not delivery), a compose field with the envelope's byte budget, and burn with a confirmation."""

from __future__ import annotations

from typing import Any

from kivy.metrics import dp
from kivymd.uix.boxlayout import MDBoxLayout
from kivymd.uix.card import MDCard

from komrade_dht.social.dm import text_room

from ..backend import peer_fingerprint
from ..threads import conversations, when
from ..widgets import BaseScreen, button, column, confirm, field, icon_button, label, row


def room_left(room: int, text: str) -> int:
    """Bytes still free in one DM envelope that holds ``room`` bytes of text (negative: that many too long)."""
    return room - len(text.encode("utf-8", "surrogatepass"))


class ThreadScreen(BaseScreen):
    context: dict[str, Any] = {}

    def build(self) -> None:
        self.fp_label = label("", role="small")
        self.bubbles = column(spacing=8)
        self.body.add_widget(self.fp_label)
        self.body.add_widget(self.bubbles)
        self.compose = field("Write a message", multiline=True, max_height=dp(120))
        self.budget = label("", role="small")
        self.busy = label("", role="small")
        self.send_button = button("Send", self.send)
        self.footer.add_widget(self.busy)
        self.footer.add_widget(self.compose)
        self.footer.add_widget(row(self.budget, self.send_button))
        self.compose.bind(text=self._budget)
        #: per recipient: its device count and the room for text (asked of the node once per screen)
        self.rooms: dict[str, dict[str, Any]] = {}
        self._asked: set[str] = set()
        b = self.app.backend
        b.bind(messages=self._changed, sent=self._changed, contacts=self._changed, busy=self._busy)

    def _busy(self, *_: Any) -> None:
        self.busy.text = self.app.backend.busy

    def _changed(self, *_: Any) -> None:
        if self.manager is not None and self.manager.current == self.name:
            self.refresh()

    def _budget(self, *_: Any) -> int:
        peer = self.context.get("peer", "")
        room = self.rooms.get(peer)
        if room is None:  # until the node says how many devices the recipient has: one
            me = self.app.backend.identity
            room = {"devices": 1, "text_bytes": text_room(me.name if me else "", me.width if me else 8)}
            if peer and peer not in self._asked:
                self._asked.add(peer)
                self.app.backend.room(peer, lambda got, p=peer: self._got_room(p, got))
        left = room_left(room["text_bytes"], self.compose.text)
        used = len(self.compose.text.encode("utf-8", "surrogatepass"))
        where = "one envelope" if room["devices"] == 1 else f"one envelope to {room['devices']} devices"
        self.budget.text = (f"{used} bytes, {left} left in {where}" if left >= 0
                            else f"{-left} bytes too long for {where}")
        self.send_button.disabled = left < 0 or not self.compose.text.strip()
        return left

    def _got_room(self, peer: str, room: dict[str, Any]) -> None:
        self.rooms[peer] = room
        self._budget()

    def conversation(self) -> Any:
        peer = self.context.get("peer", "")
        fp = peer_fingerprint(peer)
        b = self.app.backend
        return next((c for c in conversations(b.messages, b.sent, b.contacts) if c.fingerprint == fp), None)

    def refresh(self, *_: Any) -> None:
        peer, name = self.context.get("peer", ""), self.context.get("name", "")
        self.header.text = name or "Conversation"
        self.fp_label.text = f"fingerprint {peer_fingerprint(peer)}"
        conv = self.conversation()
        items = conv.items if conv else []
        if conv is not None and conv.request:
            self.fp_label.text += "   (not a contact: a message request)"
        unread = [i.id for i in items if not i.mine and not i.read]
        if unread:
            self.app.backend.mark_read(unread)
        shown = (peer, tuple(i.id for i in items))
        if shown == getattr(self, "_shown", None):
            for item in items:  # the same bubbles: only their counts change, in place (a finger may be on one)
                self.bubble_widgets[item.id].meta.text = self._meta(item)
            self._budget()
            return
        self._shown = shown
        self.bubbles.clear_widgets()
        self.bubble_widgets: dict[str, Any] = {}
        if not items:
            self.bubbles.add_widget(label("No messages yet.", role="medium"))
        for item in items:
            self.bubbles.add_widget(self._bubble(item))
        self._budget()

    def _bubble(self, item: Any) -> Any:
        text = label(item.text)
        meta = label(self._meta(item), role="small")
        parts = [text, meta]
        content = column(*parts, spacing=2)
        burn = None
        if not item.mine:
            burn = icon_button("fire", lambda i=item: self.burn(i.id))
            content = row(content, burn, spacing=0)
        card = MDCard(content, style="filled" if item.mine else "outlined", size_hint=(0.75, None), padding=dp(10))
        card.bind(minimum_height=card.setter("height"))
        card.height = dp(64)
        wrapper = MDBoxLayout(adaptive_height=True)
        if item.mine:
            wrapper.add_widget(MDBoxLayout(size_hint_x=0.25))
        wrapper.add_widget(card)
        card.burn_button, card.meta = burn, meta
        self.bubble_widgets[item.id] = card
        return wrapper

    @staticmethod
    def _meta(item: Any) -> str:
        return when(item.at) + (f"  -  {taken(item.acks)}" if item.mine else "")

    def send(self) -> None:
        text = self.compose.text
        if not text.strip() or self._budget() < 0:
            return
        self.send_button.disabled = True

        def done(sent: Any) -> None:
            self.compose.text = ""
            self.app.notify(f"Sent: {taken(sent.acks)} (not yet read: it waits in the network)")

        task = self.app.backend.send(self.context.get("peer", ""), text, done)
        task.add_done_callback(lambda *_: self._budget())

    def burn(self, message_id: str) -> Any:
        self.dialog = confirm("Burn this message?",
                              "It is deleted on this device and every copy the network holds is deleted too (the "
                              "holders are shown its burn secret). Nobody can read it afterwards, you included.",
                              "Burn", lambda: self.app.backend.burn(message_id))
        return self.dialog


def taken(acks: int) -> str:
    """What an ack count means: nodes that took the envelope (a stem relay or holders), not delivery."""
    return f"taken by {acks} node{'s' if acks != 1 else ''}" if acks else "not yet taken by any node"
