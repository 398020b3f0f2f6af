"""hcdp eval: end to end with a micro model, plus the baselines' behaviour.

End to end on a hand-written dataset in the on-disk format with a micro model, plus the
baselines' behaviour on constructed predictions.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import cv2
from hcdp_model.checkpoint import save_checkpoint
from hcdp_model.cli import main as hcdp_main
from hcdp_model.model import HCDPModel
from hcdp_model.predictor import Prediction
from hcdp_training.data.format import list_sequences, write_frame, write_meta
from hcdp_training.evaluate import (
    EvalResult, evaluate, exponential_smoothing, load_sequence, markdown_table, per_frame_model,
    Predictions,
)
from hcdp_training.metrics import METRIC_NAMES
import numpy as np
import pytest
from tests.model.helpers import activate_temporal, micro_config
import torch

H, W, T, SPEED = 48, 64, 6, 2  # a textured ellipse moving SPEED px/frame to the right


def _ellipse(k: int) -> dict[str, np.ndarray]:
    """Frame k's exact ground truth: a half-ellipsoid bulging towards the camera."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    u, v = (xs - (18 + SPEED * k)) / 12.0, (ys - 24) / 16.0
    inside = u * u + v * v < 1.0
    bulge = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, None))
    normal = np.stack([u, v, -np.maximum(bulge, 1e-3)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    return {"inside": inside,
            "depth": np.where(inside, 2.0 - 0.3 * bulge, np.nan).astype(np.float32),
            "normal": np.where(inside[..., None], normal, 0.0).astype(np.float32)}


def write_sequence(directory: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (H, W + SPEED * T, 3), dtype=np.uint8), (3, 3),
                               0)
    for k in range(T):
        gt = _ellipse(k)
        # the object's texture moves with it
        moved = texture[:, SPEED * (T - k):SPEED * (T - k) + W]
        rgb = np.where(gt["inside"][..., None], moved, background)
        fwd = np.where(gt["inside"][..., None] & (k < T - 1), np.float32([SPEED, 0]),
                       0.0).astype(np.float32)
        bwd = np.where(gt["inside"][..., None] & (k > 0), np.float32([-SPEED, 0]),
                       0.0).astype(np.float32)
        write_frame(directory, k, rgb, gt["inside"].astype(np.float32), gt["depth"], gt["normal"],
                    np.zeros((H, W, 3), np.float32), [fwd], [bwd])
    K = [[50.0, 0.0, W / 2], [0.0, 50.0, H / 2], [0.0, 0.0, 1.0]]
    write_meta(directory, {"frames": T, "flow_strides": 1, "fps": 10.0, "height": H, "width": W,
                           "K": [K] * T, "extrinsics": [np.eye(4).tolist()] * T})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval_data")
    for i in range(2):
        write_sequence(root / f"seq_{i:05d}", seed=i)
    return root


class ReplayPredictor:
    """Replays given per-frame outputs (a fake model): frame k of the sequence after each reset."""

    def __init__(self, depth: np.ndarray, normals: np.ndarray, mask: np.ndarray) -> None:
        self.depth, self.normals, self.mask = depth, normals, mask
        self.k = 0

    def reset(self) -> None:
        self.k = 0

    def step(self, image, stamp, frame_id="", encoding="rgb8") -> Prediction:
        k, self.k = self.k, self.k + 1
        return Prediction(depth=self.depth[k], normals=self.normals[k], mask=self.mask[k],
                          reset=k == 0,
                          window_fill=1, inference_ms=0.0)


def _gt_replay(sequence, depth_noise=0.0, seed=0) -> ReplayPredictor:
    """Return the GT as a prediction, each frame's depth scaled by its own random factor.

    That is per-frame flicker.
    """
    gain = 1.0 + depth_noise * np.random.default_rng(seed).standard_normal(T).astype(np.float32)
    depth = np.nan_to_num(sequence.depth, nan=2.0) * gain[:, None, None]
    normals = np.where(sequence.mask[..., None] > 0.5, sequence.normal, np.float32([0, 0, -1]))
    return ReplayPredictor(depth, normals, sequence.mask)


def test_load_sequence_reads_frames_and_gt_flow(dataset):
    seq = load_sequence(list_sequences(dataset)[0])
    assert seq.rgb.shape == (T, H, W, 3) and seq.flow_fwd.shape == (T, H, W, 2)
    inside = seq.mask[0] > 0.5
    np.testing.assert_allclose(seq.flow_fwd[0][inside], [[SPEED, 0]] * int(inside.sum()))
    assert seq.fps == 10.0 and seq.name == "seq_00000"


def test_opencv_flow_recovers_the_object_motion(dataset):
    seq = load_sequence(list_sequences(dataset)[0], flow="opencv")
    inner = cv2.erode((seq.mask[1] > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    median = np.median(seq.flow_fwd[1][inner], axis=0)
    assert abs(median[0] - SPEED) < 0.5 and abs(median[1]) < 0.5
    assert not seq.flow_fwd[-1].any() and not seq.flow_bwd[0].any()


def test_perfect_prediction_scores_perfect_accuracy_and_zero_flicker(dataset):
    seqs = list_sequences(dataset)
    seq = load_sequence(seqs[0])
    result, _ = evaluate(seqs[:1], {"per_frame": _gt_replay(seq)}, smoothing=None, progress=False)
    m = result.summary["per_frame"]
    assert m["AbsRel"] < 1e-5 and m["RMSE"] < 1e-5 and m["IoU"] == 1.0
    assert m["AngleMean"] < 0.1 and m["Within11.25"] == 100.0
    # the GT itself moves rigidly with the flow: the warped next frame matches up to bilinear
    # sampling
    assert m["OPW"] < 0.02 and m["TC-Abs"] < 0.5 and m["dtSSD"] == 0.0
    assert list(result.summary) == ["per_frame"]


def test_smoothing_lowers_opw_of_a_flickering_per_frame_prediction(dataset):
    seqs = list_sequences(dataset)
    seq = load_sequence(seqs[0])
    flicker = _gt_replay(seq, depth_noise=0.2)
    result, _ = evaluate(seqs[:1], {"per_frame": flicker}, smoothing=0.3, progress=False)
    raw, smooth = result.summary["per_frame"], result.summary["per_frame_ema"]
    assert smooth["OPW"] < 0.7 * raw["OPW"] and smooth["TC-RMSE"] < raw["TC-RMSE"]
    # per-frame alignment hides a per-frame scale: the raw accuracy is still exact
    assert raw["RMSE"] < 1e-5


def test_exponential_smoothing_hand_values_and_unit_normals():
    depth = np.array([1.0, 3.0, 3.0], np.float32)[:, None, None]
    normals = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]], np.float32)[:, None, None]
    mask = np.array([0.0, 1.0, 1.0], np.float32)[:, None, None]
    out = exponential_smoothing(Predictions(depth, normals, mask, np.zeros(3)), alpha=0.5)
    np.testing.assert_allclose(out.depth.ravel(), [1.0, 2.0, 2.5])
    np.testing.assert_allclose(out.mask.ravel(), [0.0, 0.5, 0.75])
    np.testing.assert_allclose(out.normals[1].ravel(), [math.sqrt(0.5), math.sqrt(0.5), 0.0],
                               rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out.normals, axis=-1), 1.0, rtol=1e-6)
    same = exponential_smoothing(Predictions(depth, normals, mask, np.zeros(3)), alpha=1.0)
    np.testing.assert_array_equal(same.depth, depth)
    with pytest.raises(ValueError, match="alpha"):
        exponential_smoothing(Predictions(depth, normals, mask, np.zeros(3)), alpha=0.0)


def test_per_frame_model_equals_the_stage1_model_it_was_built_on():
    stage1 = HCDPModel(micro_config()).eval()
    stage2 = copy.deepcopy(stage1)
    stage2.insert_temporal_blocks("causal")
    activate_temporal(stage2)
    clip = torch.randn(1, 3, 3, stage1.cfg.resolution, stage1.cfg.resolution)
    with torch.no_grad():
        assert not torch.allclose(stage2(clip)["depth"], stage1(clip)["depth"])
        per_frame = per_frame_model(stage2)
        torch.testing.assert_close(per_frame(clip)["depth"], stage1(clip)["depth"])
    assert per_frame.temporal_blocks is None and not per_frame.cfg.temporal.enabled


def test_markdown_table_has_a_row_per_metric_and_the_relative_change():
    summary = {m: dict.fromkeys(METRIC_NAMES, 1.0) for m in ("streaming", "per_frame")}
    summary["streaming"]["OPW"] = 0.5
    summary["per_frame"]["TC-Abs"] = math.nan
    table = markdown_table(EvalResult(summary, {}, {}, {}))
    lines = table.splitlines()
    assert lines[0] == "| Metric | streaming | per_frame | streaming vs per-frame |"  # no window_1
    assert len(lines) == 2 + len(METRIC_NAMES)
    assert "| OPW ↓ | 0.5 | 1 | -50.0% |" in lines
    assert "| IoU ↑ | 1 | 1 | +0.0% |" in lines
    assert "| TC-Abs ↓ | 1 | – | – |" in lines


def test_hcdp_eval_end_to_end_writes_json_markdown_and_sheet(dataset, tmp_path, capsys):
    model = activate_temporal(HCDPModel(micro_config(temporal=True)))
    checkpoint = save_checkpoint(model, tmp_path / "ckpt")
    out_json, out_md, out_png = tmp_path / "m.json", tmp_path / "m.md", tmp_path / "sheet.png"
    code = hcdp_main(["eval", "--checkpoint", str(checkpoint), "--data", str(dataset), "--window",
                      "4",
                      "--json", str(out_json), "--markdown", str(out_md), "--sheet", str(out_png),
                      "--no-progress", "--max-frames", "5"])
    assert code == 0
    result = json.loads(out_json.read_text())
    assert list(result["methods"]) == ["streaming", "window_1", "per_frame", "per_frame_ema"]
    for method, metrics in result["methods"].items():
        assert list(metrics) == list(METRIC_NAMES), method
        assert all(math.isfinite(v) for v in metrics.values()), method
        assert result["counts"][method]["AbsRel"] == 10 and result["counts"][method]["dtSSD"] == 8
    assert set(result["per_sequence"]["streaming"]) == {"seq_00000", "seq_00001"}
    meta = result["metadata"]
    assert meta["sequences"] == 2 and meta["frames"] == 10
    assert meta["pairs"] == 8 and meta["window"] == 4
    assert meta["per_frame_model"] == "checkpoint without temporal blocks"
    # the temporal blocks are active, so streaming differs from its per-frame model, and the past
    # matters, so it differs from the same weights at window 1 too
    assert result["methods"]["streaming"]["OPW"] != result["methods"]["per_frame"]["OPW"]
    assert result["methods"]["streaming"]["OPW"] != result["methods"]["window_1"]["OPW"]
    assert meta["perturb_seed"] is None
    printed = capsys.readouterr().out
    assert out_md.read_text().strip() in printed
    assert out_md.read_text().count("\n") == 2 + len(METRIC_NAMES)
    sheet = cv2.imread(str(out_png))
    tile = 192
    # 3 frames + x-t row
    assert sheet.shape[0] > 4 * tile and sheet.shape[1] == 16 * round(tile * W / H)


def test_hcdp_eval_reports_a_missing_checkpoint(dataset, tmp_path, capsys):
    code = hcdp_main(["eval", "--checkpoint", str(tmp_path / "nope"), "--data", str(dataset),
                      "--no-progress"])
    assert code == 2 and "nope" in capsys.readouterr().err


def test_markdown_table_compares_streaming_with_the_same_weights_at_window_1():
    summary = {m: dict.fromkeys(METRIC_NAMES, 1.0)
               for m in ("streaming", "window_1", "per_frame")}
    summary["streaming"]["OPW"] = 0.6
    summary["window_1"]["OPW"] = 0.8
    summary["per_frame"]["OPW"] = 1.2
    lines = markdown_table(EvalResult(summary, {}, {}, {})).splitlines()
    assert lines[0] == ("| Metric | streaming | window_1 | per_frame | streaming vs W=1 (same "
                        "weights) | streaming vs per-frame |")
    assert "| OPW ↓ | 0.6 | 0.8 | 1.2 | -25.0% | -50.0% |" in lines


def test_perturbed_sequences_change_every_frame_reproducibly_and_keep_the_ground_truth(dataset):
    directory = list_sequences(dataset)[0]
    clean = load_sequence(directory)
    first, again = load_sequence(directory, perturb=3), load_sequence(directory, perturb=3)
    other = load_sequence(directory, perturb=4)
    np.testing.assert_array_equal(first.rgb, again.rgb)
    assert not np.array_equal(first.rgb, other.rgb)
    changed = [(first.rgb[k] != clean.rgb[k]).any() for k in range(T)]
    assert sum(changed) >= T - 1  # p(no nuisance at all) per frame is ~0.15
    for key in ("depth", "normal", "mask", "flow_fwd", "flow_bwd"):
        np.testing.assert_array_equal(getattr(first, key), getattr(clean, key), err_msg=key)


def test_hcdp_eval_perturb_and_attention_report(dataset, tmp_path, capsys):
    model = activate_temporal(HCDPModel(micro_config(temporal=True)))
    checkpoint = save_checkpoint(model, tmp_path / "ckpt")
    out_json = tmp_path / "m.json"
    code = hcdp_main(["eval", "--checkpoint", str(checkpoint), "--data", str(dataset), "--window",
                      "4",
                      "--perturb", "5", "--attention", "--json", str(out_json), "--no-progress"])
    assert code == 0
    meta = json.loads(out_json.read_text())["metadata"]
    assert meta["perturb_seed"] == 5
    attention = meta["attention"]
    assert [a["block"] for a in attention] == [0, 1, 2, 3]
    for block in attention:
        assert math.isclose(block["mass_current"] + block["mass_past"], 1.0, rel_tol=1e-6)
        assert len(block["mass_by_offset"]) == 4 and block["past_share"] > 0
    printed = capsys.readouterr().out
    assert "| block | map | mass on current | mass on past" in printed


def test_hcdp_eval_runs_an_onnx_artefact_through_load_predictor(dataset, tmp_path, monkeypatch):
    # every method is built by load_predictor, so an exported artefact is evaluated like the
    # checkpoint it came from (its baselines on the weights its manifest names)
    pytest.importorskip("onnxruntime")
    from hcdp_model.backends.build import ExportSpec, export_artefact

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    checkpoint = save_checkpoint(activate_temporal(HCDPModel(micro_config(temporal=True))),
                                 tmp_path / "ckpt")
    artefact = tmp_path / "step.onnx"
    export_artefact(checkpoint, artefact, ExportSpec("onnx", window=4, camera_size=(H, W)))
    common = ["--data", str(dataset), "--window", "4", "--max-frames", "4", "--no-progress"]
    results = {}
    for name, source, backend in (("torch", checkpoint, "torch"),
                                  ("onnx", artefact, "onnxruntime")):
        out = tmp_path / f"{name}.json"
        code = hcdp_main(["eval", "--checkpoint", str(source), "--backend", backend, *common,
                          "--json", str(out)])
        assert code == 0, name
        results[name] = json.loads(out.read_text())
    assert results["onnx"]["metadata"]["backend"] == "onnxruntime"
    for method in ("streaming", "window_1", "per_frame", "per_frame_ema"):
        for metric, value in results["torch"]["methods"][method].items():
            assert results["onnx"]["methods"][method][metric] == pytest.approx(
                value, rel=1e-3, abs=1e-4), (method, metric)


def test_hcdp_eval_refuses_an_artefact_whose_source_weights_are_gone(dataset, tmp_path,
                                                                     monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    import shutil

    from hcdp_model.backends.build import ExportSpec, export_artefact

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    checkpoint = save_checkpoint(HCDPModel(micro_config(temporal=True)), tmp_path / "ckpt")
    artefact = tmp_path / "step.onnx"
    export_artefact(checkpoint, artefact, ExportSpec("onnx", window=4, camera_size=(H, W)))
    shutil.rmtree(checkpoint)
    code = hcdp_main(["eval", "--checkpoint", str(artefact), "--backend", "onnxruntime",
                      "--data", str(dataset), "--window", "4", "--no-progress"])
    assert code == 2
    assert "the baselines need the weights it was exported from" in capsys.readouterr().err
