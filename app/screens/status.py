"""Your node: peers, routing table, what it holds for others, last sync, errors; and "sync now"."""

from __future__ import annotations

import time
from typing import Any

from ..widgets import BaseScreen, button, error_label, label, row


def human_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


class StatusScreen(BaseScreen):
    def build(self) -> None:
        self.problem = error_label()
        self.lines: dict[str, Any] = {}
        self.body.add_widget(self.problem)
        for key, title in (("state", "Node"), ("peers", "Peers known"), ("routing", "Routing table"),
                           ("held", "Held for others"), ("last_sync", "Last sync"), ("errors", "Errors"),
                           ("uptime", "Uptime"), ("version", "Version")):
            value = label("-", role="large")
            self.lines[key] = value
            self.body.add_widget(row(label(title, style="Title", role="small", size_hint_x=0.3), value))
        self.busy = label("", role="small")
        self.sync_button = button("Sync now", self.sync)
        self.footer.add_widget(self.busy)
        self.footer.add_widget(row(self.sync_button))
        b = self.app.backend
        b.bind(status=self.refresh, problem=self.refresh, connected=self.refresh, busy=self.refresh)

    def refresh(self, *_: Any) -> None:
        b, s, v = self.app.backend, self.app.backend.status, self.lines
        self.problem.text = b.problem
        self.busy.text = b.busy
        v["state"].text = ("running, API answering" if b.connected else "not answering (values below: last known)") + \
            (f" (pid {self.app.host.pid})" if self.app.host.pid else "")
        if s is None:
            return
        v["peers"].text = f"{s.peers}"
        v["routing"].text = f"{s.routing_table_size} contacts in {s.buckets} buckets"
        v["held"].text = f"{s.envelopes:,} envelopes, {human_bytes(s.bytes)} in {s.slots:,} slots"
        v["last_sync"].text = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.last_sync)) if s.last_sync
                               else "not yet")
        dropped = sum(n for k, n in s.counters.items() if k.startswith("dropped"))
        v["errors"].text = (s.last_sync_error or "none at the last sync") + (f"; {dropped} bad datagrams dropped"
                                                                              if dropped else "")
        v["uptime"].text = f"{int(s.uptime_s // 60)} min {int(s.uptime_s % 60)} s"
        v["version"].text = s.version

    def sync(self) -> None:
        self.app.backend.sync_now()
