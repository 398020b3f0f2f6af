"""Metrics of a prediction on real footage, where the only reference is a people mask.

Pure numpy functions on one frame: `ramp_share` (how much of a depth map a plane in image
coordinates explains), `person_instances` and `ring_contrast` (are people nearer than the pixels
around them?), `normal_spread_deg` (do normals vary inside a person?), `recedes_upward` (is the
scene farther at the top than at the bottom, as a ground seen from above is?) and
`cross_correlation` (do depth maps of different images differ?). Mask IoU and flicker on people are
`hcdp_training.metrics`' IoU, OPW and TC-Mean with the reference mask as the region, the same
functions `hcdp eval` uses.
Depth convention: larger = farther.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def ramp_share(depth: np.ndarray) -> float:
    """Share of the variance of `depth` [H,W] explained by the least-squares plane a + b x + c y.

    The plane is fitted over its finite pixels (the R^2 of that fit, in [0, 1]). A map that ignores
    the image and draws a ramp scores 1; NaN for fewer than 3 finite pixels or a constant map
    (nothing to explain).
    """
    depth = np.asarray(depth, np.float64)
    if depth.ndim != 2:
        raise ValueError(f"expected a depth map [H,W], got shape {depth.shape}")
    ys, xs = np.nonzero(np.isfinite(depth))
    if len(xs) < 3:
        return math.nan
    d = depth[ys, xs]
    residual_free = d - d.mean()
    total = float(residual_free @ residual_free)
    if total <= 1e-12 * max(1.0, float(d @ d)):
        return math.nan
    design = np.stack([np.ones_like(d), xs / depth.shape[1], ys / depth.shape[0]], axis=1)
    coef, *_ = np.linalg.lstsq(design, d, rcond=None)
    residual = d - design @ coef
    return float(np.clip(1.0 - (residual @ residual) / total, 0.0, 1.0))


def person_instances(reference: np.ndarray, min_area: int) -> list[np.ndarray]:
    """Return the people of a reference mask [H,W] (> 0.5 is a person).

    They are its 8-connected components of at least `min_area` pixels, each a bool mask [H,W],
    largest first.
    """
    if reference.ndim != 2:
        raise ValueError(f"expected a reference mask [H,W], got shape {reference.shape}")
    binary = (np.asarray(reference) > 0.5).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    keep.sort(key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return [labels == i for i in keep]


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def ring(instance: np.ndarray, people: np.ndarray, width: int | None = None,
         gap: int = 2) -> np.ndarray:
    """Return the pixels around one person.

    They are `instance` (bool [H,W]) dilated by `width` px, minus every person of `people`
    (bool [H,W]) dilated by `gap` px (reference edges are imprecise). The default width is half the
    instance's equivalent radius sqrt(area / pi), at least 3 px.
    """
    if instance.shape != people.shape:
        raise ValueError(f"instance {instance.shape} and people {people.shape} must have one "
                         "shape")
    if width is None:
        width = max(3, round(0.5 * math.sqrt(instance.sum() / math.pi)))
    grown = cv2.dilate(instance.astype(np.uint8), _disk(width)) > 0
    guard = cv2.dilate(people.astype(np.uint8), _disk(gap)) > 0 if gap > 0 else people
    return grown & ~guard


def ring_contrast(depth: np.ndarray, instance: np.ndarray, people: np.ndarray,
                  width: int | None = None, gap: int = 2) -> tuple[float, float]:
    """Return (median depth inside the person, median depth over its `ring`), finite pixels only.

    NaN for an empty side. The person is nearer than its surroundings when the first is smaller.
    """
    if depth.shape != instance.shape:
        raise ValueError(f"depth {depth.shape} and instance {instance.shape} must have one shape")
    finite = np.isfinite(depth)
    around = ring(instance, people, width, gap) & finite
    inside = instance & finite

    def median(sel: np.ndarray) -> float:
        return float(np.median(depth[sel])) if sel.any() else math.nan

    return median(inside), median(around)


def nearer_counts(depth: np.ndarray, reference: np.ndarray, min_area: int) -> tuple[int, int]:
    """(people nearer than their ring, people with both medians defined) for one frame."""
    people = np.asarray(reference) > 0.5
    nearer = total = 0
    for instance in person_instances(reference, min_area):
        inside, around = ring_contrast(depth, instance, people)
        if math.isfinite(inside) and math.isfinite(around):
            total += 1
            nearer += int(inside < around)
    return nearer, total


def normal_spread_deg(normals: np.ndarray, instance: np.ndarray) -> float:
    """Mean angle (degrees) of the normals [H,W,3] inside `instance` from their normalised mean.

    0 for a constant normal field, larger the more the surface turns inside the person. NaN for an
    empty instance or a mean that cancels out.
    """
    if normals.shape[:2] != instance.shape or normals.shape[-1] != 3:
        raise ValueError(f"expected normals [H,W,3] over the instance {instance.shape}, got "
                         f"{normals.shape}")
    n = np.asarray(normals, np.float64)[instance]
    if len(n) == 0:
        return math.nan
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    mean = n.mean(0)
    length = np.linalg.norm(mean)
    if length < 1e-9:
        return math.nan
    cos = np.clip(n @ (mean / length), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def recedes_upward(depth: np.ndarray, people: np.ndarray) -> float:
    """1.0 if the top third of `depth` [H,W] is farther than its bottom third, else 0.0.

    Each third is its median over finite pixels outside `people` (> 0.5). A camera that looks down
    at the ground, as a street or robot camera does, sees it recede towards the top: the ground
    truth scores 1, a map whose ramp runs the wrong way 0. NaN where a third has no such pixel or
    the two medians are equal (no order). Meaningless for views without a ground (portraits).
    """
    if depth.shape != people.shape:
        raise ValueError(f"depth {depth.shape} and people {people.shape} must have one shape")
    h = depth.shape[0]
    usable = np.isfinite(depth) & ~(np.asarray(people) > 0.5)
    thirds = [(depth[rows][usable[rows]]) for rows in (slice(0, h // 3), slice(h - h // 3, h))]
    if any(t.size == 0 for t in thirds):
        return math.nan
    top, bottom = (float(np.median(t)) for t in thirds)
    return math.nan if top == bottom else float(top > bottom)


def cross_correlation(maps: list[np.ndarray], size: int = 64) -> float:
    """Mean Pearson correlation between every pair of depth maps, each resized to size x size.

    The resize makes images of different shapes compare position by position. Near 1 when the maps
    are the same picture whatever the input. NaN for fewer than two maps or a constant one.
    """
    if len(maps) < 2:
        return math.nan
    flat = []
    for m in maps:
        small = cv2.resize(np.nan_to_num(np.asarray(m, np.float32)), (size, size),
                           interpolation=cv2.INTER_AREA).ravel().astype(np.float64)
        small -= small.mean()
        norm = np.linalg.norm(small)
        if norm < 1e-12:
            return math.nan
        flat.append(small / norm)
    stack = np.stack(flat)
    corr = stack @ stack.T
    upper = corr[np.triu_indices(len(maps), k=1)]
    return float(upper.mean())
