"""Ground truth of generated anny sequences.

Normals vs depth, flow vs warping, determinism, diversity.

The anny model is built once per machine into ~/.cache/hcdp/anny (60-80 s the first time, then ~1
s).
"""
import dataclasses
import hashlib
import json
from pathlib import Path

from hcdp_model.geometry import backward_warp
from hcdp_training.data import read_frame
from hcdp_training.synth.body import BodyModel
from hcdp_training.synth.generate import (
    generate_dataset, run_settings, sequence_seed, SequenceWriter, SynthConfig,
)
from hcdp_training.synth.scene import GROUNDS, sample_scene
import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def body():
    return BodyModel.load()


@pytest.fixture(scope="module")
def upper_body_frames(body, tmp_path_factory):
    """Four 128x128 frames of one person framed from the waist up, with strides 1 and 2."""
    config = SynthConfig(out=str(tmp_path_factory.mktemp("gt")), frames=4, width=128, height=128,
                         flow_strides=2)
    spec = sample_scene(sequence_seed(11, 0), 4, 15.0, static=False, max_people=1,
                        motions=("walk",))
    camera = dataclasses.replace(spec.camera, view="upper_body", extent_m=0.9, offset=(0.0, 0.0),
                                 shake_deg=0.0)
    spec = dataclasses.replace(spec, camera=camera)
    writer = SequenceWriter(config, body)
    rendered = list(writer.render(spec))
    writer.renderer.release()
    return [f for _, f in rendered], rendered[0][0].K


def _normals_from_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    points = rays * depth[..., None]
    du = (points[1:-1, 2:] - points[1:-1, :-2])
    dv = (points[2:, 1:-1] - points[:-2, 1:-1])
    n = -np.cross(du, dv)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return n


def test_normals_agree_with_normals_computed_from_depth_on_smooth_regions(upper_body_frames):
    frames, K = upper_body_frames
    angles = []
    for f in frames:
        from_depth = _normals_from_depth(f.depth.astype(np.float64), K)
        d = f.depth
        c = d[1:-1, 1:-1]
        # Smooth: the 3x3 neighbourhood is on the human and its depth is nearly planar.
        window = np.stack([d[1 + dy:d.shape[0] - 1 + dy, 1 + dx:d.shape[1] - 1 + dx]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        lap = np.abs(window[1] + window[7] + window[3] + window[5] - 4 * c)
        smooth = np.isfinite(window).all(0) & (lap < 0.002 * c)
        cos = np.sum(from_depth[smooth] * f.normal[1:-1, 1:-1][smooth], -1)
        angles.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    angles = np.concatenate(angles)
    assert angles.size > 500
    assert np.median(angles) < 6.0


def _warp(x: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float()
    ft = torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1)))[None].float()
    warped, valid = backward_warp(xt, ft)
    return warped[0].numpy().transpose(1, 2, 0), valid[0, 0].numpy()


def _visible_both(a, b, fwd: np.ndarray) -> np.ndarray:
    """Pixels of frame a on the human whose forward-flow target lands on frame b's human.

    Only those not occluded.
    """
    warped_depth, valid = _warp(np.nan_to_num(b.depth, nan=-1.0)[..., None], fwd)
    return np.isfinite(a.depth) & valid & (warped_depth[..., 0] > 0) & (a.mask > 0.99)


def test_backward_warping_frame_t_plus_1_with_forward_flow_reproduces_frame_t(upper_body_frames):
    frames, _ = upper_body_frames
    for a, b in zip(frames[:-1], frames[1:]):
        fwd = a.flow_fwd[0]
        # Canonical coordinates name the surface point: they must match where the point stays
        # visible.
        warped, valid = _warp(b.canonical, fwd)
        back, _ = _warp(b.flow_bwd[0], fwd)
        visible = _visible_both(a, b, fwd) & (np.linalg.norm(fwd + back, axis=-1) < 0.5)
        assert visible.mean() > 0.05
        err = np.linalg.norm(warped - a.canonical, axis=-1)[visible]
        assert np.median(err) < 0.01  # canonical spans [-1, 1]: < 1 % of the body
        warped_rgb, _ = _warp(b.rgb.astype(np.float32), fwd)
        rgb_err = np.abs(warped_rgb - a.rgb.astype(np.float32)).mean(-1)[visible]
        assert np.median(rgb_err) < 3.0  # shading changes a little as the body turns (no flow: ~6)


def test_forward_then_backward_flow_is_the_identity_on_visible_pixels(upper_body_frames):
    frames, _ = upper_body_frames
    for a, b in zip(frames[:-1], frames[1:]):
        fwd = a.flow_fwd[0]
        back, _ = _warp(b.flow_bwd[0], fwd)
        visible = _visible_both(a, b, fwd)
        cycle = np.linalg.norm(fwd + back, axis=-1)[visible]
        assert np.median(cycle) < 0.05
        assert np.mean(cycle < 0.5) > 0.9
        assert np.abs(fwd[visible]).max() > 0.2  # the person does move


def test_stride_two_flow_equals_two_chained_stride_one_flows(upper_body_frames):
    frames, _ = upper_body_frames
    a, b = frames[0], frames[1]
    f01, f12 = a.flow_fwd[0], b.flow_fwd[0]
    chained, valid = _warp(f12, f01)
    visible = _visible_both(a, b, f01) & valid
    diff = np.linalg.norm(f01 + chained - a.flow_fwd[1], axis=-1)[visible]
    assert np.median(diff) < 0.05


def test_last_frame_forward_flow_and_first_frame_backward_flow_are_zero(upper_body_frames):
    frames, _ = upper_body_frames
    assert not frames[-1].flow_fwd[0].any() and not frames[0].flow_bwd[0].any()
    assert not frames[-2].flow_fwd[1].any() and not frames[1].flow_bwd[1].any()
    assert frames[1].flow_bwd[0].any()


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(body, tmp_path):
    def make(seed: int, name: str) -> Path:
        config = SynthConfig(out=str(tmp_path / name), sequences=2, frames=3, width=48, height=48,
                             seed=seed)
        generate_dataset(config)
        return tmp_path / name

    first, again, other = make(5, "a"), make(5, "b"), make(6, "c")
    digest = _digest(first)
    # per frame rgb/mask/gt, meta.json; card.json, CARD.md, synth_config.json
    assert len(digest) == 2 * (3 * 3 + 1) + 3
    assert digest == _digest(again)
    for seq in ("seq_00000", "seq_00001"):
        meta_a = (first / seq / "meta.json").read_text()
        meta_c = (other / seq / "meta.json").read_text()
        ca, cc = json.loads(meta_a)["controls"], json.loads(meta_c)["controls"]
        assert ca["people"][0]["phenotype"] != cc["people"][0]["phenotype"]
        assert ca["motions"] != cc["motions"] or ca["motion_speed"] != cc["motion_speed"]
        assert not np.array_equal(read_frame(first / seq, 0)["rgb"],
                                  read_frame(other / seq, 0)["rgb"])


def test_far_views_show_small_people_and_leave_other_seeds_unchanged(body, tmp_path):
    # far_share 0 spends no draw: these scenes are the ones the generator gave before the option
    # (digest computed with the generator of commit 5ba6925)
    specs = [sample_scene(sequence_seed(s, i), 6, 15.0, static, 3).to_json()
             for s in (1, 33) for i in range(4) for static in (False, True)]
    digest = hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()
    assert digest == "4317d94428efa6dfadfef5ea1f23d3aaf913794635d83ef323443e90cfdf18f3"
    config = _small(tmp_path / "far", sequences=4, frames=1, width=96, height=96, max_people=1,
                    far_share=1.0)
    generate_dataset(config, progress=False)
    assert json.loads((tmp_path / "far" / "synth_config.json").read_text())["far_share"] == 1.0
    for i in range(4):
        seq = tmp_path / "far" / f"seq_{i:05d}"
        assert json.loads((seq / "meta.json").read_text())["controls"]["camera"]["view"] == "far"
        rows = np.flatnonzero(read_frame(seq, 0)["mask"].reshape(96, -1).max(1) > 0.5)
        # 2-8 body heights in the frame: the person 1/8 to 1/2 of it, less from above
        assert rows.size and 0.06 <= (rows[-1] - rows[0] + 1) / 96 <= 0.55
    # the share of an earlier run without far views is not recorded, so it resumes as it was
    assert "far_share" not in run_settings(_small(tmp_path / "near"))


def test_the_ground_lies_at_z_0_under_the_people_is_never_person_and_leaves_other_seeds(body,
                                                                                        tmp_path):
    specs = [sample_scene(sequence_seed(1, i), 6, 15.0, False, 3).to_json() for i in range(3)]
    assert all("ground" not in s for s in specs)  # scenes without one read as before
    config = _small(tmp_path / "g", sequences=3, frames=2, width=96, height=96, max_people=1,
                    ground_share=1.0)
    generate_dataset(config, progress=False)
    seen = 0
    for i in range(3):
        seq = tmp_path / "g" / f"seq_{i:05d}"
        assert json.loads((seq / "meta.json").read_text())["controls"]["ground"] in GROUNDS
        for t in range(2):
            f = read_frame(seq, t)
            ground = np.isfinite(f["ground_depth"])
            # never the person's pixel: the person's depth is NaN there and the mask ~0
            assert not (ground & np.isfinite(f["depth"])).any()
            if not ground.any():
                continue
            seen += int(ground.sum())
            assert np.median(f["mask"][ground]) == 0.0 and (f["mask"][ground] > 0.5).mean() < 0.02
            # back-projected through K and the extrinsics, every ground pixel lands on z = 0
            v, u = np.nonzero(ground)
            z = f["ground_depth"][ground].astype(np.float64)
            cam = np.stack([u, v, np.ones_like(u)], 1) @ np.linalg.inv(f["K"]).T * z[:, None]
            pose = f["extrinsics"].astype(np.float64)
            world = (cam - pose[:3, 3]) @ pose[:3, :3]
            assert np.abs(world[:, 2]).max() < 1e-3 * z.max() + 1e-3
    assert seen > 1000  # the ground is in view


# --- the output folder and the command line -----------------------------------------------------


def _small(out: Path, **changes) -> SynthConfig:
    return SynthConfig(out=str(out), **{"sequences": 2, "frames": 2, "width": 48, "height": 48,
                                        "seed": 3, **changes})


def test_a_non_empty_out_is_refused_and_left_alone(tmp_path):
    stale = tmp_path / "out" / "seq_00000"
    stale.mkdir(parents=True)
    (stale / "rgb_0000.png").write_bytes(b"an older run's frame")
    with pytest.raises(ValueError, match="is not empty .*--resume"):
        generate_dataset(_small(tmp_path / "out"), progress=False)
    assert [p.name for p in stale.iterdir()] == ["rgb_0000.png"]


def test_resume_finishes_exactly_the_recorded_run_and_refuses_another(body, tmp_path):
    generate_dataset(_small(tmp_path / "whole"), progress=False)
    cut = tmp_path / "cut"
    generate_dataset(_small(cut), progress=False)
    (cut / "seq_00001" / "meta.json").unlink()  # as if killed while writing sequence 1
    (cut / "seq_00000" / "meta.json").write_text('{"frames": 2, "contr')  # killed writing it
    next((cut / "seq_00001").rglob("*.png")).write_bytes(b"truncated")
    (cut / "CARD.md").unlink()
    summary = generate_dataset(_small(cut, workers=2), progress=False, resume=True)
    assert (summary["rendered_sequences"], summary["rendered_frames"]) == (2, 4)
    assert _digest(cut) == _digest(tmp_path / "whole")
    with pytest.raises(ValueError, match=r"holds a different run \(height: 48 -> 64"):
        generate_dataset(_small(cut, height=64), progress=False, resume=True)


@pytest.mark.parametrize("args, expected", [
    (["--sequences", "0"], "expected sequences >= 1"),
    (["--frames", "0"], "expected sequences >= 1 and frames >= 1"),
    (["--size", "10", "10"], "expected an image size between 16x16"),
    (["--size", "64", "100000"], "expected an image size between 16x16"),
    (["--fps", "0"], "expected fps > 0, got 0.0"),
    (["--fps", "nan"], "expected fps > 0, got nan"),
    (["--flow-strides", "0"], "expected flow_strides in 1..6, got 0"),
    (["--workers", "0"], "expected workers >= 1, got 0"),
    (["--max-people", "4"], "expected max_people in 1..3"),
    (["--far-share", "1.5"], "expected far_share in [0, 1], got 1.5"),
    (["--far-share", "nan"], "expected far_share in [0, 1], got nan"),
    (["--ground-share", "-0.1"], "expected ground_share in [0, 1], got -0.1"),
])
def test_bad_arguments_are_one_line_errors_before_anything_is_written(tmp_path, capsys, args,
                                                                      expected):
    from hcdp_model.cli import main

    assert main(["synth", "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hcdp synth: ") and expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_cli_shows_progress_and_ends_with_a_readable_summary(body, tmp_path, capsys):
    from hcdp_model.cli import main

    out = tmp_path / "out"
    assert main(["synth", "--out", str(out), "--sequences", "2", "--frames", "2", "--size", "48",
                 "64", "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert "hcdp synth: 100%" in captured.err and "4/4" in captured.err  # the tqdm bar, in frames
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and "{" not in lines[0]
    assert lines[0].startswith(f"hcdp synth: 2 sequences x 2 frames (48x64, seed 3) in {out}; "
                               "rendered 4 frames in ")
