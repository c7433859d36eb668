"""Posts: to the world, to friends, to the local area; signed or anonymous; with at most one image.

**Kinds and where they go** (every slot is per epoch, the UTC day by default):

- *world*: a public envelope (:func:`komrade_dht.envelope.make_public`) appended to one of :data:`WORLD_SHARDS`
  world slots, ``BLAKE2b-160("komrade/world/v1" | epoch | shard)``, the shard picked at random per post. Eight
  shards: no slot's holders carry the whole world's day, and a reader of the world feed reads eight slots per
  epoch (its cost grows with the shard count, an attacker's junk is diluted by it only if it does not target the
  shard being read; each shard read is bounded anyway, see below).
- *local*: a public envelope carrying a coarsened centre and a radius (:func:`komrade_dht.geo.publish_area`: the
  exact position never leaves the device), one copy appended to each geohash cell slot the circle touches,
  ``BLAKE2b-160("komrade/geo/v1" | epoch | geohash)``. A reader reads the cells of its own position
  (:func:`komrade_dht.geo.reader_cells`) and keeps the posts whose circle contains it.
- *friends*: a shared-key envelope (:func:`komrade_dht.envelope.make_shared`) under the author's circle key, in
  the circle's slot (:func:`komrade_dht.social.friends.circle_slot`). Always signed: friends hold the key too, so
  only the author's signature tells a friend's post from a forgery by another friend.

**Signed or anonymous.** A signed world or local post carries the author's key, name, slot width and an Ed25519
signature inside; an anonymous one carries no key, no name, no signature and no stable id (its id, burn hash,
padding, proof-of-work nonce and its image's key, nonces and burn hashes are all fresh random bytes). What still
links an anonymous post to its author is outside the envelope: the IP address the holders saw it come from.

**Text.** At most :data:`MAX_CHARS` characters. It rides inside the post's envelope when it fits (the smallest
size class of 256, 512 or 1024 bytes that holds it: ~850 bytes of body in 1024); a longer text (non-Latin scripts
take 2 to 4 bytes a character) goes into encrypted chunks like an image (one to five blobs of 1 KB), the post
carrying their manifest id and key. So a post is never split over several slot entries.

**Images**: :func:`komrade_dht.media.sanitize_image` on this device (metadata stripped, bombs refused), then
:func:`komrade_dht.media.encrypt_chunks` (proof of work for ``NO_SLOT``) and :meth:`KomradeNode.store_blobs`
*before* the post is appended anywhere; readers fetch the manifest tree and the chunks in parallel
(:meth:`KomradeNode.fetch_blobs`), retry missing ones, and report an image that stays incomplete as an error
(never a partial picture).

**Reading** goes through :meth:`KomradeNode.read_slot` (bounded whatever holders and writers do). Each shard read
considers the :data:`FEED_NEWEST` ids listed last (newest by arrival) that it has not seen, so 10,000 junk posts
in front of a real one cost the reader paging, not 10,000 downloads; ids seen are remembered per slot until they
expire. A read fetches at most :data:`IMAGES_PER_READ` pictures (newest first, at most :data:`MAX_IMAGE_BYTES`
each; the rest on the next reads), so junk posts pointing at big content cannot make it download megabytes. Read
posts are cached on the device (encrypted) until they expire; a feed is that cache, newest first, in pages. An
author's signed posts beyond their first :data:`PER_AUTHOR_PER_PAGE` on a page come after everyone else's (holders
already cap what one source may append to a slot).

**Linkability left to the author**: an anonymous post's lifetime (``expires_at - created``) is visible; a lifetime
nobody else uses sets one's posts apart, so anonymous posts should keep the default.

**Expiry and deletion**: every post carries its expiry (14 days by default, at most 30, as DMs); its author keeps
the burn secret (and the image's burn root) and can delete it from the network (:func:`burn_post`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .. import codec, geo, media
from .. import envelope as env
from ..address import encode_address
from ..errors import (
    ChunksUnavailable, CodecError, ContentError, EnvelopeError, KomradeError, NetworkError,
)
from ..node import KomradeNode
from ..slots import DEFAULT_TTL, MAX_TTL, MAX_WIDTH, SlotParams
from . import devices, dm, friends, pictures
from .account import Account

log = logging.getLogger(__name__)

#: Longest post text, in characters (code points).
MAX_CHARS = 1000
#: World slots per epoch (see the module docstring).
WORLD_SHARDS = 8
#: Ids a shard read considers: the newest (last listed) it has not seen yet.
FEED_NEWEST = 200
#: Epochs a first read of a feed looks back (later reads: every epoch since the last read, at most this many + 1).
FIRST_READ_EPOCHS = 2
#: At most this many posts of one signed author on one page of a feed.
PER_AUTHOR_PER_PAGE = 5
#: Default coarsening of a local post's position, km (a level of :data:`komrade_dht.geo.PRECISION_LEVELS_KM`).
DEFAULT_PRECISION_KM = 2.0
#: Rounds of fetching an image's missing blobs before it is reported unavailable.
FETCH_ROUNDS = 3
#: Pictures one feed read fetches at most (newest posts first; the others on the next reads): junk posts pointing
#: at big content cannot make a read download megabytes.
IMAGES_PER_READ = 24
#: Largest picture a reader fetches (the author's sanitiser makes at most 200 KB), and largest chunked text.
MAX_IMAGE_BYTES = 256 * 1024
MAX_TEXT_BYTES = 4 * MAX_CHARS
#: Posts whose chunks (text, picture) are fetched at once.
CONTENT_PARALLEL = 4
FEEDS = ("world", "friends", "local")
_CONTENT_TYPE = "post"


@dataclass(frozen=True)
class Post:
    """A post as a feed shows it. ``author_*`` are None for an anonymous post. ``image``: its picture was fetched
    and is kept on this device, encrypted with the account's data (:func:`image` gives the bytes); False: no
    picture, or not yet, or ``image_error`` says why it could not be fetched."""

    id: str
    feed: str
    text: str
    anonymous: bool
    author_name: str | None
    author_fingerprint: str | None
    author_address: str | None
    posted_at: int
    expires_at: int
    image: bool = False
    image_error: str | None = None
    area: list[float] | None = None
    """``[lat, lon, radius_km]`` of a local post (the published, coarsened centre)."""
    mine: bool = False

    def public_dict(self) -> dict[str, Any]:
        """The fields of ``feed --json`` (exactly these)."""
        return {k: getattr(self, k) for k in ("id", "text", "anonymous", "author_name", "author_fingerprint",
                                              "posted_at", "image")}


@dataclass(frozen=True)
class Published:
    """What :func:`publish_post` did: the post's id, the envelopes appended and the holders' acks."""

    id: str
    feed: str
    envelopes: int
    acks: int
    blobs: int
    area: geo.PublishedArea | None = None


@dataclass
class FeedRead:
    """What one feed read found (new posts) and cost."""

    new: list[Post] = field(default_factory=list)
    slots: int = 0
    requests: int = 0
    dropped: int = 0
    """Envelopes that were not valid posts (forged signatures, malformed, not ours)."""


# -- slots -------------------------------------------------------------------------------------------------------
def world_slot(epoch: int, shard: int) -> bytes:
    """``BLAKE2b-160("komrade/world/v1" | epoch | shard)``."""
    if not 0 <= shard < WORLD_SHARDS:
        raise ValueError(f"world shard must be 0..{WORLD_SHARDS - 1}")
    return hashlib.blake2b(b"komrade/world/v1" + epoch.to_bytes(4, "big") + shard.to_bytes(2, "big"),
                           digest_size=20).digest()


def geo_slot(epoch: int, geohash: str) -> bytes:
    """``BLAKE2b-160("komrade/geo/v1" | epoch | geohash)``."""
    return hashlib.blake2b(b"komrade/geo/v1" + epoch.to_bytes(4, "big") + geohash.encode("ascii"),
                           digest_size=20).digest()


# -- checks (everything is checked before anything is published) -------------------------------------------------
def check_text(text: object) -> str:
    if not isinstance(text, str):
        raise KomradeError("a post's text must be a string")
    if len(text) > MAX_CHARS:
        raise KomradeError(f"the post is {len(text)} characters; at most {MAX_CHARS} are allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise KomradeError("the post's text is not valid Unicode (lone surrogates)") from None
    return text


def check_ttl(ttl: object) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL:
        raise KomradeError(f"a post lives from 1 second to 30 days, not {ttl!r} seconds")
    return ttl


@dataclass(frozen=True)
class _Draft:
    feed: str
    text: str
    anonymous: bool
    image: media.SanitizedImage | None
    area: geo.PublishedArea | None
    ttl: int


def prepare(
    text: str,
    *,
    to: str = "world",
    anonymous: bool = False,
    image: bytes | None = None,
    at: tuple[float, float] | None = None,
    radius_km: float | None = None,
    precision_km: float = DEFAULT_PRECISION_KM,
    ttl: int = DEFAULT_TTL,
) -> _Draft:
    """Check a post and sanitise its image; raises KomradeError (ImageError, GeoError...) saying what is wrong.
    CPU-bound with an image (run it in a thread from async code)."""
    if to not in FEEDS:
        raise KomradeError(f"a post goes to world, friends or local, not {to!r}")
    text = check_text(text)
    ttl = check_ttl(ttl)
    if to == "friends" and anonymous:
        raise KomradeError("a friends post is always signed (your friends hold your circle key too): "
                           "post anonymously to the world or the local area")
    area = None
    if to == "local":
        if at is None or radius_km is None:
            raise KomradeError("a local post needs a position and a radius (--at LAT,LON --radius KM)")
        lat, lon = geo.check_position(*at)
        area = geo.publish_area(lat, lon, radius_km, precision_km)
    elif at is not None or radius_km is not None:
        raise KomradeError("a position and a radius are for local posts only (--to local)")
    picture = media.sanitize_image(image) if image is not None else None
    if not text.strip() and picture is None:
        raise KomradeError("the post is empty: give a text or an image")
    return _Draft(to, text, anonymous, picture, area, ttl)


# -- publishing --------------------------------------------------------------------------------------------------
def _body(account: Account, draft: _Draft, text_ref: list[bytes] | None, image_ref: list[bytes] | None) -> bytes:
    obj: dict[str, Any] = {}
    if text_ref is None:
        obj["t"] = draft.text
    else:
        obj["tx"] = text_ref
    if image_ref is not None:
        obj["img"] = image_ref
    if draft.area is not None:
        obj["geo"] = [draft.area.lat, draft.area.lon, draft.area.radius_km]
    if not draft.anonymous:
        obj["n"] = account.name[:64]
        obj["w"] = account.width
    return codec.pack(obj)


async def _store_content(node: KomradeNode, data: bytes, mime: str, expires_at: int, now: float
                         ) -> tuple[media.EncryptedContent, bytes]:
    burn_root = os.urandom(media.BURN_ROOT_BYTES)
    pow_params = node.config.pow

    def build() -> media.EncryptedContent:
        return media.encrypt_chunks(data, mime=mime, expires_at=expires_at, burn_root=burn_root, now=now,
                                    mint=lambda b: env.mint_pow(b, pow_params, env.NO_SLOT, now))

    content = await asyncio.to_thread(build)
    await store_blobs(node, content.chunks)
    return content, burn_root


#: Blobs stored per call of :meth:`KomradeNode.store_blobs`, and attempts per batch.
STORE_BATCH, STORE_ATTEMPTS = 48, 3


async def store_blobs(node: KomradeNode, blobs: list[bytes]) -> None:
    """Store ``blobs`` in batches; a batch some blob of which no holder acknowledged (holders busy, a burst over
    their per-peer limits) is stored again after a pause, up to :data:`STORE_ATTEMPTS` times; then NetworkError."""
    for start in range(0, len(blobs), STORE_BATCH):
        batch = blobs[start : start + STORE_BATCH]
        for attempt in range(STORE_ATTEMPTS):
            try:
                await node.store_blobs(batch)
                break
            except NetworkError as exc:
                if attempt == STORE_ATTEMPTS - 1:
                    raise
                log.info("storing chunks again after: %s", exc)
                await asyncio.sleep(1.0 + attempt)


async def publish_post(
    account: Account,
    node: KomradeNode,
    text: str,
    *,
    to: str = "world",
    anonymous: bool = False,
    image: bytes | None = None,
    at: tuple[float, float] | None = None,
    radius_km: float | None = None,
    precision_km: float = DEFAULT_PRECISION_KM,
    ttl: int = DEFAULT_TTL,
    params: SlotParams = SlotParams(),
    now: float | None = None,
    shard: int | None = None,
) -> Published:
    """Check, then publish a post (see the module docstring). Nothing reaches the network if a check fails
    (KomradeError, ImageError, GeoError). NetworkError if no holder acknowledged its chunks or its envelope.
    ``shard`` picks the world shard (tests and benchmarks; random otherwise)."""
    draft = await asyncio.to_thread(prepare, text, to=to, anonymous=anonymous, image=image, at=at,
                                    radius_km=radius_km, precision_km=precision_km, ttl=ttl)
    await friends.deliver_keys(account, node, params=params, now=now)  # circle keys queued by `friend add|remove`
    now = time.time() if now is None else now
    expires_at = int(now) + draft.ttl
    # a paired device signs with its own key and wraps the body in its certificate (devices.signer); readers show the
    # post as its identity's. A friends post also needs the circle key, which the first device sends its others.
    as_device = not draft.anonymous and not account.has_root
    circle_key = friends.my_circle(account)["key"] if draft.feed == "friends" else b""  # RootKeyAbsent: not here yet
    author = None if draft.anonymous else account.identity
    blobs: list[list[bytes]] = []  # [root id, burn root, blob ids...] per stored content
    image_ref = text_ref = None
    if draft.image is not None:
        content, burn_root = await _store_content(node, draft.image.data, draft.image.mime, expires_at, now)
        image_ref = [content.manifest.root_id, content.key]
        blobs.append([burn_root, *content.manifest.blob_ids])
    body = _body(account, draft, None, image_ref)
    capacity = env.public_capacity(_CONTENT_TYPE, signed=author is not None) - (40 if draft.feed == "friends" else 0)
    capacity -= devices.wrap_overhead() if as_device else 0
    if len(body) > capacity:
        content, burn_root = await _store_content(node, draft.text.encode(), "text/plain", expires_at, now)
        text_ref = [content.manifest.root_id, content.key]
        blobs.append([burn_root, *content.manifest.blob_ids])
        body = _body(account, draft, text_ref, image_ref)
    burn_secret = os.urandom(16)
    epoch = params.epoch(now)
    if draft.feed == "world":
        slots = [world_slot(epoch, random.randrange(WORLD_SHARDS) if shard is None else shard)]
    elif draft.feed == "local":
        assert draft.area is not None
        slots = [geo_slot(epoch, cell) for cell in draft.area.cells]
    else:
        slots = [friends.circle_slot(circle_key, epoch)]

    signer, content_type = author, _CONTENT_TYPE
    if as_device:
        signer, body, content_type = devices.signer(account, body, _CONTENT_TYPE)

    def make(slot: bytes) -> bytes:  # in a thread: no account.data here
        if draft.feed == "friends":
            return env.make_shared(signer, circle_key, body, content_type=content_type, ttl=draft.ttl, now=now,
                                   burn_secret=burn_secret, pow=node.config.pow, slot=slot)
        return env.make_public(signer, body, content_type=content_type, ttl=draft.ttl, now=now,
                               burn_secret=burn_secret, pow=node.config.pow, slot=slot)

    envelopes = [await asyncio.to_thread(make, slot) for slot in slots]
    acks = sum(await asyncio.gather(*(node.send(s, e) for s, e in zip(slots, envelopes))))
    first = env.open_shared(envelopes[0], circle_key) if draft.feed == "friends" else env.open_public(envelopes[0])
    assert first is not None
    post_id = first.post_id
    account.data.put("my_post", post_id, {
        "id": post_id.hex(), "feed": draft.feed, "at": int(now), "expires_at": expires_at,
        "copies": [[env.envelope_id(e), s] for e, s in zip(envelopes, slots)], "burn": burn_secret,
        "blobs": blobs, "anonymous": draft.anonymous,
    })
    log.info("%s post published: %d envelopes, %d acks, %d blobs", draft.feed, len(envelopes), acks,
             sum(len(b) - 1 for b in blobs))
    return Published(post_id.hex(), draft.feed, len(envelopes), acks, sum(len(b) - 1 for b in blobs), draft.area)


async def burn_post(account: Account, node: KomradeNode, post_id: str) -> int:
    """Delete one of my posts from the network (every copy, and its chunks) and from this device's feeds;
    returns how many holder copies were deleted. KomradeError if it is not a post of mine."""
    key = _post_key(post_id)
    record = account.data.get("my_post", key)
    if record is None:
        raise KomradeError(f"no post of yours with id {post_id}")
    burned = 0
    for envelope_id, slot in record["copies"]:
        burned += await node.burn(envelope_id, record["burn"], [slot])
    gate = asyncio.Semaphore(16)
    for burn_root, root_id, *_rest in record["blobs"]:
        secrets = media.burn_secrets(burn_root, _BlobIds((root_id, *_rest)))  # type: ignore[arg-type]

        async def one(blob_id: bytes, secret: bytes) -> int:
            async with gate:
                return await node.burn(blob_id, secret)

        burned += sum(await asyncio.gather(*(one(b, s) for b, s in secrets.items())))
    account.data.delete("my_post", key)
    for feed in FEEDS:
        account.data.delete("feed_post", feed.encode() + key)
    pictures.forget(account, pictures.post_name(key))
    account.data.scrub()
    return burned


@dataclass(frozen=True)
class _BlobIds:
    """What media.burn_secrets reads of a Manifest: its blob ids in order (root, index blobs, leaves)."""

    blob_ids: tuple[bytes, ...]


def _post_key(post_id: str) -> bytes:
    try:
        key = bytes.fromhex(post_id)
    except ValueError:
        key = b""
    if len(key) != 20:
        raise KomradeError(f"not a post id: {post_id!r} (40 hex characters)")
    return key


# -- reading -----------------------------------------------------------------------------------------------------
def _decode_body(body: bytes) -> dict[str, Any]:
    try:
        obj = codec.unpack(body, max_len=2048, max_depth=2)
    except CodecError:
        raise EnvelopeError("post body does not decode") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("post body is not a map")
    text, ref, img, area = obj.get("t"), obj.get("tx"), obj.get("img"), obj.get("geo")
    if (text is None) == (ref is None) or (text is not None and (not isinstance(text, str) or len(text) > MAX_CHARS)):
        raise EnvelopeError("post body has no valid text")
    for r in (ref, img):
        if r is not None and not (isinstance(r, list) and len(r) == 2 and all(isinstance(x, bytes) for x in r)
                                  and len(r[0]) == 20 and len(r[1]) == 32):
            raise EnvelopeError("post body has a malformed content reference")
    if area is not None:
        if not (isinstance(area, list) and len(area) == 3):
            raise EnvelopeError("post body has a malformed area")
        try:
            geo.check_position(area[0], area[1])
            geo.check_radius(area[2])
        except geo.GeoError as exc:
            raise EnvelopeError(f"post body has an invalid area: {exc}") from None
    name, width = obj.get("n"), obj.get("w")
    if name is not None and not (isinstance(name, str) and isinstance(width, int) and 0 <= width <= MAX_WIDTH):
        raise EnvelopeError("post body has a malformed author name or width")
    return obj


def _feed_slots(account: Account, feed: str, epochs: list[int], at: tuple[float, float] | None
                ) -> list[tuple[bytes, bytes | None, bytes | None]]:
    """``[(slot, circle key or None, expected author or None)]`` a read of ``feed`` covers."""
    if feed == "world":
        return [(world_slot(e, s), None, None) for e in epochs for s in range(WORLD_SHARDS)]
    if feed == "local":
        assert at is not None
        return [(geo_slot(e, cell), None, None) for e in epochs for cell in geo.reader_cells(*at)]
    out = []
    for author, key in friends.circles_to_read(account):
        expected = author if author is not None else account.identity.verify_key
        out.extend((friends.circle_slot(key, e), key, expected) for e in epochs)
    return out


def _open(data: bytes, key: bytes | None, now: float) -> env.OpenedPublic | None:
    """A post's envelope opened and checked (a public one may come from a paired device: ``via/post``, which the
    reader unwraps with :func:`_as_identity`)."""
    opened = env.open_public(data, now) if key is None else env.open_shared(data, key, now)
    if opened is not None and opened.content_type not in (_CONTENT_TYPE, devices.VIA + _CONTENT_TYPE):
        raise EnvelopeError(f"not a post: {opened.content_type!r}")
    return opened


def check_circle_author(opened: env.OpenedPublic, expected: bytes | None) -> None:
    """A friends post (unwrapped, if a paired device wrote it) must be signed by the circle's owner: a friend who
    holds someone's circle key cannot post under it as them."""
    if opened.author is None or opened.author.verify_key != expected:
        raise EnvelopeError("a friends post under this circle key signed by someone else than its owner")


async def _as_identity(account: Account, node: KomradeNode, opened: env.OpenedPublic, now: float) -> env.OpenedPublic:
    """A post signed by a paired device, as its identity's: its certificate checked against the identity's list
    (fetched when this device's copy is more than a minute old, so a removed device is refused)."""
    if not opened.content_type.startswith(devices.VIA):
        return opened
    await devices.fresh_list_for(account, node, opened.body, now)
    unwrapped = devices.unwrap_public(account, opened, now)
    if unwrapped is None:
        raise EnvelopeError("a post from a device its identity does not vouch for (any more)")
    return unwrapped


async def read_feed(
    account: Account,
    node: KomradeNode,
    feed: str = "world",
    *,
    at: tuple[float, float] | None = None,
    images: bool = True,
    params: SlotParams = SlotParams(),
    now: float | None = None,
    sync: bool = True,
) -> FeedRead:
    """Pull ``feed`` from the network (every slot it covers, for every epoch since its last read), verify every
    post, fetch texts and images in chunks, and cache what is new on this device. ``at`` is the reader's position
    (needed for ``local``). The friends feed syncs the inbox first (circle keys arrive as sealed DMs) unless
    ``sync`` is False (a caller that just synced its own way, e.g. the node service, which announces new DMs)."""
    if feed not in FEEDS:
        raise KomradeError(f"the feeds are world, friends and local, not {feed!r}")
    if feed == "local":
        if at is None:
            raise KomradeError("the local feed needs your position (--at LAT,LON)")
        at = geo.check_position(*at)
    now = time.time() if now is None else now
    if feed == "friends" and sync:
        await dm.sync_inbox(account, node, params=params, now=now)
    await friends.deliver_keys(account, node, params=params, now=now)  # circle keys queued by `friend add|remove`
    state_key = feed.encode() + (geo.geohash_encode(*at, 5).encode() if at is not None else b"")
    state = account.data.get("feed_state", state_key) or {}
    current = params.epoch(now)
    first = max(current - FIRST_READ_EPOCHS, params.epoch(state.get("last", 0)) - 1)
    epochs = list(range(max(first, params.epoch(now - MAX_TTL)), current + 1))
    targets = _feed_slots(account, feed, epochs, at)
    result = FeedRead(slots=len(targets))
    gate = asyncio.Semaphore(dm.SYNC_PARALLEL_EPOCHS)
    found: dict[bytes, tuple[env.OpenedPublic, dict[str, Any]]] = {}

    async def read(slot: bytes, key: bytes | None, expected: bytes | None) -> None:
        async with gate:
            seen = dm._load_seen(account, slot, now)
            got = await _read_slot(node, slot, set(seen))
        result.requests += got.requests
        seen.update(got.skipped)
        for data in got.wanted:
            seen[env.envelope_id(data)] = int.from_bytes(data[2:6], "big")
            try:
                opened = _open(data, key, now)
                if opened is None:
                    continue
                opened = await _as_identity(account, node, opened, now)
                if key is not None:
                    check_circle_author(opened, expected)
                body = _decode_body(opened.body)
            except EnvelopeError as exc:
                result.dropped += 1
                log.debug("dropped an envelope in a %s slot: %s", feed, exc)
                continue
            if feed == "local" and ("geo" not in body or not geo.in_area(*body["geo"], *at)):  # type: ignore[misc]
                continue
            found.setdefault(opened.post_id, (opened, body))
        dm._save_seen(account, slot, seen, now)

    await asyncio.gather(*(read(*t) for t in targets))
    fresh = [(pid, o, b) for pid, (o, b) in found.items() if not account.data.has("feed_post", feed.encode() + pid)]
    fresh.sort(key=lambda item: -item[1].created)  # newest first: they get the picture budget
    budget = IMAGES_PER_READ if images else 0
    eager = {pid for pid, _, b in fresh if b.get("img") is not None}
    eager = set(sorted(eager, key=lambda pid: -found[pid][0].created)[:budget])
    work = asyncio.Semaphore(CONTENT_PARALLEL)

    async def materialise(pid: bytes, opened: env.OpenedPublic, body: dict[str, Any]) -> Post:
        async with work:
            return await _materialise(account, node, feed, opened, body, pid in eager)

    for (pid, opened, body), post in zip(fresh, await asyncio.gather(*(materialise(*f) for f in fresh))):
        account.data.put("feed_post", feed.encode() + pid, asdict(post))
        if body.get("img") is not None and pid not in eager:
            account.data.put("image_pending", pid, {"id": pid.hex(), "feed": feed, "ref": body["img"],
                                                    "at": opened.created, "tries": 0})
        result.new.append(post)
    if images:
        await _fetch_pending_images(account, node, feed, budget - len(eager))
    account.data.put("feed_state", state_key, {"last": int(now)})
    forget_expired(account, now)
    result.new.sort(key=lambda p: (-p.posted_at, p.id))
    return result


def forget_expired(account: Account, now: float | None = None) -> int:
    """Delete the cached posts that have expired, with their pictures, and my own expired posts' burn records
    (expired posts are gone from the network too); returns how many cached posts went."""
    now = time.time() if now is None else now
    gone = 0
    for record in account.data.all("feed_post"):
        if record.get("expires_at", 0) <= now:
            key = bytes.fromhex(record["id"])
            account.data.delete("feed_post", record["feed"].encode() + key)
            pictures.forget(account, pictures.post_name(key))
            account.data.delete("image_pending", key)
            gone += 1
    for record in account.data.all("my_post"):
        if record.get("expires_at", 0) <= now:
            account.data.delete("my_post", bytes.fromhex(record["id"]))
    return gone


#: Pages one shard read may ask of one holder (50 ids each): 13,000 ids, past 10,000 junk entries.
FEED_PAGES = 260


async def _read_slot(node: KomradeNode, slot: bytes, known: set[bytes]) -> Any:
    base = node.config.read
    pages = max(base.pages_per_holder, FEED_PAGES)
    limits = replace(base, pages_per_holder=pages, newest=FEED_NEWEST,
                     requests_per_holder=max(base.requests_per_holder, pages + 2 * FEED_NEWEST))
    return await node.read_slot(slot, known, limits=limits)


async def _save_image(account: Account, node: KomradeNode, post_id: str, ref: list[bytes]) -> None:
    """Fetch a post's picture whole and keep it, encrypted (never a decrypted file on disk); ContentError if not."""
    picture = await fetch_content(node, *ref, max_length=MAX_IMAGE_BYTES)
    pictures.keep(account, pictures.post_name(_post_key(post_id)), picture)


async def _fetch_pending_images(account: Account, node: KomradeNode, feed: str, budget: int) -> None:
    """Pictures of posts read earlier that were not fetched then (over a read's budget, or unavailable), newest
    first, within ``budget``; one that stays unavailable after :data:`FETCH_ROUNDS` reads is reported on its post."""
    pending = sorted((r for r in account.data.all("image_pending") if r.get("feed") == feed),
                     key=lambda r: -r.get("at", 0))[: max(0, budget)]

    async def one(record: dict[str, Any]) -> None:
        key = bytes.fromhex(record["id"])
        cached = account.data.get("feed_post", feed.encode() + key)
        if cached is None:
            account.data.delete("image_pending", key)
            return
        try:
            await _save_image(account, node, record["id"], record["ref"])
            cached["image"], cached["image_error"] = True, None
        except ContentError as exc:
            record["tries"] = record.get("tries", 0) + 1
            if record["tries"] < FETCH_ROUNDS:
                account.data.put("image_pending", key, record)
                return
            cached["image_error"] = str(exc)
        account.data.put("feed_post", feed.encode() + key, cached)
        account.data.delete("image_pending", key)

    work = asyncio.Semaphore(CONTENT_PARALLEL)

    async def gated(record: dict[str, Any]) -> None:
        async with work:
            await one(record)

    await asyncio.gather(*(gated(r) for r in pending))


async def _materialise(account: Account, node: KomradeNode, feed: str, opened: env.OpenedPublic,
                       body: dict[str, Any], images: bool) -> Post:
    text = body.get("t")
    if text is None:
        try:
            raw = await fetch_content(node, *body["tx"], max_length=MAX_TEXT_BYTES)
            text = raw.decode("utf-8")[:MAX_CHARS]
        except (ContentError, UnicodeDecodeError) as exc:
            text = f"[the text of this post could not be fetched: {exc}]"
    has_image, image_error = False, None
    if body.get("img") is not None and images:
        try:
            await _save_image(account, node, opened.post_id.hex(), body["img"])
            has_image = True
        except ContentError as exc:
            image_error = str(exc)
            log.warning("image of post %s unavailable: %s", opened.post_id.hex()[:8], exc)
    author = opened.author
    name = fingerprint = address = None
    if author is not None:
        contact = account.contact(author.verify_key)
        claimed = body.get("n") if isinstance(body.get("n"), str) else ""
        name = contact.name if contact else claimed[:64]
        fingerprint = author.fingerprint()
        address = encode_address(author.verify_key, body.get("w", 8))
    area = body.get("geo")
    return Post(
        id=opened.post_id.hex(), feed=feed, text=text, anonymous=author is None, author_name=name,
        author_fingerprint=fingerprint, author_address=address, posted_at=opened.created,
        expires_at=opened.expires_at, image=has_image, image_error=image_error,
        area=[float(v) for v in area] if area is not None else None,
        mine=author is not None and author.verify_key == account.identity.verify_key,
    )


async def fetch_content(node: KomradeNode, root_id: bytes, key: bytes, *,
                        max_length: int = media.MAX_CONTENT_BYTES) -> bytes:
    """Fetch and decrypt chunked content (its manifest tree, then its leaves, in parallel), every blob checked
    against its id; missing or bad blobs are fetched again up to :data:`FETCH_ROUNDS` times. Raises
    ChunksUnavailable (nothing partial) if some stay missing, ContentError if the content is wrong."""
    blobs: dict[bytes, bytes] = {}
    rounds = 0

    async def get(ids: tuple[bytes, ...]) -> None:
        nonlocal rounds
        rounds += 1
        for bad in ids:
            blobs.pop(bad, None)
        blobs.update(await node.fetch_blobs(list(ids)))

    while True:
        try:
            manifest = media.resolve_manifest(root_id, blobs, key, max_length=max_length)
            return media.decrypt_chunks(manifest, blobs, key)
        except ChunksUnavailable as exc:
            if rounds >= FETCH_ROUNDS + _levels(blobs):
                raise
            await get(exc.missing + exc.bad)


def _levels(blobs: dict[bytes, bytes]) -> int:
    # each level of the manifest tree costs one round even when nothing is missing; a 1 MB image has 3 levels
    return 2 if len(blobs) < 2 else 3


def feed_posts(account: Account, feed: str, *, at: tuple[float, float] | None = None, radius_km: float | None = None,
               offset: int = 0, limit: int = 50, now: float | None = None) -> list[Post]:
    """The cached posts of ``feed`` on this device, newest first, one page; for ``local``, only those whose circle
    contains ``at`` (and, with ``radius_km``, whose centre is within that distance of ``at``). An author's signed
    posts beyond their first :data:`PER_AUTHOR_PER_PAGE` come after everyone else's."""
    now = time.time() if now is None else now
    # ``image`` was a file's path before pictures moved into the encrypted data: any value means "kept"
    posts = [Post(**{**r, "image": bool(r.get("image"))}) for r in account.data.all("feed_post") if r.get("feed") == feed]
    posts = [p for p in posts if p.expires_at > now]
    if feed == "local":
        if at is None:
            raise KomradeError("the local feed needs your position (--at LAT,LON)")
        lat, lon = geo.check_position(*at)
        posts = [p for p in posts if p.area and geo.in_area(*p.area, lat, lon)]
        if radius_km is not None:
            posts = [p for p in posts if geo.in_area(lat, lon, radius_km, *p.area[:2])]
    posts.sort(key=lambda p: (-p.posted_at, p.id))
    # one author's posts beyond their first PER_AUTHOR_PER_PAGE go behind everyone else's
    ahead: list[Post] = []
    behind: list[Post] = []
    per_author: dict[str, int] = {}
    for post in posts:
        if post.author_fingerprint is not None and not post.mine:
            per_author[post.author_fingerprint] = per_author.get(post.author_fingerprint, 0) + 1
            if per_author[post.author_fingerprint] > PER_AUTHOR_PER_PAGE:
                behind.append(post)
                continue
        ahead.append(post)
    return (ahead + behind)[offset : offset + limit]


def image(account: Account, post_id: str) -> bytes | None:
    """The picture of a post read on this device (JPEG bytes, decrypted from the account's data), or None."""
    return pictures.load(account, pictures.post_name(_post_key(post_id)))
