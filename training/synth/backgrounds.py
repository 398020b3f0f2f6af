"""Backgrounds: scikit-image sample photographs without people, and procedural textures."""
from __future__ import annotations

import functools

import cv2
import numpy as np

# scikit-image sample images that ship with the package and show no people.
PHOTOS = ("brick", "grass", "gravel", "coffee", "rocket", "chelsea", "moon", "page", "coins",
          "hubble_deep_field", "immunohistochemistry", "colorwheel", "clock", "stereo_motorcycle")
PROCEDURAL = ("gradient", "stripes", "checker", "blobs", "noise")
KINDS = PHOTOS + PROCEDURAL
SIZE = 512


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):
        img = img[0]
    if img.ndim == 2:
        img = np.dstack([img] * 3)
    return cv2.resize(np.ascontiguousarray(img[..., :3]), (SIZE, SIZE),
                      interpolation=cv2.INTER_AREA)


def _procedural(name: str, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if name == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        w = np.clip((np.cos(a) * x + np.sin(a) * y + 1) / 2, 0, 1)[..., None]
    elif name == "stripes":
        a, f = rng.uniform(0, np.pi), rng.uniform(4, 30)
        w = (np.sin(2 * np.pi * f * (np.cos(a) * x + np.sin(a) * y)) > 0)[...,
                                                                          None].astype(np.float64)
    elif name == "checker":
        f = int(rng.integers(3, 20))
        w = ((np.floor(x * f) + np.floor(y * f)) % 2)[..., None]
    elif name == "blobs":
        w = cv2.GaussianBlur(rng.random((SIZE, SIZE)), (0, 0), rng.uniform(8, 30))
        w = ((w - w.min()) / (np.ptp(w) + 1e-9))[..., None]
    else:
        w = cv2.resize(rng.random((16, 16)), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
        w = np.clip(w + 0.3 * rng.random((SIZE, SIZE)), 0, 1)[..., None]
    return (c1 * (1 - w) + c2 * w).astype(np.uint8)


def make_background(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Make a SIZE x SIZE x 3 uint8 background image of `kind` (see `KINDS`)."""
    if kind in PHOTOS:
        img = _photo(kind).astype(np.float64)  # a copy: the cached photo is never modified
        img = img * rng.uniform(0.6, 1.2) + rng.uniform(-20, 20, 3)  # exposure and tint
        return np.clip(img, 0, 255).astype(np.uint8)
    if kind in PROCEDURAL:
        return _procedural(kind, rng)
    raise ValueError(f"expected a background kind among {KINDS}, got {kind!r}")
