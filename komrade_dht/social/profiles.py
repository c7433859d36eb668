"""Profiles: name, bio and photo, shown to the world, to friends only, or to the local area.

A profile is a signed mutable record (:mod:`komrade_dht.records`, BEP 44) under ``record_key(my key, b"profile")``:
only I can write it, and nobody can roll it back (holders and readers keep the highest ``seq``; a reader also keeps
the newest it has seen and refuses an older one). ``seq`` is at least the current unix time, so a device restored
from the recovery text still publishes above what it published before. The record lives 30 days (republish to keep
it). The value is ``msgpack`` of:

- world: ``{vis: "world", name, bio, photo}``: anyone with my address reads it;
- friends: ``{vis: "friends", box}``: ``box`` is ``nonce | SecretBox(circle key, msgpack({name, bio, photo}))``;
  only holders of my circle key read anything but the visibility;
- local: ``{vis: "local", area: [lat, lon, radius_km], name, bio, photo}`` with the centre coarsened as for local
  posts; readers show it only to a reader who says it is inside the area. This is a display rule, not secrecy: the
  record itself is public (use friends for secrecy).

``photo`` is ``[manifest id, key]`` of a sanitised picture (at most 512 pixels a side, 60 KB) stored as chunks that
live as long as the record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

from nacl import bindings
from nacl.exceptions import CryptoError

from .. import codec, geo, media, records
from ..address import decode_address
from ..errors import CodecError, ContentError, KomradeError, RecordError, RecordStale
from ..node import KomradeNode
from ..slots import MAX_TTL
from . import friends, pictures
from .account import Account
from .posts import _store_content, fetch_content

log = logging.getLogger(__name__)

SALT = b"profile"
VISIBILITIES = ("world", "friends", "local")
MAX_NAME = 64
MAX_BIO = 300
_ME = b"me"


class ProfileNotFound(KomradeError):
    """No profile is published for this address (none yet, or it expired)."""


@dataclass(frozen=True)
class Profile:
    """A profile as a reader may see it. ``visible`` False: its visibility does not let this reader see more than
    ``visibility`` (and ``area`` for a local one)."""

    address: str
    fingerprint: str
    visibility: str
    visible: bool
    name: str | None = None
    bio: str | None = None
    photo: bool = False
    """The photo was fetched and is kept on this device, encrypted with the account's data (:func:`photo`)."""
    photo_error: str | None = None
    area: list[float] | None = None
    seq: int = 0
    updated_at: int = 0


def _check(name: str | None, bio: str | None, visibility: str) -> None:
    if visibility not in VISIBILITIES:
        raise KomradeError(f"visibility is world, friends or local, not {visibility!r}")
    if name is not None and (len(name) > MAX_NAME or not name.strip()):
        raise KomradeError(f"a profile name is 1 to {MAX_NAME} characters")
    if bio is not None and len(bio) > MAX_BIO:
        raise KomradeError(f"a bio is at most {MAX_BIO} characters, not {len(bio)}")


async def set_profile(
    account: Account,
    node: KomradeNode,
    *,
    name: str | None = None,
    bio: str | None = None,
    photo: bytes | None = None,
    visibility: str | None = None,
    at: tuple[float, float] | None = None,
    radius_km: float | None = None,
    now: float | None = None,
) -> int:
    """Change my profile (unset fields keep their last value) and publish it; returns the holders that accepted
    it. Everything is checked (text lengths, picture, position) before anything is published."""
    saved = account.data.get("profile", _ME) or {"name": account.name, "bio": "", "photo": None, "vis": "world",
                                                   "area": None, "seq": 0}
    vis = visibility or saved["vis"]
    _check(name, bio, vis)
    if at is not None:
        at = geo.check_position(*at)
    if radius_km is not None:
        radius_km = geo.check_radius(radius_km)
    area = saved.get("area")
    if vis == "local":
        if at is not None or radius_km is not None:
            if at is None or radius_km is None:
                raise KomradeError("a local profile needs a position and a radius (--at LAT,LON --radius KM)")
            published = geo.publish_area(*geo.check_position(*at), radius_km, 2.0)
            area = [published.lat, published.lon, published.radius_km]
        if area is None:
            raise KomradeError("a local profile needs a position and a radius (--at LAT,LON --radius KM)")
    picture = None
    if photo is not None:
        picture = await asyncio.to_thread(media.sanitize_image, photo, max_side=512, max_output_bytes=60 * 1024)
    now = time.time() if now is None else now
    expires_at = int(now) + MAX_TTL
    fields = {"name": saved["name"] if name is None else name.strip(), "bio": saved["bio"] if bio is None else bio,
              "photo": saved.get("photo")}
    seq = max(saved["seq"] + 1, int(now))
    value = _value(account, fields, vis, area)  # checks the size before the photo is stored
    old_photo = saved.get("photo_burn")
    photo_burn = old_photo
    if picture is not None:
        content, burn_root = await _store_content(node, picture.data, picture.mime, expires_at, now)
        fields["photo"] = [content.manifest.root_id, content.key]
        photo_burn = [burn_root, *content.manifest.blob_ids]
        value = _value(account, fields, vis, area)
    data = records.make_record(account.identity, SALT, seq, value, expires_at, now=now)
    acks = await node.put_record(data)
    account.data.put("profile", _ME, {**fields, "vis": vis, "area": area, "seq": seq, "photo_burn": photo_burn})
    if old_photo and photo_burn is not old_photo:
        await _burn_blobs(node, old_photo)  # the replaced photo leaves the network now, not when it expires
    return acks


async def _burn_blobs(node: KomradeNode, burn: list[bytes]) -> int:
    from .posts import _BlobIds

    burn_root, *blob_ids = burn
    secrets = media.burn_secrets(burn_root, _BlobIds(tuple(blob_ids)))  # type: ignore[arg-type]
    gate = asyncio.Semaphore(16)

    async def one(blob_id: bytes, secret: bytes) -> int:
        async with gate:
            return await node.burn(blob_id, secret)

    return sum(await asyncio.gather(*(one(b, s) for b, s in secrets.items())))


def _value(account: Account, fields: dict, vis: str, area: list[float] | None) -> bytes:
    photo = fields.get("photo")
    if photo is None:
        photo = [bytes(20), bytes(32)]  # the same size with or without a photo
    inner = {"name": fields["name"], "bio": fields["bio"], "photo": photo}
    if vis == "friends":
        key = friends.my_circle(account)["key"]
        nonce = os.urandom(24)
        value = codec.pack({"vis": "friends", "box": nonce + bindings.crypto_secretbox(codec.pack(inner), nonce, key)})
    elif vis == "local":
        value = codec.pack({"vis": "local", "area": area, **inner})
    else:
        value = codec.pack({"vis": "world", **inner})
    room = records.max_value_len(SALT)
    if len(value) > room:
        raise KomradeError(f"the profile takes {len(value)} bytes; a profile holds at most {room} (shorten the bio)")
    return value


def my_profile(account: Account) -> dict:
    return account.data.get("profile", _ME) or {"name": account.name, "bio": "", "photo": None, "vis": "world",
                                                "area": None, "seq": 0}


def photo(account: Account, address_text: str) -> bytes | None:
    """The photo of the profile at ``address_text`` as last shown on this device (JPEG bytes), or None."""
    address = decode_address(address_text)
    return pictures.load(account, pictures.profile_name(records.record_key(address.verify_key, SALT)))


async def show_profile(
    account: Account,
    node: KomradeNode,
    address_text: str,
    *,
    at: tuple[float, float] | None = None,
    photo: bool = True,
    now: float | None = None,
) -> Profile:
    """Fetch and verify someone's profile and show what its visibility lets me see. KomradeError if there is
    none; RecordStale if the network only offers an older one than this device has seen (a rollback)."""
    address = decode_address(address_text)
    key = records.record_key(address.verify_key, SALT)
    data = await node.get_record(key)
    seen = account.data.get("profile_seen", key)
    held = records.verify_record(key, seen["data"], now) if seen else None
    if data is None:
        if held is None:
            raise ProfileNotFound("no profile found for this address (none published, or it expired)")
        record = held
    else:
        record = records.verify_record(key, data, now)  # every reader checks, whoever served it
        try:
            if records.supersedes(held, record):
                account.data.put("profile_seen", key, {"data": record.data})
        except RecordStale:
            raise
        except RecordError as exc:
            raise KomradeError(f"the network offers a conflicting profile: {exc}") from None
    return await _decode(account, node, address.text, address.public.fingerprint(), record, at, photo)


async def _decode(account: Account, node: KomradeNode, address: str, fingerprint: str, record: records.Record,
                  at: tuple[float, float] | None, photo: bool) -> Profile:
    try:
        obj = codec.unpack(record.value, max_len=1024, max_depth=2)
    except CodecError:
        raise KomradeError("the profile is malformed") from None
    if not isinstance(obj, dict) or obj.get("vis") not in VISIBILITIES:
        raise KomradeError("the profile is malformed")
    vis = obj["vis"]
    kept = pictures.profile_name(record.key)
    if photo:
        pictures.forget(account, kept)  # what a reader is shown is this version's photo or none, never an older one
    base = dict(address=address, fingerprint=fingerprint, visibility=vis, seq=record.seq,
                updated_at=min(record.seq, 2**32))
    inner = obj
    area = None
    if vis == "friends":
        inner = None
        keys = [k for a, k in friends.circles_to_read(account) if a == record.public_key]
        if record.public_key == account.identity.verify_key:
            keys = friends.my_circle_keys(account)
        box = obj.get("box") if isinstance(obj.get("box"), bytes) else b""
        for key in reversed(keys):
            try:
                inner = codec.unpack(bindings.crypto_secretbox_open(box[24:], box[:24], key), max_len=1024)
                break
            except (CryptoError, CodecError, ValueError):
                continue
        if not isinstance(inner, dict):
            return Profile(**base, visible=False)
    elif vis == "local":
        area = obj.get("area")
        if not (isinstance(area, list) and len(area) == 3):
            raise KomradeError("the profile's area is malformed")
        if record.public_key != account.identity.verify_key and (at is None or not geo.in_area(*area, *at)):
            return Profile(**base, visible=False, area=[float(v) for v in area])
    name, bio, ref = inner.get("name"), inner.get("bio"), inner.get("photo")
    if not (isinstance(name, str) and isinstance(bio, str)):
        raise KomradeError("the profile is malformed")
    has_photo, photo_error = False, None
    if photo and isinstance(ref, list) and len(ref) == 2 and ref[0] != bytes(20):
        try:
            pictures.keep(account, kept, await fetch_content(node, ref[0], ref[1], max_length=200 * 1024))
            has_photo = True
        except ContentError as exc:
            photo_error = str(exc)
    return Profile(**base, visible=True, name=name[:MAX_NAME], bio=bio[:MAX_BIO], photo=has_photo,
                   photo_error=photo_error, area=[float(v) for v in area] if area else None)
