"""Events (issue 11): the events you host and your invitations, an event's detail (answer it; as its host: who
answered what or the counts, edit, cancel, invite), and the form that creates one (anonymous host, anonymous
answers, a position published only as the centre of a cell).

Every call goes through the local API (``komrade_dht.api.organize_client.OrganizeApi``) as a task owned by the
backend; a failure becomes a snackbar and an inline error, never an exception in the window.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from kivy.metrics import dp
from kivymd.uix.card import MDCard
from kivymd.uix.selectioncontrol import MDSwitch

from komrade_dht.api.organize_client import OrganizeApi

from ..widgets import (BaseScreen, ContactPicker, api_for, button, choices, column, confirm, error_label, field, inline,
                       label, mark, picture, position, row, show_if, when)

ANSWERS = ("going", "maybe", "not-going")
ANSWER_TITLES = {"going": "Going", "maybe": "Maybe", "not-going": "Not going"}


def parse_time(text: str, what: str) -> int:
    """A moment typed as ``2026-12-01 18:00`` (local time); ValueError saying what is expected."""
    text = text.strip()
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        raise ValueError(f"{what}: a date and time like 2026-12-01 18:00, not {text!r}") from None


def _state(ev: dict[str, Any]) -> str:
    """What an invitation's line says about it: cancelled, changed since you opened it, new, or your answer (the
    node keeps which version you last opened, encrypted with your data, so this survives a restart)."""
    if ev.get("cancelled"):
        return "cancelled"
    if ev.get("unseen") == "new":
        return "new" + (f", you answered {ANSWER_TITLES.get(ev['my_answer'], ev['my_answer'])}"
                        if ev.get("my_answer") else "")
    if ev.get("unseen") == "changed":
        return "changed since you looked"
    if ev.get("my_answer"):
        return f"answered: {ANSWER_TITLES.get(ev['my_answer'], ev['my_answer'])}"
    return "not answered yet"


def _host(ev: dict[str, Any]) -> str:
    if ev.get("hosting"):
        return "you" + (" (anonymously)" if ev.get("anonymous_host") else "")
    if ev.get("anonymous_host"):
        return "anonymous"
    fp = ev.get("host_fingerprint")
    return f"{ev.get('host') or 'someone'}" + (f"  [{fp}]" if fp else "")


def _span(ev: dict[str, Any]) -> str:
    return f"{when(ev['starts_at'])} to {when(ev['ends_at'])}" + (f", {ev['place']}" if ev.get("place") else "")


class EventsScreen(BaseScreen):
    """Events you host and invitations (new, answered, changed, cancelled); pushed invitations refresh it."""

    def build(self) -> None:
        self.new_button = button("New event", lambda: self.app.show("new_event"), icon="calendar-plus")
        self.error = error_label()
        self.hosted_box, self.invited_box = column(spacing=8), column(spacing=8)
        self.cards: dict[str, Any] = {}
        for widget in (row(self.new_button), self.error, label("You host", style="Title", role="medium"),
                       self.hosted_box, label("Invitations", style="Title", role="medium"), self.invited_box):
            self.body.add_widget(widget)
        self.app.backend.bind(invitation=lambda *_: self.refresh())

    def refresh(self, *_: Any) -> None:
        organize = self.app.backend.api and OrganizeApi(self.app.backend.api)
        if not organize:
            return

        async def run() -> None:
            self.show(await inline(self.error, organize.events()))

        self.app.backend.spawn(run(), "Loading events")

    def show(self, found: dict[str, list[dict[str, Any]]]) -> None:
        self.cards = {}
        for box, events, empty in ((self.hosted_box, found["hosted"], "You host no events."),
                                   (self.invited_box, found["invitations"], "No invitations.")):
            box.clear_widgets()
            if not events:
                box.add_widget(label(empty, role="medium"))
            for ev in sorted(events, key=lambda e: e["starts_at"]):
                box.add_widget(self._card(ev))

    def _card(self, ev: dict[str, Any]) -> Any:
        state = ("cancelled" if ev.get("cancelled") else "hosting") if ev.get("hosting") else _state(ev)
        title = label(ev["title"], style="Title", role="small")
        parts = [title, label(_span(ev), role="medium"), label(f"host: {_host(ev)}  ·  {state}", role="small")]
        card = MDCard(column(*parts, spacing=2), style="outlined", size_hint_y=None, padding=dp(10),
                      on_release=lambda *_: self.open(ev))
        card.bind(minimum_height=card.setter("height"))
        card.summary = state
        self.cards[ev["id"]] = card
        return card

    def open(self, ev: dict[str, Any]) -> None:
        self.app.show("event", event_id=ev["id"])  # showing it there marks this version seen


class EventScreen(BaseScreen):
    """One event: what, when, where; an invitee answers; the host sees the answers, edits, cancels, invites."""

    context: dict[str, Any] = {}

    def build(self) -> None:
        self.event: dict[str, Any] | None = None
        self.info = column(spacing=4)
        self.error = error_label()
        answers, self.answer_buttons = choices(ANSWERS, self.answer, ANSWER_TITLES)
        self.answer_box = column(label("Your answer (only the host can read it)", style="Title", role="small"),
                                 answers, spacing=4)
        self.answers_list = column(spacing=2)
        self.invitees_list = column(spacing=2)
        self.edit_button = button("Edit", self.toggle_edit, style="outlined", icon="pencil")
        self.cancel_button = button("Cancel the event", self.ask_cancel, style="outlined", icon="cancel")
        self.title_field, self.place_field = field("Title"), field("Place")
        self.start_field, self.end_field = field("Starts (2026-12-01 18:00)"), field("Ends")
        self.description_field = field("Description", multiline=True)
        self.save_button = button("Save changes", self.save)
        self.edit_box = column(self.title_field, row(self.start_field, self.end_field), self.place_field,
                               self.description_field, self.save_button, spacing=6)
        self.edit_slot = column(spacing=0)
        self.invite_picker = ContactPicker([])
        self.invite_button = button("Invite", self.invite, style="tonal", icon="email-plus")
        self.invite_box = column(label("Invite contacts", style="Title", role="small"), self.invite_picker,
                                 self.invite_button, spacing=6)
        self.invite_slot = column(spacing=0)
        self.host_box = column(label("Answers", style="Title", role="small"), self.answers_list,
                               label("Invited", style="Title", role="small"), self.invitees_list,
                               row(self.edit_button, self.cancel_button), self.edit_slot, self.invite_slot,
                               spacing=6)
        self.role_slot = column(spacing=0)
        for widget in (self.info, self.error, self.role_slot):
            self.body.add_widget(widget)
        self.refresh_button = button("Refresh", self.refresh, style="text", icon="refresh")
        self.footer.add_widget(row(button("Back to events", lambda: self.app.show("events"), style="text"),
                                   self.refresh_button))
        self.app.backend.bind(invitation=self._pushed)

    def _pushed(self, _backend: Any, ev: dict[str, Any]) -> None:
        if self.event is not None and ev.get("id") == self.event["id"] and self.manager and \
                self.manager.current == self.name:
            self.refresh()

    def refresh(self, *_: Any) -> None:
        organize = api_for(self, OrganizeApi)
        event_id = self.context.get("event_id")
        if organize is None or not event_id:
            return

        async def run() -> None:
            self.working(True)
            try:
                self.show(await inline(self.error, organize.refresh_event(event_id)))  # the event after the pull
            finally:
                self.working(False)

        self.app.backend.spawn(run(), "Loading the event")

    def show(self, ev: dict[str, Any]) -> None:
        if ev == self.event:
            return  # nothing new: keep the buttons where a finger may be
        if self.event is None or self.event["id"] != ev["id"]:
            show_if(self.edit_slot, self.edit_box, False)
        self.event = ev
        self.header.text = ev["title"] + ("  (cancelled)" if ev.get("cancelled") else "")
        self.info.clear_widgets()
        self.info.add_widget(label(_span(ev), style="Title", role="small"))
        self.info.add_widget(label(f"host: {_host(ev)}", role="medium"))
        if ev.get("position"):
            at = ev["position"]
            self.info.add_widget(label(f"near {at['lat']:.4f}, {at['lon']:.4f} (the centre of a "
                                       f"{at['precision_km']:g} km cell)", role="medium"))
        if ev.get("description"):
            self.info.add_widget(label(ev["description"], role="medium"))
        organize = api_for(self, OrganizeApi) if ev.get("has_image") else None
        if organize is not None:  # fetched whole through the node, kept there encrypted
            self.picture = picture(self, lambda: organize.picture(ev["id"]), 320, 220, self.error)
            self.info.add_widget(self.picture)
        if ev.get("cancelled"):
            self.info.add_widget(label("The host cancelled this event.", style="Title", role="small"))
        hosting = bool(ev.get("hosting"))
        show_if(self.role_slot, self.answer_box, not hosting and not ev.get("cancelled"))
        show_if(self.role_slot, self.host_box, hosting)
        if hosting:
            self._show_answers(ev)
            self._show_invitees(ev)
            for widget in (self.edit_button, self.cancel_button, self.invite_button, self.save_button):
                widget.disabled = bool(ev.get("cancelled"))
            # anonymous answers: the ring of the answers is the list invited at creation, so no one joins later
            show_if(self.invite_slot, self.invite_box, not ev.get("anonymous_answers"))
            self.invite_picker.set_people(self.app.backend.contacts)
        else:
            mark(self.answer_buttons, ev.get("my_answer"))

    def _show_answers(self, ev: dict[str, Any]) -> None:
        self.answers_list.clear_widgets()
        counts, given = ev.get("counts") or {}, ev.get("answers")
        tally = ", ".join(f"{counts.get(a, 0)} {ANSWER_TITLES[a].lower()}" for a in ANSWERS)
        if given is None:
            self.answers_list.add_widget(label(f"Anonymous answers (everyone was invited when it was created): "
                                               f"{tally}", role="medium"))
            return
        self.answers_list.add_widget(label(tally if given else "No answers yet.", role="medium"))
        for a in given:
            who, fp = a.get("who") or "someone", a.get("fingerprint")
            self.answers_list.add_widget(label(
                f"{ANSWER_TITLES.get(a['answer'], a['answer'])}: {who}" + (f"  [{fp}]" if fp else ""),
                role="medium"))

    def _show_invitees(self, ev: dict[str, Any]) -> None:
        """Whom you invited; with their answer unless answers are anonymous (then nobody's answer is known)."""
        self.invitees_list.clear_widgets()
        people = ev.get("invitees") or []
        if not people:
            self.invitees_list.add_widget(label("Nobody yet: invite contacts below.", role="medium"))
        anonymous = bool(ev.get("anonymous_answers"))
        for i in people:
            who = i.get("name") or "not a contact"
            state = "" if anonymous else f"  ·  {ANSWER_TITLES.get(i['answer'], i['answer']) if i.get('answer') else 'no answer yet'}"
            self.invitees_list.add_widget(label(f"{who}  [{i['fingerprint']}]{state}", role="medium"))

    def answer(self, answer: str) -> None:
        organize = api_for(self, OrganizeApi)
        if organize is None or self.event is None:
            return
        event_id = self.event["id"]

        async def run() -> None:
            for btn in self.answer_buttons.values():
                btn.disabled = True
            try:
                answered = await inline(self.error, organize.answer(event_id, answer))
            finally:
                for btn in self.answer_buttons.values():
                    btn.disabled = False
            self.show(answered)
            self.app.notify(f"Answered: {ANSWER_TITLES[answer]}")

        self.app.backend.spawn(run(), "Answering")

    def toggle_edit(self) -> None:
        ev = self.event
        if ev is None:
            return
        opening = self.edit_box.parent is None
        if opening:
            self.title_field.text, self.place_field.text = ev["title"], ev.get("place") or ""
            self.start_field.text = datetime.fromtimestamp(ev["starts_at"]).strftime("%Y-%m-%d %H:%M")
            self.end_field.text = datetime.fromtimestamp(ev["ends_at"]).strftime("%Y-%m-%d %H:%M")
            self.description_field.text = ev.get("description") or ""
        show_if(self.edit_slot, self.edit_box, opening)

    def save(self) -> None:
        organize = api_for(self, OrganizeApi)
        ev = self.event
        if organize is None or ev is None:
            return
        try:
            changes: dict[str, Any] = {"title": self.title_field.text.strip(), "place": self.place_field.text.strip(),
                                       "description": self.description_field.text.strip(),
                                       "starts_at": parse_time(self.start_field.text, "Starts"),
                                       "ends_at": parse_time(self.end_field.text, "Ends")}
        except ValueError as exc:
            self.error.text = str(exc)
            return
        changes = {k: v for k, v in changes.items() if v != ev.get(k)}
        if not changes:
            self.error.text = "Nothing changed."
            return

        async def run() -> None:
            self.save_button.disabled = True
            try:
                await inline(self.error, organize.edit_event(ev["id"], **changes))
            finally:
                self.save_button.disabled = False
            show_if(self.edit_slot, self.edit_box, False)
            self.show(await organize.event(ev["id"]))
            self.app.notify("Saved: every invitee sees the change at their next refresh")

        self.app.backend.spawn(run(), "Saving the event")

    def ask_cancel(self) -> None:
        if self.event is not None:
            self.cancel_dialog = confirm("Cancel this event?", f"\"{self.event['title']}\" is cancelled for every "
                                         "invitee; this cannot be undone.", "Cancel the event", self.cancel)

    def cancel(self) -> None:
        organize = api_for(self, OrganizeApi)
        ev = self.event
        if organize is None or ev is None:
            return

        async def run() -> None:
            await inline(self.error, organize.cancel_event(ev["id"]))
            self.show(await organize.event(ev["id"]))
            self.app.notify("Cancelled: every invitee sees it at their next refresh")

        self.app.backend.spawn(run(), "Cancelling the event")

    def invite(self) -> None:
        organize = api_for(self, OrganizeApi)
        ev, addresses = self.event, self.invite_picker.chosen()
        if organize is None or ev is None:
            return
        if not addresses:
            self.error.text = "Tick the contacts to invite first."
            return

        async def run() -> None:
            self.invite_button.disabled = True
            try:
                await inline(self.error, organize.invite(ev["id"], addresses))
            finally:
                self.invite_button.disabled = False
            self.invite_picker.set_people([])
            self.invite_picker.set_people(self.app.backend.contacts)
            self.app.notify(f"Invited {len(addresses)}")

        self.app.backend.spawn(run(), "Inviting")


class NewEventScreen(BaseScreen):
    """Create an event: what, when, where (a position is published only as the centre of a cell), a picture, the
    anonymous host and anonymous answers switches, and the contacts to invite."""

    def build(self) -> None:
        self.title_field = field("Title")
        self.start_field, self.end_field = field("Starts (2026-12-01 18:00, your time)"), field("Ends")
        self.place_field = field("Place (text)")
        self.description_field = field("Description", multiline=True)
        self.lat_field, self.lon_field = field("Latitude (optional)"), field("Longitude (optional)")
        self.precision_field = field("Cell km (1)")
        self.precision_note = label("", role="small")
        self.precision_field.bind(text=lambda *_: self._say_precision())
        self.image_field = field("Picture file (optional): its metadata is removed here")
        self.anonymous = MDSwitch()
        self.anonymous_answers = MDSwitch()
        self.picker = ContactPicker([])
        self.create_button = button("Create and invite", self.create, icon="calendar-check")
        self.error = error_label()
        self.result = label("", role="medium")
        for widget in (self.title_field, row(self.start_field, self.end_field), self.place_field,
                       self.description_field, row(self.lat_field, self.lon_field, self.precision_field),
                       self.precision_note, self.image_field,
                       row(self.anonymous, label("Anonymous host: a one-off key signs the event and receives the "
                                                 "answers; nobody, invitees included, learns that you host it.",
                                                 role="small")),
                       row(self.anonymous_answers, label("Anonymous answers: you see counts only, not who; invite "
                                                         "everyone now (no invitations later).", role="small")),
                       label("Invite", style="Title", role="small"), self.picker, self.error, self.result):
            self.body.add_widget(widget)
        self.footer.add_widget(row(self.create_button, button("Back to events", lambda: self.app.show("events"),
                                                              style="text")))
        self._say_precision()

    def refresh(self, *_: Any) -> None:
        self.picker.set_people(self.app.backend.contacts)

    def _precision(self) -> float:
        text = self.precision_field.text.strip()
        try:
            value = float(text) if text else 1.0
        except ValueError:
            raise ValueError(f"the cell is a number of km, not {text!r}") from None
        if value <= 0:
            raise ValueError("the cell is a positive number of km")
        return value

    def _say_precision(self) -> None:
        try:
            km = self._precision()
        except ValueError as exc:
            self.precision_note.text = str(exc)
            return
        self.precision_note.text = (f"Only the centre of the grid cell holding the position is sent, never the "
                                    f"position typed: a {km:g} km cell (1, 2, 5, 10, 20 or 50 km; rounded up).")

    def create(self) -> None:
        organize = api_for(self, OrganizeApi)
        if organize is None:
            return
        try:
            if not self.title_field.text.strip():
                raise ValueError("An event needs a title.")
            starts = parse_time(self.start_field.text, "Starts")
            ends = parse_time(self.end_field.text, "Ends")
            if ends <= starts:
                raise ValueError("An event ends after it starts.")
            at = position(self.lat_field, self.lon_field)
            precision = self._precision()
        except ValueError as exc:
            self.error.text = str(exc)
            return
        image = self.image_field.text.strip()
        if image and not Path(image).expanduser().is_file():
            self.error.text = f"No picture file {image}"
            return
        fields = {"title": self.title_field.text.strip(), "starts_at": starts, "ends_at": ends,
                  "place": self.place_field.text.strip(), "description": self.description_field.text.strip(),
                  "at": at, "precision_km": precision,
                  "image_path": str(Path(image).expanduser()) if image else None,
                  "anonymous": bool(self.anonymous.active), "anonymous_answers": bool(self.anonymous_answers.active),
                  "invite": self.picker.chosen()}
        self.error.text = ""

        async def run() -> None:
            self.create_button.disabled = True
            try:
                ev = await inline(self.error, organize.create_event(**fields))
            finally:
                self.create_button.disabled = False
            invited = len(fields["invite"])
            self.result.text = f"Created ({ev['id'][:12]})" + (f", {invited} invited" if invited else "") + "."
            for f in (self.title_field, self.start_field, self.end_field, self.place_field, self.description_field,
                      self.lat_field, self.lon_field, self.image_field):
                f.text = ""
            self.app.notify("Event created")
            self.app.show("event", event_id=ev["id"])

        self.app.backend.spawn(run(), "Creating the event")
