#!/usr/bin/env bash
# Install what is missing, then run komrade. With no arguments: a relay on 127.0.0.1:9475 that joins the peers in
# bootstrap_nodes.txt, or starts its own network when none answers. With arguments: `komrade ARGS...`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then
    set -- --data-dir "${KOMRADE_HOME:-$PWD/.komrade}/relay" relay --listen 127.0.0.1:9475
fi
exec .venv/bin/komrade "$@"
