"""TrainConfig: recipes load, values are checked, unknown keys rejected, overrides apply.

The shipped YAML recipes load, values are type- and range-checked with clear messages, unknown
keys are rejected and command-line overrides apply.
"""
from pathlib import Path

from hcdp_model.config import ConfigError
from hcdp_training.config import load_config, TrainConfig
import pytest
import yaml

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml"))


def test_the_repository_ships_the_tiny_and_paper_scale_recipes():
    names = {p.name for p in CONFIGS}
    assert {"tiny_cpu_stage0.yaml", "tiny_cpu_stage1.yaml", "tiny_cpu_stage2.yaml",
            "base_stage1.yaml",
            "base_stage2.yaml", "large_stage1.yaml", "large_stage2.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_validates(path):
    cfg = load_config(path)
    assert cfg.stage in (0, 1, 2)
    for line in path.read_text().splitlines():  # every key is commented
        if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert "#" in line, f"{path.name}: uncommented key line {line!r}"


def test_paper_recipes_use_the_table_18_and_19_values():
    recipes = CONFIGS[0].parent
    s1 = load_config(recipes / "large_stage1.yaml")
    s2 = load_config(recipes / "large_stage2.yaml")
    assert (s1.optim.steps, s1.optim.batch_size * s1.optim.accumulation) == (50000, 128)
    assert (s1.optim.lr_encoder, s1.optim.lr_others, s1.loss.lambda_seg,
            s1.loss.lambda_normal) == (1e-4, 1e-5, 0.05, 0.1)
    assert (s2.optim.steps, s2.data.frames, s2.optim.lr_temporal,
            s2.optim.lr_others) == (35000, 32, 1e-4, 1e-6)
    assert (s2.loss.lambda_temp_depth, s2.loss.lambda_temp_normal,
            s2.model.temporal_mode) == (1.0, 0.1, "causal")
    for cfg in (s1, s2):
        assert (cfg.optim.betas, cfg.optim.weight_decay, cfg.optim.warmup_steps,
                cfg.optim.warmup_start_factor,
                cfg.optim.decay_power) == ((0.9, 0.95), 0.05, 2000, 0.01, 1.5)


def _write(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_keys_are_rejected_naming_the_key_and_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown OptimSection keys \['lr'\].*expected some of"):
        load_config(_write(tmp_path, {"data": {"root": "x"}, "optim": {"lr": 1e-3}}))


def test_wrong_types_and_ranges_say_what_was_expected_and_found(tmp_path):
    with pytest.raises(ConfigError, match=r"optim:steps: expected an int, got 'many'"):
        load_config(_write(tmp_path, {"data": {"root": "x"}, "optim": {"steps": "many"}}))
    with pytest.raises(ConfigError, match=r"optim.drop_grad_norm: expected 0 \(off\) or above "
                                          r"clip_grad_norm"):
        load_config(_write(tmp_path, {"data": {"root": "x"}, "optim": {"drop_grad_norm": 0.5}}))
    with pytest.raises(ConfigError, match="stage 2 starts from the stage-1 checkpoint"):
        load_config(_write(tmp_path, {"stage": 2, "data": {"root": "x", "frames": 4}}))
    with pytest.raises(ConfigError, match="data.frames: stage 2 needs clips of >= 2 frames, got "
                                          "1"):
        load_config(_write(tmp_path, {"stage": 2, "model": {"init": "c"}, "data": {"root": "x"}}))
    with pytest.raises(ConfigError, match="laplacian_scales"):
        load_config(_write(tmp_path, {"data": {"root": "x"}, "loss": {"laplacian_scales": [0]}}))


def test_overrides_set_nested_values_parsed_as_yaml_and_1e_minus_4_reads_as_a_number(tmp_path):
    path = _write(tmp_path, {"data": {"root": "x"}, "optim": {"lr_encoder": "1e-4"}})
    cfg = load_config(path, ["optim.steps=7", "data.stride=[1, 3]", "loss.laplacian_scales=[1, 2]",
                             "data.augmentation.canonical_mirror_axis=null", "model.prior_init="])
    assert cfg.optim.lr_encoder == 1e-4 and cfg.optim.steps == 7 and cfg.data.stride == (1, 3)
    assert cfg.loss.laplacian_scales == (1, 2)
    assert cfg.data.augmentation.canonical_mirror_axis is None
    assert cfg.model.prior_init == ""  # an empty value clears a path
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(path, ["optim.steps"])


def test_a_config_round_trips_through_its_yaml(tmp_path):
    cfg = load_config(CONFIGS[0].parent / "tiny_cpu_stage2.yaml")
    again = TrainConfig.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
