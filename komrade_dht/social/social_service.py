"""Posts, feeds, friends and profiles for the local API (:class:`komrade_dht.service.UserService` holds one).

Every method takes plain values (what a JSON body carries) and returns JSON-ready dicts; bad input raises a
KomradeError subclass (the API answers 400 with its message), an unknown post 404 (``NotFound``), a network that
did not answer NetworkError (503). New feed items are pushed as ``post`` events.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import asdict
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..errors import KomradeError
from ..node import KomradeNode
from . import friends, posts, profiles
from .account import Account

if TYPE_CHECKING:
    from .organize_service import OrganizeService

log = logging.getLogger(__name__)
#: Largest picture file the API reads from a path (the sanitiser refuses more anyway).
MAX_IMAGE_FILE = 10 * 1024 * 1024


def SocialNotFound(message: str) -> KomradeError:  # noqa: N802 - raised like a class
    """No such feed, post or image on this device: the service's NotFound (the API answers 404)."""
    from ..service import NotFound  # here: the service module imports this one

    return NotFound(message)


def _position(value: Any, what: str = "at") -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"lat", "lon"}:
        lat, lon = value["lat"], value["lon"]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        lat, lon = value
    else:
        raise KomradeError(f"{what} is {{\"lat\": ..., \"lon\": ...}} in decimal degrees")
    if lat is None or lon is None:
        raise KomradeError(f"{what} must hold numbers")
    return _number(lat, f"{what}.lat"), _number(lon, f"{what}.lon")  # type: ignore[return-value]


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise KomradeError(f"{what} must be a number")
    try:
        return float(value)
    except OverflowError:
        raise KomradeError(f"{what} is far out of range") from None


def _image(body: dict[str, Any], key: str) -> bytes | None:
    """A picture given as a local file path (``{key}_path``, the API is local) or base64 (``{key}_base64``)."""
    path, data = body.get(f"{key}_path"), body.get(f"{key}_base64")
    if path is not None and data is not None:
        raise KomradeError(f"give {key}_path or {key}_base64, not both")
    if path is not None:
        if not isinstance(path, str) or not path:
            raise KomradeError(f"{key}_path must be a file path")
        file = Path(path)
        try:
            if not file.is_file():
                raise KomradeError(f"{key}_path is not a file: {path[:200]}")
            if file.stat().st_size > MAX_IMAGE_FILE:
                raise KomradeError(f"the picture is larger than {MAX_IMAGE_FILE // 2**20} MB")
            return file.read_bytes()
        except OSError as exc:
            raise KomradeError(f"{key}_path cannot be read: {exc.strerror or exc}") from None
    if data is not None:
        if not isinstance(data, str):
            raise KomradeError(f"{key}_base64 must be a string")
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            raise KomradeError(f"{key}_base64 is not valid base64") from None
    return None


class SocialService:
    """Posts, feeds, friends and profiles of one account on one node (``node()`` returns the running node)."""

    def __init__(self, account: Account, node: Callable[[], KomradeNode], publish: Callable[[str, dict], Any],
                 sync: Callable[[], Awaitable[Any]] | None = None, votes: OrganizeService | None = None) -> None:
        self.account = account
        #: Tallies of posts' votes (issue 11): a refresh tallies the feed's newest posts, a page carries them.
        self._votes = votes
        self._node = node
        self._publish = publish
        #: The service's inbox sync (it announces new DMs); the friends feed runs it first (circle keys are DMs).
        self._sync = sync
        self._lock = asyncio.Lock()

    # -- posts ---------------------------------------------------------------------------------------------
    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"text", "to", "anonymous", "image_path", "image_base64", "at", "radius_km", "precision_km",
                   "ttl"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise KomradeError(f"unknown field(s): {', '.join(str(k)[:40] for k in unknown[:5])}")
        text = body.get("text", "")
        to = body.get("to", "world")
        anonymous = body.get("anonymous", False)
        if not isinstance(anonymous, bool):
            raise KomradeError("anonymous must be true or false")
        if not isinstance(to, str):
            raise KomradeError("to must be world, friends or local")
        ttl = body.get("ttl", posts.DEFAULT_TTL)
        precision = _number(body.get("precision_km"), "precision_km") or posts.DEFAULT_PRECISION_KM
        sent = await posts.publish_post(
            self.account, self._node(), text, to=to, anonymous=anonymous, image=_image(body, "image"),
            at=_position(body.get("at")), radius_km=_number(body.get("radius_km"), "radius_km"),
            precision_km=precision, ttl=ttl,
        )
        out: dict[str, Any] = {"id": sent.id, "feed": sent.feed, "envelopes": sent.envelopes, "acks": sent.acks,
                               "blobs": sent.blobs}
        if sent.area is not None:
            out["published_area"] = {"lat": sent.area.lat, "lon": sent.area.lon, "radius_km": sent.area.radius_km,
                                     "precision_km": sent.area.level_km}
        return out

    async def burn(self, post_id: str) -> dict[str, Any]:
        if not self.account.data.has("my_post", posts._post_key(post_id)):
            raise SocialNotFound(f"no post of yours with id {post_id}")
        return {"deleted": await posts.burn_post(self.account, self._node(), post_id)}

    async def refresh(self, feed: str, at: tuple[float, float] | None = None) -> list[dict[str, Any]]:
        """Pull ``feed`` now; a ``post`` event per new item."""
        async with self._lock:
            if feed == "friends" and self._sync is not None:
                await self._sync()
            read = await posts.read_feed(self.account, self._node(), feed, at=at, sync=self._sync is None)
        if self._votes is not None:
            from .organize_service import TALLY_ON_REFRESH

            newest = posts.feed_posts(self.account, feed, at=at, limit=TALLY_ON_REFRESH)
            try:
                await self._votes.tally_feed([p.id for p in newest])
            except KomradeError as exc:  # the posts were read; their counts wait for the next refresh
                log.warning("could not tally the votes of the %s feed: %s", feed, exc)
        out = []
        for post in read.new:
            item = self._item(post)
            self._publish("post", item)
            out.append(item)
        return out

    def feed(self, feed: str, at: tuple[float, float] | None = None, radius_km: float | None = None,
             offset: int = 0, limit: int = 50) -> dict[str, Any]:
        if feed not in posts.FEEDS:
            raise SocialNotFound(f"no feed {feed!r}: world, friends or local")
        page = posts.feed_posts(self.account, feed, at=at, radius_km=radius_km, offset=offset, limit=limit)
        return {"feed": feed, "offset": offset, "limit": limit, "posts": [self._item(p) for p in page]}

    def _item(self, post: posts.Post) -> dict[str, Any]:
        """A post as the API gives it: its fields, and its votes as last tallied here (issue 11)."""
        item = asdict(post)
        if self._votes is not None:
            item["votes"] = self._votes.cached_votes(post.id)
        return item

    def image(self, post_id: str) -> bytes:
        picture = posts.image(self.account, post_id)
        if picture is None:
            raise SocialNotFound(f"no image for post {post_id} on this device (read its feed first)")
        return picture

    def photo(self, address: str) -> bytes:
        picture = profiles.photo(self.account, address)
        if picture is None:
            raise SocialNotFound("no photo of this profile on this device (show the profile first)")
        return picture

    # -- friends -------------------------------------------------------------------------------------------
    def friends(self) -> dict[str, Any]:
        return {"friends": [f.__dict__ for f in friends.friends(self.account)]}

    async def add_friend(self, address: str, name: str | None = None) -> dict[str, Any]:
        friend = friends.add_friend(self.account, address, name)
        sent = await friends.deliver_keys(self.account, self._node())
        return {**friend.__dict__, "key_sent": sent > 0 or friend.key_sent}

    async def remove_friend(self, address: str) -> dict[str, Any]:
        try:
            friend = friends.remove_friend(self.account, address)
        except friends.NotAFriend as exc:
            raise SocialNotFound(str(exc)) from None
        await friends.deliver_keys(self.account, self._node())
        return friend.__dict__

    # -- profiles ------------------------------------------------------------------------------------------
    def my_profile(self) -> dict[str, Any]:
        mine = profiles.my_profile(self.account)
        return {"name": mine["name"], "bio": mine["bio"], "visibility": mine["vis"], "area": mine.get("area"),
                "has_photo": mine.get("photo") is not None, "version": mine["seq"]}

    async def set_profile(self, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"name", "bio", "photo_path", "photo_base64", "visibility", "at", "radius_km"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise KomradeError(f"unknown field(s): {', '.join(str(k)[:40] for k in unknown[:5])}")
        for key in ("name", "bio", "visibility"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise KomradeError(f"{key} must be a string")
        acks = await profiles.set_profile(
            self.account, self._node(), name=body.get("name"), bio=body.get("bio"), photo=_image(body, "photo"),
            visibility=body.get("visibility"), at=_position(body.get("at")),
            radius_km=_number(body.get("radius_km"), "radius_km"), now=time.time(),
        )
        return {**self.my_profile(), "acks": acks}

    async def show_profile(self, address: str, at: tuple[float, float] | None = None) -> dict[str, Any]:
        try:
            profile = await profiles.show_profile(self.account, self._node(), address, at=at)
        except profiles.ProfileNotFound as exc:
            raise SocialNotFound(str(exc)) from None
        return profile.__dict__
