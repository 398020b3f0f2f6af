from hcdp_model.backends.step import InPlaceStreamingStep, StreamingStep
from hcdp_model.config import TemporalConfig
from hcdp_model.model import HCDPModel
from hcdp_model.predictor import StreamingPredictor
from hcdp_model.preprocess import preprocess
from hcdp_model.temporal import TemporalBlock
import numpy as np
import pytest
from tests.model.helpers import activate_temporal, micro_config, random_clip
import torch


@pytest.mark.parametrize("step_class", [StreamingStep, InPlaceStreamingStep])
@pytest.mark.parametrize("window", [1, 4])
def test_streaming_step_equals_offline_causal_forward_over_a_sliding_window(window, step_class):
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    frames = 3 * max(window, 2)
    clip = random_clip(model, frames=frames)
    step = step_class(model, window)
    state = step.init_state()
    with torch.no_grad():
        offline = model(clip, window=window)
        for t in range(frames):
            depth, normal, mask_logits, *state = step(clip[:, t], *state)
            torch.testing.assert_close(depth, offline["depth"][:, t], atol=1e-4, rtol=0)
            torch.testing.assert_close(normal, offline["normal"][:, t], atol=1e-4, rtol=0)
            torch.testing.assert_close(mask_logits, offline["mask_logits"][:, t], atol=1e-4,
                                       rtol=0)


def test_streaming_state_has_fixed_shapes():
    model = HCDPModel(micro_config(temporal=True)).eval()
    step = StreamingStep(model, 5)
    state = step.init_state()
    with torch.no_grad():
        _, _, _, *new = step(random_clip(model, 1)[:, 0], *state)
    assert [s.shape for s in new] == [s.shape for s in state]
    assert len(state) == 12


def test_bidirectional_model_cannot_stream():
    model = HCDPModel(micro_config(temporal=True, mode="bidirectional"))
    with pytest.raises(ValueError, match="causal"):
        StreamingStep(model, 4)


def _images(n, h=40, w=60, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_predictor_matches_offline_model_on_camera_frames():
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    predictor = StreamingPredictor(model, window=3)
    images = _images(7)
    clip = torch.cat([preprocess(im, model.cfg.resolution)[0] for im in images])[None]
    with torch.no_grad():
        offline = model(clip, window=3)
    from hcdp_model.preprocess import Letterbox, unpreprocess
    box = Letterbox.fit(40, 60, model.cfg.resolution)
    for t, im in enumerate(images):
        pred = predictor.step(im, stamp=0.1 * t)
        expected = unpreprocess(offline["depth"][:, t], box)[0, 0].numpy()
        np.testing.assert_allclose(pred.depth, expected, atol=1e-4)
        assert pred.window_fill == min(t + 1, 3)
        assert pred.reset == (t == 0)


def test_prediction_is_at_input_resolution_with_valid_ranges():
    predictor = StreamingPredictor(HCDPModel(micro_config(temporal=True)), window=4)
    for h, w in [(48, 64), (72, 128), (108, 72)]:
        pred = predictor.step(_images(1, h, w)[0], stamp=0.0)
        assert pred.depth.shape == (h, w) and pred.normals.shape == (h, w, 3)
        assert pred.mask.shape == (h, w)
        assert pred.depth.dtype == np.float32 and (pred.depth >= 0).all()
        np.testing.assert_allclose(np.linalg.norm(pred.normals, axis=-1), 1.0, atol=1e-5)
        assert ((pred.mask >= 0) & (pred.mask <= 1)).all()


@pytest.mark.parametrize("second, reason", [
    ({"stamp": 0.9, "frame_id": "cam"}, "time went backwards"),
    ({"stamp": 1.0 + 0.6, "frame_id": "cam"}, "gap"),
    ({"stamp": 1.1, "frame_id": "other"}, "frame_id changed"),
    ({"stamp": 1.1, "frame_id": "cam", "size": (40, 50)}, "image size changed"),
])
def test_reset_rules(second, reason):
    predictor = StreamingPredictor(HCDPModel(micro_config(temporal=True)), window=4, max_gap_s=0.5)
    first = predictor.step(_images(1)[0], stamp=1.0, frame_id="cam")
    assert first.reset and first.reset_reason == "first frame"
    kept = predictor.step(_images(1)[0], stamp=1.05, frame_id="cam")
    assert not kept.reset and kept.window_fill == 2
    h, w = second.pop("size", (40, 60))
    pred = predictor.step(_images(1, h, w)[0], **second)
    assert pred.reset and reason in pred.reset_reason and pred.window_fill == 1


def test_reset_makes_the_next_prediction_equal_a_fresh_start():
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    predictor = StreamingPredictor(model, window=4)
    images = _images(4)
    fresh = predictor.step(images[3], stamp=0.0).depth
    for t, im in enumerate(images[:3]):
        predictor.step(im, stamp=1.0 + 0.1 * t)
    warm = predictor.step(images[3], stamp=1.3).depth
    assert not np.allclose(fresh, warm)
    after_jump = predictor.step(images[3], stamp=0.5).depth  # time went backwards -> reset
    np.testing.assert_allclose(after_jump, fresh, atol=1e-6)


def test_fp16_on_cpu_is_refused_with_a_hint():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        StreamingPredictor(HCDPModel(micro_config()), precision="fp16")


@pytest.mark.parametrize("slot_loop", [False, True])
@pytest.mark.parametrize("ring", [False, True])
def test_streaming_step_of_one_block_equals_its_offline_causal_forward_for_a_batch(ring,
                                                                                   slot_loop):
    """Check the streaming step of one block equals its offline causal forward for a batch.

    The functional step and the in-place ring, each with both attention paths (all slots at once,
    and slot by slot as on large maps), batch 2, a non-square map, the window sliding twice over.
    """
    torch.manual_seed(0)
    window, frames = 3, 8
    block = TemporalBlock(8,
                          TemporalConfig(num_heads=2, mode="causal",
                                         max_relative_distance=4)).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, frames, 8, 3, 5)
    shape = torch.Size((2, 8, 3, 5))
    cache = block.empty_ring(shape, window, "cpu", torch.float32) if ring else block.empty_cache(
        shape, window, "cpu", torch.float32)
    with torch.no_grad():
        offline = block(x, window=window)
        for t in range(frames):
            if ring:
                out = block.step_ring(x[:, t], cache, slot_loop=slot_loop)
            else:
                out, cache = block.step(x[:, t], cache, slot_loop=slot_loop)
            torch.testing.assert_close(out, offline[:, t], atol=1e-5, rtol=0)
    if ring:
        assert sorted(cache[2].tolist()) == [0, 1, 2]  # frames since each slot was written
    else:
        assert cache[2].tolist() == [True, True]
