from hcdp_model.config import ConfigError, ModelConfig, preset, PRESETS
import pytest


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("family", ["dinov2", "dinov3"])
def test_presets_are_valid_and_round_trip_through_yaml_and_json(tmp_path, name, family):
    cfg = preset(name, family)
    for suffix in (".yaml", ".json"):
        cfg.save(tmp_path / f"c{suffix}")
        assert ModelConfig.load(tmp_path / f"c{suffix}") == cfg


@pytest.mark.parametrize("data, message", [
    ({"resolution": 100}, "multiple of the patch size 14"),
    ({"backbone": {"family": "vit"}}, "backbone.family: expected one of"),
    ({"backbone": {"intermediate_layers": [3, 2, 1, 0]}}, "must be ascending"),
    ({"temporal": {"mode": "sideways"}}, "temporal.mode"),
    ({"prior": {"kind": "cse"}}, "prior.kind"),
    ({"fusion": {"cwa": "yes"}}, "cwa: expected true/false"),
    ({"decoder": {"out_channels": [1, 2]}}, "expected a list of 4 values"),
    ({"decoder": {"features": 1.5}}, "expected an int"),
    ({"temporal": []}, "expected a mapping"),
])
def test_invalid_configs_are_rejected_with_the_key_and_the_problem(data, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(data)


def test_unreadable_config_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping"):
        ModelConfig.load(path)


@pytest.mark.parametrize("data, message", [
    ({"backbone": {"embed_dim": -384}},
     r"backbone.embed_dim: expected a value in \[1, 8192\], got -384"),
    ({"backbone": {"depth": 0, "intermediate_layers": [0, 1, 2, 3]}}, r"backbone.depth: .* got 0"),
    ({"backbone": {"num_heads": 0}}, r"backbone.num_heads: .* got 0"),
    ({"backbone": {"embed_dim": 10 ** 9}}, r"backbone.embed_dim: .* got 1000000000"),
    ({"backbone": {"mlp_ratio": float("nan")}}, r"backbone.mlp_ratio: .* got nan"),
    ({"decoder": {"features": -64}}, r"decoder.features: .* got -64"),
    ({"decoder": {"out_channels": [48, 96, 0, 384]}}, r"decoder.out_channels\[2\]: .* got 0"),
    ({"temporal": {"num_heads": 5}},
     "decoder.features 64 must be divisible by temporal.num_heads 5"),
    ({"temporal": {"mlp_ratio": -2.0}}, r"temporal.mlp_ratio: .* got -2.0"),
    ({"prior": {"width": -1}}, r"prior.width: .* got -1"),
    ({"fusion": {"channels": 0}}, r"fusion.channels: .* got 0"),
    ({"fusion": {"cwa_reduction": 64}}, r"fusion.cwa_reduction: expected a value in \[1, 32\]"),
    ({"resolution": 14 * 1000}, r"resolution: expected a value in \[56, 4096\], got 14000"),
])
def test_negative_zero_and_absurd_sizes_are_one_line_errors(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        ModelConfig.from_dict(data)
    assert "\n" not in str(info.value)
