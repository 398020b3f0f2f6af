"""Point cloud geometry and metric alignment on constructed cases."""
from hcdp_ros.conversions import InvalidDepth
from hcdp_ros.metric_depth import apply_metric, fit_metric_depth, MetricFit, registered_to
from hcdp_ros.pointcloud import backproject
import numpy as np
import pytest

K = np.array([[100.0, 0.0, 4.0], [0.0, 50.0, 2.0], [0.0, 0.0, 1.0]])


def test_principal_point_pixel_lies_on_the_optical_axis_and_others_follow_the_pinhole():
    depth = np.full((5, 9), 2.0, np.float32)
    mask = np.ones_like(depth)
    points, _ = backproject(depth, mask, K)
    grid = points.reshape(5, 9, 3)
    np.testing.assert_allclose(grid[2, 4], [0.0, 0.0, 2.0])
    # pixel (u=8, v=0): x = (8 - 4) / 100 * 2, y = (0 - 2) / 50 * 2
    np.testing.assert_allclose(grid[0, 8], [0.08, -0.08, 2.0], rtol=1e-6)


def test_points_project_back_to_their_pixels():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 5.0, (6, 10)).astype(np.float32)
    points, _ = backproject(depth, np.ones_like(depth), K)
    uvw = points.astype(np.float64) @ K.T
    v, u = np.mgrid[0:6, 0:10]
    np.testing.assert_allclose(uvw[:, 0] / uvw[:, 2], u.ravel(), atol=1e-4)
    np.testing.assert_allclose(uvw[:, 1] / uvw[:, 2], v.ravel(), atol=1e-4)
    np.testing.assert_allclose(points[:, 2], depth.ravel())


def test_only_masked_finite_positive_pixels_on_the_stride_grid_are_kept_with_their_colours():
    depth = np.full((4, 6), 1.0, np.float32)
    depth[0, 2] = np.nan
    depth[2, 0] = 0.0
    mask = np.zeros_like(depth)
    mask[:, :4] = 0.9
    colors = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    points, picked = backproject(depth, mask, K, threshold=0.5, stride=2, colors=colors)
    # stride grid: rows 0, 2; cols 0, 2, 4; masked cols 0, 2; drop (0,2) NaN and (2,0) zero
    kept = [(0, 0), (2, 2)]
    np.testing.assert_array_equal(picked, [colors[v, u] for v, u in kept])
    np.testing.assert_allclose(points[:, 0], [(u - 4.0) / 100.0 for _, u in kept])


def test_bad_intrinsics_are_refused():
    with pytest.raises(ValueError, match="fx, fy > 0"):
        backproject(np.ones((2, 2)), np.ones((2, 2)), np.zeros((3, 3)))


def _scene():
    rng = np.random.default_rng(3)
    relative = rng.uniform(0.0, 1.0, (40, 50)).astype(np.float32)
    mask = np.zeros_like(relative)
    mask[5:35, 10:40] = 1.0
    return relative, mask


def test_metric_fit_recovers_a_known_scale_and_shift_despite_nans_zeros_and_unmasked_junk():
    relative, mask = _scene()
    metric = 2.5 * relative + 0.75
    metric[::3, ::4] = np.nan  # sensor holes
    metric[1::7, :] = 0.0  # 16UC1 zero readings that slipped through
    metric[mask < 0.5] = 100.0  # background at another depth must not matter
    fit = fit_metric_depth(relative, metric, mask, 0.5, min_pixels=50, topic="/d")
    assert fit.scale == pytest.approx(2.5, rel=1e-4) and fit.shift == pytest.approx(0.75, abs=1e-4)
    assert fit.pixels < int(mask.sum())


def test_metric_output_is_metres_inside_the_mask_and_nan_outside():
    relative, mask = _scene()
    out = apply_metric(relative, MetricFit(2.0, 1.0, 100), mask, 0.5)
    inside = mask > 0.5
    np.testing.assert_allclose(out[inside], 2.0 * relative[inside] + 1.0, rtol=1e-6)
    assert np.all(np.isnan(out[~inside])) and out.dtype == np.float32


def test_too_few_valid_metric_pixels_is_an_invalid_depth_input():
    relative, mask = _scene()
    with pytest.raises(InvalidDepth, match="at least 100 masked pixels .* got 0 on /d"):
        fit_metric_depth(relative, np.full_like(relative, np.nan), mask, 0.5, 100, "/d")


def test_a_fit_with_negative_scale_is_rejected():
    relative, mask = _scene()
    with pytest.raises(InvalidDepth, match="positive finite scale"):
        fit_metric_depth(relative, 5.0 - relative, mask, 0.5, 10, "/d")


def test_metric_depth_of_another_size_is_resized_nearest():
    metric = np.array([[1.0, 2.0], [3.0, np.nan]], np.float32)
    out = registered_to(metric, 4, 4)
    np.testing.assert_array_equal(out[:2, :2], 1.0)
    assert np.isnan(out[3, 3])
