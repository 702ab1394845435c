"""One loaded model per (model, checksum, engine, options); batching; several requests in flight."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline.testing import run_calculator

from calculators.inference import model_cache
from calculators.inference.engine import EngineOptions
from calculators.types import Tensor

from .conftest import needs_mp, needs_ort, needs_ov, run_graph, video_source

FRAMES = 4


def _tensors(frames, size=(320, 256)) -> list[tuple[int, object]]:
    """Real carphone frames as CenterFace inputs (BGR 0..255 NCHW), at 30 fps timestamps."""
    from calculators.image.ops import image_to_tensor
    from calculators.types import Image

    return [(i * 33_333, image_to_tensor(Image(f), size, "stretch", value_range=(0, 255), layout="NCHW",
                                          format="BGR")[0]) for i, f in enumerate(frames)]


def _infer(frames, max_in_flight: int | None = None, **options) -> list[tuple[int, object]]:
    """One Inference node on the frames' tensors: [(timestamp, Tensors), ...]."""
    return run_calculator("Inference", inputs={"TENSORS": _tensors(frames)}, options=options,
                          max_in_flight=max_in_flight)["TENSORS"]


def _graph(uri, infer_nodes: list[dict], size=(320, 256)) -> dict:
    nodes = [
        video_source(uri, FRAMES),
        {"calculator": "ImageToTensor", "inputs": {"IMAGE": "frames"}, "outputs": {"TENSOR": "tensor"},
         "options": {"size": list(size), "fit": "stretch", "range": [0, 255], "layout": "NCHW", "format": "BGR"}},
    ]
    for i, n in enumerate(infer_nodes):
        nodes.append({"calculator": "Inference", "name": f"infer{i}", "inputs": {"TENSORS": "tensor"},
                      "outputs": {"TENSORS": f"raw{i}"}, **n})
    return {"name": "shared", "nodes": nodes}


@needs_ov
def test_two_nodes_naming_one_model_load_it_once(carphone, centerface):
    loads = model_cache.stats.loads
    opts = {"model": str(centerface), "engine": "openvino"}
    config = _graph(carphone, [{"options": opts}, {"options": dict(opts)}])

    got = run_graph(config, ["raw0", "raw1"], timeout=120)
    assert model_cache.stats.loads - loads == 1, "two nodes naming the same model and options must share one load"
    assert len(got["raw0"]) == len(got["raw1"]) == FRAMES
    for (_, a), (_, b) in zip(got["raw0"], got["raw1"]):
        assert all(np.array_equal(x.data, y.data) for x, y in zip(a, b))
    # Released when the last node closed.
    assert not [m for m in model_cache.loaded_models() if m[0] == str(centerface.resolve())], model_cache.loaded_models()


@needs_ov
def test_refcount_and_different_options_load_separately(centerface):
    a = model_cache.acquire(centerface, "openvino", EngineOptions())
    b = model_cache.acquire(centerface, "openvino", EngineOptions())
    c = model_cache.acquire(centerface, "openvino", EngineOptions(threads=1))
    try:
        assert a is b and a.refs == 2 and c is not a
        assert a.engine is b.engine
    finally:
        model_cache.release(a)
        assert b.engine.compiled is not None  # still held by b
        model_cache.release(b)
        model_cache.release(c)
    assert a.engine.compiled is None and c.engine.compiled is None
    assert model_cache.loaded_models() == []


@needs_ort
def test_batcher_stacks_concurrent_requests_and_splits_results(centerface):
    """Four concurrent callers with batch_size 4 run as ONE batch (it fills, so nobody waits for
    the timeout), and each gets exactly its own rows, equal to running alone."""
    shared = model_cache.acquire(centerface, "onnxruntime", EngineOptions(threads=1), batch_size=4, batch_timeout_ms=60_000)
    try:
        rng = np.random.default_rng(0)
        xs = [rng.random((1, 3, 64, 96), np.float32) * 255 for _ in range(4)]
        alone = [shared.engine.infer([x]) for x in xs]
        results: list = [None] * 4
        start = threading.Barrier(4)

        def call(i):
            start.wait()
            results[i] = shared.batcher.infer([xs[i]])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
            assert not t.is_alive(), "a batcher caller hung"
        assert shared.batcher.batches == [4]
        for r, a in zip(results, alone):
            for x, y in zip(r, a):
                assert x.shape == y.shape and np.abs(x - y).max() < 1e-4
    finally:
        model_cache.release(shared)


@needs_ort
def test_batcher_runs_a_partial_batch_at_its_deadline(centerface):
    shared = model_cache.acquire(centerface, "onnxruntime", EngineOptions(threads=1), batch_size=8, batch_timeout_ms=20)
    try:
        out = shared.batcher.infer([np.zeros((1, 3, 32, 32), np.float32)])
        assert shared.batcher.batches == [1] and out[0].shape == (1, 1, 8, 8)
    finally:
        model_cache.release(shared)


@needs_ort
def test_batched_inference_in_a_graph_matches_unbatched(carphone_frames, centerface):
    plain = _infer(carphone_frames, model=str(centerface), engine="onnxruntime")
    batched = _infer(carphone_frames, 4, model=str(centerface), engine="onnxruntime", batch_size=4,
                     batch_timeout_ms=20)
    assert [t for t, _ in plain] == [t for t, _ in batched]
    assert len(batched) == FRAMES
    for (_, a), (_, b) in zip(plain, batched):
        for x, y in zip(a, b):
            assert x.shape == y.shape and np.abs(x.data - y.data).max() < 1e-4


@needs_ov
def test_openvino_async_requests_in_flight_keep_timestamp_order(carphone_frames, centerface):
    sync = _infer(carphone_frames, model=str(centerface), engine="openvino")
    in_flight = _infer(carphone_frames, 3, model=str(centerface), engine="openvino")
    # requests defaults to the node's max_in_flight: the engine prepared 3 (an AsyncInferQueue)
    (_, _, engine, options, *_), = [k for k in model_cache.stats.load_keys[-2:] if k[3].requests > 1]
    assert engine == "openvino" and options.requests == 3
    ts = [t for t, _ in in_flight]
    assert ts == sorted(ts) == [t for t, _ in sync] and len(ts) == FRAMES
    for (_, a), (_, b) in zip(sync, in_flight):
        for x, y in zip(a, b):
            assert np.abs(x.data - y.data).max() < 1e-4


@needs_ov
def test_openvino_async_queue_directly(centerface):
    shared = model_cache.acquire(centerface, "openvino", EngineOptions(requests=3))
    try:
        eng = shared.engine
        assert eng._queue is not None, "requests > 1 must use AsyncInferQueue"
        rng = np.random.default_rng(1)
        xs = [rng.random((1, 3, 64, 64), np.float32) * 255 for _ in range(6)]
        out: list = [None] * 6
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, eng.infer([xs[i]]))) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ref = model_cache.acquire(centerface, "onnxruntime", EngineOptions())
        try:
            for x, o in zip(xs, out):
                for a, b in zip(o, ref.engine.infer([x])):
                    assert np.abs(a - b).max() < 1e-4
        finally:
            model_cache.release(ref)
    finally:
        model_cache.release(shared)


@needs_ov
def test_openvino_default_is_f32_and_bf16_is_a_choice(centerface):
    shared = model_cache.acquire(centerface, "openvino", EngineOptions())
    try:
        assert "f32" in shared.engine.precision_used
    finally:
        model_cache.release(shared)
    from calculators.inference.openvino_engine import core

    if "BF16" not in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16: only the f32 default is checked")
    fast = model_cache.acquire(centerface, "openvino", EngineOptions(precision="bf16"))
    exact = model_cache.acquire(centerface, "onnxruntime", EngineOptions())
    try:
        assert "bf16" in fast.engine.precision_used
        x = np.random.default_rng(2).random((1, 3, 128, 160), np.float32) * 255
        err = max(float(np.abs(a - b).max()) for a, b in zip(fast.engine.infer([x]), exact.engine.infer([x])))
        assert err > 1e-3, "bf16 should visibly differ from f32 (that is why f32 is the default)"
    finally:
        model_cache.release(fast)
        model_cache.release(exact)


@needs_mp
def test_mediapipe_tasks_shared_and_closed(carphone, blazeface):
    from calculators.inference import mediapipe_tasks as mpt

    before = mpt.task_loads
    config = {"name": "mp_shared", "nodes": [
        video_source(carphone, 2),
        {"calculator": "MediaPipeFaceDetector", "name": "a", "inputs": {"IMAGE": "frames"},
         "outputs": {"DETECTIONS": "fa"}, "options": {"model": str(blazeface)}},
        {"calculator": "MediaPipeFaceDetector", "name": "b", "inputs": {"IMAGE": "frames"},
         "outputs": {"DETECTIONS": "fb"}, "options": {"model": str(blazeface)}},
    ]}
    got = run_graph(config, ["fa", "fb"])
    assert mpt.task_loads - before == 1
    assert mpt._tasks == {}, "the shared task must be closed when the last node closes"
    assert [len(d) for _, d in got["fa"]] == [1, 1]
    for (_, a), (_, b) in zip(got["fa"], got["fb"]):
        assert np.array_equal(a.xyxy, b.xyxy)


@needs_mp
def test_mediapipe_segmenter_outputs_a_frame_sized_mask(carphone):
    from models.catalog import resolve
    from calculators.types import Mask

    config = {"name": "mp_seg", "nodes": [
        video_source(carphone, 2),
        {"calculator": "MediaPipeImageSegmenter", "inputs": {"IMAGE": "frames"}, "outputs": {"MASK": "mask"},
         "options": {"model": str(resolve("zoo:selfie-segmentation"))}},
    ]}
    got = run_graph(config, ["mask", "frames"])
    assert len(got["mask"]) == 2
    for (_, m), (_, f) in zip(got["mask"], got["frames"]):
        assert isinstance(m, Mask) and m.data.shape == (f.height, f.width) and m.data.dtype == np.float32
        assert 0.0 <= m.data.min() and m.data.max() <= 1.0
        person = float((m.data > 0.5).mean())
        assert 0.05 < person < 0.9, f"the carphone speaker covers part of the frame; got {person:.2f}"


@needs_mp
def test_mediapipe_video_mode_detects(carphone, blazeface):
    config = {"name": "mp_video", "nodes": [
        video_source(carphone, 3),
        {"calculator": "MediaPipeFaceDetector", "inputs": {"IMAGE": "frames"}, "outputs": {"DETECTIONS": "f"},
         "options": {"model": str(blazeface), "running_mode": "video"}},
    ]}
    got = run_graph(config, ["f"])
    assert [len(d) for _, d in got["f"]] == [1, 1, 1]
