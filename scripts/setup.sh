#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: system libraries for headless rendering,
# a virtual environment in .venv, torch 2.13.0 and hcdp with its extras. Used by scripts/test.sh
# and scripts/demo.sh.
#
# Where torch comes from, in this order (the first that applies):
#   1. already in .venv at 2.13.0: nothing is installed;
#   2. HCDP_TORCH_INDEX is set: from that index (e.g. https://download.pytorch.org/whl/cu128);
#   3. a local wheel that pip's own configuration points to (find-links, e.g. an offline mirror):
#      nothing is downloaded for torch;
#   4. no NVIDIA GPU: the CPU build from PyTorch's CPU index, https://download.pytorch.org/whl/cpu
#      (about 190 MB, no CUDA libraries);
#   5. an NVIDIA GPU: PyPI's default build, which brings CUDA (several GB of nvidia-* wheels).
# hcdp's other dependencies come from PyPI (or the index pip is configured with).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
CPU_INDEX=https://download.pytorch.org/whl/cpu

need_debs=()
for deb in libegl1 libegl-mesa0 libgl1-mesa-dri; do
  dpkg -s "$deb" >/dev/null 2>&1 || need_debs+=("$deb")
done
if [ ${#need_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_debs[@]}" >/dev/null
  else
    echo "note: ${need_debs[*]} missing (needed only for synthetic-data rendering);" \
      "install them with apt" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
pip_install=(.venv/bin/python -m pip install -q --disable-pip-version-check)

installed() {  # the version of an installed distribution, without importing it
  .venv/bin/python -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" \
    2>/dev/null
}

have_torch() {
  [ "$(installed torch | cut -d+ -f1)" = "$TORCH_VERSION" ]
}

nvidia_gpu() {
  [ -e /proc/driver/nvidia/version ] && return 0
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

if have_torch; then
  :
elif [ -n "${HCDP_TORCH_INDEX:-}" ]; then
  echo "setup: torch $TORCH_VERSION from HCDP_TORCH_INDEX=$HCDP_TORCH_INDEX" >&2
  "${pip_install[@]}" "torch==$TORCH_VERSION" --index-url "$HCDP_TORCH_INDEX"
elif "${pip_install[@]}" --no-index --no-deps "torch==$TORCH_VERSION" >/dev/null 2>&1; then
  echo "setup: torch $TORCH_VERSION from a local wheel (pip's find-links); not downloaded" >&2
elif nvidia_gpu; then
  echo "setup: NVIDIA GPU found: torch $TORCH_VERSION from PyPI (CUDA build, several GB)" >&2
  "${pip_install[@]}" "torch==$TORCH_VERSION"
else
  echo "setup: no NVIDIA GPU: torch $TORCH_VERSION CPU build from $CPU_INDEX (~190 MB)" >&2
  "${pip_install[@]}" "torch==$TORCH_VERSION" --index-url "$CPU_INDEX"
fi
# torch is installed now, so this only adds its dependencies and hcdp's (never another torch).
# Skipped when nothing it depends on changed since the last successful run (a stamp in .venv).
stamp=.venv/.hcdp-setup
want="$(cat setup.py scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ -z "$(installed hcdp_ros)" ]; then
  "${pip_install[@]}" "torch==$TORCH_VERSION" -e ".[dev]"
  echo "$want" > "$stamp"
fi
