"""The temporal-context diagnostic.

Attention mass and how much of a block's update needs the past.
"""
from __future__ import annotations

import math

import cv2
from hcdp_model.checkpoint import load_checkpoint
from hcdp_model.model import HCDPModel
from hcdp_model.predictor import default_checkpoint, StreamingPredictor
from hcdp_model.preprocess import preprocess
from hcdp_training.temporal_context import (
    attention_probabilities, attention_report, block_inputs, mean_report, temporal_blocks,
)
import numpy as np
import pytest
from tests.model.helpers import activate_temporal, micro_config, random_clip
import torch


def _model_with_bias(offset_bias: dict[int, float]) -> HCDPModel:
    """Active temporal blocks whose time bias is 0 except `offset_bias` (offset -> bias)."""
    model = activate_temporal(HCDPModel(micro_config(temporal=True)))
    with torch.no_grad():
        for block in model.temporal_blocks:
            block.attn.relative_bias.zero_()
            for offset, value in offset_bias.items():
                block.attn.relative_bias[:, offset + block.attn.max_rel] = value
    return model


def test_a_block_that_only_looks_at_the_current_frame_has_no_past_mass_and_no_past_share():
    model = _model_with_bias({0: 60.0})
    report = attention_report(model, random_clip(model, 5), window=4)
    for block in report:
        assert block["mass_current"] == pytest.approx(1.0, abs=1e-6)
        assert block["mass_past"] == pytest.approx(0.0, abs=1e-6)
        assert block["past_share"] == pytest.approx(0.0, abs=1e-4)
        assert block["update"] > 0


def test_a_block_that_looks_one_frame_back_puts_its_mass_at_offset_1():
    model = _model_with_bias({1: 60.0})
    report = attention_report(model, random_clip(model, 5), window=4)
    for block in report:
        # frames t >= 1 all have a frame at offset 1, so the mass there is (almost) 1
        assert block["mass_by_offset"][1] == pytest.approx(1.0, abs=1e-6)
        assert block["mass_current"] == pytest.approx(0.0, abs=1e-6)
        assert block["past_share"] > 0.1


def test_the_fused_block_is_reported_last_with_its_own_window_and_is_the_identity_alone():
    model = _model_with_bias({0: 60.0})
    model.insert_fused_temporal_block()
    fused = model.fused_temporal
    with torch.no_grad():
        fused.relative_bias.zero_()
        fused.relative_bias[:, 1 + fused.max_rel] = 60.0  # all its mass one frame back
        fused.proj_out.weight.copy_(torch.eye(fused.proj_out.weight.shape[0]) * 0.5)
    report = attention_report(model, random_clip(model, 5), window=4)
    assert [r["block"] for r in report] == [*range(len(model.temporal_blocks)), "fused"]
    last = report[-1]
    assert last["features"] == model.cfg.fusion.channels
    assert len(last["mass_by_offset"]) == min(fused.slots(4), 4)  # t >= 1 of 5 frames
    assert last["mass_by_offset"][1] == pytest.approx(1.0, abs=1e-6)
    assert last["update"] > 0 and last["past_share"] == pytest.approx(1.0, abs=1e-6)
    x = block_inputs(model, random_clip(model, 5), 4)[-1]
    p = attention_probabilities(fused, x, window=16)  # capped at the block's own fused_window
    t = torch.arange(5)
    assert (p[..., (t[:, None] - t[None, :]) >= fused.slots(16)] == 0).all()


def test_attention_probabilities_are_causal_windowed_and_sum_to_one():
    model = activate_temporal(HCDPModel(micro_config(temporal=True)))
    block = model.temporal_blocks[0]
    x = torch.randn(1, 6, block.norm1.normalized_shape[0], 3, 2)
    p = attention_probabilities(block, x, window=3)  # [N, heads, T, T]
    assert torch.allclose(p.sum(-1), torch.ones(p.shape[:-1]))
    t = torch.arange(6)
    outside = (t[:, None] - t[None, :] < 0) | (t[:, None] - t[None, :] >= 3)
    assert (p[..., outside] == 0).all()


def test_mean_report_averages_blocks_and_offsets():
    a = [{"block": 0, "mass_current": 0.2, "mass_past": 0.8, "update": 1.0, "past_share": 0.5,
          "mass_by_offset": [0.2, 0.8]}]
    b = [{"block": 0, "mass_current": 0.6, "mass_past": 0.4, "update": 3.0, "past_share": 0.1,
          "mass_by_offset": [0.6, 0.3, 0.1]}]
    (merged,) = mean_report([a, b])
    assert math.isclose(merged["mass_current"], 0.4) and math.isclose(merged["update"], 2.0)
    assert merged["mass_by_offset"] == pytest.approx([0.4, 0.55])


def _frames(seed: int, count: int, size: int = 160) -> list[np.ndarray]:
    """Make a smooth random scene with a bright disc moving across it: camera-like uint8 frames."""
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (0, 0), 6)
    frames = []
    for k in range(count):
        frame = scene.copy()
        cv2.circle(frame, (30 + 8 * k, size // 2), 24, (230, 200, 180), -1)
        frames.append(frame)
    return frames


def test_the_bundled_model_s_trained_blocks_change_their_output_when_earlier_frames_change():
    model = load_checkpoint(default_checkpoint())
    model.set_temporal_mode("causal")
    current = _frames(0, 9)[-1]
    clips = [torch.cat([preprocess(f, model.cfg.resolution)[0] for f in past + [current]])[None]
             for past in (_frames(0, 9)[:-1], _frames(1, 9)[:-1])]
    outs = []
    with torch.no_grad():
        for clip in clips:
            inputs = block_inputs(model, clip, 16)
            outs.append([block(x, window=16)[:, -1] - x[:, -1]
                         for block, x in zip(temporal_blocks(model), inputs)])
    # the current frame's encoder features are the same in both clips; the blocks' updates are not
    changed = [float((a - b).norm() / a.norm()) for a, b in zip(*outs)]
    assert max(changed) > 0.02, changed
    report = attention_report(model, clips[0], window=16)
    assert max(r["past_share"] for r in report) > 0.05


def test_after_a_reset_the_bundled_model_predicts_as_from_a_fresh_start():
    model = load_checkpoint(default_checkpoint())
    model.set_temporal_mode("causal")
    warm, fresh = StreamingPredictor(model, window=16), StreamingPredictor(model, window=16)
    for k, frame in enumerate(_frames(1, 6)):
        warm.step(frame, stamp=0.1 * k, frame_id="a")
    frame = _frames(0, 1)[0]
    after = warm.step(frame, stamp=1.0, frame_id="b")  # frame_id changed: reset
    assert after.reset and after.window_fill == 1
    np.testing.assert_array_equal(after.depth, fresh.step(frame, stamp=0.0, frame_id="b").depth)


def test_lr_time_bias_gives_exactly_the_relative_time_biases_their_own_stage_2_group(tmp_path):
    from hcdp_model.checkpoint import save_checkpoint
    from hcdp_training.config import TrainConfig
    from hcdp_training.stages import build_model, param_groups

    init = save_checkpoint(HCDPModel(micro_config()), tmp_path / "stage1")
    base = {"stage": 2, "model": {"init": str(init)}, "data": {"root": str(tmp_path), "frames": 4}}
    cfg = TrainConfig.from_dict({**base, "optim": {"lr_temporal": 1e-4, "lr_time_bias": 1e-2}})
    model = build_model(cfg)
    groups = {g["name"]: g for g in param_groups(model, cfg)}
    biases = {id(b.attn.relative_bias) for b in model.temporal_blocks}
    assert {id(p)
            for p in groups["time_bias"]["params"]} == biases and groups["time_bias"]["lr"] == 1e-2
    assert not biases & {id(p) for p in groups["temporal"]["params"]}
    every = [id(p) for g in groups.values() for p in g["params"]]
    assert len(every) == len(set(every)) == sum(p.requires_grad for p in model.parameters())
    plain = TrainConfig.from_dict(base)
    assert [g["name"] for g in param_groups(build_model(plain), plain)] == ["temporal", "others"]


def test_the_fused_recipe_trains_only_the_fused_block(tmp_path):
    # model.fused_temporal inserts the block; a learning rate of 0 freezes a group (no gradient).
    from hcdp_model.checkpoint import save_checkpoint
    from hcdp_training.config import TrainConfig
    from hcdp_training.stages import build_model, param_groups

    init = save_checkpoint(activate_temporal(HCDPModel(micro_config(temporal=True))),
                           tmp_path / "stage2")
    cfg = TrainConfig.from_dict({
        "stage": 2, "model": {"init": str(init), "fused_temporal": True},
        "data": {"root": str(tmp_path), "frames": 4},
        "optim": {"lr_temporal": 0.0, "lr_others": 0.0, "lr_fused_temporal": 4e-3}})
    model = build_model(cfg)
    groups = param_groups(model, cfg)
    assert [(g["name"], g["lr"]) for g in groups] == [("fused_temporal", 4e-3)]
    assert {id(p) for p in groups[0]["params"]} == {
        id(p) for p in model.fused_temporal.parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.fused_temporal.parameters()}
