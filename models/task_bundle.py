"""MediaPipe Tasks bundles (``.task``) made from plain ``.tflite`` models.

The Tasks API (HandLandmarker, PoseLandmarker, ...) loads a ``.task`` file: a zip of ``.tflite``
models under fixed member names (``hand_detector.tflite``, ``hand_landmarks_detector.tflite``;
``pose_detector.tflite``, ``pose_landmarks_detector.tflite``), each carrying *Tasks metadata*: a
``TFLITE_METADATA`` flatbuffer that tells the Tasks image preprocessor how to turn uint8 RGB pixels
into the model's float input. Some of MediaPipe's legacy models (the ``mediapipe/modules/*.tflite``
files) have none (palm_detection_lite, pose_landmark_full), and Tasks refuses them ("Input tensor
has type float32: it requires specifying NormalizationOptions metadata"); others carry older
metadata. :func:`add_tasks_metadata` writes uniform metadata into each (replacing any), with the
flatbuffer object APIs MediaPipe ships (``mediapipe.tasks.metadata``): MediaPipe's own
``MetadataWriter`` cannot be imported from the mediapipe 1.2.x wheel (it needs the
``mediapipe.tasks.cc`` extension the wheel lacks). :func:`write_task_bundle` zips the results. The catalog's ``mediapipe-task-bundle`` transform uses both (``zoo:hand-landmarker``,
``zoo:pose-landmarker``).

The metadata written for each model:

- the input: an image (RGB colour space) with ``NormalizationOptions`` mapping pixels ``[0, 255]``
  onto the model's value range ``[lo, hi]`` (``mean = -lo * std``, ``std = 255 / (hi - lo)``; so
  ``[0, 1]`` is mean 0 / std 255 and ``[-1, 1]`` is mean 127.5 / std 127.5) and ``stats``
  min/max ``[lo]``/``[hi]``;
- one ``TensorMetadata`` per output tensor, named like the tensor (Tasks matches outputs by order).

Both functions are deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple, Sequence

from pipeline.errors import UserError

_METADATA_NAME = "TFLITE_METADATA"
_MIN_PARSER_VERSION = "1.0.0"  # every field written here exists since metadata schema 1.0.0
_ALIGNMENT = 16  # member data offsets in the zip (MediaPipe's bundles use 4; 16 suits SIMD loads too)


class TaskBundleError(UserError, ValueError):
    """A model cannot be given Tasks metadata (not a TFLite model, not one image input, bad range)."""


def normalization(value_range: Sequence[float]) -> tuple[float, float]:
    """``(mean, std)`` such that ``(pixel - mean) / std`` maps ``[0, 255]`` onto ``value_range``."""
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise TaskBundleError(f"value range {list(value_range)} is empty: it needs min < max")
    std = 255.0 / (hi - lo)
    return -lo * std, std


def add_tasks_metadata(model: bytes, *, name: str, value_range: Sequence[float], where: str = "model") -> bytes:
    """Return ``model`` (a TFLite flatbuffer) with Tasks metadata for an RGB image input whose
    pixels are normalised to ``value_range``; a ``TFLITE_METADATA`` it had is replaced, tensors,
    weights and other metadata entries are kept as they are. ``where`` names the
    model in error messages."""
    import flatbuffers
    import numpy as np
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta
    from mediapipe.tasks.metadata import schema_py_generated as tfl

    if len(model) < 8 or model[4:8] != b"TFL3":
        raise TaskBundleError(f"{where}: not a TFLite flatbuffer (no TFL3 identifier)")
    mean, std = normalization(value_range)
    lo, hi = (float(v) for v in value_range)
    m = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(model, 0))
    if len(m.subgraphs or []) != 1:
        raise TaskBundleError(f"{where}: expected one subgraph, found {len(m.subgraphs or [])}")
    graph = m.subgraphs[0]
    inputs = list(graph.inputs if graph.inputs is not None else [])
    if len(inputs) != 1 or len(graph.tensors[inputs[0]].shape) != 4:
        shapes = [list(graph.tensors[i].shape) for i in inputs]
        raise TaskBundleError(f"{where}: expected one NHWC image input, found inputs of shapes {shapes}")

    image = meta.TensorMetadataT()
    image.name = "image"
    image.content = meta.ContentT()
    image.content.contentPropertiesType = meta.ContentProperties.ImageProperties
    image.content.contentProperties = meta.ImagePropertiesT()
    image.content.contentProperties.colorSpace = meta.ColorSpaceType.RGB
    norm = meta.ProcessUnitT()
    norm.optionsType = meta.ProcessUnitOptions.NormalizationOptions
    norm.options = meta.NormalizationOptionsT()
    norm.options.mean = [mean]
    norm.options.std = [std]
    image.processUnits = [norm]
    image.stats = meta.StatsT()
    image.stats.min = [lo]
    image.stats.max = [hi]

    outputs = []
    for i in graph.outputs if graph.outputs is not None else []:
        t = meta.TensorMetadataT()
        t.name = graph.tensors[i].name.decode()
        outputs.append(t)
    sub = meta.SubGraphMetadataT()
    sub.inputTensorMetadata = [image]
    sub.outputTensorMetadata = outputs
    md = meta.ModelMetadataT()
    md.name = name
    md.minParserVersion = _MIN_PARSER_VERSION
    md.subgraphMetadata = [sub]
    b = flatbuffers.Builder(0)
    b.Finish(md.Pack(b), b"M001")  # the metadata schema's file identifier
    md_bytes = bytes(b.Output())

    data = np.frombuffer(md_bytes, np.uint8)
    old = [x for x in (m.metadata or []) if x.name in (_METADATA_NAME, _METADATA_NAME.encode())]
    if old:  # some of MediaPipe's models carry metadata already: its buffer gets the new one
        m.buffers[old[0].buffer].data = data
    else:
        buf = tfl.BufferT()
        buf.data = data
        m.buffers = list(m.buffers or []) + [buf]
        entry = tfl.MetadataT()
        entry.name = _METADATA_NAME
        entry.buffer = len(m.buffers) - 1
        m.metadata = list(m.metadata or []) + [entry]
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), b"TFL3")
    return bytes(b.Output())


class Member(NamedTuple):
    """One model of a bundle: its file name in the zip, the ``.tflite`` it is made from, the value
    range its input takes, and (for error messages) where that file came from."""

    name: str
    path: Path
    value_range: Sequence[float]
    source: str = ""


def write_task_bundle(members: Sequence[Member | tuple], dst: Path) -> None:
    """Write a ``.task`` bundle to ``dst``: each member's model with Tasks metadata
    (:func:`add_tasks_metadata`), stored uncompressed under its name, in the order given, with
    fixed timestamps and permissions (same bytes each time). MediaPipe's own ``AlignZipFile``
    writes it, so each member starts aligned for Tasks to map it in place (its
    ``create_model_asset_bundle`` stamps the current time, hence not called as is)."""
    from mediapipe.tasks.python.metadata.metadata_writers.model_asset_bundle_utils import AlignZipFile

    with AlignZipFile(dst, "w", zipfile.ZIP_STORED, alignment=_ALIGNMENT) as z:
        for m in map(lambda m: Member(*m), members):
            origin = f"{m.source}, {m.path}" if m.source else str(m.path)
            data = add_tasks_metadata(Path(m.path).read_bytes(), name=Path(m.name).stem,
                                      value_range=m.value_range, where=f"bundle member {m.name} ({origin})")
            info = zipfile.ZipInfo(m.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            z.writestr(info, data)
