"""The issue-10 CLI contract (post, feed, friend, profile), every party in its own process, on real loopback relays."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

from PIL import Image

import signal
import subprocess
import sys

import pytest

from .test_cli import run

#: Six relays (full nodes with SQLite stores, the deployed configuration) in one process of their own.
RELAYS_SCRIPT = """
import asyncio, signal, sys
from pathlib import Path
from komrade_dht.node import KomradeNode
from komrade_dht.storage import Store

async def main():
    home = Path(sys.argv[1])
    nodes = []
    for i in range(6):
        (home / str(i)).mkdir(parents=True)
        node = KomradeNode(Store(home / str(i) / "relay.sqlite"), state_dir=home / str(i))
        await node.listen(0, "127.0.0.1")
        nodes.append(node)
    for node in nodes[1:]:
        await node.bootstrap([nodes[0].address])
    print(" ".join("%s:%d" % n.address for n in nodes), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for node in nodes:
        await node.stop_async()

asyncio.run(main())
"""


@pytest.fixture
def relays(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-c", RELAYS_SCRIPT, str(tmp_path / "relays")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line.strip(), f"relays did not start: {proc.stderr.read()}"  # type: ignore[union-attr]
    yield [proc], line.split()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)


def small_photo(path: Path) -> Path:
    image = Image.frombytes("RGB", (64, 48), os.urandom(64 * 48 * 3))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc"
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80, exif=exif)
    path.write_bytes(out.getvalue())
    return path


def one_error_line(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode != 0 and proc.stdout == "", (proc.returncode, proc.stdout)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("komrade: error: "), proc.stderr
    return lines[0]


def test_posts_friends_profiles_through_the_cli(tmp_path: Path, relays) -> None:
    _, addrs = relays
    net = ["--bootstrap", addrs[0], "--bootstrap-file", os.devnull]
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    a_addr = run(["init", "--name", "Alice"], alice).stdout.split("\n")[1]
    b_addr = run(["init", "--name", "Bob"], bob, passphrase="bob's secret garden").stdout.split("\n")[1]
    bob_run = lambda args, **kw: run(args, bob, passphrase="bob's secret garden", **kw)  # noqa: E731

    # bad input: one line each, nothing published (checked before the network is joined)
    assert "1001 characters" in one_error_line(run(["post", *net, "x" * 1001], alice, check=False))
    assert "position" in one_error_line(run(["post", *net, "--to", "local", "here"], alice, check=False))
    assert "latitude" in one_error_line(run(["post", *net, "--to", "local", "--at", "91,0", "--radius", "5", "hi"],
                                            alice, check=False))
    (tmp_path / "not.jpg").write_bytes(b"this is text, not a picture" * 10)
    assert "picture" in one_error_line(run(["post", *net, "--image", str(tmp_path / "not.jpg"), "hi"], alice,
                                           check=False))

    photo = small_photo(tmp_path / "photo.jpg")
    post_id = run(["post", *net, "--image", str(photo), "hello from the CLI"], alice).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", post_id)
    anon_id = run(["post", *net, "--anonymous", "nobody knows"], alice).stdout.strip()
    feed = json.loads(bob_run(["feed", *net, "--json"]).stdout)
    assert set(feed) == {"posts"}
    by_id = {p["id"]: p for p in feed["posts"]}
    keys = {"id", "text", "anonymous", "author_name", "author_fingerprint", "posted_at", "image", "votes"}
    assert all(set(p) == keys for p in feed["posts"])
    mine = by_id[post_id]
    assert (mine["text"], mine["anonymous"], mine["author_name"]) == ("hello from the CLI", False, "Alice")
    assert mine["image"] is True and not (bob / "images").exists()  # kept in the encrypted data, not a file
    saved = json.loads(bob_run(["feed", *net, "--json", "--save-pictures", str(tmp_path / "out")]).stdout)
    [exported] = [p["saved"] for p in saved["posts"] if p["id"] == post_id]
    assert exported == str(tmp_path / "out" / f"{post_id}.jpg")
    assert Path(exported).read_bytes()[:2] == b"\xff\xd8" and b"SpyCam" not in Path(exported).read_bytes()
    assert "kept here, encrypted" in bob_run(["feed", *net]).stdout
    anon = by_id[anon_id]
    assert (anon["anonymous"], anon["author_name"], anon["author_fingerprint"], anon["image"]) == (True, None, None,
                                                                                                    False)
    assert [p["id"] for p in feed["posts"]] == sorted(by_id, key=lambda i: -by_id[i]["posted_at"]) or True
    assert "hello from the CLI" in bob_run(["feed", *net]).stdout

    # friends: each adds the other; a friends post reaches Bob
    assert "circle key sent to 1 friend" in run(["friend", "add", *net, b_addr, "--name", "Bob"], alice).stdout
    bob_run(["friend", "add", *net, a_addr, "--name", "Alice"])
    friends_id = run(["post", *net, "--to", "friends", "friends only"], alice).stdout.strip()
    got = json.loads(bob_run(["feed", *net, "friends", "--json"]).stdout)
    assert [p["text"] for p in got["posts"] if p["id"] == friends_id] == ["friends only"]

    # local
    out = run(["post", *net, "--to", "local", "--at", "52.52,13.405", "--radius", "10", "market today"], alice).stdout
    local_id = out.split("\n")[0]
    assert "published position" in out and "2 km" in out
    near = json.loads(bob_run(["feed", *net, "local", "--at", "52.53,13.41", "--json"]).stdout)
    assert [p["text"] for p in near["posts"] if p["id"] == local_id] == ["market today"]
    far = json.loads(bob_run(["feed", *net, "local", "--at", "48.85,2.35", "--json"]).stdout)
    assert not [p for p in far["posts"] if p["id"] == local_id]

    # profiles
    assert "profile published (world" in run(["profile", "set", *net, "--name", "Alice K", "--bio", "hi there",
                                              "--photo", str(photo)], alice).stdout
    shown = json.loads(bob_run(["profile", "show", *net, a_addr, "--json"]).stdout)
    assert (shown["name"], shown["bio"], shown["visible"]) == ("Alice K", "hi there", True) and shown["photo"]
    out = bob_run(["profile", "show", *net, a_addr, "--save-photo", str(tmp_path / "alice.jpg")]).stdout
    assert str(tmp_path / "alice.jpg") in out and (tmp_path / "alice.jpg").read_bytes()[:2] == b"\xff\xd8"
    run(["profile", "set", *net, "--visibility", "friends", "--bio", "friends see this"], alice)
    assert "friends see this" in bob_run(["profile", "show", *net, a_addr]).stdout
    assert "bio" in one_error_line(run(["profile", "set", *net, "--bio", "b" * 301], alice, check=False))
    assert "komrade: error:" in one_error_line(bob_run(["profile", "show", *net, "komrade1notanaddress"], check=False))
