"""Constant folding on a TFLite flatbuffer before ``tflite2onnx``: DENSIFY and float16 DEQUANTIZE.

    from models.tflite_fold import fold_constants
    report = fold_constants(src, dst)          # dst: a .tflite with float32 weights, no DENSIFY
    report.densified, report.dequantized       # how many ops were folded

MediaPipe ships its models with float16 weights, each turned into float32 at load time by a
``DEQUANTIZE`` op, and its detectors (BlazeFace full range, pose detection) with sparse weights,
each made dense by a ``DENSIFY`` op first. ``tflite2onnx`` converts neither (DENSIFY is unknown to
it; DEQUANTIZE of float16 breaks its layout propagation on PRELU and PAD operands), so this pass
does their work once, on the constants: each DENSIFY of a constant sparse tensor becomes a dense
buffer on its output tensor, each DEQUANTIZE of a constant float16 tensor a float32 buffer, and the
ops, with the tensors and buffers only they used, are removed. The values are the ones the TFLite
runtime computes at load time: float16 -> float32 is exact, and densifying only places values.
One more rewrite keeps every value: PAD ops that share a paddings tensor get a copy each, because
tflite2onnx rewrites a PAD's paddings in place (pose-landmark-full shares them).

The sparse format is TFLite's (``SparsityParameters`` in the schema; the runtime's converter is
``tensorflow/lite/kernels/internal/utils/sparsity_format_converter.cc``): a tensor of rank n with
a k-dimensional block is traversed over n + k dimensions in ``traversal_order``; ``block_map``
names the original dimension each block dimension splits; ``dim_metadata[i]`` describes the i-th
traversed dimension, DENSE (``dense_size`` values) or SPARSE_CSR (for each position of the
enclosing dimensions, ``array_segments[p]:array_segments[p+1]`` indexes ``array_indices``, the
coordinates present). The values buffer lists the present values in traversal order.

The flatbuffer is read and written with the object API of the TFLite schema that ``ai-edge-litert``
ships (``ai_edge_litert.schema_py_generated``, ``ai_edge_litert.tools.flatbuffer_utils``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["fold_constants", "FoldReport", "densify"]

# TFLite schema enums (schema.fbs): BuiltinOperator, TensorType, DimensionType, SparseIndexVector
_DEQUANTIZE, _DENSIFY, _PAD, _MIRROR_PAD = 6, 124, 34, 100
_FLOAT32, _FLOAT16 = 0, 1
_DENSE, _SPARSE_CSR = 0, 1
_NUMPY = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8,
          10: np.float64}


@dataclass(frozen=True)
class FoldReport:
    densified: int      # DENSIFY ops folded
    dequantized: int    # float16 DEQUANTIZE ops folded
    removed_tensors: int
    unshared: int = 0   # PAD operands copied so that no two PAD ops share one

    @property
    def changed(self) -> bool:
        return bool(self.densified or self.dequantized or self.unshared)


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError as err:  # the `convert` extra installs it
        from .convert import ConversionError

        raise ConversionError("folding a TFLite model's constants needs ai-edge-litert: pip install vpipe[convert]") from err
    return schema, flatbuffer_utils


def _opcode(code) -> int:
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


# ---------------------------------------------------------------- sparse -> dense


def _vector(kind: int, vec, what: str) -> np.ndarray:
    if vec is None or kind == 0:
        raise ValueError(f"{what} is missing")
    values = vec.values
    return np.asarray([] if values is None else values, dtype=np.int64)


def densify(values: np.ndarray, shape: list[int], sparsity) -> np.ndarray:
    """The dense tensor of ``shape`` whose present ``values`` (1-D, in traversal order) are placed
    as ``sparsity`` (a ``SparsityParametersT``) says; absent values are zero.

    Follows ``FormatConverter::SparseToDense`` (sparsity_format_converter.cc), one traversed
    dimension at a time over all the enclosing positions at once instead of recursing per value."""
    shape = [int(d) for d in shape]
    rank = len(shape)
    order = [int(d) for d in (sparsity.traversalOrder if sparsity.traversalOrder is not None else [])]
    block_map = [int(d) for d in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    dims = list(sparsity.dimMetadata or [])
    if len(order) != len(dims) or len(order) != rank + len(block_map):
        raise ValueError(f"sparsity: traversal_order has {len(order)} dims, dim_metadata {len(dims)}, "
                         f"for a rank-{rank} tensor with {len(block_map)} block dims")
    if sorted(order[:rank]) != list(range(rank)) or sorted(order[rank:]) != list(range(rank, len(order))):
        raise ValueError(f"sparsity: traversal_order {order} is not a permutation of the dims then the block dims")
    # block sizes, as InitSparseToDenseConverter reads them (dense_size of the traversed block dim)
    block_size = [int(dims[order[rank + b]].denseSize) for b in range(len(block_map))]

    prev = np.zeros(1, dtype=np.int64)       # per partial coordinate: its position in the level's arrays
    coords: list[np.ndarray] = []            # per traversed level: the index along it
    for level, dm in enumerate(dims):
        if dm.format == _DENSE:
            n = int(dm.denseSize)
            coords = [np.repeat(c, n) for c in coords]
            coords.append(np.tile(np.arange(n, dtype=np.int64), len(prev)))
            prev = (prev[:, None] * n + np.arange(n, dtype=np.int64)).ravel()
        elif dm.format == _SPARSE_CSR:
            segments = _vector(dm.arraySegmentsType, dm.arraySegments, f"sparsity level {level}: array_segments")
            indices = _vector(dm.arrayIndicesType, dm.arrayIndices, f"sparsity level {level}: array_indices")
            if len(prev) and (prev.max() + 1 >= len(segments)):
                raise ValueError(f"sparsity level {level}: {len(segments)} segments for {prev.max() + 1} positions")
            starts, ends = segments[prev], segments[prev + 1]
            counts = ends - starts
            if (counts < 0).any() or (len(ends) and ends.max() > len(indices)):
                raise ValueError(f"sparsity level {level}: segments out of order or past the {len(indices)} indices")
            total = int(counts.sum())
            first = np.repeat(np.cumsum(counts) - counts, counts)
            prev = np.arange(total, dtype=np.int64) - first + np.repeat(starts, counts)
            coords = [np.repeat(c, counts) for c in coords]
            coords.append(indices[prev])
        else:
            raise ValueError(f"sparsity level {level}: unknown dimension type {dm.format}")
    values = np.asarray(values).ravel()
    if len(prev) != values.size:
        raise ValueError(f"sparsity: the format places {len(prev)} values, the buffer holds {values.size}")
    orig = [None] * rank
    for i in range(rank):
        orig[order[i]] = coords[i]
    for i in range(rank, len(order)):
        b = order[i] - rank
        d = block_map[b]
        orig[d] = orig[d] * block_size[b] + coords[i]
    dense = np.zeros(shape, dtype=values.dtype)
    if values.size:
        for d in range(rank):
            if orig[d].min() < 0 or orig[d].max() >= shape[d]:
                raise ValueError(f"sparsity: an index along dim {d} is outside the shape {shape}")
        dense[tuple(orig)] = values
    return dense


# ---------------------------------------------------------------- the pass


def _buffer_array(model, tensor) -> np.ndarray | None:
    if tensor.buffer <= 0 or tensor.buffer >= len(model.buffers):
        return None
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    dtype = _NUMPY.get(int(tensor.type))
    if dtype is None:
        return None
    return np.frombuffer(bytes(np.asarray(data, dtype=np.uint8)), dtype=dtype)


def _set_buffer(model, schema, tensor, array: np.ndarray, tensor_type: int) -> None:
    buf = schema.BufferT()
    buf.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8)
    model.buffers.append(buf)
    tensor.buffer = len(model.buffers) - 1
    tensor.type = tensor_type
    tensor.sparsity = None
    tensor.quantization = None


def _fold_subgraph(model, schema, g, codes: list[int]) -> tuple[int, int]:
    densified = dequantized = 0
    outputs_of_graph = set(int(t) for t in (g.outputs if g.outputs is not None else []))
    kept = []
    for op in g.operators:
        code = codes[op.opcodeIndex]
        ins = list(op.inputs if op.inputs is not None else [])
        outs = list(op.outputs if op.outputs is not None else [])
        if code in (_DENSIFY, _DEQUANTIZE) and len(ins) == 1 and len(outs) == 1 and outs[0] not in outputs_of_graph:
            src, dst = g.tensors[ins[0]], g.tensors[outs[0]]
            values = _buffer_array(model, src)
            if code == _DENSIFY and values is not None and src.sparsity is not None:
                shape = [int(d) for d in (dst.shape if dst.shape is not None else src.shape)]
                try:
                    dense = densify(values, shape, src.sparsity)
                except ValueError as err:
                    raise ValueError(f"DENSIFY of tensor {src.name!r}: {err}") from None
                _set_buffer(model, schema, dst, dense, int(src.type))
                densified += 1
                continue
            if code == _DEQUANTIZE and values is not None and src.type == _FLOAT16 and src.sparsity is None:
                shape = [int(d) for d in dst.shape] if dst.shape is not None else [values.size]
                _set_buffer(model, schema, dst, values.astype(np.float32).reshape(shape), _FLOAT32)
                dequantized += 1
                continue
        kept.append(op)
    g.operators = kept
    return densified, dequantized


def _drop_unused(model, g) -> int:
    """Remove the tensors no op, graph input or graph output names; renumber the rest."""
    used = set(int(t) for t in (g.inputs if g.inputs is not None else []))
    used |= set(int(t) for t in (g.outputs if g.outputs is not None else []))
    for op in g.operators:
        used |= {int(t) for t in (op.inputs or []) if t >= 0}
        used |= {int(t) for t in (op.outputs or []) if t >= 0}
        used |= {int(t) for t in (op.intermediates or []) if t >= 0}
    keep = [i for i in range(len(g.tensors)) if i in used]
    new_index = {old: new for new, old in enumerate(keep)}
    removed = len(g.tensors) - len(keep)
    g.tensors = [g.tensors[i] for i in keep]

    def remap(seq):
        return None if seq is None else [new_index[int(t)] if t >= 0 else int(t) for t in seq]

    g.inputs, g.outputs = remap(g.inputs), remap(g.outputs)
    for op in g.operators:
        op.inputs, op.outputs, op.intermediates = remap(op.inputs), remap(op.outputs), remap(op.intermediates)
    return removed


def _drop_unused_buffers(model) -> None:
    """Empty the buffers no tensor refers to any more (buffer 0 stays the empty sentinel)."""
    referenced = {int(t.buffer) for g in model.subgraphs for t in g.tensors}
    referenced |= {int(m.buffer) for m in (model.metadata or [])}
    for i, buf in enumerate(model.buffers):
        if i and i not in referenced:
            buf.data = None


def _unshare_pad_operands(g, pad_codes: set[int]) -> int:
    """Give every PAD its own paddings tensor: tflite2onnx rewrites a PAD's paddings in place
    (``[n, 2]`` -> ONNX's flat begins-then-ends), so a second PAD on the same tensor fails."""
    import copy

    seen: set[int] = set()
    copied = 0
    for op in g.operators:
        if len(op.inputs or []) < 2 or op.opcodeIndex not in pad_codes:
            continue
        t = int(op.inputs[1])
        if t in seen:
            twin = copy.deepcopy(g.tensors[t])  # same buffer index: the data is shared, not copied
            twin.name = bytes(twin.name or b"") + f"/pad{copied}".encode()  # tflite2onnx keys tensors by name
            g.tensors.append(twin)
            op.inputs = list(op.inputs)
            op.inputs[1] = len(g.tensors) - 1
            copied += 1
        seen.add(t)
    return copied


def fold_constants(src: Path, dst: Path) -> FoldReport:
    """Write ``src`` to ``dst`` with its constant DENSIFY and float16 DEQUANTIZE ops folded."""
    schema, fb = _schema()
    model = fb.read_model_from_bytearray(bytearray(Path(src).read_bytes()))
    codes = [_opcode(c) for c in model.operatorCodes]
    densified = dequantized = removed = unshared = 0
    pad_codes = {i for i, c in enumerate(codes) if c in (_PAD, _MIRROR_PAD)}
    for g in model.subgraphs:
        # a DENSIFY feeds a DEQUANTIZE: repeat until nothing more folds
        while True:
            d, q = _fold_subgraph(model, schema, g, codes)
            densified, dequantized = densified + d, dequantized + q
            if not (d or q):
                break
        removed += _drop_unused(model, g)
        unshared += _unshare_pad_operands(g, pad_codes)
    _drop_unused_buffers(model)
    # signature defs name tensors by index: renumbering would break them, and tflite2onnx ignores them
    model.signatureDefs = None
    Path(dst).write_bytes(bytes(fb.convert_object_to_bytearray(model)))
    return FoldReport(densified=densified, dequantized=dequantized, removed_tensors=removed, unshared=unshared)
