import pytest

from hcdp_model.config import PRESETS, ConfigError, ModelConfig, preset


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
