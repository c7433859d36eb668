"""Untraceable mode: a client that runs no DHT node, opens no UDP socket, and talks to relays only through Tor.

:class:`TorClient` speaks the relay TCP protocol (:mod:`komrade_dht.relay_tcp`) through Tor's SOCKS5 port and gives
the social layer the node methods it calls (``send``/``publish``, ``read_slot``, ``burn``, ``config.pow``), so
:func:`~komrade_dht.social.send_dm`, :func:`~komrade_dht.social.sync_inbox` and :func:`~komrade_dht.social.burn`
work with it unchanged.

- **Stream isolation per action**: every action (one publish, one slot read with its head pages and fetches, one
  burn, the hello) opens its own connection with a fresh random SOCKS username and password. Tor's
  ``IsolateSOCKSAuth`` (on by default for every SocksPort) puts streams with different credentials on different
  circuits, so the relays cannot link two actions by their circuit; each action also picks its relay at random.
- **No local name resolution**: relay host names (and .onion addresses) go to Tor as names (SOCKS5 ATYP 3).
- **The client keeps its key**: a read brings back heads only; the client trial-decrypts them and fetches only the
  envelopes that open, and checks each against its id, its head and its proof of work for the slot.

Without ``socks`` the client connects to relays directly (tests, or a relay you run yourself): that is not
anonymous, and the CLI never does it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import random
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from . import codec, records
from . import envelope as env
from .errors import CodecError, EnvelopeError, NetworkError, RecordError
from .node.reader import ReadLimits, ReadResult
from .relay_tcp import ID_LEN, MAX_BLOBS, MAX_FETCH, MAX_KNOWN, MAX_REPLY, PROTOCOL_VERSION

log = logging.getLogger(__name__)

#: SOCKS5 reply codes (RFC 1928), for error messages.
SOCKS_REPLIES = {
    1: "general failure (Tor could not build a circuit or the exit failed)",
    2: "connection not allowed by the exit's policy",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by the relay",
    6: "TTL expired (the circuit timed out)",
    7: "command not supported",
    8: "address type not supported",
}


class SocksError(NetworkError):
    """Tor's SOCKS port refused or failed the connection (the message says which step)."""


class RelayError(NetworkError):
    """A relay answered with an error; ``code`` is its error code (see :mod:`komrade_dht.relay_tcp`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"relay refused: {code}: {message}")
        self.code = code


#: Relay answers worth trying another relay (or another circuit) for.
RETRYABLE = {"busy", "timeout", "unavailable", "internal"}
#: Blob actions (each a circuit) at once: a 200 KB picture is about four of them.
BLOB_ACTIONS = 4


async def socks5_connect(
    proxy: tuple[str, int], host: str, port: int, username: str, password: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP stream to ``host:port`` through the SOCKS5 proxy, authenticating with username/password (RFC 1929;
    Tor accepts any, and isolates streams by them). Host names are sent as names, never resolved here."""
    try:
        reader, writer = await asyncio.open_connection(proxy[0], proxy[1], limit=2**16)
    except OSError as exc:
        raise SocksError(f"cannot reach Tor's SOCKS port {proxy[0]}:{proxy[1]} ({exc.strerror or exc}): is tor running?") from None
    try:
        writer.write(b"\x05\x01\x02")  # version 5, one method: username/password
        version, method = await reader.readexactly(2)
        if version != 5 or method != 2:
            raise SocksError(f"the SOCKS proxy at {proxy[0]}:{proxy[1]} refused username/password authentication")
        user, word = username.encode(), password.encode()
        writer.write(b"\x01" + bytes([len(user)]) + user + bytes([len(word)]) + word)
        _, status = await reader.readexactly(2)
        if status != 0:
            raise SocksError("the SOCKS proxy refused the credentials")
        try:
            ip = ipaddress.ip_address(host)
            address = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
        except ValueError:
            name = host.encode("idna")
            if not 0 < len(name) < 256:
                raise SocksError(f"host name too long for SOCKS5: {host[:64]!r}") from None
            address = b"\x03" + bytes([len(name)]) + name
        writer.write(b"\x05\x01\x00" + address + port.to_bytes(2, "big"))
        version, reply, _, atyp = await reader.readexactly(4)
        if version != 5 or reply != 0:
            raise SocksError(f"Tor could not connect to {host}:{port}: {SOCKS_REPLIES.get(reply, f'SOCKS error {reply}')}")
        if atyp == 1:
            await reader.readexactly(4 + 2)
        elif atyp == 4:
            await reader.readexactly(16 + 2)
        elif atyp == 3:
            await reader.readexactly((await reader.readexactly(1))[0] + 2)
        else:
            raise SocksError(f"malformed SOCKS5 reply (address type {atyp})")
        return reader, writer
    except asyncio.IncompleteReadError:
        writer.close()
        raise SocksError(f"the SOCKS proxy at {proxy[0]}:{proxy[1]} closed the connection") from None
    except BaseException:
        writer.close()
        raise


class Connection:
    """One action's stream to one relay: requests answered in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, relay: tuple[str, int],
                 timeout: float) -> None:
        self.reader, self.writer, self.relay, self.timeout = reader, writer, relay, timeout
        self.calls = 0

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        data = codec.pack({"v": PROTOCOL_VERSION, "op": op, **fields})
        self.calls += 1
        self.writer.write(len(data).to_bytes(4, "big") + data)
        try:
            await asyncio.wait_for(self.writer.drain(), self.timeout)
            length = int.from_bytes(await asyncio.wait_for(self.reader.readexactly(4), self.timeout), "big")
            if not 0 < length <= MAX_REPLY:
                raise NetworkError(f"relay {self._name()} sent a frame of {length} bytes")
            body = await asyncio.wait_for(self.reader.readexactly(length), self.timeout)
        except asyncio.TimeoutError:
            raise NetworkError(f"relay {self._name()} did not answer {op!r} within {self.timeout:.0f} s") from None
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise NetworkError(f"relay {self._name()} closed the connection during {op!r} ({type(exc).__name__})") from None
        try:
            reply = codec.unpack(body, max_len=MAX_REPLY, max_depth=4)
        except CodecError as exc:
            raise NetworkError(f"relay {self._name()} sent a malformed reply: {exc}") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise NetworkError(f"relay {self._name()} sent a malformed reply")
        if not reply["ok"]:
            raise RelayError(str(reply.get("error", "?"))[:40], str(reply.get("message", ""))[:300])
        return reply

    def _name(self) -> str:
        return "%s:%d" % self.relay

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (OSError, asyncio.TimeoutError):
            pass


@dataclass(frozen=True)
class ClientConfig:
    """The node-like configuration the social layer reads: ``pow``, and ``read`` (a feed sizes its reads from it;
    the relay's own read limits are what apply)."""

    pow: env.PowParams = env.PowParams()
    read: ReadLimits = ReadLimits()


class TorClient:
    """The operations the social layer needs (slots, content blobs, records, burns), through relays' TCP services
    over Tor.

    ``relays``: (host, port) of relays' TCP services (IP addresses, names or .onion names); ``socks``: Tor's SOCKS
    port, or None to connect directly (not anonymous: tests only). ``pow``: the network's proof-of-work
    parameters; None to take them from a relay at :meth:`start` (a relay is the client's only view of the network).
    """

    def __init__(
        self,
        relays: Sequence[tuple[str, int]],
        socks: tuple[str, int] | None,
        *,
        pow: env.PowParams | None = None,
        timeout: float = 120.0,
        attempts: int = 3,
    ) -> None:
        if not relays:
            raise NetworkError("untraceable mode needs at least one relay's TCP address (--relay-tcp HOST:PORT)")
        self.relays = list(relays)
        self.socks = socks
        self.config = ClientConfig(pow or env.PowParams())
        self._pow_given = pow is not None
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.actions = 0

    async def start(self) -> dict[str, Any]:
        """Say hello to a relay (its own circuit): checks that a relay answers through Tor and, unless ``pow`` was
        given, takes the network's proof-of-work parameters from it. Returns the relay's hello."""

        async def hello(conn: Connection) -> dict[str, Any]:
            return await conn.call("hello")

        reply = await self._action(hello)
        if not self._pow_given:
            raw = reply.get("pow")
            fields = {f.name for f in dataclasses.fields(env.PowParams)}
            if not isinstance(raw, dict) or set(raw) != fields or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in raw.values()
            ):
                raise NetworkError("the relay's hello carries no valid proof-of-work parameters")
            self.config = ClientConfig(env.PowParams(**raw))
        return reply

    async def stop_async(self) -> None:
        """Nothing stays open between actions."""

    async def __aenter__(self) -> TorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    # -- actions -------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def _connect(self, relay: tuple[str, int]) -> AsyncIterator[Connection]:
        """A fresh stream to ``relay``: through SOCKS with new random credentials (a new circuit), or direct."""
        self.actions += 1
        if self.socks is not None:
            user, password = secrets.token_hex(16), secrets.token_hex(16)
            reader, writer = await asyncio.wait_for(
                socks5_connect(self.socks, relay[0], relay[1], user, password), self.timeout
            )
        else:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*relay, limit=2**16), self.timeout)
            except OSError as exc:
                raise NetworkError(f"cannot reach relay {relay[0]}:{relay[1]} ({exc.strerror or exc})") from None
        conn = Connection(reader, writer, relay, self.timeout)
        try:
            yield conn
        finally:
            await conn.close()

    async def _action(self, work: Callable[[Connection], Any]) -> Any:
        """Run ``work`` on a fresh connection to a random relay; on a failed circuit or a retryable refusal, try
        again (another relay first, and always another circuit), ``attempts`` times in all."""
        order = random.sample(self.relays, len(self.relays))
        last: Exception | None = None
        for attempt in range(self.attempts):
            relay = order[attempt % len(order)]
            try:
                async with self._connect(relay) as conn:
                    return await work(conn)
            except RelayError as exc:
                if exc.code not in RETRYABLE:
                    raise
                last = exc
            except (NetworkError, asyncio.TimeoutError, OSError) as exc:
                last = exc
            if attempt + 1 < self.attempts:
                await asyncio.sleep(min(2.0, 0.25 * 2**attempt))
        if isinstance(last, asyncio.TimeoutError):
            raise NetworkError(f"no relay answered within {self.timeout:.0f} s ({self.attempts} attempts)")
        assert last is not None
        raise last

    async def publish(self, slot: bytes, envelope: bytes) -> int:
        """Have a relay append ``envelope`` to ``slot`` on the slot's holders; how many acknowledged."""
        env.parse_outer(envelope)

        async def work(conn: Connection) -> int:
            acks = (await conn.call("publish", slot=slot, envelope=envelope)).get("acks")
            if not isinstance(acks, int) or isinstance(acks, bool) or acks < 0:
                raise NetworkError("the relay's publish reply carries no acknowledgement count")
            return acks

        return await self._action(work)  # type: ignore[no-any-return]

    async def send(self, slot: bytes, envelope: bytes) -> int:
        """What the writer's own node does with what its user wrote (``send_dm`` calls it): here, :meth:`publish`
        through a relay. No stem: Tor already hides the writer from the relay (its circuit), and the relay from the
        holders."""
        return await self.publish(slot, envelope)

    async def read_slot(
        self,
        slot: bytes,
        known: set[bytes] | frozenset[bytes] = frozenset(),
        want: Callable[[bytes], bool] = lambda head: True,
        limits: object | None = None,
    ) -> ReadResult:
        """As :meth:`KomradeNode.read_slot`, through one relay: heads come back, ``want`` picks, only the picked
        envelopes are fetched, each checked against its id, its head and its proof of work for ``slot``.
        ``limits`` is accepted for the node's signature and ignored: the relay's own read limits apply."""
        pow_params = self.config.pow

        async def work(conn: Connection) -> ReadResult:
            result = ReadResult()
            sent = b"".join(sorted(known)[:MAX_KNOWN])
            count = (await conn.call("read", slot=slot, known=sent)).get("count")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise NetworkError("the relay's read reply carries no count")
            heads: dict[bytes, bytes] = {}
            offset: int | None = 0
            while offset is not None and len(heads) < count:
                page = await conn.call("heads", offset=offset)
                items, nxt = page.get("heads"), page.get("next")
                if not isinstance(items, list) or not (nxt is None or (isinstance(nxt, int) and nxt > offset)):
                    raise NetworkError("the relay sent a malformed page of heads")
                for item in items:
                    if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, bytes) for x in item)):
                        raise NetworkError("the relay sent a malformed head")
                    key, head = item
                    try:
                        env.parse_head(head)
                    except EnvelopeError:
                        continue  # junk from the relay: nothing to want
                    if len(key) == ID_LEN and key not in known:
                        heads[key] = head
                offset = nxt
            picked: dict[bytes, bytes] = {}
            for key, head in heads.items():
                if want(head):
                    picked[key] = head
                else:
                    result.skipped[key] = int.from_bytes(head[2:6], "big")
            keys = list(picked)
            for i in range(0, len(keys), MAX_FETCH):
                batch = keys[i : i + MAX_FETCH]
                found = (await conn.call("fetch", ids=batch)).get("envelopes")
                if not isinstance(found, list):
                    raise NetworkError("the relay's fetch reply carries no envelopes")
                for data in found:
                    if isinstance(data, bytes) and self._valid(data, picked, slot, pow_params):
                        result.wanted.append(data)
                        picked.pop(env.envelope_id(data))
            result.holders = 1
            result.requests = conn.calls
            return result

        return await self._action(work)  # type: ignore[no-any-return]

    @staticmethod
    def _valid(data: bytes, picked: dict[bytes, bytes], slot: bytes, pow_params: env.PowParams) -> bool:
        try:
            env.parse_outer(data)
        except EnvelopeError:
            return False
        head = picked.get(env.envelope_id(data))
        return head is not None and env.head(data) == head and env.check_pow(data, pow_params, slot)

    async def burn(self, key: bytes, secret: bytes, slots: list[bytes] = []) -> int:  # noqa: B006 (read only)
        """Have a relay ask every holder of envelope ``key`` to delete it; how many did."""

        async def work(conn: Connection) -> int:
            deleted = (await conn.call("burn", key=key, secret=secret, slots=list(slots))).get("deleted")
            if not isinstance(deleted, int) or isinstance(deleted, bool) or deleted < 0:
                raise NetworkError("the relay's burn reply carries no count")
            return deleted

        return await self._action(work)  # type: ignore[no-any-return]

    async def _per_batch(self, items: list[Any], one: Callable[[list[Any]], Awaitable[Any]]) -> list[Any]:
        """``one(batch)`` for each batch of :data:`MAX_BLOBS` items, :data:`BLOB_ACTIONS` at a time; in order."""
        gate = asyncio.Semaphore(BLOB_ACTIONS)

        async def gated(batch: list[Any]) -> Any:
            async with gate:
                return await one(batch)

        return await asyncio.gather(*(gated(items[i : i + MAX_BLOBS]) for i in range(0, len(items), MAX_BLOBS)))

    async def store_blobs(self, blobs: list[bytes], concurrency: int = 16) -> int:
        """As :meth:`KomradeNode.store_blobs` (a post's or an event's chunks), through relays: :data:`MAX_BLOBS` per
        action, each action on its own circuit, :data:`BLOB_ACTIONS` at a time (``concurrency`` is the node's
        parameter, unused here). Returns how many were stored; NetworkError if a batch could not be (after the
        retries every action gets)."""
        for data in blobs:
            env.parse_outer(data)

        async def one(batch: list[bytes]) -> int:
            async def work(conn: Connection) -> int:
                stored = (await conn.call("store", blobs=batch)).get("stored")
                if not isinstance(stored, int) or isinstance(stored, bool) or stored != len(batch):
                    raise NetworkError("the relay's store reply does not count every blob as stored")
                return stored

            return await self._action(work)  # type: ignore[no-any-return]

        return sum(await self._per_batch(blobs, one))

    async def fetch_blobs(self, ids: list[bytes], concurrency: int = 16) -> dict[bytes, bytes]:
        """As :meth:`KomradeNode.fetch_blobs`, through relays (:data:`MAX_BLOBS` ids per action, each on its own
        circuit): the envelopes found, each checked against its id here; ids no relay produced are absent (the
        caller fetches them again), as are the ids of a batch whose every attempt failed."""

        async def one(batch: list[bytes]) -> dict[bytes, bytes]:
            asked = set(batch)

            async def work(conn: Connection) -> dict[bytes, bytes]:
                found = (await conn.call("get_blobs", ids=batch)).get("blobs")
                if not isinstance(found, list):
                    raise NetworkError("the relay's get_blobs reply carries no blobs")
                out: dict[bytes, bytes] = {}
                for data in found:
                    if not isinstance(data, bytes):
                        continue
                    try:
                        env.parse_outer(data)
                    except EnvelopeError:
                        continue
                    if env.envelope_id(data) in asked:  # self-certifying: a relay cannot substitute a blob
                        out[env.envelope_id(data)] = data
                return out

            try:
                return await self._action(work)  # type: ignore[no-any-return]
            except NetworkError as exc:  # RelayError included
                log.info("a batch of %d blobs could not be fetched: %s", len(batch), exc)
                return {}

        found: dict[bytes, bytes] = {}
        for part in await self._per_batch(list(dict.fromkeys(ids)), one):
            found.update(part)
        return found

    async def put_record(self, data: bytes) -> int:
        """Have a relay store a signed mutable record on its key's holders; how many accepted it."""
        records.verify_record(records.key_of(data), data)

        async def work(conn: Connection) -> int:
            acks = (await conn.call("put_record", record=data)).get("acks")
            if not isinstance(acks, int) or isinstance(acks, bool) or acks < 0:
                raise NetworkError("the relay's put_record reply carries no acknowledgement count")
            return acks

        return await self._action(work)  # type: ignore[no-any-return]

    async def get_record(self, key: bytes) -> bytes | None:
        """The newest record under ``key`` a relay found, verified here (a relay that lies gets it refused: None)."""

        async def work(conn: Connection) -> bytes | None:
            data = (await conn.call("get_record", key=key)).get("record")
            if data is None:
                return None
            if not isinstance(data, bytes):
                raise NetworkError("the relay's get_record reply is not a record")
            try:
                records.verify_record(key, data)
            except RecordError as exc:
                log.warning("a relay answered a record that does not verify: %s", exc)
                return None
            return data

        return await self._action(work)  # type: ignore[no-any-return]
