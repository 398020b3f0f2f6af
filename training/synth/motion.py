"""Procedural, joint-limited motion library.

Walk, run, turn, wave, squat, jump, dance, idle, mixtures, plus anny's bundled walk cycle solved by
IK (`walkcycle.py`).

Each motion writes rotation tracks (`tracks.py`: anny's "local-ref" parameterisation, left-side
convention, `JOINT_LIMITS`) plus a root trajectory. Time is in seconds, so the frame rate only sets
the sampling.
"""
from __future__ import annotations

from hcdp_training.synth.tracks import empty_tracks, JOINT_LIMITS, Motion
from hcdp_training.synth.walkcycle import sample_walk_cycle
import numpy as np

MOTIONS = ("walk", "run", "turn", "wave", "squat", "jump", "dance", "idle", "walk_cycle")

ARMS_DOWN = 0.95  # Y rotation that brings anny's A-pose arms close to the body


def _track(tracks: dict[str, np.ndarray], key: str, axis: int, values: np.ndarray) -> None:
    tracks[key][:, axis] += values


def _arms_down(tr: dict[str, np.ndarray], amount: float = ARMS_DOWN) -> None:
    for side in "LR":
        _track(tr, f"upperarm01.{side}", 1, np.full(len(tr["head"]), amount))


def _gait(t: np.ndarray, rng: np.random.Generator, run: bool) -> Motion:
    """Walk or run: antiphase hip/arm swing, knee flexion in swing, trunk counter-rotation."""
    cadence = rng.uniform(1.2, 1.6) if run else rng.uniform(0.75, 1.05)  # strides per second
    amp = rng.uniform(0.7, 1.0) if run else rng.uniform(0.3, 0.5)
    phase = 2 * np.pi * cadence * t + rng.uniform(0, 2 * np.pi)
    tr = empty_tracks(len(t))
    _arms_down(tr, ARMS_DOWN + (0.1 if run else 0.0))
    for side, sign in (("L", 1.0), ("R", -1.0)):
        ph = phase if side == "L" else phase + np.pi
        _track(tr, f"upperleg01.{side}", 0, -amp * np.sin(ph) - (0.25 if run else 0.05))
        swing = np.clip(np.sin(ph + 0.9), 0, None)
        _track(tr, f"lowerleg01.{side}", 0, (0.15 + (1.6 if run else 0.9) * amp * swing ** 1.5))
        _track(tr, f"foot.{side}", 0, 0.25 * amp * np.sin(ph - 0.8))
        _track(tr, f"upperarm01.{side}", 0, 0.8 * amp * np.sin(ph))
        _track(tr, f"lowerarm01.{side}", 0,
               np.full(len(t), -1.5 if run else -0.25) - 0.2 * amp * (1 + np.sin(ph)))
    _track(tr, "spine03", 2, 0.12 * amp * np.sin(phase))
    _track(tr, "spine05", 0, np.full(len(t), 0.2 if run else 0.03))
    stride = rng.uniform(1.1, 1.5) if not run else rng.uniform(1.8, 2.6)
    return Motion("run" if run else "walk", tr, speed=np.full(len(t), stride * cadence * amp),
                  yaw=np.zeros(len(t)), hop=np.zeros(len(t)),
                  params={"cadence_hz": cadence, "amplitude": amp})


def walk(t: np.ndarray, rng: np.random.Generator) -> Motion:
    return _gait(t, rng, run=False)


def run(t: np.ndarray, rng: np.random.Generator) -> Motion:
    return _gait(t, rng, run=True)


def turn(t: np.ndarray, rng: np.random.Generator) -> Motion:
    """Turn on the spot: yaw ramps smoothly by up to +-180 degrees while stepping lightly."""
    m = _gait(t, rng, run=False)
    for k in m.tracks:
        m.tracks[k] *= 0.4
    _arms_down(m.tracks, 0.6 * ARMS_DOWN)
    total = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, np.pi)
    duration = max(float(t[-1] - t[0]), 1e-3)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - t[0]) / duration, 0, 1))
    return Motion("turn", m.tracks, speed=np.zeros(len(t)), yaw=total * ramp, hop=np.zeros(len(t)),
                  params={"turn_rad": total})


def wave(t: np.ndarray, rng: np.random.Generator) -> Motion:
    """One arm raised, forearm waving side to side; the other arm hangs."""
    tr = empty_tracks(len(t))
    side = str(rng.choice(["L", "R"]))
    other = "R" if side == "L" else "L"
    freq = rng.uniform(1.0, 2.5)
    _track(tr, f"upperarm01.{other}", 1, np.full(len(t), ARMS_DOWN))
    _track(tr, f"upperarm01.{side}", 1, np.full(len(t), -rng.uniform(1.2, 1.9)))
    _track(tr, f"lowerarm01.{side}", 0, np.full(len(t), -rng.uniform(0.4, 1.2)))
    _track(tr, f"lowerarm01.{side}", 2, 0.6 * np.sin(2 * np.pi * freq * t))
    _track(tr, "head", 2, 0.2 * np.sin(2 * np.pi * 0.3 * t))
    return Motion("wave", tr, speed=np.zeros(len(t)), yaw=np.zeros(len(t)), hop=np.zeros(len(t)),
                  params={"wave_hz": freq})


def squat(t: np.ndarray, rng: np.random.Generator) -> Motion:
    """Repeated squats: hips and knees flex together, trunk leans, arms reach forward."""
    freq = rng.uniform(0.3, 0.7)
    depth = rng.uniform(0.5, 1.0)
    s = depth * (0.5 - 0.5 * np.cos(2 * np.pi * freq * t))
    tr = empty_tracks(len(t))
    _arms_down(tr, ARMS_DOWN * (1 - s))
    for side in "LR":
        _track(tr, f"upperleg01.{side}", 0, -1.5 * s)
        _track(tr, f"lowerleg01.{side}", 0, 2.1 * s)
        _track(tr, f"foot.{side}", 0, -0.5 * s)
        _track(tr, f"upperarm01.{side}", 0, -1.3 * s)
    _track(tr, "spine05", 0, 0.4 * s)
    return Motion("squat", tr, speed=np.zeros(len(t)), yaw=np.zeros(len(t)), hop=np.zeros(len(t)),
                  params={"squat_hz": freq, "depth": depth})


def jump(t: np.ndarray, rng: np.random.Generator) -> Motion:
    """Crouch, take off with an arm swing, flight (ballistic hop), land; repeated."""
    period = rng.uniform(0.9, 1.4)
    height = rng.uniform(0.1, 0.35)
    u = np.mod(t / period, 1.0)
    crouch = np.exp(-((u - 0.25) / 0.12) ** 2) + np.exp(-((u - 0.95) / 0.08) ** 2)
    flight = (u > 0.4) & (u < 0.85)
    hop = np.where(flight, height * 4 * (u - 0.4) * (0.85 - u) / 0.45 ** 2, 0.0)
    tr = empty_tracks(len(t))
    _arms_down(tr, ARMS_DOWN)
    for side in "LR":
        _track(tr, f"upperleg01.{side}", 0, -1.0 * crouch)
        _track(tr, f"lowerleg01.{side}", 0, 1.5 * crouch)
        _track(tr, f"foot.{side}", 0, -0.4 * crouch + 0.4 * flight)
        _track(tr, f"upperarm01.{side}", 0, 0.8 * crouch - 1.6 * flight)
    _track(tr, "spine05", 0, 0.3 * crouch)
    return Motion("jump", tr, speed=np.zeros(len(t)), yaw=np.zeros(len(t)), hop=hop,
                  params={"period_s": period, "height_m": height})


def dance(t: np.ndarray, rng: np.random.Generator) -> Motion:
    """Dance-like: random sums of sinusoids on arms, spine, head and hips on a shared beat."""
    beat = rng.uniform(0.8, 2.2)
    tr = empty_tracks(len(t))
    _arms_down(tr, rng.uniform(0.0, ARMS_DOWN))
    for key in tr:
        joint = key.split(".")[0]
        lo, hi = np.array(JOINT_LIMITS[joint]).T
        span = (hi - lo) * (0.35 if joint.startswith(("upperarm", "lowerarm")) else 0.15)
        for axis in range(3):
            harmonics = rng.integers(1, 3, size=2)
            for h in harmonics:
                tr[key][:, axis] += span[axis] * rng.uniform(-1, 1) * np.sin(
                    2 * np.pi * beat * h * t / 2 + rng.uniform(0, 2 * np.pi))
    for side in "LR":
        tr[f"lowerleg01.{side}"][:, 0] = np.abs(tr[f"lowerleg01.{side}"][:, 0]) + 0.1
        tr[f"lowerarm01.{side}"][:, 0] = -np.abs(tr[f"lowerarm01.{side}"][:, 0]) - 0.2
    yaw = 0.4 * np.sin(2 * np.pi * beat * t / 4 + rng.uniform(0, 2 * np.pi))
    return Motion("dance", tr, speed=np.zeros(len(t)), yaw=yaw, hop=np.zeros(len(t)),
                  params={"beat_hz": beat})


def idle(t: np.ndarray, rng: np.random.Generator) -> Motion:
    """Standing with a slow weight shift, breathing and head movement."""
    tr = empty_tracks(len(t))
    _arms_down(tr, ARMS_DOWN + rng.uniform(-0.1, 0.1))
    f = rng.uniform(0.15, 0.4)
    _track(tr, "spine05", 1, 0.05 * np.sin(2 * np.pi * f * t))
    _track(tr, "spine01", 0, 0.03 * np.sin(2 * np.pi * 0.25 * t))
    _track(tr, "head", 2, 0.3 * np.sin(2 * np.pi * f * 0.7 * t + 1.0))
    for side in "LR":
        _track(tr, f"lowerarm01.{side}", 0, np.full(len(t), -0.2))
    return Motion("idle", tr, speed=np.zeros(len(t)), yaw=np.zeros(len(t)), hop=np.zeros(len(t)),
                  params={"sway_hz": f})


def walk_cycle(t: np.ndarray, rng: np.random.Generator) -> Motion:
    """Sample anny's bundled walk cycle, IK-solved once per process.

    It is looped from a random phase.
    """
    return sample_walk_cycle(t, rng)


LIBRARY = {"walk": walk, "run": run, "turn": turn, "wave": wave, "squat": squat, "jump": jump,
           "dance": dance, "idle": idle, "walk_cycle": walk_cycle}


def sample_motion(name: str, frames: int, fps: float, rng: np.random.Generator,
                  speed_scale: float = 1.0, start_s: float = 0.0) -> Motion:
    """Sample `frames` frames of motion `name` (or "mix:a+b", a cross-fade from a to b) at `fps`.

    `speed_scale` plays the motion faster (> 1) or slower (< 1): time is scaled, root speed too.
    `start_s` starts the motion that many seconds in (static samples pick a random instant).
    """
    t = (start_s + np.arange(frames, dtype=np.float64) / fps) * speed_scale
    if name.startswith("mix:"):
        first, second = name[4:].split("+")
        a = sample_motion(first, frames, fps, rng, speed_scale, start_s)
        b = sample_motion(second, frames, fps, rng, speed_scale, start_s)
        w = np.clip((t - t[0]) / max(t[-1] - t[0], 1e-6) * 2 - 0.5, 0, 1)[:, None]
        tracks = {k: (1 - w) * a.tracks[k] + w * b.tracks[k] for k in a.tracks}
        mix = lambda x, y: (1 - w[:, 0]) * x + w[:, 0] * y  # noqa: E731
        return Motion(name, tracks, mix(a.speed, b.speed), mix(a.yaw, b.yaw), mix(a.hop, b.hop),
                      {**{f"a_{k}": v for k, v in a.params.items()},
                       **{f"b_{k}": v for k, v in b.params.items()}})
    if name not in LIBRARY:
        raise ValueError(f"expected a motion among {MOTIONS} or 'mix:a+b', got {name!r}")
    m = LIBRARY[name](t, rng)
    m.speed = m.speed * speed_scale
    return m
