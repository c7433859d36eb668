"""Finding or starting the user's node (``komrade node``, a separate process) and stopping it.

The only things done here without the API are what must happen before a node can run: creating the keystore
(onboarding), checking a passphrase against it (so a wrong one is a clear message, not a failed process), and
starting the process. The passphrase reaches the child in its environment (``KOMRADE_PASSPHRASE``, readable only
by this user and root) and is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from komrade_dht.api import ApiClient, NodeNotRunning
from komrade_dht.api.client import read_endpoint
from komrade_dht.errors import KeystoreCorrupt, KeystoreError, KeystoreNotFound, KeystoreTruncated, WrongPassphrase
from komrade_dht.keystore import open_keystore
from komrade_dht.social import Account

KEYSTORE_FILE = "identity.keystore"
NODE_LOG = "node.log"
#: Seconds a node may take from start to serving its API (joining the network included).
START_TIMEOUT = 60.0
#: Seconds a node has to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 20.0


class UnlockError(Exception):
    """What went wrong opening the identity, in words for the person at the window."""


@dataclass
class NodeOptions:
    """How to start a node: its data directory and where it joins (flags of ``komrade node``)."""

    data_dir: Path
    bootstrap: tuple[str, ...] = ()
    bootstrap_file: str | None = None
    sync_interval: float | None = None


def explain(exc: KeystoreError, path: Path) -> str:
    if isinstance(exc, WrongPassphrase):
        return "Wrong passphrase. Check it (caps lock?) and try again."
    if isinstance(exc, (KeystoreCorrupt, KeystoreTruncated)):
        return (f"Your keystore ({path}) is damaged and cannot be opened. Restore it from a backup, or move it "
                "away and restore your identity from its recovery text (first screen).")
    if isinstance(exc, KeystoreNotFound):
        return f"There is no identity in {path.parent} yet: create one."
    return f"Your identity cannot be opened: {exc}"


class NodeHost:
    """One data directory's node: ``find()`` one that runs, or ``start(passphrase)`` ours; ``stop()`` stops only
    a node this object started."""

    def __init__(self, options: NodeOptions) -> None:
        self.options = options
        self.data_dir = Path(options.data_dir).expanduser()
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def keystore(self) -> Path:
        return self.data_dir / KEYSTORE_FILE

    def has_identity(self) -> bool:
        return self.keystore.exists()

    # -- before the node: keystore ---------------------------------------------------------------------------
    async def create(self, name: str, passphrase: str, seed: bytes | None = None) -> bytes:
        """Create the identity (Argon2id runs in a thread, the window keeps drawing); returns its seed (for the
        recovery text shown once)."""
        def make() -> bytes:
            account = Account.create(self.data_dir, name, passphrase, seed=seed)
            try:
                return account.identity.seed
            finally:
                account.close()

        return await asyncio.to_thread(make)

    async def check_passphrase(self, passphrase: str) -> bytes:
        """The seed if ``passphrase`` opens the keystore; UnlockError with a clear message otherwise."""
        try:
            seed, _meta = await asyncio.to_thread(open_keystore, self.keystore, passphrase)
        except KeystoreError as exc:
            raise UnlockError(explain(exc, self.keystore)) from None
        return seed

    # -- the node ----------------------------------------------------------------------------------------------
    async def find(self) -> ApiClient | None:
        """A client of a node already running for this data directory (started by the CLI, or earlier), or None."""
        try:
            url, token = read_endpoint(self.data_dir)
        except NodeNotRunning:
            return None
        api = ApiClient(url, token, timeout=30)
        try:
            if await api.health():
                return api
        except Exception:
            pass
        await api.close()
        return None

    async def start(self, passphrase: str) -> ApiClient:
        """Start ``komrade node`` for this data directory and return a client once its API answers."""
        o = self.options
        args = [sys.executable, "-m", "komrade_dht", "--data-dir", str(self.data_dir), "node"]
        for peer in o.bootstrap:
            args += ["--bootstrap", peer]
        if o.bootstrap_file:
            args += ["--bootstrap-file", o.bootstrap_file]
        if o.sync_interval:
            args += ["--sync-interval", str(o.sync_interval)]
        env = dict(os.environ, KOMRADE_PASSPHRASE=passphrase)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = open(self.data_dir / NODE_LOG, "ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *args, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the app, which stops the node itself
            )
        finally:
            log.close()
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        url = ""
        while not url:
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                await self.stop()
                raise NodeNotRunning(f"your node did not start within {START_TIMEOUT:.0f} s (see {self.data_dir / NODE_LOG})") from None
            if not line:
                code = await self.process.wait()
                self.process = None
                raise NodeNotRunning(f"your node stopped at start (exit {code}): {self._last_error()}")
            text = line.decode("utf-8", "replace").strip()
            if text.startswith("API on "):
                url = text[len("API on "):]
        self._drain = asyncio.ensure_future(self._drain_stdout())
        _, token = read_endpoint(self.data_dir)
        return ApiClient(url, token, timeout=30)

    def _last_error(self) -> str:
        try:
            lines = (self.data_dir / NODE_LOG).read_text("utf-8", "replace").strip().splitlines()
        except OSError:
            return "no log"
        errors = [line for line in lines[-20:] if "error" in line.lower()]
        return (errors or lines or ["no log"])[-1][:300]

    async def _drain_stdout(self) -> None:
        process = self.process
        if process is None or process.stdout is None:
            return
        with contextlib.suppress(Exception):
            while await process.stdout.readline():
                pass

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self) -> int | None:
        """SIGTERM our node and wait for it (it saves its state and closes its stores: nothing it acknowledged is
        lost); SIGKILL only if it has not stopped after STOP_TIMEOUT seconds. Returns its exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(BaseException):
                await self._drain
            self._drain = None
        return process.returncode
