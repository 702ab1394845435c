"""MediaPipe Tasks calculators: models with Tasks metadata (``.tflite``/``.task``) run by MediaPipe's
own Tasks API, with vpipe payloads out.

- ``MediaPipeFaceDetector``: IMAGE (Image) → DETECTIONS (Detections: boxes, scores, 6 keypoints).
- ``MediaPipeImageSegmenter``: IMAGE (Image) → MASK (Mask, float32 confidence in [0, 1]).
- ``MediaPipeHandLandmarker``: IMAGE (Image) → DETECTIONS (one per hand, 21 keypoints, handedness label).
- ``MediaPipePoseLandmarker``: IMAGE (Image) → DETECTIONS (one per pose, 33 keypoints).

The landmarkers need ``.task`` bundles; the catalog makes them from MediaPipe's own models
(``zoo:hand-landmarker``, ``zoo:pose-landmarker``, see ``models.task_bundle``).

Timestamps: one output per input, same timestamp (``timestamp_offset = 0``). In ``running_mode:
image`` (the default) every frame is independent and one task object is shared (under a lock) by
all nodes naming the same model and options; ``running_mode: video`` gives each node its own task,
fed with the packet timestamp in milliseconds (MediaPipe needs them strictly increasing). Task
objects are closed explicitly in ``close`` (mediapipe 1.2.x raises at interpreter exit otherwise).
Raw ``.tflite`` tensors (no metadata needed) run through ``Inference`` with engine ``openvino``.

Example node:
    - calculator: MediaPipeFaceDetector
      inputs: {IMAGE: frames}
      outputs: {DETECTIONS: faces}
      options: {model: zoo:blazeface-short, min_score: 0.5}
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline import Calculator, Input, Output, register

from calculators.types import Detections, Image, Mask

from .engine import DeviceError, InferenceError, ModelLoadError, log, require
from .model_cache import checksum


class _TaskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="path or catalog name of a .tflite/.task with Tasks metadata")
    device: Literal["auto", "cpu", "gpu"] = "auto"
    running_mode: Literal["image", "video"] = "image"


# --------------------------------------------------------------------------- shared task cache
class _SharedTask:
    def __init__(self, key, task) -> None:
        self.key = key
        self.task = task
        self.lock = threading.Lock()
        self.refs = 1


_tasks: dict[tuple, _SharedTask] = {}
_tasks_lock = threading.Lock()
task_loads = 0  # how many task objects were created (tests count shared loads)


def _create(kind: str, path: Path, opts: _TaskOptions, settings: dict[str, Any]):
    global task_loads
    require("mediapipe", "mediapipe")
    from mediapipe.tasks.python import BaseOptions, vision

    delegate = {"auto": None, "cpu": BaseOptions.Delegate.CPU, "gpu": BaseOptions.Delegate.GPU}[opts.device]
    base = BaseOptions(model_asset_path=str(path), delegate=delegate)
    mode = vision.RunningMode.VIDEO if opts.running_mode == "video" else vision.RunningMode.IMAGE
    cls, opt_cls = {
        "face": (vision.FaceDetector, vision.FaceDetectorOptions),
        "segment": (vision.ImageSegmenter, vision.ImageSegmenterOptions),
        "hand": (vision.HandLandmarker, vision.HandLandmarkerOptions),
        "pose": (vision.PoseLandmarker, vision.PoseLandmarkerOptions),
    }[kind]
    try:
        task = cls.create_from_options(opt_cls(base_options=base, running_mode=mode, **settings))
    except Exception as e:  # MediaPipe raises RuntimeError/ValueError with its status text
        text = str(e)
        if opts.device == "gpu":
            raise DeviceError(f"MediaPipe {cls.__name__} could not use the GPU delegate: {text}") from e
        hint = ""
        if "metadata" in text.lower():
            hint = " (the Tasks API needs a model with Tasks metadata; raw .tflite tensors run with Inference, engine openvino)"
        raise ModelLoadError(f"MediaPipe {cls.__name__} could not load {path}: {text}{hint}") from e
    task_loads += 1
    return task


class _TaskCalculator(Calculator):
    """Shared open/close for the Tasks calculators (each takes IMAGE)."""

    inputs = {"IMAGE": Input(Image)}
    open_concurrently = True  # creating the task (its model load) overlaps the source's open
    _kind = ""

    def _settings(self, o) -> dict[str, Any]:  # pragma: no cover - per subclass
        return {}

    def open(self, ctx) -> None:
        o = ctx.options
        self._where = f"node {ctx.node!r} ({ctx.calculator}, model {o.model})"
        try:
            from models.catalog import resolve

            path = Path(resolve(o.model))
        except Exception as e:
            raise ModelLoadError(f"{self._where}: cannot resolve the model: {e}") from e
        if path.suffix.lower() not in (".tflite", ".task"):
            raise ModelLoadError(f"{self._where}: MediaPipe Tasks take .tflite or .task models, got {path.name}")
        self._where = f"node {ctx.node!r} ({ctx.calculator}, model {path})"
        settings = self._settings(o)
        self._video = o.running_mode == "video"
        self._last_ms = -1
        try:
            if self._video:  # a tracking task belongs to one stream
                self._shared = _SharedTask(None, _create(self._kind, path, o, settings))
            else:
                key = (self._kind, str(path.resolve()), checksum(path), o.device,
                       tuple(sorted(settings.items())))
                with _tasks_lock:
                    shared = _tasks.get(key)
                    if shared is not None:
                        shared.refs += 1
                    else:
                        shared = _tasks[key] = _SharedTask(key, _create(self._kind, path, o, settings))
                self._shared = shared
        except InferenceError as e:
            raise type(e)(f"{self._where}: {e}") from e
        log.info("%s: MediaPipe %s task ready (%s mode)", self._where, self._kind, o.running_mode)

    def _mp_image(self, image: Image):
        import mediapipe as mp

        if not isinstance(image, Image):
            raise InferenceError(f"{self._where}: IMAGE takes an Image, got {type(image).__name__}")
        rgb = image.to("RGB") if image.format != "RGB" else image
        data = np.ascontiguousarray(rgb.data)
        if data.dtype != np.uint8:
            raise InferenceError(f"{self._where}: MediaPipe takes uint8 images, got {data.dtype}")
        return mp.Image(image_format=mp.ImageFormat.SRGB, data=data)

    def _run(self, ctx, method: str):
        image = ctx.inputs["IMAGE"].value
        mp_image = self._mp_image(image)
        task = self._shared.task
        if self._video:
            ms = max(ctx.timestamp // 1000, self._last_ms + 1)
            self._last_ms = ms
            return image, getattr(task, f"{method}_for_video")(mp_image, ms)
        with self._shared.lock:
            return image, getattr(task, method)(mp_image)

    def close(self, ctx) -> None:
        shared = getattr(self, "_shared", None)
        if shared is None:
            return
        self._shared = None
        if shared.key is not None:
            with _tasks_lock:
                shared.refs -= 1
                if shared.refs > 0:
                    return
                _tasks.pop(shared.key, None)
        shared.task.close()


def _landmarks_to_detections(groups, w: int, h: int, labels, scores, num_keypoints: int) -> Detections:
    """Tasks landmarks (normalised to the frame) to Detections: keypoints in frame pixels, as the
    model gives them (a body part outside the picture gets a position outside the frame); the box
    is the extent of the keypoints clipped to the frame."""
    if not groups:
        return Detections.empty(num_keypoints=num_keypoints)
    kps = np.array([[(lm.x * w, lm.y * h) for lm in g] for g in groups], np.float32)
    inside = np.clip(kps, 0, (w, h))
    xyxy = np.concatenate([inside.min(axis=1), inside.max(axis=1)], axis=1)
    return Detections(xyxy, np.asarray(scores, np.float32), labels=labels, keypoints=kps)


# ---------------------------------------------------------------------------------- calculators
class FaceDetectorOptions(_TaskOptions):
    min_score: float = Field(0.5, ge=0, le=1, description="min_detection_confidence")
    min_suppression_threshold: float = Field(0.3, ge=0, le=1, description="NMS IoU threshold")


@register
class MediaPipeFaceDetector(_TaskCalculator):
    """Face detection with MediaPipe Tasks' FaceDetector (BlazeFace short/full range models).

    Ports: IMAGE (Image) -> DETECTIONS (Detections in frame pixels, label "face", 6 keypoints:
    right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion).
    Options: model, device (auto|cpu|gpu), running_mode (image|video), min_score,
    min_suppression_threshold.
    Example:
        - calculator: MediaPipeFaceDetector
          inputs: {IMAGE: frames}
          outputs: {DETECTIONS: faces}
          options: {model: zoo:blazeface-short}
    """

    outputs = {"DETECTIONS": Output(Detections)}
    Options = FaceDetectorOptions
    _kind = "face"

    def _settings(self, o):
        return {"min_detection_confidence": o.min_score, "min_suppression_threshold": o.min_suppression_threshold}

    def process(self, ctx) -> None:
        image, result = self._run(ctx, "detect")
        w, h = image.width, image.height
        dets = result.detections
        if not dets:
            ctx.outputs["DETECTIONS"].add(Detections.empty(num_keypoints=6))
            return
        xyxy, scores, kps = [], [], []
        for d in dets:
            b = d.bounding_box
            xyxy.append((b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height))
            scores.append(d.categories[0].score if d.categories else 1.0)
            kps.append([(k.x * w, k.y * h) for k in (d.keypoints or [])])
        n_kp = min(len(k) for k in kps)
        keypoints = np.array([k[:n_kp] for k in kps], np.float32).reshape(len(dets), n_kp, 2)
        ctx.outputs["DETECTIONS"].add(Detections(np.array(xyxy, np.float32), np.array(scores, np.float32),
                                                 labels=["face"] * len(dets), keypoints=keypoints))


class ImageSegmenterOptions(_TaskOptions):
    category: int | None = Field(None, ge=0, description="which confidence mask to emit; default: the only "
                                                         "one, or the last one (the foreground class) when several")


@register
class MediaPipeImageSegmenter(_TaskCalculator):
    """Segmentation with MediaPipe Tasks' ImageSegmenter (e.g. selfie segmentation).

    Ports: IMAGE (Image) -> MASK (Mask: float32 confidence in [0, 1], frame-sized).
    Options: model, device, running_mode, category.
    Example:
        - calculator: MediaPipeImageSegmenter
          inputs: {IMAGE: frames}
          outputs: {MASK: person}
          options: {model: zoo:selfie-segmentation}
    """

    outputs = {"MASK": Output(Mask)}
    Options = ImageSegmenterOptions
    _kind = "segment"

    def _settings(self, o):
        return {"output_confidence_masks": True, "output_category_mask": False}

    def process(self, ctx) -> None:
        image, result = self._run(ctx, "segment")
        masks = result.confidence_masks or []
        if not masks:
            raise InferenceError(f"{self._where}: the segmenter returned no confidence mask")
        k = ctx.options.category
        if k is None:
            k = len(masks) - 1
        if k >= len(masks):
            raise InferenceError(f"{self._where}: category {k} asked, the model has {len(masks)} mask(s)")
        data = np.array(masks[k].numpy_view(), dtype=np.float32, copy=True)
        if data.ndim == 3:
            data = data[..., 0]
        ctx.outputs["MASK"].add(Mask(data, frame_size=image.size))


class HandLandmarkerOptions(_TaskOptions):
    num_hands: int = Field(2, ge=1)
    min_score: float = Field(0.5, ge=0, le=1, description="min_hand_detection_confidence")


@register
class MediaPipeHandLandmarker(_TaskCalculator):
    """Hand landmarks with MediaPipe Tasks' HandLandmarker (a ``.task`` bundle such as
    ``zoo:hand-landmarker``: palm detector + hand landmark model).

    Ports: IMAGE (Image) -> DETECTIONS (one per hand: box around the landmarks clipped to the
    frame, handedness score and label "Left"/"Right" as MediaPipe reports it, 21 keypoints in
    frame pixels: wrist, then thumb, index, middle, ring and pinky from base to tip).
    Options: model, device, running_mode (image|video: video tracks hands from frame to frame),
    num_hands, min_score (palm detection confidence).
    Example:
        - calculator: MediaPipeHandLandmarker
          inputs: {IMAGE: frames}
          outputs: {DETECTIONS: hands}
          options: {model: zoo:hand-landmarker, running_mode: video}
    """

    outputs = {"DETECTIONS": Output(Detections)}
    Options = HandLandmarkerOptions
    _kind = "hand"

    def _settings(self, o):
        return {"num_hands": o.num_hands, "min_hand_detection_confidence": o.min_score}

    def process(self, ctx) -> None:
        image, r = self._run(ctx, "detect")
        labels = [h[0].category_name if h else "" for h in r.handedness]
        scores = [h[0].score if h else 1.0 for h in r.handedness]
        ctx.outputs["DETECTIONS"].add(
            _landmarks_to_detections(r.hand_landmarks, image.width, image.height, labels, scores, 21))


class PoseLandmarkerOptions(_TaskOptions):
    num_poses: int = Field(1, ge=1)
    min_score: float = Field(0.5, ge=0, le=1, description="min_pose_detection_confidence")


@register
class MediaPipePoseLandmarker(_TaskCalculator):
    """Body pose landmarks with MediaPipe Tasks' PoseLandmarker (a ``.task`` bundle such as
    ``zoo:pose-landmarker``: BlazePose detector + landmark model).

    Ports: IMAGE (Image) -> DETECTIONS (one per person: box around the landmarks clipped to the
    frame, score = mean landmark visibility, label "person", 33 keypoints in frame pixels in
    BlazePose order: nose, eyes, ears, mouth, shoulders, elbows, wrists, hands, hips, knees,
    ankles, heels, feet). Body parts outside the picture (the legs of a head-and-shoulders shot)
    keep the position the model estimates for them, outside the frame.
    Options: model, device, running_mode (image|video: video tracks the pose from frame to frame),
    num_poses, min_score (pose detection confidence).
    Example:
        - calculator: MediaPipePoseLandmarker
          inputs: {IMAGE: frames}
          outputs: {DETECTIONS: poses}
          options: {model: zoo:pose-landmarker, running_mode: video}
    """

    outputs = {"DETECTIONS": Output(Detections)}
    Options = PoseLandmarkerOptions
    _kind = "pose"

    def _settings(self, o):
        return {"num_poses": o.num_poses, "min_pose_detection_confidence": o.min_score}

    def process(self, ctx) -> None:
        image, r = self._run(ctx, "detect")
        groups = r.pose_landmarks
        scores = [float(np.mean([lm.visibility or 0.0 for lm in g])) for g in groups]
        ctx.outputs["DETECTIONS"].add(
            _landmarks_to_detections(groups, image.width, image.height, ["person"] * len(groups), scores, 33))
