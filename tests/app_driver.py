"""Driving the real komrade window headless (SDL offscreen, Mesa software GL) as a person would: set text, press
buttons with touches at their place on screen, wait for frames and conditions with deadlines; screenshots from the
window's framebuffer.

Importing this module sets Kivy's environment (it must come before anything imports kivy).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

_KIVY_HOME = tempfile.mkdtemp(prefix="kivy-home-")
for key, value in {
    "KIVY_NO_ARGS": "1",
    "KIVY_HOME": _KIVY_HOME,
    "KIVY_METRICS_DENSITY": "1",
    "KIVY_LOG_MODE": "PYTHON",
    "SDL_VIDEODRIVER": "offscreen",
    "KIVY_NO_CONSOLELOG": "1",
}.items():
    os.environ.setdefault(key, value)
os.environ.pop("DISPLAY", None)  # offscreen: never an X server's pointer in the pictures

from kivy.config import Config  # noqa: E402

Config.set("graphics", "width", "1100")
Config.set("graphics", "height", "760")


from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.tests.common import UnitTestTouch  # noqa: E402

#: Where screenshots go: docs/screenshots only when asked (KOMRADE_SCREENSHOTS=docs/screenshots), so that running
#: the suite leaves the work tree as it was; a temporary directory otherwise.
SCREENSHOTS = Path(os.environ.get("KOMRADE_SCREENSHOTS") or Path(tempfile.gettempdir()) / "komrade-screenshots")
KOMRADE = [sys.executable, "-m", "komrade_dht"]


async def frames(count: int = 3, timeout: float = 20.0) -> None:
    """Wait until the window has drawn ``count`` more frames."""
    target = Clock.frames_displayed + count
    deadline = time.monotonic() + timeout
    while Clock.frames_displayed < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"the window drew no {count} frames in {timeout} s: frozen?")
        await asyncio.sleep(0.01)


async def hold(seconds: float) -> None:
    """Keep drawing frames for ``seconds`` of the UI clock (a touch held, not a sleep hoping for something)."""
    end = Clock.get_boottime() + seconds
    await frames(1)
    while Clock.get_boottime() < end:
        await frames(1)


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str | Callable[[], str] = "") -> Any:
    """Wait (drawing frames) until ``predicate()`` is truthy; fail at the deadline saying ``what`` (or what it
    returns then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {(what() if callable(what) else what) or predicate}")
        await asyncio.sleep(0.02)


async def press(widget: Any) -> None:
    """Touch the middle of ``widget`` where it is drawn, as a finger would, and let the UI react."""
    await frames(1)
    assert widget.get_root_window() is not None, f"{widget} is not on screen (replaced or never shown)"
    # Layout settles over a few frames (label heights, then their boxes): touch where it stays, as an eye would.
    deadline = time.monotonic() + 10
    where = None
    while where != (widget.to_window(*widget.center), tuple(widget.size)):
        where = (widget.to_window(*widget.center), tuple(widget.size))
        assert time.monotonic() < deadline, f"{widget} keeps moving"
        await frames(1)
    x, y = widget.to_window(*widget.center)
    assert 0 <= x <= Window.width and 0 <= y <= Window.height, f"{widget} is off screen at {(x, y)}"
    touch = UnitTestTouch(x, y)
    touch.touch_down()
    # Hold it as a finger does (~0.15 s): longer than a ScrollView's scroll_timeout (55 ms), after which it hands
    # the touch to the widget under it; a shorter tap is replayed to the widget 0.2 s after release instead.
    await hold(0.15)
    touch.touch_up()
    await frames(2)


async def scroll_to(widget: Any) -> None:
    """Scroll the scroll view holding ``widget`` until it is in view, as a person turns the wheel to it."""
    from kivy.uix.scrollview import ScrollView

    parent = widget.parent
    while parent is not None and not isinstance(parent, ScrollView):
        parent = parent.parent
    assert parent is not None, f"{widget} is in no scroll view"
    parent.scroll_to(widget, padding=20, animate=False)
    await frames(3)


async def press_until(widget: Any, predicate: Callable[[], Any], timeout: float = 40.0,
                      what: str | Callable[[], str] = "",
                      again_after: float = 10.0) -> Any:
    """Press ``widget`` (or the widget ``widget()`` returns now) until ``predicate()`` holds, as a person taps again
    when nothing happened: a tap can be lost to a layout that moved under the finger on a loaded machine. Only for
    actions that are harmless to repeat (open a dialog, sync, refresh)."""
    deadline = time.monotonic() + timeout
    while True:
        await press(widget() if callable(widget) and not hasattr(widget, "get_root_window") else widget)
        try:
            return await until(predicate, min(again_after, max(0.1, deadline - time.monotonic())), what)
        except AssertionError:
            if time.monotonic() >= deadline:
                raise


class LoopThread:
    """An asyncio loop on a daemon thread (for the relays); ``run`` executes a coroutine there."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="relays", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


T0 = time.monotonic()


def mark(what: str) -> None:
    """Print the time since the module was imported (pytest -s shows where a test spends its time)."""
    print(f"[{time.monotonic() - T0:6.1f} s] {what}", flush=True)


async def screenshot(name: str) -> Path:
    """The window as drawn now, saved as <SCREENSHOTS>/<name>.png."""
    mark(f"screenshot {name}")
    await frames(6)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(Window.screenshot(name=str(Path(_KIVY_HOME) / "shot.png")))
    target = SCREENSHOTS / f"{name}.png"
    shutil.move(tmp, target)
    return target


async def komrade(home: Path, *args: str, passphrase: str | None = None, **env: str) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop (the window and the relays run on it)."""
    full = {k: v for k, v in os.environ.items() if k not in ("KOMRADE_PASSPHRASE", "KOMRADE_RECOVERY")}
    full.update(env)
    if passphrase is not None:
        full["KOMRADE_PASSPHRASE"] = passphrase
    proc = await asyncio.create_subprocess_exec(
        *KOMRADE, "--data-dir", str(home), *args, env=full, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive: it has exited and only waits to be reaped
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False
