"""Small building blocks shared by screens (labels, buttons, fields, dialogs), so each screen stays short."""

from __future__ import annotations

import time
from io import BytesIO
from typing import Any, Awaitable, Callable, TypeVar

from kivy.core.image import Image as CoreImage
from kivy.metrics import dp
from kivy.uix.image import Image
from kivymd.uix.boxlayout import MDBoxLayout
from kivymd.uix.button import MDButton, MDButtonIcon, MDButtonText, MDIconButton
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
from kivymd.uix.selectioncontrol import MDCheckbox
from kivymd.uix.textfield import MDTextField, MDTextFieldHintText


T = TypeVar("T")


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


def button(text: str, on_release: Callable[[], Any], style: str = "filled", icon: str = "", **kw: Any) -> MDButton:
    text_widget = MDButtonText(text=text)
    icon_widget = MDButtonIcon(icon=icon) if icon else None
    btn = MDButton(*([icon_widget] if icon_widget else []), text_widget, style=style, **kw)
    btn.bind(on_release=lambda *_: on_release())
    btn.text_widget, btn.icon_widget = text_widget, icon_widget
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


def when(ts: int) -> str:
    """A moment as a person reads it, in local time."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def choices(names: tuple[str, ...], on_pick: Callable[[str], Any],
            titles: dict[str, str] | None = None) -> tuple[MDBoxLayout, dict[str, MDButton]]:
    """A row of outlined buttons, one per name (``titles`` says what each shows); ``mark`` fills the chosen one."""
    titles = titles or {}
    buttons = {n: button(titles.get(n, n.capitalize()), lambda n=n: on_pick(n), style="outlined") for n in names}
    return row(*buttons.values()), buttons


def mark(buttons: dict[str, MDButton], chosen: str | None) -> None:
    """The chosen one filled, the others outlined (the label's colour set too: KivyMD keeps the first style's)."""
    from kivymd.app import MDApp

    theme = MDApp.get_running_app().theme_cls
    for name, btn in buttons.items():
        btn.style = "filled" if name == chosen else "outlined"
        colour = theme.onPrimaryColor if name == chosen else theme.primaryColor
        btn.text_widget.theme_text_color = "Custom"
        btn.text_widget.text_color = colour
        if btn.icon_widget is not None:
            btn.icon_widget.theme_icon_color = "Custom"
            btn.icon_widget.icon_color = colour


class VoteBar(MDBoxLayout):
    """Up and down buttons showing their counts, your choice filled. ``on_vote(choice)`` gets "up", "down", or
    "none" when you press your current choice again (withdrawing it); ``show`` puts the new tally."""

    def __init__(self, on_vote: Callable[[str], Any], up: int = 0, down: int = 0, mine: str | None = None,
                 **kw: Any) -> None:
        super().__init__(orientation="horizontal", adaptive_size=True, spacing=dp(8), **kw)
        self.on_vote = on_vote
        self.buttons = {"up": button("0", lambda: self.press("up"), style="outlined", icon="thumb-up-outline"),
                        "down": button("0", lambda: self.press("down"), style="outlined", icon="thumb-down-outline")}
        for btn in self.buttons.values():
            self.add_widget(btn)
        self.up = self.down = 0
        self.mine: str | None = None
        self.show(up, down, mine)

    def show(self, up: int, down: int, mine: str | None) -> None:
        self.up, self.down, self.mine = up, down, (None if mine in (None, "none") else mine)
        self.buttons["up"].text_widget.text = str(up)
        self.buttons["down"].text_widget.text = str(down)
        mark(self.buttons, self.mine)

    def busy(self, busy: bool) -> None:
        for btn in self.buttons.values():
            btn.disabled = busy

    def press(self, choice: str) -> None:
        self.on_vote("none" if choice == self.mine else choice)


def show_if(slot: Any, widget: Any, shown: bool) -> None:
    """Put ``widget`` in ``slot`` when ``shown``, take it out otherwise (no blank space for hidden fields)."""
    if shown and widget.parent is None:
        slot.add_widget(widget)
    elif not shown and widget.parent is slot:
        slot.remove_widget(widget)


def position(lat_field: Any, lon_field: Any) -> tuple[float, float] | None:
    """The position typed in two fields, or None if both are empty; ValueError with a reason otherwise."""
    lat, lon = lat_field.text.strip(), lon_field.text.strip()
    if not lat and not lon:
        return None
    try:
        return float(lat), float(lon)
    except ValueError:
        raise ValueError("latitude and longitude are decimal degrees, e.g. 52.52 and 13.40") from None


async def inline(error: MDLabel, call: Awaitable[Any]) -> Any:
    """Await ``call``; a failure is also written in ``error`` (under the form) before the backend's snackbar."""
    from .backend import describe

    try:
        result = await call
    except Exception as exc:
        error.text = describe(exc)
        raise
    error.text = ""
    return result


def picture(screen: Any, fetch: Callable[[], Awaitable[bytes]], width: float, height: float,
            error: MDLabel | None = None) -> Image:
    """An Image showing the JPEG that ``fetch()`` gets from the node (which keeps pictures encrypted with the
    account's data: the app never reads a decrypted file). A failure goes to ``error`` if given, and the snackbar."""
    widget = Image(size_hint=(None, None), size=(dp(width), dp(height)), fit_mode="contain")

    async def run() -> None:
        data = await (inline(error, fetch()) if error is not None else fetch())
        widget.texture = CoreImage(BytesIO(data), ext="jpg").texture

    screen.app.backend.spawn(run(), "Loading a picture")
    return widget


def api_for(screen: Any, client: Callable[[Any], T]) -> T | None:
    """``client(api)`` (e.g. SocialApi) over the backend's API, or None after saying the node does not answer."""
    api = screen.app.backend.api
    if api is None:
        screen.app.notify("Your node does not answer yet.")
        return None
    return client(api)


class ContactPicker(MDBoxLayout):
    """A checkbox per contact (``people``: objects with ``name`` and ``address``); ``chosen()`` is the ticked
    addresses, in the order shown."""

    def __init__(self, people: list[Any], empty: str = "No contacts yet: add them on the Contacts screen.",
                 **kw: Any) -> None:
        super().__init__(orientation="vertical", adaptive_height=True, spacing=dp(2), **kw)
        self.boxes: dict[str, MDCheckbox] = {}
        self.set_people(people, empty)

    def set_people(self, people: list[Any], empty: str = "No contacts yet: add them on the Contacts screen.") -> None:
        ticked = set(self.chosen())
        self.clear_widgets()
        self.boxes = {}
        if not people:
            self.add_widget(label(empty, role="medium"))
        for person in people:
            box = MDCheckbox(size_hint=(None, None), size=(dp(40), dp(40)), active=person.address in ticked)
            self.boxes[person.name] = box
            box.address = person.address
            self.add_widget(row(box, label(person.name, role="medium", pos_hint={"center_y": 0.5}), spacing=4))

    def chosen(self) -> list[str]:
        return [box.address for box in self.boxes.values() if box.active]


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
        self.body = column(spacing=12)
        self.body.padding = [dp(4), dp(10), dp(4), dp(4)]  # room above the first field for its floating label
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


__all__ = ["BaseScreen", "ContactPicker", "VoteBar", "api_for", "button", "choices", "column", "confirm",
           "error_label", "field", "icon_button", "inline", "label", "mark", "position", "row", "show_if", "when"]
