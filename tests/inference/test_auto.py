"""``engine: auto`` picks the best installed engine for the model's format and logs its choice."""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import numpy as np
import pytest

from pipeline.testing import run_calculator

from calculators.inference import selection
from calculators.inference.engine import EngineNotInstalledError, ModelFormatError
from calculators.inference.selection import pick_engine

from .conftest import installed, needs_ov

X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.parametrize("name, expected", [
    ("m.onnx", "onnxruntime" if installed("onnxruntime") and not selection._has_nvidia_gpu() else None),
    ("m.xml", "openvino"),
    ("m.tflite", "litert" if installed("ai_edge_litert") else "openvino"),
    ("m.param", "ncnn"),
])
def test_pick_engine_by_format(name, expected):
    if expected is None:
        pytest.skip("the .onnx choice depends on the machine (GPU / non-x86 / no openvino)")
    if not selection.is_installed(expected):
        pytest.skip(f"{expected} not installed")
    assert pick_engine(Path(name)) == expected


@pytest.mark.parametrize("name, match", [
    ("m.task", r"MediaPipe Tasks models through their own calculators \(MediaPipeFaceDetector"),
    ("m.pb", r"unknown model format '.pb'"),
])
def test_pick_engine_refuses(name, match):
    with pytest.raises((ModelFormatError, EngineNotInstalledError), match=match):
        pick_engine(Path(name))


@pytest.mark.skipif(installed("tensorrt"), reason="tensorrt installed")
def test_pick_engine_engine_file_without_tensorrt_names_extra():
    with pytest.raises(EngineNotInstalledError, match=r"pip install vpipe\[tensorrt\]"):
        pick_engine(Path("m.engine"))


@needs_ov
def test_auto_in_a_node_logs_its_pick(blazeface, caplog):
    caplog.set_level(logging.INFO, logger="vpipe.inference")
    out = run_calculator("Inference", inputs={"TENSORS": [(0, np.zeros((1, 128, 128, 3), np.float32))]},
                         options={"model": "zoo:blazeface-short"})
    (t, tensors), = out["TENSORS"]
    assert t == 0 and tensors.names == ("regressors", "classificators")
    assert tensors["regressors"].shape == (1, 896, 16)
    picked = "litert" if installed("ai_edge_litert") else "openvino"
    assert any(f"engine auto picked {picked}" in r.getMessage() for r in caplog.records), caplog.text


@needs_ov
def test_auto_gives_a_tflite_with_mediapipes_custom_ops_to_openvino():
    """LiteRT has not MediaPipe's custom ops (the face mesh with attention); OpenVINO has them."""
    from models.catalog import resolve

    assert pick_engine(Path(resolve("zoo:face-landmark-with-attention"))) == "openvino"
    assert pick_engine(Path(resolve("zoo:face-landmark"))) == ("litert" if installed("ai_edge_litert") else "openvino")


@needs_ov
def test_output_renaming_and_selection(blazeface):
    out = run_calculator("Inference", inputs={"TENSORS": [(0, np.zeros((1, 128, 128, 3), np.float32))]},
                         options={"model": str(blazeface), "engine": "openvino",
                                  "outputs": {"classificators": "scores"}, "layouts": {"scores": "NC"}})
    (_, tensors), = out["TENSORS"]
    assert tensors.names == ("scores",) and tensors[0].layout == "NC" and tensors[0].shape == (1, 896, 1)


@needs_ov
def test_dict_payload_with_input_mapping(blazeface):
    x = np.random.default_rng(1).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    options = {"model": str(blazeface), "engine": "openvino"}
    out = run_calculator("Inference", inputs={"TENSORS": [(5, {"image": x})]},
                         options={**options, "inputs": {"image": "input"}})
    plain = run_calculator("Inference", inputs={"TENSORS": [(5, x)]}, options=options)
    zeros = run_calculator("Inference", inputs={"TENSORS": [(5, np.zeros_like(x))]}, options=options)
    (t, got), = out["TENSORS"]
    assert t == 5 and got.names == ("regressors", "classificators")
    # the mapped payload is the model's input: the outputs are those of x fed directly
    for a, b, z in zip(got, plain["TENSORS"][0][1], zeros["TENSORS"][0][1]):
        assert np.array_equal(a.data, b.data) and not np.array_equal(a.data, z.data)


def test_import_calculators_imports_no_engine():
    import subprocess
    import sys

    code = ("import sys, calculators; "
            "bad = [m for m in ('onnxruntime', 'openvino', 'ncnn', 'tensorrt', 'mediapipe') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=str(Path(__file__).resolve().parents[2]))
    assert r.returncode == 0, r.stdout + r.stderr
