#!/usr/bin/env bash
# Set up (see scripts/setup.sh), then run the bundled default model over the bundled sample bag without
# ROS: writes out/demo/ with the prediction bag, metrics JSON and a contact-sheet PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf out/demo && mkdir -p out/demo
.venv/bin/hcdp bag data/sample/sample.bag out/demo/predictions.bag \
  --image-topic /camera/color/image_raw --camera-info-topic /camera/color/camera_info \
  --compression zstd --metrics out/demo/metrics.json --sheet out/demo/contact_sheet.png "$@"
echo "demo: wrote out/demo/predictions.bag, out/demo/metrics.json and out/demo/contact_sheet.png"
