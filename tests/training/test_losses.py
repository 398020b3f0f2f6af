import math

from hcdp_model.geometry import dilate
from hcdp_training.losses import (
    BACKDROP_CAP, backdrop_loss, depth_edge_mask, depth_loss, GROUND_CAP, ground_order_loss,
    ground_shape_loss, LossConfig, normal_loss, PairMasks, seg_loss, stage1_loss,
    stage2_loss, temporal_depth_loss, temporal_masks, temporal_normal_loss, tgm_loss,
)
import pytest
import torch
import torch.nn.functional as F

CFG = LossConfig()
H = W = 32
T = 3


def _grid(shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32),
                            torch.arange(W, dtype=torch.float32), indexing="ij")
    return xs - shift, ys


def _depth_field(shift: float = 0.0) -> torch.Tensor:
    """Return a smooth, gently varying human depth, content moved `shift` px to the right.

    Shape [1,H,W].
    """
    xs, ys = _grid(shift)
    return (2.0 + 0.01 * xs + 0.006 * ys + 0.01 * torch.sin(xs / 3.0) * torch.cos(ys / 4.0))[None]


def _normal_field(shift: float = 0.0) -> torch.Tensor:
    """Return a smooth unit normal field facing the camera, moved `shift` px to the right.

    Shape [3,H,W].
    """
    xs, ys = _grid(shift)
    return F.normalize(torch.stack([0.3 * torch.sin(xs / 5.0), 0.2 * torch.cos(ys / 6.0),
                                    -torch.ones_like(xs)]), dim=0)


def _region(shift: int = 0) -> torch.Tensor:
    m = torch.zeros(1, H, W)
    m[:, 6:26, 6 + shift:22 + shift] = 1.0
    return m


def _frame() -> dict[str, torch.Tensor]:
    """One GT frame, batch of 2: [2,C,H,W]."""
    mask = _region()
    return {
        "depth": (_depth_field() * mask).expand(2, 1, H, W).clone(),
        "normal": (_normal_field() * mask).expand(2, 3, H, W).clone(),
        "mask": mask.expand(2, 1, H, W).clone(),
    }


def _clip() -> dict[str, torch.Tensor]:
    """GT clip [1,T,C,H,W]: the human moves 1 px right per frame, flows exact."""
    masks = torch.stack([_region(k) for k in range(T)])
    depth = torch.stack([_depth_field(k) for k in range(T)]) * masks
    normal = torch.stack([_normal_field(k) for k in range(T)]) * masks
    fwd = torch.zeros(T, 2, H, W)
    fwd[:, 0] = 1.0
    bwd = -fwd
    fields = {"depth": depth, "normal": normal, "mask": masks, "flow_fwd": fwd, "flow_bwd": bwd}
    return {k: v[None] for k, v in fields.items()}


def _perfect_prediction(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Depth an affine map of the GT (far background), normals the GT, logits = logit(mask)."""
    inside = batch["mask"] > 0.5
    depth = torch.where(inside, 3.0 * batch["depth"] + 0.5, torch.full_like(batch["depth"], 20.0))
    normal = torch.where(inside, batch["normal"],
                         torch.tensor([0.0, 0.0, -1.0]).view(3, 1, 1).expand_as(batch["normal"]))
    logits = torch.where(inside, 30.0, -30.0)
    return {"depth": depth, "normal": normal, "mask_logits": logits}


def _requires_grad(pred: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().requires_grad_(True) for k, v in pred.items()}


def _gates(batch):
    region = batch["mask"] > 0.5
    return region & (batch["depth"] > 0), region


# --- eq. 6 ---------------------------------------------------------------------------------------

def test_depth_loss_is_zero_for_any_affine_map_of_the_gt_and_positive_otherwise():
    batch = _frame()
    gate, _ = _gates(batch)
    perfect = 0.2 * batch["depth"] + 7.0
    total, terms = depth_loss(perfect, batch["depth"], gate, CFG)
    assert total.item() == pytest.approx(0.0, abs=1e-4)
    noisy = perfect + 0.05 * torch.randn_like(perfect)
    _, terms = depth_loss(noisy, batch["depth"], gate, CFG)
    assert terms["depth_l2"] > 0 and terms["depth_grad"] > 0


def test_depth_l2_term_of_a_constant_prediction_is_the_std_of_the_normalised_target():
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # normalised: 0, 1/3, 2/3, 1
    gate = torch.ones_like(target, dtype=torch.bool)
    _, terms = depth_loss(torch.full_like(target, 5.0), target, gate, LossConfig(omega_grad=0.0))
    expected = math.sqrt(((0 - 0.5) ** 2 + (1 / 3 - 0.5) ** 2 + (2 / 3 - 0.5) ** 2
                          + (1 - 0.5) ** 2) / 4)
    assert terms["depth_l2"].item() == pytest.approx(expected, rel=1e-5)


def test_depth_loss_ignores_pixels_outside_the_gate():
    batch = _frame()
    gate, _ = _gates(batch)
    pred = batch["depth"] + 0.05 * torch.rand_like(batch["depth"])
    changed = torch.where(gate, pred, torch.full_like(pred, 1e6))
    assert depth_loss(pred, batch["depth"], gate, CFG)[0].item() == pytest.approx(
        depth_loss(changed, batch["depth"], gate, CFG)[0].item(), rel=1e-6
    )


# --- eqs. 7-9 ------------------------------------------------------------------------------------

def test_normal_loss_is_zero_for_the_gt_and_each_term_positive_for_a_perturbation():
    batch = _frame()
    _, gate = _gates(batch)
    total, _ = normal_loss(batch["normal"], batch["normal"], gate, CFG)
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    wrong = batch["normal"].clone()
    wrong[:, :, 10:18,
          10:18] = F.normalize(wrong[:, :, 10:18,
                                     10:18] + torch.tensor([0.5, 0.0, 0.0]).view(3, 1, 1), dim=1)
    _, terms = normal_loss(wrong, batch["normal"], gate, CFG)
    assert terms["normal_base"] > 0 and terms["normal_grad"] > 0 and terms["normal_lap"] > 0


def test_normal_base_term_of_a_perpendicular_prediction_is_l1_plus_one_minus_cosine():
    gt = torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    pred = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    gate = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    _, terms = normal_loss(pred, gt, gate, CFG)
    assert terms["normal_base"].item() == pytest.approx(2.0 + 1.0)  # |1| + |1| and 1 - cos 90 deg
    assert terms["normal_grad"].item() == pytest.approx(0.0, abs=1e-6)  # both fields constant


def test_normal_gradient_term_weighs_errors_at_gt_normal_edges_up_to_one_plus_eta():
    gt = torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).repeat(1, 1, 12, 12)
    # a crease at x = 6
    gt[:, :, :, 6:] = F.normalize(torch.tensor([1.0, 0.0, -1.0]), dim=0).view(1, 3, 1, 1)
    gate = torch.ones(1, 1, 12, 12, dtype=torch.bool)
    # misses the crease
    pred = torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 12, 12)
    grads = [normal_loss(pred, gt, gate, LossConfig(eta=eta))[1]["normal_grad"].item()
             for eta in (0.0, 1.0)]
    # the whole error sits on the crease, where w_edge = 1 + eta
    assert grads[1] == pytest.approx(2.0 * grads[0], rel=1e-5)


# --- eq. 10 --------------------------------------------------------------------------------------

def test_seg_loss_is_zero_when_sigmoid_of_logits_equals_the_soft_mask():
    target = torch.rand(2, 1, 8, 8) * 0.98 + 0.01
    assert seg_loss(torch.logit(target), target).item() == pytest.approx(0.0, abs=1e-6)


def test_seg_loss_is_bce_for_hard_targets():
    target = torch.ones(1, 1, 4, 4)
    assert seg_loss(torch.zeros(1, 1, 4, 4), target).item() == pytest.approx(math.log(2.0),
                                                                             rel=1e-6)
    assert seg_loss(torch.full((1, 1, 4, 4), 30.0), target).item() == pytest.approx(0.0, abs=1e-6)


# --- eq. 11 --------------------------------------------------------------------------------------

def test_stage1_loss_is_zero_for_a_perfect_prediction_and_the_weighted_sum_of_its_terms():
    batch = _frame()
    total, terms = stage1_loss(_perfect_prediction(batch), batch, CFG)
    assert total.item() == pytest.approx(0.0, abs=1e-4)
    pred = _perfect_prediction(batch)
    pred["depth"] = pred["depth"] + 0.1 * torch.rand_like(pred["depth"])
    pred["mask_logits"] = torch.zeros_like(pred["mask_logits"])
    total, terms = stage1_loss(pred, batch, CFG)
    expected = (CFG.lambda_depth * terms["depth"] + CFG.lambda_normal * terms["normal"]
                + CFG.lambda_seg * terms["seg"])
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["total"] == terms["stage1"]


# --- the backdrop term (hcdp's) ------------------------------------------------------------------

def _person_on_backdrop() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return a square person (GT depth 2..3 m left to right) on an empty background.

    mask, target and gate, [2,1,H,W] each.
    """
    mask = torch.zeros(2, 1, H, W)
    mask[..., 8:24, 8:24] = 1.0
    target = torch.zeros(2, 1, H, W)
    target[..., 8:24, 8:24] = torch.linspace(2.0, 3.0, 16)
    return mask, target, mask > 0.5


def test_backdrop_loss_is_zero_for_a_flat_background_far_enough_behind_and_counts_the_shortfall():
    mask, target, gate = _person_on_backdrop()
    cfg = LossConfig(lambda_backdrop=1.0, backdrop_gap=0.5)
    # the person's normalised depth is (d - 2) / 1; a prediction 2x + 1 aligns with s = 0.5
    pred = 2.0 * target + 1.0
    pred = torch.where(gate, pred, torch.full_like(pred, 2.0 * 3.5 + 1.0))  # at 1 + gap exactly
    assert backdrop_loss(pred, target, gate, mask, cfg).item() == pytest.approx(0.0, abs=1e-5)
    farther = torch.where(gate, pred, torch.full_like(pred, 2.0 * 9.0 + 1.0))
    assert backdrop_loss(farther, target, gate, mask, cfg).item() == pytest.approx(0.0, abs=1e-5)
    # flat at the person's middle (normalised 0.5): short of 1.5 by 1.0 everywhere
    short = torch.where(gate, pred, torch.full_like(pred, 2.0 * 2.5 + 1.0))
    assert backdrop_loss(short, target, gate, mask, cfg).item() == pytest.approx(1.0, rel=1e-4)


def test_backdrop_loss_charges_a_background_ramp_its_mean_deviation_from_the_median():
    mask, target, gate = _person_on_backdrop()
    cfg = LossConfig(lambda_backdrop=1.0, backdrop_gap=0.0, backdrop_dilation=1)
    xs = torch.arange(W, dtype=torch.float32).expand(2, 1, H, W)
    ramp = 10.0 + 0.1 * xs  # far behind (no shortfall), varying by x (deviations under the cap)
    pred = torch.where(gate, target - 2.0, ramp)  # person: s = 1, t = 0
    background = ~gate
    values = ramp[background].view(2, -1)[0]
    expected = (values - values.median()).abs().mean().item()
    assert backdrop_loss(pred, target, gate, mask, cfg).item() == pytest.approx(expected, rel=1e-4)
    steep = torch.where(gate, target - 2.0, 10.0 + 10.0 * xs)  # charges capped per pixel
    capped = (10.0 * xs[background].view(2, -1)[0])
    capped = (capped - capped.median()).abs().clamp_max(BACKDROP_CAP).mean().item()
    assert backdrop_loss(steep, target, gate, mask, cfg).item() == pytest.approx(capped, rel=1e-4)


def test_backdrop_loss_ignores_the_person_and_the_band_around_it_and_images_without_a_person():
    mask, target, gate = _person_on_backdrop()
    cfg = LossConfig(lambda_backdrop=1.0, backdrop_dilation=9)
    pred = torch.where(gate, target, torch.full_like(target, 100.0)).requires_grad_(True)
    band = dilate(gate, 9) & ~gate
    with torch.no_grad():
        pred[band] = -50.0  # any value in the band around the person is free
    backdrop_loss(pred, target, gate, mask, cfg).backward()
    assert pred.grad[band].abs().max() == 0 and pred.grad[gate].abs().max() == 0
    empty = torch.zeros_like(gate)
    loss = backdrop_loss(pred, target, empty, mask * 0, cfg)
    assert loss.item() == 0.0 and torch.isfinite(loss)


def test_stage1_loss_adds_the_weighted_backdrop_term_only_when_its_weight_is_set():
    batch = _frame()
    pred = _perfect_prediction(batch)
    pred["depth"] = pred["depth"] + 0.1 * torch.rand_like(pred["depth"])
    off, terms_off = stage1_loss(pred, batch, CFG)
    assert "backdrop" not in terms_off
    cfg = LossConfig(lambda_backdrop=0.5)
    on, terms = stage1_loss(pred, batch, cfg)
    assert on.item() == pytest.approx(off.item() + 0.5 * terms["backdrop"].item(), rel=1e-6)


def _two_ground_pixels(top: float, below: float) -> tuple[torch.Tensor, ...]:
    """Return a 28x1 image whose only known pixels are ground at rows 0 and 1 (1 row apart)."""
    ground = torch.zeros(1, 1, 28, 1)
    ground[0, 0, 0, 0], ground[0, 0, 1, 0] = top, below
    return ground, torch.zeros_like(ground), torch.zeros_like(ground, dtype=torch.bool)


def test_ground_order_loss_on_one_pair_by_hand():
    cfg = LossConfig(ground_tau=0.1)
    ground, target, gate = _two_ground_pixels(2.0, 1.0)  # the top pixel is farther
    pred = torch.zeros(1, 1, 28, 1)
    pred[0, 0, 1, 0] = 1.0  # predicted the other way: the lower pixel farther
    # sigma = std(0, 1) = 1/sqrt(2); Delta = (1 - 0) / sigma = sqrt(2); sign(ln(1/2)) = -1
    wrong = 0.1 * math.log1p(math.exp(math.sqrt(2.0) / 0.1))
    assert ground_order_loss(pred, target, gate, ground, cfg).item() == pytest.approx(wrong, 1e-5)
    right = 0.1 * math.log1p(math.exp(-math.sqrt(2.0) / 0.1))
    assert ground_order_loss(-pred, target, gate, ground, cfg).item() == pytest.approx(right, 1e-4)
    # the scale and shift of the prediction do not matter
    assert ground_order_loss(3.0 * pred + 5.0, target, gate, ground, cfg).item() == \
        pytest.approx(wrong, 1e-5)
    # a pair at one depth (within 1 %) is charged |Delta|
    level, _, _ = _two_ground_pixels(2.0, 2.01)
    assert ground_order_loss(pred, target, gate, level, cfg).item() == \
        pytest.approx(math.sqrt(2.0), 1e-5)


def test_ground_order_loss_needs_the_ground_on_one_side_of_a_pair():
    cfg = LossConfig()
    ground, target, gate = _two_ground_pixels(2.0, 1.0)
    pred = torch.arange(28.0).view(1, 1, 28, 1).requires_grad_(True)
    # the same two pixels as a person: person-person pairs are the depth loss's
    loss = ground_order_loss(pred, ground, ground > 0, torch.zeros_like(ground), cfg)
    loss.backward()
    assert loss.item() == 0.0 and not pred.grad.any()
    # a person pixel above the ground pixel: the pair counts (person nearer: 1 < 2)
    person_target = torch.zeros_like(ground)
    person_target[0, 0, 0, 0] = 1.0
    only_ground = torch.zeros_like(ground)
    only_ground[0, 0, 1, 0] = 2.0
    nearer = torch.zeros(1, 1, 28, 1)
    nearer[0, 0, 1, 0] = 1.0  # the person (row 0) predicted nearer than the ground (row 1)
    loss = ground_order_loss(nearer, person_target, person_target > 0, only_ground, cfg)
    assert loss.item() == pytest.approx(0.1 * math.log1p(math.exp(-math.sqrt(2.0) / 0.1)), 1e-4)


def test_ground_order_loss_prefers_a_ground_that_recedes_upwards_and_is_level_along_rows():
    cfg = LossConfig()
    rows = torch.arange(56.0).view(1, 1, 56, 1).expand(2, 1, 56, 56)
    ground = 30.0 / (1.0 + rows)  # planar depth of a ground seen from above: far at the top
    none = torch.zeros_like(ground, dtype=torch.bool)
    truth = ground_order_loss(ground.clone(), ground, none, ground, cfg)
    upside_down = ground_order_loss(ground.flip(2), ground, none, ground, cfg)
    ramp = ground_order_loss(rows.flip(2) + 0.5 * torch.arange(56.0), ground, none, ground, cfg)
    assert truth < 0.2 * upside_down and truth < ramp
    # images without a ground count 0 in the mean
    half = ground.clone()
    half[1] = 0.0
    assert ground_order_loss(ground.flip(2), ground, none, half, cfg).item() == \
        pytest.approx(upside_down.item(), 1e-5)


def test_ground_shape_loss_is_zero_up_to_scale_and_shift_and_counts_a_flip_by_hand():
    cfg = LossConfig(ground_form="shape")
    none = torch.zeros(1, 1, 4, 1, dtype=torch.bool)
    ground = torch.tensor([4.0, 3.0, 2.0, 1.0]).view(1, 1, 4, 1)  # far at the top
    zero = torch.zeros_like(ground)
    assert ground_shape_loss(3.0 * ground + 5.0, zero, none, ground, cfg).item() == \
        pytest.approx(0.0, abs=1e-6)
    # median 2.5, mean absolute deviation 1: z' = 1.5, 0.5, -0.5, -1.5; flipped p' = -z'
    flipped = ground_shape_loss(-ground, zero, none, ground, cfg).item()
    assert flipped == pytest.approx((3.0 + 1.0 + 1.0 + 3.0) / 4, rel=1e-6)
    # a person pixel counts with its own GT depth; an image without ground counts 0
    gate = torch.tensor([False, False, False, True]).view(1, 1, 4, 1)
    target = torch.where(gate, torch.ones_like(ground), zero)
    on_ground = torch.where(gate, zero, ground)
    assert ground_shape_loss(ground, target, gate, on_ground, cfg).item() == \
        pytest.approx(0.0, abs=1e-6)
    both = torch.cat([ground, ground]).clone()
    assert ground_shape_loss(-both, zero.expand(2, 1, 4, 1), none.expand(2, 1, 4, 1),
                             torch.cat([ground, zero]), cfg).item() == pytest.approx(flipped)


def test_ground_shape_loss_caps_each_pixel_and_the_form_is_checked():
    cfg = LossConfig(ground_form="shape")
    ground = torch.tensor([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]).view(1, 1, 8, 1)
    none = torch.zeros_like(ground, dtype=torch.bool)
    pred = ground.clone()
    pred[0, 0, 0, 0] = 1000.0  # one wild pixel
    cost = ground_shape_loss(pred, torch.zeros_like(ground), none, ground, cfg).item()
    # medians (the lower of the two middle values) 2 and 1; deviations (998 + 3) / 8 and 0.5:
    # p' = 998/125.125 (charged the cap, not 7.98), -1/125.125 three times, 0 four times;
    # z' = 0 four times, 2 four times
    assert cost == pytest.approx((GROUND_CAP + 3 / 125.125 + 4 * 2.0) / 8, rel=1e-5)
    with pytest.raises(ValueError, match="ground_form: expected one of"):
        LossConfig(ground_form="ssi")


def test_the_backdrop_term_leaves_the_ground_to_the_ground_term():
    mask, target, gate = _person_on_backdrop()
    cfg = LossConfig(lambda_backdrop=1.0, backdrop_gap=0.5)
    pred = torch.where(gate, 2.0 * target + 1.0, torch.full_like(target, 2.0 * 2.5 + 1.0))
    assert backdrop_loss(pred, target, gate, mask, cfg).item() == pytest.approx(1.0, rel=1e-4)
    ground = torch.where(mask > 0.5, torch.zeros_like(target), torch.full_like(target, 5.0))
    assert backdrop_loss(pred, target, gate, mask, cfg, ground).item() == 0.0


def test_stage1_loss_adds_the_ground_term_where_a_batch_has_ground_depth():
    batch = _frame()
    pred = _perfect_prediction(batch)
    cfg = LossConfig(lambda_ground=2.0)
    off, terms_off = stage1_loss(pred, batch, cfg)  # a batch from before the ground: no term
    assert "ground" not in terms_off
    rows = torch.arange(H, dtype=torch.float32).view(1, 1, H, 1).expand_as(batch["depth"])
    with_ground = {**batch, "ground_depth": torch.where(batch["mask"] > 0.5, 0.0, 50.0 - rows)}
    pred = {**pred, "depth": pred["depth"] + 0.01 * rows}  # the ground the wrong way round
    _, terms_zero = stage1_loss(pred, with_ground, LossConfig())
    on, terms = stage1_loss(pred, with_ground, cfg)
    assert "ground" not in terms_zero and terms["ground"].item() > 0
    assert on.item() == pytest.approx(terms_zero["total"].item() + 2.0 * terms["ground"].item(),
                                      rel=1e-6)


# --- eqs. 12-14 ----------------------------------------------------------------------------------

def test_depth_edge_mask_marks_a_step_and_its_dilated_neighbourhood_only():
    depth = torch.ones(1, 1, 16, 16)
    depth[..., 8:] = 2.0  # step between columns 7 and 8
    edges = depth_edge_mask(depth, threshold=0.1, dilation=3)[0, 0]
    assert edges[:, 6:10].all()  # Sobel responds on columns 7, 8; dilation adds 6 and 9
    assert not edges[:, :6].any() and not edges[:, 10:].any()


def test_temporal_masks_exclude_pixels_that_leave_the_image_and_silhouette_edges():
    batch = _clip()
    pred = _perfect_prediction(batch)
    masks = temporal_masks(pred["depth"], batch["flow_fwd"], batch["flow_bwd"], CFG,
                           batch["mask"] > 0.5)
    assert masks.k.shape == (1, T - 1, 1, H, W) and masks.k1.shape == (1, T - 1, 1, H, W)
    assert masks.k.any() and masks.k1.any()
    inside = batch["mask"] > 0.5
    assert not (masks.k & ~inside[:, :-1]).any() and not (masks.k1 & ~inside[:, 1:]).any()
    assert not masks.k[..., :, W - 1].any() and not masks.k1[..., :, 0].any()
    # two pixels inside the silhouette (x = 6 + k, the left edge) are within the dilated depth edge
    assert not masks.k[0, 0, 0, 10:20, 6:8].any()


def test_temporal_losses_are_zero_for_consistent_motion_and_positive_for_flicker():
    batch = _clip()
    pred = _perfect_prediction(batch)
    region = batch["mask"] > 0.5
    masks = temporal_masks(pred["depth"], batch["flow_fwd"], batch["flow_bwd"], CFG, region)
    args = (batch["flow_fwd"], batch["flow_bwd"], masks)
    assert temporal_depth_loss(pred["depth"], *args).item() == pytest.approx(0.0, abs=1e-5)
    assert temporal_normal_loss(pred["normal"], *args).item() == pytest.approx(0.0, abs=1e-5)
    flicker_depth = pred["depth"].clone()
    flicker_depth[:, 1] += 0.1 * region[:, 1]
    flicker_normal = pred["normal"].clone()
    flicker_normal[:, 1] = F.normalize(flicker_normal[:, 1] + 0.2, dim=1)
    assert temporal_depth_loss(flicker_depth, *args) > 0.01
    assert temporal_normal_loss(flicker_normal, *args) > 0.001


def test_temporal_depth_loss_is_invariant_to_the_scale_of_the_relative_depth():
    batch = _clip()
    region = batch["mask"] > 0.5
    depth = _perfect_prediction(batch)["depth"] + 0.05 * torch.rand(1, T, 1, H, W)
    masks = temporal_masks(depth, batch["flow_fwd"], batch["flow_bwd"], CFG, region)
    a = temporal_depth_loss(depth, batch["flow_fwd"], batch["flow_bwd"], masks)
    b = temporal_depth_loss(5.0 * depth, batch["flow_fwd"], batch["flow_bwd"], masks)
    assert a.item() == pytest.approx(b.item(), rel=1e-5) and a > 0


def test_temporal_depth_loss_gives_no_gradient_to_pixels_outside_the_valid_set():
    """Check a pixel outside M (here the clip's deepest pixel) cannot lower the loss by moving.

    So the network is not paid to stretch the depth range with pixels the loss does not compare.
    """
    batch = _clip()
    region = batch["mask"] > 0.5
    depth = _perfect_prediction(batch)["depth"] + 0.05 * torch.rand(1, T, 1, H, W)
    far = (0, 1, 0, 24, 12)  # inside the human of frame 1, far from the valid block below
    depth[far] = depth[region].max() + 1.0
    valid = torch.zeros(1, T - 1, 1, H, W, dtype=torch.bool)
    valid[..., 8:14, 10:16] = True
    masks = PairMasks(valid, valid.clone())
    depth.requires_grad_(True)
    temporal_depth_loss(depth, batch["flow_fwd"], batch["flow_bwd"], masks).backward()
    assert depth.grad[far] == 0
    assert depth.grad[0, 1, 0, 8:14, 10:16].abs().sum() > 0


def test_temporal_depth_loss_gives_no_gradient_along_a_global_scale_or_shift_of_the_depth():
    """Check shrinking the contrast of the whole map does not lower the loss.

    Relative depth has a free scale.
    """
    batch = _clip()
    region = batch["mask"] > 0.5
    depth = _perfect_prediction(batch)["depth"] + 0.05 * torch.rand(1, T, 1, H, W)
    masks = temporal_masks(depth, batch["flow_fwd"], batch["flow_bwd"], CFG, region)
    # float64, so round-off stays far below the tolerance (the analytic gradient is 0)
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    shift = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    loss = temporal_depth_loss(scale * depth.double() + shift, batch["flow_fwd"].double(),
                               batch["flow_bwd"].double(), masks)
    loss.backward()
    assert loss > 0.01
    assert abs(scale.grad.item()) < 1e-5 * loss.item()
    assert abs(shift.grad.item()) < 1e-5 * loss.item()


def test_temporal_depth_loss_with_a_reference_is_eq_12_in_units_of_the_references_range():
    """Check the term with a reference is eq. 12 in units of the reference's range.

    Prediction = 3 g + 0.5 for a flickering reference g, flow 1 px to the right, M a hand-set
    block: the term is eq. 12 on g / (max g - min g over the compared pixels), computed here by
    indexing, not warping.
    The reference's own scale and shift do not matter, a NaN pixel of it is ignored, and the
    depth's scale still does not matter.
    """
    g = 1.0 + torch.rand(1, T, 1, H, W, dtype=torch.float64)
    pred = 3.0 * g + 0.5
    fwd = torch.zeros(1, T, 2, H, W, dtype=torch.float64)
    fwd[:, :, 0] = 1.0
    valid = torch.zeros(1, T - 1, 1, H, W, dtype=torch.bool)
    valid[..., 8:14, 10:16] = True
    masks = PairMasks(valid, valid.clone())
    compared = torch.zeros(1, T, 1, H, W, dtype=torch.bool)
    compared[..., 8:14, 10:16] = True
    span = g[compared].max() - g[compared].min()
    u = g[0, :, 0] / span
    rows, cols = slice(8, 14), slice(10, 16)
    expected = sum(
        (u[k, rows, cols] - u[k + 1, rows,
                              11:17]).abs().mean() + (u[k + 1, rows, cols] - u[k, rows,
                                                                               9:15]).abs().mean()
        for k in range(T - 1)
    ) / (T - 1)
    loss = temporal_depth_loss(pred, fwd, -fwd, masks, reference=g)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and expected > 0.05
    with_nan = (7.0 * g - 2.0).clone()
    with_nan[0, 0, 0, 0, 0] = torch.nan  # outside M: ignored
    assert temporal_depth_loss(5.0 * pred, fwd, -fwd, masks,
                               reference=with_nan).item() == pytest.approx(loss.item(), rel=1e-6)
    assert temporal_depth_loss(pred, fwd, -fwd, masks).item() == pytest.approx(
        loss.item() * (span / (g[compared] - g[compared].mean()).abs().mean()).item(), rel=1e-6
    )


def test_tgm_loss_is_zero_for_an_affine_map_of_the_gt_clip_and_positive_for_flicker():
    batch = _clip()
    gate, _ = _gates(batch)
    perfect = 2.0 * batch["depth"] + 1.0
    assert tgm_loss(perfect, batch["depth"], gate, CFG).item() == pytest.approx(0.0, abs=1e-6)
    flicker = perfect.clone()
    flicker[:, 1] += 0.01
    assert tgm_loss(flicker, batch["depth"], gate, CFG) > 0


@pytest.mark.parametrize("temporal", ["flow", "tgm"])
def test_stage2_loss_is_zero_for_a_perfect_clip_and_adds_the_weighted_temporal_terms(temporal):
    batch = _clip()
    cfg = LossConfig(temporal=temporal)
    total, terms = stage2_loss(_perfect_prediction(batch), batch, cfg)
    assert total.item() == pytest.approx(0.0, abs=1e-4)
    pred = _perfect_prediction(batch)
    pred["depth"] = pred["depth"] + 0.05 * torch.rand_like(pred["depth"])
    total, terms = stage2_loss(pred, batch, cfg)
    temporal_part = (
        cfg.lambda_temp_depth * terms["temp_depth"] + cfg.lambda_temp_normal * terms["temp_normal"]
        if temporal == "flow" else cfg.lambda_tgm * terms["tgm"]
    )
    assert total.item() == pytest.approx((terms["stage1"] + temporal_part).item(), rel=1e-5)
    assert temporal_part > 0


# --- gradients and numerics ----------------------------------------------------------------------

@pytest.mark.parametrize("temporal", ["flow", "tgm"])
def test_gradients_reach_every_prediction_through_the_stage2_loss(temporal):
    batch = _clip()
    pred = _perfect_prediction(batch)
    pred["depth"] = pred["depth"] + 0.05 * torch.rand_like(pred["depth"])
    pred["normal"] = F.normalize(pred["normal"] + 0.1 * torch.rand_like(pred["normal"]), dim=2)
    pred["mask_logits"] = torch.zeros_like(pred["mask_logits"])
    pred = _requires_grad(pred)
    total, _ = stage2_loss(pred, batch, LossConfig(temporal=temporal))
    total.backward()
    for name, x in pred.items():
        assert torch.isfinite(x.grad).all(), name
        assert x.grad.abs().sum() > 0, name


def test_each_temporal_loss_passes_gradients_to_its_input():
    batch = _clip()
    region = batch["mask"] > 0.5
    pred = _perfect_prediction(batch)
    depth = (pred["depth"] + 0.05 * torch.rand_like(pred["depth"])).requires_grad_(True)
    normal = F.normalize(pred["normal"] + 0.1 * torch.rand_like(pred["normal"]),
                         dim=2).requires_grad_(True)
    masks = temporal_masks(depth, batch["flow_fwd"], batch["flow_bwd"], CFG, region)
    temporal_depth_loss(depth, batch["flow_fwd"], batch["flow_bwd"], masks).backward()
    temporal_normal_loss(normal, batch["flow_fwd"], batch["flow_bwd"], masks).backward()
    assert depth.grad.abs().sum() > 0 and normal.grad.abs().sum() > 0


def test_losses_are_finite_with_zero_and_gradients_when_every_mask_is_empty():
    batch = _clip()
    batch["mask"] = torch.zeros_like(batch["mask"])
    batch["depth"] = torch.zeros_like(batch["depth"])
    pred = _requires_grad({
        "depth": torch.rand(1, T, 1, H, W),
        "normal": F.normalize(torch.rand(1, T, 3, H, W), dim=2),
        "mask_logits": torch.randn(1, T, 1, H, W),
    })
    for temporal in ("flow", "tgm"):
        total, terms = stage2_loss(pred, batch, LossConfig(temporal=temporal))
        assert torch.isfinite(total)
        assert all(torch.isfinite(v) for v in terms.values())
        assert terms["depth"] == 0 and terms["normal"] == 0
        total.backward()
        assert all(torch.isfinite(x.grad).all() for x in pred.values())


def test_losses_compute_in_float32_under_autocast():
    batch = _frame()
    pred = {k: v.to(torch.bfloat16) for k, v in _perfect_prediction(batch).items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, _ = stage1_loss(pred, batch, CFG)
    assert total.dtype == torch.float32 and torch.isfinite(total)


def test_stage2_loss_rejects_single_frames_with_a_clear_error():
    batch = _frame()
    batch["flow_fwd"] = batch["flow_bwd"] = torch.zeros(2, 2, H, W)
    with pytest.raises(ValueError, match=r"\[B,T,C,H,W\]"):
        stage2_loss(_perfect_prediction(batch), batch, CFG)


@pytest.mark.parametrize("kwargs, field", [
    ({"temporal": "optical"}, "temporal"), ({"edge_dilation": 4}, "edge_dilation"),
    ({"lambda_normal": -1.0}, "lambda_normal"),
    ({"laplacian_scales": [0, 2]}, "laplacian_scales"),
    ({"backdrop_dilation": 2}, "backdrop_dilation"),
    ({"lambda_backdrop": -1.0}, "lambda_backdrop"),
])
def test_loss_config_rejects_invalid_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LossConfig(**kwargs)


def test_loss_config_has_the_paper_weights():
    cfg = LossConfig(laplacian_scales=[1, 2])
    assert (cfg.lambda_depth, cfg.lambda_normal, cfg.lambda_seg, cfg.lambda_temp_depth,
            cfg.lambda_temp_normal) == (
        1.0, 0.1, 0.05, 1.0, 0.1)
    assert cfg.laplacian_scales == (1, 2)
