"""Later starts: the passphrase unlocks the identity (wrong one: say so, try again; damaged file: what to do)."""

from __future__ import annotations

from ..widgets import BaseScreen, button, error_label, field, label


class UnlockScreen(BaseScreen):
    def build(self) -> None:
        self.intro = label("")
        self.pass_field = field("Passphrase", password=True)
        self.pass_field.bind(on_text_validate=lambda *_: self.submit())
        self.error = error_label()
        self.progress = label("", role="medium")
        self.unlock_button = button("Unlock", self.submit)
        for widget in (self.intro, self.pass_field, self.error, self.progress, self.unlock_button):
            self.body.add_widget(widget)

    def refresh(self, *_: object) -> None:
        self.intro.text = f"Your identity is in {self.app.host.data_dir}. Enter its passphrase to start your node."

    def submit(self) -> None:
        if not self.pass_field.text:
            self.error.text = "Enter your passphrase."
            return
        self.error.text = ""
        self.unlock_button.disabled = True
        self.working(True)
        self.progress.text = "Opening your keystore and starting your node..."
        self.app.backend.spawn(self._unlock(self.pass_field.text), "Unlocking")

    async def _unlock(self, passphrase: str) -> None:
        try:
            self.error.text = await self.app.unlock(passphrase)
        except Exception as exc:
            self.error.text = str(exc)
            raise
        finally:
            self.working(False)
            self.progress.text = ""
            self.unlock_button.disabled = False
            self.pass_field.text = ""
