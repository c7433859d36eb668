"""How many people you hide among, and what hiding costs: slot width, crowd size and download volume.

Your slot is shared by every identity whose key hash starts with the same ``width`` bits, so among N people the
crowd you hide in is about N / 2^width, and every one of them downloads everyone's envelopes' heads. Nobody can
count the people in a slot (envelopes for others do not open), so the crowd is estimated from the size of the
network, which Kademlia lets any node estimate from how close the k closest nodes to a random point are
(N ~ k x 2^160 / distance of the k-th closest). The download side is measured, not estimated: the envelopes
your own syncs saw in your slots per day.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from ..node import KomradeNode
from ..slots import MAX_WIDTH
from .account import Account

#: Bytes a sync downloads per envelope that is not yours (its head: fixed fields and one recipient header).
HEAD_BYTES = 111


@dataclass(frozen=True)
class CrowdReport:
    """What ``komrade crowd`` shows."""

    network_size: int
    """Estimated nodes in the network (each user runs one; relays count too, so this is an upper bound)."""
    width: int
    """Your slot width (bits of your key hash your slot is named by)."""
    crowd: float
    """Estimated identities sharing your slot: network_size / 2^width."""
    target: int
    """The crowd you asked to hide in."""
    advised_width: int
    """The widest slot (least download) whose crowd is still at least ``target``."""
    envelopes_per_day: float
    """Envelopes your syncs saw in your slots per day, over the days remembered (what the crowd costs you)."""
    download_bytes_per_day: float
    """What reading them costs per day (heads only, except your own mail)."""


def advise_width(network_size: int, target: int) -> int:
    """The largest width whose crowd (network_size / 2^width) is at least ``target`` (0 if even the whole network
    is smaller than the target)."""
    if network_size <= target:
        return 0
    return max(0, min(MAX_WIDTH, int(math.floor(math.log2(network_size / target)))))


def size_from_distances(distances: list[int], k: int) -> int:
    """Network size from the XOR distances of the closest nodes to a random point: the k-th closest of N uniform
    ids lies at about k x 2^160 / N."""
    ordered = sorted(distances)[:k]
    if not ordered:
        return 1
    kth = max(ordered[-1], 1)
    return max(len(ordered), round(len(ordered) * 2**160 / kth))


async def estimate_network_size(node: KomradeNode, lookups: int = 3) -> int:
    """The median of ``lookups`` estimates, each from one lookup of a random point (counts this node too)."""
    estimates = []
    for _ in range(lookups):
        target = os.urandom(20)
        found = await node.closest(target)
        point = int.from_bytes(target, "big")
        estimates.append(size_from_distances([int.from_bytes(n.id, "big") ^ point for n in found], node.ksize))
    estimates.sort()
    return estimates[len(estimates) // 2] if estimates else 1


def envelopes_per_day(account: Account, now: float | None = None) -> float:
    """Envelopes seen in this account's slots per day, from the per-slot memory of its syncs."""
    now = time.time() if now is None else now
    records = account.data.all("seen_slot")
    total = sum(len(r.get("ids", b"")) // 24 for r in records)
    if not records:
        return 0.0
    days = max(1.0, min(30.0, (now - account.created) / 86400))
    return total / min(days, float(len(records)))


async def crowd_report(account: Account, node: KomradeNode, target: int = 1000) -> CrowdReport:
    size = await estimate_network_size(node)
    per_day = envelopes_per_day(account)
    return CrowdReport(
        network_size=size,
        width=account.width,
        crowd=round(size / 2**account.width, 2),
        target=target,
        advised_width=advise_width(size, target),
        envelopes_per_day=round(per_day, 1),
        download_bytes_per_day=round(per_day * HEAD_BYTES),
    )
