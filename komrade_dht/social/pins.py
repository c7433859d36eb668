"""Anonymous map pins: short-lived public warnings (danger, police, medical, help) in the geohash cells around them.

**A pin** is an *anonymous* public envelope (content type ``pin``: no key, no name, no signature; its id, padding,
burn hash and proof-of-work nonce are fresh random bytes) whose body is ``{k: kind, t: text, geo: [lat, lon,
radius_km]}``. The position is coarsened on the device (:func:`komrade_dht.geo.publish_area`, 1 km cells by
default: the published centre reveals only the cell) and one copy is appended to each geohash cell slot the
circle touches, ``BLAKE2b-160("komrade/pins/v1" | epoch | geohash)`` (apart from local posts' slots, so a pin
reader downloads pins only). Copies leave through Dandelion stems (:meth:`KomradeNode.send`).

**Lifetime**: :data:`DEFAULT_TTL` (3 hours), at most :data:`MAX_PIN_TTL` (24 hours). The envelope's expiry is what
every holder purges on, so a pin is gone from every node after it; readers drop it too.

**Reading**: a reader at a position reads its cell at every geohash precision (:func:`komrade_dht.geo.reader_cells`)
for the epochs a live pin can be in, keeps the pins whose circle contains it, and, given a radius, only those
whose centre is within it. What the holders of those slots learn: which ~5 km cell the reader is in.

**Confirm / dismiss**: an anonymous vote (:mod:`.voting`) with the pin's id as scope, up = confirm, down = dismiss,
over the world registry electorate: one per identity per pin, unlinkable to the voter and across pins. A pin's
confirmations are tallied by each reader.

**What a pin reveals**: to holders and readers, its kind, text, coarsened centre, radius and times, and the IP
address of the stem relay that fluffed it (the author's address only to the first stem relay, which cannot tell
the author from a relay). Nothing in its bytes is the author's (tested).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from .. import codec, geo
from .. import envelope as env
from ..errors import CodecError, EnvelopeError, KomradeError
from ..node import KomradeNode
from ..slots import SlotParams
from ..votes import Electorate, RegistrationParams
from . import dm, voting
from .account import Account

CONTENT_TYPE = "pin"
KINDS = ("danger", "police", "medical", "help")
MAX_TEXT = 140
DEFAULT_TTL = 3 * 3600
MAX_PIN_TTL = 24 * 3600
DEFAULT_RADIUS_KM = 5.0
DEFAULT_PRECISION_KM = 1.0


@dataclass(frozen=True)
class Pin:
    """A live pin as a reader sees it. ``confirmed``/``dismissed``: its anonymous votes, if tallied."""

    id: str
    kind: str
    text: str
    lat: float
    lon: float
    radius_km: float
    posted_at: int
    expires_at: int
    distance_km: float
    confirmed: int | None = None
    dismissed: int | None = None


@dataclass(frozen=True)
class Dropped:
    id: str
    area: geo.PublishedArea
    envelopes: int
    acks: int
    expires_at: int


def pin_slot(epoch: int, geohash: str) -> bytes:
    """``BLAKE2b-160("komrade/pins/v1" | epoch | geohash)``."""
    return hashlib.blake2b(b"komrade/pins/v1" + epoch.to_bytes(4, "big") + geohash.encode("ascii"),
                           digest_size=20).digest()


def check_pin(kind: object, text: object, ttl: object) -> tuple[str, str, int]:
    if kind not in KINDS:
        raise KomradeError(f"a pin's kind is one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise KomradeError(f"a pin's text is at most {MAX_TEXT} characters")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_PIN_TTL:
        raise KomradeError(f"a pin lives from 1 second to {MAX_PIN_TTL // 3600} hours, not {ttl!r} seconds")
    return kind, text, ttl  # type: ignore[return-value]


async def drop_pin(
    account: Account, node: KomradeNode, kind: str, text: str, at: tuple[float, float], *,
    radius_km: float = DEFAULT_RADIUS_KM, precision_km: float = DEFAULT_PRECISION_KM, ttl: int = DEFAULT_TTL,
    params: SlotParams = SlotParams(), now: float | None = None,
) -> Dropped:
    """Drop an anonymous pin around ``at`` (coarsened here; the exact position never leaves the device).
    KomradeError / GeoError before anything is sent if an argument is wrong."""
    kind, text, ttl = check_pin(kind, text, ttl)
    lat, lon = geo.check_position(*at)
    area = geo.publish_area(lat, lon, radius_km, precision_km)
    now = time.time() if now is None else now
    body = codec.pack({"k": kind, "t": text, "geo": [area.lat, area.lon, area.radius_km]})
    burn_secret = os.urandom(16)
    epoch = params.epoch(now)
    slots = [pin_slot(epoch, cell) for cell in area.cells]

    def make(slot: bytes) -> bytes:
        return env.make_public(None, body, content_type=CONTENT_TYPE, ttl=ttl, now=now, burn_secret=burn_secret,
                               pow=node.config.pow, slot=slot)

    envelopes = [await asyncio.to_thread(make, s) for s in slots]
    acks = sum(await asyncio.gather(*(node.send(s, e) for s, e in zip(slots, envelopes))))
    pin_id = env.open_public(envelopes[0], now).post_id
    account.data.put("my_pin", pin_id, {"id": pin_id.hex(), "burn": burn_secret, "expires_at": int(now) + ttl,
                                        "precision_km": area.level_km,
                                        "copies": [[env.envelope_id(e), s] for e, s in zip(envelopes, slots)]})
    account.data.put("pin", pin_id, asdict(Pin(pin_id.hex(), kind, text, area.lat, area.lon, area.radius_km,
                                               int(now), int(now) + ttl, 0.0)))
    return Dropped(pin_id.hex(), area, len(envelopes), acks, int(now) + ttl)


async def remove_pin(account: Account, node: KomradeNode, pin_id: str) -> int:
    """Delete one of my pins from every holder before its lifetime ends; how many copies were deleted."""
    key = voting._scope_bytes(pin_id, "pin")
    record = account.data.get("my_pin", key)
    if record is None:
        raise KomradeError(f"no pin of yours with id {key.hex()}")
    burned = 0
    for envelope_id, slot in record["copies"]:
        burned += await node.burn(envelope_id, record["burn"], [slot])
    account.data.delete("my_pin", key)
    account.data.delete("pin", key)
    # a copy the burn did not reach (a holder offline) is not shown here again before it expires
    account.data.put("removed_pin", key, {"id": key.hex(), "expires_at": record["expires_at"]})
    return burned


def _decode(body: bytes) -> tuple[str, str, float, float, float]:
    try:
        obj = codec.unpack(body, max_len=1024, max_depth=2)
    except CodecError:
        raise EnvelopeError("pin body does not decode") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("pin body is not a map")
    kind, text, area = obj.get("k"), obj.get("t"), obj.get("geo")
    if kind not in KINDS or not isinstance(text, str) or len(text) > MAX_TEXT:
        raise EnvelopeError("pin has no valid kind or text")
    if not (isinstance(area, list) and len(area) == 3):
        raise EnvelopeError("pin has no valid area")
    try:
        lat, lon = geo.check_position(area[0], area[1])
        radius = geo.check_radius(area[2])
    except geo.GeoError as exc:
        raise EnvelopeError(f"pin has an invalid area: {exc}") from None
    return kind, text, lat, lon, radius


async def read_pins(
    account: Account, node: KomradeNode, at: tuple[float, float], *, radius_km: float | None = None,
    electorate: Electorate | None = None, params: SlotParams = SlotParams(), now: float | None = None,
) -> list[Pin]:
    """The live pins whose circle contains ``at`` (and whose centre is within ``radius_km`` of it, if given),
    nearest first, read from the network now (and remembered on this device so they can be confirmed). With an
    ``electorate``, each pin's confirmations and dismissals are tallied here."""
    lat, lon = geo.check_position(*at)
    if radius_km is not None:
        radius_km = geo.check_radius(radius_km)
    now = time.time() if now is None else now
    epochs = range(params.epoch(now - MAX_PIN_TTL), params.epoch(now) + 1)
    slots = [pin_slot(e, cell) for e in epochs for cell in geo.reader_cells(lat, lon)]
    gate = asyncio.Semaphore(dm.SYNC_PARALLEL_EPOCHS)
    found: dict[bytes, Pin] = {}

    async def read(slot: bytes) -> None:
        async with gate:
            got = await node.read_slot(slot, limits=voting._limits(node))
        for data in got.wanted:
            try:
                opened = env.open_public(data, now)
                if opened.content_type != CONTENT_TYPE or opened.author is not None:
                    continue
                kind, text, plat, plon, radius = _decode(opened.body)
            except EnvelopeError:
                continue
            if opened.expires_at <= now or opened.expires_at - opened.created > MAX_PIN_TTL:
                continue
            if not geo.in_area(plat, plon, radius, lat, lon):
                continue
            distance = geo.haversine_km(lat, lon, plat, plon)
            if radius_km is not None and distance > radius_km:
                continue
            found.setdefault(opened.post_id, Pin(opened.post_id.hex(), kind, text, plat, plon, radius,
                                                 opened.created, opened.expires_at, round(distance, 3)))

    await asyncio.gather(*(read(s) for s in slots))
    for mine in account.data.all("my_pin"):
        # our own pins are shown at once: a pin travels a stem before any holder has it, and the map that just
        # dropped one read the network too early to find it
        pin_id = bytes.fromhex(mine["id"])
        record = account.data.get("pin", pin_id)
        if pin_id in found or record is None or record["expires_at"] <= now:
            continue
        if not geo.in_area(record["lat"], record["lon"], record["radius_km"], lat, lon):
            continue
        distance = geo.haversine_km(lat, lon, record["lat"], record["lon"])
        if radius_km is None or distance <= radius_km:
            found[pin_id] = Pin(**{**record, "distance_km": round(distance, 3)})
    out = []
    for pin_id, pin in found.items():
        if account.data.get("removed_pin", pin_id) is not None:
            continue  # removed by us; a straggler copy outlived the burn
        if electorate is not None:
            t = await voting.tally_scope(node, pin_id, electorate, now=now)
            pin = Pin(**{**asdict(pin), "confirmed": t.up, "dismissed": t.down})
        account.data.put("pin", pin_id, asdict(pin))
        out.append(pin)
    _forget_expired(account, now)
    return sorted(out, key=lambda p: (p.distance_km, -p.posted_at, p.id))


def _forget_expired(account: Account, now: float) -> None:
    for kind in ("pin", "my_pin", "removed_pin"):
        for record in account.data.all(kind):
            if record["expires_at"] <= now:
                account.data.delete(kind, bytes.fromhex(record["id"]))


async def vote_on_pin(
    account: Account, node: KomradeNode, pin_id: str, confirm: bool, *, electorate: Electorate | None = None,
    reg_params: RegistrationParams = RegistrationParams(), now: float | None = None,
) -> voting.VoteCast:
    """Confirm (True) or dismiss (False) a pin this device has read, anonymously. KomradeError if the pin is
    unknown here or has expired."""
    key = voting._scope_bytes(pin_id, "pin")
    record: dict[str, Any] | None = account.data.get("pin", key)
    now = time.time() if now is None else now
    if record is None or record["expires_at"] <= now:
        raise KomradeError(f"no live pin {key.hex()} found: list the pins around you first (komrade pin list)")
    if electorate is None:
        await voting.ensure_registered(account, node, reg_params=reg_params, now=now)
        electorate = await voting.world_electorate(account, node, reg_params=reg_params, now=now)
    return await voting.vote_on_scope(account, node, key, "up" if confirm else "down", electorate,
                                      expires_at=record["expires_at"], now=now)
