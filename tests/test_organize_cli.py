"""The issue-11 CLI (vote, feed's votes, pin, event, collective), every party in its own process, on 6 relay
processes (the default proof of work; registrations made cheap through KOMRADE_REGISTRATION_TRIALS)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from .test_cli import relays, run  # noqa: F401  (the fixture: 6 relay processes)
from .test_cli_posts import one_error_line


def test_vote_pin_event_collective_through_the_cli(tmp_path: Path, relays, monkeypatch: pytest.MonkeyPatch  # noqa: F811
                                                   ) -> None:
    monkeypatch.setenv("KOMRADE_REGISTRATION_TRIALS", "1")
    _, addrs = relays
    net = ["--bootstrap", addrs[0], "--bootstrap-file", os.devnull]
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    run(["init", "--name", "Alice"], alice)
    b_addr = run(["init", "--name", "Bob"], bob).stdout.split("\n")[1]

    # votes: refused before the post is read; then counted in feed --json
    post_id = run(["post", *net, "vote on me"], alice).stdout.strip()
    assert "no post" in one_error_line(run(["vote", *net, post_id, "up"], bob, check=False))
    assert "not a post id" in one_error_line(run(["vote", *net, "xyz", "up"], bob, check=False))
    feed = json.loads(run(["feed", *net, "--json"], bob).stdout)
    [mine] = [p for p in feed["posts"] if p["id"] == post_id]
    assert mine["votes"] == {"up": 0, "down": 0}
    assert run(["vote", *net, post_id, "up"], bob).stdout.startswith(f"voted up on {post_id}")
    feed = json.loads(run(["feed", *net, "--json"], alice).stdout)
    assert [p["votes"] for p in feed["posts"] if p["id"] == post_id] == [{"up": 1, "down": 0}]
    run(["vote", *net, post_id, "down"], bob)
    feed = json.loads(run(["feed", *net, "--json"], bob).stdout)
    assert [p["votes"] for p in feed["posts"] if p["id"] == post_id] == [{"up": 0, "down": 1}]

    # pins
    assert "24 hours" in one_error_line(run(["pin", "drop", *net, "police", "x", "--at", "52.52,13.40", "--hours",
                                             "48"], alice, check=False))
    out = run(["pin", "drop", *net, "medical", "first aid here", "--at", "52.52,13.40", "--radius", "3"], alice)
    pin_id = out.stdout.split("\n")[0]
    assert re.fullmatch(r"[0-9a-f]{40}", pin_id) and "a cell of 1 km" in out.stdout
    assert "no live pin" in one_error_line(run(["pin", "confirm", *net, pin_id], bob, check=False))
    pins = json.loads(run(["pin", "list", *net, "--at", "52.53,13.41", "--json"], bob).stdout)["pins"]
    assert [(p["kind"], p["text"]) for p in pins if p["id"] == pin_id] == [("medical", "first aid here")]
    run(["pin", "confirm", *net, pin_id], bob)
    pins = json.loads(run(["pin", "list", *net, "--at", "52.53,13.41", "--json"], alice).stdout)["pins"]
    assert [(p["confirmations"], p["dismissals"]) for p in pins if p["id"] == pin_id] == [(1, 0)]
    far = json.loads(run(["pin", "list", *net, "--at", "48.85,2.35", "--json"], alice).stdout)["pins"]
    assert not [p for p in far if p["id"] == pin_id]

    # events: anonymous host, invitation, answer, the host sees it, cancel
    start = int(time.time()) + 3600
    assert "ends after it starts" in one_error_line(run(["event", "create", *net, "--title", "x", "--start",
                                                         str(start), "--end", str(start - 1)], alice, check=False))
    out = run(["event", "create", *net, "--title", "Picnic", "--start", str(start), "--end", str(start + 7200),
               "--place", "the park", "--anonymous", "--invite", b_addr], alice).stdout
    event_id = out.split("\n")[0]
    assert re.fullmatch(r"[0-9a-f]{32}", event_id) and "invited 1" in out
    listed = json.loads(run(["event", "list", *net, "--json"], bob).stdout)["events"]
    assert [(e["title"], e["anonymous_host"], e["host"], e["unseen"]) for e in listed] == [("Picnic", True, None, "new")]
    assert "NEW  Picnic" in run(["event", "list", *net], bob).stdout
    assert run(["event", "answer", *net, event_id, "going"], bob).stdout.startswith("answered going")
    shown = json.loads(run(["event", "show", *net, event_id, "--json"], alice).stdout)
    assert [(a["who"], a["answer"]) for a in shown["answers"]] == [("Bob", "going")]
    assert [(i["name"], i["address"], i["answer"]) for i in shown["invitees"]] == [("Bob", b_addr, "going")]
    assert re.search(r"invited \(1\):\n\s+going\s+Bob \[", run(["event", "show", *net, event_id], alice).stdout)
    run(["event", "cancel", *net, event_id], alice)
    shown = json.loads(run(["event", "show", *net, event_id, "--json"], bob).stdout)
    assert shown["cancelled"] is True and shown["unseen"] is None and "invitees" not in shown  # shown: now seen
    assert "NEW" not in run(["event", "list", *net], bob).stdout
    assert "no invitation" in one_error_line(run(["event", "show", *net, "00" * 16], bob, check=False))

    # collectives: found with Bob, Bob sees it; bad input is one line
    assert "fraction" in one_error_line(run(["collective", "found", *net, "X", "--amend-share", "half"], alice,
                                            check=False))
    cid = run(["collective", "found", *net, "Garden club", "--member", b_addr], alice).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    doc = json.loads(run(["collective", "show", *net, cid, "--json"], bob).stdout)
    assert doc["name"] == "Garden club" and len(doc["members"]) == 2
    prop = run(["collective", "propose", *net, cid, "--set", "vouch_min=1"], bob).stdout.strip()
    run(["collective", "vote", *net, cid, prop[:12], "up"], alice)
    doc = json.loads(run(["collective", "show", *net, cid, "--json"], bob).stdout)
    assert doc["constitution"]["vouch_min"] == 1 and doc["proposals"][0]["status"] == "passed"
    post = run(["collective", "post", *net, cid, "seeds swap on sunday"], alice).stdout.strip()
    got = json.loads(run(["collective", "posts", *net, cid, "--json"], bob).stdout)["posts"]
    assert [(p["id"], p["text"]) for p in got] == [(post, "seeds swap on sunday")]
    assert "not a collective id" in one_error_line(run(["collective", "show", *net, "abc"], bob, check=False))
