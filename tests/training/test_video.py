"""Self-supervised stage 2 on unlabeled video.

Folders of videos or image sequences are read into clips with DIS flows, and fine-tuning with the
temporal terms + distillation starts at zero distillation and lowers its loss.
"""
import cv2
from hcdp_training.metrics import clip_flows
from hcdp_training.stages import build_model, make_task
from hcdp_training.train import train
from hcdp_training.video import find_sources, read_frames, VideoFolderClips
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from .train_helpers import disc_frame, SIZE, train_config, write_disc_sequences, write_micro_config

SPEED = 2.0


def _frames(n, seed=0):
    background = np.random.default_rng(seed).integers(0, 120, (SIZE, SIZE, 3)).astype(np.float32)
    return [disc_frame(t, background, SPEED, 28.0, 18.0) for t in range(n)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """One PNG image sequence and one MJPG .avi video of the moving disc."""
    root = tmp_path_factory.mktemp("videos")
    frames = _frames(6)
    (root / "walk_png").mkdir()
    for t, f in enumerate(frames):
        cv2.imwrite(str(root / "walk_png" / f"{t:04d}.png"),
                    cv2.cvtColor(f["rgb"], cv2.COLOR_RGB2BGR))
    writer = cv2.VideoWriter(str(root / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (SIZE, SIZE))
    for f in frames:
        writer.write(cv2.cvtColor(f["rgb"], cv2.COLOR_RGB2BGR))
    writer.release()
    return root, frames


def test_sources_are_videos_and_image_folders_and_frames_read_back_in_order(videos):
    root, frames = videos
    assert [p.name for p in find_sources(root)] == ["walk.avi", "walk_png"]
    assert find_sources(root / "walk_png") == [root / "walk_png"]
    png = read_frames(root / "walk_png", [1, 3])
    assert np.array_equal(png[0], frames[1]["rgb"]) and np.array_equal(png[1], frames[3]["rgb"])
    # lossy codec: each read frame is nearest to its original
    avi = read_frames(root / "walk.avi", [2, 4, 5])
    for got, t in zip(avi, [2, 4, 5]):
        errors = [np.abs(got.astype(float) - f["rgb"]).mean() for f in frames]
        assert int(np.argmin(errors)) == t
    (root / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="found no video"):
        find_sources(root / "empty")


def test_clip_flows_follow_the_dataset_convention_and_recover_the_motion():
    frames = _frames(3)
    fwd, bwd = clip_flows([f["rgb"] for f in frames])
    assert fwd.shape == (3, SIZE, SIZE, 2) and not fwd[2].any() and not bwd[0].any()
    inner = np.zeros((SIZE, SIZE), bool)  # well inside the disc in both frames
    inner[22:34, 20:34] = True
    assert np.median(fwd[0][inner][:, 0]) == pytest.approx(SPEED, abs=0.5)
    assert np.median(bwd[1][inner][:, 0]) == pytest.approx(-SPEED, abs=0.5)
    assert np.abs(np.median(fwd[0][inner][:, 1])) < 0.5


def test_video_clips_have_the_model_size_the_drawn_stride_and_flows(videos):
    root, _ = videos
    ds = VideoFolderClips(root, frames=3, stride=(1, 2), size=SIZE, seed=1)
    assert len(ds) == 2 * 4  # two sources of 6 frames, 4 starts each at stride 1
    item = ds[0]
    s = int(item["stride"])
    assert item["image"].shape == (3, 3, SIZE, SIZE)
    assert item["flow_fwd"].shape == (3, 2, SIZE, SIZE)
    assert item["frame_index"].tolist() == [0, s, 2 * s]
    assert 0.0 <= item["image"].min() <= item["image"].max() <= 1.0
    with pytest.raises(ValueError, match="no video has the"):
        VideoFolderClips(root, frames=7, stride=(1, 1), size=SIZE)


def test_selfsupervised_stage2_starts_at_the_teacher_lowers_the_temporal_term_distillation_near(
        videos, tmp_path):
    root, frames = videos
    clip_dir = tmp_path / "clip"  # one 3-frame clip, so every step sees the clip we measure on
    clip_dir.mkdir()
    for t in range(3):
        cv2.imwrite(str(clip_dir / f"{t:04d}.png"),
                    cv2.cvtColor(frames[t]["rgb"], cv2.COLOR_RGB2BGR))
    model_config = write_micro_config(tmp_path / "micro.yaml")
    data = write_disc_sequences(tmp_path / "data", sequences=1, frames=4)
    stage1 = train(train_config(1, tmp_path / "s1", data, model_config, optim={"steps": 3}))

    def cfg(distill_weight):
        return train_config(2, tmp_path / f"s2_{distill_weight}", clip_dir, model_config,
                            model={"init": str(stage1.final)},
                            data={"kind": "video", "stride": [1, 1]},
                            optim={"steps": 4, "batch_size": 1, "lr_temporal": 1e-3,
                                   "lr_others": 1e-4},
                            selfsup={"distill_weight": distill_weight})

    batch = default_collate([VideoFolderClips(clip_dir, 3, (1, 1), SIZE)[0]])
    start = build_model(cfg(1.0))
    with torch.no_grad():
        _, before, pred, target = make_task(start, cfg(1.0))(batch)
    # the zero-initialised temporal blocks leave the student equal to its frozen stage-1 teacher
    torch.testing.assert_close(pred["depth"], target["depth"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(pred["normal"], target["normal"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.sigmoid(pred["mask_logits"]), target["mask"], rtol=1e-6,
                               atol=1e-7)
    assert abs(float(before["distill_normal"])) < 1e-6 and abs(float(before["distill_seg"])) < 1e-6

    after = {}
    for weight in (1.0, 0.0):
        result = train(cfg(weight))
        with torch.no_grad():
            after[weight] = make_task(result.model, cfg(1.0))(batch)[1]
    assert float(after[1.0]["temp_depth"]) < float(before["temp_depth"])
    # distillation keeps it near the teacher
    assert float(after[1.0]["distill"]) < float(after[0.0]["distill"])
    assert (tmp_path / "s2_1.0" / "final" / "model.safetensors").is_file()
