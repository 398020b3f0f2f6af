import math

from hcdp_training.metrics import (
    depth_errors, dtssd, evaluate_sequence, flow_opencv, mask_errors, METRIC_NAMES,
    MetricAccumulator, normal_errors, temporal_depth_errors, temporal_normal_errors,
    temporal_valid_mask,
)
import numpy as np
import pytest
import torch


def _vec(x: float, y: float, z: float, h: int = 4, w: int = 4) -> torch.Tensor:
    return torch.tensor([x, y, z], dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, h, w).clone()


def _shift_right(x: torch.Tensor, by: int) -> torch.Tensor:
    """Content moved `by` px to the right (edge columns replicated), shape [...,H,W]."""
    return torch.cat([x[..., :1].expand(*x.shape[:-1], by), x[..., :-by]], dim=-1)


# --- depth (eqs. 15-16) --------------------------------------------------------------------------

def test_depth_errors_are_zero_for_an_affine_map_of_the_gt():
    gt = torch.rand(2, 1, 6, 6) + 1.0
    mask = torch.ones_like(gt, dtype=torch.bool)
    out = depth_errors(4.0 * gt - 2.0, gt, mask)
    assert torch.allclose(out["RMSE"], torch.zeros(2), atol=1e-5)
    assert torch.allclose(out["AbsRel"], torch.zeros(2), atol=1e-5)


def test_depth_errors_of_a_constant_prediction_match_hand_computed_values():
    gt = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = depth_errors(torch.full_like(gt, 7.0), gt, torch.ones_like(gt, dtype=torch.bool))
    # aligned prediction = mean of the normalised GT (0.5), i.e. 2.5 in GT units
    rmse = math.sqrt((0.25 + (1 / 6) ** 2 + (1 / 6) ** 2 + 0.25) / 4)
    abs_rel = (1.5 / 1 + 0.5 / 2 + 0.5 / 3 + 1.5 / 4) / 4
    assert out["RMSE"].item() == pytest.approx(rmse, rel=1e-5)
    assert out["AbsRel"].item() == pytest.approx(abs_rel, rel=1e-5)


def test_depth_errors_skip_invalid_gt_and_are_nan_for_an_empty_mask():
    gt = torch.tensor([[[[1.0, 2.0], [math.nan, 0.0]]], [[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.ones_like(gt, dtype=torch.bool)
    mask[1] = False
    out = depth_errors(torch.tensor([[[[5.0, 6.0], [0.0, 0.0]]]] * 2), gt, mask)
    assert out["RMSE"][0].item() == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(out["RMSE"][1].item()) and math.isnan(out["AbsRel"][1].item())


# --- normals (eqs. 17-19) ------------------------------------------------------------------------

def test_normal_errors_of_perpendicular_normals_are_ninety_degrees():
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    out = normal_errors(_vec(1, 0, 0), _vec(0, 0, -1), mask)
    assert out["AngleMean"].item() == pytest.approx(90.0, abs=1e-3)
    assert out["AngleMedian"].item() == pytest.approx(90.0, abs=1e-3)
    assert out["Within11.25"].item() == 0 and out["Within22.5"].item() == 0
    assert out["Within30"].item() == 0


def test_normal_errors_mix_of_angles_gives_hand_computed_mean_median_and_percentages():
    gt = _vec(0, 0, -1, 1, 4)
    angles = torch.deg2rad(torch.tensor([0.0, 20.0, 25.0, 60.0]))
    pred = torch.stack([torch.sin(angles), torch.zeros(4), -torch.cos(angles)]).view(1, 3, 1, 4)
    out = normal_errors(pred, gt, torch.ones(1, 1, 1, 4, dtype=torch.bool))
    assert out["AngleMean"].item() == pytest.approx(26.25, abs=1e-3)
    assert out["AngleMedian"].item() == pytest.approx(22.5, abs=1e-3)
    assert out["Within11.25"].item() == pytest.approx(25.0)
    assert out["Within22.5"].item() == pytest.approx(50.0)
    assert out["Within30"].item() == pytest.approx(75.0)


# --- temporal (eqs. 20-24) -----------------------------------------------------------------------

def _translation_flow(h: int, w: int, dx: float) -> tuple[torch.Tensor, torch.Tensor]:
    fwd = torch.zeros(1, 2, h, w)
    fwd[:, 0] = dx
    return fwd, -fwd


def test_depth_translated_by_a_known_flow_has_zero_opw():
    d0 = torch.rand(1, 1, 10, 12)
    d1 = _shift_right(d0, 2)
    fwd, bwd = _translation_flow(10, 12, 2.0)
    valid = temporal_valid_mask(torch.ones_like(d0, dtype=torch.bool), fwd, bwd)
    out = temporal_depth_errors(d0, d1, fwd, valid)
    assert out["OPW"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["TC-RMSE"].item() == pytest.approx(0.0, abs=1e-6)
    assert valid[..., :10].all() and not valid[..., 10:].any()


def test_a_constant_offset_between_frames_gives_opw_and_tc_rmse_of_that_offset():
    d0 = torch.rand(1, 1, 10, 12)
    d1 = _shift_right(d0, 2) + 0.1
    fwd, bwd = _translation_flow(10, 12, 2.0)
    out = temporal_depth_errors(d0, d1, fwd,
                                temporal_valid_mask(torch.ones_like(d0, dtype=torch.bool), fwd,
                                                    bwd))
    assert out["OPW"].item() == pytest.approx(0.1, abs=1e-5)
    assert out["TC-RMSE"].item() == pytest.approx(0.1, abs=1e-5)


def test_temporal_valid_mask_drops_occluded_pixels_and_pixels_off_the_object():
    fwd = torch.zeros(1, 2, 8, 12)
    fwd[0, 0, 2:6, 1:4] = 3.0  # a block moves 3 px right
    bwd = torch.zeros(1, 2, 8, 12)
    bwd[0, 0, 2:6, 4:7] = -3.0
    human = torch.zeros(1, 1, 8, 12, dtype=torch.bool)
    human[..., :, :8] = True
    m = temporal_valid_mask(human, fwd, bwd, tau_c=1.0)[0, 0]
    assert m[2:6, 1:4].all() and not m[2:6, 4:7].any() and not m[:, 8:].any()
    assert temporal_valid_mask(human, fwd)[0, 0, 2:6, 4:7].all(), (
        "without backward flow there is no cycle check")


def test_normal_temporal_errors_hand_computed():
    n0 = _vec(0, 0, -1, 6, 6)
    n1 = _vec(1, 0, -1, 6, 6)  # 45 degrees from n0 everywhere
    fwd = torch.zeros(1, 2, 6, 6)
    valid = torch.ones(1, 1, 6, 6, dtype=torch.bool)
    out = temporal_normal_errors(n0, n1, fwd, valid, gt_k=n0, gt_k1=_vec(0, 1, -1, 6, 6))
    assert out["TC-Mean"].item() == pytest.approx(45.0, abs=1e-3)
    assert out["TC-Abs"].item() == pytest.approx(0.0, abs=1e-3), "the GT turns by 45 degrees too"
    out = temporal_normal_errors(n0, n1, fwd, valid, gt_k=n0, gt_k1=n0)
    assert out["TC-Abs"].item() == pytest.approx(45.0, abs=1e-3)


# --- masks ---------------------------------------------------------------------------------------

def test_mask_errors_and_dtssd_hand_computed():
    gt = torch.zeros(1, 1, 10, 10)
    gt[..., :, :5] = 1.0
    pred = torch.zeros(1, 1, 10, 10)
    pred[..., :, 2:7] = 0.9
    out = mask_errors(pred, gt)
    assert out["IoU"].item() == pytest.approx(30 / 70)
    sad = 20 * 1.0 + 30 * 0.1 + 20 * 0.9
    assert out["SAD"].item() == pytest.approx(sad / 1e3, rel=1e-5)
    assert out["MSE"].item() == pytest.approx((20 * 1.0 + 30 * 0.01 + 20 * 0.81) / 100 * 1e3,
                                              rel=1e-5)
    # the prediction flickers by 0.2 on 25 pixels while the GT is still
    pred_next = pred.clone()
    pred_next[..., :5, :5] += 0.2
    assert dtssd(pred, pred_next, gt, gt).item() == pytest.approx(math.sqrt(25 * 0.04 / 100) * 100,
                                                                  rel=1e-5)
    assert dtssd(pred, pred, gt, gt).item() == 0.0


def test_iou_of_two_empty_masks_is_one():
    assert mask_errors(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3))["IoU"].item() == 1.0


# --- sequences and aggregation -------------------------------------------------------------------

def _sequence(t: int = 4, h: int = 16, w: int = 20, flicker: float = 0.0) -> dict[str, np.ndarray]:
    """Build a human moving 1 px/frame right; prediction = 2 * GT + 1 (+ flicker on odd frames)."""
    rng = np.random.default_rng(0)
    base = 2.0 + rng.random((h, w + t)).astype(np.float32)
    depth = np.stack([base[:, t - k:t - k + w] for k in range(t)])
    mask = np.zeros((t, h, w), np.float32)
    for k in range(t):
        mask[k, 3:13, 4 + k:12 + k] = 1.0
    normal = np.zeros((t, h, w, 3), np.float32)
    normal[..., 2] = -1.0
    fwd = np.zeros((t, h, w, 2), np.float32)
    fwd[..., 0] = 1.0
    pred = 2.0 * depth + 1.0 + flicker * (np.arange(t) % 2)[:, None, None]
    return {"pred_depth": pred, "pred_normal": normal, "pred_mask": mask, "flow_fwd": fwd,
            "gt_depth": np.where(mask > 0.5, depth, np.nan),
            "gt_normal": normal, "gt_mask": mask, "flow_bwd": -fwd}


def test_evaluate_sequence_of_a_perfect_prediction():
    out = evaluate_sequence(**_sequence())
    assert list(out) == list(METRIC_NAMES)
    assert out["RMSE"].shape == (4,) and out["OPW"].shape == (3,)
    for name in ("AbsRel", "RMSE", "AngleMean", "OPW", "TC-RMSE", "TC-Mean", "TC-Abs", "SAD",
                 "MSE", "dtSSD"):
        assert np.allclose(out[name], 0.0, atol=1e-4), name
    assert np.allclose(out["IoU"], 1.0) and np.allclose(out["Within11.25"], 100.0)


def test_evaluate_sequence_counts_per_frame_shift_as_flicker_in_the_temporal_metrics():
    out = evaluate_sequence(**_sequence(flicker=0.5))
    assert np.allclose(out["RMSE"], 0.0, atol=1e-4), "per-frame alignment absorbs the shift"
    assert (out["OPW"] > 0.05).all(), "one alignment per sequence does not"


def test_evaluate_sequence_without_ground_truth_reports_only_temporal_metrics():
    seq = _sequence()
    out = evaluate_sequence(seq["pred_depth"], seq["pred_normal"], seq["pred_mask"],
                            seq["flow_fwd"])
    assert set(out) == {"OPW", "TC-RMSE", "TC-Mean"}
    assert np.allclose(out["OPW"], 0.0, atol=1e-5)


def test_evaluate_sequence_rejects_sequences_of_different_lengths():
    seq = _sequence()
    seq["flow_fwd"] = seq["flow_fwd"][:2]
    with pytest.raises(ValueError, match="equal length"):
        evaluate_sequence(**seq)


def test_accumulator_averages_over_frames_skipping_nan_and_per_sequence():
    acc = MetricAccumulator()
    acc.add({"RMSE": np.array([1.0, 2.0, np.nan]), "OPW": np.array([0.5, 0.5])}, sequence="a")
    acc.add({"RMSE": 6.0, "custom": 1.0}, sequence="b")
    assert acc.summary() == {"RMSE": pytest.approx(3.0), "OPW": 0.5, "custom": 1.0}
    assert acc.counts() == {"RMSE": 3, "OPW": 2, "custom": 1}
    assert acc.sequence_summary()["a"]["RMSE"] == pytest.approx(1.5)
    assert list(acc.summary())[:2] == ["RMSE", "OPW"]


# --- OpenCV flow ---------------------------------------------------------------------------------

def test_flow_opencv_recovers_a_translation_in_the_forward_convention():
    rng = np.random.default_rng(1)
    texture = (rng.random((20, 24)) * 255).astype(np.uint8)
    texture = np.kron(texture, np.ones((4, 4), np.uint8))  # 80 x 96, blocky texture DIS can track
    prev = np.repeat(texture[:, 10:74, None], 3, axis=2)
    # content moved 3 px right: prev(p) = next(p + 3)
    nxt = np.repeat(texture[:, 7:71, None], 3, axis=2)
    flow = flow_opencv(prev, nxt)
    assert flow.shape == (80, 64, 2) and flow.dtype == np.float32
    inner = flow[10:-10, 10:-10]
    assert np.median(inner[..., 0]) == pytest.approx(3.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(0.0, abs=0.25)


def test_flow_opencv_rejects_mismatched_images():
    with pytest.raises(ValueError, match="same shape"):
        flow_opencv(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
