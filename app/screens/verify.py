"""Verify a contact: both fingerprints side by side, compared in person, then marked verified."""

from __future__ import annotations

from typing import Any

from ..widgets import BaseScreen, button, column, label, row


class VerifyScreen(BaseScreen):
    context: dict[str, Any] = {}

    def build(self) -> None:
        self.explain = label("Meet them (or call them) and read your fingerprints to each other. If every digit "
                             "matches, nobody stands between you.")
        self.mine = label("", style="Title", role="large")
        self.theirs = label("", style="Title", role="large")
        self.state = label("", role="medium")
        self.mine_title = label("Your fingerprint", style="Title", role="small")
        self.theirs_title = label("", style="Title", role="small")
        self.verify_button = button("They match: mark as verified", self.verify)
        self.back_button = button("Back to contacts", lambda: self.app.show("contacts"), style="text")
        self.body.add_widget(self.explain)
        self.body.add_widget(row(column(self.mine_title, self.mine), column(self.theirs_title, self.theirs),
                                 spacing=24))
        for widget in (self.state, row(self.verify_button, self.back_button)):
            self.body.add_widget(widget)
        self.app.backend.bind(contacts=self.refresh)

    def _contact(self) -> Any:
        wanted = self.context.get("contact")
        if wanted is None:
            return None
        return next((c for c in self.app.backend.contacts if c.address == wanted.address), wanted)

    def refresh(self, *_: Any) -> None:
        contact, me = self._contact(), self.app.backend.identity
        if contact is None or me is None:
            return
        group = lambda fp: "\n".join(" ".join(fp.split()[i:i + 3]) for i in (0, 3))  # noqa: E731
        self.header.text = f"Verify {contact.name}"
        self.mine.text = group(me.fingerprint)
        self.theirs_title.text = f"{contact.name}'s fingerprint"
        self.theirs.text = group(contact.fingerprint)
        self.state.text = "Verified." if contact.verified else "Not verified yet."
        self.verify_button.disabled = contact.verified

    def verify(self) -> None:
        contact = self._contact()
        if contact is not None:
            self.app.backend.verify_contact(contact.address)
