"""Settings: data directory, bootstrap peers, sync interval, and the slot width with what it means in crowd size."""

from __future__ import annotations

from typing import Any

from ..widgets import BaseScreen, button, error_label, field, label, row


def crowd(width: int, users: int) -> str:
    share = users / (1 << width)
    return f"about {share:,.0f}" if share >= 1 else "fewer than 1"


def crowd_words(people: float) -> str:
    return f"about {people:,.0f} people" if people >= 1.5 else "fewer than two people"


class SettingsScreen(BaseScreen):
    def build(self) -> None:
        self.data_dir = label("", role="medium")
        self.width_label = label("", role="medium")
        self.bootstrap_field = field("Bootstrap peers, one IP:PORT per line (used at the next start)", multiline=True)
        self.interval_field = field("Sync interval in seconds (applies now)")
        self.error = error_label()
        self.save_button = button("Save", self.save)
        self.crowd_label = label("", role="medium")
        self.tor_on = False
        self.tor_button = button("Untraceable mode (Tor): off", self.toggle_tor)
        self.tor_socks_field = field("Tor's SOCKS port, HOST:PORT (e.g. 127.0.0.1:9050)")
        self.tor_relays_field = field("Relays' TCP services, one HOST:PORT or .onion:PORT per line", multiline=True)
        self.tor_label = label(
            "Untraceable mode runs no DHT node and opens no UDP socket: everything goes through Tor to the relays "
            "below, each action on a circuit of its own, so no peer sees your address. It applies at the next start.",
            role="medium")
        self.crowd_button = button("Measure my crowd", lambda: self.app.backend.measure_crowd(1000))
        for widget in (label("Data directory", style="Title", role="small"), self.data_dir,
                       label("Slot width", style="Title", role="small"), self.width_label, self.crowd_label,
                       self.bootstrap_field, self.interval_field,
                       label("Untraceable mode", style="Title", role="small"), self.tor_label, row(self.tor_button),
                       self.tor_socks_field, self.tor_relays_field, self.error):
            self.body.add_widget(widget)
        self.footer.add_widget(row(self.save_button, self.crowd_button))
        self.app.backend.bind(settings=self.refresh, crowd=self.show_crowd)

    def refresh(self, *_: Any) -> None:
        s = self.app.backend.settings
        if s is None:
            return
        self.data_dir.text = s.data_dir + "  (keystore, contacts, messages, the node's store; --data-dir or " \
                                          "KOMRADE_HOME chooses another)"
        w = s.width
        self.width_label.text = (
            f"{w} bits: your inbox slot is shared with 1 in {1 << w:,} users ({crowd(w, 10_000)} people in a "
            f"network of 10,000, {crowd(w, 1_000_000)} in a million). A wider slot downloads less but hides you in "
            "a smaller crowd. It is part of your address, so it is fixed for this identity.")
        self.bootstrap_field.text = "\n".join(s.bootstrap)
        self.interval_field.text = f"{s.sync_interval:g}"
        tor = getattr(s, "tor", None)
        self.set_tor(tor is not None)
        if tor is not None:
            self.tor_socks_field.text = tor["socks"]
            self.tor_relays_field.text = "\n".join(tor["relays"])
        if getattr(s, "untraceable", False):
            self.tor_label.text = "Running untraceable now: no DHT node, no UDP socket, everything through Tor."

    def set_tor(self, on: bool) -> None:
        self.tor_on = on
        self.tor_button.text_widget.text = f"Untraceable mode (Tor): {'on' if on else 'off'}"

    def toggle_tor(self) -> None:
        self.set_tor(not self.tor_on)

    def show_crowd(self, *_: Any) -> None:
        c = self.app.backend.crowd
        if c is None:
            return
        advice = ("your width already hides you in at least that many" if c.advised_width == c.width
                  else f"{c.advised_width} bits would (a new width means a new address)")
        self.crowd_label.text = (
            f"Measured now: about {c.network_size:,} nodes in the network, so {crowd_words(c.crowd)} share your "
            f"slot. For a crowd of at least {c.target:,}: {advice}. Your slots brought {c.envelopes_per_day:,.0f} "
            f"envelopes a day (~{c.download_bytes_per_day / 1024:,.0f} KiB of heads).")

    def save(self) -> None:
        try:
            interval = float(self.interval_field.text.strip())
        except ValueError:
            self.error.text = "The sync interval is a number of seconds (1 to 86400)."
            return
        if not 1 <= interval <= 86400:
            self.error.text = "The sync interval is a number of seconds (1 to 86400)."
            return
        peers = [line.strip() for line in self.bootstrap_field.text.splitlines() if line.strip()]
        tor = None
        if self.tor_on:
            relays = [line.strip() for line in self.tor_relays_field.text.splitlines() if line.strip()]
            if not self.tor_socks_field.text.strip() or not relays:
                self.error.text = "Untraceable mode needs Tor's SOCKS port and at least one relay's TCP service."
                return
            tor = {"socks": self.tor_socks_field.text.strip(), "relays": relays}
        self.error.text = ""
        self.app.backend.save_settings(peers, interval, tor)
