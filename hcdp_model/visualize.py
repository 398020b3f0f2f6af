"""The one colour map for every hcdp picture: depth, normals, mask and contact sheets.

Every function takes and returns numpy arrays (uint8 RGB ``H×W×3`` images) and is vectorised, so
the node can call them per frame. Depth uses a 256-entry Turbo look-up table (Mikhailov 2019, the
published polynomial approximation), coloured so that near is warm (red) and far is cool (blue).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

# Turbo polynomial approximation: channel(x) = c0 + c1 x + ... + c5 x^5, x in [0, 1].
_TURBO_COEFFS = np.array(
    [
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ],
    dtype=np.float64,
)


def _turbo_lut() -> np.ndarray:
    """[256, 3] uint8 Turbo table; entry 0 is dark blue, entry 255 dark red."""
    x = np.linspace(0.0, 1.0, 256)
    powers = np.stack([x**k for k in range(6)], axis=0)  # [6, 256]
    rgb = (_TURBO_COEFFS @ powers).T  # [256, 3]
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


TURBO_LUT = _turbo_lut()

DEPTH_PERCENTILES = (2.0, 98.0)
_PERCENTILE_SAMPLES = 1 << 16
MASK_OVERLAY_RGB = (255, 64, 160)
MASK_OVERLAY_ALPHA = 0.6


def _check_hw(name: str, array: np.ndarray, ndim: int) -> None:
    if array.ndim != ndim or array.shape[0] == 0 or array.shape[1] == 0:
        expected = "H×W" if ndim == 2 else "H×W×3"
        raise ValueError(f"{name}: expected a non-empty {expected} array, got shape {array.shape}")


def colorize_depth(depth: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Colour relative (or metric) depth with Turbo; near = warm, far = cool.

    The range is the 2nd–98th percentile of the finite depth inside the mask (mask > 0.5; estimated
    on a regular grid of at most ~65536 pixels), so a few outliers do not wash the picture out.
    Pixels outside the mask or without a finite depth are black.
    """
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    _check_hw("depth", depth, 2)
    valid = np.isfinite(depth)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != depth.shape:
            raise ValueError(f"mask: expected shape {depth.shape} (the depth's), got {mask.shape}")
        valid &= mask > 0.5
    # percentiles on a regular pixel grid of at most ~65536 pixels estimate the full ones well
    stride = max(1, int(np.sqrt(depth.size / _PERCENTILE_SAMPLES)))
    values = depth[::stride, ::stride][valid[::stride, ::stride]]
    if values.size == 0:
        values = depth[valid]
    if values.size == 0:
        return np.zeros(depth.shape + (3,), dtype=np.uint8)
    lo, hi = (float(v) for v in np.percentile(values, DEPTH_PERCENTILES))
    gain = 255.0 / max(hi - lo, 1e-12)
    # index = 255 · (hi − d) / (hi − lo), saturated to [0, 255]: near (small d) -> 255 (red), far
    # -> 0
    index = cv2.convertScaleAbs(cv2.min(depth, hi), alpha=-gain, beta=hi * gain)
    colours = cv2.LUT(cv2.merge([index, index, index]), TURBO_LUT.reshape(256, 1, 3))
    return cv2.copyTo(colours, valid.view(np.uint8))  # black where not valid


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """Map unit normals to colours with ``(n * 0.5 + 0.5) * 255``, rounded.

    NaN normals are black.
    """
    normals = np.asarray(normals, dtype=np.float32)
    if normals.ndim != 3 or normals.shape[2] != 3:
        raise ValueError(f"normals: expected an H×W×3 array, got shape {normals.shape}")
    # |127.5 n + 127.5| rounded and saturated; n >= -1 so the absolute value changes nothing
    rgb = cv2.convertScaleAbs(np.ascontiguousarray(normals), alpha=127.5, beta=127.5)
    # NaN saturates to 0 in OpenCV 4 but to 255 in OpenCV 5: blacken it explicitly
    rgb[np.isnan(normals[:, :, 0])] = 0
    return rgb


def mask_to_rgb(mask: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """Show a soft mask (clipped to [0, 1]).

    Grey levels alone, or a magenta tint over ``image`` with opacity 0.6 × mask.
    """
    mask = np.asarray(mask, dtype=np.float32)
    _check_hw("mask", mask, 2)
    m = np.clip(mask, 0.0, 1.0)
    if image is None:
        grey = (m * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    image = np.asarray(image)
    if image.shape != mask.shape + (3,) or image.dtype != np.uint8:
        raise ValueError(
            f"image: expected uint8 {mask.shape + (3,)} to match the mask, "
            f"got {image.dtype} {image.shape}"
        )
    alpha = m * np.float32(MASK_OVERLAY_ALPHA)
    return cv2.blendLinear(_tint(mask.shape), np.ascontiguousarray(image), alpha, 1.0 - alpha)


@functools.lru_cache(maxsize=4)
def _tint(shape: tuple[int, int]) -> np.ndarray:
    """Return a read-only H×W×3 image of the overlay colour.

    Cached: filling it costs more than the blend.
    """
    tint = cv2.merge([np.full(shape, c, np.uint8) for c in MASK_OVERLAY_RGB])
    tint.flags.writeable = False
    return tint


def contact_sheet(rows: list[list[np.ndarray]], labels: list[str] | None = None) -> np.ndarray:
    """Tile images into a grid; every tile is resized to the first tile's size.

    ``labels`` (optional) are column headers, one per column of the widest row, drawn in a strip
    above the grid. Short rows are padded with black tiles.
    """
    if not rows or not rows[0]:
        raise ValueError("contact_sheet: expected at least one row with one image, got none")
    tiles = [[np.asarray(t) for t in row] for row in rows]
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            if tile.dtype != np.uint8 or tile.ndim != 3 or tile.shape[2] != 3:
                raise ValueError(
                    f"contact_sheet: tile [{r}][{c}] must be uint8 H×W×3, got {tile.dtype} "
                    f"{tile.shape}"
                )
    h, w = tiles[0][0].shape[:2]
    n_cols = max(len(row) for row in tiles)
    if labels is not None and len(labels) != n_cols:
        raise ValueError(f"contact_sheet: expected {n_cols} column labels, got {len(labels)}")
    header = 0 if labels is None else max(18, h // 12)
    sheet = np.zeros((header + h * len(tiles), w * n_cols, 3), dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            if tile.shape[:2] != (h, w):
                tile = cv2.resize(tile, (w, h), interpolation=cv2.INTER_AREA)
            sheet[header + r * h: header + (r + 1) * h, c * w: (c + 1) * w] = tile
    if labels is not None:
        scale = header / 30.0
        for c, label in enumerate(labels):
            cv2.putText(sheet, label, (c * w + 4, int(header * 0.75)), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, (255, 255, 255), 1, cv2.LINE_AA)
    return sheet
