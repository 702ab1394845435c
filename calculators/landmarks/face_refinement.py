"""The face mesh with attention's outputs as one 478-point landmark tensor (MediaPipe's refine_landmarks).

- ``RefineFaceLandmarks``: TENSORS (the outputs of ``face_landmark_with_attention.tflite`` for N
  crops: mesh 468x3, lips 80x2, left eye 71x2, right eye 71x2, left iris 5x2, right iris 5x2, face
  flag) -> TENSORS (a (N, 1434) tensor of 478 points x, y, z in crop pixels, then the face flag),
  what ``TensorsToLandmarks`` decodes with ``num_landmarks: 478``. MediaPipe's
  ``tensors_to_face_landmarks_with_attention.pbtxt`` (LandmarksRefinementCalculator): lips and eyes
  replace the mesh's x, y at their points (z stays the mesh's), each iris's 5 points are appended
  (468-472 left, 473-477 right) with z the mean mesh z of its eye's 16 contour points. Working on
  the tensors, before projection, is the same: every point goes through the same linear map.
  The plain face mesh's outputs (mesh 468x3, face flag) pass through as they are, so that one
  chain serves both models (the face_mesh graphs' ``refine_landmarks`` only picks the model).
Timestamps: one output per input, same timestamp.
Example node:
    - calculator: RefineFaceLandmarks
      inputs: {TENSORS: raw}
      outputs: {TENSORS: refined}
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict

from calculators.postprocess.tensors import output_arrays
from calculators.types import Tensor, Tensors
from pipeline import Any, Calculator, Input, Output, register

# MediaPipe's refinement index maps (tensors_to_face_landmarks_with_attention.pbtxt), in the
# order of the model's points.
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
        78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
        76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
        62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407)
LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
            130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
            226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
            35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
            156, 70, 63, 105, 66, 107, 55, 193)
RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
             359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
             446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
             265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
             383, 300, 293, 334, 296, 336, 285, 417)
# each iris's z: the mean z of its eye's lower and upper contour (the first 16 eye points)
LEFT_IRIS_Z, RIGHT_IRIS_Z = LEFT_EYE[:16], RIGHT_EYE[:16]


def refine_face_landmarks(mesh, lips, left_eye, right_eye, left_iris, right_iris) -> np.ndarray:
    """(N, 478, 3) points from the attention model's six landmark outputs (each (N, ...))."""
    n = mesh.shape[0]
    points = np.empty((n, 478, 3), dtype=np.float32)
    points[:, :468] = mesh.reshape(n, 468, 3)
    for idx, part in ((LIPS, lips), (LEFT_EYE, left_eye), (RIGHT_EYE, right_eye)):
        points[:, idx, :2] = part.reshape(n, len(idx), 2)
    for start, iris, contour in ((468, left_iris, LEFT_IRIS_Z), (473, right_iris, RIGHT_IRIS_Z)):
        points[:, start:start + 5, :2] = iris.reshape(n, 5, 2)
        points[:, start:start + 5, 2] = points[:, contour, 2].mean(axis=1, keepdims=True)
    return points


class RefineFaceLandmarksOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@register
class RefineFaceLandmarks(Calculator):
    """The face mesh with attention's seven outputs -> one 478-point landmark tensor and the face flag;
    the plain face mesh's two outputs pass through (468 points).

    Ports: TENSORS (the model's outputs for N crops, in its order) -> TENSORS (Tensors: "landmarks"
    (N, 1434), or (N, 1404) for the plain model, and "face_flag" (N, 1)).
    Options: none.
    Timestamps: one output per input, same timestamp.
    Example:
        - calculator: RefineFaceLandmarks
          inputs: {TENSORS: raw}
          outputs: {TENSORS: refined}
    """

    inputs = {"TENSORS": Input(Any, doc="the attention model's 7 outputs (or the plain model's 2) for N crops")}
    outputs = {"TENSORS": Output(Tensors, doc="478 (or 468) points x, y, z per crop, then the face flag")}
    Options = RefineFaceLandmarksOptions
    SIZES = (1404, 160, 142, 142, 10, 10, 1)  # values per crop of each output
    PLAIN = (1404, 1)  # face_landmark.tflite: mesh, face flag

    def open(self, ctx) -> None:
        self.where = f"node {ctx.node!r} (RefineFaceLandmarks)"

    def process(self, ctx) -> None:
        arrays = [a for _, a in output_arrays(ctx.inputs["TENSORS"].value)]
        sizes = tuple(math.prod(a.shape[1:]) for a in arrays)  # (np.prod costs ~10x more, per output)
        if sizes == self.PLAIN:
            n = arrays[0].shape[0]
            ctx.outputs["TENSORS"].add(Tensors([Tensor(arrays[0].reshape(n, 1404), "", "landmarks"),
                                                Tensor(arrays[1].reshape(n, 1), "", "face_flag")]))
            return
        if sizes != self.SIZES:
            raise ValueError(f"{self.where}: expected the face mesh with attention's outputs (values per crop "
                             f"{list(self.SIZES)}) or the plain face mesh's ({list(self.PLAIN)}), got "
                             f"{list(sizes)}: is the landmark model zoo:face-landmark-with-attention or "
                             "zoo:face-landmark?")
        points = refine_face_landmarks(*arrays[:6])
        n = points.shape[0]
        ctx.outputs["TENSORS"].add(Tensors([Tensor(points.reshape(n, 478 * 3), "", "landmarks"),
                                            Tensor(arrays[6].reshape(n, 1), "", "face_flag")]))
