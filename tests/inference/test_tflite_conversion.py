"""MediaPipe's float16 and sparse TFLite models on ONNX Runtime and ncnn: the flatbuffer pre-pass
(models/tflite_fold.py) and the checked conversion, judged against OpenVINO's reading of the
original .tflite on real frames."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from models.catalog import resolve

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("ai_edge_litert", "tflite2onnx", "openvino", "onnxruntime")),
    reason="needs the convert, openvino and onnx extras (ai-edge-litert, tflite2onnx, openvino, onnxruntime)")


# ---------------------------------------------------------------- the sparse format, case by case
# The cases of TFLite's own sparsity_format_converter_test.cc: a dense tensor, its sparse
# encoding (dim_metadata in traversal order: an int for a DENSE level, (segments, indices) for a
# SPARSE_CSR one) and the values the encoding stores.

DENSE_3x4 = [6, 0, 9, 8, 0, 0, 0, 0, 5, 0, 0, 7]
DENSE_4x4 = [1, 0, 2, 3, 0, 4, 0, 0, 0, 0, 5, 0, 0, 0, 0, 6]
CASES = {
    "D0D1": ([3, 4], [0, 1], None, [3, 4], DENSE_3x4, DENSE_3x4),
    "S0D1": ([3, 4], [0, 1], None, [([0, 2], [0, 2]), 4], [6, 0, 9, 8, 5, 0, 0, 7], DENSE_3x4),
    "D0S1": ([3, 4], [0, 1], None, [3, ([0, 3, 3, 5], [0, 2, 3, 0, 3])], [6, 9, 8, 5, 7], DENSE_3x4),
    "S0S1": ([3, 4], [0, 1], None, [([0, 2], [0, 2]), ([0, 3, 5], [0, 2, 3, 0, 3])], [6, 9, 8, 5, 7], DENSE_3x4),
    "D1D0": ([3, 4], [1, 0], None, [4, 3], [6, 0, 5, 0, 0, 0, 9, 0, 0, 8, 0, 7], DENSE_3x4),
    "D1S0": ([3, 4], [1, 0], None, [4, ([0, 2, 2, 3, 5], [0, 2, 0, 0, 2])], [6, 5, 9, 8, 7], DENSE_3x4),
    "S1S0": ([3, 4], [1, 0], None, [([0, 3], [0, 2, 3]), ([0, 2, 3, 5], [0, 2, 0, 0, 2])], [6, 5, 9, 8, 7],
             DENSE_3x4),
    "3D S0D1S2": ([3, 2, 2], [0, 1, 2], None, [([0, 2], [0, 2]), 2, ([0, 1, 3, 4, 5], [0, 0, 1, 0, 1])],
                  [6, 9, 8, 5, 7], DENSE_3x4),
    "3D S0S1S2": ([3, 4, 2], [0, 1, 2], None,
                  [([0, 2], [0, 2]), ([0, 2, 5], [0, 2, 0, 2, 3]), ([0, 2, 3, 4, 6, 8], [0, 1, 1, 1, 0, 1, 0, 1])],
                  [1, 7, 5, 2, 4, 8, 3, 9],
                  [1, 7, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 4, 8, 3, 9]),
    "1-D block": ([4, 4], [0, 1, 2], [1], [4, ([0, 2, 3, 4, 5], [0, 1, 0, 1, 1]), 2],
                  [1, 0, 2, 3, 0, 4, 5, 0, 0, 6], DENSE_4x4),
    "BCSR 2x2": ([4, 4], [0, 1, 2, 3], [0, 1], [2, ([0, 2, 3], [0, 1, 1]), 2, 2],
                 [1, 0, 0, 4, 2, 3, 0, 0, 5, 0, 0, 6], DENSE_4x4),
    "BCSC 2x2": ([4, 4], [1, 0, 3, 2], [0, 1], [2, ([0, 1, 3], [0, 0, 1]), 2, 2],
                 [1, 0, 0, 4, 2, 0, 3, 0, 5, 0, 0, 6], DENSE_4x4),
    "BCSR last block empty": ([4, 4], [0, 1, 2, 3], [0, 1], [2, ([0, 2, 2], [0, 1]), 2, 2],
                              [1, 0, 0, 4, 2, 3, 0, 0], [1, 0, 2, 3, 0, 4, 0, 0] + [0] * 8),
    "col-major block": ([4, 8], [0, 1, 3, 2], [0, 1], [2, ([0, 3, 4], [0, 1, 2, 1]), 2, 2],
                        [1, 1, 0, 0, 2, 2, 3, 3, 0, 0, 4, 4, 5, 0, 0, 0],
                        [1, 0, 2, 3, 0, 4, 0, 0, 1, 0, 2, 3, 0, 4, 0, 0, 0, 0, 5, 0] + [0] * 12),
}


def _sparsity(order, block_map, levels):
    from ai_edge_litert import schema_py_generated as schema

    sp = schema.SparsityParametersT()
    sp.traversalOrder, sp.blockMap, sp.dimMetadata = order, block_map, []
    for level in levels:
        dm = schema.DimensionMetadataT()
        if isinstance(level, int):
            dm.format, dm.denseSize = schema.DimensionType.DENSE, level
        else:
            dm.format = schema.DimensionType.SPARSE_CSR
            for attr, values in zip(("arraySegments", "arrayIndices"), level):
                vec = schema.Int32VectorT()
                vec.values = values
                setattr(dm, attr, vec)
                setattr(dm, attr + "Type", schema.SparseIndexVector.Int32Vector)
        sp.dimMetadata.append(dm)
    return sp


@pytest.mark.parametrize("case", list(CASES))
def test_densify_places_each_value_as_tflites_converter_does(case):
    from models.tflite_fold import densify

    shape, order, block_map, levels, values, dense = CASES[case]
    got = densify(np.array(values, dtype=np.float32), shape, _sparsity(order, block_map, levels))
    np.testing.assert_array_equal(got, np.array(dense, dtype=np.float32).reshape(shape))


def test_densify_refuses_an_encoding_that_does_not_fit_its_values():
    from models.tflite_fold import densify

    shape, order, block_map, levels, values, _ = CASES["D0S1"]
    with pytest.raises(ValueError, match="places 5 values, the buffer holds 4"):
        densify(np.array(values[:4], dtype=np.float32), shape, _sparsity(order, block_map, levels))
    with pytest.raises(ValueError, match="outside the shape"):
        densify(np.array(values, dtype=np.float32), [3, 3], _sparsity(order, block_map, levels))


# ---------------------------------------------------------------- whole models


def _interpreter_outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


def _ops(path: Path) -> set[str]:
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model(str(path))
    names = {v: k for k, v in vars(__import__("ai_edge_litert.schema_py_generated", fromlist=["x"]).BuiltinOperator).items()
             if not k.startswith("_")}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    return {names[codes[op.opcodeIndex]] for g in model.subgraphs for op in g.operators}


def _real_input(name: str, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Carphone frames as the model's input: the whole frame for the detector, the centred square
    (where carphone's face is) for the landmark model; RGB in [0, 1] (blazeface: [-1, 1])."""
    from models.convert import frame_input

    if name == "face-landmark":
        return [frame_input(np.ascontiguousarray(f[:, 16:160]), (1, 192, 192, 3), (0.0, 1.0)) for f in frames]
    return [frame_input(f, (1, 192, 192, 3), (-1.0, 1.0)) for f in frames]


@pytest.mark.parametrize("name", ["blazeface-full", "face-landmark"])
def test_folding_keeps_every_value_the_tflite_runtime_computes(tmp_path, carphone_frames, name):
    """blazeface-full: 46 DENSIFY + 182 float16 DEQUANTIZE; face-landmark: 113 float16 DEQUANTIZE.
    The folded model gives the interpreter's outputs exactly (measured: max abs error 0.0)."""
    from models.tflite_fold import fold_constants

    src = resolve(f"zoo:{name}")
    dst = tmp_path / src.name
    report = fold_constants(src, dst)
    assert (report.densified, report.dequantized) == {"blazeface-full": (46, 182), "face-landmark": (0, 113)}[name]
    assert "DEQUANTIZE" in _ops(src) and not {"DEQUANTIZE", "DENSIFY"} & _ops(dst)
    for x in _real_input(name, carphone_frames[:2]):
        for ref, got in zip(_interpreter_outputs(src, x), _interpreter_outputs(dst, x)):
            np.testing.assert_array_equal(got, ref)


def _openvino(path: Path):
    """OpenVINO's reading of ``path``, pinned to f32: a function from the NHWC input to the outputs."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def run(x):
        res = compiled(x)
        return [res[o] for o in compiled.outputs]

    return run


# Measured on four carphone frames (max abs error against OpenVINO's f32 reading of the .tflite,
# first output / second output): blazeface-full regressors / scores 1.07e-4 / 1.98e-4 on ONNX
# Runtime, 6.9e-5 / 1.37e-4 on ncnn; face-landmark landmarks (pixels of the 192x192 crop) / presence
# logit 1.07e-4 / 5.8e-6 on ONNX Runtime, 1.14e-4 / 1.13e-5 on ncnn. Bounds: about 5x those.
BOUNDS = {"blazeface-full": (5e-4, 1e-3), "face-landmark": (6e-4, 6e-5)}


@pytest.mark.parametrize("engine", ["onnxruntime", "ncnn"])
@pytest.mark.parametrize("name", ["blazeface-full", "face-landmark"])
def test_converted_fp16_and_sparse_models_agree_with_openvino_on_the_tflite(carphone_frames, name, engine):
    if engine == "ncnn" and not (importlib.util.find_spec("ncnn") and importlib.util.find_spec("pnnx")):
        pytest.skip("ncnn/pnnx not installed")
    from calculators.inference.engine import EngineOptions
    from calculators.inference.selection import engine_class
    from models.convert import convert

    src = resolve(f"zoo:{name}")
    report = convert(src, "onnx" if engine == "onnxruntime" else "ncnn")  # the project's cache: graphs reuse it
    eng = engine_class(engine)(report.path, EngineOptions(device="cpu", precision="fp32"))
    by_name = {s.name: i for i, s in enumerate(eng.outputs)}
    order = [by_name[report.output_names[n]] for n in report.output_names] if engine == "ncnn" else range(len(eng.outputs))
    bounds = BOUNDS[name]
    worst = [0.0, 0.0]
    openvino = _openvino(src)
    for x in _real_input(name, carphone_frames):
        ref = openvino(x)
        outs = eng.infer([np.ascontiguousarray(x.transpose(0, 3, 1, 2))])
        got = [np.asarray(outs[i]).reshape(r.shape) for i, r in zip(order, ref)]
        for k, (r, g) in enumerate(zip(ref, got)):
            worst[k] = max(worst[k], float(np.abs(r - g).max()))
    print(f"{name} on {engine}: max abs error vs OpenVINO {worst}")
    assert worst[0] <= bounds[0] and worst[1] <= bounds[1], (name, engine, worst)
