#!/usr/bin/env bash
# The main job: face detection on the sample video, writing out/annotated.mp4 and
# out/detections.jsonl. Extra arguments go to the demo, e.g. --source 0 for the webcam
# (a window where there is a display, the browser preview otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m apps.demo "$@"
