"""First start: a display name and a passphrase (strength hint, confirmation), or a recovery text to restore."""

from __future__ import annotations

from typing import Any

from komrade_dht.recovery import RecoveryError, decode_recovery, encode_recovery

from ..widgets import BaseScreen, button, error_label, field, label

try:  # another part of the library; its interface: check(passphrase, name) -> PassphraseCheck(ok, score, hint)
    from komrade_dht.passphrase import check as check_passphrase
except ImportError:  # pragma: no cover (older library)
    check_passphrase = None

SCORE_WORDS = ["very weak", "weak", "fair", "strong", "very strong"]


class WelcomeScreen(BaseScreen):
    restoring = False

    def build(self) -> None:
        self.body.add_widget(label(
            "komrade keeps your messages sealed, on a network of peers with no server in the middle. "
            "Choose a name people will see and a passphrase that protects your keys on this device."))
        self.name_field = field("Display name")
        self.pass_field = field("Passphrase", password=True)
        self.confirm_field = field("Passphrase again", password=True)
        self.strength = label("", role="medium")
        self.recovery_field = field("Recovery text (14 groups of 4 characters)", multiline=False)
        self.error = error_label()
        self.progress = label("", role="medium")
        self.create_button = button("Create my identity", self.submit)
        self.restore_button = button("Restore from a recovery text instead", self.toggle_restore, style="text")
        for widget in (self.name_field, self.pass_field, self.strength, self.confirm_field, self.error, self.progress, self.create_button, self.restore_button):
            self.body.add_widget(widget)
        self.pass_field.bind(text=self._hint)
        self.name_field.bind(text=self._hint)
        for f in (self.name_field, self.pass_field, self.confirm_field, self.recovery_field):
            f.bind(text=self._clear_error)

    def _clear_error(self, *_: Any) -> None:
        self.error.text = ""  # a new try: the last refusal no longer applies

    def toggle_restore(self) -> None:
        self.restoring = not self.restoring
        if self.restoring:
            self.body.add_widget(self.recovery_field, index=self.body.children.index(self.confirm_field))
        else:
            self.body.remove_widget(self.recovery_field)
        self.create_button.text_widget.text = "Restore my identity" if self.restoring else "Create my identity"
        self.restore_button.text_widget.text = ("Create a new identity instead" if self.restoring
                                                else "Restore from a recovery text instead")

    def _hint(self, *_: Any) -> None:
        if not self.pass_field.text:
            self.strength.text = ""
            return
        if check_passphrase is None:
            self.strength.text = "Strength check unavailable in this version of komrade_dht."
            return
        result = check_passphrase(self.pass_field.text, self.name_field.text)
        self.strength.text = f"Strength: {SCORE_WORDS[max(0, min(4, result.score))]}. {result.hint}"

    def problem(self) -> str:
        name, passphrase = self.name_field.text.strip(), self.pass_field.text
        if not name:
            return "Choose a display name (1 to 64 characters)."
        if len(name) > 64:
            return "A display name has at most 64 characters."
        if check_passphrase is not None:
            result = check_passphrase(passphrase, name)
            if not result.ok:
                return f"Choose a stronger passphrase: {result.hint}"
        elif not passphrase:
            return "Choose a passphrase."
        if passphrase != self.confirm_field.text:
            return "The two passphrases differ."
        return ""

    def submit(self) -> None:
        problem = self.problem()
        seed = None
        if not problem and self.restoring:
            try:
                seed = decode_recovery(self.recovery_field.text)
            except RecoveryError as exc:
                problem = str(exc)
        self.error.text = problem
        if problem:
            return
        self.create_button.disabled = True
        self.working(True)
        self.progress.text = "Creating your keys (Argon2id protects them; about a second)..."
        self.app.backend.spawn(self._create(seed), "Creating your identity")

    async def _create(self, seed: bytes | None) -> None:
        passphrase = self.pass_field.text
        try:
            made = await self.app.host.create(self.name_field.text.strip(), passphrase, seed)
            for f in (self.pass_field, self.confirm_field, self.recovery_field):
                f.text = ""
            self.app.backend.recovery_text = "" if seed is not None else encode_recovery(made)
            self.progress.text = "Starting your node and joining the network..."
            await self.app.open_node(passphrase)
        except Exception as exc:
            if self.app.host.has_identity():  # made, but the node did not start: unlocking retries that
                self.app.show("unlock").error.text = f"Your identity was created; starting your node failed: {exc}"
            else:
                self.error.text = f"{exc}"
            raise
        finally:
            self.working(False)
            self.progress.text = ""
            self.create_button.disabled = False
