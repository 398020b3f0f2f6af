"""DAViD's training augmentations (DAViD supplement B.6) on the frame dict contract.

A frame is a dict of numpy arrays; every key may be absent:
`rgb` H×W×3 uint8, `depth` H×W float32 metres (NaN where no human), `normal` H×W×3 unit vectors in
the camera optical frame, `mask` H×W float32 in [0,1], `flow_fwd`/`flow_bwd` H×W×2 pixels (dx, dy),
`canonical` H×W×3 rest-pose body-surface coordinates, `K` 3×3 and `extrinsics` 4×4 world→camera.
Other keys pass through untouched.

Photometric operations touch `rgb` only. Geometric operations (crop/scale, horizontal flip) move
every map together and update `K`. Pixel centres sit at integer coordinates (OpenCV's convention
for K): column j is at u = j, so a flip maps u to W-1-u and sends cx to W-1-cx, and resizing a crop
of width w to width w' maps u' to x0 + (u' + 0.5)·w/w' - 0.5 (what cv2.resize does).

Ground-truth maps are resampled with nearest neighbour so that no output pixel blends a human's
depth or normal with the background's; the soft mask is resampled like the image. Flow is scaled
with the image, which is exact when the neighbouring frames receive the same transform —
`Augment.clip` does that for clips.

The photometric chain follows a camera: lens blur, sensor (ISO) noise, then the image processor
(brightness/contrast, hue/saturation, greyscale) and the codec (JPEG) last. A letterbox comes after
all of them: it is what `hcdp_model.preprocess` adds to a non-square camera frame (bands of the
ImageNet mean colour, 0 after normalisation), which no camera noise or codec touches.
"""
from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
import math
import os

import cv2
from hcdp_model.preprocess import IMAGENET_MEAN
import numpy as np
import torch.utils.data

# Keys whose pixels are geometry: resampled with nearest neighbour, filled when outside the image.
_NEAREST_FILL = {"depth": np.nan, "normal": 0.0, "flow_fwd": 0.0, "flow_bwd": 0.0,
                 "canonical": 0.0, "ground_depth": np.nan}
# The colour of hcdp_model.preprocess's letterbox bands (the ImageNet mean), as uint8 RGB.
LETTERBOX_RGB = np.round(np.asarray(IMAGENET_MEAN) * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Blur kernels (all sum to 1, so a blur keeps the mean brightness).
# ----------------------------------------------------------------------------------------------
def gaussian_kernel(sigma: float) -> np.ndarray:
    """Isotropic Gaussian point-spread function with standard deviation `sigma` pixels."""
    if sigma <= 0:
        raise ValueError(f"gaussian_kernel: expected sigma > 0, got {sigma}")
    radius = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    kernel = np.outer(g, g)
    return (kernel / kernel.sum()).astype(np.float32)


def disc_kernel(radius: float) -> np.ndarray:
    """Defocus point-spread function: a uniform disc of `radius` pixels.

    Edge pixels are weighted by the fraction of their area inside the disc (4×4 supersampling).
    """
    if radius < 0.5:
        raise ValueError(f"disc_kernel: expected radius >= 0.5, got {radius}")
    r = math.ceil(radius)
    sub = (np.arange(4, dtype=np.float32) + 0.5) / 4 - 0.5  # sub-pixel offsets
    c = np.arange(-r, r + 1, dtype=np.float32)
    xs = (c[:, None] + sub[None, :]).reshape(-1)  # [(2r+1)*4]
    inside = (xs[:, None] ** 2 + xs[None, :] ** 2) <= radius**2
    kernel = inside.reshape(2 * r + 1, 4, 2 * r + 1, 4).mean(axis=(1, 3)).astype(np.float32)
    return kernel / kernel.sum()


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Linear motion blur: a segment of `length` pixels through the centre at `angle_deg`.

    0 = horizontal, counter-clockwise in the image.
    """
    if length < 1:
        raise ValueError(f"motion_kernel: expected length >= 1, got {length}")
    r = math.ceil(length / 2)
    size = 2 * r + 1
    kernel = np.zeros((size, size), np.float32)
    ts = np.linspace(-length / 2, length / 2, num=8 * size)
    # Splat samples along the segment bilinearly (np.add.at keeps repeated indices).
    x = r + ts * math.cos(math.radians(angle_deg))
    y = r - ts * math.sin(math.radians(angle_deg))
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                      (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = np.clip(x0 + dx, 0, size - 1), np.clip(y0 + dy, 0, size - 1)
        np.add.at(kernel, (yi, xi), w.astype(np.float32))
    return kernel / kernel.sum()


# ----------------------------------------------------------------------------------------------
# Photometric operations: uint8 H×W×3 RGB in, uint8 H×W×3 RGB out.
# ----------------------------------------------------------------------------------------------
def _to_float(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected rgb uint8 H×W×3, got {rgb.dtype} {rgb.shape}")
    return rgb.astype(np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def blur(rgb: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve the image with a point-spread function (a lens with a poor MTF)."""
    out = cv2.filter2D(_to_float(rgb), -1, kernel, borderType=cv2.BORDER_REFLECT)
    return _to_uint8(out)


def brightness_contrast(rgb: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """Add a constant `brightness` offset (in [0,1] units), then scale the contrast (DAViD B.6).

    img = (img - 0.5) × (1 + contrast) + 0.5.
    """
    x = _to_float(rgb) + brightness
    return _to_uint8((x - 0.5) * (1.0 + contrast) + 0.5)


def hue_saturation(rgb: np.ndarray, hue_deg: float, saturation: float) -> np.ndarray:
    """Rotate the hue by `hue_deg` degrees and scale the HSV saturation by `saturation`."""
    hsv = cv2.cvtColor(_to_float(rgb), cv2.COLOR_RGB2HSV)  # H in [0,360), S,V in [0,1]
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_deg, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0.0, 1.0)
    return _to_uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def greyscale(rgb: np.ndarray) -> np.ndarray:
    """Replace the colour by its luma (ITU-R BT.601, as cv2) in all three channels."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[..., None], 3, axis=2)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG with `quality` in [1,100] (cv2, 4:2:0 chroma subsampling)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg: expected quality in [1,100], got {quality}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"jpeg: cv2 could not encode an image of shape {rgb.shape}")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def iso_noise(rgb: np.ndarray, photons: float, read_noise: float,
              rng: np.random.Generator) -> np.ndarray:
    """Camera noise (DAViD B.6, after Hewitt et al.).

    Poisson shot noise for a sensor that collects `photons` photo-electrons at full white, plus
    Gaussian read noise of standard deviation `read_noise` (in [0,1] units). The per-pixel variance
    is x/photons + read_noise².

    Shot noise is sampled exactly (Poisson) where fewer than 20 photo-electrons arrive and by its
    Gaussian limit above (indistinguishable there, and ~10× faster). It acts on the 8-bit values as
    if they were linear, an approximation that skips the camera's tone curve.
    """
    if photons <= 0 or read_noise < 0:
        raise ValueError(f"iso_noise: expected photons > 0 and read_noise >= 0, "
                         f"got {photons}, {read_noise}")
    x = _to_float(rgb)
    noisy = x + np.sqrt(x / photons) * rng.standard_normal(x.shape, dtype=np.float32)
    dark = x * photons < 20.0
    noisy[dark] = rng.poisson(x[dark] * photons).astype(np.float32) / photons
    return _to_uint8(noisy + read_noise * rng.standard_normal(x.shape, dtype=np.float32))


# ----------------------------------------------------------------------------------------------
# Geometric operations on the whole frame dict.
# ----------------------------------------------------------------------------------------------
def _frame_size(frame: dict) -> tuple[int, int]:
    sizes = {k: v.shape[:2] for k,
             v in frame.items() if k in _NEAREST_FILL or k in ("rgb", "mask")}
    if not sizes:
        raise ValueError(f"expected at least one image-like key, got keys {sorted(frame)}")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"expected all maps to share one H×W, got {sizes}")
    return next(iter(sizes.values()))


def hflip(frame: dict, canonical_mirror_axis: int | None = 0) -> dict:
    """Mirror the frame left-right.

    Maps are mirrored; normals and the camera-frame x axis are negated (a mirrored camera, x → -x);
    flow is mirrored and its dx negated; K gets cx' = W-1-cx and its skew negated; extrinsics get
    the reflection diag(-1,1,1,1) on the left. The canonical body coordinate
    `canonical_mirror_axis` (the body's left-right axis in a left-right symmetric rest pose) is
    negated so that a mirrored left hand reads as a right hand; None keeps canonical values.
    """
    _, w = _frame_size(frame)
    out = dict(frame)
    for key in ("rgb", "depth", "mask", "normal", "flow_fwd", "flow_bwd", "canonical",
                "ground_depth"):
        if key in frame:
            out[key] = np.ascontiguousarray(frame[key][:, ::-1])
    if "normal" in out:
        out["normal"][..., 0] *= -1.0
    for key in ("flow_fwd", "flow_bwd"):
        if key in out:
            out[key][..., 0] *= -1.0
    if "canonical" in out and canonical_mirror_axis is not None:
        out["canonical"][..., canonical_mirror_axis] *= -1.0
    if "K" in frame:
        k = np.array(frame["K"], dtype=np.float64)
        k[0, 2] = (w - 1) - k[0, 2]
        k[0, 1] = -k[0, 1]
        out["K"] = k.astype(np.asarray(frame["K"]).dtype)
    if "extrinsics" in frame:
        mirror = np.diag([-1.0, 1.0, 1.0, 1.0]).astype(frame["extrinsics"].dtype)
        out["extrinsics"] = mirror @ frame["extrinsics"]
    return out


@dataclass(frozen=True)
class CropBox:
    """A crop of `w`×`h` input pixels from column `x0`, row `y0`, resized to `out_w`×`out_h`.

    It may extend past the image: outside, the image repeats its border and the ground truth is
    empty.
    """

    x0: int
    y0: int
    w: int
    h: int
    out_w: int
    out_h: int

    def __post_init__(self) -> None:
        if min(self.w, self.h, self.out_w, self.out_h) < 1:
            raise ValueError(f"CropBox: expected positive sizes, got {self}")


def crop_intrinsics(K: np.ndarray, box: CropBox) -> np.ndarray:
    """K after cropping and resizing with pixel centres at integers.

    u' = (u - x0 + 0.5)·out_w/w - 0.5, so fx' = fx·out_w/w, cx' = (cx - x0 + 0.5)·out_w/w - 0.5.
    """
    sx, sy = box.out_w / box.w, box.out_h / box.h
    k = np.array(K, dtype=np.float64)
    k[0, :] *= sx
    k[1, :] *= sy
    k[0, 2] = (K[0, 2] - box.x0 + 0.5) * sx - 0.5
    k[1, 2] = (K[1, 2] - box.y0 + 0.5) * sy - 0.5
    return k.astype(np.asarray(K).dtype)


def _crop_resize_smooth(img: np.ndarray, box: CropBox, border: int, fill: float) -> np.ndarray:
    """Crop (padding outside the image) then cv2.resize: area averaging when shrinking."""
    h, w = img.shape[:2]
    top, left = max(0, -box.y0), max(0, -box.x0)
    bottom, right = max(0, box.y0 + box.h - h), max(0, box.x0 + box.w - w)
    padded = cv2.copyMakeBorder(img, top, bottom, left, right, border, value=fill)
    crop = padded[box.y0 + top: box.y0 + top + box.h, box.x0 + left: box.x0 + left + box.w]
    shrink = box.out_w < box.w or box.out_h < box.h
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(crop, (box.out_w, box.out_h), interpolation=interp)


def _source_index(n_out: int, start: int, n_crop: int) -> np.ndarray:
    """Nearest input index for each output index: round(start + (i + 0.5)·n_crop/n_out - 0.5)."""
    pos = start + (np.arange(n_out) + 0.5) * (n_crop / n_out) - 0.5
    return np.floor(pos + 0.5).astype(np.int64)


def crop_scale(frame: dict, box: CropBox) -> dict:
    """Crop every map to `box` and resize it to the box's output size, consistently.

    rgb (border replicated, like DAViD's padding) and mask (zero outside) are resampled smoothly;
    depth/normal/flow/canonical with nearest neighbour (empty outside: NaN depth, zeros elsewhere);
    flow vectors are scaled by the resize factors; K follows `crop_intrinsics`.
    """
    h, w = _frame_size(frame)
    out = dict(frame)
    if "rgb" in frame:
        out["rgb"] = _crop_resize_smooth(frame["rgb"], box, cv2.BORDER_REPLICATE, 0.0)
    if "mask" in frame:
        out["mask"] = _crop_resize_smooth(frame["mask"].astype(np.float32), box,
                                          cv2.BORDER_CONSTANT, 0.0)
    rows = _source_index(box.out_h, box.y0, box.h)
    cols = _source_index(box.out_w, box.x0, box.w)
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    rows_c, cols_c = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    for key, fill in _NEAREST_FILL.items():
        if key not in frame:
            continue
        resampled = frame[key].take(rows_c, axis=0).take(cols_c, axis=1).astype(np.float32)
        if not inside.all():
            resampled[~inside] = fill
        if key.startswith("flow"):
            resampled *= np.array([box.out_w / box.w, box.out_h / box.h], np.float32)
        out[key] = resampled
    if "K" in frame:
        out["K"] = crop_intrinsics(frame["K"], box)
    return out


@dataclass(frozen=True)
class LetterboxBox:
    """Where a camera frame's content sits in the model input once letterboxed.

    Rows `top`..`top+h`, columns `left`..`left+w` of an H×W frame that becomes the square model
    input, placed as `hcdp_model.preprocess.Letterbox.fit` places it (longer side full, the other
    centred). `content_aspect` is the content's width / height in that square input (1 = no bands).
    """

    top: int
    left: int
    h: int
    w: int

    @classmethod
    def fit(cls, frame_h: int, frame_w: int, content_aspect: float) -> "LetterboxBox":
        if content_aspect <= 0:
            raise ValueError(f"LetterboxBox: expected content_aspect > 0, got {content_aspect}")
        h = min(frame_h, max(1, round(frame_h / content_aspect)))
        w = min(frame_w, max(1, round(frame_w * content_aspect)))
        return cls((frame_h - h) // 2, (frame_w - w) // 2, h, w)


def letterbox(frame: dict, box: LetterboxBox) -> dict:
    """Replace everything outside `box` by letterbox bands, as the runtime's preprocessing does.

    The image gets the ImageNet mean colour (`LETTERBOX_RGB`, 0 after normalisation); the mask is 0
    (no person in a band); depth is NaN and normal/flow/canonical are 0 (no ground truth), so the
    losses supervise the bands only through the mask. The content is not resampled: a band cuts
    the scene as a crop would, at the scale the renderer drew it. K is unchanged.
    """
    h, w = _frame_size(frame)
    inside = np.zeros((h, w), dtype=bool)
    inside[box.top:box.top + box.h, box.left:box.left + box.w] = True
    if inside.all():
        return dict(frame)
    out = dict(frame)
    if "rgb" in frame:
        rgb = frame["rgb"].copy()
        rgb[~inside] = LETTERBOX_RGB
        out["rgb"] = rgb
    if "mask" in frame:
        out["mask"] = np.where(inside, frame["mask"], 0.0).astype(frame["mask"].dtype)
    for key, fill in _NEAREST_FILL.items():
        if key in frame:
            filled = frame[key].astype(np.float32, copy=True)
            filled[~inside] = fill
            out[key] = filled
    return out


# ----------------------------------------------------------------------------------------------
# Configuration, sampled parameters and the Augment callable.
# ----------------------------------------------------------------------------------------------
@dataclass
class AugmentConfig:
    """Probabilities and ranges of every augmentation.

    Each range is (low, high), sampled uniformly. Defaults are moderate values in the spirit of
    DAViD B.6 (which gives no numbers).
    """

    # Geometric
    p_flip: float = 0.5
    p_crop: float = 0.8
    zoom: tuple[float, float] = (0.8, 1.25)       # >1 zooms in (crop smaller than the image)
    shift: float = 0.1                             # max ROI centre shift, fraction of W and H
    canonical_mirror_axis: int | None = 0          # see hflip; None keeps canonical on flips
    # Lens blur; strength is a fraction of the image diagonal (DAViD: proportional to image size)
    p_blur: float = 0.3
    # Gaussian σ, disc radius, half motion length
    blur_strength: tuple[float, float] = (0.001, 0.006)
    # Image processor
    p_brightness_contrast: float = 0.5
    brightness: tuple[float, float] = (-0.1, 0.1)
    contrast: tuple[float, float] = (-0.25, 0.25)
    p_hue_saturation: float = 0.5
    hue_deg: tuple[float, float] = (-10.0, 10.0)
    saturation: tuple[float, float] = (0.7, 1.3)
    p_greyscale: float = 0.05
    p_jpeg: float = 0.3
    jpeg_quality: tuple[float, float] = (30.0, 95.0)
    # Sensor
    p_iso_noise: float = 0.3
    photons: tuple[float, float] = (200.0, 5000.0)   # photo-electrons at white; fewer = noisier
    read_noise: tuple[float, float] = (0.0, 0.015)
    # Clips: per-frame jitter of brightness/contrast/hue/saturation, as a fraction of each
    # parameter's range (0 = identical photometry on every frame).
    clip_jitter: float = 0.0
    # Clips: strength in [0,1] of the per-frame nuisances of `FrameNuisance` (sensor noise, codec,
    # exposure, blur, a corrupted patch), drawn independently for every frame (0 = off).
    frame_nuisance: float = 0.0
    # Letterbox: the bands the runtime pads a non-square camera frame with (`letterbox`). The
    # content's aspect (width / height) is log-uniform in `letterbox_aspect`; one draw per clip.
    p_letterbox: float = 0.0
    letterbox_aspect: tuple[float, float] = (0.5, 2.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{f.name}: expected a probability in [0,1], got "
                                 f"{value}")
            if isinstance(value, (tuple, list)):
                if len(value) != 2 or value[0] > value[1]:
                    raise ValueError(f"AugmentConfig.{f.name}: expected (low, high) with low <= "
                                     f"high, got {value}")
                setattr(self, f.name, (float(value[0]), float(value[1])))
        if (self.zoom[0] <= 0 or self.blur_strength[0] < 0 or self.photons[0] <= 0
                or self.letterbox_aspect[0] <= 0):
            raise ValueError("AugmentConfig: expected zoom > 0, blur_strength >= 0, photons > 0, "
                             f"letterbox_aspect > 0, got {self.zoom}, {self.blur_strength}, "
                             f"{self.photons}, {self.letterbox_aspect}")
        if not (1 <= self.jpeg_quality[0] and self.jpeg_quality[1] <= 100):
            raise ValueError("AugmentConfig.jpeg_quality: expected within [1,100], got "
                             f"{self.jpeg_quality}")
        if self.shift < 0 or self.clip_jitter < 0:
            raise ValueError(f"AugmentConfig: expected shift >= 0 and clip_jitter >= 0, "
                             f"got {self.shift}, {self.clip_jitter}")
        if not 0.0 <= self.frame_nuisance <= 1.0:
            raise ValueError(f"AugmentConfig.frame_nuisance: expected a strength in [0,1], "
                             f"got {self.frame_nuisance}")

    @classmethod
    def from_dict(cls, values: dict) -> "AugmentConfig":
        """Build from a (YAML-loaded) dict; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"AugmentConfig: unknown keys {unknown}; expected some of "
                             f"{sorted(known)}")
        return cls(**values)


@dataclass(frozen=True)
class AugmentParams:
    """One draw of every augmentation; None/neutral values mean 'not applied'."""

    flip: bool = False
    crop: CropBox | None = None
    blur_kernel: np.ndarray | None = None
    brightness: float = 0.0
    contrast: float = 0.0
    hue_deg: float = 0.0
    saturation: float = 1.0
    greyscale: bool = False
    jpeg_quality: int | None = None
    iso: tuple[float, float] | None = None  # (photons, read_noise)
    letterbox: LetterboxBox | None = None  # applied last, after every photometric operation


def apply(frame: dict, params: AugmentParams, rng: np.random.Generator,
          canonical_mirror_axis: int | None = 0) -> dict:
    """Apply one parameter draw to a frame; `rng` only feeds the ISO noise."""
    out = dict(frame)
    if params.crop is not None:
        out = crop_scale(out, params.crop)
    if params.flip:
        out = hflip(out, canonical_mirror_axis)
    if "rgb" not in out:
        return out if params.letterbox is None else letterbox(out, params.letterbox)
    rgb = out["rgb"]
    if params.blur_kernel is not None:
        rgb = blur(rgb, params.blur_kernel)
    if params.iso is not None:
        rgb = iso_noise(rgb, params.iso[0], params.iso[1], rng)
    if params.brightness != 0.0 or params.contrast != 0.0:
        rgb = brightness_contrast(rgb, params.brightness, params.contrast)
    if params.hue_deg != 0.0 or params.saturation != 1.0:
        rgb = hue_saturation(rgb, params.hue_deg, params.saturation)
    if params.greyscale:
        rgb = greyscale(rgb)
    if params.jpeg_quality is not None:
        rgb = jpeg(rgb, params.jpeg_quality)
    out["rgb"] = rgb
    return out if params.letterbox is None else letterbox(out, params.letterbox)


@dataclass(frozen=True)
class FrameNuisance:
    """What changes from one frame of a real camera to the next while the scene does not.

    Sensor noise, codec artefacts, auto-exposure steps, focus/motion blur and a briefly corrupted
    patch (a glint, a dropped macro-block), and now and then a badly degraded frame (a burst of
    blur and noise that leaves little detail: a missed exposure, a shaken camera). Each is drawn
    independently for every frame with probability `p_* × strength`, so a per-frame model flickers
    with them and only a model that looks at earlier frames can undo them (issue 17; the flicker
    the paper's temporal loss fights). The degraded frame destroys information no per-frame model
    can recover: there, only the past helps. Stage-2 clips use
    it through `AugmentConfig.frame_nuisance`; `hcdp eval --perturb` applies the same model to
    held-out inputs. Ground truth is left as it is: the target is the scene, not the glitch.
    """

    strength: float = 1.0
    p_noise: float = 0.5
    photons: tuple[float, float] = (150.0, 3000.0)  # log-uniform: photo-electrons at white
    read_noise: tuple[float, float] = (0.0, 0.02)
    p_jpeg: float = 0.4
    jpeg_quality: tuple[float, float] = (20.0, 85.0)
    p_exposure: float = 0.5
    brightness: tuple[float, float] = (-0.08, 0.08)
    contrast: tuple[float, float] = (-0.15, 0.15)
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.002, 0.006)  # Gaussian sigma, fraction of the diagonal
    p_patch: float = 0.15
    patch_side: tuple[float, float] = (0.1, 0.3)      # fraction of the shorter image side
    p_degraded: float = 0.1
    degraded_sigma: tuple[float, float] = (0.015, 0.03)  # Gaussian sigma, fraction of the diagonal
    degraded_photons: tuple[float, float] = (8.0, 30.0)  # log-uniform, very few photo-electrons

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"FrameNuisance.strength: expected [0,1], got {self.strength}")

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply one frame's nuisances: uint8 H×W×3 RGB in, uint8 H×W×3 RGB out.

        `rgb` is not changed.
        """
        s, h, w = self.strength, rgb.shape[0], rgb.shape[1]

        def hit(p: float) -> bool:
            return bool(rng.random() < p * s)

        def uniform(bounds: tuple[float, float]) -> float:
            return float(rng.uniform(bounds[0], bounds[1]))

        out = rgb
        if hit(self.p_degraded):
            sigma = uniform(self.degraded_sigma) * math.hypot(h, w)
            photons = math.exp(uniform((math.log(self.degraded_photons[0]),
                                        math.log(self.degraded_photons[1]))))
            out = iso_noise(blur(out, gaussian_kernel(sigma)), photons, 0.02, rng)
        if hit(self.p_blur):
            out = blur(out, gaussian_kernel(max(uniform(self.blur_sigma) * math.hypot(h, w), 0.3)))
        if hit(self.p_noise):
            photons = math.exp(uniform((math.log(self.photons[0]), math.log(self.photons[1]))))
            out = iso_noise(out, photons, uniform(self.read_noise), rng)
        if hit(self.p_exposure):
            out = brightness_contrast(out, uniform(self.brightness), uniform(self.contrast))
        if hit(self.p_patch):
            out = out.copy() if out is rgb else out
            side = max(1, round(uniform(self.patch_side) * min(h, w)))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            colour = rng.integers(0, 256, size=3)
            grain = rng.normal(0.0, 12.0, size=(side, side, 3))
            out[y:y + side, x:x + side] = np.clip(colour + grain, 0, 255).astype(np.uint8)
        if hit(self.p_jpeg):
            out = jpeg(out, round(uniform(self.jpeg_quality)))
        return out


class Augment:
    """Random DAViD augmentations, reproducible from a seed.

    `aug(frame)` draws fresh parameters per call; `aug.clip(frames)` draws once and applies the
    same geometric transform and photometric parameters to every frame of a clip (sensor noise is
    drawn anew per frame, as a real sensor's is), with optional per-frame jitter (`clip_jitter`)
    and per-frame nuisances (`frame_nuisance`, see `FrameNuisance`).

    Inside a DataLoader worker process the generator is re-derived once from its own state and the
    worker's torch seed, so workers do not repeat each other's draws; reproducibility across runs
    then follows the DataLoader's seeding (its `generator`), as for torch's own randomness.
    """

    def __init__(self, config: AugmentConfig | None = None,
                 rng: np.random.Generator | int | None = 0):
        self.config = config or AugmentConfig()
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self._pid = os.getpid()

    def _fork_safe(self) -> None:
        if os.getpid() == self._pid:
            return
        self._pid = os.getpid()
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            self.rng = np.random.default_rng([int(self.rng.integers(2**63)), worker.seed])

    def _uniform(self, bounds: tuple[float, float]) -> float:
        return float(self.rng.uniform(bounds[0], bounds[1]))

    def _hit(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def _sample_crop(self, h: int, w: int) -> CropBox:
        c = self.config
        zoom = math.exp(self._uniform((math.log(c.zoom[0]), math.log(c.zoom[1]))))
        cw, ch = max(1, round(w / zoom)), max(1, round(h / zoom))
        cx = (w - cw) / 2 + self._uniform((-c.shift, c.shift)) * w
        cy = (h - ch) / 2 + self._uniform((-c.shift, c.shift)) * h
        return CropBox(round(cx), round(cy), cw, ch, w, h)

    def _sample_kernel(self, h: int, w: int) -> np.ndarray:
        strength = self._uniform(self.config.blur_strength) * math.hypot(h, w)
        kind = int(self.rng.integers(3))
        if kind == 0:
            return gaussian_kernel(max(strength, 0.3))
        if kind == 1:
            return disc_kernel(max(strength, 0.5))
        return motion_kernel(max(2.0 * strength, 1.0), self._uniform((0.0, 180.0)))

    def sample(self, h: int, w: int) -> AugmentParams:
        """Draw one set of parameters for H×W frames."""
        self._fork_safe()
        c = self.config
        flip = self._hit(c.p_flip)
        crop = self._sample_crop(h, w) if self._hit(c.p_crop) else None
        kernel = self._sample_kernel(h, w) if self._hit(c.p_blur) else None
        bc = self._hit(c.p_brightness_contrast)
        brightness = self._uniform(c.brightness) if bc else 0.0
        contrast = self._uniform(c.contrast) if bc else 0.0
        hs = self._hit(c.p_hue_saturation)
        hue = self._uniform(c.hue_deg) if hs else 0.0
        saturation = self._uniform(c.saturation) if hs else 1.0
        grey = self._hit(c.p_greyscale)
        quality = round(self._uniform(c.jpeg_quality)) if self._hit(c.p_jpeg) else None
        iso = ((self._uniform(c.photons), self._uniform(c.read_noise))
               if self._hit(c.p_iso_noise) else None)
        box = None
        if c.p_letterbox > 0.0 and self._hit(c.p_letterbox):  # no draw when off: streams kept
            lo, hi = c.letterbox_aspect
            aspect = math.exp(self._uniform((math.log(lo), math.log(hi))))
            box = LetterboxBox.fit(h, w, aspect)
        return AugmentParams(flip, crop, kernel, brightness, contrast, hue, saturation, grey,
                             quality, iso, box)

    def _jitter(self, params: AugmentParams) -> AugmentParams:
        c, j = self.config, self.config.clip_jitter
        if j == 0.0:
            return params

        def nudge(value: float, bounds: tuple[float, float], neutral: float) -> float:
            if value == neutral:  # an operation that is off stays off
                return value
            return value + float(self.rng.normal(0.0, j * (bounds[1] - bounds[0])))

        return dataclasses.replace(
            params,
            brightness=nudge(params.brightness, c.brightness, 0.0),
            contrast=nudge(params.contrast, c.contrast, 0.0),
            hue_deg=nudge(params.hue_deg, c.hue_deg, 0.0),
            saturation=max(0.0, nudge(params.saturation, c.saturation, 1.0)),
        )

    def __call__(self, frame: dict) -> dict:
        h, w = _frame_size(frame)
        return apply(frame, self.sample(h, w), self.rng, self.config.canonical_mirror_axis)

    def clip(self, frames: Sequence[dict]) -> list[dict]:
        """Augment the frames of one clip with one shared parameter draw."""
        if not frames:
            return []
        h, w = _frame_size(frames[0])
        params = self.sample(h, w)
        box, params = params.letterbox, dataclasses.replace(params, letterbox=None)
        out = [apply(f, self._jitter(params), self.rng, self.config.canonical_mirror_axis)
               for f in frames]
        if self.config.frame_nuisance > 0.0:
            nuisance = FrameNuisance(strength=self.config.frame_nuisance)
            out = [dict(f, rgb=nuisance(f["rgb"], self.rng)) if "rgb" in f else f for f in out]
        return out if box is None else [letterbox(f, box) for f in out]
