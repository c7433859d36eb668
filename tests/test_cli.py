"""The DM story through the `komrade` command, every party in its own process, on real loopback sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .support import files_containing

KOMRADE = [sys.executable, "-m", "komrade_dht"]


def run(args: list[str], home: Path, passphrase: str = "correct horse battery staple", check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, KOMRADE_PASSPHRASE=passphrase)
    proc = subprocess.run(
        KOMRADE + ["--data-dir", str(home), *args], env=env, capture_output=True, text=True, timeout=60, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"komrade {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def start_relay(home: Path, bootstrap: str | None) -> tuple[subprocess.Popen, str]:
    args = KOMRADE + ["--data-dir", str(home), "relay", "--listen", "127.0.0.1:0", "--bootstrap-file", os.devnull]
    if bootstrap:
        args += ["--bootstrap", bootstrap]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # blocks until the relay printed its address (or died: then it is empty)
    assert line.startswith("listening on "), f"relay did not start: {line!r} {proc.stderr.read() if not line else ''}"
    return proc, line.split()[-1]


@pytest.fixture
def relays(tmp_path: Path):
    procs: list[subprocess.Popen] = []
    addrs: list[str] = []
    for i in range(6):
        proc, addr = start_relay(tmp_path / f"relay{i}", addrs[0] if addrs else None)
        procs.append(proc)
        addrs.append(addr)
    yield procs, addrs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=20)


def test_dm_story_through_the_cli(tmp_path: Path, relays) -> None:
    procs, addrs = relays
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    assert "komrade1" in run(["init", "--name", "Alice"], alice).stdout
    run(["init", "--name", "Bob"], bob, passphrase="bob's secret garden")
    out = run(["address"], bob, passphrase="bob's secret garden").stdout.splitlines()
    bob_address = out[0]
    assert bob_address.startswith("komrade1") and out[1].startswith("fingerprint: ")
    assert any("█" in line or "▀" in line or "▄" in line for line in out[2:]), "a QR code is printed"
    alice_fpr = run(["address", "--no-qr"], alice).stdout.splitlines()[1].removeprefix("fingerprint: ")

    text = "the zine goes to print on thursday"
    sent = run(["send", "--bootstrap", addrs[1], bob_address, text], alice)
    assert sent.stdout.startswith("sent ")

    # Two relays stop (cleanly, SIGTERM) before Bob first comes online.
    for proc in procs[:2]:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0

    proc = run(["inbox", "--bootstrap", addrs[4], "--json"], bob, passphrase="bob's secret garden")
    doc = json.loads(proc.stdout)  # exactly one JSON document
    assert doc["new"] == 1
    [message] = doc["messages"]
    assert message["text"] == text
    assert message["sender_name"] == "Alice"
    assert message["sender_fingerprint"] == alice_fpr
    assert message["request"] is True

    human = run(["inbox", "--bootstrap", addrs[5]], bob, passphrase="bob's secret garden").stdout
    assert "Alice" in human and alice_fpr in human and text in human

    for proc in procs[2:]:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert files_containing(tmp_path, text.encode()) == []


def test_cli_errors_are_one_clear_line(tmp_path: Path, relays) -> None:
    _, addrs = relays
    home = tmp_path / "me"
    run(["init", "--name", "Me"], home)
    address = run(["address", "--no-qr"], home).stdout.splitlines()[0]

    wrong = run(["address"], home, passphrase="not it", check=False)
    assert wrong.returncode == 1
    assert wrong.stderr.strip().count("\n") == 0 and "passphrase" in wrong.stderr

    typo = address[:-3] + ("q" if address[-3] != "q" else "p") + address[-2:]
    bad = run(["send", "--bootstrap", addrs[0], typo, "hi"], home, check=False)
    assert bad.returncode == 1 and "checksum" in bad.stderr and "Traceback" not in bad.stderr

    missing = run(["inbox", "--bootstrap", addrs[0]], tmp_path / "nobody", check=False)
    assert missing.returncode == 1 and "komrade init" in missing.stderr

    again = run(["init", "--name", "Me"], home, check=False)
    assert again.returncode == 1 and "Traceback" not in again.stderr

    # The failed send above still saved the peers it met (routing.json): the next command joins without --bootstrap.
    assert json.loads((home / "routing.json").read_text())["peers"]
    assert run(["inbox", "--json", "--bootstrap-file", os.devnull], home).returncode == 0

    # With nobody reachable and nothing remembered, a send fails with a clear line instead of hanging or crashing.
    loner = tmp_path / "loner"
    run(["init", "--name", "Loner"], loner)
    nobody = run(["send", "--bootstrap", "127.0.0.1:9", "--bootstrap-file", os.devnull, address, "hi"], loner,
                 check=False)
    assert nobody.returncode == 1 and "no komrade node answered" in nobody.stderr
