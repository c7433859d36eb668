"""Small building blocks shared by screens (labels, buttons, fields, dialogs), so each screen stays short."""

from __future__ import annotations

from typing import Any, Callable

from kivy.metrics import dp
from kivymd.uix.boxlayout import MDBoxLayout
from kivymd.uix.button import MDButton, MDButtonText, MDIconButton
from kivymd.uix.dialog import (
    MDDialog,
    MDDialogButtonContainer,
    MDDialogContentContainer,
    MDDialogHeadlineText,
    MDDialogSupportingText,
)
from kivymd.uix.label import MDLabel
from kivymd.uix.progressindicator import MDLinearProgressIndicator
from kivymd.uix.screen import MDScreen
from kivymd.uix.scrollview import MDScrollView
from kivymd.uix.textfield import MDTextField, MDTextFieldHintText


def _collapse_when_empty(lab: MDLabel, text: str) -> None:
    if not text:
        lab.height = 0  # an empty adaptive label would otherwise keep its default 100 px


def label(text: str = "", style: str = "Body", role: str = "large", **kw: Any) -> MDLabel:
    kw.setdefault("adaptive_height", True)
    lab = MDLabel(text=text, font_style=style, role=role, **kw)
    lab.bind(text=_collapse_when_empty)
    _collapse_when_empty(lab, text)
    return lab


def error_label() -> MDLabel:
    lab = label("", role="medium")
    lab.theme_text_color = "Custom"
    lab.text_color = (0.72, 0.11, 0.11, 1)
    return lab


def button(text: str, on_release: Callable[[], Any], style: str = "filled", **kw: Any) -> MDButton:
    text_widget = MDButtonText(text=text)
    btn = MDButton(text_widget, style=style, **kw)
    btn.bind(on_release=lambda *_: on_release())
    btn.text_widget = text_widget
    return btn


def icon_button(icon: str, on_release: Callable[[], Any], **kw: Any) -> MDIconButton:
    btn = MDIconButton(icon=icon, **kw)
    btn.bind(on_release=lambda *_: on_release())
    return btn


def field(hint: str, password: bool = False, multiline: bool = False, **kw: Any) -> MDTextField:
    f = MDTextField(MDTextFieldHintText(text=hint), password=password, multiline=multiline, mode="outlined", **kw)
    return f


def row(*children: Any, spacing: float = 8, **kw: Any) -> MDBoxLayout:
    kw.setdefault("adaptive_height", True)
    box = MDBoxLayout(orientation="horizontal", spacing=dp(spacing), **kw)
    for child in children:
        box.add_widget(child)
    return box


def column(*children: Any, spacing: float = 12, padding: float = 0, **kw: Any) -> MDBoxLayout:
    kw.setdefault("adaptive_height", True)
    box = MDBoxLayout(orientation="vertical", spacing=dp(spacing), padding=dp(padding), **kw)
    for child in children:
        box.add_widget(child)
    return box


class BaseScreen(MDScreen):
    """A screen with a title and a scrolling column (``self.body``). ``app`` is the running KomradeApp."""

    title = ""

    def __init__(self, app: Any, title: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.app = app
        self.title = title
        self.md_bg_color = app.theme_cls.surfaceColor
        outer = MDBoxLayout(orientation="vertical", padding=dp(20), spacing=dp(12))
        self.header = label(title, style="Headline", role="small")
        outer.add_widget(self.header)
        # Shown while long work runs (key stretching, proof of work, a sync, a burn): the window keeps drawing.
        self.progress_bar = MDLinearProgressIndicator(type="indeterminate", size_hint_y=None, height=dp(4),
                                                      opacity=0)
        outer.add_widget(self.progress_bar)
        scroll = MDScrollView(do_scroll_x=False)
        self.body = column(spacing=12, padding=4)
        scroll.add_widget(self.body)
        outer.add_widget(scroll)
        self.footer = MDBoxLayout(orientation="vertical", adaptive_height=True, spacing=dp(8))
        outer.add_widget(self.footer)
        self.add_widget(outer)
        self.build()

    def build(self) -> None:
        """Fill ``self.body`` (and ``self.footer``)."""

    def working(self, busy: bool) -> None:
        """Show or hide the progress bar under the title."""
        if busy and not self.progress_bar.opacity:
            self.progress_bar.opacity = 1
            self.progress_bar.start()
        elif not busy and self.progress_bar.opacity:
            self.progress_bar.stop()
            self.progress_bar.opacity = 0

    def on_pre_enter(self, *args: Any) -> None:
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Redraw from ``self.app.backend``; called on entry and when the backend's properties change."""


def confirm(title: str, text: str, action: str, on_yes: Callable[[], Any], content: Any = None) -> MDDialog:
    """A modal dialog with Cancel and ``action``; returns it opened (tests press its buttons)."""
    dialog = MDDialog(MDDialogHeadlineText(text=title), MDDialogSupportingText(text=text))
    if content is not None:
        dialog.add_widget(MDDialogContentContainer(content, orientation="vertical"))
    cancel = button("Cancel", lambda: dialog.dismiss(), style="text")

    def yes() -> None:
        dialog.dismiss()
        on_yes()

    ok = button(action, yes, style="text")
    dialog.add_widget(MDDialogButtonContainer(cancel, ok, spacing=dp(8)))
    dialog.cancel_button, dialog.ok_button = cancel, ok
    dialog.open()
    return dialog


__all__ = ["BaseScreen", "button", "column", "confirm", "error_label", "field", "icon_button", "label", "row"]
