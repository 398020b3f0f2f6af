#!/usr/bin/env bash
# Set up (see scripts/setup.sh), then run the bundled default model over the bundled sample bag
# without ROS: writes out/demo/ with the prediction bag (a rosbag2 folder), metrics JSON and a
# contact-sheet PNG. `hcdp bag` picks its thread count so that a shared machine is not
# oversubscribed (OMP_NUM_THREADS, or half the CPUs, at most 4); pass e.g. `--threads 2` to choose.
# The metrics skip the baselines (window 1, per frame, per frame + EMA), which would triple the time;
# run `hcdp bag ... --metrics m.json` without --no-baselines to get them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf out/demo && mkdir -p out/demo
.venv/bin/hcdp bag data/sample/sample_bag out/demo/predictions \
  --image-topic /camera/color/image_raw --camera-info-topic /camera/color/camera_info \
  --compression zstd --metrics out/demo/metrics.json --no-baselines --sheet out/demo/contact_sheet.png "$@"
echo "demo: wrote out/demo/predictions/ (rosbag2), out/demo/metrics.json," \
  "out/demo/contact_sheet.png"
