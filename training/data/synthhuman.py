"""Reader for DAViD's SynthHuman release (Saleh et al., ICCV 2025; https://aka.ms/DAViD).

Layout, as documented in the release's README and read by its `visualize_data.py`: one flat folder
per downloaded chunk (60 zips of 5,000 samples), each sample `NNNNNNN` (7 digits, zero-padded)
made of
- `rgb_NNNNNNN.png`    the image (8-bit, 384×512 W×H),
- `alpha_NNNNNNN.png`  the soft foreground alpha (8-bit grey),
- `depth_NNNNNNN.exr`  absolute planar z-depth in centimetres; the background holds 65504
                       (the largest float16, which DAViD's own visualiser treats as invalid),
- `normal_NNNNNNN.exr` the surface normal, three channels "XYZ",
- `cam_NNNNNNN.txt`    the 3×3 intrinsic matrix in pixels (`np.loadtxt`).
Samples 0–98039 are face crops, 98040–198015 full body, 198016–298007 upper body (README).

Conversions to our frame contract: depth cm → m and NaN wherever alpha is 0 or the depth is the
background sentinel; alpha → `mask` in [0,1]; normals → our camera optical frame (x right, y down,
z forward, facing the camera so z < 0), renormalised.

**Normal convention (an assumption).** The release does not state its normal frame. We assume the
EXR channels R, G, B hold X, Y, Z of the renderer's camera frame with x right, y up and z towards
the viewer (the OpenGL/Blender camera; the SynthHuman pipeline of Hewitt et al. renders with
Blender), so optical = (X, -Y, -Z): `DAVID_NORMALS`. Because this is not documented,
`fit_normal_convention` measures it on real data: it compares the stored normals with normals
computed from the depth map and K under all 48 signed axis permutations. Run it on a downloaded
sample once; pass its result as `normal_convention` if it disagrees with the default.

EXR files are read with the `OpenEXR` package (opencv-python-headless ships without OpenEXR).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from hcdp_training.augment import CropBox, crop_scale

DEPTH_BACKGROUND = 65504.0  # float16 max: SynthHuman's "no surface" depth value
VIEW_STARTS = {"face": 0, "full_body": 98040, "upper_body": 198016}
NUM_SAMPLES = 298008


@dataclass(frozen=True)
class NormalConvention:
    """optical[i] = signs[i] × stored[axes[i]], with stored channels in the EXR's R, G, B order."""

    axes: tuple[int, int, int]
    signs: tuple[float, float, float]

    def __post_init__(self) -> None:
        if sorted(self.axes) != [0, 1, 2] or any(abs(s) != 1.0 for s in self.signs):
            raise ValueError(f"NormalConvention: expected a permutation of (0,1,2) and signs ±1, "
                             f"got {self.axes}, {self.signs}")

    def to_optical(self, stored: np.ndarray) -> np.ndarray:
        """[H,W,3] stored normals → unit normals in the camera optical frame (zero stays zero)."""
        n = stored[..., list(self.axes)] * np.asarray(self.signs, np.float32)
        length = np.linalg.norm(n, axis=-1, keepdims=True)
        return (n / np.maximum(length, 1e-6)).astype(np.float32)


DAVID_NORMALS = NormalConvention(axes=(0, 1, 2), signs=(1.0, -1.0, -1.0))


def read_exr(path: str | Path) -> np.ndarray:
    """Read an EXR as float32: [H,W] for one channel (or Y), [H,W,3] in R, G, B order for
    colour."""
    try:
        import OpenEXR
    except ImportError as err:
        raise ImportError("reading SynthHuman EXR files needs the OpenEXR package: "
                          "pip install OpenEXR") from err
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected an EXR file at {path}")
    with OpenEXR.File(str(path)) as exr:
        channels = {name: np.asarray(ch.pixels) for name, ch in exr.channels().items()}
    for name in ("RGB", "RGBA"):
        if name in channels:
            return channels[name][..., :3].astype(np.float32)
    if "Y" in channels:
        return channels["Y"].astype(np.float32)
    if len(channels) == 1:
        return next(iter(channels.values())).astype(np.float32)
    raise ValueError(f"{path}: expected channels RGB, RGBA, Y or a single channel, "
                     f"got {sorted(channels)}")


def sample_id(sample: int | str) -> str:
    """SynthHuman's 7-digit sample id for an index (strings pass through)."""
    if isinstance(sample, str):
        return sample
    if sample < 0:
        raise ValueError(f"expected a non-negative sample index, got {sample}")
    return f"{sample:07d}"


def synthhuman_view(sample: int | str) -> str:
    """Camera scenario of a sample index in the full release: face, full_body or upper_body."""
    index = int(sample_id(sample))
    if not 0 <= index < NUM_SAMPLES:
        raise ValueError(f"expected a SynthHuman index in [0, {NUM_SAMPLES}), got {index}")
    return [view for view, start in VIEW_STARTS.items() if index >= start][-1]


def _read_raw(folder: Path, sid: str) -> dict:
    paths = {kind: folder / f"{kind}_{sid}.{ext}" for kind, ext in
             (("rgb", "png"), ("alpha", "png"), ("depth", "exr"), ("normal", "exr"),
              ("cam", "txt"))}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"SynthHuman sample {sid} in {folder}: missing {missing}")
    bgr = cv2.imread(str(paths["rgb"]), cv2.IMREAD_COLOR)
    alpha = cv2.imread(str(paths["alpha"]), cv2.IMREAD_UNCHANGED)
    if bgr is None or alpha is None:
        raise ValueError(f"SynthHuman sample {sid} in {folder}: cv2 could not decode the PNGs")
    if alpha.ndim == 3:
        alpha = alpha[..., 0]
    depth = read_exr(paths["depth"])
    if depth.ndim == 3:
        depth = depth[..., 0]
    K = np.loadtxt(paths["cam"], dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{paths['cam']}: expected a 3×3 intrinsic matrix, got shape {K.shape}")
    raw = {
        "rgb": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
        "alpha": alpha.astype(np.float32) / float(np.iinfo(alpha.dtype).max),
        "depth_cm": depth,
        "normal": read_exr(paths["normal"]),
        "K": K.astype(np.float32),
    }
    shapes = {k: raw[k].shape[:2] for k in ("rgb", "alpha", "depth_cm", "normal")}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"SynthHuman sample {sid} in {folder}: image sizes differ: {shapes}")
    return raw


def read_synthhuman_frame(root: str | Path, sample: int | str,
                          normal_convention: NormalConvention = DAVID_NORMALS) -> dict:
    """Read one SynthHuman sample from the folder `root` that holds its files.

    Returns the frame contract: `rgb` [H,W,3] uint8, `depth` [H,W] float32 metres (NaN where no
    human), `normal` [H,W,3] float32 unit in the camera optical frame (zero where no human), `mask`
    [H,W] float32 in [0,1] and `K` [3,3] float32. SynthHuman has no flow or canonical coordinates,
    so those keys are absent.
    """
    raw = _read_raw(Path(root), sample_id(sample))
    human = raw["alpha"] > 0
    depth = raw["depth_cm"]
    valid = human & np.isfinite(depth) & (depth > 0) & (depth < DEPTH_BACKGROUND)
    normal = normal_convention.to_optical(raw["normal"])
    normal[~valid] = 0.0
    return {
        "rgb": raw["rgb"],
        "depth": np.where(valid, depth / 100.0, np.nan).astype(np.float32),
        "normal": normal,
        "mask": raw["alpha"],
        "K": raw["K"],
    }


def normals_from_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Unit normals [H,W,3] in the optical frame, facing the camera, from planar depth [H,W] and K:
    the cross product of the back-projected points' central differences along v and u (NaN where a
    neighbour has no depth)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T
    points = rays * depth[..., None]
    du = np.full_like(points, np.nan)
    dv = np.full_like(points, np.nan)
    du[:, 1:-1] = points[:, 2:] - points[:, :-2]
    dv[1:-1] = points[2:] - points[:-2]
    n = np.cross(dv, du)  # (down × right) points towards the camera: z < 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)


def _median_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.median(np.sum(a * b, axis=-1)), -1.0, 1.0))))


def fit_normal_convention(root: str | Path, sample: int | str
                          ) -> tuple[NormalConvention, float, float]:
    """Find the signed axis permutation that maps a sample's stored normals onto the normals of its
    depth map. Returns (best convention, its median angle in degrees, DAVID_NORMALS' median angle).
    A smooth human gives a best angle of a few degrees; a default far above it means the default is
    wrong for this data."""
    raw = _read_raw(Path(root), sample_id(sample))
    depth = raw["depth_cm"].astype(np.float64)
    depth[(raw["alpha"] < 1.0) | (depth >= DEPTH_BACKGROUND)] = np.nan
    reference = normals_from_depth(depth, raw["K"].astype(np.float64))
    stored_length = np.linalg.norm(raw["normal"], axis=-1)
    ok = np.all(np.isfinite(reference),
                axis=-1) & np.isfinite(stored_length) & (stored_length > 0.5)
    if ok.sum() < 16:
        raise ValueError(f"SynthHuman sample {sample}: too few pixels with depth and normals "
                         f"({int(ok.sum())}) to fit a normal convention")
    ref, stored = reference[ok], raw["normal"][ok]
    fits = []
    for axes in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            convention = NormalConvention(axes, signs)
            fits.append((_median_angle_deg(convention.to_optical(stored), ref), convention))
    best_angle, best = min(fits, key=lambda fit: fit[0])
    return best, best_angle, _median_angle_deg(DAVID_NORMALS.to_optical(stored), ref)


def _to_tensors(frame: dict) -> dict[str, torch.Tensor]:
    def chw(x: np.ndarray) -> torch.Tensor:
        x = np.nan_to_num(x, nan=0.0).astype(np.float32)
        x = x if x.ndim == 3 else x[..., None]
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    return {
        "image": chw(frame["rgb"].astype(np.float32) / 255.0),
        "depth": chw(frame["depth"]),
        "normal": chw(frame["normal"]),
        "mask": chw(frame["mask"]),
        "K": torch.from_numpy(np.asarray(frame["K"], np.float32)),
    }


class SynthHumanFrames(torch.utils.data.Dataset):
    """Every SynthHuman sample under `root` (searched recursively, so unzipped chunks may sit in
    sub-folders), as tensors: `image` [3,H,W] in [0,1], `depth` [1,H,W] metres (NaN → 0; use
    `mask`), `normal` [3,H,W] (0 where no human), `mask` [1,H,W], `K` [3,3].

    `size` centre-crops the largest square and resizes it to size×size (K updated); `augment` is a
    callable on the numpy frame dict (e.g. `hcdp_training.augment.Augment`), applied before that.
    """

    def __init__(self, root: str | Path, size: int | None = None,
                 augment: Callable[[dict], dict] | None = None,
                 normal_convention: NormalConvention = DAVID_NORMALS):
        self.root = Path(root)
        self.samples = sorted((p.parent, p.stem[len("rgb_"):])
                              for p in self.root.rglob("rgb_*.png"))
        if not self.samples:
            raise FileNotFoundError("expected SynthHuman files rgb_NNNNNNN.png under "
                                    f"{self.root}, found none")
        self.size = size
        self.augment = augment
        self.normal_convention = normal_convention

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        folder, sid = self.samples[index]
        frame = read_synthhuman_frame(folder, sid, self.normal_convention)
        if self.augment is not None:
            frame = self.augment(frame)
        if self.size is not None:
            h, w = frame["rgb"].shape[:2]
            side = min(h, w)
            frame = crop_scale(frame, CropBox((w - side) // 2, (h - side) // 2, side, side,
                                              self.size, self.size))
        return _to_tensors(frame)
