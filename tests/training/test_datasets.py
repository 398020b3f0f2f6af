"""StaticFrames and VideoClips: tensor contract, strided clips with matching flow, resizing.

The strided clips come with the matching rendered flow.
"""
from hcdp_training.data import StaticFrames, VideoClips
from hcdp_training.data.datasets import resize_square
import numpy as np
import pytest
import torch

from .test_data_format import H, W, write_sequence


@pytest.fixture()
def root(tmp_path):
    write_sequence(tmp_path / "seq_0", frames=6, strides=2, seed=0)
    write_sequence(tmp_path / "seq_1", frames=4, strides=2, seed=1)
    return tmp_path


def test_static_frames_yield_every_frame_as_channel_first_float_tensors(root):
    ds = StaticFrames(root)
    assert len(ds) == 10
    item = ds[0]
    shapes = {k: tuple(v.shape) for k, v in item.items()}
    assert shapes == {"image": (3, H, W), "depth": (1, H, W), "normal": (3, H, W),
                      "mask": (1, H, W),
                      "flow_fwd": (2, H, W), "flow_bwd": (2, H, W), "canonical": (3, H, W),
                      "ground_depth": (1, H, W), "K": (3, 3)}
    assert all(v.dtype == torch.float32 for v in item.values())
    assert not item["ground_depth"].any()  # no ground in these sequences: 0 everywhere
    assert item["image"].max() <= 1.0 and item["image"].min() >= 0.0
    assert torch.isfinite(item["depth"]).all() and (item["depth"][0, :, :3] == 0).all()  # NaN -> 0


def test_static_frames_apply_augment_to_the_numpy_frame_before_conversion(root):
    def flip(frame):
        return {**frame, "rgb": frame["rgb"][:, ::-1].copy()}

    plain, flipped = StaticFrames(root)[3], StaticFrames(root, augment=flip)[3]
    assert torch.equal(plain["image"].flip(-1), flipped["image"])


def test_video_clips_draw_strides_in_range_with_the_flow_rendered_for_that_stride(root):
    ds = VideoClips(root, frames=3, stride=(1, 2), seed=3)
    # starts where 3 frames fit at stride 1: 4 in seq_0 (6 frames), 2 in seq_1 (4 frames)
    assert len(ds) == 6
    strides = {int(ds[i]["stride"]) for i in range(len(ds))}
    assert strides == {1, 2}
    for i in range(len(ds)):
        item = ds[i]
        s, idx = int(item["stride"]), item["frame_index"].tolist()
        assert idx == [idx[0], idx[0] + s, idx[0] + 2 * s]
        assert item["image"].shape == (3, 3, H, W)
        seq = ds.index[i][0]
        from hcdp_training.data import read_frame

        expected = read_frame(seq, idx[1], stride=s)["flow_fwd"]
        assert torch.allclose(item["flow_fwd"][1], torch.from_numpy(expected).permute(2, 0, 1))


def test_video_clip_strides_are_reproducible_per_seed_and_epoch(root):
    a, b = VideoClips(root, 2, (1, 2), seed=0), VideoClips(root, 2, (1, 2), seed=0)
    assert [a.clip_stride(i) for i in range(len(a))] == [b.clip_stride(i) for i in range(len(b))]
    draws = set()
    for epoch in range(8):
        a.set_epoch(epoch)
        draws.add(tuple(a.clip_stride(i) for i in range(len(a))))
    assert len(draws) > 1


def test_video_clips_refuse_a_stride_without_rendered_flow(root):
    with pytest.raises(ValueError, match="flow_strides=2"):
        VideoClips(root, frames=2, stride=(1, 3))


def test_video_clips_apply_one_augment_draw_to_the_whole_clip(root):
    class Recorder:

        def __init__(self):
            self.calls = []

        def clip(self, frames):
            self.calls.append(len(frames))
            return frames

    rec = Recorder()
    VideoClips(root, frames=3, augment=rec)[0]
    assert rec.calls == [3]
    with pytest.raises(TypeError, match="clip"):
        VideoClips(root, frames=3, augment=lambda f: f)


def test_resize_square_keeps_projections_consistent_with_k_and_scales_flow(root):
    from hcdp_training.data import read_frame

    frame = read_frame(root / "seq_0", 0)
    frame["K"] = np.array([[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]], np.float32)
    out = resize_square(frame, 6)  # 12x16 -> 6x8 (scale 0.5), crop columns 1..6
    assert out["rgb"].shape == (6, 6, 3) and out["depth"].shape == (6, 6)
    point = np.array([0.1, -0.05, 1.0])
    u, v, _ = frame["K"] @ point
    u2, v2, _ = out["K"] @ point
    assert np.isclose(u2, (u + 0.5) * 0.5 - 0.5 - 1) and np.isclose(v2, (v + 0.5) * 0.5 - 0.5)
    # nearest neighbour at an exact factor of 2 takes every other pixel; flow scales with the image
    np.testing.assert_allclose(out["flow_fwd"], frame["flow_fwd"][::2, ::2][:, 1:7] * 0.5)
