"""``vpipe bench engines`` end to end through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import needs_ov

ROOT = Path(__file__).resolve().parents[2]


def _vpipe(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "apps.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@needs_ov
def test_bench_engines_writes_table_json_and_png(tmp_path):
    r = _vpipe("bench", "engines", "zoo:blazeface-short", "--engines", "openvino", "--iters", "5",
               "--seconds", "0.2", "--in-flight", "2", "-o", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "openvino" in r.stdout and "p50 ms" in r.stdout
    data = json.loads((tmp_path / "engines-blazeface-short.json").read_text())
    (row,) = data["rows"]
    assert row["engine"] == "openvino" and row["precision"] == "fp32" and row["max_abs_err"] == 0.0
    assert row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"] and row["fps_n"] > 0 and row["load_ms"] > 0
    assert data["input_shapes"] == [[1, 128, 128, 3]]
    png = (tmp_path / "engines-blazeface-short.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_bench_engines_unknown_engine_is_a_clear_error(tmp_path):
    r = _vpipe("bench", "engines", "zoo:blazeface-short", "--engines", "tflite", "-o", str(tmp_path))
    assert r.returncode == 2
    assert "unknown engine(s) ['tflite']" in r.stdout + r.stderr


def test_bench_run_unknown_name_lists_benchmarks():
    r = _vpipe("bench", "run", "nope")
    assert r.returncode == 2 and "inference_overhead" in r.stderr
