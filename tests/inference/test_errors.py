"""Bad input is a clear error at open or at the first packet, naming the node and the model."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline import GraphRunError
from pipeline.testing import run_calculator

from calculators.inference import model_cache
from calculators.types import Tensor

from .conftest import installed, needs_ncnn, needs_ort, needs_ov


@pytest.fixture(autouse=True)
def _nothing_left_loaded():
    """Every failed open (or first packet) releases what it had acquired."""
    yield
    assert model_cache.loaded_models() == []


def _run(options, value=None):
    value = value if value is not None else Tensor(np.zeros((1, 3, 64, 64), np.float32), "NCHW")
    return run_calculator("Inference", inputs={"TENSORS": [(0, value)]}, options=options)


def _message(excinfo) -> str:
    e = excinfo.value
    parts = [str(e)]
    while e.__cause__ is not None:
        e = e.__cause__
        parts.append(str(e))
    return "\n".join(parts)


def test_missing_model_file(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(missing), "engine": "onnxruntime"})
    msg = _message(ei)
    assert "Inference" in msg and "nope.onnx" in msg and "not found" in msg


@pytest.mark.parametrize("engine, suffix, content", [
    pytest.param("onnxruntime", ".onnx", b"\x08\x07garbage-not-a-protobuf" * 10, marks=needs_ort),
    pytest.param("openvino", ".onnx", b"\x08\x07garbage-not-a-protobuf" * 10, marks=needs_ov),
    pytest.param("openvino", ".tflite", b"TFL3" + b"\x00\xff" * 64, marks=needs_ov),
    pytest.param("ncnn", ".param", b"not an ncnn param\n", marks=needs_ncnn),
])
def test_corrupt_model_file(tmp_path, engine, suffix, content):
    bad = tmp_path / f"corrupt{suffix}"
    bad.write_bytes(content)
    if suffix == ".param":
        bad.with_suffix(".bin").write_bytes(b"\x00" * 16)
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(bad), "engine": engine})
    msg = _message(ei)
    assert f"corrupt{suffix}" in msg and "Inference" in msg
    assert re.search(r"could not (load|parse)|not an ncnn", msg), msg


@needs_ort
def test_truncated_onnx(tmp_path, centerface):
    cut = tmp_path / "truncated.onnx"
    cut.write_bytes(centerface.read_bytes()[: 20_000])
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(cut), "engine": "onnxruntime"})
    assert "truncated.onnx" in _message(ei) and "could not load" in _message(ei)


@pytest.mark.parametrize("engine", [pytest.param("onnxruntime", marks=needs_ort), pytest.param("openvino", marks=needs_ov)])
def test_shape_mismatch_names_input_expected_and_got(centerface_static, engine):
    # centerface-static takes 10x3x32x32
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(centerface_static), "engine": engine},
             Tensor(np.zeros((1, 3, 480, 640), np.float32), "NCHW"))
    msg = _message(ei)
    assert "input 'input.1': expected (10, 3, 32, 32) float32, got (1, 3, 480, 640) float32" in msg, msg
    assert "centerface_static.onnx" in msg and "Inference" in msg


@pytest.mark.parametrize("engine", [pytest.param("onnxruntime", marks=needs_ort), pytest.param("openvino", marks=needs_ov)])
def test_dtype_mismatch(centerface, engine):
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(centerface), "engine": engine}, Tensor(np.zeros((1, 3, 64, 64), np.uint8), "NCHW"))
    assert "input 'input.1': expected (?, 3, ?, ?) float32, got (1, 3, 64, 64) uint8" in _message(ei)


@needs_ov
def test_wrong_number_of_inputs(blazeface):
    x = np.zeros((1, 128, 128, 3), np.float32)
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(blazeface), "engine": "openvino"}, [x, x])
    assert "the model takes 1 input(s) ['input'], got 2 tensor(s)" in _message(ei)


@pytest.mark.parametrize("engine, model, expect", [
    pytest.param("ncnn", "centerface", r"engine 'ncnn' cannot load ONNX models.*vpipe convert MODEL --to ncnn.*"
                 r"`convert: never` forbids converting it", marks=needs_ncnn),
    pytest.param("onnxruntime", "blazeface", r"engine 'onnxruntime' cannot load TFLite models.*openvino", marks=needs_ort),
    pytest.param("mediapipe", "blazeface", r"MediaPipeFaceDetector.*engine 'litert' or 'openvino'", marks=()),
])
def test_engine_cannot_take_format(request, engine, model, expect):
    """With ``convert: never`` (otherwise the engine runs the model's checked conversion)."""
    path = request.getfixturevalue(model)
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(path), "engine": engine, "convert": "never"})
    msg = _message(ei)
    assert re.search(expect, msg, re.S), msg
    assert str(path) in msg or path.name in msg


@pytest.mark.parametrize("engine, device, expect", [
    pytest.param("onnxruntime", "cuda", r"device 'cuda' needs the CUDAExecutionProvider", marks=needs_ort),
    pytest.param("onnxruntime", "banana", r"unknown device 'banana'", marks=needs_ort),
    pytest.param("openvino", "NPU7", r"device 'NPU7' is not available here \(available: CPU", marks=needs_ov),
    pytest.param("ncnn", "vulkan:3", r"needs Vulkan GPU 3", marks=needs_ncnn),
])
def test_unknown_or_missing_device(request, centerface, engine, device, expect):
    model = centerface
    if engine == "ncnn":
        model = request.getfixturevalue("centerface_ncnn")
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(model), "engine": engine, "device": device})
    msg = _message(ei)
    assert re.search(expect, msg), msg
    assert "Inference" in msg and model.name in msg


@pytest.mark.skipif(installed("tensorrt"), reason="tensorrt is installed here")
def test_missing_engine_names_the_extra(centerface):
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(centerface), "engine": "tensorrt"})
    assert "pip install vpipe[tensorrt]" in _message(ei)


@needs_ort
def test_static_batch_model_refuses_batching(centerface_static):
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(centerface_static), "engine": "onnxruntime", "batch_size": 4})
    assert "batch_size 4 needs a model whose inputs have a dynamic first (batch) dim" in _message(ei)


@needs_ov
def test_unknown_output_name(blazeface):
    with pytest.raises(GraphRunError) as ei:
        _run({"model": str(blazeface), "engine": "openvino", "outputs": {"boxes": "b"}},
             np.zeros((1, 128, 128, 3), np.float32))
    assert "no output named ['boxes']; the model's outputs are ['regressors', 'classificators']" in _message(ei)
