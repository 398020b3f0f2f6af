"""hcdp eval-real end to end with a micro model.

On a fabricated photo (with a reference mask) and a static-camera video with a moving blob.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
from hcdp_model.checkpoint import save_checkpoint
from hcdp_model.cli import main as hcdp_main
from hcdp_model.model import HCDPModel
from hcdp_training.real.cli import clip_names, find_inputs, METHODS, TILE
import numpy as np
import pytest
from tests.model.helpers import activate_temporal, micro_config

H, W, FRAMES = 48, 64, 10


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(5)
    photo = rng.integers(0, 255, (H, W, 3)).astype(np.uint8)
    cv2.imwrite(str(root / "person.png"), photo)
    ref = np.zeros((H, W), np.uint8)
    ref[10:40, 20:36] = 255  # 480 of 3072 px
    cv2.imwrite(str(root / "person.ref.png"), ref)
    scene = cv2.GaussianBlur(rng.integers(30, 220, (H, W, 3)).astype(np.uint8), (5, 5), 0)
    writer = cv2.VideoWriter(str(root / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for k in range(FRAMES):
        frame = scene.copy()
        cv2.rectangle(frame, (4 + 4 * k, 12), (14 + 4 * k, 36), (20, 20, 250), -1)  # moves right
        writer.write(frame)
    writer.release()
    return root


def test_find_inputs_takes_images_and_videos_but_not_reference_masks(media, tmp_path):
    assert [p.name for p in find_inputs([media])] == ["person.png", "walk.avi"]
    with pytest.raises(FileNotFoundError, match="expected an image"):
        find_inputs([tmp_path / "missing.png"])


def test_inputs_that_share_a_file_name_keep_their_paths_apart():
    files = [Path("a/x.png"), Path("b/x.png"), Path("b/y.avi")]
    assert clip_names(files) == [str(Path("a/x.png")), str(Path("b/x.png")), "y.avi"]


def test_hcdp_eval_real_end_to_end_writes_the_table_json_and_sheet(media, tmp_path, capsys):
    checkpoint = save_checkpoint(activate_temporal(HCDPModel(micro_config(temporal=True))),
                                 tmp_path / "ckpt")
    out_json, out_png = tmp_path / "real.json", tmp_path / "sheet.png"
    code = hcdp_main(["eval-real", str(media), "--checkpoint", str(checkpoint), "--window", "3",
                      "--max-frames", "6", "--json", str(out_json), "--sheet", str(out_png)])
    assert code == 0
    result = json.loads(out_json.read_text())
    assert list(result["methods"]) == list(METHODS)
    assert result["clips"]["walk.avi"]["frames"] == 6
    assert result["clips"]["person.png"]["reference"] == "mask person.ref.png"
    photos = {m: result["methods"][m]["photos"] for m in METHODS}
    videos = {m: result["methods"][m]["videos"] for m in METHODS}
    # everything-is-a-person scores the reference's share of the frame
    assert photos["all_foreground"]["iou"] == pytest.approx(480 / (H * W))
    assert photos["all_foreground"]["reference_share"] == pytest.approx(480 / (H * W))
    # the blob is found by background subtraction: one person in each of the 6 frames
    assert videos["streaming"]["instances"] == 6
    assert 0.0 < videos["all_foreground"]["reference_share"] < 0.2
    # a constant map is perfectly stable and has no ramp; the centred bump has no ramp either
    assert videos["all_foreground"]["opw"] == 0.0
    assert videos["all_foreground"]["ramp_share"] is None
    assert videos["centred_ellipse"]["ramp_share"] == pytest.approx(0.0, abs=1e-6)
    for m in ("streaming", "window_1", "per_frame", "per_frame_ema"):
        assert 0.0 <= videos[m]["ramp_share"] <= 1.0 and videos[m]["opw"] is not None, m
        assert 0.0 <= videos[m]["recedes"] <= 1.0, m
    # a constant map and the centred bump put no order between the top and the bottom; photos
    # (portraits among them) are not asked
    assert videos["all_foreground"]["recedes"] is None
    assert videos["centred_ellipse"]["recedes"] is None
    assert photos["streaming"]["recedes"] is None
    # the temporal blocks are active: attention over 3 frames changes the video's output, not
    # the photo's (one frame: nothing in the past)
    assert videos["streaming"]["opw"] != videos["window_1"]["opw"]
    assert photos["streaming"] == photos["window_1"]
    assert photos["per_frame"] == photos["per_frame_ema"]
    printed = capsys.readouterr().out
    assert "| photos: mask IoU vs reference ↑ |" in printed
    assert "| videos: depth flicker on people (OPW, clip range) ↓ |" in printed
    assert "| videos: frames farther at the top than the bottom (ground seen from above) ↑ |" \
        in printed
    sheet = cv2.imread(str(out_png))
    assert sheet.shape == (20 + 4 * TILE[1], 6 * TILE[0], 3)  # 1 photo + 3 video frames


def test_hcdp_eval_real_without_paths_or_a_missing_one_says_what_it_expected(tmp_path, capsys):
    assert hcdp_main(["eval-real"]) == 2
    assert "expected PATH" in capsys.readouterr().err
    assert hcdp_main(["eval-real", str(tmp_path / "nothing.mp4")]) == 2
    assert "nothing.mp4: expected an image" in capsys.readouterr().err


def test_only_the_development_segmenter_imports_mediapipe():
    # the reference segmenter is a development extra: no runtime or training module may import it
    import ast

    root = Path(__file__).resolve().parents[2]
    importers = []
    for folder in ("hcdp_model", "hcdp_ros", "training"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n.split(".")[0] == "mediapipe" for n in names):
                    importers.append(str(path.relative_to(root)))
    assert importers == ["training/real/segment_photos.py"]
