"""Payload types shared by the built-in calculators.

All payloads are immutable by convention: a calculator never mutates a payload it received (with
fan-out, two consumers share one array). The arrays inside are numpy arrays; helpers that derive a
new payload return a new object.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

PIXEL_FORMATS = ("RGB", "BGR", "GRAY", "RGBA", "BGRA", "I420")

# BT.601 limited ("TV") range, the matrix FFmpeg and OpenCV use for yuv420p video: rows give Y, U, V
# from R, G, B in 0..255.
_RGB_TO_YUV = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0
_YUV_OFFSET = np.array([16.0, 128.0, 128.0])
_Y_TO_GRAY = np.clip(np.round((np.arange(256) - 16.0) * 255.0 / 219.0), 0, 255).astype(np.uint8)


def rgb_to_yuv(color) -> tuple[int, int, int]:
    """An RGB colour (0..255) as the (Y, U, V) bytes of BT.601 limited-range video."""
    yuv = _RGB_TO_YUV @ np.asarray(color, np.float64)[:3] + _YUV_OFFSET
    return tuple(int(v) for v in np.clip(np.round(yuv), 0, 255))


@dataclass(frozen=True, eq=False)
class Image:
    """An image: an HxWxC (or HxW for GRAY) uint8 array and its pixel format.

    ``I420`` is planar YUV 4:2:0 as decoders deliver it (FFmpeg's ``yuv420p``, BT.601 limited
    range): one (H * 3 / 2, W) uint8 array holding the Y plane (H rows), then U and V (H / 2 x W / 2
    each, packed two rows per array row) — OpenCV's ``COLOR_YUV2RGB_I420`` layout. Width and height
    are even. Keeping frames in I420 from decoder to encoder skips two full-frame colour
    conversions; :meth:`planes` gives the three planes as views.
    """

    data: np.ndarray
    format: str = "RGB"

    def __post_init__(self) -> None:
        if not isinstance(self.data, np.ndarray):
            raise TypeError(f"Image.data must be a numpy array, got {type(self.data).__name__}")
        if self.format not in PIXEL_FORMATS:
            raise ValueError(f"Image.format must be one of {PIXEL_FORMATS}, got {self.format!r}")
        if self.format == "I420":
            rows, w = self.data.shape[:2] if self.data.ndim == 2 else (0, 0)
            if self.data.ndim != 2 or rows % 3 or w % 2 or (rows * 2 // 3) % 2:
                raise ValueError(f"an I420 image is a (H * 3 / 2, W) array with even H and W, got shape {self.data.shape}")
            return
        expected = {"GRAY": (2, 3), "RGB": (3,), "BGR": (3,), "RGBA": (3,), "BGRA": (3,)}[self.format]
        if self.data.ndim not in expected:
            raise ValueError(
                f"Image of format {self.format} must have {' or '.join(map(str, expected))} dims, "
                f"got shape {self.data.shape}"
            )

    @property
    def height(self) -> int:
        rows = int(self.data.shape[0])
        return rows * 2 // 3 if self.format == "I420" else rows

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Y (HxW), U and V (H/2 x W/2) planes of an I420 image, as views of ``data``."""
        if self.format != "I420":
            raise ValueError(f"planes() needs an I420 image, this one is {self.format}")
        return i420_planes(self.data)

    def with_data(self, data: np.ndarray, format: str | None = None) -> "Image":
        return Image(data, format or self.format)

    def to(self, format: str) -> "Image":
        """This image in another pixel format (a new array; self is untouched)."""
        if format == self.format:
            return self
        import cv2

        if self.format == "I420":
            if format == "GRAY":  # luma, stretched from video range (16..235) to 0..255 as RGB -> GRAY gives
                return Image(cv2.LUT(self.data[: self.height], _Y_TO_GRAY), "GRAY")
            code = getattr(cv2, f"COLOR_YUV2{format}_I420", None)
        elif format == "I420":
            src = self if self.format != "GRAY" else self.to("RGB")
            if src.width % 2 or src.height % 2:
                raise ValueError(f"I420 needs an even width and height, this image is {src.width}x{src.height}")
            code = getattr(cv2, f"COLOR_{src.format}2YUV_I420", None)
            return Image(cv2.cvtColor(src.data, code), "I420")
        else:
            code = getattr(cv2, f"COLOR_{self.format}2{format}", None)
        if code is None:
            raise ValueError(f"no conversion from {self.format} to {format}")
        return Image(cv2.cvtColor(self.data, code), format)


def i420_planes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a (H * 3 / 2, W) I420 array (writable when ``data`` is)."""
    h, w = data.shape[0] * 2 // 3, data.shape[1]
    q = h // 4
    return data[:h], data[h:h + q].reshape(h // 2, w // 2), data[h + q:].reshape(h // 2, w // 2)


@dataclass(frozen=True, eq=False)
class Tensor:
    """A numpy tensor with its layout (e.g. NCHW, NHWC, or free text such as 'NC')."""

    data: np.ndarray
    layout: str = ""
    name: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype


@dataclass(frozen=True, eq=False)
class Transform:
    """The affine map from a tensor's pixel coordinates back to the source frame.

    ``matrix`` is 2x3: frame_xy = matrix @ [tensor_x, tensor_y, 1]. ``frame_size`` and
    ``tensor_size`` are (width, height).
    """

    matrix: np.ndarray
    frame_size: tuple[int, int]
    tensor_size: tuple[int, int]

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Maps (..., 2) tensor pixel coordinates to frame pixel coordinates."""
        pts = np.asarray(points, dtype=np.float64)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_tensor(self, points: np.ndarray) -> np.ndarray:
        """Maps (..., 2) frame pixel coordinates to tensor pixel coordinates."""
        full = np.vstack([self.matrix, [0.0, 0.0, 1.0]])
        inv = np.linalg.inv(full)[:2]
        pts = np.asarray(points, dtype=np.float64)
        return pts @ inv[:, :2].T + inv[:, 2]

    @staticmethod
    def identity(size: tuple[int, int]) -> "Transform":
        return Transform(np.array([[1.0, 0, 0], [0, 1.0, 0]]), tuple(size), tuple(size))


@dataclass(frozen=True, eq=False)
class Mask:
    """A per-pixel float32 mask in [0, 1], HxW, in the pixels of ``frame_size`` when known."""

    data: np.ndarray
    frame_size: tuple[int, int] | None = None


def _as_array(value: Any, dtype, shape_tail: tuple, name: str, n: int | None) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.size == 0 and n == 0:
        arr = arr.reshape((0, *shape_tail))
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail and shape_tail != ():
        want = "(N" + "".join(f", {d}" for d in shape_tail) + ")"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows (one per detection), got {arr.shape[0]}")
    return arr


@dataclass(frozen=True, eq=False)
class Detections:
    """Per-detection numpy arrays, in the manner of supervision's ``Detections``.

    - ``xyxy``: (N, 4) float32 boxes in pixels of the source frame (x0, y0, x1, y1)
    - ``scores``: (N,) float32
    - ``class_ids``: (N,) int32
    - ``labels``: tuple of N strings
    - ``keypoints``: (N, K, 2) float32 pixel coordinates, or None
    - ``tracker_ids``: (N,) int64, or None
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray = field(default=None)  # type: ignore[assignment]
    labels: tuple[str, ...] = field(default=None)  # type: ignore[assignment]
    keypoints: np.ndarray | None = None
    tracker_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        object.__setattr__(self, "xyxy", xyxy)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if scores.shape != (n,):
            raise ValueError(f"scores must have shape ({n},), got {scores.shape}")
        object.__setattr__(self, "scores", scores)
        cids = np.zeros(n, np.int32) if self.class_ids is None else np.asarray(self.class_ids, np.int32).reshape(-1)
        if cids.shape != (n,):
            raise ValueError(f"class_ids must have shape ({n},), got {cids.shape}")
        object.__setattr__(self, "class_ids", cids)
        labels = tuple("" for _ in range(n)) if self.labels is None else tuple(str(s) for s in self.labels)
        if len(labels) != n:
            raise ValueError(f"labels must have {n} entries, got {len(labels)}")
        object.__setattr__(self, "labels", labels)
        if self.keypoints is not None:
            kp = np.asarray(self.keypoints, dtype=np.float32)
            if kp.size == 0 and not (kp.ndim == 3 and kp.shape[0] == n and kp.shape[2] == 2):
                kp = kp.reshape(n, 0, 2)  # e.g. [] for no detections; (0, K, 2) keeps its K
            if kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 2:
                raise ValueError(f"keypoints must have shape ({n}, K, 2), got {kp.shape}")
            object.__setattr__(self, "keypoints", kp)
        if self.tracker_ids is not None:
            tid = np.asarray(self.tracker_ids, dtype=np.int64).reshape(-1)
            if tid.shape != (n,):
                raise ValueError(f"tracker_ids must have shape ({n},), got {tid.shape}")
            object.__setattr__(self, "tracker_ids", tid)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @staticmethod
    def empty(num_keypoints: int | None = None) -> "Detections":
        kp = None if num_keypoints is None else np.zeros((0, num_keypoints, 2), np.float32)
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), keypoints=kp)

    def select(self, index: Sequence[int] | np.ndarray) -> "Detections":
        """The detections at ``index`` (indices or a boolean mask), as a new object."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        return Detections(
            self.xyxy[idx], self.scores[idx], self.class_ids[idx],
            tuple(self.labels[i] for i in idx),
            None if self.keypoints is None else self.keypoints[idx],
            None if self.tracker_ids is None else self.tracker_ids[idx],
        )

    def replace(self, **changes: Any) -> "Detections":
        return replace(self, **changes)

    def to_json(self) -> list[dict]:
        """The JSONL form: [{"box": [...], "score": f, "label": s, "keypoints": [[x, y], ...]}]."""
        out = []
        # tolist() once: Python floats, not a numpy scalar per value
        boxes, scores = self.xyxy.tolist(), self.scores.tolist()
        kps = None if self.keypoints is None else self.keypoints.tolist()
        ids = None if self.tracker_ids is None else self.tracker_ids.tolist()
        for i in range(len(self)):
            d: dict[str, Any] = {
                "box": [round(v, 2) for v in boxes[i]],
                "score": round(scores[i], 4),
                "label": self.labels[i],
            }
            if kps is not None:
                d["keypoints"] = [[round(x, 2), round(y, 2)] for x, y in kps[i]]
            if ids is not None:
                d["id"] = ids[i]
            out.append(d)
        return out

    def to_supervision(self):
        """A ``supervision.Detections`` (requires the ``supervision`` package)."""
        import supervision as sv  # imported where used: optional

        data = {"class_name": np.array(self.labels)}
        if self.keypoints is not None:
            data["keypoints"] = self.keypoints
        return sv.Detections(
            xyxy=self.xyxy.astype(np.float32), confidence=self.scores, class_id=self.class_ids,
            tracker_id=self.tracker_ids, data=data,
        )

    @staticmethod
    def from_supervision(det) -> "Detections":
        """Reads a ``supervision.Detections`` by attribute, without importing supervision."""
        n = len(det.xyxy)
        labels = None
        data = getattr(det, "data", None) or {}
        if "class_name" in data:
            labels = [str(s) for s in data["class_name"]]
        return Detections(
            det.xyxy, det.confidence if det.confidence is not None else np.ones(n, np.float32),
            det.class_id, labels, data.get("keypoints"), det.tracker_id,
        )


class Tensors(tuple):
    """An ordered, immutable list of named ``Tensor`` s: what ``Inference`` emits on ``TENSORS``.

    It is a tuple (``out[0]``, iteration, ``len``) that also looks tensors up by name
    (``out["regressors"]``), so decoders may use either the model's output order or its names.
    """

    __slots__ = ()

    def __new__(cls, tensors=()):
        items = tuple(tensors)
        for t in items:
            if not isinstance(t, Tensor):
                raise TypeError(f"Tensors holds Tensor objects, got {type(t).__name__}")
        return super().__new__(cls, items)

    def __getitem__(self, key):
        if isinstance(key, str):
            for t in self:
                if t.name == key:
                    return t
            raise KeyError(f"no tensor named {key!r}; names are {self.names}")
        return tuple.__getitem__(self, key)

    @property
    def names(self) -> tuple[str | None, ...]:
        return tuple(t.name for t in self)

    def get(self, name: str, default=None):
        for t in self:
            if t.name == name:
                return t
        return default

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{name: array}`` (unnamed tensors are keyed by their position as a string)."""
        return {(t.name if t.name is not None else str(i)): t.data for i, t in enumerate(self)}

    def __repr__(self) -> str:
        return "Tensors(" + ", ".join(f"{t.name}:{t.shape}:{t.dtype}" for t in self) + ")"
