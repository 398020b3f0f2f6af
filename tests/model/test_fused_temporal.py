"""The fused temporal block (issue 17).

A temporal block after every per-frame path whose update comes only from earlier frames. It is the
identity without a past (window 1 = the model without it), the past changes its output, and
streaming (functional, ring, export graph) equals the offline causal forward, resets included.
"""
from __future__ import annotations

import copy

from hcdp_model.backends.step import ExportStep, InPlaceStreamingStep, StreamingStep
from hcdp_model.config import ConfigError
from hcdp_model.model import HCDPModel
from hcdp_model.temporal import FusedTemporalBlock
import pytest
from tests.model.helpers import activate_temporal, micro_config, random_clip
import torch


def fused_model(window: int = 3, scale: float = 0.5) -> HCDPModel:
    """Build a micro stage-2 model whose fused block has a non-zero projection and time bias."""
    model = activate_temporal(HCDPModel(micro_config(temporal=True)))
    model.cfg.temporal.fused_window = window
    model.insert_fused_temporal_block()
    g = torch.Generator().manual_seed(3)
    block = model.fused_temporal
    with torch.no_grad():  # every parameter away from its initialisation
        for p in block.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
        block.proj_out.weight.add_(torch.eye(block.proj_out.in_features) * 0.5)
    return model.eval()


def test_a_fresh_fused_block_is_the_identity():
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    clip = random_clip(model, 5)
    with torch.no_grad():
        before = model(clip, window=4)
        model.insert_fused_temporal_block()
        after = model(clip, window=4)
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=0, rtol=0)


def test_without_a_past_the_fused_block_is_exactly_the_identity():
    # Window 1: same weights, no earlier frame -> the outputs of the model without the block,
    # whatever its weights (no parameter may act on a frame alone, e.g. an output bias).
    model = fused_model()
    bare = copy.deepcopy(model)
    bare.fused_temporal = None
    clip = random_clip(model, 5)
    with torch.no_grad():
        with_block, without = model(clip, window=1), bare(clip, window=1)
    for key in with_block:
        torch.testing.assert_close(with_block[key], without[key], atol=1e-6, rtol=0)


def test_the_fused_block_changes_the_output_when_earlier_frames_change():
    model = fused_model(window=4)
    clip = random_clip(model, 4)
    other = clip.clone()
    other[:, :3] = random_clip(model, 3, seed=9)  # a different past, the same last frame
    with torch.no_grad():
        here, there = model(clip, window=4), model(other, window=4)
    change = (here["depth"][:, -1] - there["depth"][:, -1]).abs().max()
    assert change > 1e-3, f"the last frame's depth ignored a different past (max change {change})"


def test_the_fused_window_bounds_how_far_back_it_looks():
    # With fused_window 2 only the previous frame counts: changing frames before it changes nothing
    # in the fused block (the DPT-scale blocks are bypassed by feeding features directly).
    block = fused_model(window=2).fused_temporal
    x = torch.randn(1, 5, 8, 6, 6)
    y = x.clone()
    y[:, :3] = torch.randn(1, 3, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x, window=16)[:, -1], block(y, window=16)[:, -1])
        assert not torch.allclose(block(x, window=16)[:, 3], block(y, window=16)[:, 3])


@pytest.mark.parametrize("step_class", [StreamingStep, InPlaceStreamingStep, ExportStep])
@pytest.mark.parametrize("window", [1, 2, 5])
def test_streaming_with_the_fused_block_equals_the_offline_causal_forward(step_class, window):
    model = fused_model(window=3)
    frames = 7
    clip = random_clip(model, frames)
    with torch.no_grad():
        offline = model(clip, window=window)
        step = step_class(model, window)
        for round_ in range(2):  # a reset (fresh state) in the middle of a stream
            state = step.init_state()
            for t in range(frames):
                depth, normal, mask_logits, *new = step(clip[:, t], *state)
                if step_class is not InPlaceStreamingStep:
                    state = tuple(new)
                for got, key in ((depth, "depth"), (normal, "normal"),
                                 (mask_logits, "mask_logits")):
                    torch.testing.assert_close(got, offline[key][:, t], atol=2e-5, rtol=0,
                                               msg=f"{key} frame {t} round {round_}")


def test_the_fused_cache_holds_at_most_fused_window_frames():
    model = fused_model(window=3)
    s, c = model.cfg.resolution, model.cfg.fusion.channels
    state = StreamingStep(model, 16).init_state()
    assert len(state) == 15
    assert state[12].shape == (2, 1, c, s * s)  # fused_window - 1 past slots
    assert InPlaceStreamingStep(model, 16).init_state()[12].shape == (3, 1, c, s * s)
    assert StreamingStep(model, 1).init_state()[12].shape[0] == 0


def test_fused_block_configuration_is_checked():
    cfg = micro_config(temporal=False)
    cfg.temporal.fused = True
    with pytest.raises(ConfigError, match="temporal.fused needs temporal.enabled: true"):
        cfg.temporal.validate()
    cfg = micro_config(temporal=True)
    cfg.temporal.fused, cfg.temporal.fused_window = True, 0
    with pytest.raises(ConfigError, match=r"temporal.fused_window: expected a value in \[1, "):
        cfg.temporal.validate()
    with pytest.raises(ValueError, match="needs the DPT-scale temporal blocks"):
        HCDPModel(micro_config(temporal=False)).insert_fused_temporal_block()


def test_a_fused_block_round_trips_through_a_checkpoint(tmp_path):
    from hcdp_model.checkpoint import load_checkpoint, save_checkpoint

    model = fused_model()
    save_checkpoint(model, tmp_path / "m")
    loaded = load_checkpoint(tmp_path / "m").eval()
    assert isinstance(loaded.fused_temporal, FusedTemporalBlock)
    clip = random_clip(model, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip, window=3)["depth"], model(clip, window=3)["depth"])


def test_a_wider_fused_window_set_on_trained_weights_looks_further_back_and_is_saved(tmp_path):
    """set_fused_window (scripts/bundle_model.py --fused-window): same weights, a longer reach."""
    from hcdp_model.checkpoint import load_checkpoint, save_checkpoint

    model = fused_model(window=2)
    clip = random_clip(model, 6)
    with torch.no_grad():
        narrow = model(clip, window=16)["depth"][:, -1]
        model.set_fused_window(5)
        wide = model(clip, window=16)["depth"][:, -1]
        assert not torch.allclose(wide, narrow)  # frames 1-3 back now count
        fresh = fused_model(window=5)  # built with window 5, given the same weights
        fresh.load_state_dict(model.state_dict())
        torch.testing.assert_close(fresh(clip, window=16)["depth"][:, -1], wide)
    save_checkpoint(model, tmp_path / "m")
    loaded = load_checkpoint(tmp_path / "m").eval()
    assert loaded.cfg.temporal.fused_window == 5 and loaded.fused_temporal.window == 5
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip, window=16)["depth"][:, -1], wide)
    with pytest.raises(ConfigError, match=r"temporal.fused_window: expected a value in \[1, "):
        model.set_fused_window(0)
    assert model.cfg.temporal.fused_window == 5  # a refused window changes nothing
    with pytest.raises(ValueError, match="no fused temporal block"):
        HCDPModel(micro_config(temporal=True)).set_fused_window(4)


def _fused_inputs(model: HCDPModel, clip: torch.Tensor) -> torch.Tensor:
    """Return the fused features [1,T,C,S,S] the fused block sees for `clip` (causal, W 16)."""
    t = clip.shape[1]
    frames = clip.flatten(0, 1)
    scales = [block(x.unflatten(0, (1, t)), 16).flatten(0, 1)
              for block, x in zip(model.temporal_blocks, model.encode(frames))]
    return model.fuse(frames, scales)[0].unflatten(0, (1, t))


def test_the_bundled_fused_block_changes_its_output_when_earlier_frames_change():
    from hcdp_model.checkpoint import load_checkpoint
    from hcdp_model.predictor import default_checkpoint

    model = load_checkpoint(default_checkpoint()).eval()
    model.set_temporal_mode("causal")
    s = model.cfg.resolution
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")

    def frame(shift: float) -> torch.Tensor:  # a smooth pattern that moves with `shift`
        return torch.stack([torch.sin(0.04 * (xx + shift) + c) + torch.cos(0.03 * yy + 2 * c)
                            for c in range(3)]).float()

    now = frame(0.0)
    clips = [torch.stack([frame(d) for d in past] + [now])[None]
             for past in ((-9.0, -6.0, -3.0), (30.0, 50.0, 70.0))]
    with torch.no_grad():
        updates = []
        for clip in clips:
            x = _fused_inputs(model, clip)
            updates.append(model.fused_temporal(x, window=16)[:, -1] - x[:, -1])
        alone = _fused_inputs(model, clips[0][:, -1:])
        assert torch.equal(model.fused_temporal(alone, window=16), alone)  # no past: identity
    change = float((updates[0] - updates[1]).norm() / updates[0].norm())
    assert change > 0.05, f"the bundled fused block ignored a different past ({change:.3f})"
