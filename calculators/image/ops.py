"""Pure image operations behind the image calculators (no graph needed).

The geometry follows MediaPipe's ImageToTensorCalculator (OpenCV converter): a region of interest
(by default the whole frame) is mapped corner to corner onto the tensor, so a point at the ROI's
top-left edge lands on tensor coordinate 0 and its bottom-right edge on the tensor's width/height.
``fit`` decides how the ROI is shaped before that:

- ``stretch``: the ROI is the frame; x and y are scaled independently.
- ``letterbox``: the ROI grows along one axis to the tensor's aspect ratio; the padding is filled
  with ``border`` (MediaPipe's ``keep_aspect_ratio`` with ``BORDER_ZERO``).
- ``crop``: the ROI shrinks along one axis to the tensor's aspect ratio (a centre crop).

Every function returns a :class:`~calculators.types.Transform` mapping tensor pixels back to frame
pixels, so detections can be projected onto the source frame.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

from calculators.types import _RGB_TO_YUV, _Y_TO_GRAY, _YUV_OFFSET, Image, Tensor, Transform, rgb_to_yuv

FITS = ("stretch", "letterbox", "crop")
LAYOUTS = ("NHWC", "NCHW", "HWC", "CHW")
# [R G B]^T = inv(M) @ ([Y U V]^T - offset), as one 3x4 matrix for cv2.transform.
_YUV_TO_RGB = np.hstack([np.linalg.inv(_RGB_TO_YUV), -(np.linalg.inv(_RGB_TO_YUV) @ _YUV_OFFSET)[:, None]])
INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST,
                  "cubic": cv2.INTER_CUBIC}


_INT16_LIMIT = 32767.0 * 32  # positions (1/32 pixel) stay within int16 pixels, as OpenCV saturates them
_OFFSET = 1 << 21


def _needs_clip(m: np.ndarray, size: tuple[int, int]) -> bool:
    """Whether the map ``m`` (in 1/32 pixels) reaches past int16 pixels (an affine map is extreme
    at the corners)."""
    w, h = size
    (a, b, c), (d, e, f) = m.tolist()
    return max(abs(p * u + q * v + r) for p, q, r in ((a, b, c), (d, e, f))
               for u in (0, w - 1) for v in (0, h - 1)) > _INT16_LIMIT


def _fixed_point_maps(to_frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap``'s fixed-point maps for the 2x3 tensor -> frame map ``to_frame``: each tensor
    pixel's frame position rounded to 1/32 pixel (integer part, CV_16SC2; fraction index, CV_16UC1)."""
    m = np.asarray(to_frame, np.float64) * 32.0  # 32 = 1 << INTER_BITS; a power of two, so exact
    if not _needs_clip(m, size):
        return _fixed_point_maps_many((to_frame,), size)[0]
    w, h = size
    lim, off = _INT16_LIMIT, _OFFSET
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)[:, None]
    (a, b, c), (d, e, f) = m.tolist()
    x = np.clip(a * xs + (b * ys + c), -lim, lim)
    y = np.clip(d * xs + (e * ys + f), -lim, lim)
    xi, yi = (x + (0.5 + off)).astype(np.int32), (y + (0.5 + off)).astype(np.int32)
    return _split_positions(xi[None, None], yi[None, None])[0]


def _fixed_point_maps_many(to_frames, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`_fixed_point_maps` of several maps onto one ``size`` grid (an I420 crop's luma and
    chroma maps) in one set of numpy calls: the same values (the same operations, elementwise) in
    a fraction of the calls, which on a tracking loop's path cost more than their arithmetic."""
    ms = [np.asarray(t, np.float64) * 32.0 for t in to_frames]
    if any(_needs_clip(m, size) for m in ms):
        return [_fixed_point_maps(t, size) for t in to_frames]
    w, h = size
    g = np.stack(ms)  # (k, 2, 3)
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    # floor(v + 0.5) by truncating v + 0.5 + 2^21 (folded into the constant term): many times
    # faster than np.rint here, and the same but on exact halves. The sum of the column and row
    # terms is cast to int32 as the ufunc writes it (buffered), with no float64 grid in between.
    along = g[:, :, 0, None] * xs                                 # (k, 2, w): a * u, d * u
    down = g[:, :, 1, None] * ys + ((g[:, :, 2] + 0.5) + _OFFSET)[..., None]  # (k, 2, h): b * v + (c + 0.5 + 2^21)
    pos = np.empty((len(ms), 2, h, w), np.int32)
    np.add(along[:, :, None, :], down[:, :, :, None], out=pos, casting="unsafe")
    return _split_positions(pos[:, 0], pos[:, 1])


def _split_positions(xi: np.ndarray, yi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(k, h, w) int32 positions in 1/32 pixel (plus 2^21) -> k pairs of remap maps; ``xi`` and
    ``yi`` are overwritten."""
    # The offset needs no subtracting: 2^21 is a multiple of 32 (the fraction bits are those of
    # v - 2^21) and 2^21 >> 5 a multiple of 2^16 (the int16 integer part wraps to that of v - 2^21).
    # Written in place, in as few passes as the ufuncs allow: this runs per crop, on the loop's path.
    xi, yi = xi.reshape(-1, *xi.shape[-2:]), yi.reshape(-1, *yi.shape[-2:])
    k, h, w = xi.shape
    xy = np.empty((k, h, w, 2), np.int16)
    np.right_shift(xi, 5, out=xy[..., 0], casting="unsafe")
    np.right_shift(yi, 5, out=xy[..., 1], casting="unsafe")
    # (y & 31) << 5 | (x & 31) as ((y << 5) | (x & 31)) & 1023, written straight as uint16
    yi <<= 5
    xi &= 31
    yi |= xi
    frac = np.empty((k, h, w), np.uint16)
    np.bitwise_and(yi, 1023, out=frac, casting="unsafe")
    return [(xy[i], frac[i]) for i in range(k)]


def warp_affine(data: np.ndarray, to_frame: np.ndarray, size: tuple[int, int], flags: int,
                border_mode: int = cv2.BORDER_CONSTANT, border_value: float | Sequence[float] = 0,
                maps: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``data`` resampled onto a ``size`` (width, height) grid through the 2x3 tensor -> frame map
    ``to_frame``, as MediaPipe's ImageToTensorCalculator samples it.

    Bilinear sampling is OpenCV 4's fixed-point warp (the one inside mediapipe 0.10.21's
    ``warpPerspective``): each position rounded to 1/32 pixel, then ``cv2.remap``'s fixed-point
    weights. OpenCV 5's ``warpAffine`` interpolates in floating point instead, which moves about 2 %
    of the pixels by one level, enough to move a palm detection score by 0.01 across the 0.5
    threshold (docs/graphs.md, "Matching MediaPipe"). ``maps`` are :func:`_fixed_point_maps`' (for a
    map used on many frames). Other interpolations go to ``cv2.warpAffine``."""
    if not isinstance(border_value, (int, float)):
        border_value = tuple(float(b) for b in border_value)
    else:
        border_value = (float(border_value),) * 4
    if flags != cv2.INTER_LINEAR:
        return cv2.warpAffine(data, cv2.invertAffineTransform(np.asarray(to_frame, np.float64)), size, flags=flags,
                              borderMode=border_mode, borderValue=border_value)
    xy, frac = maps if maps is not None else _fixed_point_maps(to_frame, size)
    return cv2.remap(data, xy, frac, cv2.INTER_LINEAR, borderMode=border_mode, borderValue=border_value)


def roi_for_fit(frame_size: tuple[int, int], tensor_size: tuple[int, int], fit: str,
                roi: Sequence[float] | None = None) -> tuple[float, float, float, float]:
    """The (x0, y0, width, height) region of the frame mapped onto the tensor.

    ``roi`` is an optional (x0, y0, x1, y1) pixel box to start from (default: the whole frame).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    fw, fh = frame_size
    tw, th = tensor_size
    if roi is None:
        x0, y0, rw, rh = 0.0, 0.0, float(fw), float(fh)
    else:
        x0, y0, x1, y1 = (float(v) for v in roi)
        rw, rh = x1 - x0, y1 - y0
        if rw <= 0 or rh <= 0:
            raise ValueError(f"roi must have x1 > x0 and y1 > y0, got {tuple(roi)}")
    if fit == "stretch":
        return x0, y0, rw, rh
    cx, cy = x0 + rw / 2.0, y0 + rh / 2.0
    tensor_aspect = th / tw
    grow = fit == "letterbox"
    if (rh / rw > tensor_aspect) == grow:
        rw = rh / tensor_aspect
    else:
        rh = rw * tensor_aspect
    return cx - rw / 2.0, cy - rh / 2.0, rw, rh


def fit_transform(frame_size: tuple[int, int], tensor_size: tuple[int, int], fit: str = "letterbox",
                  roi: Sequence[float] | None = None) -> Transform:
    """The Transform (tensor pixels -> frame pixels) for ``fit`` of ``frame_size`` into ``tensor_size``."""
    x0, y0, rw, rh = roi_for_fit(frame_size, tensor_size, fit, roi)
    tw, th = tensor_size
    matrix = np.array([[rw / tw, 0.0, x0], [0.0, rh / th, y0]], dtype=np.float64)
    return Transform(matrix, (int(frame_size[0]), int(frame_size[1])), (int(tw), int(th)))


@lru_cache(maxsize=64)
def _whole_frame_transform(frame_size: tuple[int, int], tensor_size: tuple[int, int], fit: str) -> Transform:
    """``fit_transform`` of a whole frame, made once per size: a video's frames share it (its
    matrix is read-only, as every payload's is once sent)."""
    transform = fit_transform(frame_size, tensor_size, fit)
    transform.matrix.flags.writeable = False
    return transform


def forward_matrix(transform: Transform) -> np.ndarray:
    """The 2x3 frame -> tensor matrix (what ``cv2.warpAffine`` wants)."""
    return cv2.invertAffineTransform(transform.matrix)


def warp(data: np.ndarray, transform: Transform, border: float | Sequence[float] = 0,
         interpolation: str = "linear") -> np.ndarray:
    """Resamples ``data`` (frame pixels) into the tensor grid of ``transform``."""
    try:
        flags = INTERPOLATIONS[interpolation]
    except KeyError:
        raise ValueError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, got {interpolation!r}") from None
    m = transform.matrix
    tw, th = transform.tensor_size
    fw, fh = transform.frame_size
    # A pure scale of the whole frame is a plain resize, which OpenCV does faster than a warp
    # (and INTER_AREA only exists for resize).
    if (m[0, 1] == 0 and m[1, 0] == 0 and m[0, 2] == 0 and m[1, 2] == 0
            and abs(m[0, 0] * tw - fw) < 1e-9 and abs(m[1, 1] * th - fh) < 1e-9):
        return cv2.resize(data, (tw, th), interpolation=flags)
    if flags == cv2.INTER_AREA:
        flags = cv2.INTER_LINEAR
    if flags == cv2.INTER_LINEAR:
        remap = _cached_remap(np.ascontiguousarray(m, np.float64).tobytes(), (tw, th), (fw, fh))
        return remap(data, tuple(float(b) for b in border) if not isinstance(border, (int, float))
                     else (float(border),) * 4)
    return warp_affine(data, m, (tw, th), flags, cv2.BORDER_CONSTANT, border)


class _FixedRemap:
    """:func:`warp_affine`'s bilinear fixed-point remap for one map used on many frames (a
    video's whole-frame fit), with the letterbox's pure-border band taken out: ``cv2.remap``
    costs ~7 ns per output pixel whether it samples the frame or not, and a 16:9 frame letterboxed
    into a square tensor leaves 44 % of it border. A tensor pixel none of whose four taps lies in
    the frame is the border value exactly (the fixed-point weights sum to 1), so only the box of
    rows and columns that touch the frame is remapped, into an array filled with the border:
    bit for bit what remapping the whole grid gives (tests/vision/test_image_ops.py checks it)."""

    __slots__ = ("size", "frame_size", "full", "maps", "box", "whole", "rows_only", "blanks", "gather")

    def __init__(self, to_frame: np.ndarray, size: tuple[int, int], frame_size: tuple[int, int]) -> None:
        self.size, self.frame_size = size, frame_size
        self.full = xy, frac = _fixed_point_maps(to_frame, size)
        fw, fh = frame_size
        x, y = xy[..., 0].astype(np.int32), xy[..., 1].astype(np.int32)
        # The taps of (x, y) are x..x+1 and y..y+1 (OpenCV reads the second even at fraction 0).
        touches = (x + 1 >= 0) & (x < fw) & (y + 1 >= 0) & (y < fh)
        rows, cols = np.flatnonzero(touches.any(axis=1)), np.flatnonzero(touches.any(axis=0))
        w, h = size
        self.box = ((int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) if len(rows)
                    else (0, 0, 0, 0))
        r0, r1, c0, c1 = self.box
        self.whole = self.box == (0, h, 0, w)
        self.rows_only = (c0, c1) == (0, w)  # the box is whole rows: remapped in place into them
        self.maps = self.full if self.whole else (np.ascontiguousarray(xy[r0:r1, c0:c1]),
                                                  np.ascontiguousarray(frac[r0:r1, c0:c1]))
        self.blanks: dict = {}  # (dtype, shape, border) -> a tensor of border only, copied per frame
        self.gather = _grid_gather(x, y, frac, frame_size)

    def gathers(self, data: np.ndarray) -> bool:
        """Whether ``data`` can be sampled by :meth:`gather_into` (a uint8 frame of this map's
        size, on a map whose positions are whole pixels on a regular grid)."""
        return (self.gather is not None and data.dtype == np.uint8
                and data.shape[0] == self.frame_size[1] and data.shape[1] == self.frame_size[0])

    def gather_into(self, out: np.ndarray, data: np.ndarray) -> None:
        """Writes the frame pixels of a whole-pixel grid map into ``out`` (the tensor grid, already
        filled with the border): a strided slice where ``cv2.remap`` would compute each pixel."""
        r0, r1, c0, c1, rows, cols = self.gather
        out[r0:r1, c0:c1] = data[rows, cols]

    def _blank(self, data: np.ndarray, border: tuple[float, ...]) -> np.ndarray:
        key = (data.dtype.str, data.shape[2:], border)
        blank = self.blanks.get(key)
        if blank is None:
            channels = data.shape[2:]
            fill = np.asarray(border[:channels[0]] if channels else border[0], np.float64)
            if np.issubdtype(data.dtype, np.integer):  # as OpenCV saturates the border value
                info = np.iinfo(data.dtype)
                fill = np.clip(np.rint(fill), info.min, info.max)
            blank = np.empty((self.size[1], self.size[0], *channels), data.dtype)
            blank[...] = fill.astype(data.dtype)
            self.blanks[key] = blank
        return blank.copy()

    def __call__(self, data: np.ndarray, border: tuple[float, ...]) -> np.ndarray:
        if self.gathers(data):
            out = self._blank(data, border)
            self.gather_into(out, data)
            return out
        if self.whole or data.shape[1] != self.frame_size[0] or data.shape[0] != self.frame_size[1]:
            xy, frac = self.full
            return cv2.remap(data, xy, frac, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        out = self._blank(data, border)
        r0, r1, c0, c1 = self.box
        if r1 > r0:
            xy, frac = self.maps
            if self.rows_only:  # whole rows of a C-ordered array: one contiguous block OpenCV fills
                cv2.remap(data, xy, frac, cv2.INTER_LINEAR, dst=out[r0:r1], borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border)
            else:
                inner = cv2.remap(data, xy, frac, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=border)
                out[r0:r1, c0:c1] = inner.reshape(out[r0:r1, c0:c1].shape)
        return out


def _grid_gather(x: np.ndarray, y: np.ndarray, frac: np.ndarray, frame_size: tuple[int, int]):
    """(r0, r1, c0, c1, rows, cols) when the map's positions ``x``, ``y`` (whole pixels, int32) have
    no fraction and lie on a regular grid (x by column, y by row, steps of one pixel or more), else
    None. Bilinear sampling at a whole pixel is that pixel: its fixed-point weights are (1, 0, 0, 0)
    and (p * 2^15 + 2^14) >> 15 is p, whatever the other taps hold (the frame or the border). So the
    tensor pixels whose position lies in the frame are ``data[rows, cols]``, placed at ``[r0:r1,
    c0:c1]``, and every other one is the border. A letterbox whose scale is a whole number of
    pixels (1280x720, 640x480 or 1920x1080 luma into 128x128) maps so."""
    if frac.any() or not (x == x[:1]).all() or not (y == y[:, :1]).all():
        return None
    fw, fh = frame_size

    def axis(pos: np.ndarray, limit: int):
        inside = np.flatnonzero((pos >= 0) & (pos < limit))
        if not len(inside):
            return None
        i0, i1 = int(inside[0]), int(inside[-1]) + 1
        steps = np.diff(pos[i0:i1])
        step = int(steps[0]) if len(steps) else 1
        if step < 1 or (steps != step).any():
            return None
        first = int(pos[i0])
        return i0, i1, slice(first, first + step * (i1 - i0 - 1) + 1, step)

    cols, rows = axis(x[0], fw), axis(y[:, 0], fh)
    if cols is None or rows is None:
        return None
    return rows[0], rows[1], cols[0], cols[1], rows[2], cols[2]


@lru_cache(maxsize=16)
def _cached_remap(matrix: bytes, size: tuple[int, int], frame_size: tuple[int, int]) -> _FixedRemap:
    """The fixed-point remap of a whole-frame fit (the same for every frame of a video)."""
    return _FixedRemap(np.frombuffer(matrix, np.float64).reshape(2, 3), size, frame_size)


class _PlaneWarp:
    """How one plane is resampled into the tensor grid: the OpenCV call and its fixed arguments,
    computed once per (transform, plane size, border) instead of once per frame."""

    __slots__ = ("resize", "matrix", "size", "flags", "border", "remap")

    def __init__(self, transform: Transform, border: tuple[float, ...], interpolation: str) -> None:
        try:
            flags = INTERPOLATIONS[interpolation]
        except KeyError:
            raise ValueError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, got {interpolation!r}") from None
        m = transform.matrix
        tw, th = transform.tensor_size
        fw, fh = transform.frame_size
        self.size = (tw, th)
        # A pure scale of the whole frame is a plain resize, which OpenCV does faster than a warp
        # (and INTER_AREA only exists for resize).
        self.resize = bool(m[0, 1] == 0 and m[1, 0] == 0 and m[0, 2] == 0 and m[1, 2] == 0
                           and abs(m[0, 0] * tw - fw) < 1e-9 and abs(m[1, 1] * th - fh) < 1e-9)
        if not self.resize and flags == cv2.INTER_AREA:
            flags = cv2.INTER_LINEAR
        self.flags = flags
        self.matrix = None if self.resize else transform.matrix
        self.remap = (_FixedRemap(transform.matrix, self.size, (fw, fh))
                      if not self.resize and flags == cv2.INTER_LINEAR else None)
        self.border = border

    def __call__(self, data: np.ndarray) -> np.ndarray:
        if self.resize:
            return cv2.resize(data, self.size, interpolation=self.flags)
        if self.remap is not None:
            return self.remap(data, self.border)
        return warp_affine(data, self.matrix, self.size, self.flags, cv2.BORDER_CONSTANT, self.border)


class _I420Warp:
    """The three planes of an I420 frame resampled into one tensor grid, as one (H, W, 3) YUV
    array: each plane through its :class:`_PlaneWarp` (chroma through the halved map), merged.
    When every plane's map is a whole-pixel grid (:func:`_grid_gather`), the three strided slices
    are written straight into the channels of one border-filled array: no ``cv2.remap`` and no
    merge, the same bytes."""

    __slots__ = ("luma", "chroma_u", "chroma_v", "blank", "slices", "shapes")

    def __init__(self, luma: _PlaneWarp, chroma_u: _PlaneWarp, chroma_v: _PlaneWarp) -> None:
        self.luma, self.chroma_u, self.chroma_v = luma, chroma_u, chroma_v
        w, h = luma.size
        fill = np.clip(np.rint([p.border[0] for p in (luma, chroma_u, chroma_v)]), 0, 255)  # as OpenCV saturates
        self.blank = np.empty((h, w, 3), np.uint8)
        self.blank[...] = fill.astype(np.uint8)
        remaps = [p.remap for p in (luma, chroma_u, chroma_v)]
        # Each channel's (r0, r1, c0, c1, rows, cols), taken out of the remaps once: on a video's
        # path the three assignments are what is left of the warp, and the calls around them
        # cost as much as they do.
        self.slices = [r.gather for r in remaps] if all(r is not None and r.gather for r in remaps) else None
        self.shapes = tuple((r.frame_size[1], r.frame_size[0]) for r in remaps) if self.slices else None

    def __call__(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if self.slices is not None and y.dtype == np.uint8 and (y.shape, u.shape, v.shape) == self.shapes:
            out = self.blank.copy()
            (a0, a1, b0, b1, ar, ac), (c0, c1, d0, d1, cr, cc), (e0, e1, f0, f1, er, ec) = self.slices
            out[a0:a1, b0:b1, 0] = y[ar, ac]
            out[c0:c1, d0:d1, 1] = u[cr, cc]
            out[e0:e1, f0:f1, 2] = v[er, ec]
            return out
        return cv2.merge([self.luma(y), self.chroma_u(u), self.chroma_v(v)])


@lru_cache(maxsize=64)
def _i420_warps(matrix: bytes, frame_size: tuple[int, int], tensor_size: tuple[int, int], border: float,
                interpolation: str) -> _I420Warp:
    """The luma and chroma warps of an I420 frame into one tensor grid (cached: a video's frames,
    or a tracker's unchanged region, reuse them)."""
    luma = Transform(np.frombuffer(matrix, np.float64).reshape(2, 3), frame_size, tensor_size)
    # Chroma sample i covers luma pixels 2i and 2i+1 (FFmpeg's yuv420p -> RGB replicates it so).
    chroma = Transform(luma.matrix * 0.5, (frame_size[0] // 2, frame_size[1] // 2), tensor_size)
    by, bu, bv = rgb_to_yuv((float(border),) * 3)
    return _I420Warp(_PlaneWarp(luma, (float(by),) * 4, interpolation),
                     _PlaneWarp(chroma, (float(bu),) * 4, interpolation), _PlaneWarp(chroma, (float(bv),) * 4, interpolation))


def warp_i420(image: Image, transform: Transform, format: str = "RGB", border: float = 0,
              interpolation: str = "linear") -> np.ndarray:
    """Resamples an I420 frame into the tensor grid of ``transform``, in ``format``.

    Each plane is resampled on its own straight to the tensor's size (the half-size chroma planes
    through the halved map, so the tensor keeps full chroma resolution) and only the small result
    is converted to ``format`` (BT.601 limited range, as FFmpeg decodes): the full frame is never
    converted. ``border`` is a grey level (as in :func:`warp`), turned into its YUV value.
    """
    y, u, v = image.planes()
    warps = _i420_warps(np.ascontiguousarray(transform.matrix, np.float64).tobytes(),
                        tuple(transform.frame_size), tuple(transform.tensor_size), float(border), interpolation)
    if format == "GRAY":
        return cv2.LUT(warps.luma(y), _Y_TO_GRAY)
    rgb = cv2.transform(warps(y, u, v), _YUV_TO_RGB)  # 3x4 affine per pixel, saturated to uint8
    if format == "RGB":
        return rgb
    return Image(rgb, "RGB").to(format).data


def normalize(data: np.ndarray, value_range: Sequence[float] | None = None,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
              dtype: str = "float32") -> np.ndarray:
    """Maps uint8 pixels to the model's values.

    ``value_range=(lo, hi)`` maps 0..255 linearly onto lo..hi; ``mean``/``std`` compute
    ``(pixel - mean) / std`` per channel on 0..255 pixels; neither keeps the pixel values. ``dtype``
    ``uint8`` keeps the bytes as they are (and refuses a normalisation).
    """
    if value_range is not None and (mean is not None or std is not None):
        raise ValueError("give either range or mean/std, not both")
    if dtype == "uint8":
        if value_range is not None or mean is not None or std is not None:
            raise ValueError("dtype uint8 keeps pixel values: range/mean/std need a float dtype")
        return np.ascontiguousarray(data, dtype=np.uint8)
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32, float16 or uint8, got {dtype!r}")
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        # The cast, then the scale in place: the same float32 values as a multiply that casts
        # (``np.multiply(data, k, dtype=float32)``), which goes through NumPy's buffered casting
        # and took ~30 % longer on a frame's tensor. Adding a zero low end is skipped (x + 0.0
        # is x): this runs on every crop of a landmark loop.
        out = data.astype(np.float32)
        out *= np.float32((hi - lo) / 255.0)
        if lo != 0.0:
            out += np.float32(lo)
        return out.astype(np.float16) if dtype == "float16" else out
    out = data.astype(np.float32)
    if mean is not None or std is not None:
        m = np.asarray(mean if mean is not None else 0.0, np.float32)
        s = np.asarray(std if std is not None else 1.0, np.float32)
        if np.any(s == 0):
            raise ValueError(f"std must not contain 0, got {std}")
        out -= m
        out /= s
    return out.astype(np.float16) if dtype == "float16" else out


def to_layout(data: np.ndarray, layout: str) -> np.ndarray:
    """HWC (or HW) pixels in ``layout`` (NHWC, NCHW, HWC, CHW)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if data.ndim == 2:
        data = data[:, :, None]
    if "C" in layout and layout.index("C") < layout.index("H"):
        data = data.transpose(2, 0, 1)
    if layout.startswith("N"):
        data = data[None]
    return np.ascontiguousarray(data)


def image_to_tensor(image: Image, size: tuple[int, int], fit: str = "letterbox", *,
                    value_range: Sequence[float] | None = None, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None, layout: str = "NHWC", dtype: str = "float32",
                    format: str = "RGB", border: float = 0, interpolation: str = "linear",
                    roi: Sequence[float] | None = None) -> tuple[Tensor, Transform]:
    """Converts an image into a model input tensor and the transform back to the frame.

    ``size`` is (width, height). ``format`` is the channel order the model expects; the image is
    converted when it differs. ``border`` fills letterbox padding (a pixel value, before
    normalisation, as MediaPipe does).
    """
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be (width, height) with positive values, got {size}")
    tensor_size = (int(size[0]), int(size[1]))
    transform = (_whole_frame_transform(image.size, tensor_size, fit) if roi is None
                 else fit_transform(image.size, tensor_size, fit, roi))
    if image.format == "I420" and format != "I420":
        pixels = warp_i420(image, transform, format, border, interpolation)
    else:
        if image.format != format:
            image = image.to(format)
        pixels = warp(image.data, transform, border, interpolation)
    data = to_layout(normalize(pixels, value_range, mean, std, dtype), layout)
    return Tensor(data, layout), transform


def crop(image: Image, box: Sequence[float], size: tuple[int, int] | None = None,
         fit: str = "stretch", border: float = 0, interpolation: str = "linear") -> tuple[Image, Transform]:
    """Cuts the (x0, y0, x1, y1) pixel ``box`` out of ``image``, optionally resampled to ``size``.

    Without ``size`` the crop keeps its pixels (clipped to the frame; a view-free copy). An I420
    image is cropped from its RGB conversion (the crop is RGB).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if image.format == "I420":  # a crop of planar YUV is cut from its RGB view
        image = image.to("RGB")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"crop box must have x1 > x0 and y1 > y0, got {tuple(box)}")
    if size is None:
        ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        ix1, iy1 = min(image.width, int(np.ceil(x1))), min(image.height, int(np.ceil(y1)))
        if ix1 <= ix0 or iy1 <= iy0:
            raise ValueError(f"crop box {tuple(box)} lies outside the {image.width}x{image.height} frame")
        data = image.data[iy0:iy1, ix0:ix1].copy()
        matrix = np.array([[1.0, 0, ix0], [0, 1.0, iy0]])
        return image.with_data(data), Transform(matrix, image.size, (ix1 - ix0, iy1 - iy0))
    transform = fit_transform(image.size, (int(size[0]), int(size[1])), fit, (x0, y0, x1, y1))
    return image.with_data(warp(image.data, transform, border, interpolation)), transform
