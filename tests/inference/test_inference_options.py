"""The Inference calculator's options reach the runtime: each test opens a real graph with the
option set and reads the setting back from the engine's own object (OpenVINO's compiled model,
ONNX Runtime's session options, ncnn's ``Net.opt``), against the same graph without it."""

from __future__ import annotations

import re

import numpy as np
import pytest

import calculators  # noqa: F401  (registers the built-ins)
from calculators.inference import model_cache
from pipeline import Graph, GraphRunError
from pipeline.testing import run_calculator

from .conftest import needs_ncnn, needs_ort, needs_ov


def _engine_with(model, **options):
    """Opens a graph with one Inference node and returns its loaded engine's runtime object via
    ``inspect(engine)``; the graph is closed again before returning."""
    g = Graph.from_dict({"name": "options", "inputs": ["in"], "nodes": [
        {"calculator": "Inference", "inputs": {"TENSORS": "in"}, "outputs": {"TENSORS": "out"},
         "options": {"model": str(model), **options}}]})
    g.start()
    try:
        (shared,) = [s for k, s in model_cache._cache.items() if k[0] == str(model.resolve()) and s.refs]
        return shared.engine, g
    except BaseException:
        g.close_all_inputs()
        g.wait(30)
        raise


def _read(model, read, **options):
    engine, g = _engine_with(model, **options)
    try:
        return read(engine)
    finally:
        g.close_all_inputs()
        g.wait(30)


@needs_ov
def test_openvino_threads_and_engine_options_config(centerface):
    threads = lambda e: int(e.compiled.get_property("INFERENCE_NUM_THREADS"))  # noqa: E731
    streams = lambda e: int(e.compiled.get_property("NUM_STREAMS"))  # noqa: E731
    assert _read(centerface, threads, engine="openvino", threads=1) == 1
    assert _read(centerface, threads, engine="openvino") != 1  # the runtime's default on 2+ cores
    assert _read(centerface, streams, engine="openvino") == 1  # the LATENCY hint's one stream
    assert _read(centerface, streams, engine="openvino", engine_options={"config": {"NUM_STREAMS": 2}}) == 2


@needs_ort
def test_onnxruntime_threads_and_engine_options_session_config(centerface):
    def intra(e):
        return e.session.get_session_options().intra_op_num_threads

    assert _read(centerface, intra, engine="onnxruntime", threads=1) == 1
    assert _read(centerface, intra, engine="onnxruntime") == 0  # 0: ONNX Runtime picks
    entry = "session.intra_op.allow_spinning"

    def spinning(e):
        return e.session.get_session_options().get_session_config_entry(entry)

    assert _read(centerface, spinning, engine="onnxruntime",
                 engine_options={"session_config": {entry: "0"}}) == "0"


@needs_ncnn
def test_ncnn_threads_light_mode_fp16_and_engine_options_opt(centerface_ncnn):
    def opt(e):
        o = e.net.opt
        return {"threads": o.num_threads, "light": o.lightmode, "fp16": o.use_fp16_storage,
                "winograd": o.use_winograd_convolution}

    default = _read(centerface_ncnn, opt, engine="ncnn")
    assert default["light"] is True and default["fp16"] is False and default["winograd"] is True
    assert _read(centerface_ncnn, opt, engine="ncnn", threads=1)["threads"] == 1
    assert _read(centerface_ncnn, opt, engine="ncnn", light_mode=False)["light"] is False
    # (the outputs do not show it on this x86 CPU: ncnn runs fp32 where it has no fp16 kernels)
    assert _read(centerface_ncnn, opt, engine="ncnn", precision="fp16")["fp16"] is True
    assert _read(centerface_ncnn, opt, engine="ncnn",
                 engine_options={"opt": {"use_winograd_convolution": False}})["winograd"] is False


@pytest.mark.parametrize("engine, expect", [
    pytest.param("openvino", r"precision 'int8' is not a runtime hint: quantize the model \(NNCF\)", marks=needs_ov),
    pytest.param("onnxruntime", r"precision 'int8' is not available on device 'auto'", marks=needs_ort),
])
def test_int8_is_refused_where_it_is_not_a_runtime_setting(centerface, engine, expect):
    with pytest.raises(GraphRunError) as ei:
        run_calculator("Inference", inputs={"TENSORS": [(0, np.zeros((1, 3, 64, 64), np.float32))]},
                       options={"model": str(centerface), "engine": engine, "precision": "int8"})
    e, messages = ei.value, []
    while e is not None:
        messages.append(str(e))
        e = e.__cause__
    assert re.search(expect, "\n".join(messages)), messages
    assert model_cache.loaded_models() == []
