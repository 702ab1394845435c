"""Segmentation mask post-processing and background effects (pure numpy/OpenCV, no graph needed)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from calculators.types import Transform


def mask_from_tensor(data: np.ndarray, activation: str = "none", channel: int = 0) -> np.ndarray:
    """An HxW float32 foreground probability from a model's mask output.

    ``data`` is (1, H, W, C), (1, C, H, W) (C taken as the smaller of the last/second axis), (H, W, C)
    or (H, W). ``activation``: none (already probabilities), sigmoid (logits), softmax (over channels,
    then ``channel``; refused for a single-channel output, where it would be 1.0 everywhere).
    """
    a = np.asarray(data, np.float32)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"mask_from_tensor takes one image, got a batch of {a.shape[0]}")
        a = a[0]
    if a.ndim == 3:
        if a.shape[0] < a.shape[-1]:  # CHW -> HWC
            a = a.transpose(1, 2, 0)
        if activation == "softmax" and a.shape[2] > 1:
            e = np.exp(a - a.max(axis=2, keepdims=True))
            return np.ascontiguousarray((e / e.sum(axis=2, keepdims=True))[:, :, channel])
        a = a[:, :, channel]
    if a.ndim != 2:
        raise ValueError(f"a mask output must be (1, H, W, C), (1, C, H, W), (H, W, C) or (H, W), got {data.shape}")
    if activation == "softmax":
        raise ValueError(f"softmax needs a mask output with two or more channels, got {data.shape}: "
                         "a single-channel output takes activation sigmoid (logits) or none")
    if activation == "sigmoid":
        a = 1.0 / (1.0 + np.exp(-a))
    elif activation not in ("none", "softmax"):
        raise ValueError(f"activation must be none, sigmoid or softmax, got {activation!r}")
    return np.ascontiguousarray(a)


def mask_to_frame(mask: np.ndarray, transform: Transform) -> np.ndarray:
    """Resamples a tensor-space mask into the frame through ``transform`` (linear).

    Frame pixels past the tensor's outermost pixel centres (half a tensor pixel at each edge) take
    the edge value rather than 0, so a mask covering the whole tensor covers the whole frame.
    """
    fw, fh = transform.frame_size
    # transform.matrix maps tensor -> frame, which is the forward map warpAffine wants here.
    return cv2.warpAffine(mask, transform.matrix, (fw, fh), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def refine_mask(mask: np.ndarray, threshold: float | None = None, smooth: int = 0) -> np.ndarray:
    """Hard mask (``threshold``) or soft mask, optionally feathered by a ``smooth``-pixel blur."""
    out = mask
    if threshold is not None:
        out = (out >= threshold).astype(np.float32)
    if smooth > 0:
        k = smooth | 1
        out = cv2.GaussianBlur(out, (k, k), 0)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def blend(foreground: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``foreground * mask + background * (1 - mask)`` as uint8 (a new array)."""
    if mask.shape != foreground.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match the image {foreground.shape[:2]}")
    m = mask[:, :, None] if foreground.ndim == 3 else mask
    out = background.astype(np.float32)
    out += (foreground.astype(np.float32) - out) * m
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def blur_background(image: np.ndarray, mask: np.ndarray, kernel: int = 31) -> np.ndarray:
    """The image with everything outside the (foreground) mask blurred."""
    k = max(3, int(kernel) | 1)
    return blend(image, cv2.GaussianBlur(image, (k, k), 0), mask)


def replace_background(image: np.ndarray, mask: np.ndarray,
                       background: np.ndarray | Sequence[int]) -> np.ndarray:
    """The image with its background replaced by a colour or an image (resized to the frame)."""
    if isinstance(background, np.ndarray) and background.ndim >= 2:
        bg = cv2.resize(background, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    else:
        bg = np.empty_like(image)
        bg[...] = np.asarray(background, np.uint8)
    return blend(image, bg, mask)
