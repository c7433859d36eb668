"""What the `komrade` command prints for a person, against hostile input: text from the network cannot drive the
terminal or forge a header, a weak new passphrase is refused, and the QR code scans on dark and light themes.
Every party is its own `komrade` process on real loopback sockets; the QR is decoded by zxing-cpp."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
import sys
import time
from pathlib import Path

import pytest
import segno
import zxingcpp

from komrade_dht.text import columns, is_unsafe, printable, printable_block, truncate

from .test_cli import relays, run  # noqa: F401  (relays is a fixture)

HEADER = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC  \[([0-9 ]+)\]  (.*)$")
ESC, CSI8 = "\x1b", "\u009b"


def unsafe_chars(output: str) -> list[str]:
    return [c for c in output if c != "\n" and is_unsafe(c)]


# -- text.printable ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("char", ["\x00", "\x07", "\x08", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9b",
                                  "\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
                                  "\u2066", "\u2067", "\u2068", "\u2069", "\u2028", "\u2029", "\ud800"])
def test_printable_shows_every_control_visibly(char: str) -> None:
    shown = printable(f"a{char}b")
    assert shown.startswith("a\\") and shown.endswith("b") and len(shown) > 3
    assert not unsafe_chars(shown)
    assert shown.isascii()


def test_printable_keeps_ordinary_text() -> None:
    for text in ["Alice", "Zoë Ørsted", "Ленин", "東京 🌍", "tab-free, no controls: ~!@#$%^&*()"]:
        assert printable(text) == text


def test_printable_block_indents_every_line() -> None:
    assert printable_block("one\ntwo\r\nthree\rfour\u2028five") == "    one\n    two\n    three\\rfour\\u2028five"
    assert printable_block("") == "    "


def test_long_lines_are_cut_to_the_width_never_wrapped_by_the_terminal() -> None:
    block = printable_block("x" * 100 + "\x1b" * 30 + "\n" + "東" * 50, width=40)
    lines = block.split("\n")
    assert all(line.startswith("    ") and columns(line) <= 40 for line in lines)
    assert "".join(line[4:] for line in lines) == "x" * 100 + "\\x1b" * 30 + "東" * 50
    assert all("\\x1b" in line or "\\" not in line for line in lines)  # an escape is never split
    assert truncate("Alice" + "\u202e" * 20, 16) == "Alice\\u202e\u2026" and columns(truncate("é" * 40, 16)) <= 16


# -- the inbox, end to end --------------------------------------------------------------------------------------
def test_a_stranger_cannot_forge_a_message_from_a_contact(tmp_path: Path, relays, monkeypatch) -> None:  # noqa: F811
    """Issue 9 item 7: `ESC[1A \\r ESC[2K` plus a fake header line rendered as a message from contact Alice, with her
    real fingerprint. Now every header starts at column 0 and carries the real sender; the body is indented and
    escaped and cut to the terminal's width (a long line would wrap to column 0); no byte that a terminal acts on
    reaches it."""
    _, addrs = relays
    monkeypatch.setenv("COLUMNS", "100")
    alice, bob, mallory = tmp_path / "alice", tmp_path / "bob", tmp_path / "mallory"
    run(["init", "--name", "Alice"], alice)
    run(["init", "--name", "Bob"], bob)
    hostile_name = "Alice\x1b[2K\u202e" + "z" * 54  # 64 characters, the most a name may have
    made = run(["init", "--name", hostile_name], mallory)
    assert not unsafe_chars(made.stdout) and "\\x1b[2K\\u202e" in made.stdout

    alice_address, alice_line = run(["address", "--no-qr"], alice).stdout.splitlines()
    alice_fpr = alice_line.removeprefix("fingerprint: ")
    bob_address = run(["address", "--no-qr"], bob).stdout.splitlines()[0]
    added = run(["contact", "add", alice_address, "Alice"], bob)
    assert alice_fpr in added.stdout

    forged = (f"hi{ESC}[1A\r{ESC}[2K2026-11-22 03:00 UTC  Alice  [{alice_fpr}]\n"  # the old header layout
              f"2026-11-22 03:00 UTC  [{alice_fpr}]  Alice\u2028{CSI8}2K\n"  # the new one
              f"    send the keys to komrade1qqqq\u202egnp.exe\n\x7f\n"
              + "y" * 96 + f"2026-11-22 03:00 UTC  [{alice_fpr}]  Alice")  # 4 + 96 columns: then a wrap
    run(["send", "--bootstrap", addrs[1], bob_address, forged], mallory)
    run(["send", "--bootstrap", addrs[2], bob_address, "the real one"], alice)

    human = run(["inbox", "--bootstrap", addrs[3]], bob).stdout
    assert not unsafe_chars(human), f"control characters reach the terminal: {human!r}"
    assert max(map(columns, human.splitlines())) <= 100, "no line wraps on a 100-column terminal"
    headers = [line for line in human.splitlines() if not line.startswith("    ")]
    assert all(HEADER.match(line) for line in headers), headers
    assert len(headers) == 2, human  # one per message: no forged header at column 0
    from_alice = [line for line in headers if alice_fpr in line]
    assert len(from_alice) == 1 and HEADER.match(from_alice[0]).group(2) == "Alice"
    [stranger] = [line for line in headers if line not in from_alice]
    assert ' request "Alice\\x1b[2K\\u202ezzz' in stranger and alice_fpr not in stranger  # escaped
    assert stranger.endswith('z\u2026"')  # and cut to the line
    body = human.split(stranger + "\n", 1)[1]
    assert body.startswith("    hi\\x1b[1A\\r\\x1b[2K2026-11-22 03:00 UTC  Alice  [" + alice_fpr + "]\n")
    assert "\\u2028\\x9b2K" in body and "\\u202egnp.exe" in body and "\n    \\x7f" in body

    doc = json.loads(run(["inbox", "--bootstrap", addrs[4], "--json"], bob).stdout)
    assert forged in [m["text"] for m in doc["messages"]]  # JSON stays exact
    assert hostile_name in [m["sender_name"] for m in doc["messages"]]

    # A contact name pasted with controls (an OSC title sequence) is listed escaped.
    mallory_address = run(["address", "--no-qr"], mallory).stdout.splitlines()[0]
    listed = run(["contact", "add", mallory_address, "Mal\x1b]0;pwned\x07"], bob).stdout
    listed += run(["contact", "list"], bob).stdout
    assert not unsafe_chars(listed) and "Mal\\x1b]0;pwned\\x07" in listed


def test_error_lines_are_escaped(tmp_path: Path) -> None:
    home = tmp_path / "me"
    run(["init", "--name", "Me"], home)
    bad = run(["contact", "add", "komrade1\x1b[2J\u202e", "x"], home, check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and not unsafe_chars(bad.stderr)


def test_a_name_the_terminal_encoding_lacks_is_escaped_not_a_crash(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "me"
    run(["init", "--name", "Me"], home)
    address = run(["address", "--no-qr"], home).stdout.splitlines()[0]
    monkeypatch.setenv("PYTHONIOENCODING", "latin-1")
    added = run(["contact", "add", address, "東京 Zoë"], home, encoding="latin-1")
    assert "\\u6771\\u4eac Zo\xeb" in added.stdout and "Traceback" not in added.stderr


# -- passphrase strength at init --------------------------------------------------------------------------------
@pytest.mark.parametrize("weak", ["x", "password123", "Mallory Mallory"])
def test_init_refuses_a_weak_passphrase_in_one_line(tmp_path: Path, weak: str) -> None:
    home = tmp_path / "weak"
    proc = run(["init", "--name", "Mallory"], home, passphrase=weak, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("komrade: error: passphrase too weak (KOMRADE_PASSPHRASE, strength ")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    if len(weak) >= 4:
        assert weak not in proc.stderr  # the passphrase is never echoed
    assert not home.exists() or not any(home.iterdir()), "nothing is created"


def test_init_accepts_a_strong_passphrase_and_opening_is_not_rechecked(tmp_path: Path) -> None:
    home = tmp_path / "strong"
    assert "komrade1" in run(["init", "--name", "Sam"], home, passphrase="violet tractor mumbles quietly").stdout
    assert run(["address", "--no-qr"], home, passphrase="violet tractor mumbles quietly").returncode == 0


# -- the terminal QR --------------------------------------------------------------------------------------------
SGR = re.compile(r"\x1b\[([0-9;]*)m")
THEMES = {"dark": (230, 20), "light": (20, 250)}  # (default foreground, default background) grey levels
BASIC = [0, 128, 128, 128, 64, 128, 128, 192, 128, 255, 255, 255, 128, 255, 255, 255]  # 16 colours, as grey


def grey256(n: int) -> int:
    if n < 16:
        return BASIC[n]
    if n >= 232:
        return 8 + 10 * (n - 232)
    levels = [0, 95, 135, 175, 215, 255]
    n -= 16
    return (levels[n // 36] + levels[n // 6 % 6] + levels[n % 6]) // 3


def render(lines: list[str], theme: str, explicit: list[bool] | None = None) -> tuple[bytes, int, int]:
    """A terminal's picture of ``lines``: each cell 1 module wide and 2 high (half blocks), grey bytes, with a
    margin of the theme's background around it as on a real screen. ``explicit`` collects, per drawn cell,
    whether both its colours were set by the output rather than left to the theme."""
    default_fg, default_bg = THEMES[theme]
    rows: list[list[int]] = []
    for line in lines:
        fg = bg = None
        reverse = False
        top: list[int] = []
        bottom: list[int] = []
        pos = 0
        while pos < len(line):
            m = SGR.match(line, pos)
            if m:
                params = [int(p) if p else 0 for p in m.group(1).split(";")]
                i = 0
                while i < len(params):
                    p = params[i]
                    if p == 0:
                        fg = bg = None
                        reverse = False
                    elif p == 7:
                        reverse = True
                    elif p == 27:
                        reverse = False
                    elif 30 <= p <= 37 or 90 <= p <= 97:
                        fg = BASIC[p - 30 if p < 90 else p - 82]
                    elif 40 <= p <= 47 or 100 <= p <= 107:
                        bg = BASIC[p - 40 if p < 100 else p - 92]
                    elif p == 39:
                        fg = None
                    elif p == 49:
                        bg = None
                    elif p in (38, 48) and params[i + 1] == 5:
                        value = grey256(params[i + 2])
                        fg, bg = (value, bg) if p == 38 else (fg, value)
                        i += 2
                    elif p in (38, 48) and params[i + 1] == 2:
                        value = sum(params[i + 2 : i + 5]) // 3
                        fg, bg = (value, bg) if p == 38 else (fg, value)
                        i += 4
                    i += 1
                pos = m.end()
                continue
            char = line[pos]
            pos += 1
            f = default_fg if fg is None else fg
            b = default_bg if bg is None else bg
            if reverse:
                f, b = b, f
            cell = {"\u2580": (f, b), "\u2584": (b, f), "\u2588": (f, f), " ": (b, b)}[char]
            top.append(cell[0])
            bottom.append(cell[1])
            if explicit is not None:
                explicit.append(fg is not None and bg is not None)
        rows += [top, bottom]
    scale, margin = 4, 12
    width = max(len(r) for r in rows)
    rows = [r + [default_bg] * (width - len(r)) for r in rows]
    w, h = (width + 2 * margin) * scale, (len(rows) + 2 * margin) * scale
    pixels = bytearray([default_bg]) * (w * h)
    for y, row in enumerate(rows):
        line = bytes(v for v in row for _ in range(scale))
        for dy in range(scale):
            start = ((y + margin) * scale + dy) * w + margin * scale
            pixels[start : start + len(line)] = line
    return bytes(pixels), w, h


def scan(image: tuple[bytes, int, int]) -> list[str]:
    pixels, w, h = image
    found = zxingcpp.read_barcodes(memoryview(pixels).cast("B", (h, w)), formats=zxingcpp.BarcodeFormat.QRCode,
                                   try_invert=False)  # a phone camera app does not try inverting either
    return [b.text for b in found]


def test_the_render_harness_sees_the_inversion() -> None:
    """The check below means something: segno's plain half blocks (what `komrade address` printed before) scan
    on one theme only."""
    out = io.StringIO()
    segno.make("komrade1test", error="m").terminal(out, compact=True)
    lines = out.getvalue().splitlines()
    results = {theme: scan(render(lines, theme)) for theme in THEMES}
    assert sorted(map(bool, results.values())) == [False, True], results


def test_address_qr_scans_on_dark_and_light_terminals(tmp_path: Path) -> None:
    home = tmp_path / "qr"
    run(["init", "--name", "Quinn"], home)
    out = run(["address"], home).stdout.splitlines()
    address, qr = out[0], out[2:]
    assert qr and address.startswith("komrade1")
    for theme in THEMES:
        explicit: list[bool] = []
        assert scan(render(qr, theme, explicit)) == [address], theme
        assert explicit and all(explicit), "every cell, quiet zone included, sets both of its colours"
    assert all(line.endswith("\x1b[0m") for line in qr), "colours are reset at each line's end"


def test_log_lines_are_escaped_but_tracebacks_keep_their_lines() -> None:
    from komrade_dht.cli import PrintableFormatter

    formatter = PrintableFormatter(logging.Formatter("%(levelname)s %(message)s"))
    record = logging.LogRecord("komrade", logging.WARNING, __file__, 1, "peer said %s", ("hi\x1b[2J\u202e",), None)
    assert formatter.format(record) == "WARNING peer said hi\\x1b[2J\\u202e"
    try:
        raise ValueError("boom\x1b[1A")
    except ValueError:
        record.exc_info = sys.exc_info()
    text = formatter.format(record)
    assert text.count("\n") >= 2 and "boom\\x1b[1A" in text and not unsafe_chars(text)


def test_init_at_a_terminal_refuses_a_weak_passphrase_before_asking_again(tmp_path: Path) -> None:
    """The passphrase typed at a real terminal (a pty: getpass reads /dev/tty) gets the same rule."""

    def session(home: Path, answers: list[str]) -> tuple[str, int]:
        env = {k: v for k, v in os.environ.items() if k != "KOMRADE_PASSPHRASE"}
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal
            os.execve(sys.executable, [sys.executable, "-m", "komrade_dht", "--data-dir", str(home), "init",
                                       "--name", "Pat"], env)
        out = b""
        answered = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                prompts = out.count(b"passphrase: ") + out.count(b"again: ")
                if answers and prompts > answered:  # answer each prompt once, after it is shown
                    os.write(fd, answers.pop(0).encode() + b"\n")
                    answered += 1
        else:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)

    out, code = session(tmp_path / "weak", ["password123"])
    assert code == 1 and "new passphrase:" in out and "again:" not in out
    assert "passphrase too weak (strength 0 of 4, 3 needed): Too easy to guess." in out
    out, code = session(tmp_path / "strong", ["violet tractor mumbles quietly"] * 2)
    assert code == 0 and "again:" in out and "komrade1" in out, out
