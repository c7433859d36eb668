"""``python -m app [--data-dir DIR] [--bootstrap HOST:PORT ...]``: open the komrade window (needs a display)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("SDL_VIDEODRIVER") in ("offscreen", "kmsdrm", "wayland", "x11"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="The komrade desktop app.")
    parser.add_argument("--data-dir", help="default: $KOMRADE_HOME or the user data directory")
    parser.add_argument("--bootstrap", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--bootstrap-file", metavar="FILE")
    args = parser.parse_args(argv)
    if not has_display():
        print("komrade app: no display here (DISPLAY/WAYLAND_DISPLAY unset); run a node instead: "
              "bash scripts/run.sh node ... or bash scripts/run.sh relay ...", file=sys.stderr)
        return 2
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    from pathlib import Path

    from komrade_dht.cli import default_data_dir

    from .main import KomradeApp
    from .node_host import NodeOptions

    options = NodeOptions(Path(args.data_dir) if args.data_dir else default_data_dir(), tuple(args.bootstrap),
                          args.bootstrap_file)
    app = KomradeApp(options)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or a service manager: close as the window does
            loop.add_signal_handler(sig, lambda: None if app.closing else asyncio.ensure_future(app.shutdown()))
        try:
            await app.async_run(async_lib="asyncio")
        finally:
            if app.backend is not None:
                await app.backend.close()
            await app.host.stop()  # whatever way the window went, our node does not outlive it

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
