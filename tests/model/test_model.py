from hcdp_model.config import preset
from hcdp_model.model import HCDPModel
import pytest
from tests.model.helpers import activate_temporal, micro_config, random_clip
import torch


def test_outputs_have_frame_shapes_and_valid_ranges():
    model = HCDPModel(micro_config()).eval()
    clip = random_clip(model, frames=2, batch=2)
    with torch.no_grad():
        out = model(clip)
    s = model.cfg.resolution
    assert out["depth"].shape == (2, 2, 1, s, s)
    assert out["normal"].shape == (2, 2, 3, s, s)
    assert out["mask_logits"].shape == (2, 2, 1, s, s)
    assert (out["depth"] >= 0).all()
    torch.testing.assert_close(out["normal"].norm(dim=2), torch.ones(2, 2, s, s), atol=1e-5,
                               rtol=0)


@pytest.mark.parametrize("family", ["dinov2", "dinov3"])
@pytest.mark.parametrize("prior", ["learned", "fourier_uv", "none"])
def test_every_variant_runs(family, prior):
    model = HCDPModel(micro_config(family=family, prior=prior)).eval()
    with torch.no_grad():
        out = model(random_clip(model, frames=1))
    assert torch.isfinite(out["depth"]).all()


def test_wrong_input_shape_is_rejected_with_the_expected_size():
    model = HCDPModel(micro_config())
    with pytest.raises(ValueError, match="expected a clip"):
        model(torch.zeros(1, 3, 56, 56))
    with pytest.raises(ValueError, match="expected frames of 56x56"):
        model(torch.zeros(1, 1, 3, 64, 64))


def test_inserting_temporal_blocks_leaves_stage1_predictions_unchanged():
    model = HCDPModel(micro_config()).eval()
    clip = random_clip(model, frames=4)
    with torch.no_grad():
        before = model(clip)
        model.insert_temporal_blocks("bidirectional")
        after = model(clip)
    assert model.temporal_blocks is not None
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_causal_output_of_frame_t_ignores_later_frames():
    model = activate_temporal(HCDPModel(micro_config(temporal=True, mode="causal"))).eval()
    clip = random_clip(model, frames=5)
    changed = clip.clone()
    changed[:, 3:] = torch.randn_like(changed[:, 3:])
    with torch.no_grad():
        a, b = model(clip)["depth"], model(changed)["depth"]
    assert torch.equal(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_bidirectional_output_of_frame_t_depends_on_later_frames():
    model = activate_temporal(HCDPModel(micro_config(temporal=True, mode="bidirectional"))).eval()
    clip = random_clip(model, frames=4)
    changed = clip.clone()
    changed[:, 3] = torch.randn_like(changed[:, 3])
    with torch.no_grad():
        a, b = model(clip)["depth"], model(changed)["depth"]
    assert not torch.allclose(a[:, 0], b[:, 0])


def test_causal_window_limits_how_far_back_a_frame_looks():
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    clip = random_clip(model, frames=5)
    changed = clip.clone()
    changed[:, 0] = torch.randn_like(changed[:, 0])
    with torch.no_grad():
        a, b = model(clip, window=3)["depth"], model(changed, window=3)["depth"]
    assert not torch.allclose(a[:, 2], b[:, 2])  # frame 2 still sees frame 0
    assert torch.equal(a[:, 3:], b[:, 3:])       # frames 3, 4 do not


def test_time_enters_only_as_a_relative_position():
    """Check shifting a clip in time changes nothing.

    Shifting means prepending frames that are masked out by the window.
    """
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    clip = random_clip(model, frames=6)
    with torch.no_grad():
        a = model(clip[:, 2:], window=3)["depth"]
        b = model(clip, window=3)["depth"][:, 2:]
    torch.testing.assert_close(a[:, 2:], b[:, 2:], atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_trainable_block():
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).train()
    out = model(random_clip(model, frames=3))
    (out["depth"].mean() + out["normal"][:, :, 0].mean() + out["mask_logits"].mean()).backward()
    # mask_token is kept only so official checkpoints load; the prior's head is trained in stage 0.
    unused = {"encoder.mask_token", "human_prior.encoder.head.weight",
              "human_prior.encoder.head.bias"}
    without = [n for n, p in model.named_parameters()
               if n not in unused and (p.grad is None or p.grad.abs().sum() == 0)]
    assert without == []
    for name, block in model.block_modules().items():
        assert any(p.grad is not None for p in block.parameters()), name


def test_frozen_prior_encoder_gets_no_gradient():
    model = HCDPModel(micro_config())
    model.freeze_prior_encoder()
    model(random_clip(model, frames=1))["depth"].mean().backward()
    assert all(p.grad is None for p in model.human_prior.encoder.parameters())
    assert model.human_prior.psi.weight.grad is not None


def test_tiny_preset_builds_and_runs_at_its_resolution():
    cfg = preset("tiny")
    model = HCDPModel(cfg).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 3, cfg.resolution, cfg.resolution))
    assert out["depth"].shape[-1] == cfg.resolution
