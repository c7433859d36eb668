"""The registry of screens. A new area (posts, profiles, events, map pins, collectives) is one module here with a
``Screen`` subclass, and one line in ``SCREENS``: the shell builds the navigation rail and the screen manager from
this list and nothing else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ScreenSpec:
    name: str
    """The screen's name in the screen manager (``app.show(name)``)."""
    title: str
    """What the rail and the window say."""
    icon: str
    """A Material Design icon name (kivymd's icon_definitions)."""
    target: str
    """``module:Class`` under ``app.screens``, imported when the shell is built."""
    nav: bool = True
    """Whether the navigation rail has a slot for it (onboarding, unlock and detail screens do not)."""

    def load(self) -> type:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(f"app.screens.{module}"), cls)


SCREENS: tuple[ScreenSpec, ...] = (
    ScreenSpec("welcome", "Welcome", "account-plus", "onboarding:WelcomeScreen", nav=False),
    ScreenSpec("unlock", "Unlock", "lock-open", "unlock:UnlockScreen", nav=False),
    ScreenSpec("chats", "Messages", "message-text", "chats:ChatsScreen"),
    ScreenSpec("feeds", "Posts", "newspaper-variant", "social:FeedsScreen"),
    ScreenSpec("map", "Map", "map-marker-alert", "map:MapScreen"),
    ScreenSpec("events", "Events", "calendar-star", "events:EventsScreen"),
    ScreenSpec("collectives", "Collectives", "account-group", "collectives:CollectivesScreen"),
    ScreenSpec("friends", "Friends", "account-heart", "social:FriendsScreen", nav=False),  # behind Posts
    ScreenSpec("profile", "Profile", "account-circle", "social:ProfileScreen", nav=False),  # behind Posts
    ScreenSpec("compose", "New post", "pencil", "social:ComposeScreen", nav=False),
    ScreenSpec("event", "Event", "calendar", "events:EventScreen", nav=False),
    ScreenSpec("new_event", "New event", "calendar-plus", "events:NewEventScreen", nav=False),
    ScreenSpec("collective", "Collective", "account-group", "collectives:CollectiveScreen", nav=False),
    ScreenSpec("contacts", "Contacts", "account-multiple", "contacts:ContactsScreen"),
    ScreenSpec("me", "Me", "qrcode", "me:MeScreen"),
    ScreenSpec("devices", "Devices", "cellphone-link", "devices:DevicesScreen", nav=False),  # behind Me
    ScreenSpec("status", "Node", "lan", "status:StatusScreen"),
    ScreenSpec("settings", "Settings", "cog", "settings:SettingsScreen"),
    ScreenSpec("thread", "Conversation", "message", "thread:ThreadScreen", nav=False),
    ScreenSpec("verify", "Verify", "shield-check", "verify:VerifyScreen", nav=False),
)


def spec(name: str) -> ScreenSpec:
    return next(s for s in SCREENS if s.name == name)
