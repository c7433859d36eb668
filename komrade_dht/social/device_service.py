"""The local API's side of issue 14 (one identity on several devices): the list, pairing a new device in the
background while the app shows its code, and removal. Used by :mod:`komrade_dht.api.device_routes`."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any, Awaitable, Callable

from ..errors import DeviceError, KomradeError
from ..node import KomradeNode
from . import devices, pairing
from .account import Account

log = logging.getLogger(__name__)


class NoSuchDevice(DeviceError):
    """The device named is not in this identity's list (the API answers 404)."""


def qr_png(text: str, scale: int = 8) -> bytes:
    """``text`` as a QR code, PNG bytes (``scale`` pixels per module, 1..32)."""
    import segno

    if not 1 <= scale <= 32:
        raise KomradeError("scale must be between 1 and 32")
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


class DeviceService:
    """This identity's devices for the API: ``node`` gives the running node, ``spawn`` runs a background task."""

    def __init__(self, account: Account, node: Callable[[], KomradeNode],
                 spawn: Callable[[Awaitable[None], str], asyncio.Future[None]]) -> None:
        self.account = account
        self._node = node
        self._spawn = spawn
        self._pairing: dict[str, Any] | None = None
        self._code: pairing.PairingCode | None = None
        self._waiting: asyncio.Future[None] | None = None

    def list(self) -> dict[str, Any]:
        """``{root, removed, devices, pairing}``: the devices as this device last saw its list (``removed``: the list
        no longer names this paired device), and the pairing under way."""
        return {"root": self.account.has_root, "removed": devices.was_removed(self.account),
                "devices": [d.__dict__ for d in devices.my_devices(self.account)], "pairing": self.pairing()}

    def pairing(self) -> dict[str, Any] | None:
        """The latest pairing: ``{code, expires_at, state: waiting|paired|failed, device, error}``, or None."""
        if self._pairing is not None and self._pairing["state"] == "waiting" and time.time() >= self._pairing[
                "expires_at"]:
            self._pairing.update(state="failed", error="the pairing code expired; make a new one")
        return None if self._pairing is None else dict(self._pairing)

    def pair(self) -> dict[str, Any]:
        """Make a one-time code and wait in the background for the new device (a new code replaces an unused one)."""
        code = pairing.new_code(self.account)
        node = self._node()
        if self._waiting is not None:
            self._waiting.cancel()  # the code it waits for is replaced
        self._code = code
        state = {"code": code.text, "expires_at": code.expires_at, "state": "waiting", "device": None, "error": None}
        self._pairing = state

        async def wait() -> None:
            try:
                added = await pairing.accept(self.account, node, code)
            except asyncio.CancelledError:
                raise
            except KomradeError as exc:
                if self._code is code:
                    state.update(state="failed", error=str(exc))
                return
            state.update(state="paired", device=added.__dict__)

        self._waiting = self._spawn(wait(), "pairing")
        return dict(state)

    def pair_qr(self, scale: int) -> bytes:
        """The waiting pairing code as a QR code (PNG); NoSuchDevice if no pairing is waiting."""
        current = self.pairing()
        if current is None or current["state"] != "waiting":
            raise NoSuchDevice("no pairing is waiting: make a code first (POST /v1/pairing)")
        return qr_png(current["code"], scale)

    async def remove(self, key: str) -> dict[str, Any]:
        """Remove a device (root device only); NoSuchDevice if it is not listed."""
        if not any(d.key == key for d in devices.my_devices(self.account)):
            raise NoSuchDevice(f"no device {key[:80]!r} in this identity's list")
        return (await devices.remove_device(self.account, self._node(), key)).__dict__
