#!/usr/bin/env bash
# Sets up everything on a fresh machine; safe to run again (idempotent).
#  - Debian packages listed in scripts/apt-packages.txt (when apt-get is available and we are root)
#  - a virtual environment in .venv with vpipe, all its engines and Ray installed (editable; the
#    `all` extra includes `ray`, for vpipe run --ray and tests/cluster)
#  - the models and sample videos of the catalog, verified by checksum, in the per-user cache
#  - mediapipe 0.10.21 (its legacy solutions: the reference of tests/landmarks, the baseline of
#    tests/bench) in an environment of its own, $VPIPE_MP_ENV or /work/envs/mp01021: it pulls
#    opencv-contrib-python, and one environment holds one OpenCV distribution
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  while read -r pkg; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done < scripts/apt-packages.txt
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not root or no apt-get: skipping Debian packages (tests that need them will skip)"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
# Install only when pyproject.toml changed since the last install (fast re-runs).
stamp=.venv/.vpipe-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  echo "setup: installing vpipe with all engines into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[all,test,mutation]'
  .venv/bin/python -m pip install -q --no-deps 'pnnx>=20240410'
  touch "$stamp"
fi

echo "setup: fetching the model and sample catalog (cached, checksummed)"
.venv/bin/vpipe models pull --all

MP_ENV=${VPIPE_MP_ENV:-/work/envs/mp01021}
if [ ! -f "$MP_ENV/.vpipe-made" ] || [ tests/bench/make_mp_env.sh -nt "$MP_ENV/.vpipe-made" ]; then
  echo "setup: making the mediapipe 0.10.21 reference environment in $MP_ENV"
  made_here=0
  [ -e "$MP_ENV" ] || made_here=1
  if PYTHON="$PY" bash tests/bench/make_mp_env.sh "$MP_ENV"; then
    touch "$MP_ENV/.vpipe-made"
  else
    # a half-made one (a venv without mediapipe) would make those tests fail instead of skip
    [ "$made_here" = 1 ] && rm -rf "$MP_ENV"
    echo "setup: could not make $MP_ENV: the tests that compare with MediaPipe 0.10.21 will skip, saying so"
  fi
fi
