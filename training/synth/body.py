"""The anny parametric body: one cached model, phenotypes in, skinned float32 meshes out.

anny (Apache-2.0 code, CC0 MakeHuman/MPFB2 data) is built once into `ANNY_CACHE_DIR` (~60-80 s, the
first time on a machine); afterwards only the compact model file is needed and construction takes
about a second. Rest pose: metres, Z up, the body faces -Y, the character's left side at +X.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path

import numpy as np
import torch

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "hcdp" / "anny"
PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
# Build-time intermediates of anny's cache; the compact model file is all that is read afterwards.
_INTERMEDIATE_PREFIXES = ("load_data_", "build_model_data_")
# Fixed box (template metres) that maps the neutral template's rest pose to canonical coordinates
# in [-1, 1]^3; it is centred on x = 0, so mirroring the body left-right negates canonical x.
CANONICAL_LO = np.array([-0.56, -0.36, -0.90], np.float32)
CANONICAL_HI = np.array([0.56, 0.16, 0.80], np.float32)


def cache_dir() -> Path:
    """Return the anny cache used by hcdp: `$ANNY_CACHE_DIR`, else `~/.cache/hcdp/anny`."""
    return Path(os.environ.get("ANNY_CACHE_DIR", str(DEFAULT_CACHE_DIR)))


def prune_cache(directory: Path) -> int:
    """Delete anny's build intermediates (~750 MB) once the compact model exists.

    Returns the bytes freed.
    """
    freed = 0
    for path in directory.glob("v*/*.safetensors"):
        if path.name.startswith(_INTERMEDIATE_PREFIXES):
            freed += path.stat().st_size
            path.unlink()
    return freed


@dataclass(frozen=True)
class RestBody:
    """One person's rest-pose body: vertices [V,3], rest bone poses [J,4,4] (float32)."""

    vertices: torch.Tensor
    bone_poses: torch.Tensor
    phenotype: dict[str, float]


class BodyModel:
    """anny with linear blend skinning, float32, CPU. Build with `BodyModel.load()`."""

    def __init__(self, model) -> None:
        self.model = model
        self.bone_labels: list[str] = list(model.bone_labels)
        self.faces = model.faces.to(torch.int32).numpy()  # [F,3]
        self.dense_weights = model.dense_vertex_bone_weights.to(torch.float32)  # [V,J]
        template = self.rest(dict.fromkeys(PHENOTYPES, 0.5)).vertices.numpy()
        scaled = 2 * (template - CANONICAL_LO) / (CANONICAL_HI - CANONICAL_LO)
        self.canonical = (scaled - 1).astype(np.float32)
        self.uv = model.texture_coordinates.to(torch.float32).numpy()  # [UV,2] per face corner
        self.face_uv = model.face_texture_coordinate_indices.to(torch.int64).numpy()  # [F,3]

    @classmethod
    def load(cls, directory: Path | None = None) -> "BodyModel":
        """Construct anny (building its cache on first use) and prune the build intermediates."""
        directory = Path(directory) if directory is not None else cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        import anny
        import anny.paths

        anny.paths.set_anny_cache_path(directory)
        model = anny.Anny(skinning_method="lbs").to(torch.float32)
        prune_cache(directory)
        return cls(model)

    @property
    def num_vertices(self) -> int:
        return int(self.dense_weights.shape[0])

    def bone(self, label: str) -> int:
        if label not in self.bone_labels:
            raise KeyError(f"expected an anny bone label, got {label!r}")
        return self.bone_labels.index(label)

    @torch.no_grad()
    def rest(self, phenotype: dict[str, float]) -> RestBody:
        """Rest-pose mesh for one phenotype (values in [0, 1]; adults have age >= 0.67)."""
        unknown = set(phenotype) - set(PHENOTYPES)
        if unknown:
            raise ValueError(f"expected phenotypes among {PHENOTYPES}, got {sorted(unknown)}")
        values = torch.tensor([[phenotype.get(k, 0.5) for k in PHENOTYPES]], dtype=torch.float32)
        coeffs = self.model._get_phenotype_blendshape_coefficients(
            values, torch.zeros(1, 0), torch.zeros(1, 0))
        out = self.model.get_rest_model(coeffs)
        return RestBody(out["rest_vertices"][0], out["rest_bone_poses"][0], dict(phenotype))

    @torch.no_grad()
    def bone_transforms(self, rest: RestBody, deltas: torch.Tensor) -> torch.Tensor:
        """Per-frame skinning transforms [T,J,4,4] from per-bone local-ref rotations [T,J,4,4]."""
        transforms, _ = self.model.get_bone_transforms(
            deltas, rest.bone_poses[None].expand(deltas.shape[0], -1, -1, -1))
        return transforms

    @staticmethod
    @torch.no_grad()
    def skin(rest_vertices: torch.Tensor, weights: torch.Tensor,
             transforms: torch.Tensor) -> torch.Tensor:
        """Linear blend skinning: [V,3] rest points, [V,J] weights, [T,J,4,4] -> [T,V,3]."""
        frames, joints = transforms.shape[:2]
        blended = (weights @ transforms[:, :, :3, :].reshape(frames, joints,
                                                             12)).reshape(frames, -1, 3, 4)
        return torch.einsum("tvab,vb->tva", blended[..., :3], rest_vertices) + blended[..., 3]
