"""``komrade device list|pair|join|remove`` (issue 14), each device in its own process, on real loopback relays."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .test_cli import KOMRADE, run
from .test_cli_posts import one_error_line, relays  # noqa: F401 (the fixture)


def test_pair_join_list_remove_through_the_cli(tmp_path: Path, relays) -> None:  # noqa: F811
    _, addrs = relays
    net = ["--bootstrap", addrs[0], "--bootstrap-file", os.devnull]
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"
    address = run(["init", "--name", "Alice"], laptop).stdout.split("\n")[1]

    # bad codes: one clear line each, before any passphrase or network
    assert "not a pairing code" in one_error_line(run(["device", "join", *net, "hello", "--name", "phone"], phone,
                                                      check=False))
    expired = "komrade-pair:" + "A" * 32  # an expiry of 0: long past
    assert "expired" in one_error_line(run(["device", "join", *net, expired, "--name", "phone"], phone, check=False))
    assert "pairing code" in one_error_line(run(["device", "join", *net, "--name", "phone"], phone, check=False))

    env = dict(os.environ, KOMRADE_PASSPHRASE="correct horse battery staple")
    pair = subprocess.Popen(KOMRADE + ["--data-dir", str(laptop), "device", "pair", *net, "--no-qr"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        code = pair.stdout.readline().strip()  # type: ignore[union-attr]
        assert code.startswith("komrade-pair:"), pair.stderr.read()  # type: ignore[union-attr]
        joined = run(["device", "join", *net, code, "--name", "phone"], phone, passphrase="phone's own passphrase")
        assert address in joined.stdout and "own keys" in joined.stdout
        out, err = pair.communicate(timeout=60)
        assert pair.returncode == 0, err
        assert "paired phone" in out
    finally:
        if pair.poll() is None:
            pair.kill()
            pair.wait()
    # the code was used once: a second device is refused
    again = run(["device", "join", *net, code, "--name", "tablet"], tmp_path / "tablet", check=False)
    assert "already used" in one_error_line(again)

    listed = json.loads(run(["device", "list", "--json"], laptop).stdout)
    assert listed["root"] is True and [d["name"] for d in listed["devices"]] == ["first device", "phone"]
    on_phone = json.loads(run(["device", "list", "--json"], phone, passphrase="phone's own passphrase").stdout)
    assert on_phone["root"] is False and [d["this"] for d in on_phone["devices"]] == [False, True]
    phone_key = on_phone["devices"][1]["key"]
    # the phone cannot remove anything: it holds no root key
    refused = run(["device", "remove", *net, phone_key], phone, passphrase="phone's own passphrase", check=False)
    assert "root key" in one_error_line(refused)
    assert "removed phone" in run(["device", "remove", *net, phone_key], laptop).stdout
    assert "no device" in one_error_line(run(["device", "remove", *net, phone_key], laptop, check=False))
    assert [d["name"] for d in json.loads(run(["device", "list", "--json"], laptop).stdout)["devices"]] == [
        "first device"]
    run(["inbox", *net], phone, passphrase="phone's own passphrase")  # a sync refreshes the phone's copy of the list
    assert "no longer in the list" in run(["device", "list"], phone, passphrase="phone's own passphrase").stdout

    # joining from the recovery phrase makes a full copy, and says it cannot be removed
    recovery = run(["recovery"], laptop).stdout.strip()
    copy = subprocess.run(KOMRADE + ["--data-dir", str(tmp_path / "copy"), "device", "join", "--recovery", "--name",
                                     "Alice"], env=dict(env, KOMRADE_RECOVERY=recovery), capture_output=True,
                          text=True, timeout=60)
    assert copy.returncode == 0 and address in copy.stdout and "can never be removed" in copy.stderr
