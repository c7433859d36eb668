#!/usr/bin/env bash
# Install what is missing, then run the whole test suite. pytest's exit code is ours (5, "no tests", fails too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers (pytest-xdist): most tests wait on the network and the window, so two share the two cores well
# (13 minutes in one process, 7.5 in two). KOMRADE_TEST_WORKERS=0 runs everything in this one process.
exec .venv/bin/python -m pytest -p no:cacheprovider -n "${KOMRADE_TEST_WORKERS:-2}" "$@"
