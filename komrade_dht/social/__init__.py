"""What people do on komrade, built on envelopes and slots: accounts, contacts, direct messages."""

from .account import Account, Contact
from .dm import Message, burn, inbox, mark_read, send_dm, sync_inbox

__all__ = ["Account", "Contact", "Message", "burn", "inbox", "mark_read", "send_dm", "sync_inbox"]
