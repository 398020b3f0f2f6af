"""The trainer: stages, resume, the CLI, torchrun, and a safe output folder.

Each stage lowers its loss on generated data, freezes what the paper freezes, stage 2 starts from
the stage-1 predictions, gradient dropping skips steps, resume is bitwise exact, the CLI writes
the final checkpoint with its metadata, and torchrun runs two gloo processes. The output folder
never loses or mixes up a run: used folders are refused, checkpoints are atomic, resume falls back
and checks the config.
"""
import copy
import os
from pathlib import Path
import subprocess
import sys

from hcdp_model.checkpoint import load_checkpoint, save_checkpoint
from hcdp_model.cli import main as hcdp_main
from hcdp_training import state as state_module
from hcdp_training.loader import build_dataset
from hcdp_training.stages import build_model, make_task
from hcdp_training.state import (
    git_commit, list_checkpoints, load_trainer_state, save_final_checkpoint, STATE_NAME,
)
from hcdp_training.train import OutputError, train
import pytest
from safetensors import safe_open
import torch
from torch.utils.data import default_collate

from .train_helpers import train_config, write_disc_sequences, write_micro_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = write_disc_sequences(root / "data", sequences=2, frames=4)
    model_config = write_micro_config(root / "micro.yaml")
    stage0 = train(train_config(0, root / "s0", data, model_config,
                                optim={"steps": 4, "lr_others": 3e-3}))
    stage1_cfg = train_config(1, root / "s1", data, model_config,
                              model={"prior_init": str(stage0.final)},
                              optim={"steps": 4})
    stage1 = train(stage1_cfg)
    return {"root": root, "data": data, "model_config": model_config, "stage0": stage0,
            "stage1": stage1,
            "stage1_cfg": stage1_cfg}


def _batch(cfg, n=2):
    dataset = build_dataset(cfg, 56)
    return default_collate([dataset[i] for i in range(n)])


def _loss(model, cfg, batch):
    with torch.no_grad():
        return float(make_task(model, cfg)(batch)[0])


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_stage0_trains_only_the_prior_encoder_and_lowers_its_loss(setup):
    cfg = train_config(0, setup["root"] / "s0_again", setup["data"], setup["model_config"],
                       optim={"steps": 4, "lr_others": 3e-3})
    before = build_model(cfg)
    batch = _batch(cfg)
    after = setup["stage0"].model
    assert _loss(after, cfg, batch) < _loss(before, cfg, batch)
    changed = {k for k,
               v in before.state_dict().items() if not torch.equal(v, after.state_dict()[k])}
    assert changed and all(k.startswith("human_prior.encoder.") for k in changed)


def test_stage1_lowers_the_loss_and_keeps_the_stage0_prior_encoder_frozen(setup):
    cfg = setup["stage1_cfg"]
    before, after = build_model(cfg), setup["stage1"].model
    batch = _batch(cfg)
    assert _loss(after, cfg, batch) < _loss(before, cfg, batch)
    prior = setup["stage0"].model.human_prior.encoder.state_dict()
    for k, v in after.human_prior.encoder.state_dict().items():
        assert torch.equal(v, prior[k]), k
    assert not torch.equal(before.encoder.blocks[0].attn.qkv.weight,
                           after.encoder.blocks[0].attn.qkv.weight)


def test_stage2_starts_from_the_stage1_predictions_then_lowers_the_loss_with_the_encoder_frozen(
        setup):
    cfg = train_config(2, setup["root"] / "s2", setup["data"], setup["model_config"],
                       model={"init": str(setup["stage1"].final)},
                       optim={"steps": 4, "batch_size": 1})
    stage1 = load_checkpoint(setup["stage1"].final)
    start = build_model(cfg)
    assert start.temporal_blocks is not None and start.cfg.temporal.mode == "causal"
    batch = _batch(cfg, 1)
    clip = torch.randn(1, 3, 3, 56, 56)
    with torch.no_grad():
        a, b = stage1(clip), start(clip)
    for key in a:
        assert torch.equal(a[key], b[key]), key

    result = train(cfg)
    assert _loss(result.model, cfg, batch) < _loss(start, cfg, batch)
    for k, v in start.encoder.state_dict().items():
        assert torch.equal(v, result.model.encoder.state_dict()[k]), k
    assert not torch.equal(start.temporal_blocks[0].proj_out.weight,
                           result.model.temporal_blocks[0].proj_out.weight)


def test_stage1_from_a_stage2_model_trains_the_encoder_and_leaves_the_temporal_blocks_alone(
        setup):
    model = load_checkpoint(setup["stage1"].final)
    model.insert_temporal_blocks("causal")
    model.insert_fused_temporal_block()
    torch.manual_seed(3)
    with torch.no_grad():  # trained-like: no zero output projection, so they would get gradients
        for p in [*model.temporal_blocks.parameters(), *model.fused_temporal.parameters()]:
            p.add_(0.1 * torch.randn_like(p))
    init = save_checkpoint(model, setup["root"] / "stage2_like")
    cfg = train_config(1, setup["root"] / "s1_from_s2", setup["data"], setup["model_config"],
                       model={"init": str(init)}, optim={"steps": 2})
    after = train(cfg).model
    before = model.state_dict()
    temporal = [k for k in before if k.startswith(("temporal_blocks.", "fused_temporal."))]
    assert temporal
    for k in temporal:
        assert torch.equal(before[k], after.state_dict()[k]), k
    assert not torch.equal(before["encoder.blocks.0.attn.qkv.weight"],
                           after.encoder.blocks[0].attn.qkv.weight)


def test_a_step_whose_gradient_norm_exceeds_drop_grad_norm_is_skipped_and_counted(setup):
    cfg = train_config(1, setup["root"] / "drop", setup["data"], setup["model_config"],
                       optim={"steps": 2, "clip_grad_norm": 0.0, "drop_grad_norm": 1e-9})
    start = build_model(cfg)
    result = train(cfg)
    assert result.progress.skipped == 2 and result.progress.step == 2
    for k, v in start.state_dict().items():
        assert torch.equal(v, result.model.state_dict()[k]), k


@pytest.mark.parametrize("stage", [1, 2])
def test_resume_after_an_interruption_gives_bitwise_identical_weights(setup, tmp_path, stage):
    extra = {"model": {"init": str(setup["stage1"].final)},
             "optim": {"batch_size": 1}} if stage == 2 else {}
    sections = {"data": {"augment": True},
                "optim": {"steps": 5, "accumulation": 2, "warmup_steps": 2,
                          **extra.get("optim", {})}}
    if "model" in extra:
        sections["model"] = extra["model"]

    def cfg(out):
        return train_config(stage, tmp_path / out, setup["data"], setup["model_config"],
                            **copy.deepcopy(sections))

    whole = train(cfg("whole"))
    first = train(cfg("parts"), stop_at=2)
    assert first.final is None and first.progress.step == 2
    state = load_trainer_state(list_checkpoints(tmp_path / "parts")[-1])  # weights_only=True
    assert state["progress"]["step"] == 2 and isinstance(state["rng"]["torch"], torch.Tensor)
    resumed = train(cfg("parts"), resume=True)
    # crossed an epoch boundary
    assert resumed.progress == whole.progress and whole.progress.epoch >= 1
    assert resumed.losses == whole.losses[2:]
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_cli_writes_the_final_checkpoint_with_stage_steps_seed_and_commit_metadata(setup,
                                                                                   tmp_path):
    cfg = setup["stage1_cfg"]
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert hcdp_main(["train", "--config", str(path), "--out", str(tmp_path / "run"),
                      "optim.steps=1"]) == 0
    with safe_open(str(tmp_path / "run" / "final" / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert (meta["stage"], meta["steps"], meta["data_seed"]) == ("1", "1", "0")
    assert "git_commit" in meta
    assert (tmp_path / "run" / "checkpoints" / "step_0000001" / STATE_NAME).is_file()
    assert hcdp_main(["train", "--config", str(path), "--out", str(tmp_path / "run2"),
                      "optim.nope=1"]) == 2
    assert hcdp_main(["train", "--config", str(path), "--out", str(tmp_path / "run3"),
                      "--resume"]) == 2


def test_git_commit_is_marked_dirty_when_tracked_files_differ_from_it(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    assert git_commit(tmp_path) == ""  # not a checkout
    git("init", "-q")
    (tmp_path / "loss.py").write_text("a = 1\n")
    git("add", "loss.py")
    git("commit", "-qm", "c")
    head = git("rev-parse", "HEAD")
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "loss.py").write_text("a = 2\n")
    assert git_commit(tmp_path) == head + "-dirty"


def test_torchrun_runs_two_gloo_processes_for_two_steps(setup, tmp_path):
    cfg = setup["stage1_cfg"]
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m",
           "hcdp_model.cli", "train", "--config", str(path), "--out", str(tmp_path / "ddp"),
           "optim.steps=2",
           "optim.batch_size=1", "device=cpu"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("2 of 2 steps") == 1
    assert (tmp_path / "ddp" / "final" / "model.safetensors").is_file()


# --- the output folder ----------------------------------------------------------------------


def _micro(setup, out, **optim):
    return train_config(1, out, setup["data"], setup["model_config"], optim={"steps": 2, **optim})


def _fake_step(out, step):
    """Make a complete-looking step folder of an older run (step numbers above the new run's)."""
    folder = out / "checkpoints" / f"step_{step:07d}"
    folder.mkdir(parents=True)
    for name in ("model.safetensors", "config.yaml", STATE_NAME):
        (folder / name).write_bytes(b"old run")
    return folder


def test_a_new_run_into_a_non_empty_out_is_refused_before_any_work(setup, tmp_path):
    out = tmp_path / "used"
    old = _fake_step(out, 99)
    with pytest.raises(OutputError, match="not empty.*--resume.*--overwrite"):
        train(_micro(setup, out))
    assert list_checkpoints(out) == [old] and not (out / "final").exists()


def test_overwrite_replaces_the_old_run_so_its_higher_steps_do_not_evict_the_new_checkpoints(
        setup, tmp_path):
    out = tmp_path / "used"
    _fake_step(out, 99)
    (out / "notes.txt").write_text("the user's own file")
    result = train(_micro(setup, out), overwrite=True)
    assert [p.name for p in list_checkpoints(out)] == ["step_0000002"]
    assert result.final == out / "final" and (out / "notes.txt").is_file()


def test_cli_refuses_a_used_out_with_a_one_line_error(setup, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(_micro(setup, tmp_path / "run").to_yaml())
    _fake_step(tmp_path / "run", 5)
    assert hcdp_main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err and "Traceback" not in err


def _crash_while_writing_weights(monkeypatch):
    """save_checkpoint that leaves a truncated weights file behind, then dies."""
    def crash(model, path, metadata=None):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "model.safetensors").write_bytes(b"trunc")
        raise OSError("disk full")

    monkeypatch.setattr(state_module, "save_checkpoint", crash)


def test_a_crash_while_rewriting_a_step_folder_leaves_the_previous_checkpoint_intact(
        setup, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = train(_micro(setup, out, steps=2), stop_at=2)
    folder = list_checkpoints(out)[-1]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _crash_while_writing_weights(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        state_module.save_training_checkpoint(out, first.model, first.progress,
                                              *_optimizer_parts(first), {}, keep=2)
    assert list_checkpoints(out) == [folder]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [folder.name]


def _optimizer_parts(result):
    optimizer = torch.optim.AdamW(result.model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=False)


def test_final_is_never_left_truncated(setup, tmp_path, monkeypatch):
    out = tmp_path / "run"
    model = setup["stage1"].model
    save_final_checkpoint(model, out, {"steps": "1"})
    before = (out / "final" / "model.safetensors").read_bytes()
    _crash_while_writing_weights(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_final_checkpoint(model, out, {"steps": "2"})
    assert (out / "final" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["final"]
    load_checkpoint(out / "final")


def test_resume_falls_back_to_the_newest_readable_checkpoint(setup, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = _micro(setup, out, steps=3)
    cfg.checkpoint.keep = 3
    train(cfg, stop_at=2)
    newest = list_checkpoints(out)[-1]
    (newest / STATE_NAME).write_bytes(b"\x00garbage, a crash mid-write on an older version")
    (out / "checkpoints" / "step_0000009").mkdir()  # an incomplete folder: no files at all
    resumed = train(cfg, resume=True)
    assert len(resumed.losses) == 2 and resumed.progress.step == 3  # steps 2 and 3 (from step 1)
    assert f"skipping {newest}" in capsys.readouterr().err


def test_resume_with_a_corrupt_trainer_state_is_a_one_line_error(setup, tmp_path, capsys):
    cfg = _micro(setup, tmp_path / "run", steps=2)
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    train(cfg, stop_at=1)
    (list_checkpoints(tmp_path / "run")[-1] / STATE_NAME).write_bytes(b"PK\x03\x04 not a zip")
    assert hcdp_main(["train", "--config", str(path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot read the trainer state" in err
    assert err.strip().splitlines()[-1].startswith("hcdp train: --resume: no complete checkpoint")


def test_resume_refuses_a_config_that_differs_from_the_run_unless_allowed(setup, tmp_path):
    out = tmp_path / "run"
    train(_micro(setup, out, steps=3), stop_at=1)
    other = tmp_path / "other_data"
    other.symlink_to(setup["data"])
    changed = _micro(setup, out, steps=3)
    changed.data.root = str(other)
    with pytest.raises(OutputError, match=f"data.root: '{setup['data']}' -> '{other}'"):
        train(changed, resume=True)
    assert train(changed, resume=True, allow_config_change=True).progress.step == 3


def test_the_readme_train_row_says_which_stage_to_run_first(tmp_path, monkeypatch, capsys):
    configs = Path(__file__).resolve().parents[2] / "training" / "configs"
    monkeypatch.chdir(tmp_path)  # no runs/ here: stage 0 has not run
    assert hcdp_main(["train", "--config", str(configs / "tiny_cpu_stage1.yaml")]) == 2
    err = capsys.readouterr().err
    assert "model.prior_init" in err and "runs/tiny_cpu_stage0/final" in err
    assert f"hcdp train --config {configs / 'tiny_cpu_stage0.yaml'}` first" in err
    assert not (tmp_path / "runs").exists()
