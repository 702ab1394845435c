"""The LiteRT engine (``engine: litert``): .tflite files run natively by the TFLite runtime with
XNNPACK, named as the other engines name them, its thread count honoured, one interpreter per
request in flight, and clear one-line errors for what it cannot run."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from pipeline import GraphRunError
from pipeline.testing import run_calculator

from calculators.inference import model_cache, selection
from calculators.inference.engine import DeviceError, EngineOptions, ModelFormatError, ModelLoadError
from models.catalog import resolve

from .conftest import installed, needs_ov

pytestmark = pytest.mark.skipif(not installed("ai_edge_litert"), reason="ai-edge-litert not installed "
                                                                         "(pip install vpipe[litert])")


def _engine(path: Path, **options):
    return selection.engine_class("litert")(Path(path), EngineOptions(**options))


def _message(excinfo) -> str:
    e, parts = excinfo.value, []
    while e is not None:
        parts.append(str(e))
        e = e.__cause__
    return "\n".join(parts)


@pytest.fixture(autouse=True)
def _nothing_left_loaded():
    yield
    assert model_cache.loaded_models() == []


def _tasks() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc to count threads")
def test_threads_option_sets_the_interpreters_thread_pool(blazeface):
    """XNNPACK runs a call on N threads: the caller's and N - 1 of its pool's, started with the
    interpreter; the default is one thread per core."""
    x = np.zeros((1, 128, 128, 3), np.float32)
    for threads, extra in ((1, 0), (3, 2)):
        before = _tasks()
        eng = _engine(blazeface, threads=threads)
        eng.infer([x])
        started = _tasks() - before
        assert len(started) == extra, f"threads={threads}: {len(started)} threads started, expected {extra}"
        assert eng.threads == threads
        eng.close()
    eng = _engine(blazeface)
    assert eng.threads == (os.cpu_count() or 1)
    eng.close()


@needs_ov
@pytest.mark.parametrize("model", ["zoo:blazeface-short", "zoo:face-landmark", "zoo:pose-landmark-full",
                                   "zoo:hand-landmark-full"])
def test_litert_names_and_agrees_with_openvino(model):
    """Same input and output names, order, shapes and dtypes as OpenVINO reports for the file, and
    the same numbers to 1e-3 of each output's range on a random input (pose segmentation logits
    of ~1500 differ by 0.56: summation order)."""
    path = resolve(model)
    lrt, ov = _engine(path, threads=1), selection.engine_class("openvino")(Path(path), EngineOptions(threads=1))
    try:
        assert [(s.name, s.shape, s.dtype) for s in lrt.inputs] == [(s.name, s.shape, s.dtype) for s in ov.inputs]
        assert [(s.name, s.shape, s.dtype) for s in lrt.outputs] == [(s.name, s.shape, s.dtype) for s in ov.outputs]
        x = np.random.default_rng(1).random(lrt.inputs[0].shape, dtype=np.float32)
        for name, a, b in zip([s.name for s in lrt.outputs], lrt.infer([x]), ov.infer([x])):
            scale = max(1.0, float(np.abs(b).max()))
            assert np.abs(a - b).max() <= 1e-3 * scale, (model, name, float(np.abs(a - b).max()))
    finally:
        lrt.close()
        ov.close()


def test_outputs_are_copies_the_next_call_does_not_overwrite(blazeface):
    eng = _engine(blazeface, threads=1)
    rng = np.random.default_rng(2)
    x1, x2 = (rng.random((1, 128, 128, 3), dtype=np.float32) for _ in range(2))
    first = eng.infer([x1])
    kept = [o.copy() for o in first]
    eng.infer([x2])
    assert all(np.array_equal(a, b) for a, b in zip(first, kept))
    eng.close()


@pytest.mark.parametrize("requests", [1, 3])
def test_concurrent_calls_each_get_their_own_answer(blazeface, requests):
    """Six threads at once on one engine: ``requests`` interpreters, each call on one of them for
    its duration; every answer equals the one the same input gets alone."""
    eng = _engine(blazeface, threads=1, requests=requests)
    assert len(eng._interpreters) == requests
    rng = np.random.default_rng(3)
    xs = [rng.random((1, 128, 128, 3), dtype=np.float32) for _ in range(6)]
    alone = [eng.infer([x]) for x in xs]
    got: dict[int, list] = {}
    start = threading.Barrier(len(xs))

    def call(i):
        start.wait(timeout=30)
        for _ in range(5):
            got.setdefault(i, []).append(eng.infer([xs[i]]))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a concurrent call did not return within 60 s"
    for i, answers in got.items():
        for outs in answers:
            assert all(np.array_equal(a, b) for a, b in zip(outs, alone[i])), f"caller {i} got another's answer"
    eng.close()


def test_inference_node_with_max_in_flight_prepares_that_many_interpreters(blazeface, monkeypatch):
    from calculators.inference.litert_engine import LiteRtEngine

    made = []
    init = LiteRtEngine.__init__

    def spy(self, path, options):
        init(self, path, options)
        made.append(len(self._interpreters))

    monkeypatch.setattr(LiteRtEngine, "__init__", spy)
    x = np.random.default_rng(4).random((1, 128, 128, 3), dtype=np.float32)
    ref = _engine(blazeface, threads=1).infer([x])
    made.clear()
    out = run_calculator("Inference", inputs={"TENSORS": [(t, x) for t in range(4)]},
                         options={"model": "zoo:blazeface-short", "engine": "litert", "threads": 1},
                         max_in_flight=2)
    assert made == [2]
    assert [t for t, _ in out["TENSORS"]] == [0, 1, 2, 3]
    for _, tensors in out["TENSORS"]:
        assert tensors.names == ("regressors", "classificators")
        assert np.array_equal(tensors["regressors"].data, ref[0])


@pytest.mark.parametrize("content, match", [
    (b"\x08\x07garbage-not-a-flatbuffer" * 10, r"corrupt\.tflite is not a TFLite model \(file identifier"),
    (b"\x1c\x00\x00\x00TFL3" + b"\x00\xff" * 64, r"could not load corrupt\.tflite"),
])
def test_a_file_that_is_not_a_tflite_model_is_a_one_line_error(tmp_path, content, match):
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(content)
    with pytest.raises(GraphRunError) as ei:
        run_calculator("Inference", inputs={"TENSORS": [(0, np.zeros((1, 8), np.float32))]},
                       options={"model": str(bad), "engine": "litert"})
    msg = _message(ei)
    assert "Inference" in msg and "engine litert" in msg
    assert re.search(match, msg), msg
    assert "\n" not in str(ei.value.__cause__ or ei.value).strip()


def test_truncated_tflite_is_a_load_error(tmp_path, blazeface):
    cut = tmp_path / "truncated.tflite"
    cut.write_bytes(Path(blazeface).read_bytes()[:30_000])
    with pytest.raises(ModelLoadError, match=r"litert: could not load truncated\.tflite"):
        _engine(cut)


def test_an_onnx_model_is_refused_with_the_engines_that_read_it(centerface):
    with pytest.raises(GraphRunError) as ei:
        run_calculator("Inference", inputs={"TENSORS": [(0, np.zeros((1, 3, 32, 32), np.float32))]},
                       options={"model": str(centerface), "engine": "litert"})
    msg = _message(ei)
    assert "engine 'litert' cannot load ONNX models (centerface.onnx); engines that read it: onnxruntime" in msg, msg


def test_mediapipe_custom_ops_are_refused_naming_openvino():
    path = resolve("zoo:face-landmark-with-attention")
    with pytest.raises(ModelFormatError, match=r"uses MediaPipe's custom ops \(Landmarks2TransformMatrix.*engine openvino runs it"):
        _engine(path)


@pytest.mark.parametrize("options, match", [
    ({"device": "gpu"}, r"litert: unknown device 'gpu'; this engine runs on the CPU"),
    ({"precision": "fp16"}, r"litert: precision 'fp16' is not available"),
])
def test_devices_and_precisions_it_has_not(blazeface, options, match):
    with pytest.raises(DeviceError, match=match):
        _engine(blazeface, **options)
