"""Collectives (issue 11): the list, founding one (its constitution said in words), asking to join, and a
collective's detail: members, constitution, join requests with vouch buttons, proposals (amend, remove) with
anonymous vote buttons and tallies, proposing, and the group's posts.

Every call goes through the local API (``komrade_dht.api.organize_client.OrganizeApi``) as a task owned by the
backend; a failure becomes a snackbar and an inline error, never an exception in the window.
"""

from __future__ import annotations

from typing import Any

from kivy.metrics import dp
from kivymd.uix.card import MDCard

from komrade_dht.api.organize_client import OrganizeApi

from ..widgets import (BaseScreen, ContactPicker, VoteBar, api_for, button, column, error_label, field, inline, label,
                       row, when)


def parse_share(text: str, what: str) -> list[int]:
    """A share typed as ``N/D`` (``1/2``); ValueError saying what is expected."""
    num, sep, den = text.strip().partition("/")
    try:
        if not sep:
            raise ValueError
        share = [int(num), int(den)]
    except ValueError:
        raise ValueError(f"{what} is a fraction like 1/2, not {text.strip()!r}") from None
    if share[1] <= 0 or not 0 <= share[0] <= share[1]:
        raise ValueError(f"{what} is between 0/1 and 1/1, not {text.strip()!r}")
    return share


def _fraction(share: list[int]) -> str:
    num, den = share
    if num == den:
        return "all"
    if num == 0:
        return "none"
    return {(1, 2): "half", (1, 3): "a third", (2, 3): "two thirds", (1, 4): "a quarter",
            (3, 4): "three quarters"}.get((num, den), f"{num}/{den}")


def _change_in_words(name: str, value: Any) -> str:
    """One field of an amendment as a member reads it."""
    if name == "vouch_min":
        return f"a newcomer needs {value} vouch{'es' if value != 1 else ''}"
    if name == "vote_window":
        return f"a proposal stays open {max(1, round(value / 86400))} day(s)"
    what = {"vouch_share": "must vouch for a newcomer", "amend_share": "must vote yes to change the rules",
            "remove_share": "must vote yes to remove a member"}.get(name, name)
    return f"{_fraction(value)} of the members {what}"


def rules_in_words(c: dict[str, Any]) -> list[str]:
    """A constitution (its wire fields) as sentences a member reads."""
    vouch = f"A newcomer is admitted after {c['vouch_min']} vouch{'es' if c['vouch_min'] != 1 else ''} from members"
    if c["vouch_share"][0]:
        vouch += f", and from at least {_fraction(c['vouch_share'])} of the members once the group is larger"
    lines = [vouch + ".",
             f"Changing these rules needs yes-votes from {_fraction(c['amend_share'])} of the members (rounded up).",
             f"Removing a member needs yes-votes from {_fraction(c['remove_share'])} of the members (rounded up); "
             "the group's key is replaced after it, so they read nothing new."]
    if "vote_window" in c:
        lines.append(f"A proposal stays open {max(1, round(c['vote_window'] / 86400))} day(s).")
    lines.append("Votes on proposals are anonymous: the ring is the members' list; vouches are signed.")
    return lines


class CollectivesScreen(BaseScreen):
    """The collectives you belong to, founding one, and asking to join one."""

    def build(self) -> None:
        self.list_box = column(spacing=8)
        self.cards: dict[str, Any] = {}
        self.shown: list[dict[str, Any]] | None = None
        self.name_field = field("Name")
        self.picker = ContactPicker([])
        self.quorum_field, self.quorum_share_field = field("Vouches a newcomer needs (2)"), field("...and share (0/1)")
        self.amend_field, self.remove_field = field("Share to amend (1/2)"), field("Share to remove (1/2)")
        self.rules = column(spacing=2)
        for f in (self.quorum_field, self.quorum_share_field, self.amend_field, self.remove_field):
            f.bind(text=lambda *_: self._say_rules())
        self.found_button = button("Found", self.found, icon="account-group")
        self.found_error = error_label()
        self.join_id_field, self.join_member_field = field("Collective id"), field("A member's address")
        self.join_note_field = field("A note for the members (optional)")
        self.join_button = button("Ask to join", self.ask, style="tonal", icon="account-plus")
        self.join_error = error_label()
        self.join_result = label("", role="medium")
        for widget in (self.list_box,
                       label("Found a collective", style="Title", role="medium"), self.name_field,
                       label("Founding members", style="Title", role="small"), self.picker,
                       row(self.quorum_field, self.quorum_share_field, self.amend_field, self.remove_field),
                       self.rules, self.found_button, self.found_error,
                       label("Ask to join one", style="Title", role="medium"),
                       row(self.join_id_field, self.join_member_field), self.join_note_field, self.join_button,
                       self.join_error, self.join_result):
            self.body.add_widget(widget)
        self._say_rules()
        self.app.backend.bind(collective_news=lambda *_: self.refresh())

    def _constitution(self) -> dict[str, Any]:
        """The constitution typed in the form (empty fields are the defaults); ValueError saying what is wrong."""
        text = self.quorum_field.text.strip()
        try:
            quorum = int(text) if text else 2
        except ValueError:
            raise ValueError(f"the vouches a newcomer needs is a whole number, not {text!r}") from None
        if quorum < 1:
            raise ValueError("a newcomer needs at least 1 vouch")
        return {"vouch_min": quorum,
                "vouch_share": parse_share(self.quorum_share_field.text or "0/1", "the share of vouches"),
                "amend_share": parse_share(self.amend_field.text or "1/2", "the share to amend"),
                "remove_share": parse_share(self.remove_field.text or "1/2", "the share to remove")}

    def _say_rules(self) -> None:
        self.rules.clear_widgets()
        try:
            lines = rules_in_words(self._constitution())[:3]
        except ValueError as exc:
            self.found_error.text = str(exc)
            return
        self.found_error.text = ""
        for line in lines:
            self.rules.add_widget(label(line, role="small"))

    def refresh(self, *_: Any) -> None:
        self.picker.set_people(self.app.backend.contacts)
        organize = self.app.backend.api and OrganizeApi(self.app.backend.api)
        if not organize:
            return

        async def run() -> None:
            self.show(await organize.collectives())

        self.app.backend.spawn(run(), "Loading collectives")

    def show(self, found: list[dict[str, Any]]) -> None:
        if found == self.shown:
            return
        self.shown = found
        self.list_box.clear_widgets()
        self.cards = {}
        if not found:
            self.list_box.add_widget(label("You belong to no collective yet.", role="medium"))
        for c in found:
            status = {"member": f"{c['members']} members", "removed": "you were removed",
                      "waiting": "you asked to join: waiting for the members' vouches"}.get(c["status"], c["status"])
            parts = [label(c["name"] or "(a collective you asked to join)", style="Title", role="small"),
                     label(f"{c['id']}  ·  {status}", role="small")]
            card = MDCard(column(*parts, spacing=2), style="outlined", size_hint_y=None, padding=dp(10),
                          on_release=lambda *_, cid=c["id"]: self.app.show("collective", collective_id=cid))
            card.bind(minimum_height=card.setter("height"))
            self.cards[c["name"] or c["id"]] = card
            self.list_box.add_widget(card)

    def found(self) -> None:
        organize = api_for(self, OrganizeApi)
        if organize is None:
            return
        name = self.name_field.text.strip()
        try:
            if not name:
                raise ValueError("A collective needs a name.")
            rules = self._constitution()
        except ValueError as exc:
            self.found_error.text = str(exc)
            return
        members = self.picker.chosen()

        async def run() -> None:
            self.found_button.disabled = True
            try:
                made = await inline(self.found_error, organize.found_collective(
                    name, members, quorum=rules["vouch_min"], quorum_share=rules["vouch_share"],
                    amend_share=rules["amend_share"], remove_share=rules["remove_share"]))
            finally:
                self.found_button.disabled = False
            self.name_field.text = ""
            self.app.notify(f"Founded {name}: its key was sealed to {len(members)} member(s)")
            self.show(await organize.collectives())
            self.app.show("collective", collective_id=made["id"])

        self.app.backend.spawn(run(), "Founding the collective")

    def ask(self) -> None:
        organize = api_for(self, OrganizeApi)
        if organize is None:
            return
        cid, member = self.join_id_field.text.strip(), self.join_member_field.text.strip()
        if not cid or not member:
            self.join_error.text = "Give the collective's id and the address of a member you know."
            return

        async def run() -> None:
            self.join_button.disabled = True
            try:
                asked = await inline(self.join_error, organize.request_join(cid, member,
                                                                            self.join_note_field.text.strip()))
            finally:
                self.join_button.disabled = False
            join_id = asked["join_id"]
            self.join_result.text = (f"Asked ({join_id[:12]}): you receive the key once enough members vouch for "
                                     "you.")
            self.app.notify("Join request sent")

        self.app.backend.spawn(run(), "Asking to join")


class CollectiveScreen(BaseScreen):
    """One collective: members, rules, join requests (vouch), proposals (vote anonymously), propose, posts."""

    context: dict[str, Any] = {}

    def build(self) -> None:
        self.state: dict[str, Any] | None = None
        self.error = error_label()
        self.id_label = label("", role="small")
        self.members_box, self.rules_box = column(spacing=2), column(spacing=2)
        self.joins_box, self.proposals_box = column(spacing=6), column(spacing=6)
        self.join_rows: dict[str, Any] = {}
        self.proposal_rows: dict[str, Any] = {}
        self.member_rows: dict[str, Any] = {}
        self.amend_quorum = field("New vouches needed")
        self.amend_amend, self.amend_remove = field("New share to amend"), field("New share to remove")
        self.propose_button = button("Propose the change", self.propose_amend, style="tonal", icon="gavel")
        self.posts_box = column(spacing=6)
        self.post_field = field("Write to the collective (members read it)")
        self.post_button = button("Post", self.post, icon="send")
        for widget in (self.id_label, self.error,
                       label("Members", style="Title", role="medium"), self.members_box,
                       label("Rules", style="Title", role="medium"), self.rules_box,
                       label("Join requests", style="Title", role="medium"), self.joins_box,
                       label("Proposals", style="Title", role="medium"), self.proposals_box,
                       row(self.amend_quorum, self.amend_amend, self.amend_remove), self.propose_button,
                       label("Posts", style="Title", role="medium"), row(self.post_field, self.post_button),
                       self.posts_box):
            self.body.add_widget(widget)
        self.refresh_button = button("Refresh", self.refresh, style="text", icon="refresh")
        self.footer.add_widget(row(button("Back to collectives", lambda: self.app.show("collectives"), style="text"),
                                   self.refresh_button))
        self.app.backend.bind(collective_news=self._pushed)

    def _pushed(self, _backend: Any, news: dict[str, Any]) -> None:
        cid = self.context.get("collective_id")
        if cid and news.get("id") in (None, cid) and self.manager and self.manager.current == self.name:
            self.refresh()

    def refresh(self, *_: Any) -> None:
        async def load(organize: OrganizeApi, cid: str) -> dict[str, Any]:
            state = await organize.collective(cid)
            self.show_posts(await organize.collective_posts(cid))
            return state

        self._act("Loading the collective", load)

    def show(self, state: dict[str, Any]) -> None:
        if state == self.state:
            return  # nothing new: keep the buttons where a finger may be
        self.state = state
        self.header.text = state["name"]
        self.id_label.text = f"id {state['id']}  (give it, with your address, to whoever asks to join)"
        self.members_box.clear_widgets()
        self.member_rows = {}
        for m in state["members"]:
            me = m["me"]
            fp = m.get("fingerprint")
            line = row(label(f"{m['name']}" + (f"  [{fp}]" if fp else ""), role="medium",
                             pos_hint={"center_y": 0.5}))
            if not me:
                line.remove_button = button("Propose removal", lambda key=m["key"]: self.propose_remove(key),
                                            style="text")
                line.add_widget(line.remove_button)
            self.member_rows[m["name"]] = line
            self.members_box.add_widget(line)
        self.rules_box.clear_widgets()
        for line in rules_in_words(state["constitution"]):
            self.rules_box.add_widget(label(line, role="medium"))
        self._show_joins(state)
        self._show_proposals(state)

    def _show_joins(self, state: dict[str, Any]) -> None:
        self.joins_box.clear_widgets()
        self.join_rows = {}
        pending = [j for j in state.get("joins", []) if j.get("status", "pending") == "pending"]
        if not pending:
            self.joins_box.add_widget(label("No one is waiting.", role="medium"))
        for j in pending:
            who = j["who"] if len(j["who"]) < 40 else f"{j['who'][:16]}..."
            text = (f"{who}: {j['vouches']} of {j['needed']} vouches" + ("  (you vouched)" if j["vouched"] else "")
                    + (f"  ·  \"{j['note']}\"" if j.get("note") else ""))
            vouch = button("Vouch", lambda jid=j["id"]: self.vouch(jid), style="tonal", icon="hand-okay")
            vouch.disabled = j["vouched"]
            line = row(label(text, role="medium", pos_hint={"center_y": 0.5}), vouch)
            line.vouch_button, line.text = vouch, text
            self.join_rows[j["id"]] = line
            self.joins_box.add_widget(line)

    def _show_proposals(self, state: dict[str, Any]) -> None:
        self.proposals_box.clear_widgets()
        self.proposal_rows = {}
        proposals = state.get("proposals", [])
        if not proposals:
            self.proposals_box.add_widget(label("No proposals.", role="medium"))
        names = {m["key"]: m["name"] for m in state["members"]}
        for p in proposals:
            kind, target = p["kind"], p["target"]
            if kind == "remove":
                what = f"Remove {names.get(target, str(target)[:16])}"
            else:
                what = "Change the rules: " + "; ".join(_change_in_words(k, v) for k, v in (target or {}).items())
            status = p["status"]
            tally = label(f"{status}: {p['up']} yes of {p['needed']} needed, {p['down']} no", role="small")
            bar = VoteBar(lambda choice, pid=p["id"]: self.vote(pid, choice), p["up"], p["down"], p.get("mine"))
            bar.busy(status != "open")
            title = label(what, style="Title", role="small")
            box = column(title, tally, bar, spacing=2)
            box.votes, box.tally, box.title = bar, tally, title
            self.proposal_rows[p["id"]] = box
            self.proposals_box.add_widget(box)

    def show_posts(self, posts: list[dict[str, Any]]) -> None:
        self.posts_box.clear_widgets()
        if not posts:
            self.posts_box.add_widget(label("No posts in the last days.", role="medium"))
        for p in sorted(posts, key=lambda p: -p["posted_at"]):
            self.posts_box.add_widget(column(label(f"{when(p['posted_at'])}  {p['author']}", role="small"),
                                             label(p["text"], role="medium"), spacing=0))

    def _act(self, what: str, call: Any, done: str = "") -> None:
        """Run one action (or the load) on this collective, then show its new state and say ``done``, if anything."""
        organize = api_for(self, OrganizeApi)
        cid = self.context.get("collective_id")
        if organize is None or not cid:
            return

        async def run() -> None:
            self.working(True)
            try:
                result = await inline(self.error, call(organize, cid))
                self.show(result.get("collective", result))  # a proposal's answer holds the state beside its id
            finally:
                self.working(False)
            if done:
                self.app.notify(done)

        self.app.backend.spawn(run(), what)

    def vouch(self, join_id: str) -> None:
        line = self.join_rows.get(join_id)
        if line is not None:
            line.vouch_button.disabled = True
        self._act("Vouching", lambda o, cid: o.vouch(cid, join_id), "Vouched (signed: the members see it was you)")

    def vote(self, proposal_id: str, choice: str) -> None:
        box = self.proposal_rows.get(proposal_id)
        if box is not None:
            box.votes.busy(True)
        self._act("Voting", lambda o, cid: o.vote_proposal(cid, proposal_id, choice),
                  "Vote withdrawn" if choice == "none" else "Voted, anonymously")

    def propose_remove(self, member_key: str) -> None:
        self._act("Proposing", lambda o, cid: o.propose(cid, remove=member_key),
                  "Proposed: members vote on it anonymously")

    def propose_amend(self) -> None:
        changes: dict[str, Any] = {}
        try:
            if self.amend_quorum.text.strip():
                try:
                    changes["vouch_min"] = int(self.amend_quorum.text)
                except ValueError:
                    raise ValueError("the vouches needed is a whole number") from None
            if self.amend_amend.text.strip():
                changes["amend_share"] = parse_share(self.amend_amend.text, "the share to amend")
            if self.amend_remove.text.strip():
                changes["remove_share"] = parse_share(self.amend_remove.text, "the share to remove")
        except ValueError as exc:
            self.error.text = str(exc)
            return
        if not changes:
            self.error.text = "Type the rule to change first (vouches needed, or a share like 2/3)."
            return
        for f in (self.amend_quorum, self.amend_amend, self.amend_remove):
            f.text = ""
        self._act("Proposing", lambda o, cid: o.propose(cid, set=changes), "Proposed: members vote on it anonymously")

    def post(self) -> None:
        organize = api_for(self, OrganizeApi)
        cid, text = self.context.get("collective_id"), self.post_field.text.strip()
        if organize is None or not cid or not text:
            return

        async def run() -> None:
            self.post_button.disabled = True
            try:
                await inline(self.error, organize.collective_post(cid, text))
            finally:
                self.post_button.disabled = False
            self.post_field.text = ""
            self.show_posts(await organize.collective_posts(cid))
            self.app.notify("Posted to the collective")

        self.app.backend.spawn(run(), "Posting to the collective")
