"""Where a node finds its first peers: ``bootstrap_nodes.txt``, ``--bootstrap`` and the table saved last run."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from pathlib import Path

from ..errors import KomradeError

log = logging.getLogger(__name__)

#: The repository's bootstrap_nodes.txt (found from a checkout or an editable install; an installed wheel has no
#: copy, so pass --bootstrap-file or --bootstrap there).
PACKAGED_BOOTSTRAP = Path(__file__).resolve().parents[2] / "bootstrap_nodes.txt"
MAX_SAVED_PEERS = 64


def parse_hostport(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` to a tuple; KomradeError with the offending text if malformed."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise KomradeError(f"not a host:port: {text!r} (expected e.g. 203.0.113.5:9475 or [2001:db8::1]:9475)")
    return host, int(port)


def read_bootstrap_file(path: Path) -> list[tuple[str, int]]:
    """Peers listed in a bootstrap file: one ``host:port`` per line, ``#`` starts a comment. Missing file: none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    peers = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            peers.append(parse_hostport(line))
        except KomradeError as exc:
            raise KomradeError(f"{path}:{number}: {exc}") from None
    return peers


def save_routing(path: Path, peers: list[tuple[str, int]]) -> None:
    """Save the peers we know to ``path`` as JSON (never pickle), atomically."""
    data = {"version": 1, "saved_at": int(time.time()), "peers": [[h, p] for h, p in peers[:MAX_SAVED_PEERS]]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def load_routing(path: Path) -> list[tuple[str, int]]:
    """Peers saved at the last run; a missing or damaged file yields none (it is only a cache) and a warning."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        if len(raw) > 64 * 1024:
            raise ValueError("file too large")
        data = json.loads(raw)
        peers = []
        for host, port in data["peers"][:MAX_SAVED_PEERS]:
            if not isinstance(host, str):
                raise ValueError("a host must be an IP address in text")
            ipaddress.ip_address(host)
            if not (isinstance(port, int) and 0 < port < 65536):
                raise ValueError("bad port")
            peers.append((host, port))
        return peers
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring damaged routing cache %s: %s", path, exc)
        return []
