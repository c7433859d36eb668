"""What people do on komrade, built on envelopes and slots: accounts, contacts, direct messages, posts, friends,
profiles."""

from .account import Account, Contact
from .dm import Message, burn, inbox, mark_read, send_dm, sync_inbox
from . import friends  # noqa: F401  (registers the circle-key receiver with the inbox sync)

__all__ = ["Account", "Contact", "Message", "burn", "inbox", "mark_read", "send_dm", "sync_inbox"]
