"""A relay for operators: a DHT node that holds envelopes for everyone and has no identity, made to run for months.

* configuration from a TOML file (:class:`RelayConfig`; every key, with its default, in ``docs/relay.toml.example``),
  command-line flags override it;
* structured logs with levels (text, or JSON lines for log collectors);
* resource caps: disk (the store's quota) and peers (routing-table contacts);
* a status and metrics endpoint on loopback (``/status`` JSON, ``/metrics`` in Prometheus text format), whose URL
  goes to ``metrics.json`` in the data directory so that ``komrade relay --status`` finds it;
* a clean stop on SIGTERM/SIGINT: the endpoint closes, the routing table is saved, the store is closed (SQLite
  checkpoints its WAL into the database file). Every envelope the relay acknowledged was committed before the
  acknowledgement left, so even ``kill -9`` loses nothing acknowledged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import math
import os
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import KomradeError
from .node import KomradeNode, NodeConfig
from .node.bootstrap import PACKAGED_BOOTSTRAP, parse_hostport, read_bootstrap_file
from .storage import Store, StoreLimits

log = logging.getLogger("komrade.relay")

RELAY_DB = "relay.sqlite"
ADDR_FILE = "relay.addr"
METRICS_FILE = "metrics.json"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class ConfigError(KomradeError):
    """The relay's configuration file or flags hold a value that cannot be used (the message names the key)."""


class RelayNotRunning(KomradeError):
    """No relay is running for this data directory, or its status endpoint is off (metrics_listen = "off")."""


@dataclass(frozen=True)
class RelayConfig:
    """Everything an operator can set. Keys of the TOML file have the same names; unknown keys are refused."""

    data_dir: str = ""
    """Where the relay keeps relay.sqlite, routing.json, relay.addr and metrics.json. Empty: --data-dir, else
    $KOMRADE_HOME, else the platform's user data directory."""
    listen: str = "127.0.0.1:9475"
    """UDP HOST:PORT of the node. Use the public address (or 0.0.0.0) on a server; port 0 picks a free port."""
    bootstrap: tuple[str, ...] = ()
    """HOST:PORT of nodes to join through, besides bootstrap_file and the routing table saved at the last run."""
    bootstrap_file: str = ""
    """File of HOST:PORT lines (# comments). Empty: the bootstrap_nodes.txt shipped with komrade."""
    ksize: int = 20
    """k: how many closest nodes hold each slot (must match the network's)."""
    purge_interval: float = 60.0
    """Seconds between purges of expired envelopes."""
    max_disk_bytes: int = 512 * 2**20
    """Quota of the store: envelopes, slot entries and records together (bytes). Past it, new writes are refused;
    nothing acknowledged is dropped."""
    max_peers: int = 1000
    """Most contacts kept in the routing table (0: no cap beyond kademlia's own). Checked every few seconds; the
    least recently seen contacts of the fullest buckets are dropped. At least ksize."""
    log_level: str = "info"
    """debug, info, warning or error."""
    log_format: str = "text"
    """text (one readable line per record) or json (one JSON object per line: ts, level, logger, message)."""
    metrics_listen: str = "127.0.0.1:0"
    """Loopback HOST:PORT of the status/metrics HTTP endpoint (port 0: any free port; its URL goes to
    metrics.json). "off" disables it, and with it `komrade relay --status`."""
    tcp_listen: str = "off"
    """TCP HOST:PORT of the service for clients that run no DHT node (untraceable mode, through Tor;
    :mod:`komrade_dht.relay_tcp`). "off" (the default) offers none."""

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"relay config: {key} = {getattr(self, key)!r}: {what}")

        for key in ("data_dir", "listen", "bootstrap_file", "log_level", "log_format", "metrics_listen", "tcp_listen"):
            need(isinstance(getattr(self, key), str), key, "must be a string")
        need(isinstance(self.bootstrap, tuple) and all(isinstance(b, str) for b in self.bootstrap),
             "bootstrap", "must be a list of \"HOST:PORT\" strings")
        for key in ("ksize", "max_disk_bytes", "max_peers"):
            value = getattr(self, key)
            need(isinstance(value, int) and not isinstance(value, bool), key, "must be an integer")
        need(isinstance(self.purge_interval, (int, float)) and not isinstance(self.purge_interval, bool)
             and math.isfinite(self.purge_interval) and self.purge_interval > 0, "purge_interval",
             "must be a positive number of seconds")
        need(1 <= self.ksize <= 100, "ksize", "must be between 1 and 100")
        need(self.max_disk_bytes >= 2**20, "max_disk_bytes", "must be at least 1 MiB (1048576)")
        need(self.max_peers == 0 or self.max_peers >= self.ksize, "max_peers",
             f"must be 0 (no cap) or at least ksize ({self.ksize}): lookups need k contacts")
        need(self.log_level in LOG_LEVELS, "log_level", f"must be one of {', '.join(LOG_LEVELS)}")
        need(self.log_format in LOG_FORMATS, "log_format", f"must be one of {', '.join(LOG_FORMATS)}")
        for key, text in [("listen", self.listen), *(("bootstrap", b) for b in self.bootstrap)]:
            try:
                parse_hostport(text)
            except (KomradeError, ValueError) as exc:
                raise ConfigError(f"relay config: {key}: {exc}") from None
        try:
            ipaddress.ip_address(parse_hostport(self.listen)[0])
        except ValueError:
            raise ConfigError(f"relay config: listen = {self.listen!r}: the host must be an IP address") from None
        if self.metrics_listen != "off":
            try:
                host, _ = parse_hostport(self.metrics_listen)
            except (KomradeError, ValueError) as exc:
                raise ConfigError(f"relay config: metrics_listen: {exc}") from None
            need(_loopback(host), "metrics_listen",
                 'must be on loopback (127.0.0.1 or [::1]) or "off": put a reverse proxy in front to scrape it remotely')

        if self.tcp_listen != "off":
            try:
                host, _ = parse_hostport(self.tcp_listen)
                ipaddress.ip_address(host)
            except (KomradeError, ValueError) as exc:
                raise ConfigError(f"relay config: tcp_listen = {self.tcp_listen!r}: an IP HOST:PORT or \"off\" ({exc})") from None

    @classmethod
    def from_toml(cls, path: Path | str) -> RelayConfig:
        """Read a TOML file; every key is optional (defaults above). ConfigError names what is wrong."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read relay config {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"relay config {path} is not valid TOML: {exc}") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "relay config") -> RelayConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        values = dict(raw)
        if "bootstrap" in values:
            if not isinstance(values["bootstrap"], list):
                raise ConfigError(f'{source}: bootstrap must be a list of "HOST:PORT" strings')
            values["bootstrap"] = tuple(values["bootstrap"])
        if isinstance(values.get("purge_interval"), int) and not isinstance(values["purge_interval"], bool):
            values["purge_interval"] = float(values["purge_interval"])
        return cls(**values)

    def override(self, **flags: Any) -> RelayConfig:
        """A copy with every flag that is not None put over the file's value."""
        changes = {k: (tuple(v) if k == "bootstrap" else v) for k, v in flags.items() if v is not None}
        return dataclasses.replace(self, **changes)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- logs ------------------------------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, message, and exc when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str, fmt: str, stream: Any = None) -> None:
    """Send every log record at ``level`` or above to stderr, as text or JSON lines (replaces earlier handlers)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


# -- the relay -----------------------------------------------------------------------------------------------------
@dataclass
class Relay:
    """One relay process's work: node, store, caps, status endpoint. ``await start()``, then ``await close()``."""

    config: RelayConfig
    data_dir: Path
    node: KomradeNode | None = None
    metrics_url: str = ""
    started_at: float = field(default_factory=time.time)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _runner: Any = None
    tcp: Any = None
    """The TCP service (:class:`komrade_dht.relay_tcp.TcpService`) when ``tcp_listen`` is not "off"."""

    async def start(self) -> tuple[str, int]:
        """Open the store, listen, write relay.addr, start the status endpoint and the peer cap, then join.
        Returns the bound UDP address."""
        host, port = parse_hostport(self.config.listen)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = Store(self.data_dir / RELAY_DB, StoreLimits(max_bytes=self.config.max_disk_bytes))
        node_config = NodeConfig(
            ksize=self.config.ksize, purge_interval=self.config.purge_interval, max_contacts=self.config.max_peers
        )
        self.node = KomradeNode(store, config=node_config, state_dir=self.data_dir)
        self.started_at = time.time()
        bound = await self.node.listen(port, host)
        (self.data_dir / ADDR_FILE).write_text("%s:%d\n" % bound)
        if self.config.metrics_listen != "off":
            await self._start_metrics()
        if self.config.tcp_listen != "off":
            from .relay_tcp import TcpService

            self.tcp = TcpService(self.node)
            await self.tcp.start(*parse_hostport(self.config.tcp_listen))
        peers = [parse_hostport(b) for b in self.config.bootstrap]
        bootstrap_file = Path(self.config.bootstrap_file) if self.config.bootstrap_file else PACKAGED_BOOTSTRAP
        peers += read_bootstrap_file(bootstrap_file)
        joined = await self.node.bootstrap(peers)
        log.info("relay %s on %s:%d joined, %d peers known", self.node.node.id.hex()[:12], *bound, len(joined))
        return bound

    async def close(self) -> None:
        """Stop the endpoint and the tasks, then the node (routing table saved, store closed and checkpointed)."""
        tcp, self.tcp = self.tcp, None
        if tcp is not None:
            await tcp.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            try:
                if self.metrics_url in (self.data_dir / METRICS_FILE).read_text():
                    (self.data_dir / METRICS_FILE).unlink()
            except OSError:
                pass
        node, self.node = self.node, None
        if node is not None:
            await node.stop_async()
            log.info("relay stopped; store closed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- status ----------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        if self.node is None:
            raise RelayNotRunning("the relay is not running")
        raw = self.node.status()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "data_dir": str(self.data_dir),
            "node_id": raw.get("node_id", ""),
            "address": raw.get("address", ""),
            "peers": int(raw.get("peers", 0)),
            "max_peers": self.config.max_peers,
            "peers_refused": raw["counters"].get("contact_refused_cap", 0),
            "envelopes": int(raw.get("envelopes", 0)),
            "bytes": int(raw.get("bytes", 0)),
            "max_disk_bytes": self.config.max_disk_bytes,
            "slots": int(raw.get("slots", 0)),
            "uptime_s": round(time.time() - self.started_at, 1),
            "counters": {str(k): int(v) for k, v in dict(raw.get("counters", {})).items()},
            **({"tcp": self.tcp.status()} if self.tcp is not None else {}),
        }

    def metrics(self) -> str:
        """The status in Prometheus text exposition format (version 0.0.4)."""
        s = self.status()
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                text = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")

        metric("komrade_relay_info", "gauge", "Version and node id of this relay (always 1).",
               [({"version": s["version"], "node_id": s["node_id"]}, 1)])
        metric("komrade_uptime_seconds", "gauge", "Seconds since the relay started.", [({}, s["uptime_s"])])
        metric("komrade_peers", "gauge", "Contacts in the routing table.", [({}, s["peers"])])
        metric("komrade_peers_max", "gauge", "The max_peers cap (0: none).", [({}, s["max_peers"])])
        metric("komrade_peers_refused_total", "counter", "Contacts refused to keep under max_peers.",
               [({}, s["peers_refused"])])
        metric("komrade_envelopes", "gauge", "Envelopes held (expired ones until purged).", [({}, s["envelopes"])])
        metric("komrade_stored_bytes", "gauge", "Bytes accounted against the disk quota.", [({}, s["bytes"])])
        metric("komrade_stored_bytes_max", "gauge", "The max_disk_bytes quota.", [({}, s["max_disk_bytes"])])
        metric("komrade_slots", "gauge", "Index slots held.", [({}, s["slots"])])
        counters: dict[str, int] = s["counters"]
        metric("komrade_datagrams_total", "counter", "UDP datagrams received and sent.",
               [({"direction": "in"}, counters.get("datagrams_in", 0)),
                ({"direction": "out"}, counters.get("datagrams_out", 0))])
        metric("komrade_network_bytes_total", "counter", "UDP payload bytes received and sent.",
               [({"direction": "in"}, counters.get("bytes_in", 0)),
                ({"direction": "out"}, counters.get("bytes_out", 0))])
        metric("komrade_dropped_total", "counter", "Datagrams dropped, by reason.",
               [({"reason": k.removeprefix("dropped_")}, v) for k, v in sorted(counters.items())
                if k.startswith("dropped_")])
        metric("komrade_rpc_requests_total", "counter", "RPC requests handled, by method.",
               [({"method": k.removeprefix("rpc_")}, v) for k, v in sorted(counters.items()) if k.startswith("rpc_")])
        tcp = s.get("tcp")
        if tcp is not None:
            tcp_counters: dict[str, int] = tcp["counters"]
            metric("komrade_tcp_connections", "gauge", "Open connections to the TCP service.", [({}, tcp["open"])])
            metric("komrade_tcp_accepted_total", "counter", "Connections accepted by the TCP service.",
                   [({}, tcp_counters.get("accepted", 0))])
            metric("komrade_tcp_requests_total", "counter", "TCP service requests, by op.",
                   [({"op": k.removeprefix("op_")}, v) for k, v in sorted(tcp_counters.items()) if k.startswith("op_")])
            metric("komrade_tcp_errors_total", "counter", "TCP service refusals, by error code.",
                   [({"code": k.removeprefix("error_")}, v) for k, v in sorted(tcp_counters.items())
                    if k.startswith("error_")])
        others = {k: v for k, v in counters.items() if not k.startswith(("dropped", "rpc_", "datagrams_", "bytes_"))}
        if others:
            metric("komrade_node_events_total", "counter", "Other node counters (timeouts, bad replies, ...).",
                   [({"event": k}, v) for k, v in sorted(others.items())])
        return "\n".join(out) + "\n"

    async def _start_metrics(self) -> None:
        from aiohttp import web

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(text=self.metrics(), content_type="text/plain", charset="utf-8",
                                headers={"X-Content-Type-Options": "nosniff"})

        async def status(request: web.Request) -> web.Response:
            return web.json_response(self.status())

        async def health(request: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        app = web.Application(client_max_size=1024)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/status", status)
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        host, port = parse_hostport(self.config.metrics_listen)
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.metrics_url = f"http://[{bound_host}]:{bound_port}" if ":" in bound_host else f"http://{bound_host}:{bound_port}"
        tmp = self.data_dir / f".{METRICS_FILE}.tmp"
        tmp.write_text(json.dumps({"url": self.metrics_url, "pid": os.getpid()}) + "\n")
        os.replace(tmp, self.data_dir / METRICS_FILE)
        log.info("status and metrics on %s (/status, /metrics)", self.metrics_url)


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


async def run_relay(config: RelayConfig, data_dir: Path, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set, then stop cleanly (the CLI sets it on SIGINT/SIGTERM)."""
    relay = Relay(config, data_dir)
    try:
        bound = await relay.start()
        print(f"listening on {bound[0]}:{bound[1]}", flush=True)
        if relay.metrics_url:
            print(f"metrics on {relay.metrics_url}/metrics", flush=True)
        if relay.tcp is not None:
            print("tcp on %s:%d" % relay.tcp.address, flush=True)
        await stop.wait()
        log.info("stopping (signal)")
    finally:
        await relay.close()


def fetch_status(data_dir: Path, timeout: float = 5.0) -> dict[str, Any]:
    """The running relay's status, from the endpoint named in ``metrics.json`` (blocking)."""
    import urllib.error
    import urllib.request

    try:
        info = json.loads((data_dir / METRICS_FILE).read_text())
        url = info["url"]
    except FileNotFoundError:
        raise RelayNotRunning(
            f"no relay is running for {data_dir} (no {METRICS_FILE}; is its metrics_listen \"off\"?)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RelayNotRunning(f"cannot read {data_dir / METRICS_FILE}: {exc}") from None
    if not isinstance(url, str) or not url.startswith("http://"):
        raise RelayNotRunning(f"{data_dir / METRICS_FILE} is not a komrade relay file")
    try:
        with urllib.request.urlopen(url + "/status", timeout=timeout) as response:  # noqa: S310 (loopback http)
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RelayNotRunning(f"the relay for {data_dir} does not answer at {url} ({exc}): is it running?") from None


def format_status(s: dict[str, Any]) -> str:
    """The status for a person."""
    up = int(s.get("uptime_s", 0))
    counters = s.get("counters", {})
    dropped = sum(v for k, v in counters.items() if k.startswith("dropped_"))
    cap = s.get("max_peers") or "none"
    return "\n".join([
        f"relay {s.get('address')}  node {str(s.get('node_id'))[:16]}  komrade {s.get('version')}  pid {s.get('pid')}",
        f"up {up // 86400}d {up % 86400 // 3600}h {up % 3600 // 60}m {up % 60}s",
        f"peers {s.get('peers')} (cap {cap}, {s.get('peers_refused', 0)} refused)",
        f"envelopes {s.get('envelopes')}  slots {s.get('slots')}  "
        f"stored {s.get('bytes', 0) / 2**20:.1f} MiB of {s.get('max_disk_bytes', 0) / 2**20:.0f} MiB",
        f"datagrams in {counters.get('datagrams_in', 0)} out {counters.get('datagrams_out', 0)}  dropped {dropped}",
    ])
