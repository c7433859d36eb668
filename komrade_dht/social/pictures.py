"""Decrypted pictures (post images, profile photos, event pictures), kept on this device encrypted at rest.

A picture fetched from the network is opened here, and a plaintext copy on disk would undo the encryption of
everything else the account keeps (a stolen laptop shows whose photos its owner looked at). So pictures live in
the account's :class:`~komrade_dht.social.userdata.UserData` like any other record: one SecretBox row each, under
a keyed row id. Readers ask for the bytes (:func:`load`, the API's picture routes); a user who wants a file exports
one on purpose (``komrade image``).

Earlier versions wrote ``images/*.jpg`` in the data directory; :func:`import_plain_files` moves them in and deletes
the files the first time an account is opened.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .account import Account

log = logging.getLogger(__name__)

KIND = "picture"
#: The largest picture kept (the network's own limits are lower: 256 KB for a post, 60 KB for a photo).
MAX_BYTES = 1 << 19


def post_name(post_key: bytes) -> str:
    return post_key.hex()


def profile_name(record_key: bytes) -> str:
    return f"profile-{record_key.hex()}"


def event_name(event_id: str) -> str:
    return f"event-{event_id}"


def keep(account: Account, name: str, data: bytes) -> None:
    """Keep ``data`` under ``name`` (replacing what was there), encrypted in the account's data."""
    if len(data) > MAX_BYTES:
        raise ValueError(f"a picture of {len(data)} bytes is larger than the {MAX_BYTES} kept")
    account.data.put(KIND, name.encode(), {"jpg": bytes(data)})


def load(account: Account, name: str) -> bytes | None:
    """The picture kept under ``name``, or None."""
    record = account.data.get(KIND, name.encode())
    data = record.get("jpg") if record else None
    return data if isinstance(data, bytes) else None


def forget(account: Account, name: str) -> bool:
    return account.data.delete(KIND, name.encode())


def import_plain_files(account: Account) -> int:
    """Move the pictures an earlier version left decrypted in ``images/`` into the encrypted data, delete the files
    (and the directory once empty); returns how many moved. Files that are not ours are left alone."""
    directory = Path(account.data_dir) / "images"
    if not directory.is_dir():
        return 0
    moved = 0
    for path in sorted(directory.glob("*.jpg")):
        try:
            data = path.read_bytes()
            if len(data) <= MAX_BYTES:
                keep(account, path.stem, data)
                moved += 1
            path.unlink()
        except OSError as exc:
            log.warning("could not move %s into the encrypted data: %s", path.name, exc)
    try:
        directory.rmdir()
    except OSError:
        pass  # something else is in it: not ours to delete
    return moved
