"""Real-footage metrics, reference masks and baselines on hand-computed cases."""
from __future__ import annotations

import math

from hcdp_training.real import metrics, reference
from hcdp_training.real.baselines import all_foreground, centred_ellipse
import numpy as np
import pytest


def test_ramp_share_of_a_plane_is_one_and_of_a_checkerboard_zero():
    assert metrics.ramp_share(np.array([[0.0, 1.0], [1.0, 2.0]])) == pytest.approx(1.0)
    # the 2x2 checkerboard is orthogonal to 1, x and y: a plane explains none of it
    assert metrics.ramp_share(np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(0.0, abs=1e-12)


def test_ramp_share_of_plane_plus_checkerboard_is_the_planes_share_of_the_variance():
    # plane [[0,1],[1,2]] (sum of squares 2) + checkerboard [[0,1],[1,0]] (1): R^2 = 2 / 3
    assert metrics.ramp_share(np.array([[0.0, 2.0], [2.0, 2.0]])) == pytest.approx(2.0 / 3.0)


def test_ramp_share_ignores_non_finite_pixels_and_is_nan_for_a_constant_map():
    ys, xs = np.mgrid[0:5, 0:7].astype(np.float64)
    ramp = 0.3 * xs - 2.0 * ys + 1.0
    ramp[2, 3] = np.nan
    assert metrics.ramp_share(ramp) == pytest.approx(1.0)
    assert math.isnan(metrics.ramp_share(np.full((4, 4), 2.0)))
    with pytest.raises(ValueError, match=r"expected a depth map \[H,W\], got shape \(2, 2, 1\)"):
        metrics.ramp_share(np.zeros((2, 2, 1)))


def test_person_instances_are_components_above_the_minimum_area_largest_first():
    ref = np.zeros((20, 20), np.float32)
    ref[1:4, 1:4] = 1.0      # 9 px
    ref[10:18, 10:15] = 1.0  # 40 px
    ref[0, 19] = 1.0         # 1 px: below min_area
    found = metrics.person_instances(ref, min_area=4)
    assert [int(m.sum()) for m in found] == [40, 9]


def test_ring_is_the_dilated_person_minus_every_guarded_person():
    people = np.zeros((11, 11), bool)
    people[4:7, 4:7] = True
    # a 3x3 square dilated by OpenCV's 3x3 ellipse (a cross) gains 3 px on each side, no corners
    assert int(metrics.ring(people, people, width=1, gap=0).sum()) == 12
    other = people.copy()
    other[4:7, 7] = True  # a second person touching the right side takes those 3 px
    first = np.zeros_like(people)
    first[4:7, 4:7] = True
    assert int(metrics.ring(first, other, width=1, gap=0).sum()) == 9


def test_nearer_counts_people_whose_median_depth_is_below_their_rings():
    depth = np.ones((30, 30), np.float32)
    ref = np.zeros((30, 30), np.float32)
    ref[3:10, 3:10] = 1.0
    depth[3:10, 3:10] = 0.5    # nearer than the ring (1.0)
    ref[18:26, 18:26] = 1.0
    depth[18:26, 18:26] = 2.0  # farther
    assert metrics.nearer_counts(depth, ref, min_area=10) == (1, 2)
    inside, around = metrics.ring_contrast(depth, ref.astype(bool) & (depth < 1), ref > 0.5)
    assert (inside, around) == (0.5, 1.0)
    # a constant map puts nobody nearer
    assert metrics.nearer_counts(np.ones_like(depth), ref, min_area=10) == (0, 2)


def test_recedes_upward_compares_the_top_and_bottom_thirds_outside_people():
    ground = np.repeat(np.arange(6.0, 0.0, -1.0)[:, None], 4, 1)  # row 0 (top) farthest
    nobody = np.zeros((6, 4))
    assert metrics.recedes_upward(ground, nobody) == 1.0
    assert metrics.recedes_upward(ground[::-1], nobody) == 0.0  # the ramp the wrong way
    # a near person filling the top third's left half and middle is not the scene: only the
    # pixels around it count (with it, the top third's median would be 0.5)
    person = nobody.copy()
    person[:2, :3] = 1.0
    near = ground.copy()
    near[:2, :3] = 0.5
    assert metrics.recedes_upward(near, person) == 1.0
    assert math.isnan(metrics.recedes_upward(np.full((6, 4), 2.0), nobody))  # no order
    top_hidden = nobody.copy()
    top_hidden[:2] = 1.0
    assert math.isnan(metrics.recedes_upward(ground, top_hidden))
    with pytest.raises(ValueError, match="must have one shape"):
        metrics.recedes_upward(ground, nobody[:5])


def test_normal_spread_is_the_mean_angle_to_the_mean_normal():
    instance = np.ones((2, 2), bool)
    assert metrics.normal_spread_deg(np.tile([0.0, 0.0, -1.0], (2, 2, 1)), instance) == 0.0
    t = math.radians(30.0)
    normals = np.zeros((2, 2, 3))
    normals[0] = [math.sin(t), 0.0, -math.cos(t)]
    normals[1] = [-math.sin(t), 0.0, -math.cos(t)]  # mean: (0, 0, -1), 30 degrees from each
    assert metrics.normal_spread_deg(normals, instance) == pytest.approx(30.0)
    assert math.isnan(metrics.normal_spread_deg(normals, np.zeros((2, 2), bool)))


def test_cross_correlation_of_identical_and_opposite_maps():
    a = np.random.default_rng(0).random((16, 16))
    assert metrics.cross_correlation([a, a.copy()], size=16) == pytest.approx(1.0)
    # pairs (a, a) = 1, (a, -a) = -1 twice: mean -1/3
    assert metrics.cross_correlation([a, a, -a], size=16) == pytest.approx(-1.0 / 3.0)
    assert math.isnan(metrics.cross_correlation([a]))


def test_background_subtraction_finds_a_moving_blob_on_a_static_camera_video():
    rng = np.random.default_rng(3)
    h, w, t = 60, 80, 24
    scene = rng.integers(40, 200, (h, w, 3)).astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w]
    frames, truth = [], []
    for k in range(t):
        blob = (xs - (8 + 3 * k)) ** 2 + (ys - 30) ** 2 <= 8 ** 2  # moves 3 px/frame
        image = scene + rng.normal(0.0, 3.0, scene.shape)    # sensor noise on a still camera
        image[blob] = (250.0, 20.0, 20.0)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
        truth.append(blob)
    frames = np.stack(frames)
    background = reference.median_background(frames[reference.background_frame_indices(t)])
    assert np.abs(background.astype(int) - scene).max() < 15  # the blob is gone from the median
    for frame, blob in zip(frames, truth):
        mask = reference.foreground_mask(frame, background, smallest=20) > 0.5
        iou = (mask & blob).sum() / (mask | blob).sum()
        assert iou > 0.9
        assert len(metrics.person_instances(mask.astype(np.float32), 20)) == 1


def test_background_frame_indices_spread_over_the_video():
    assert reference.background_frame_indices(5, count=10) == [0, 1, 2, 3, 4]
    assert reference.background_frame_indices(101, count=3) == [0, 50, 100]
    with pytest.raises(ValueError, match="at least one frame, got 0"):
        reference.background_frame_indices(0)


def test_baselines_ignore_the_image_as_their_metrics_show():
    depth, normals, mask = all_foreground(8, 10)
    assert mask.min() == 1.0 and math.isnan(metrics.ramp_share(depth))
    np.testing.assert_array_equal(normals[3, 4], [0.0, 0.0, -1.0])
    depth, normals, mask = centred_ellipse(41, 61)
    assert depth[20, 30] == pytest.approx(0.5) and depth[0, 0] == 1.0 and mask[0, 0] == 0.0
    np.testing.assert_allclose(np.linalg.norm(normals, axis=2), 1.0, atol=1e-6)
    # a bump in the middle is symmetric: no plane explains any of it
    assert metrics.ramp_share(depth) == pytest.approx(0.0, abs=1e-9)
    assert metrics.normal_spread_deg(normals, mask > 0.5) > 20.0


def test_a_constant_depth_has_exactly_zero_flicker_without_ground_truth():
    # eval-real's flicker is evaluate_sequence's OPW with only a people mask: a constant map must
    # score 0 along any flow (dividing it by its zero range once left float32 round-off of ~1e-2)
    from hcdp_training.metrics import evaluate_sequence

    t, h, w = 3, 24, 32
    flow = np.zeros((t, h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = 1.37, 0.3  # sub-pixel: bilinear weights that are not 0 or 1
    people = np.zeros((t, h, w), np.float32)
    people[:, 6:18, 8:20] = 1.0
    normals = np.tile(np.float32([0.0, 0.0, -1.0]), (t, h, w, 1))
    out = evaluate_sequence(np.full((t, h, w), 0.7, np.float32), normals, people, flow,
                            gt_mask=people, flow_bwd=-flow)
    assert np.all(out["OPW"] == 0.0) and np.all(out["TC-RMSE"] == 0.0)
