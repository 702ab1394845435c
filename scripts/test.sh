#!/usr/bin/env bash
# Runs the whole test suite after setting everything up. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# UTF-8 mode: subprocess output and files decode as UTF-8 even if native code resets the C locale
# (as OpenVINO's concurrent cached compiles did; tests/conftest.py names a test that does).
export PYTHONUTF8=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
