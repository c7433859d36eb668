"""Posts, friends and profiles (issue 10): feeds with world / friends / local tabs and anonymous votes (issue 11)
on every post, compose (image picker, anonymous
switch, local position with the precision that is published), your profile and others', the friends list.

Every call goes through the local API (``komrade_dht.api.social_client.SocialApi``) as a task owned by the backend;
a failure becomes a snackbar and an inline error, never an exception in the window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.metrics import dp
from kivymd.uix.card import MDCard
from kivymd.uix.selectioncontrol import MDSwitch

from komrade_dht.api.organize_client import OrganizeApi
from komrade_dht.api.social_client import SocialApi

from ..widgets import (BaseScreen, VoteBar, api_for, button, choices, column, error_label, field, inline, label, mark,
                       picture, position, row, show_if, when)

FEEDS = ("world", "friends", "local")
MAX_CHARS = 1000


def _social(screen: BaseScreen) -> SocialApi | None:
    return api_for(screen, SocialApi)


class FeedsScreen(BaseScreen):
    """World, friends and local posts, newest first; Refresh pulls from the network."""

    def build(self) -> None:
        self.feed = "world"
        tabs, self.tabs = choices(FEEDS, self.pick)
        self.lat_field, self.lon_field = field("Your latitude"), field("Your longitude")
        self.radius_field = field("Within km (optional)")
        self.local_box = column(row(self.lat_field, self.lon_field, self.radius_field),
                                label("Typed by you, never looked up; the holders you ask learn only the ~5 km cell "
                                      "you are in.", role="small"), spacing=4)
        self.refresh_button = button("Refresh", self.pull, style="tonal")
        self.compose_button = button("New post", lambda: self.app.show("compose"), style="filled")
        # Friends and Profile live behind Posts (the rail keeps one slot per area).
        self.friends_button = button("Friends", lambda: self.app.show("friends"), style="text", icon="account-heart")
        self.profile_button = button("Profile", lambda: self.app.show("profile"), style="text",
                                     icon="account-circle")
        self.error = error_label()
        self.list_box = column(spacing=8)
        self.cards: dict[str, Any] = {}
        self.local_slot = column(spacing=0)
        actions = row(self.refresh_button, self.compose_button, self.friends_button, self.profile_button)
        for widget in (tabs, self.local_slot, actions, self.error,
                       self.list_box):
            self.body.add_widget(widget)
        self.pick("world")

    def pick(self, feed: str) -> None:
        self.feed = feed
        mark(self.tabs, feed)
        show_if(self.local_slot, self.local_box, feed == "local")
        self.load()

    def _where(self) -> tuple[tuple[float, float] | None, float | None] | None:
        try:
            at = position(self.lat_field, self.lon_field)
            radius = float(self.radius_field.text) if self.radius_field.text.strip() else None
        except ValueError as exc:
            self.error.text = str(exc)
            return None
        if self.feed == "local" and at is None:
            self.error.text = "The local feed needs your position."
            return None
        self.error.text = ""
        return (at if self.feed == "local" else None), (radius if self.feed == "local" else None)

    def refresh(self, *_: Any) -> None:
        self.load()

    def load(self) -> None:
        social, where = _social(self), self._where()
        if social is None or where is None:
            return
        at, radius = where

        async def run() -> None:
            page = await social.feed(self.feed, at=at, radius_km=radius)
            self.show_posts(page["posts"])

        self.app.backend.spawn(run(), "Loading the feed")

    def pull(self) -> None:
        social, where = _social(self), self._where()
        if social is None or where is None:
            return
        at, radius = where

        async def run() -> None:
            self.refresh_button.disabled = True
            try:
                got = await social.refresh(self.feed, at=at)
                page = await social.feed(self.feed, at=at, radius_km=radius)
                self.show_posts(page["posts"])
                self.app.notify(f"{got['new']} new post(s)")
            finally:
                self.refresh_button.disabled = False

        self.app.backend.spawn(run(), "Refreshing the feed")

    def show_posts(self, posts: list[dict[str, Any]]) -> None:
        self.list_box.clear_widgets()
        self.cards = {}
        if not posts:
            self.list_box.add_widget(label(f"No {self.feed} posts yet: press Refresh.", role="medium"))
        for post in posts:
            self.list_box.add_widget(self._card(post))

    def _card(self, post: dict[str, Any]) -> Any:
        who = ("anonymous" if post["anonymous"]
               else f"{post['author_name']}  [{post['author_fingerprint']}]")
        parts: list[Any] = [label(f"{when(post['posted_at'])}  {who}", style="Title", role="small"),
                            label(post["text"], role="medium")]
        social = _social(self) if post.get("image") else None
        if social is not None:
            parts.append(picture(self, lambda pid=post["id"]: social.image(pid), 320, 220))
        elif post.get("image_error"):
            parts.append(label(f"Image unavailable: {post['image_error']}", role="small"))
        if post.get("area"):
            lat, lon, radius = post["area"]
            parts.append(label(f"within {radius:g} km of {lat:.3f}, {lon:.3f}", role="small"))
        tally = post.get("votes") or {}
        card_votes = VoteBar(lambda choice, pid=post["id"]: self.vote(pid, choice), tally.get("up", 0),
                             tally.get("down", 0), tally.get("mine"))
        parts.append(card_votes)
        card = MDCard(column(*parts, spacing=4), style="outlined", size_hint_y=None, padding=dp(10))
        card.bind(minimum_height=card.setter("height"))
        card.votes = card_votes
        self.cards[post["id"]] = card
        return card

    def vote(self, post_id: str, choice: str) -> None:
        """Vote anonymously (up, down, or none to withdraw); the card shows the tally the node answers with."""
        organize = api_for(self, OrganizeApi)
        bar = self.cards[post_id].votes
        if organize is None:
            return

        async def run() -> None:
            bar.busy(True)
            try:
                done = await organize.vote(post_id, choice)
            finally:
                bar.busy(False)
            bar.show(done["votes"]["up"], done["votes"]["down"], done["choice"])
            self.app.notify("Vote withdrawn" if choice == "none" else hidden_among(choice, done.get("ring_size")))

        self.app.backend.spawn(run(), "Voting")


def hidden_among(choice: str, ring: Any) -> str:
    """What a vote's anonymity was: the ring it was signed over (a young network's registry is small)."""
    if not isinstance(ring, int) or isinstance(ring, bool):
        return f"Voted {choice}, anonymously"
    if ring <= 1:
        return f"Voted {choice}: you are the only registered voter yet, so this vote names you"
    return f"Voted {choice}, anonymously: hidden among {ring} registered people" + (
        " (few: a small network)" if ring < 8 else "")


class ComposeScreen(BaseScreen):
    """Write a post: text (1000 characters), audience, anonymous switch, one picture, a place for local posts."""

    def build(self) -> None:
        self.to = "world"
        self.text_field = field("What do you want to say?", multiline=True)
        self.counter = label(f"0 / {MAX_CHARS}", role="small")
        self.text_field.bind(text=lambda *_: self._count())
        audience, self.audience = choices(FEEDS, self.pick)
        self.anonymous = MDSwitch()
        self.anonymous_note = label("Anonymous: no key, no name, nothing linking it to you or your other anonymous "
                                    "posts (world and local only).", role="small")
        self.image_field = field("Picture file (optional): its metadata, GPS included, is removed here")
        self.pick_button = button("Choose picture", self.choose, style="outlined")
        self.lat_field, self.lon_field = field("Latitude"), field("Longitude")
        self.radius_field = field("Radius km (1 to 50)")
        self.local_box = column(row(self.lat_field, self.lon_field, self.radius_field),
                                label("Only the centre of the 2 km grid cell you are in is published, never the "
                                      "exact position; choose a radius larger than 2 km.", role="small"), spacing=4)
        self.post_button = button("Post", self.publish)
        self.error = error_label()
        self.result = label("", role="medium")
        self.local_slot = column(spacing=0)
        for widget in (self.text_field, self.counter, label("Who sees it", style="Title", role="small"), audience,
                       row(self.anonymous, self.anonymous_note), row(self.image_field, self.pick_button),
                       self.local_slot, self.error, self.result):
            self.body.add_widget(widget)
        self.footer.add_widget(row(self.post_button, button("Back to feeds", lambda: self.app.show("feeds"),
                                                            style="text")))
        self.pick("world")

    def _count(self) -> None:
        n = len(self.text_field.text)
        self.counter.text = f"{n} / {MAX_CHARS}" + ("  (too long)" if n > MAX_CHARS else "")

    def pick(self, to: str) -> None:
        self.to = to
        mark(self.audience, to)
        show_if(self.local_slot, self.local_box, to == "local")
        self.anonymous.disabled = to == "friends"
        if to == "friends":
            self.anonymous.active = False

    def choose(self) -> None:
        from kivymd.uix.filemanager import MDFileManager

        def done(path: str) -> None:
            self.image_field.text = path
            self.files.close()

        self.files = MDFileManager(select_path=done, exit_manager=lambda *_: self.files.close(),
                                   ext=[".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"])
        self.files.show(str(Path.home()))

    def publish(self) -> None:
        text = self.text_field.text
        if len(text) > MAX_CHARS:
            self.error.text = f"The post is {len(text)} characters; at most {MAX_CHARS}."
            return
        at = radius = None
        if self.to == "local":
            try:
                at = position(self.lat_field, self.lon_field)
                radius = float(self.radius_field.text)
            except ValueError:
                self.error.text = "A local post needs a latitude, a longitude and a radius (numbers)."
                return
            if at is None:
                self.error.text = "A local post needs a latitude, a longitude and a radius (numbers)."
                return
        social = _social(self)
        if social is None:
            return
        self.error.text = ""

        async def run() -> None:
            self.post_button.disabled = True
            try:
                sent = await inline(self.error, social.post(
                    text, to=self.to, anonymous=bool(self.anonymous.active),
                    image_path=self.image_field.text.strip() or None, at=at, radius_km=radius))
            finally:
                self.post_button.disabled = False
            area = sent.get("published_area")
            where = (f"; published position {area['lat']:.4f}, {area['lon']:.4f} (a {area['precision_km']:g} km "
                     "cell)" if area else "")
            self.result.text = f"Posted ({sent['id'][:12]}){where}."
            self.text_field.text = ""
            self.image_field.text = ""
            self.app.notify("Posted")

        self.app.backend.spawn(run(), "Posting")


class ProfileScreen(BaseScreen):
    """Your profile (name, bio, photo, visibility) and someone else's, as its visibility lets you see it."""

    def build(self) -> None:
        self.visibility = "world"
        self.name_field, self.bio_field = field("Name"), field("Bio (300 characters)", multiline=True)
        self.photo_field = field("Photo file (optional)")
        vis, self.vis_buttons = choices(("world", "friends", "local"), self.pick)
        self.lat_field, self.lon_field, self.radius_field = field("Latitude"), field("Longitude"), field("Radius km")
        self.local_box = row(self.lat_field, self.lon_field, self.radius_field)
        self.local_slot = column(spacing=0)
        self.save_button = button("Save and publish", self.save)
        self.error = error_label()
        self.saved = label("", role="medium")
        self.address_field = field("Someone's address")
        self.show_button = button("Show profile", self.show_other, style="tonal")
        self.other_error = error_label()
        self.other = column(spacing=4)
        self.footer.add_widget(row(button("Back to posts", lambda: self.app.show("feeds"), style="text")))
        for widget in (label("Your profile", style="Title", role="medium"), self.name_field, self.bio_field,
                       self.photo_field, label("Visible to", style="Title", role="small"), vis, self.local_slot,
                       self.save_button, self.error, self.saved,
                       label("Someone else's", style="Title", role="medium"), row(self.address_field,
                                                                                  self.show_button),
                       self.other_error, self.other):
            self.body.add_widget(widget)
        self.pick("world")

    def pick(self, visibility: str) -> None:
        self.visibility = visibility
        mark(self.vis_buttons, visibility)
        show_if(self.local_slot, self.local_box, visibility == "local")

    def refresh(self, *_: Any) -> None:
        social = self.app.backend.api and SocialApi(self.app.backend.api)
        if not social:
            return

        async def run() -> None:
            mine = await social.my_profile()
            if not self.name_field.text:
                self.name_field.text = mine["name"]
            if not self.bio_field.text:
                self.bio_field.text = mine["bio"]
            self.pick(mine["visibility"])
            self.saved.text = f"Published version {mine['version']}" if mine["version"] else "Not published yet."

        self.app.backend.spawn(run(), "Loading your profile")

    def save(self) -> None:
        social = _social(self)
        if social is None:
            return
        fields: dict[str, Any] = {"name": self.name_field.text.strip() or None, "bio": self.bio_field.text,
                                  "visibility": self.visibility, "photo_path": self.photo_field.text.strip() or None}
        if self.visibility == "local":
            try:
                fields["at"] = {"lat": float(self.lat_field.text), "lon": float(self.lon_field.text)}
                fields["radius_km"] = float(self.radius_field.text)
            except ValueError:
                self.error.text = "A local profile needs a latitude, a longitude and a radius (numbers)."
                return
        self.error.text = ""

        async def run() -> None:
            mine = await inline(self.error, social.set_profile(**fields))
            self.saved.text = f"Published version {mine['version']} ({mine['visibility']})"
            self.app.notify("Profile published")

        self.app.backend.spawn(run(), "Publishing your profile")

    def show_other(self) -> None:
        social = _social(self)
        if social is None:
            return
        address = self.address_field.text.strip()

        async def run() -> None:
            self.other.clear_widgets()  # never someone else's profile under this address, nor a stale one
            profile = await inline(self.other_error, social.profile(address))
            self.other.add_widget(label(f"[{profile['fingerprint']}]  visible to: {profile['visibility']}",
                                        role="medium"))
            if not profile["visible"]:
                self.other.add_widget(label("Its visibility does not let you see more.", role="medium"))
                return
            self.other.add_widget(label(profile["name"] or "", style="Title", role="medium"))
            self.other.add_widget(label(profile["bio"] or "", role="medium"))
            if profile.get("photo"):
                self.other.add_widget(picture(self, lambda: social.photo(address), 160, 160))

        self.app.backend.spawn(run(), "Fetching the profile")


class FriendsScreen(BaseScreen):
    """The people you share your circle (friends posts and profile) with; add and remove."""

    def build(self) -> None:
        self.address_field, self.name_field = field("Their address"), field("Name (if not a contact yet)")
        self.add_button = button("Add friend", self.add)
        self.error = error_label()
        self.list_box = column(spacing=8)
        self.rows: dict[str, Any] = {}
        self.footer.add_widget(row(button("Back to posts", lambda: self.app.show("feeds"), style="text")))
        for widget in (label("A friend reads your friends posts and friends-only profile once you both added each "
                             "other. Removing one replaces your circle key: they read nothing you post after.",
                             role="medium"),
                       row(self.address_field, self.name_field), self.add_button, self.error, self.list_box):
            self.body.add_widget(widget)

    def refresh(self, *_: Any) -> None:
        social = self.app.backend.api and SocialApi(self.app.backend.api)
        if not social:
            return

        async def run() -> None:
            self.show(await social.friends())

        self.app.backend.spawn(run(), "Loading friends")

    def show(self, people: list[dict[str, Any]]) -> None:
        self.list_box.clear_widgets()
        self.rows = {}
        if not people:
            self.list_box.add_widget(label("No friends yet.", role="medium"))
        for f in people:
            note = "" if f["has_key"] else "  (has not added you yet)"
            remove = button("Remove", lambda a=f["address"]: self.remove(a), style="text")
            line = row(column(label(f"{f['name']}{note}", style="Title", role="small"),
                              label(f"[{f['fingerprint']}]", role="small"), spacing=2), remove)
            line.remove_button = remove
            self.rows[f["name"]] = line
            self.list_box.add_widget(line)

    def add(self) -> None:
        social = _social(self)
        if social is None:
            return
        address, name = self.address_field.text.strip(), self.name_field.text.strip() or None

        async def run() -> None:
            await inline(self.error, social.add_friend(address, name))
            self.address_field.text = self.name_field.text = ""
            self.show(await social.friends())
            self.app.notify("Friend added; your circle key was sent")

        self.app.backend.spawn(run(), "Adding a friend")

    def remove(self, address: str) -> None:
        social = _social(self)
        if social is None:
            return

        async def run() -> None:
            await social.remove_friend(address)
            self.show(await social.friends())
            self.app.notify("Friend removed; your circle key was replaced")

        self.app.backend.spawn(run(), "Removing a friend")
