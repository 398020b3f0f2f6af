from pathlib import Path

from hcdp_ros.params import (
    ConfigError,
    DeclareErrors,
    DEFAULTS,
    NodeConfig,
    param_type,
    PARAMETERS,
    ParamSpec,
    validate_value,
)
import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[2] / "config" / "hcdp.yaml"


def test_defaults_are_valid():
    assert DEFAULTS.validate() is DEFAULTS


def test_config_yaml_lists_every_parameter_with_its_default_and_type():
    values = yaml.safe_load(CONFIG.read_text())["/**/hcdp"]["ros__parameters"]
    assert set(values) == set(PARAMETERS)
    for name, value in values.items():
        assert type(value) is param_type(name), name  # 1 instead of 1.0 would not load in ROS 2
        assert value == getattr(DEFAULTS, name), name


def test_config_yaml_comments_every_parameter():
    lines = CONFIG.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().split(":")[0] in PARAMETERS:
            assert lines[i - 1].strip().startswith("#"), f"{line.strip()} has no comment above it"


def test_model_backend_precision_device_window_are_read_only():
    read_only = {name for name, spec in PARAMETERS.items() if spec.read_only}
    assert {"model_path", "backend", "precision", "device", "window"} <= read_only
    assert "mask_threshold" not in read_only


@pytest.mark.parametrize("name, value, words", [
    ("backend", "tflite", "expected one of torch/onnxruntime/tensorrt, got 'tflite'"),
    ("precision", "int8", "expected one of fp32/fp16/bf16"),
    ("window", 0, "expected a value in [1, 64], got 0"),
    ("window", 2.0, "expected int, got float"),
    ("mask_threshold", 1.5, "in [0, 1]"),
    ("mask_threshold", float("nan"), "in [0, 1]"),
    ("compressed", 1, "expected bool, got int"),
    ("qos_depth", True, "expected int, got bool"),
    ("device", "gpu", "expected cpu, cuda or cuda:N, got 'gpu'"),
    ("nonexistent", 1, "unknown parameter"),
])
def test_invalid_values_are_named_with_what_was_expected(name, value, words):
    assert words in validate_value(name, value)


def test_ints_are_accepted_for_float_parameters():
    assert validate_value("depth_scale", 2) is None
    assert validate_value("device", "cuda:1") is None


def test_with_values_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as info:
        DEFAULTS.with_values({"window": 100, "backend": "x"})
    assert "window" in str(info.value) and "backend" in str(info.value)


def test_with_values_refuses_unknown_names_and_returns_a_new_config():
    with pytest.raises(ConfigError, match="unknown hcdp parameters \\['foo'\\]"):
        DEFAULTS.with_values({"foo": 1})
    changed = DEFAULTS.with_values({"mask_threshold": 0.7})
    assert changed.mask_threshold == 0.7 and DEFAULTS.mask_threshold == 0.5
    assert isinstance(changed, NodeConfig)


def test_every_config_field_has_exactly_one_parameter_spec():
    from dataclasses import fields

    assert [f.name for f in fields(NodeConfig)] == list(PARAMETERS)


def test_a_declare_error_is_cleared_by_a_valid_set_of_that_parameter_only():
    # issue 14 item 3: after `ros2 param set … mask_threshold 0.5` configure must succeed
    errors = DeclareErrors()
    assert errors.message() is None
    errors.record("mask_threshold", "expected a value in [0, 1], got 2.0")
    errors.record("window", "expected a value in [1, 64], got 0")
    errors.resolve({"depth_scale": 2.0})
    assert "mask_threshold" in errors.message() and "window" in errors.message()
    errors.resolve({"mask_threshold": 0.5})
    assert errors.message() == "window: expected a value in [1, 64], got 0"
    errors.resolve(["window"])
    assert errors.message() is None


def test_new_parameters_have_safe_defaults():
    assert DEFAULTS.num_threads == 0 and PARAMETERS["num_threads"].read_only
    assert DEFAULTS.max_input_pixels == 4096 * 4096
    assert DEFAULTS.mask_outputs is True and DEFAULTS.max_image_side == 0
    assert validate_value("max_input_pixels", 0) is not None


def _docs_parameter_rows() -> dict[str, list[str]]:
    text = (CONFIG.parents[1] / "docs" / "ros.md").read_text()
    section = text.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): [c.strip() for c in cells] for cells in rows}


def _as_documented(value) -> str | None:
    """How docs/ros.md writes a bool or string default (numbers are compared as numbers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return None


def test_docs_list_every_parameter_with_its_type_default_and_read_only_flag():
    rows = _docs_parameter_rows()
    assert set(rows) == set(PARAMETERS)
    kinds = {bool: "bool", int: "int", float: "double", str: "string"}
    for name, (_, kind, default, _, read_only, _) in rows.items():
        value = getattr(DEFAULTS, name)
        assert kind == kinds[param_type(name)], name
        expected = _as_documented(value)
        if expected is None:
            assert float(default) == value, name
        else:
            assert default == expected, name
        assert (read_only == "yes") == PARAMETERS[name].read_only, name


def test_output_options_default_to_the_node_parameters_and_follow_a_config():
    from dataclasses import fields

    from hcdp_ros.messages import VizRequest
    from hcdp_ros.pipeline import OutputOptions

    shared = [f.name for f in fields(OutputOptions) if f.name != "viz"]
    assert shared and all(getattr(OutputOptions(), n) == getattr(DEFAULTS, n) for n in shared)
    config = DEFAULTS.with_values({"mask_threshold": 0.3, "points_stride": 4,
                                   "mask_outputs": False})
    want = VizRequest(True, False, True)
    options = OutputOptions.from_config(config, want)
    assert (options.mask_threshold, options.points_stride, options.mask_outputs) == (0.3, 4, False)
    assert options.viz == want and options.depth_scale == DEFAULTS.depth_scale
    assert OutputOptions.from_config(config, mask_outputs=True).mask_outputs is True


def test_config_yaml_and_the_docs_table_are_generated_from_the_spec():
    from hcdp_ros import param_docs

    assert CONFIG.read_text() == param_docs.yaml_text(), "run python -m hcdp_ros.param_docs"
    docs = param_docs.DOCS_PATH.read_text()
    assert param_docs.docs_text(docs) == docs, "run python -m hcdp_ros.param_docs"
    assert param_docs.main(["--check"]) == 0


def test_the_generated_texts_follow_a_changed_spec(monkeypatch):
    from hcdp_ros import param_docs

    changed = dict(PARAMETERS)
    changed["window"] = ParamSpec("window", "frames kept for attention", read_only=True,
                                  min_value=2, max_value=8)
    monkeypatch.setattr(param_docs, "PARAMETERS", changed)
    assert "    # Frames kept for attention [2..8].\n    window: 16\n" in param_docs.yaml_text()
    assert "| `window` | int | 16 | 2–8 | yes | frames kept for attention |" in (
        param_docs.table_text())
    assert param_docs.number(1 << 30) == "2^30" and param_docs.number(10_000_000) == "1e7"
    assert param_docs.number(1e-4) == "1e-4" and param_docs.number(0.01) == "0.01"
