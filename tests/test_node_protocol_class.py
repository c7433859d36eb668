"""KomradeNode builds its protocol from ``protocol_class``, so a subclass (a test double, an instrumented
protocol, a future variant) is what actually answers on the socket. Real UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

from komrade_dht.node import KomradeNode
from komrade_dht.node.protocol import KomradeProtocol


class CountingProtocol(KomradeProtocol):
    pings = 0

    def rpc_ping(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        CountingProtocol.pings += 1
        return super().rpc_ping(*args, **kwargs)


class CountingNode(KomradeNode):
    protocol_class = CountingProtocol


def test_node_uses_its_protocol_class() -> None:
    async def main() -> None:
        CountingProtocol.pings = 0
        counting = CountingNode(None)
        other = KomradeNode(None)
        try:
            address = await counting.listen(0, "127.0.0.1")
            await other.listen(0, "127.0.0.1")
            assert type(counting.protocol) is CountingProtocol
            assert type(other.protocol) is KomradeProtocol
            await other.bootstrap([address])  # pings the counting node: its own protocol must answer
            assert CountingProtocol.pings >= 1
        finally:
            await other.stop_async()
            await counting.stop_async()

    asyncio.run(asyncio.wait_for(main(), 30))
