"""A relay's TCP service: the client half of the protocol, for clients that run no DHT node (untraceable mode).

A client in untraceable mode (:mod:`komrade_dht.torclient`) reaches this service through Tor, so the relay sees a
Tor exit's address (or, for an onion service, none), never the client's. The relay does the DHT work with its own
node and its own checks; the client keeps its key: a read returns the *heads* of a slot's envelopes (fixed fields
and recipient headers), the client trial-decrypts them and fetches only the envelopes that open under its key.

**Framing.** Every message is a 4-byte big-endian length, then that many bytes of msgpack decoded by
:func:`komrade_dht.codec.unpack` (bounded sizes and depth, no ext types, no trailing bytes). A request is a map
``{"v": 1, "op": ..., ...}``; a reply is ``{"ok": true, ...}`` or ``{"ok": false, "error": CODE, "message": TEXT}``.
Requests are answered in order, one at a time per connection.

**Operations.**

=========  ==========================================  ===============================================================
op         request fields                              reply fields
=========  ==========================================  ===============================================================
hello      (none)                                      ``v``, ``pow`` (the network's proof-of-work parameters), limits
publish    ``slot`` (20 bytes), ``envelope``           ``acks``: holders that committed it (after this relay checked
                                                       format, size and proof of work bound to the slot)
read       ``slot``, ``known`` (ids, concatenated)     ``count``: ids of the slot not in ``known`` whose heads it
                                                       keeps (``truncated`` if it found more than it may hold)
heads      ``offset``                                  ``heads`` ([[id, head], ...], <= 256 KiB), ``next`` (or nil)
fetch      ``ids`` (<= 32, from the last read)         ``envelopes``: those envelopes whole, checked by the relay
burn       ``key``, ``secret``, ``slots`` (<= 8)       ``deleted``: holders that deleted their copy
put_record ``record`` (a signed mutable record)          ``acks``: holders that accepted it (after this relay verified it)
get_record ``key`` (20 bytes)                          ``record``: the newest valid one its holders gave (or nil); the
                                                       client verifies it again (a relay cannot forge one)
store      ``blobs`` (<= 64 envelopes)                 ``stored``: how many (every one, or the error ``unavailable``),
                                                       each under its own id on the id's holders (content chunks: a
                                                       post's picture and long text, an event's picture), after this
                                                       relay checked format and proof of work
get_blobs  ``ids`` (<= 64 ids)                         ``blobs``: the envelopes stored under those ids that holders
                                                       gave (each checked against its id here and by the client)
=========  ==========================================  ===============================================================

**Error codes**: ``bad_frame`` (not a msgpack map, or a length of 0), ``too_large`` (frame over the limit),
``version``, ``unknown_op``, ``bad_request`` (a missing or malformed field), ``bad_envelope``, ``bad_pow``, ``bad_record``,
``no_read`` (heads/fetch before a read), ``unavailable`` (no holder answered), ``refused`` (this relay's disk
quota), ``busy`` (connection or operation limits), ``timeout``, ``too_many_requests`` (per connection),
``internal`` (a bug here: logged on the relay; the peer gets the code and never a traceback).

**Limits** (:class:`TcpLimits`): connections in all and per source address (every client behind one Tor exit
shares its address, so the per-address cap is generous and the proof of work stays the real price of a write),
requests per connection, an idle timeout per frame, a lifetime per connection, a timeout per operation and a cap on
DHT operations in flight for all connections together.

Each accepted connection's peer address is logged (logger ``komrade.relay.tcp``, level info) and kept in
:attr:`TcpService.accepted` (the last ``accept_log`` of them): the "accept log" an operator, or a test, reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import codec, records
from . import envelope as env
from .errors import CodecError, EnvelopeError, NetworkError, RecordError, StorageError

if TYPE_CHECKING:
    from .node import KomradeNode

log = logging.getLogger("komrade.relay.tcp")

PROTOCOL_VERSION = 1
#: Largest request frame: a read's ``known`` ids (``MAX_KNOWN`` x 20 bytes) and a little room.
MAX_REQUEST = 256 * 1024
#: Largest reply frame a client accepts (a page of heads stays under ``HEADS_PAGE_BYTES``).
MAX_REPLY = 1024 * 1024
#: Most ids a read's ``known`` may carry (the node's own ``ids_per_read`` default).
MAX_KNOWN = 12_000
#: Bytes of heads per ``heads`` page (ids and heads; a one-recipient head is 111 bytes).
HEADS_PAGE_BYTES = 256 * 1024
#: Most ids per ``fetch``.
MAX_FETCH = 32
#: Most slots per ``burn``.
MAX_BURN_SLOTS = 8
#: Most content blobs per ``store`` or ``get_blobs`` (64 of the largest envelope class fit a frame many times).
MAX_BLOBS = 64
ID_LEN = 20


@dataclass(frozen=True)
class TcpLimits:
    """What one relay's TCP service lets its clients cost it."""

    max_connections: int = 256
    """Open connections in all; the next one is told ``busy`` and closed."""
    max_per_address: int = 64
    """Open connections from one source address (a Tor exit carries many users: keep this generous)."""
    max_requests: int = 64
    """Requests per connection (an action is a few: a read, its head pages and fetches)."""
    idle_timeout: float = 30.0
    """Seconds to wait for the next frame, and to send a reply."""
    lifetime: float = 300.0
    """Seconds a connection may stay open in all."""
    op_timeout: float = 90.0
    """Seconds one operation may take on the DHT (a slot read pages every holder)."""
    concurrent_ops: int = 16
    """DHT operations in flight at once, all connections together; others wait (within ``op_timeout``)."""
    accept_log: int = 10_000
    heads_per_connection: int = 2 * 2**20
    """Bytes of heads one connection's last read may hold for its pages and fetches; a read that finds more keeps
    this much and says ``truncated`` (the client's next sync, which knows more ids, gets the rest)."""
    heads_in_all: int = 64 * 2**20
    """Bytes of heads all connections together may hold; a read past it is told ``busy``."""
    """Accepted peer addresses kept in memory (:attr:`TcpService.accepted`)."""


class _Refusal(Exception):
    """Answer the request with this error code and message (never a traceback)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _ReadState:
    slot: bytes
    known: set[bytes]
    heads: list[tuple[bytes, bytes]]
    size: int = 0


def _bytes(req: dict[str, Any], key: str, length: int | None = None, max_len: int = MAX_REQUEST) -> bytes:
    value = req.get(key)
    if not isinstance(value, bytes) or (length is not None and len(value) != length) or len(value) > max_len:
        want = f"{length} bytes" if length is not None else "bytes"
        raise _Refusal("bad_request", f"field {key!r} must be {want}")
    return value


class TcpService:
    """``await start(host, port)`` serves ``node`` on TCP until ``await close()``."""

    def __init__(self, node: KomradeNode, limits: TcpLimits = TcpLimits()) -> None:
        self.node = node
        self.limits = limits
        self.accepted: deque[tuple[str, int]] = deque(maxlen=limits.accept_log)
        self.counters: Counter[str] = Counter()
        self._server: asyncio.base_events.Server | None = None
        self._per_address: Counter[str] = Counter()
        self._open = 0
        self._ops = asyncio.Semaphore(limits.concurrent_ops)
        self._handlers: set[asyncio.Task[Any]] = set()
        self._heads_bytes = 0

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None and self._server.sockets, "the TCP service is not listening"
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, host, port, limit=2**16)
        log.info("TCP service on %s:%d", *self.address)
        return self.address

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    def status(self) -> dict[str, Any]:
        return {"open": self._open, "heads_bytes": self._heads_bytes, "counters": dict(self.counters)}

    # -- connections ---------------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        host, port = str(peer[0]), int(peer[1])
        self.accepted.append((host, port))
        self.counters["accepted"] += 1
        log.info("accepted TCP connection from %s:%d", host, port)
        try:
            if self._open >= self.limits.max_connections or self._per_address[host] >= self.limits.max_per_address:
                self.counters["refused_busy"] += 1
                await self._send(writer, self._error("busy", "too many connections; try again later"))
                return
            self._open += 1
            self._per_address[host] += 1
            try:
                await self._serve(reader, writer)
            finally:
                self._open -= 1
                self._per_address[host] -= 1
                if self._per_address[host] <= 0:
                    del self._per_address[host]
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            self.counters["dropped"] += 1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        deadline = time.monotonic() + self.limits.lifetime
        state: dict[str, _ReadState] = {}
        try:
            await self._requests(reader, writer, deadline, state)
        finally:
            self._hold(state, None)

    def _hold(self, state: dict[str, _ReadState], read: _ReadState | None) -> None:
        """Make ``read`` the connection's read (None: drop it), keeping the global count of heads bytes held."""
        old = state.pop("read", None)
        if old is not None:
            self._heads_bytes -= old.size
        if read is not None:
            state["read"] = read
            self._heads_bytes += read.size

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float,
                        state: dict[str, _ReadState]) -> None:
        requests = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                await self._send(writer, self._error("timeout", "connection lifetime reached"))
                return
            try:
                header = await asyncio.wait_for(reader.readexactly(4), min(self.limits.idle_timeout, left))
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    return  # the client closed between requests: a normal end
                raise
            except asyncio.TimeoutError:
                await self._send(writer, self._error("timeout", "no request within the idle timeout"))
                return
            length = int.from_bytes(header, "big")
            if length == 0 or length > MAX_REQUEST:
                code = "bad_frame" if length == 0 else "too_large"
                await self._send(writer, self._error(code, f"request frame of {length} bytes (1..{MAX_REQUEST})"))
                return
            try:
                body = await asyncio.wait_for(reader.readexactly(length), min(self.limits.idle_timeout, left))
            except asyncio.TimeoutError:
                await self._send(writer, self._error("timeout", "request body not received within the idle timeout"))
                return
            requests += 1
            if requests > self.limits.max_requests:
                limit = self.limits.max_requests
                await self._send(writer, self._error("too_many_requests", f"at most {limit} per connection"))
                return
            reply = await self._handle(body, state)
            await self._send(writer, reply)
            if reply.get("error") in ("bad_frame", "version"):
                return

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        data = codec.pack(reply)
        writer.write(len(data).to_bytes(4, "big") + data)
        await asyncio.wait_for(writer.drain(), self.limits.idle_timeout)

    def _error(self, code: str, message: str) -> dict[str, Any]:
        self.counters[f"error_{code}"] += 1
        return {"ok": False, "error": code, "message": message}

    # -- requests ------------------------------------------------------------------------------------------
    async def _handle(self, body: bytes, state: dict[str, _ReadState]) -> dict[str, Any]:
        try:
            try:
                req = codec.unpack(body, max_len=MAX_REQUEST, max_depth=3)
            except CodecError as exc:
                raise _Refusal("bad_frame", f"request is not valid msgpack: {exc}") from None
            if not isinstance(req, dict) or not isinstance(req.get("op"), str):
                raise _Refusal("bad_frame", "a request is a map with a string 'op'")
            if req.get("v") != PROTOCOL_VERSION:
                raise _Refusal("version", f"this relay speaks version {PROTOCOL_VERSION} of the TCP protocol")
            op = req["op"]
            handler = {
                "hello": self._hello,
                "publish": self._publish,
                "read": self._read,
                "heads": self._heads,
                "fetch": self._fetch,
                "burn": self._burn,
                "put_record": self._put_record,
                "get_record": self._get_record,
                "store": self._store,
                "get_blobs": self._get_blobs,
            }.get(op)
            if handler is None:
                raise _Refusal("unknown_op", f"unknown op {op[:32]!r}")
            self.counters[f"op_{op}"] += 1
            out = await handler(req, state)
            return {"ok": True, **out}
        except _Refusal as refusal:
            return self._error(refusal.code, refusal.message)
        except asyncio.TimeoutError:
            return self._error("timeout", "the network did not answer in time")
        except Exception:  # noqa: BLE001 (a bug must not become a traceback to the peer)
            log.exception("TCP request failed")
            return self._error("internal", "internal error (logged on the relay)")

    async def _dht(self, coro: Any) -> Any:
        """Run one DHT operation under the shared cap and the operation timeout; the node's refusals become the
        protocol's error codes (no holder answered: ``unavailable``; disk quota: ``refused``; a bad record)."""

        async def run() -> Any:
            async with self._ops:
                return await coro

        try:
            return await asyncio.wait_for(run(), self.limits.op_timeout)
        except NetworkError as exc:
            raise _Refusal("unavailable", str(exc)) from None
        except StorageError as exc:
            raise _Refusal("refused", str(exc)) from None
        except RecordError as exc:
            raise _Refusal("bad_record", str(exc)) from None

    async def _hello(self, req: dict[str, Any], state: dict[str, _ReadState]) -> dict[str, Any]:
        pow_params = dataclasses.asdict(self.node.config.pow)
        return {
            "v": PROTOCOL_VERSION,
            "pow": pow_params,
            "limits": {"max_known": MAX_KNOWN, "max_fetch": MAX_FETCH, "max_requests": self.limits.max_requests},
        }

    async def _publish(self, req: dict[str, Any], state: dict[str, _ReadState]) -> dict[str, Any]:
        slot = _bytes(req, "slot", ID_LEN)
        data = _bytes(req, "envelope", max_len=max(env.SIZE_CLASSES))
        try:
            env.parse_outer(data)
        except EnvelopeError as exc:
            raise _Refusal("bad_envelope", str(exc)) from None
        if slot == env.NO_SLOT or not env.check_pow(data, self.node.config.pow, slot):
            raise _Refusal("bad_pow", "the envelope lacks the proof of work this network asks for this slot")
        return {"acks": int(await self._dht(self.node.publish(slot, data)))}

    async def _read(self, req: dict[str, Any], state: dict[str, _ReadState]) -> dict[str, Any]:
        slot = _bytes(req, "slot", ID_LEN)
        packed = _bytes(req, "known", max_len=MAX_KNOWN * ID_LEN)
        if len(packed) % ID_LEN:
            raise _Refusal("bad_request", "'known' must be whole 20-byte ids")
        known = {packed[i : i + ID_LEN] for i in range(0, len(packed), ID_LEN)}
        self._hold(state, None)
        if self._heads_bytes >= self.limits.heads_in_all:
            raise _Refusal("busy", "this relay holds too many reads' heads right now; try again later")
        heads: list[bytes] = []

        def collect(head: bytes) -> bool:
            heads.append(head)
            return False

        result = await self._dht(self.node.read_slot(slot, known, collect))
        # The node records an unwanted id in ``skipped`` right after its head was refused, in order: pair them, and
        # check each pair by its expiry (a head carries it, ``skipped`` holds it).
        ids = list(result.skipped)
        if len(ids) != len(heads) or any(
            result.skipped[i] != int.from_bytes(h[2:6], "big") for i, h in zip(ids, heads)
        ):
            raise RuntimeError("read_slot no longer reports skipped ids in the order it asks about heads")
        kept: list[tuple[bytes, bytes]] = []
        size = 0
        for key, head in zip(ids, heads):
            if size + ID_LEN + len(head) > self.limits.heads_per_connection:
                break
            kept.append((key, head))
            size += ID_LEN + len(head)
        self._hold(state, _ReadState(slot, known, kept, size))
        return {"count": len(kept), "truncated": len(kept) < len(ids)}

    async def _heads(self, req: dict[str, Any], state: dict[str, _ReadState]) -> dict[str, Any]:
        read = state.get("read")
        if read is None:
            raise _Refusal("no_read", "ask 'read' first")
        offset = req.get("offset")
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= len(read.heads):
            raise _Refusal("bad_request", "'offset' must be an index into the read's heads")
        page: list[list[bytes]] = []
        size = 0
        end = offset
        while end < len(read.heads) and size + ID_LEN + len(read.heads[end][1]) + 8 <= HEADS_PAGE_BYTES:
            key, head = read.heads[end]
            page.append([key, head])
            size += ID_LEN + len(head) + 8
            end += 1
        return {"heads": page, "next": end if end < len(read.heads) else None}

    async def _fetch(self, req: dict[str, Any], state: dict[str, _ReadState]) -> dict[str, Any]:
        read = state.get("read")
        if read is None:
            raise _Refusal("no_read", "ask 'read' first")
        ids = req.get("ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_FETCH:
            raise _Refusal("bad_request", f"'ids' must be a list of 1..{MAX_FETCH} ids")
        by_id = dict(read.heads)
        if not all(isinstance(i, bytes) and i in by_id for i in ids):
            raise _Refusal("bad_request", "every id of 'ids' must come from the last read")
        wanted = {by_id[i] for i in ids}
        others = read.known | (set(by_id) - set(ids))
        result = await self._dht(self.node.read_slot(read.slot, others, lambda head: head in wanted))
        found = [data for data in result.wanted if env.envelope_id(data) in set(ids)]
        return {"envelopes": found}

    async def _burn(self, req: dict[str, Any], state: dict[str, _ReadState]) -> dict[str, Any]:
        key = _bytes(req, "key", ID_LEN)
        secret = _bytes(req, "secret", max_len=64)
        slots = req.get("slots", [])
        if not isinstance(slots, list) or len(slots) > MAX_BURN_SLOTS or not all(
            isinstance(s, bytes) and len(s) == ID_LEN for s in slots
        ):
            raise _Refusal("bad_request", f"'slots' must be a list of at most {MAX_BURN_SLOTS} 20-byte slot ids")
        return {"deleted": int(await self._dht(self.node.burn(key, secret, slots)))}

    async def _put_record(self, req: dict[str, Any], state: dict[str, _ReadState]) -> dict[str, Any]:
        data = _bytes(req, "record", max_len=records.MAX_RECORD_BYTES)
        return {"acks": int(await self._dht(self.node.put_record(data)))}

    async def _get_record(self, req: dict[str, Any], state: dict[str, _ReadState]) -> dict[str, Any]:
        key = _bytes(req, "key", records.KEY_BYTES)
        return {"record": await self._dht(self.node.get_record(key))}

    async def _store(self, req: dict[str, Any], state: dict[str, _ReadState]) -> dict[str, Any]:
        blobs = req.get("blobs")
        if not isinstance(blobs, list) or not 1 <= len(blobs) <= MAX_BLOBS or not all(
            isinstance(b, bytes) and len(b) <= max(env.SIZE_CLASSES) for b in blobs
        ):
            raise _Refusal("bad_request", f"'blobs' must be a list of 1..{MAX_BLOBS} envelopes")
        for data in blobs:
            try:
                env.parse_outer(data)
            except EnvelopeError as exc:
                raise _Refusal("bad_envelope", str(exc)) from None
            if not env.check_pow(data, self.node.config.pow, env.NO_SLOT):
                raise _Refusal("bad_pow", "a blob lacks the proof of work this network asks for content")
        return {"stored": int(await self._dht(self.node.store_blobs(blobs)))}

    async def _get_blobs(self, req: dict[str, Any], state: dict[str, _ReadState]) -> dict[str, Any]:
        ids = req.get("ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_BLOBS or not all(
            isinstance(i, bytes) and len(i) == ID_LEN for i in ids
        ):
            raise _Refusal("bad_request", f"'ids' must be a list of 1..{MAX_BLOBS} 20-byte ids")
        found = await self._dht(self.node.fetch_blobs(list(dict.fromkeys(ids))))
        return {"blobs": list(found.values())}
