from hcdp_model.geometry import (
    align_scale_shift, backward_warp, cycle_consistency_mask, dilate, erode, laplacian,
    normalise_min_max, sobel,
)
import pytest
import torch


def _coords(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    return xs, ys


def _constant_flow(h: int, w: int, dx: float, dy: float, batch: int = 1) -> torch.Tensor:
    flow = torch.zeros(batch, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def test_backward_warp_with_integer_translation_samples_the_shifted_pixel():
    x = torch.rand(2, 3, 9, 11)
    warped, valid = backward_warp(x, _constant_flow(9, 11, 2.0, -1.0, batch=2))
    # warped(y, x) = x(y - 1, x + 2): valid for y >= 1 and x <= 8
    assert torch.allclose(warped[:, :, 1:, :9], x[:, :, :-1, 2:], atol=1e-6)
    assert valid.shape == (2, 1, 9, 11)
    assert valid[:, :, 1:, :9].all()
    assert not valid[:, :, 0, :].any() and not valid[:, :, :, 9:].any()


def test_backward_warp_with_subpixel_translation_is_linear_interpolation():
    xs, ys = _coords(8, 10)
    ramp = (3.0 * xs + 0.5 * ys)[None, None]
    warped, valid = backward_warp(ramp, _constant_flow(8, 10, 0.25, 0.5))
    # a linear function is reproduced exactly by bilinear interpolation
    expected = 3.0 * (xs + 0.25) + 0.5 * (ys + 0.5)
    assert torch.allclose(warped[0, 0][valid[0, 0]], expected[valid[0, 0]], atol=1e-5)
    assert valid[0, 0, :7, :9].all() and not valid[0, 0, 7].any() and not valid[0, 0, :, 9].any()


def test_backward_warp_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="flow"):
        backward_warp(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 4, 5))


def test_cycle_mask_accepts_consistent_motion_and_rejects_the_region_that_gets_covered():
    h, w = 12, 16
    # a square (rows 4..7, cols 2..5) moves 4 px right over a static background
    fwd = torch.zeros(1, 2, h, w)
    fwd[0, 0, 4:8, 2:6] = 4.0
    bwd = torch.zeros(1, 2, h, w)
    bwd[0, 0, 4:8, 6:10] = -4.0
    m = cycle_consistency_mask(fwd, bwd, tau_c=1.0)[0, 0]
    assert m[4:8, 2:6].all(), "the moving square is visible in both frames"
    assert not m[4:8, 6:10].any(), "the background the square moves onto disappears in frame k+1"
    assert m[0:4].all() and m[8:].all() and m[4:8, 10:].all()


def test_align_scale_shift_recovers_known_scale_and_shift():
    pred = torch.rand(3, 1, 6, 7) + 0.1
    s_true = torch.tensor([2.0, 0.5, -1.5])
    t_true = torch.tensor([0.3, -2.0, 1.0])
    target = s_true.view(-1, 1, 1, 1) * pred + t_true.view(-1, 1, 1, 1)
    s, t = align_scale_shift(pred, target, torch.ones_like(pred, dtype=torch.bool))
    assert s.shape == (3,) and t.shape == (3,)
    assert torch.allclose(s, s_true, atol=1e-4) and torch.allclose(t, t_true, atol=1e-4)


def test_align_scale_shift_ignores_pixels_off_the_mask():
    pred = torch.rand(1, 1, 8, 8)
    target = 3.0 * pred - 1.0
    mask = torch.zeros_like(pred, dtype=torch.bool)
    mask[..., 2:6, 1:7] = True
    target[~mask] = 100.0  # garbage off the mask
    s, t = align_scale_shift(pred, target, mask)
    assert torch.allclose(s, torch.tensor([3.0]),
                          atol=1e-4) and torch.allclose(t, torch.tensor([-1.0]), atol=1e-4)


def test_align_scale_shift_is_finite_for_empty_mask_and_constant_prediction():
    pred = torch.ones(2, 1, 4, 4, requires_grad=True)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[1] = True
    s, t = align_scale_shift(pred, torch.rand(2, 1, 4, 4), mask)
    assert torch.isfinite(s).all() and torch.isfinite(t).all()
    assert s[0] == 0 and t[0] == 0 and s[1] == 0
    (s.sum() + t.sum()).backward()
    assert torch.isfinite(pred.grad).all()


def test_align_scale_shift_runs_in_float32_under_autocast():
    pred = torch.rand(1, 1, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s, _ = align_scale_shift(pred, 2.0 * pred, torch.ones_like(pred, dtype=torch.bool))
    assert s.dtype == torch.float32 and torch.allclose(s, torch.tensor([2.0]), atol=1e-4)


def test_normalise_min_max_maps_the_mask_range_to_unit_interval():
    x = torch.tensor([[[[2.0, 4.0], [6.0, 50.0]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    assert torch.allclose(normalise_min_max(x, mask)[mask], torch.tensor([0.0, 0.5, 1.0]))


def test_sobel_of_a_ramp_is_its_slope():
    xs, ys = _coords(7, 9)
    gx, gy = sobel(torch.stack([2.0 * xs - 3.0 * ys, 0.5 * ys])[None])
    assert torch.allclose(gx[0, 0, 1:-1, 1:-1], torch.full((5, 7), 2.0))
    assert torch.allclose(gy[0, 0, 1:-1, 1:-1], torch.full((5, 7), -3.0))
    assert torch.allclose(gx[0, 1], torch.zeros(7, 9)) and torch.allclose(gy[0, 1, 1:-1, 1:-1],
                                                                          torch.full((5, 7), 0.5))


def test_laplacian_of_parabolas_is_their_constant_second_derivative():
    xs, ys = _coords(6, 8)
    lap = laplacian(torch.stack([xs**2, xs**2 + ys**2, 5.0 * xs + ys])[None])
    inner = lap[0, :, 1:-1, 1:-1]
    assert torch.allclose(inner[0], torch.full_like(inner[0], 2.0))
    assert torch.allclose(inner[1], torch.full_like(inner[1], 4.0))
    assert torch.allclose(inner[2], torch.zeros_like(inner[2]), atol=1e-5)


def test_dilate_grows_a_pixel_to_a_square_and_erode_undoes_it():
    m = torch.zeros(1, 1, 9, 9, dtype=torch.bool)
    m[0, 0, 4, 4] = True
    d = dilate(m, 5)
    assert d.sum() == 25 and d[0, 0, 2:7, 2:7].all()
    assert torch.equal(erode(d, 5), m)
    with pytest.raises(ValueError, match="odd"):
        dilate(m, 4)


def test_erode_keeps_pixels_touching_the_image_border():
    m = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    assert erode(m, 3).all()
