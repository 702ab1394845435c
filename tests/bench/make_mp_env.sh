#!/usr/bin/env bash
# Makes the separate environment with mediapipe==0.10.21 (the last release with the Python
# CalculatorGraph) that tests/bench/bench_core.py uses as its baseline. vpipe's own environment has
# MediaPipe 1.x, so this one is never imported into it: the benchmark runs it in a subprocess.
#
#     bash tests/bench/make_mp_env.sh [DIR]      # default DIR: /work/envs/mp01021 or $VPIPE_MP_ENV
set -euo pipefail
dir="${1:-${VPIPE_MP_ENV:-/work/envs/mp01021}}"
python="${PYTHON:-python3}"
"$python" -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --upgrade pip
"$dir/bin/python" -m pip install --quiet "mediapipe==0.10.21"
"$dir/bin/python" -c "import mediapipe as mp; mp.CalculatorGraph; print('mediapipe', mp.__version__, 'in', '$dir')"
