"""Behaviour of DAViD's augmentations on the frame dict contract (hcdp_training.augment)."""
import dataclasses

from hcdp_model.geometry import backward_warp
from hcdp_model.preprocess import Letterbox, preprocess
from hcdp_training.augment import (
    apply, Augment, AugmentConfig, AugmentParams, blur, brightness_contrast, crop_intrinsics,
    crop_scale, CropBox, disc_kernel, FrameNuisance, gaussian_kernel, greyscale, hflip,
    hue_saturation, iso_noise, jpeg, letterbox, LETTERBOX_RGB, LetterboxBox, motion_kernel,
)
import numpy as np
import pytest
import torch

H, W = 48, 64
K0 = np.array([[80.0, 0.0, 30.25], [0.0, 82.0, 22.5], [0.0, 0.0, 1.0]], np.float32)
PLANE_N = np.array([0.3, -0.2, -1.0])  # a tilted plane n·X = c through (0, 0, 2)
PLANE_C = PLANE_N @ np.array([0.0, 0.0, 2.0])


def render_plane(K: np.ndarray, h: int, w: int, normal=PLANE_N, c=PLANE_C) -> dict:
    """Exact planar depth and facing-camera unit normal of a plane seen through K."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K.astype(np.float64)).T
    depth = c / (rays @ normal)  # rays have z = 1, so this is the planar depth
    n = normal / np.linalg.norm(normal)
    return {"depth": depth.astype(np.float32),
            "normal": np.broadcast_to(n, (h, w, 3)).astype(np.float32).copy(), "K": K}


def full_frame(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    frame = render_plane(K0, H, W)
    mask = np.zeros((H, W), np.float32)
    mask[8:40, 10:50] = 1.0
    mask[8:40, 9] = 0.5
    frame["depth"][mask == 0] = np.nan
    frame.update(
        rgb=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        mask=mask,
        flow_fwd=rng.normal(size=(H, W, 2)).astype(np.float32),
        flow_bwd=rng.normal(size=(H, W, 2)).astype(np.float32),
        canonical=rng.normal(size=(H, W, 3)).astype(np.float32),
        extrinsics=np.array([[1, 0, 0, 0.1], [0, 0, -1, 0.2], [0, 1, 0, 3.0], [0, 0, 0, 1]],
                            np.float64),
    )
    return frame


def assert_frames_equal(a: dict, b: dict, **tol) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], err_msg=key, **tol)


def smooth_image(h: int = 96, w: int = 128) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([u / w, v / h, 0.5 + 0.4 * np.sin(u / 9.0) * np.cos(v / 7.0)], -1)
    return np.clip(np.rint(img * 220 + 20), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- geometric
def test_flip_twice_is_identity_for_every_key():
    frame = full_frame()
    assert_frames_equal(hflip(hflip(frame)), frame, rtol=0, atol=1e-6)


def test_flip_moves_principal_point_to_mirrored_pixel_centre():
    flipped = hflip({"K": K0, "mask": np.zeros((H, W), np.float32)})
    assert flipped["K"][0, 2] == pytest.approx(W - 1 - 30.25)
    assert flipped["K"][1, 2] == pytest.approx(22.5)


def test_flip_equals_rendering_the_mirrored_scene_with_the_new_K():
    frame = render_plane(K0, H, W)
    flipped = hflip(frame)
    mirrored = PLANE_N * np.array([-1.0, 1.0, 1.0])
    expected = render_plane(flipped["K"], H, W, normal=mirrored)
    np.testing.assert_allclose(flipped["depth"], expected["depth"], rtol=1e-5)
    np.testing.assert_allclose(flipped["normal"], expected["normal"], atol=1e-6)


@pytest.mark.parametrize("box", [CropBox(7, 3, 45, 36, 15, 12),    # shrink ×3
                                 CropBox(-6, 5, 60, 30, 20, 10),   # shrink ×3, past the left edge
                                 CropBox(11, 4, 20, 16, 20, 16)])  # pure crop
def test_crop_scale_equals_rendering_with_the_new_K(box):
    # With these boxes every output pixel centre falls exactly on an input pixel centre, so the
    # nearest-neighbour ground truth must equal a fresh rendering through crop_intrinsics' K.
    out = crop_scale(render_plane(K0, H, W), box)
    expected = render_plane(out["K"], box.out_h, box.out_w)
    inside = ~np.isnan(out["depth"])
    np.testing.assert_allclose(out["depth"][inside], expected["depth"][inside], rtol=1e-5)
    # Past the left edge, output columns 0 and 1 sample input columns -5 and -2: empty.
    assert inside.all() if box.x0 >= 0 else (inside[:, 2:].all() and not inside[:, :2].any())
    np.testing.assert_allclose(out["normal"][inside], expected["normal"][inside], atol=1e-6)


def test_zoom_by_two_repeats_each_ground_truth_pixel_twice_with_none_empty():
    columns = np.broadcast_to(np.arange(W, dtype=np.float32), (H, W)).copy()
    out = crop_scale({"depth": columns}, CropBox(0, 0, W, H, 2 * W, 2 * H))
    np.testing.assert_array_equal(out["depth"][0], np.repeat(np.arange(W), 2))


def test_crop_intrinsics_hand_computed_centre_zoom():
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])
    k = crop_intrinsics(K, CropBox(16, 12, 32, 24, 64, 48))
    np.testing.assert_allclose(k, [[200.0, 0, 31.5], [0, 200.0, 23.5], [0, 0, 1]])


def test_crop_scale_projects_a_3d_point_to_the_pixel_that_shows_it():
    # A marked pixel's 3-D point, projected with the new K, lands on the marked output pixel.
    frame = render_plane(K0, H, W)
    frame["mask"] = np.zeros((H, W), np.float32)
    i, j = 30, 42
    frame["mask"][i, j] = 1.0
    box = CropBox(20, 14, 30, 24, 10, 8)
    point = frame["depth"][i, j] * np.linalg.inv(K0) @ np.array([j, i, 1.0])
    out = crop_scale(frame, box)
    u, v, z = out["K"] @ point
    marked = np.unravel_index(np.argmax(out["mask"]), out["mask"].shape)
    assert (round(v / z), round(u / z)) == marked
    assert out["depth"][marked] == pytest.approx(point[2], rel=1e-5)


def _translated_pair(shift: tuple[int, int]) -> tuple[dict, dict]:
    """Frame t and t+1 where the content moves by (dx, dy) pixels; flow_fwd(t) = (dx, dy)."""
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (H + 20, W + 20, 3), dtype=np.uint8)
    dx, dy = shift
    first = {"rgb": big[10:10 + H, 10:10 + W].copy(),
             "flow_fwd": np.broadcast_to(np.float32([dx, dy]), (H, W, 2)).copy(), "K": K0}
    second = {"rgb": big[10 - dy:10 - dy + H, 10 - dx:10 - dx + W].copy(),
              "flow_fwd": first["flow_fwd"].copy(), "K": K0}
    return first, second


def _warp_back(image: np.ndarray, flow: np.ndarray, margin: int = 2
               ) -> tuple[np.ndarray, np.ndarray]:
    """Warp image(p + flow(p)) back through the project's backward_warp, with its valid mask.

    The mask is where both p and p + flow lie at least `margin` pixels inside the image (resizing
    treats the outermost pixels differently).
    """
    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
    f = torch.from_numpy(flow).permute(2, 0, 1)[None]
    warped, inside = backward_warp(x, f)
    h, w = image.shape[:2]
    v, u = np.mgrid[0:h, 0:w]
    valid = inside[0, 0].numpy().copy()
    for c, n in ((u, w), (v, h), (u + flow[..., 0], w), (v + flow[..., 1], h)):
        valid &= (c >= margin) & (c < n - margin)
    return warped[0].permute(1, 2, 0).numpy(), valid


@pytest.mark.parametrize("params", [AugmentParams(flip=True),
                                    AugmentParams(flip=True, crop=CropBox(8, 6, 24, 18, 48, 36))])
def test_flow_still_maps_pixels_after_flip_and_zoom(params):
    first, second = _translated_pair((3, -2))
    rng = np.random.default_rng(0)
    a, b = (apply(f, params, rng) for f in (first, second))
    warped, valid = _warp_back(b["rgb"], a["flow_fwd"])
    assert valid.mean() > 0.5
    assert np.abs(warped - a["rgb"])[valid].max() <= 1e-3
    # The wrong sign convention for flipped flow would break it:
    wrong = a["flow_fwd"] * np.float32([-1, 1])
    bad, bad_valid = _warp_back(b["rgb"], wrong)
    assert np.abs(bad - a["rgb"])[bad_valid & valid].mean() > 20


def test_clip_applies_one_geometric_transform_to_every_frame():
    first, second = _translated_pair((2, 1))
    # A ×2 zoom keeps the scaled flow on whole pixels, so the check can be exact.
    config = AugmentConfig(p_flip=1.0, p_crop=1.0, zoom=(2.0, 2.0), shift=0.0, p_blur=0,
                           p_brightness_contrast=0, p_hue_saturation=0, p_jpeg=0, p_greyscale=0,
                           p_iso_noise=0)
    a, b = Augment(config, rng=5).clip([first, second])
    np.testing.assert_array_equal(a["K"], b["K"])
    np.testing.assert_array_equal(a["flow_fwd"][0, 0], [-4.0, 2.0])
    warped, valid = _warp_back(b["rgb"], a["flow_fwd"])
    assert valid.mean() > 0.5
    assert np.abs(warped - a["rgb"])[valid].max() <= 1e-3


def test_crop_outside_the_image_leaves_ground_truth_empty_and_ranges_valid():
    frame = full_frame()
    out = crop_scale(hflip(frame), CropBox(-20, -10, 80, 60, 40, 30))
    assert out["rgb"].dtype == np.uint8 and out["rgb"].shape == (30, 40, 3)
    assert out["mask"].min() >= 0.0 and out["mask"].max() <= 1.0
    assert np.isnan(out["depth"][0, 0]) and out["mask"][0, 0] == 0.0
    assert not out["normal"][0, 0].any() and not out["flow_fwd"][0, 0].any()
    human = ~np.isnan(out["depth"])
    np.testing.assert_allclose(np.linalg.norm(out["normal"][human], axis=-1), 1.0, atol=1e-5)
    assert (out["mask"][human] > 0).all()


# ---------------------------------------------------------------- photometric
def test_photometric_ops_never_touch_ground_truth():
    frame = full_frame()
    config = AugmentConfig(p_flip=0, p_crop=0, p_blur=1, p_brightness_contrast=1,
                           p_hue_saturation=1, p_jpeg=1, p_greyscale=1, p_iso_noise=1)
    out = Augment(config, rng=1)(frame)
    for key in frame:
        if key != "rgb":
            np.testing.assert_array_equal(out[key], frame[key], err_msg=key)
    assert not np.array_equal(out["rgb"], frame["rgb"])
    assert out["rgb"].dtype == np.uint8 and out["rgb"].shape == frame["rgb"].shape


def test_brightness_contrast_hand_computed():
    rgb = np.array([[[0, 128, 255]]], np.uint8)
    out = brightness_contrast(rgb, brightness=0.2, contrast=0.5)
    # ((0 + 51)/255 - 0.5)·1.5 + 0.5 = 12.75/255; (128 + 51)/255 → 204.75/255; 255 saturates.
    assert out[0, 0].tolist() == [13, 205, 255]


def test_hue_rotation_of_120_degrees_turns_red_into_green_and_zero_saturation_is_grey():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    assert hue_saturation(red, 120.0, 1.0)[0, 0].tolist() == [0, 200, 0]
    grey = hue_saturation(smooth_image(), 0.0, 0.0)
    assert (grey.max(axis=-1).astype(int) - grey.min(axis=-1)).max() <= 1


def test_greyscale_makes_equal_channels_that_keep_the_luma():
    img = smooth_image()
    out = greyscale(img)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    luma = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(out[..., 0] - luma).max() <= 1.0


def test_jpeg_changes_a_smooth_image_by_a_bounded_amount_that_grows_as_quality_drops():
    img = smooth_image()
    err_hi = np.abs(jpeg(img, 95).astype(int) - img).mean()
    err_lo = np.abs(jpeg(img, 10).astype(int) - img).mean()
    assert 0 < err_hi < 1.5
    assert err_hi < err_lo < 8


def test_iso_noise_is_unbiased_with_the_poisson_plus_gaussian_variance():
    img = np.full((200, 200, 3), 128, np.uint8)
    photons, read = 400.0, 0.01
    out = iso_noise(img, photons, read, np.random.default_rng(0)).astype(np.float64) / 255.0
    x = 128 / 255.0
    assert abs(out.mean() - x) < 0.002
    expected_std = np.sqrt(x / photons + read**2)
    assert out.std() == pytest.approx(expected_std, rel=0.05)


@pytest.mark.parametrize("kernel", [gaussian_kernel(1.5), disc_kernel(2.3), motion_kernel(7, 30)])
def test_blur_kernels_sum_to_one_and_keep_a_flat_image(kernel):
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    flat = np.full((20, 20, 3), 77, np.uint8)
    np.testing.assert_array_equal(blur(flat, kernel), flat)


def test_blur_kernel_shapes_match_their_physics():
    horizontal = motion_kernel(6, 0.0)
    centre = horizontal.shape[0] // 2
    assert horizontal[centre].sum() == pytest.approx(1.0, abs=1e-6)  # all mass on the middle row
    vertical = motion_kernel(6, 90.0)
    assert vertical[:, centre].sum() == pytest.approx(1.0, abs=1e-6)
    disc = disc_kernel(3.0)
    r = disc.shape[0] // 2
    v, u = np.mgrid[-r:r + 1, -r:r + 1]
    assert disc[np.hypot(u, v) > 3.0 + np.sqrt(0.5)].sum() == 0.0
    assert disc[r, r] == pytest.approx(disc[r, r + 1])  # uniform inside
    g = gaussian_kernel(2.0)
    assert g[g.shape[0] // 2].argmax() == g.shape[0] // 2


def test_blur_strength_grows_with_the_kernel():
    img = smooth_image()
    weak = np.abs(blur(img, gaussian_kernel(0.5)).astype(int) - img).mean()
    strong = np.abs(blur(img, gaussian_kernel(3.0)).astype(int) - img).mean()
    assert 0 < weak < strong


# ---------------------------------------------------------------- Augment
def test_same_seed_gives_identical_output_and_another_seed_differs():
    frame = full_frame()
    config = AugmentConfig(p_iso_noise=1.0, p_crop=1.0)
    a, b = Augment(config, rng=7)(frame), Augment(config, rng=7)(frame)
    assert_frames_equal(a, b, rtol=0, atol=0)
    c = Augment(config, rng=8)(frame)
    assert not np.array_equal(a["rgb"], c["rgb"])


def test_clip_shares_photometry_and_jitter_varies_it_slightly():
    frame = {"rgb": smooth_image()}
    config = AugmentConfig(p_flip=0.5, p_crop=1, p_blur=1, p_brightness_contrast=1,
                           p_hue_saturation=1, p_jpeg=1, p_greyscale=0, p_iso_noise=0)
    same = Augment(config, rng=2).clip([frame] * 3)
    for other in same[1:]:
        np.testing.assert_array_equal(other["rgb"], same[0]["rgb"])
    jittered = Augment(dataclasses.replace(config, clip_jitter=0.05), rng=2).clip([frame] * 3)
    diff = np.abs(jittered[1]["rgb"].astype(int) - jittered[0]["rgb"]).mean()
    assert 0 < diff < 20


def test_frame_nuisances_vary_per_frame_but_leave_geometry_and_ground_truth_shared():
    frame = full_frame(3)
    config = AugmentConfig(p_crop=1, frame_nuisance=1.0)
    clip = Augment(config, rng=4).clip([frame] * 4)
    for other in clip[1:]:  # one geometric draw: every ground-truth map moved the same way
        for key in ("depth", "normal", "mask", "flow_fwd"):
            np.testing.assert_array_equal(other[key], clip[0][key], err_msg=key)
    plain = Augment(dataclasses.replace(config, frame_nuisance=0.0), rng=4).clip([frame] * 4)
    for other in plain[1:]:
        np.testing.assert_array_equal(other["rgb"], plain[0]["rgb"])
    differ = [not np.array_equal(clip[k]["rgb"], clip[0]["rgb"]) for k in range(1, 4)]
    assert sum(differ) >= 2


def test_each_frame_nuisance_changes_the_image_and_strength_0_changes_nothing():
    # texture: blur shows
    rgb = np.random.default_rng(9).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    off = {"p_noise": 0, "p_jpeg": 0, "p_exposure": 0, "p_blur": 0, "p_patch": 0, "p_degraded": 0}
    for name in off:
        out = FrameNuisance(**{**off, name: 1.0})(rgb, np.random.default_rng(0))
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - rgb).mean() > 0.1, name
    np.testing.assert_array_equal(FrameNuisance(strength=0.0)(rgb, np.random.default_rng(0)), rgb)

    # a degraded frame keeps little of a textured image; the ordinary blur keeps most of it
    def kept(**on: float) -> float:
        out = FrameNuisance(**{**off, **on})(rgb, np.random.default_rng(0)).astype(float).ravel()
        return float(np.corrcoef(out, rgb.astype(float).ravel())[0, 1])

    assert kept(p_degraded=1.0) < 0.2 < 0.4 < kept(p_blur=1.0)
    before = rgb.copy()
    FrameNuisance(p_patch=1.0)(rgb, np.random.default_rng(1))
    np.testing.assert_array_equal(rgb, before)  # the input is never written
    with pytest.raises(ValueError, match="frame_nuisance.*\\[0,1\\]"):
        AugmentConfig(frame_nuisance=2.0)


@pytest.mark.parametrize("in_h, in_w", [(48, 64), (64, 36), (30, 64), (64, 64)])
def test_letterbox_puts_the_bands_where_the_runtime_preprocessing_does(in_h, in_w):
    size = 64
    box = LetterboxBox.fit(size, size, in_w / in_h)
    runtime = Letterbox.fit(in_h, in_w, size)
    assert (box.top, box.left, box.h, box.w) == (runtime.top, runtime.left, runtime.new_h,
                                                 runtime.new_w)
    frame = {"rgb": smooth_image(size, size)}
    x = preprocess(letterbox(frame, box)["rgb"][None], size)[0][0]  # the bands, as the model sees
    content = torch.zeros(size, size, dtype=torch.bool)
    content[box.top:box.top + box.h, box.left:box.left + box.w] = True
    assert content.all() == (in_h == in_w)
    band = x[:, ~content]
    assert band.numel() == 0 or band.abs().max() < 0.01  # ~0 normalised, like the runtime's pad
    assert x[:, content].abs().mean() > 0.2


def test_letterbox_bands_carry_no_ground_truth_and_the_content_is_untouched():
    frame = full_frame(5)
    box = LetterboxBox.fit(H, W, 2.0)  # a wide frame: bands at the top and the bottom
    assert (box.left, box.w) == (0, W) and box.h == round(H / 2.0) and box.top > 0
    out = letterbox(frame, box)
    rows = slice(box.top, box.top + box.h)
    for key in ("rgb", "depth", "mask", "normal", "flow_fwd", "flow_bwd", "canonical"):
        np.testing.assert_array_equal(out[key][rows], frame[key][rows], err_msg=key)
        band = np.concatenate([out[key][:box.top], out[key][box.top + box.h:]])
        if key == "rgb":
            assert (band == LETTERBOX_RGB).all()
        elif key == "depth":
            assert np.isnan(band).all()
        else:
            assert (band == 0).all(), key
    np.testing.assert_array_equal(out["K"], frame["K"])
    assert letterbox(frame, LetterboxBox.fit(H, W, 1.0))["rgb"] is frame["rgb"]  # no bands
    with pytest.raises(ValueError, match="content_aspect > 0"):
        LetterboxBox.fit(H, W, 0.0)


def test_clip_letterbox_is_one_box_per_clip_applied_after_the_frame_nuisances():
    frame = full_frame(6)
    config = AugmentConfig(p_letterbox=1.0, letterbox_aspect=(1.6, 2.0), frame_nuisance=1.0,
                           p_iso_noise=1.0)
    clip = Augment(config, rng=2).clip([frame] * 5)
    bands = np.isnan(clip[0]["depth"]) & (clip[0]["mask"] == 0)
    rows = np.flatnonzero(~(clip[0]["rgb"] == LETTERBOX_RGB).all(axis=(1, 2)))
    top, bottom = rows[0], rows[-1] + 1
    assert top > 0 and bottom < H and 1.6 - 0.1 <= H / (bottom - top) <= 2.0 + 0.1  # square input
    for f in clip:  # the same bands on every frame, exactly the pad colour: no noise, no codec
        assert (f["rgb"][:top] == LETTERBOX_RGB).all()
        assert (f["rgb"][bottom:] == LETTERBOX_RGB).all()
        assert not (f["rgb"][top:bottom] == LETTERBOX_RGB).all()
        assert bands[:top].all() and bands[bottom:].all()
    assert not np.array_equal(clip[1]["rgb"][top:bottom], clip[0]["rgb"][top:bottom])
    with pytest.raises(ValueError, match="letterbox_aspect > 0"):
        AugmentConfig(letterbox_aspect=(0.0, 2.0))


def test_config_rejects_bad_values_with_a_clear_message():
    with pytest.raises(ValueError, match="p_flip.*probability"):
        AugmentConfig(p_flip=1.5)
    with pytest.raises(ValueError, match="zoom.*low <= high"):
        AugmentConfig(zoom=(1.2, 0.9))
    with pytest.raises(ValueError, match="unknown keys \\['p_flop'\\]"):
        AugmentConfig.from_dict({"p_flop": 0.5})
    assert AugmentConfig.from_dict({"zoom": [0.9, 1.1]}).zoom == (0.9, 1.1)


class _Draws(torch.utils.data.Dataset):

    def __init__(self):
        self.augment = Augment(AugmentConfig(p_brightness_contrast=1.0), rng=0)

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return self.augment.sample(8, 8).brightness


def test_dataloader_workers_do_not_repeat_each_others_draws():
    loader = torch.utils.data.DataLoader(_Draws(), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    draws = [float(x) for x in loader]
    # Workers get items 0,2 and 1,3: identical generators would give draws[0] == draws[1].
    assert draws[0] != draws[1]
