"""Motion library: joint limits, mirroring, determinism, root motion; dataset card histograms.

The histograms are the dataset card's.
"""
import os
import subprocess
import sys

from hcdp_training.synth.card import control_values, histogram
from hcdp_training.synth.motion import MOTIONS, sample_motion
from hcdp_training.synth.scene import sample_scene
from hcdp_training.synth.tracks import clamp_to_limits, euler_to_matrix, JOINT_LIMITS, pose_deltas
import numpy as np
import pytest

LABELS = ["root", "spine05", "spine03", "spine01", "neck01", "head"] + [
    f"{j}.{s}"
    for j in ("upperleg01", "lowerleg01", "foot", "clavicle", "upperarm01", "lowerarm01", "wrist")
    for s in "LR"]


@pytest.mark.parametrize("name", list(MOTIONS) + ["mix:walk+wave"])
def test_every_motion_is_finite_and_joint_limited_after_clamping(name):
    m = sample_motion(name, 30, 15.0, np.random.default_rng(0))
    tracks = clamp_to_limits(m)
    for key, values in tracks.items():
        lo, hi = np.array(JOINT_LIMITS[key.split(".")[0]]).T
        assert np.isfinite(values).all()
        assert (values >= lo - 1e-12).all() and (values <= hi + 1e-12).all()
    assert m.speed.shape == m.yaw.shape == m.hop.shape == (30,)


def test_dance_exceeds_limits_before_clamping_so_the_clamp_matters():
    m = sample_motion("dance", 60, 15.0, np.random.default_rng(1))
    raw = np.concatenate([v.ravel() for v in m.tracks.values()])
    clamped = np.concatenate([v.ravel() for v in clamp_to_limits(m).values()])
    assert not np.array_equal(raw, clamped)


def test_walks_move_forward_and_turns_rotate_in_place():
    walk = sample_motion("walk", 15, 15.0, np.random.default_rng(0))
    turn = sample_motion("turn", 15, 15.0, np.random.default_rng(0))
    assert walk.speed.min() > 0.3 and np.all(walk.yaw == 0)
    assert np.all(turn.speed == 0) and abs(turn.yaw[-1]) > 0.4


def test_speed_scale_plays_the_same_motion_faster():
    slow = sample_motion("walk", 31, 30.0, np.random.default_rng(2), speed_scale=1.0)
    fast = sample_motion("walk", 16, 15.0, np.random.default_rng(2), speed_scale=2.0)
    # 2x speed at 15 fps samples the times 0, 2/15, ... = every 4th frame of 1x speed at 30 fps.
    np.testing.assert_allclose(fast.tracks["upperleg01.L"][:8],
                               slow.tracks["upperleg01.L"][::4][:8])
    np.testing.assert_allclose(fast.speed, 2 * slow.speed[0])


def test_right_side_bones_get_the_mirrored_rotation():
    m = sample_motion("wave", 5, 15.0, np.random.default_rng(0))
    for k in m.tracks:
        m.tracks[k][:] = [0.3, 0.2, 0.1] if k.split(".")[0] in ("upperarm01",) else 0.0
    deltas = pose_deltas(m, LABELS).numpy()
    left, right = deltas[0, LABELS.index("upperarm01.L"), :3,
                         :3], deltas[0, LABELS.index("upperarm01.R"), :3, :3]
    mirror = np.diag([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(right, mirror @ left @ mirror, atol=1e-6)
    np.testing.assert_allclose(deltas[0, LABELS.index("root")], np.eye(4))


def test_euler_matrices_are_rotations():
    r = euler_to_matrix(np.random.default_rng(0).uniform(-3, 3, (50, 3)))
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0)


def test_unknown_motion_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="walk"):
        sample_motion("moonwalk", 3, 15.0, np.random.default_rng(0))


def test_scene_sampling_is_deterministic_per_seed_and_differs_across_seeds():
    a, b, c = (sample_scene(s, 8, 15.0, static=False).to_json() for s in (1, 1, 2))
    assert a == b and a != c


def test_card_histograms_count_every_sequence_and_person():
    records = [{"controls": sample_scene(s, 8, 15.0, static=True).to_json(),
                "mask_coverage": [0.2]} for s in range(20)]
    values = control_values(records)
    people = sum(len(r["controls"]["people"]) for r in records)
    assert len(values["camera.view"]) == 20 and len(values["person.skin_tone"]) == people
    views = histogram(values["camera.view"])
    assert views["kind"] == "categorical" and sum(views["counts"].values()) == 20
    assert set(views["counts"]) <= {"face", "upper_body", "full_body"}
    tone = histogram(values["person.skin_tone"])
    assert tone["kind"] == "numeric" and sum(tone["counts"]) == people
    assert 0 <= tone["min"] <= tone["max"] <= 1


def test_mix_cross_fades_two_of_the_requested_motions():
    names = {name for seed in range(40)
             for name in sample_scene(seed, 4, 15.0, static=False,
                                      motions=("wave", "squat", "mix")).motions}
    assert {"mix:wave+squat", "mix:squat+wave"} & names
    assert names <= {"wave", "squat", "mix:wave+squat", "mix:squat+wave"}


_TRACKS_DIGEST = """
import hashlib
import numpy as np
from hcdp_training.synth.motion import MOTIONS, sample_motion
h = hashlib.sha256()
for name in list(MOTIONS) + ["mix:squat+dance"]:
    m = sample_motion(name, 12, 15.0, np.random.default_rng(7))
    for key, values in m.tracks.items():
        h.update(key.encode() + np.ascontiguousarray(values).tobytes())
print(h.hexdigest())
"""


def test_motions_do_not_depend_on_the_interpreter_s_string_hash_seed():
    # Sets of strings iterate in an order that changes with PYTHONHASHSEED (random per process by
    # default); a motion that draws one random number per track in that order would differ from
    # one `hcdp synth` run to the next with the same --seed.
    digests = {subprocess.run([sys.executable, "-c", _TRACKS_DIGEST], check=True,
                              capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
               for seed in ("1", "2", "3")}
    assert len(digests) == 1, digests
