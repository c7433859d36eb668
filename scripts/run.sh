#!/usr/bin/env bash
# Install what is missing, then run komrade.
#   bash scripts/run.sh                 the desktop app (your node starts with it and stops when you close it)
#   bash scripts/run.sh relay ...       komrade relay ...   (e.g. relay --listen 0.0.0.0:9475)
#   bash scripts/run.sh node ...        komrade node ...    (your node and its local API, no window)
#   bash scripts/run.sh ARGS...         komrade ARGS...     (e.g. inbox, send, address)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && [ -z "${SDL_VIDEODRIVER:-}" ]; then
    echo "run.sh: no display for the app here; run a relay or your node instead: bash scripts/run.sh relay --listen 127.0.0.1:9475  (or: bash scripts/run.sh node)" >&2
    exit 2
fi
bash scripts/setup.sh
if [ $# -eq 0 ]; then
    exec .venv/bin/python -m app
fi
exec .venv/bin/komrade "$@"
