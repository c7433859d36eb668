"""A person's account on this device: identity (from the keystore), contacts and messages (encrypted at rest)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..address import Address, decode_address
from ..errors import KomradeError
from ..identity import Identity, PublicIdentity, RootlessIdentity
from ..keystore import create_keystore, open_keystore
from . import pictures
from .userdata import UserData

KEYSTORE_FILE = "identity.keystore"
USERDATA_FILE = "user.sqlite"
#: Default slot width: 8 bits, so 1 in 256 users shares your slot. Wider means less to download and a smaller
#: crowd to hide in; a young network with few users can afford less.
DEFAULT_WIDTH = 8


@dataclass(frozen=True)
class Contact:
    """Someone whose address we saved, and whether we compared fingerprints in person."""

    name: str
    address: str
    fingerprint: str
    verified: bool = False


class Account:
    """The open identity and local data of one user. Use :meth:`create` or :meth:`open`, then :meth:`close`."""

    def __init__(self, data_dir: Path, identity: Identity, meta: dict[str, Any]) -> None:
        """``identity``: the keystore's key. For a device paired to an identity (``meta["identity"]``, issue 14)
        it is the device's own key, and :attr:`identity` is the identity's public half only."""
        self.data_dir = Path(data_dir)
        #: The key this device reads and writes with: the root identity itself, or a paired device's own key.
        self.device: Identity = identity
        self.identity: Identity | RootlessIdentity = identity
        if meta.get("identity"):
            self.identity = RootlessIdentity(PublicIdentity(bytes.fromhex(meta["identity"])))
        self.name: str = meta["name"]
        self.width: int = meta["width"]
        #: When this identity was made (0 if restored from a seed): nothing can have been sent to it before.
        self.created: int = meta.get("created", 0)
        self.data = UserData(self.data_dir / USERDATA_FILE, identity.local_data_key())
        pictures.import_plain_files(self)  # an earlier version's decrypted pictures: into the encrypted data

    @property
    def has_root(self) -> bool:
        """Whether this device holds the identity's root key (it made it, or joined from the recovery phrase)."""
        return isinstance(self.identity, Identity)

    @classmethod
    def create(
        cls,
        data_dir: Path,
        name: str,
        passphrase: str,
        *,
        width: int = DEFAULT_WIDTH,
        seed: bytes | None = None,
        **kdf: Any,
    ) -> Account:
        """Make a new identity in ``data_dir`` (refuses to replace an existing one). ``seed`` restores a known one;
        ``kdf`` passes Argon2id limits to the keystore."""
        name = name.strip()
        if not name or len(name) > 64:
            raise KomradeError("a name must be 1 to 64 characters")
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        identity = Identity.from_seed(seed) if seed is not None else Identity.generate()
        meta = {"name": name, "width": width, "created": int(time.time()) if seed is None else 0}
        Address(identity.verify_key, width)  # validates the width before anything is written
        create_keystore(data_dir / KEYSTORE_FILE, identity.seed, passphrase, meta, **kdf)
        return cls(data_dir, identity, meta)

    @classmethod
    def create_paired(
        cls, data_dir: Path, identity: PublicIdentity, name: str, width: int, passphrase: str, device_seed: bytes,
        **kdf: Any,
    ) -> Account:
        """Store a device paired to ``identity`` (issue 14): the keystore holds this device's own seed, never the
        identity's root seed. Refuses to replace an existing keystore."""
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        meta = {"name": name[:64] or "unnamed", "width": width, "created": int(time.time()),
                "identity": identity.verify_key.hex()}
        Address(identity.verify_key, width)
        create_keystore(data_dir / KEYSTORE_FILE, device_seed, passphrase, meta, **kdf)
        return cls(data_dir, Identity.from_seed(device_seed), meta)

    @classmethod
    def open(cls, data_dir: Path, passphrase: str) -> Account:
        """Open the identity in ``data_dir``; raises a KeystoreError subclass with a clear message if it can't."""
        seed, meta = open_keystore(Path(data_dir) / KEYSTORE_FILE, passphrase)
        return cls(Path(data_dir), Identity.from_seed(seed), meta)

    def close(self) -> None:
        self.data.close()

    @property
    def address(self) -> Address:
        return Address(self.identity.verify_key, self.width)

    @property
    def fingerprint(self) -> str:
        return self.identity.public.fingerprint()

    # -- contacts ----------------------------------------------------------------------------------------
    def add_contact(self, address_text: str, name: str) -> Contact:
        """Save someone's address under a name (the address is checked, typos are caught)."""
        address = decode_address(address_text)
        contact = Contact(name.strip() or "unnamed", address.text, PublicIdentity(address.verify_key).fingerprint())
        self.data.put("contact", address.verify_key, contact.__dict__)
        self.note_for_devices({"k": "contact", **contact.__dict__})
        return contact

    def contact(self, verify_key: bytes) -> Contact | None:
        record = self.data.get("contact", verify_key)
        return Contact(**record) if record else None

    def contacts(self) -> list[Contact]:
        return sorted((Contact(**r) for r in self.data.all("contact")), key=lambda c: c.name.lower())

    def verify_contact(self, verify_key: bytes) -> Contact:
        """Mark a contact as verified after comparing fingerprints in person."""
        contact = self.contact(verify_key)
        if contact is None:
            raise KomradeError("no such contact")
        verified = Contact(contact.name, contact.address, contact.fingerprint, True)
        self.data.put("contact", verify_key, verified.__dict__)
        self.note_for_devices({"k": "contact", **verified.__dict__})
        return verified

    def rename_contact(self, verify_key: bytes, name: str) -> Contact:
        """Give a contact another name (the address, fingerprint and verified mark stay)."""
        contact = self.contact(verify_key)
        if contact is None:
            raise KomradeError("no such contact")
        renamed = Contact(name.strip() or "unnamed", contact.address, contact.fingerprint, contact.verified)
        self.data.put("contact", verify_key, renamed.__dict__)
        self.note_for_devices({"k": "contact", **renamed.__dict__})
        return renamed

    def remove_contact(self, verify_key: bytes) -> bool:
        contact = self.contact(verify_key)
        if contact is not None:
            self.note_for_devices({"k": "uncontact", "address": contact.address})
        return self.data.delete("contact", verify_key)

    # -- own devices -------------------------------------------------------------------------------------
    def note_for_devices(self, event: dict[str, Any]) -> None:
        """Queue a change for this identity's other devices (sent by the next sync or send when there are any,
        :func:`komrade_dht.social.devices.flush`; dropped there when this is the only device)."""
        row_id = os.urandom(12)
        self.data.put("devsync_out", row_id, {"id": row_id, "at": time.time_ns(), "e": event})
