#!/usr/bin/env bash
# Makes the separate environment with mediapipe==0.10.21 (the last release with the Python
# CalculatorGraph) that tests/bench/bench_core.py uses as its baseline, with PyAV (the project's
# version) for bench_landmarks.py's plain loop, which decodes the video as a MediaPipe user does. vpipe's own environment has
# MediaPipe 1.x, so this one is never imported into it: the benchmark runs it in a subprocess.
#
#     bash tests/bench/make_mp_env.sh [DIR]      # default DIR: /work/envs/mp01021 or $VPIPE_MP_ENV
set -euo pipefail
dir="${1:-${VPIPE_MP_ENV:-/work/envs/mp01021}}"
python="${PYTHON:-python3}"
"$python" -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --upgrade pip
"$dir/bin/python" -m pip install --quiet "mediapipe==0.10.21" "av==18.1.0"
"$dir/bin/python" -c "import av, mediapipe as mp; mp.CalculatorGraph; print('mediapipe', mp.__version__, 'av', av.__version__, 'in', '$dir')"
