#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: system libraries for headless rendering,
# a virtual environment in .venv, the CPU build of torch (pinned so pip never pulls a CUDA build)
# and hcdp with its extras. Used by scripts/test.sh and scripts/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

need_debs=()
for deb in libegl1 libegl-mesa0 libgl1-mesa-dri; do
  dpkg -s "$deb" >/dev/null 2>&1 || need_debs+=("$deb")
done
if [ ${#need_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_debs[@]}" >/dev/null
  else
    echo "note: ${need_debs[*]} missing (needed only for synthetic-data rendering); install them with apt" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" -e ".[dev]"
