"""Messages: conversations (unread count, last line, time) and, kept apart, message requests from strangers
(accept = add as a contact; delete = burn everywhere)."""

from __future__ import annotations

from typing import Any

from kivy.metrics import dp
from kivymd.uix.card import MDCard

from ..threads import Conversation, conversations, when
from ..widgets import BaseScreen, button, column, confirm, label, row


class ChatsScreen(BaseScreen):
    def build(self) -> None:
        self.list_box = column(spacing=8)
        self.requests_box = column(spacing=8)
        self.new_button = button("New message", lambda: self.app.show("contacts"), style="tonal")
        self.body.add_widget(self.list_box)
        self.body.add_widget(label("Message requests", style="Title", role="medium"))
        self.body.add_widget(label("From people who are not your contacts. Their name is only what they claim; "
                                   "the fingerprint is proven.", role="small"))
        self.body.add_widget(self.requests_box)
        self.footer.add_widget(row(self.new_button))
        b = self.app.backend
        b.bind(messages=self.refresh, sent=self.refresh, contacts=self.refresh)

    def refresh(self, *_: Any) -> None:
        b = self.app.backend
        convs = conversations(b.messages, b.sent, b.contacts)
        shown = tuple((c.fingerprint, c.name, c.request, c.unread, c.last.id) for c in convs)
        if shown == getattr(self, "_shown", None):
            return  # nothing visible changed: keep the widgets
        self._shown = shown
        self.cards: dict[str, Any] = {}
        self.request_cards: dict[str, Any] = {}
        self.list_box.clear_widgets()
        self.requests_box.clear_widgets()
        normal = [c for c in convs if not c.request]
        requests = [c for c in convs if c.request]
        if not normal:
            self.list_box.add_widget(label("No conversations yet: add a contact and write to them.", role="medium"))
        for conv in normal:
            self.list_box.add_widget(self._card(conv))
        if not requests:
            self.requests_box.add_widget(label("None.", role="medium"))
        for conv in requests:
            self.requests_box.add_widget(self._request_card(conv))

    def _summary(self, conv: Conversation) -> Any:
        last = conv.last
        unread = f"   {conv.unread} new" if conv.unread else ""
        prefix = "You: " if last.mine else ""
        line = (prefix + last.text.replace("\n", " "))[:80]
        return column(label(f"{conv.name}{unread}", style="Title", role="medium"),
                      label(f"{when(last.at)}  {line}", role="medium"), spacing=2)

    def _card(self, conv: Conversation) -> Any:
        card = MDCard(self._summary(conv), style="outlined", size_hint_y=None, height=dp(72), padding=dp(10))
        card.bind(on_release=lambda *_: self.app.show("thread", peer=conv.address, name=conv.name))
        self.cards[conv.name] = card
        return card

    def _request_card(self, conv: Conversation) -> Any:
        accept = button("Accept", lambda: self.app.backend.accept_request(conv.address, conv.name), style="tonal")
        delete = button("Delete", lambda: self.delete(conv), style="text")
        open_ = button("Read", lambda: self.app.show("thread", peer=conv.address, name=conv.name), style="text")
        body = column(self._summary(conv), label(f"fingerprint {conv.fingerprint}", role="small"),
                      row(open_, accept, delete), spacing=4)
        card = MDCard(body, style="outlined", size_hint_y=None, padding=dp(10))
        card.bind(minimum_height=card.setter("height"))
        card.height = dp(140)
        card.accept, card.delete = accept, delete
        self.request_cards[conv.name] = card
        return card

    def delete(self, conv: Conversation) -> Any:
        ids = [i.id for i in conv.items if not i.mine]
        self.dialog = confirm("Delete this request?",
                              f"{len(ids)} message(s) from {conv.name} are deleted here and every network copy is "
                              "deleted too (burned). This cannot be undone.",
                              "Delete", lambda: self.app.backend.delete_request(ids))
        return self.dialog
