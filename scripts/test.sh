#!/usr/bin/env bash
# Install what is missing, then run the whole test suite. pytest's exit code is ours (5, "no tests", fails too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
