"""Grouping received and sent DMs into conversations (pure functions over the API's dataclasses)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .backend import peer_fingerprint


@dataclass
class Item:
    """One bubble: received (``mine`` False, burnable) or sent (``acks``: holders that accepted it)."""

    id: str
    text: str
    at: int
    mine: bool
    acks: int = 0
    read: bool = True


@dataclass
class Conversation:
    fingerprint: str
    name: str
    address: str
    request: bool
    items: list[Item] = field(default_factory=list)

    @property
    def unread(self) -> int:
        return sum(1 for i in self.items if not i.mine and not i.read)

    @property
    def last(self) -> Item:
        return self.items[-1]


def conversations(messages: list[Any], sent: list[Any], contacts: list[Any]) -> list[Conversation]:
    """Every conversation, newest first. A sender who is not a contact makes a *request* (kept apart until accepted);
    the name shown for a request is only what the sender claims."""
    known = {c.fingerprint: c for c in contacts}
    out: dict[str, Conversation] = {}

    def conv(fp: str, name: str, address: str) -> Conversation:
        if fp not in out:
            contact = known.get(fp)
            out[fp] = Conversation(fp, contact.name if contact else name, contact.address if contact else address,
                                   request=contact is None)
        return out[fp]

    for m in messages:
        conv(m.sender_fingerprint, m.sender_name, m.sender_address).items.append(
            Item(m.id, m.text, m.sent_at, False, read=m.read))
    for s in sent:
        fp = peer_fingerprint(s.to)
        if not fp:
            continue
        c = conv(fp, "", s.to)
        c.items.append(Item(s.id, s.text, s.sent_at, True, acks=s.acks))
    for c in out.values():
        c.items.sort(key=lambda i: (i.at, i.id))
        if c.request and any(i.mine for i in c.items):
            c.request = False  # we wrote to them first: not a stranger's request
        if not c.name:
            c.name = f"{c.fingerprint[:11]}..."
    return sorted(out.values(), key=lambda c: c.last.at, reverse=True)


def when(at: int, now: float | None = None) -> str:
    """A short local time: 14:05 today, else 3 Nov 14:05."""
    now = time.time() if now is None else now
    t, today = time.localtime(at), time.localtime(now)
    if t[:3] == today[:3]:
        return time.strftime("%H:%M", t)
    return time.strftime("%d %b %H:%M", t).lstrip("0")
