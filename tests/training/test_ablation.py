"""hcdp ablate: the plan, the configs it hands the trainer, and the table.

The plan says which stages each variant trains and shares; tested once with a stub trainer over
every variant, once with the real trainer for one variant.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hcdp_model.checkpoint import load_checkpoint, save_checkpoint
from hcdp_model.config import ModelConfig
from hcdp_model.model import HCDPModel
from hcdp_training import ablation
from hcdp_training.config import TrainConfig
from hcdp_training.metrics import METRIC_NAMES
import pytest
from tests.model.helpers import micro_config
from tests.training.test_evaluate import write_sequence

COMMON = ("optim:\n  batch_size: 2\n  warmup_steps: 1\nlog:\n  tensorboard: false\n  progress: "
          "false\ncheckpoint:\n  every: 100\ndata:\n  augment: false\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ablation")
    write_sequence(root / "data" / "seq_00000", seed=3)
    micro = root / "micro.yaml"
    micro_config().save(micro)
    configs = root / "configs"
    configs.mkdir()
    (configs / "t_stage0.yaml").write_text(f"stage: 0\nmodel:\n  config: {micro}\n{COMMON}")
    (configs / "t_stage1.yaml").write_text(f"stage: 1\nmodel:\n  config: {micro}\n{COMMON}")
    (configs / "t_stage2.yaml").write_text(f"stage: 2\n{COMMON}  frames: 3\n")
    return {"root": root, "data": root / "data", "configs": configs}


def _args(setup: dict[str, Path], out: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ablation.add_arguments(parser)
    return parser.parse_args(["--data", str(setup["data"]), "--eval-data", str(setup["data"]),
                              "--out", str(out),
                              "--configs", str(setup["configs"]), "--prefix", "t", "--window", "2",
                              "--max-frames", "3", "--no-progress", *extra])


class StubTrainer:
    """Record every stage config and write an untrained micro checkpoint of the right structure."""

    def __init__(self) -> None:
        self.configs: list[TrainConfig] = []

    def __call__(self, cfg: TrainConfig) -> Path:
        self.configs.append(cfg)
        if cfg.stage == 2:
            model = load_checkpoint(cfg.model.init)
            model.insert_temporal_blocks(cfg.model.temporal_mode)
        else:
            model = HCDPModel(ModelConfig.load(cfg.model.config))
        return save_checkpoint(model, Path(cfg.out) / "final")


def test_every_variant_is_trained_once_per_distinct_stage_and_tabled(setup, tmp_path, capsys):
    trainer = StubTrainer()
    args = _args(setup, tmp_path / "run", "--steps", "3", "4", "5", "--json",
                 str(tmp_path / "a.json"),
                 "--markdown", str(tmp_path / "a.md"), "optim.batch_size=1")
    assert ablation.run(args, train_fn=trainer) == 0

    stages = [c.stage for c in trainer.configs]
    # one shared stage 0; stage 1 per structure (full, no_prior, fourier_uv, no_cwa, no_cnn);
    # stage 2 for every variant but no_temporal
    assert stages.count(0) == 1 and stages.count(1) == 5 and stages.count(2) == 7
    assert all(c.optim.steps == (3, 4, 5)[c.stage] and c.optim.batch_size == 1
               for c in trainer.configs)
    assert all(c.data.root == str(setup["data"]) for c in trainer.configs)
    stage1 = {ModelConfig.load(c.model.config).to_dict()["prior"]["kind"]: c
              for c in trainer.configs if c.stage == 1
              and ModelConfig.load(c.model.config).fusion.cwa
              and ModelConfig.load(c.model.config).fusion.cnn_branch}
    assert set(stage1) == {"learned", "none", "fourier_uv"}
    assert stage1["none"].model.prior_init == ""
    assert stage1["learned"].model.prior_init.endswith("final")
    assert any(not ModelConfig.load(c.model.config).fusion.cwa for c in trainer.configs
               if c.stage == 1)
    assert any(not ModelConfig.load(c.model.config).fusion.cnn_branch for c in trainer.configs
               if c.stage == 1)
    stage2_losses = sorted((c.loss.temporal, c.loss.lambda_temp_depth) for c in trainer.configs
                           if c.stage == 2)
    assert stage2_losses == [("flow", 0.0)] + [("flow", 1.0)] * 5 + [("tgm", 1.0)]

    lines = (tmp_path / "a.md").read_text().strip().splitlines()
    # every variant with temporal blocks has a row at W=2 and one with the same weights at W=1
    expected = [label for v in ablation.VARIANTS for label in
                ((f"{v.name}, W=2", f"{v.name}, same weights W=1") if v.temporal else (v.name,))]
    assert lines[0].startswith("| Variant | Table | AbsRel |") and len(lines) == 2 + len(expected)
    assert [line.split(" | ")[0].lstrip("| ") for line in lines[2:]] == expected
    assert lines[-1].endswith("/– |")  # no_temporal trains no stage 2
    assert (tmp_path / "a.md").read_text().strip() in capsys.readouterr().out
    result = json.loads((tmp_path / "a.json").read_text())
    assert list(result["variants"]) == list(ablation.VARIANT_NAMES)
    assert all(list(v["metrics"]) == list(METRIC_NAMES) for v in result["variants"].values())
    assert all(list(v["metrics_window_1"]) == list(METRIC_NAMES)
               for name, v in result["variants"].items() if name != "no_temporal")
    assert result["variants"]["no_temporal"]["metrics_window_1"] is None
    assert len(result["runs"]) == 13
    full, tgm = result["variants"]["full"], result["variants"]["tgm"]
    assert full["checkpoint"] != tgm["checkpoint"]
    stage1_base = str(tmp_path / "run" / "stage1_base")
    assert result["variants"]["no_temporal"]["checkpoint"].startswith(stage1_base)


def test_missing_stage_configs_are_reported(setup, tmp_path, capsys):
    args = _args(setup, tmp_path / "run", "--prefix", "nope")
    assert ablation.run(args, train_fn=StubTrainer()) == 2
    assert "nope_stage0.yaml" in capsys.readouterr().err


def test_structure_keys_name_the_overrides_and_merge_is_nested():
    assert ablation.structure_key({}) == "base"
    assert ablation.structure_key({"fusion": {"cwa": False}, "prior": {"kind": "none"}}) == \
        "fusion.cwa-false_prior.kind-none"
    assert ablation.merge({"a": {"x": 1, "y": 2}, "b": 3},
                          {"a": {"y": 5}}) == {"a": {"x": 1, "y": 5}, "b": 3}


def test_one_variant_through_the_real_trainer(setup, tmp_path):
    args = _args(setup, tmp_path / "real", "--variants", "no_prior", "--steps", "1", "1", "1",
                 "--json", str(tmp_path / "r.json"))
    assert ablation.run(args) == 0
    row = json.loads((tmp_path / "r.json").read_text())["variants"]["no_prior"]
    assert set(row["train_s"]) == {"stage1", "stage2"}
    model = load_checkpoint(row["checkpoint"])
    assert model.temporal_blocks is not None and model.human_prior is None
