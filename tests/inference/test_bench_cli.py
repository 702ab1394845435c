"""``vpipe bench engines`` end to end through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from calculators.inference import selection

from .conftest import needs_ncnn, needs_ort, needs_ov

ROOT = Path(__file__).resolve().parents[2]


def _vpipe(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "apps.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@needs_ov
@needs_ort
def test_bench_engines_writes_table_json_and_png(tmp_path):
    r = _vpipe("bench", "engines", "zoo:blazeface-short", "--engines", "openvino,onnxruntime", "--iters", "5",
               "--seconds", "0.2", "--in-flight", "2", "-o", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "openvino" in r.stdout and "p50 ms" in r.stdout
    data = json.loads((tmp_path / "engines-blazeface-short.json").read_text())
    row, other = data["rows"]
    # the first installed reader of .tflite files is the reference: LiteRT (the model's own
    # runtime) where installed, else OpenVINO (error 0 by definition); OpenVINO on the .tflite and
    # the ONNX conversion run by ONNX Runtime are compared with it: close, but not bit for bit
    reference = "litert" if selection.is_installed("litert") else "openvino"
    assert row["engine"] == "openvino" and row["precision"] == "fp32"
    assert data["reference"] == f"{reference} fp32" and other["engine"] == "onnxruntime"
    assert (0 < row["max_abs_err"] < 1e-3) if reference == "litert" else row["max_abs_err"] == 0.0, row
    assert 0 < other["max_abs_err"] < 1e-3, other
    assert row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"] and row["fps_n"] > 0 and row["load_ms"] > 0
    assert data["input_shapes"] == [[1, 128, 128, 3]]
    png = (tmp_path / "engines-blazeface-short.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.parametrize("args, message", [
    (["zoo:blazeface-short", "--engines", "tflite"], "unknown engine(s) ['tflite']"),
    (["zoo:blazefase-short"], "no catalog entry named 'blazefase-short'; did you mean 'blazeface-short'"),
    (["sample:carphone"], "no installed engine reads carphone.mp4"),
])
def test_bench_engines_bad_requests_are_clear_errors(tmp_path, args, message):
    r = _vpipe("bench", "engines", *args, "-o", str(tmp_path))
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in " ".join((r.stdout + r.stderr).split()) and "Traceback" not in r.stderr


def test_bench_run_unknown_name_lists_benchmarks():
    r = _vpipe("bench", "run", "nope")
    assert r.returncode == 2 and "inference_overhead" in r.stderr


@needs_ort
@needs_ncnn
def test_bench_runs_ncnn_on_an_onnx_model_through_the_checked_converter(centerface_ncnn):
    # centerface_ncnn made (and cached) the conversion bench asks for: same model, same 1x3x480x640.
    from apps.engine_bench import bench_engines

    report = bench_engines("zoo:centerface", ["ncnn"], iters=3, in_flight=2, seconds=0.1, log=lambda m: None)
    (row,) = report.rows
    assert report.reference == "onnxruntime fp32" and report.input_shapes == [[1, 3, 480, 640]]
    assert row.note == "converted by vpipe convert --to ncnn" and row.device == "cpu"
    assert row.p50_ms > 0 and row.fps_n > 0
    assert row.max_abs_err is not None and row.max_abs_err < 5e-4  # f32 ncnn vs ORT, as in test_engines_agree


@needs_ov
@needs_ort
@needs_ncnn
def test_bench_runs_engines_that_cannot_read_a_tflite_model_on_its_checked_conversions():
    # TFLite is read by LiteRT (the reference, where installed) and OpenVINO; ONNX Runtime gets the
    # tflite2onnx model (its input NCHW where the TFLite one is NHWC) and ncnn the pnnx conversion
    # of that, each fed the same frames laid out for it, each output paired with the reference's by size.
    from apps.engine_bench import bench_engines

    # No engines named: every installed one, readers first (TensorRT is not installed here).
    report = bench_engines("zoo:blazeface-short", None, iters=3, in_flight=2, seconds=0.1, log=lambda m: None)
    readers = ["litert", "openvino"] if selection.is_installed("litert") else ["openvino"]
    assert report.reference == f"{readers[0]} fp32" and report.input_shapes == [[1, 128, 128, 3]]
    assert [r.engine for r in report.rows if r.engine != "tensorrt"] == readers + ["onnxruntime", "ncnn"]
    rows = {r.engine: r for r in report.rows}
    assert rows["onnxruntime"].note == "converted by vpipe convert --to onnx"
    assert rows["ncnn"].note == "converted by vpipe convert --to ncnn"
    for r in rows.values():
        assert r.p50_ms and r.p50_ms > 0 and r.fps_n and r.fps_n > 0, r
        assert r.max_abs_err is not None and r.max_abs_err < 1e-3, (r.engine, r.max_abs_err)
    # the converted models are compared with the reference, not with themselves
    assert rows[readers[0]].max_abs_err == 0 and rows["onnxruntime"].max_abs_err > 0 and rows["ncnn"].max_abs_err > 0


@needs_ort
@needs_ncnn
def test_bench_rows_per_device_and_a_missing_device_is_a_row_note(centerface_ncnn, tmp_path):
    r = _vpipe("bench", "engines", "zoo:centerface", "--engines", "ncnn", "--devices", "cpu,vulkan",
               "--shape", "1,3,480,640", "--iters", "3", "--seconds", "0.1", "-o", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads((tmp_path / "engines-centerface.json").read_text())["rows"]
    assert [(row["engine"], row["device"].split(":")[0]) for row in rows] == [("ncnn", "cpu"), ("ncnn", "vulkan")]
    assert rows[0]["p50_ms"] > 0 and rows[0]["max_abs_err"] < 1e-3
    import ncnn

    if ncnn.get_gpu_count() == 0:  # this machine: the Vulkan row says why it has no figures
        assert rows[1]["p50_ms"] is None and "needs Vulkan GPU 0, but 0 are available" in rows[1]["note"]
    else:  # a Vulkan machine measures it
        assert rows[1]["p50_ms"] > 0 and rows[1]["max_abs_err"] < 1e-2
