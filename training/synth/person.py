"""One clothed person: phenotype, skin tone, outfit -> skinned parts.

The outfit is texture regions, prints and garments.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from hcdp_training.synth.appearance import (Decal, HAIR_SRGB, material, random_clothing,
                                            random_colour, random_pattern, skin_albedo, SLOTS,
                                            srgb_to_linear)
from hcdp_training.synth.body import BodyModel, PHENOTYPES, RestBody
from hcdp_training.synth.garments import (dominant_bones, GARMENTS, is_arm, Landmarks, Part,
                                          scalp_margin, scalp_mask, shell, skirt, taper,
                                          vertex_normals)
import numpy as np
import torch


@dataclass
class PersonSpec:
    """Every logged control of one person (the dataset card histograms these)."""

    phenotype: dict[str, float]
    skin_tone: float
    hair_colour: int
    garments: list[str]
    sleeve_length: float      # metres from the shoulder; 0 sleeveless
    leg_cover: float          # 0 shorts at the hips .. 1 trousers to the ankle
    top_pattern: str
    bottom_pattern: str
    outer_pattern: str        # hats and skirts
    prints: list[str] = field(default_factory=list)   # "logo", "tattoo"
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def sample_person(rng: np.random.Generator, adults_only: bool = False) -> PersonSpec:
    """Sample a person: phenotypes over all ages, genders and shapes.

    Garments and prints come with fixed probabilities.
    """
    age = rng.uniform(0.67, 1.0) if adults_only or rng.random() < 0.75 else rng.uniform(0.05, 0.67)
    phenotype = {k: float(rng.uniform(0, 1)) for k in PHENOTYPES}
    phenotype["age"] = float(age)
    garments = [g for g, p in zip(GARMENTS, (0.55, 0.12, 0.08, 0.2, 0.2)) if rng.random() < p]
    if "hat" in garments and "hood" in garments:
        garments.remove("hood")
    prints = [p for p, prob in (("logo", 0.35), ("tattoo", 0.2)) if rng.random() < prob]
    return PersonSpec(phenotype=phenotype, skin_tone=float(rng.beta(1.2, 1.2)),
                      hair_colour=int(rng.integers(len(HAIR_SRGB))), garments=garments,
                      sleeve_length=float(rng.choice([0.0, 0.12, 0.3, 0.6])),
                      leg_cover=float(rng.uniform(0, 1)),
                      top_pattern=random_pattern(rng), bottom_pattern=random_pattern(rng),
                      outer_pattern=random_pattern(rng), prints=prints,
                      seed=int(rng.integers(2**31)))


@dataclass
class Person:
    spec: PersonSpec
    rest: RestBody
    parts: list[Part]
    materials: np.ndarray  # [len(SLOTS),4,4]


def _body_slots(rest: np.ndarray, dominant: np.ndarray, lm: Landmarks,
                spec: PersonSpec) -> np.ndarray:
    slot = np.zeros(len(rest), np.int32)
    arm = is_arm(dominant)
    torso = (~arm) & (rest[:, 2] >= lm.waist[2] - 0.06) & (rest[:, 2] < lm.neck[2] - 0.02)
    arm_dist = np.minimum(np.linalg.norm(rest - lm.shoulder_l, axis=1),
                          np.linalg.norm(rest - lm.shoulder_r, axis=1))
    slot[torso | (arm & (arm_dist < spec.sleeve_length))] = SLOTS.index("top")
    hem = lm.hip_l[2] - 0.08 + spec.leg_cover * (lm.ankle_l[2] + 0.04 - lm.hip_l[2] + 0.08)
    slot[(~arm) & (rest[:, 2] < lm.waist[2] - 0.06) & (rest[:, 2] > hem)] = SLOTS.index("bottom")
    slot[np.array([d.startswith(("foot", "toe")) for d in dominant])] = SLOTS.index("shoes")
    slot[np.array([d.startswith("eye") for d in dominant])] = SLOTS.index("eyes")
    if "hair" not in spec.garments:  # short hair painted on the scalp
        slot[scalp_mask(rest, dominant, lm, hairline=0.12, nape=0.0)] = SLOTS.index("hair")
    return slot


def build_person(body: BodyModel, spec: PersonSpec) -> Person:
    """Rest body and garment parts (slots index `SLOTS`) and this person's material table."""
    rng = np.random.default_rng(spec.seed)
    rest = body.rest(spec.phenotype)
    faces_t = torch.from_numpy(body.faces.astype(np.int64))
    normals = vertex_normals(rest.vertices, faces_t)
    lm = Landmarks.from_bones(rest.bone_poses, body.bone_labels)
    pts = rest.vertices.numpy()
    dominant = dominant_bones(body.dense_weights, body.bone_labels)
    slots = _body_slots(pts, dominant, lm, spec)
    parts = [Part("body", rest.vertices, body.dense_weights, body.faces, body.canonical, slots)]
    args = (rest.vertices, normals, body.dense_weights, body.faces, body.canonical)
    hair_volume = rng.uniform(0.012, 0.05)
    for name in spec.garments:
        if name in ("hair", "hat", "hood"):
            hairline, nape, thickness, slot = {
                "hair": (0.1, -0.1 if rng.random() < 0.4 else 0.0, hair_volume, "hair"),
                "hat": (0.1, 0.08, hair_volume + 0.02, "outer"),
                "hood": (0.11, -0.16, rng.uniform(0.04, 0.07), "top")}[name]
            margin = scalp_margin(pts, dominant, lm, hairline, nape)
            back = np.clip((pts[:, 1] - lm.head[1]) * 4, 0, 1) if name == "hair" else 1.0
            part = shell(name, *args, margin > 0, thickness * (0.5 + back) * taper(margin),
                         SLOTS.index(slot))
        elif name == "loose_sleeves":
            arm_dist = np.minimum(np.linalg.norm(pts - lm.shoulder_l, axis=1),
                                  np.linalg.norm(pts - lm.shoulder_r, axis=1))
            length = max(spec.sleeve_length, 0.25)
            select = is_arm(dominant) & (arm_dist < length) & (arm_dist > 0.04)
            flare = (0.01 + rng.uniform(0.03, 0.07) * arm_dist / length) * taper(arm_dist - 0.04)
            part = shell("loose_sleeves", *args, select, flare, SLOTS.index("top"))
        else:
            part = skirt(rest.vertices, body.dense_weights, body.bone_labels, body.canonical, lm,
                         length=rng.uniform(0.3, 0.75), flare=rng.uniform(0.1, 0.6),
                         slot=SLOTS.index("outer"))
        if part is not None:
            parts.append(part)
    logo = Decal(1, (rng.uniform(-0.05, 0.05), rng.uniform(0.25, 0.35)), rng.uniform(0.05, 0.1),
                 float(rng.choice([-1.0, 1.0]))) if "logo" in spec.prints else None
    tattoo = (Decal(2, (rng.uniform(0.2, 0.3) * rng.choice([-1, 1]), rng.uniform(0.28, 0.36)),
                    rng.uniform(0.04, 0.07), 0.0) if "tattoo" in spec.prints else None)
    skin = skin_albedo(spec.skin_tone) * rng.uniform(0.9, 1.1, 3)
    hair = srgb_to_linear(HAIR_SRGB[spec.hair_colour])
    materials = np.stack([
        material(skin, "solid", np.zeros(3), decal=tattoo),
        random_clothing(rng, spec.top_pattern, logo),
        random_clothing(rng, spec.bottom_pattern),
        material(random_colour(rng) * 0.6),
        material(hair, "fabric", hair * 0.5, rng.uniform(15, 40), fabric_layer=5),
        random_clothing(rng, spec.outer_pattern),
        material(np.array([0.02, 0.015, 0.01])),
    ])
    return Person(spec, rest, parts, materials)
