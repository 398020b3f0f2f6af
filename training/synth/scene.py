"""A sequence's scene and its per-frame geometry in camera coordinates for the renderer.

The scene is people with motions placed in the world, a camera trajectory, lights and a
background, sampled from one seed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from hcdp_training.synth.appearance import SLOTS
from hcdp_training.synth.backgrounds import KINDS, make_background
from hcdp_training.synth.body import BodyModel
from hcdp_training.synth.camera import (
    CameraSpec, FAR, intrinsics, sample_camera, trajectory, VIEWS,
)
from hcdp_training.synth.garments import vertex_normals
from hcdp_training.synth.motion import MOTIONS, sample_motion
from hcdp_training.synth.person import build_person, PersonSpec, sample_person
from hcdp_training.synth.render import FrameGeometry, GROUND_MATERIAL, Lighting
from hcdp_training.synth.tracks import pose_deltas
import numpy as np
import torch

VIDEO_VIEWS = ("upper_body", "full_body")
# What the ground people stand on can look like (`backgrounds` kinds): paving, grass, gravel, tiles
GROUNDS = ("grass", "gravel", "brick", "noise", "checker", "blobs")
GROUND_HALF_SIZE_M = 40.0   # the ground is a square this far from the subject in each direction
GROUND_CELLS = 32           # its grid (cells per side)


@dataclass
class LightSpec:
    azimuth_deg: float
    elevation_deg: float
    intensity: float
    colour_temperature: float  # -1 cool .. +1 warm
    ambient: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class SceneSpec:
    """All logged controls of one sequence."""

    seed: int
    frames: int
    fps: float
    people: list[PersonSpec]
    motions: list[str]
    motion_speed: list[float]
    # x, y (metres), yaw (rad) of each person at frame 0
    placements: list[tuple[float, float, float]]
    camera: CameraSpec
    light: LightSpec
    background: str
    ground: str | None = None  # the ground's texture kind (GROUNDS); None: no ground

    def to_json(self) -> dict:
        out = {"seed": self.seed, "frames": self.frames, "fps": self.fps,
               "people": [p.to_json() for p in self.people], "motions": self.motions,
               "motion_speed": self.motion_speed,
               "placements": [list(p) for p in self.placements],
               "camera": self.camera.to_json(), "light": self.light.to_json(),
               "background": self.background}
        if self.ground is not None:  # scenes without one read as they did before the option
            out["ground"] = self.ground
        return out


def sample_scene(seed: int, frames: int, fps: float, static: bool, max_people: int = 3,
                 motions: tuple[str, ...] = MOTIONS + ("mix",),
                 far_share: float = 0.0, ground_share: float = 0.0) -> SceneSpec:
    """Sample every control of one sequence from `seed` (a per-sequence seed).

    `far_share`: the probability of the far view (camera.FAR) instead of the sampled one;
    `ground_share`: the probability that people stand on a textured ground plane with depth. At 0
    no draw is spent on either, so a seed gives the scene it gave before the options existed.
    """
    rng = np.random.default_rng(seed)
    count = int(rng.choice([1, 2, 3], p=[0.75, 0.17, 0.08]))
    count = min(count, max_people)
    people = [sample_person(rng) for _ in range(count)]
    names = []
    # "mix" cross-fades two of the other requested motions
    mixable = [m for m in motions if m != "mix"]
    for _ in range(count):
        name = str(rng.choice(motions))
        if name == "mix":
            a, b = rng.choice(mixable if len(mixable) >= 2 else MOTIONS, 2, replace=False)
            name = f"mix:{a}+{b}"
        names.append(name)
    placements = [(0.0, 0.0, float(rng.uniform(-np.pi, np.pi)))]
    for _ in range(count - 1):
        placements.append((float(rng.choice([-1, 1]) * rng.uniform(0.6, 1.6)),
                           float(rng.uniform(-1.0, 2.5)),
                           float(rng.uniform(-np.pi, np.pi))))
    view = str(rng.choice(VIEWS if static else VIDEO_VIEWS,
                          p=[0.25, 0.35, 0.4] if static else [0.35, 0.65]))
    if far_share > 0 and rng.random() < far_share:
        view = FAR
    height = 1.75 * (0.55 + 0.45 * min(people[0].phenotype["age"] / 0.67, 1.0))
    camera = sample_camera(rng, view, height, video=not static)
    light = LightSpec(float(rng.uniform(-180, 180)), float(rng.uniform(5, 75)),
                      float(rng.uniform(0.5, 1.6)),
                      float(rng.uniform(-1, 1)), float(rng.uniform(0.1, 0.5)))
    motion_speed = [float(rng.uniform(0.7, 1.4)) for _ in range(count)]
    background = str(rng.choice(KINDS))
    ground = None
    if ground_share > 0 and rng.random() < ground_share:
        ground = str(rng.choice(GROUNDS))
    return SceneSpec(seed=seed, frames=frames, fps=fps, people=people, motions=names,
                     motion_speed=motion_speed, placements=placements, camera=camera, light=light,
                     background=background, ground=ground)


def _rot_z(yaw: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*yaw.shape, 3, 3)


@dataclass
class SceneGeometry:
    """World-space animated meshes and cameras of a sequence."""

    vertices: np.ndarray       # [T,N,3] world, metres
    normals: np.ndarray        # [T,N,3] world, unit
    faces: np.ndarray          # [F,3]
    canonical: np.ndarray      # [N,3]
    material_ids: np.ndarray   # [N]
    materials: np.ndarray      # [M,4,4]
    world_to_camera: np.ndarray  # [T,4,4]
    K: np.ndarray              # [3,3]
    lights_world: tuple[np.ndarray, np.ndarray]  # key and fill directions (towards the light)
    light: LightSpec
    background: np.ndarray     # [S,S,3] uint8
    ground: np.ndarray | None = None  # [S,S,3] uint8 texture of the ground; None: no ground


def _framed_point(body: BodyModel, rest, transforms: torch.Tensor, local_body: np.ndarray,
                  shift: np.ndarray,
                  view: str) -> np.ndarray:
    """[T,3] body-local point the camera frames.

    Head (face), chest (upper body), mid-height (full body, far).
    """
    if view in ("full_body", FAR):
        centre = local_body.mean(1)
        centre[:, 2] = local_body[..., 2].max(1) / 2
        return centre
    bone = body.bone("head" if view == "face" else "spine01")
    head = (transforms[:, bone] @ rest.bone_poses[bone])[:, :3, 3].numpy().astype(np.float64)
    head[:, 2] += shift + (0.08 if view == "face" else 0.0)
    return head


def build_scene(body: BodyModel, spec: SceneSpec, width: int, height: int,
                static: bool) -> SceneGeometry:
    rng = np.random.default_rng([spec.seed, 1])
    verts, faces, two_sided, canon, mats_ids, materials = [], [], [], [], [], []
    offset = 0
    anchor = facing = None
    start = float(rng.uniform(0, 10)) if static else 0.0
    people = zip(spec.people, spec.motions, spec.motion_speed, spec.placements)
    for i, (pspec, mname, speed, place) in enumerate(people):
        person = build_person(body, pspec)
        motion = sample_motion(mname, spec.frames, spec.fps,
                               np.random.default_rng([spec.seed, 2, i]), speed, start)
        transforms = body.bone_transforms(person.rest, pose_deltas(motion, body.bone_labels))
        rest = torch.cat([p.rest for p in person.parts])
        weights = torch.cat([p.weights for p in person.parts])
        local = BodyModel.skin(rest, weights, transforms).numpy().astype(np.float64)  # [T,n,3]
        n_body = person.parts[0].rest.shape[0]
        # feet on the ground each frame, plus any hop
        shift = motion.hop - local[:, :n_body, 2].min(1)
        local[..., 2] += shift[:, None]
        yaw = place[2] + motion.yaw
        facing_dir = _rot_z(yaw) @ np.array([0.0, -1.0, 0.0])
        root = np.array([place[0], place[1], 0.0]) + np.concatenate(
            [[0.0], np.cumsum(motion.speed[:-1] / spec.fps)])[:, None] * facing_dir
        world = np.einsum("tab,tnb->tna", _rot_z(yaw), local) + root[:, None]
        if i == 0:
            anchor = np.einsum("tab,tb->ta", _rot_z(yaw),
                               _framed_point(body, person.rest, transforms, local[:, :n_body],
                                             shift, spec.camera.view)) + root
            facing = float(yaw[0])
        for part in person.parts:
            faces.append(part.faces + offset)
            # open garments are seen from both sides: add the reversed winding
            if part.name != "body":
                two_sided.append(part.faces[:, ::-1] + offset)
            canon.append(part.canonical)
            mats_ids.append(part.slot + i * len(SLOTS))
            offset += part.rest.shape[0]
        verts.append(world)
        materials.append(person.materials)
    vertices = np.concatenate(verts, 1)
    faces_all = np.concatenate(faces).astype(np.int64)
    # Normals from the outward winding only (the reversed copies would cancel them).
    normals = vertex_normals(torch.from_numpy(vertices.astype(np.float32)),
                             torch.from_numpy(faces_all)).numpy()
    faces_all = np.concatenate([faces_all] + two_sided)
    texture = None
    if spec.ground is not None:
        g_verts, g_faces = ground_grid(anchor[0, :2], GROUND_HALF_SIZE_M, GROUND_CELLS)
        frames_n = vertices.shape[0]
        faces_all = np.concatenate([faces_all, g_faces + vertices.shape[1]])
        vertices = np.concatenate([vertices, np.repeat(g_verts[None], frames_n, 0)], 1)
        up = np.zeros((frames_n, len(g_verts), 3), normals.dtype)
        up[..., 2] = 1.0
        normals = np.concatenate([normals, up], 1)
        canon.append(np.concatenate([g_verts[:, :2], np.zeros((len(g_verts), 1))], 1))
        mats_ids.append(np.full(len(g_verts), GROUND_MATERIAL))
        # its own generator: the draws of scenes without a ground stay as they were
        texture = make_background(spec.ground, np.random.default_rng([spec.seed, 3]))
    cams = trajectory(spec.camera, anchor, facing, spec.fps, rng)
    light = spec.light
    az, el = np.radians(light.azimuth_deg) + facing, np.radians(light.elevation_deg)
    key = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    fill = np.array([-key[0], -key[1], 0.3])
    return SceneGeometry(vertices=vertices, normals=normals, faces=faces_all.astype(np.int32),
                         canonical=np.concatenate(canon), material_ids=np.concatenate(mats_ids),
                         materials=np.concatenate(materials), world_to_camera=cams,
                         K=intrinsics(width, height, spec.camera.vfov_deg),
                         lights_world=(key, fill / np.linalg.norm(fill)),
                         light=light, background=make_background(spec.background, rng),
                         ground=texture)


def ground_grid(centre: np.ndarray, half_size: float, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Return a square of ground at z = 0 around `centre` (x, y): vertices and faces.

    Vertices [(c+1)^2, 3], faces [2c^2, 3].

    The faces wind counter-clockwise seen from above, as anny's outward faces do, so the ground is
    culled seen from below.
    """
    ticks = np.linspace(-half_size, half_size, cells + 1)
    x, y = np.meshgrid(centre[0] + ticks, centre[1] + ticks, indexing="xy")
    vertices = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)
    i, j = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
    a = (i * (cells + 1) + j).ravel()  # row i (y), column j (x)
    b, c, d = a + 1, a + cells + 1, a + cells + 2
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return vertices, faces.astype(np.int64)


def lighting_for_frame(scene: SceneGeometry, frame: int) -> Lighting:
    """Lights in the camera frame of `frame`.

    Colour temperature tints key (warm) and fill (cool).
    """
    rot = scene.world_to_camera[frame, :3, :3]
    temp = scene.light.colour_temperature
    warm = np.array([1.0 + 0.25 * temp, 1.0, 1.0 - 0.25 * temp])
    return Lighting(key_dir=rot @ scene.lights_world[0], key_color=scene.light.intensity * warm,
                    fill_dir=rot @ scene.lights_world[1],
                    fill_color=0.25 * scene.light.intensity / warm,
                    ambient=np.full(3, scene.light.ambient))


def frame_geometry(scene: SceneGeometry, frame: int, strides: int) -> FrameGeometry:
    """Camera-frame positions at t, t+s, t-s and camera-frame normals.

    Each position is in its own frame's camera.
    """
    frames = scene.vertices.shape[0]

    def to_cam(index: int) -> np.ndarray:
        pose = scene.world_to_camera[index]
        return scene.vertices[index] @ pose[:3, :3].T + pose[:3, 3]

    return FrameGeometry(
        cur=to_cam(frame),
        normals=scene.normals[frame] @ scene.world_to_camera[frame, :3, :3].T,
        nxt=[to_cam(frame + s) if frame + s < frames else None for s in range(1, strides + 1)],
        prv=[to_cam(frame - s) if frame - s >= 0 else None for s in range(1, strides + 1)])


def background_window(scene: SceneGeometry, frame: int) -> tuple[float, float, float, float]:
    """Half-size crop of the background that pans with the camera's heading and pitch.

    The pan is a cheap stand-in for parallax; the crop stays inside the image, so non-tileable
    backgrounds show no seam.
    """
    rot = scene.world_to_camera[frame, :3, :3]
    heading = np.arctan2(rot[2, 1], rot[2, 0])
    pitch = np.arcsin(np.clip(rot[2, 2], -1, 1))
    return (float(0.25 + 0.22 * np.sin(heading)), float(0.25 - 0.22 * np.sin(pitch)), 0.5, 0.5)
