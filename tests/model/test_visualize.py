from hcdp_model.visualize import (
    colorize_depth, contact_sheet, mask_to_rgb, normals_to_rgb, TURBO_LUT,
)
import numpy as np
import pytest


def test_turbo_lut_runs_from_blue_through_green_to_red():
    assert TURBO_LUT.shape == (256, 3) and TURBO_LUT.dtype == np.uint8
    lut = TURBO_LUT.astype(int)
    assert lut[0].sum() < 100  # the far end is dark
    assert np.all(lut[10:41, 2] > lut[10:41, 0])  # then blue
    assert lut[128, 1] > max(lut[128, 0], lut[128, 2])  # middle is green
    assert lut[255, 0] > 3 * lut[255, 2]  # warm end is red


def test_near_is_warm_and_far_is_cool():
    depth = np.tile(np.linspace(1.0, 5.0, 64, dtype=np.float32), (4, 1))
    rgb = colorize_depth(depth).astype(int)
    near, farther = rgb[0, 0], rgb[0, -5]
    assert near[0] > near[2] and farther[2] > farther[0]
    np.testing.assert_array_equal(rgb[0, 0], TURBO_LUT[255])
    np.testing.assert_array_equal(rgb[0, -1], TURBO_LUT[0])


def test_range_is_robust_to_a_few_outliers_and_ignores_unmasked_pixels():
    depth = np.tile(np.linspace(1.0, 2.0, 100, dtype=np.float32), (10, 1))
    depth[0, 0] = 1000.0  # one outlier inside the mask
    mask = np.ones_like(depth)
    mask[:, 90:] = 0.0
    depth[:, 90:] = -50.0  # background junk
    rgb = colorize_depth(depth, mask)
    assert np.all(rgb[:, 90:] == 0)
    # the outlier saturates at the far end instead of squashing every other pixel into one colour
    np.testing.assert_array_equal(rgb[0, 0], TURBO_LUT[0])
    assert len({tuple(c) for c in rgb[5, :90]}) > 50


def test_nan_depth_and_empty_masks_are_black():
    depth = np.array([[np.nan, 1.0], [2.0, 3.0]], np.float32)
    rgb = colorize_depth(depth)
    assert np.all(rgb[0, 0] == 0) and np.any(rgb[1, 1] > 0)
    assert np.all(colorize_depth(depth, np.zeros((2, 2))) == 0)


def test_normals_map_with_half_offset():
    normals = np.array([[[0, 0, -1], [1, 0, 0], [0, -1, 0]]], np.float32)
    np.testing.assert_array_equal(normals_to_rgb(normals),
                                  [[[128, 128, 0], [255, 128, 128], [128, 0, 128]]])


def test_mask_alone_is_grey_and_over_an_image_is_a_tint_weighted_by_the_mask():
    mask = np.array([[0.0, 1.0]], np.float32)
    np.testing.assert_array_equal(mask_to_rgb(mask), [[[0, 0, 0], [255, 255, 255]]])
    image = np.full((1, 2, 3), 100, np.uint8)
    tinted = mask_to_rgb(mask, image).astype(int)
    np.testing.assert_array_equal(tinted[0, 0], [100, 100, 100])
    np.testing.assert_allclose(tinted[0, 1], np.array([255, 64, 160]) * 0.6 + 100 * 0.4, atol=1)


def test_contact_sheet_tiles_resizes_and_adds_a_label_strip():
    a = np.full((20, 30, 3), 50, np.uint8)
    b = np.full((10, 15, 3), 200, np.uint8)
    sheet = contact_sheet([[a, b], [b]], labels=["input", "depth"])
    header = sheet.shape[0] - 40
    assert sheet.shape[1:] == (60, 3) and header > 0
    assert np.all(sheet[header:header + 20, 30:] == 200)  # b resized into a's tile size
    assert np.all(sheet[header + 20:, 30:] == 0)  # the short row is padded black


def test_contact_sheet_refuses_bad_tiles_and_label_counts():
    with pytest.raises(ValueError, match="tile \\[0\\]\\[0\\] must be uint8"):
        contact_sheet([[np.zeros((4, 4), np.float32)]])
    with pytest.raises(ValueError, match="expected 1 column labels, got 2"):
        contact_sheet([[np.zeros((4, 4, 3), np.uint8)]], labels=["a", "b"])
