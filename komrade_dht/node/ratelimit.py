"""Token buckets per peer address: every RPC costs a token, every stored byte costs write budget. Pure, no I/O."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimits:
    """How much one peer may ask of this node. Defaults leave honest peers far below them."""

    requests_per_s: float = 100.0
    """Sustained requests per second from one ip:port."""
    request_burst: float = 300.0
    """Requests one ip:port may send at once before the rate applies."""
    ip_requests_per_s: float = 400.0
    """Sustained requests per second from all ports of one IP (loopback exempt: those are the operator's own)."""
    ip_request_burst: float = 1200.0
    write_bytes_per_s: float = 64 * 1024
    """Envelope bytes per second one ip:port may have this node store (appends and stores)."""
    write_burst_bytes: float = 512 * 1024
    max_tracked: int = 20_000
    """Peers tracked at once; the least recently seen is forgotten first (memory stays bounded)."""


class TokenBuckets:
    """Token buckets keyed by peer, with a bounded number of keys."""

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[object, tuple[float, float]] = OrderedDict()

    def take(self, key: object, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens of ``key``'s bucket if it has them; False (and nothing spent) if not."""
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed


class PeerLimiter:
    """The limits of :class:`RateLimits` applied to datagrams (before decoding) and to writes."""

    def __init__(self, limits: RateLimits = RateLimits()) -> None:
        self.limits = limits
        self._addr = TokenBuckets(limits.requests_per_s, limits.request_burst, limits.max_tracked)
        self._ip = TokenBuckets(limits.ip_requests_per_s, limits.ip_request_burst, limits.max_tracked)
        self._writes = TokenBuckets(limits.write_bytes_per_s, limits.write_burst_bytes, limits.max_tracked)

    @staticmethod
    def _loopback(ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip).is_loopback
        except ValueError:
            return False

    def allow_request(self, addr: tuple[str, int], now: float) -> bool:
        if not self._addr.take(addr, now):
            return False
        return self._loopback(addr[0]) or self._ip.take(addr[0], now)

    def allow_write(self, addr: tuple[str, int], size: int, now: float) -> bool:
        return self._writes.take(addr, now, size)
