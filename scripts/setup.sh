#!/usr/bin/env bash
# Install everything komrade needs, from nothing, on Debian 12: system packages (apt, when run as root) and a
# virtual environment in .venv with the package, its test tools and the desktop app's libraries (Kivy, KivyMD,
# zxing-cpp). Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-dev, gcc, libcairo2-dev and pkg-config build pycairo (KivyMD needs it; it has no Linux wheel);
# libmtdev1 and xclip keep Kivy from logging errors about touch devices and the clipboard.
APT_PACKAGES=(python3 python3-venv python3-pip python3-dev gcc libcairo2-dev pkg-config libmtdev1 xclip tor)
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,app]"
