"""MediaPipe's custom TFLite ops for OpenVINO's TFLite reader: the face mesh with attention
(``face_landmark_with_attention.tflite``, MediaPipe's ``refine_landmarks``) uses three.

    from calculators.inference.mediapipe_ops import read_model, custom_ops
    model = read_model(core, path)      # an ov.Model; plain core.read_model for other files

Each op is an ``openvino.Op`` whose ``evaluate`` is the op's definition in numpy, line for line
from ``mediapipe/util/tflite/operations/*.cc`` (version 2 of each, the one the model names):

- ``Landmarks2TransformMatrix``: from landmarks (1, N, 3) the 4x4 matrix that maps a
  ``output_width x output_height`` grid onto the region around ``subset_idxs``, turned by the
  ``left_rotation_idx -> right_rotation_idx`` vector to ``target_rotation_radians`` and grown by
  ``scale_x/scale_y``;
- ``TransformTensorBilinear``: samples a feature map (1, H, W, C) on that grid, bilinearly (pixel
  centres: the matrix is shifted by half a pixel), zero outside the map;
- ``TransformLandmarks``: maps (1, N, 2) points through the matrix back to the crop.

OpenVINO's reader gives each op its flexbuffer options as attributes, except vectors
(``subset_idxs``), which are read from the model's own ``custom_options`` here. The ops run on the
CPU plugin through their ``evaluate`` (they are small: a 4x4 matrix, 16x16 samples, <= 80 points).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["CUSTOM_OPS", "custom_ops", "read_model", "uses_custom_ops"]

CUSTOM_OPS = ("Landmarks2TransformMatrix", "TransformTensorBilinear", "TransformLandmarks")


def custom_ops(path: Path) -> list[tuple[str, dict]]:
    """The custom ops of a .tflite file, in graph order: (name, flexbuffer options as a dict)."""
    import tflite
    from flatbuffers import flexbuffers

    model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    found = []
    for s in range(model.SubgraphsLength()):
        g = model.Subgraphs(s)
        for j in range(g.OperatorsLength()):
            op = g.Operators(j)
            code = model.OperatorCodes(op.OpcodeIndex())
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != tflite.BuiltinOperator.CUSTOM:
                continue
            raw = bytes(op.CustomOptionsAsNumpy()) if op.CustomOptionsLength() else b""
            found.append((code.CustomCode().decode(), flexbuffers.Loads(raw) if raw else {}))
    return found


# ---------------------------------------------------------------- the ops' definitions


def _rotation(a: float) -> np.ndarray:
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=np.float32)


def landmarks_to_transform_matrix(landmarks: np.ndarray, o: dict) -> np.ndarray:
    """LandmarksToTransformMatrixV2: (1, N, 3) landmarks -> (1, 4, 4)."""
    lm = landmarks.reshape(-1, 3).astype(np.float32)
    left, right = lm[o["left_rotation_idx"], :2], lm[o["right_rotation_idx"], :2]
    rotation = np.float32(o["target_rotation_radians"]) - np.arctan2(right[1] - left[1], right[0] - left[0])
    points = lm[np.asarray(o["subset_idxs"], dtype=np.int64).ravel(), :2] @ _rotation(rotation).T
    hi, lo = points.max(0), points.min(0)
    width, height = hi - lo
    centre = _rotation(-rotation) @ ((lo + hi) / 2)
    scale = np.diag([o["scale_x"] * width / o["output_width"], o["scale_y"] * height / o["output_height"]])
    m = _rotation(-rotation) @ scale.astype(np.float32)  # t_shift * t_rotation(-r) * t_scale * t_shift2
    out = np.eye(4, dtype=np.float32)
    out[:2, :2] = m
    out[:2, 3] = centre + m @ np.array([-o["output_width"] / 2.0, -o["output_height"] / 2.0], dtype=np.float32)
    return out[None]


def transform_tensor_bilinear(data: np.ndarray, matrix: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TransformTensorBilinearV2: (1, H, W, C) sampled at the matrix's grid -> (1, out_h, out_w, C)."""
    x = data[0]
    h, w, _ = x.shape
    xt, yt = matrix[0, 0].astype(np.float32).copy(), matrix[0, 1].astype(np.float32).copy()
    xt[3] += xt[0] * 0.5 + xt[1] * 0.5 - 0.5  # align-corners correction
    yt[3] += yt[0] * 0.5 + yt[1] * 0.5 - 0.5
    oy, ox = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    tx, ty = xt[0] * ox + xt[1] * oy + xt[3], yt[0] * ox + yt[1] * oy + yt[3]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    fx, fy = np.floor(tx), np.floor(ty)

    def read(r, c):
        ok = (r >= 0) & (c >= 0) & (r < h) & (c < w)
        return x[np.clip(r, 0, h - 1).astype(np.int64), np.clip(c, 0, w - 1).astype(np.int64)] * ok[..., None]

    right, lower = (tx - fx)[..., None], (ty - fy)[..., None]
    upper_row = (1 - right) * read(fy, fx) + right * read(fy, fx + 1)
    lower_row = (1 - right) * read(fy + 1, fx) + right * read(fy + 1, fx + 1)
    return ((lower * lower_row + (1 - lower) * upper_row) * inside[..., None])[None].astype(np.float32)


def transform_landmarks(landmarks: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """TransformLandmarksV2: (1, N, 2|3) points through the matrix (z kept)."""
    xt, yt = matrix[0, 0], matrix[0, 1]
    out = landmarks.astype(np.float32).copy()
    x, y = landmarks[..., 0], landmarks[..., 1]
    out[..., 0] = xt[0] * x + xt[1] * y + xt[3]
    out[..., 1] = yt[0] * x + yt[1] * y + yt[3]
    return out


# ---------------------------------------------------------------- OpenVINO glue


def _op_class():
    import openvino as ov
    from openvino import Op

    class NumpyOp(Op):
        """One output of a fixed shape, computed by ``fn`` from the inputs' arrays."""

        def __init__(self, inputs=None, fn=None, shape=None):
            super().__init__(self)
            if inputs is not None:
                self._fn, self._shape = fn, shape
                self.set_arguments(inputs)
                self.constructor_validate_and_infer_types()

        def validate_and_infer_types(self):
            self.set_output_type(0, ov.Type.f32, ov.PartialShape(self._shape))

        def clone_with_new_inputs(self, new_inputs):
            return NumpyOp(new_inputs, self._fn, self._shape)

        def has_evaluate(self):
            return True

        def evaluate(self, outputs, inputs):
            result = self._fn(*[i.data for i in inputs])
            outputs[0].shape = result.shape
            outputs[0].data[:] = result
            return True

        def visit_attributes(self, visitor):
            return True

    return NumpyOp


def uses_custom_ops(path: Path) -> bool:
    """Whether ``path`` may use MediaPipe's custom ops (a .tflite naming one: an op's name is
    stored in the file as plain text), so that ``read_model`` must read it."""
    path = Path(path)
    return path.suffix.lower() == ".tflite" and any(n.encode() in path.read_bytes() for n in CUSTOM_OPS)


def read_model(core, path: Path):
    """``path`` as an ``ov.Model``: through the TFLite reader with MediaPipe's ops when the file
    uses them, else ``core.read_model``."""
    path = Path(path)
    if not uses_custom_ops(path):
        return core.read_model(str(path))
    try:
        ops = custom_ops(path)
    except ImportError as err:
        from .engine import ModelLoadError

        raise ModelLoadError(f"{path.name} uses MediaPipe's custom ops; reading their options needs the "
                             "'tflite' package: pip install vpipe[openvino]") from err
    if not any(name in CUSTOM_OPS for name, _ in ops):
        return core.read_model(str(path))
    from openvino.frontend import ConversionExtension, FrontEndManager

    NumpyOp = _op_class()
    matrices = {(o["left_rotation_idx"], o["right_rotation_idx"]): o for name, o in ops
                if name == "Landmarks2TransformMatrix"}

    def matrix(node):
        o = matrices[(node.get_attribute("left_rotation_idx"), node.get_attribute("right_rotation_idx"))]
        return NumpyOp([node.get_input(0)], lambda lm: landmarks_to_transform_matrix(lm, o), [1, 4, 4]).outputs()

    def sample(node):
        out_h, out_w = node.get_attribute("output_height"), node.get_attribute("output_width")
        channels = node.get_input(0).get_partial_shape()[3].get_length()
        return NumpyOp([node.get_input(0), node.get_input(1)],
                       lambda x, m: transform_tensor_bilinear(x, m, out_h, out_w), [1, out_h, out_w, channels]).outputs()

    def points(node):
        return NumpyOp([node.get_input(0), node.get_input(1)], transform_landmarks,
                       node.get_input(0).get_partial_shape()).outputs()

    fe = FrontEndManager().load_by_framework("tflite")
    for name, fn in zip(CUSTOM_OPS, (matrix, sample, points)):
        fe.add_extension(ConversionExtension(name, fn))
    return fe.convert(fe.load(str(path)))
