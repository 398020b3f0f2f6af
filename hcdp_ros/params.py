"""The node's parameters: one typed dataclass, one spec per parameter, validation.

The validation gives clear messages.

`node.py` declares every ROS parameter from :data:`PARAMETERS` (type, description, range,
read-only flag, default) and validates changes with :func:`validate_value`. This is the one home
of each parameter: `config/hcdp.yaml` and docs/ros.md's table are generated from it
(`python -m hcdp_ros.param_docs`, checked by tests/ros/test_params.py).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from hcdp_model.backends.base import (BACKENDS, DEFAULT_BACKEND, DEFAULT_DEVICE,
                                      DEFAULT_PRECISION, DEFAULT_WINDOW, PRECISIONS)
from hcdp_ros.conversions import DEFAULT_MAX_INPUT_PIXELS

RELIABILITIES = ("best_effort", "reliable")


class ConfigError(ValueError):
    """One or more parameter values are invalid; the message lists every problem."""


@dataclass(frozen=True)
class ParamSpec:
    """How a parameter is declared.

    Description, range (numbers) or choices (strings), read-only.
    """

    name: str
    description: str
    read_only: bool = False
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeConfig:
    """Every parameter of the hcdp node with its default."""

    model_path: str = ""
    trust_artefact: bool = False
    backend: str = DEFAULT_BACKEND
    precision: str = DEFAULT_PRECISION
    device: str = DEFAULT_DEVICE
    window: int = DEFAULT_WINDOW
    max_gap_s: float = 0.5
    compressed: bool = False
    qos_depth: int = 1
    qos_reliability: str = "best_effort"
    use_metric_depth: bool = False
    mask_threshold: float = 0.5
    publish_points: bool = True
    depth_scale: float = 1.0
    points_stride: int = 2
    metric_max_dt_s: float = 0.05
    metric_min_pixels: int = 200
    log_throttle_s: float = 5.0
    num_threads: int = 0
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    max_image_side: int = 0
    mask_outputs: bool = True
    metric_wait_s: float = 0.1

    def validate(self) -> "NodeConfig":
        """Return self, or raise ConfigError naming every invalid value."""
        problems = [p for f in fields(self)
                    if (p := validate_value(f.name, getattr(self, f.name)))]
        if problems:
            raise ConfigError("invalid hcdp parameters: " + "; ".join(problems))
        return self

    def with_values(self, values: dict[str, Any]) -> "NodeConfig":
        """Return a validated copy with ``values`` applied (unknown names are an error)."""
        unknown = sorted(set(values) - set(PARAMETERS))
        if unknown:
            raise ConfigError(f"unknown hcdp parameters {unknown}; expected names from "
                              f"{sorted(PARAMETERS)}")
        return replace(self, **values).validate()


_SPECS = (
    ParamSpec("model_path", "checkpoint directory or file (safetensors + config); empty = the "
              "bundled default model", read_only=True),
    ParamSpec("trust_artefact", "load a torch-export/TensorRT program (.pt2/.ep) this machine "
              "did not build; loading one can run code (docs/security.md)", read_only=True),
    ParamSpec("backend", "inference backend", read_only=True, choices=BACKENDS),
    ParamSpec("precision", "inference precision (fp16 needs a CUDA device)", read_only=True,
              choices=tuple(PRECISIONS)),
    ParamSpec("device", "torch device: cpu, cuda or cuda:N", read_only=True),
    ParamSpec("window", "frames in the temporal attention cache", read_only=True,
              min_value=1, max_value=64),
    ParamSpec("max_gap_s", "a gap between two frame stamps longer than this (s) resets the "
              "temporal cache", read_only=True, min_value=0.01, max_value=60.0),
    ParamSpec("compressed", "subscribe to input/image/compressed (sensor_msgs/CompressedImage, "
              "JPEG/PNG) instead of input/image", read_only=True),
    ParamSpec("qos_depth", "input queue depth; keep 1: the node only ever wants the newest "
              "frame", read_only=True, min_value=1, max_value=100),
    ParamSpec("qos_reliability", "input reliability: best_effort (sensor data; also matches "
              "reliable publishers) or reliable", read_only=True, choices=RELIABILITIES),
    ParamSpec("use_metric_depth", "subscribe to input/metric_depth (16UC1 mm or 32FC1 m, "
              "registered to the colour image) and publish depth in metres fitted on the mask",
              read_only=True),
    ParamSpec("mask_threshold", "soft-mask value above which a pixel is human (binary mask, NaN "
              "outputs, point cloud, metric fit)", min_value=0.0, max_value=1.0),
    ParamSpec("publish_points", "publish the masked human point cloud on points when "
              "camera_info is known"),
    ParamSpec("depth_scale", "point cloud z = depth_scale × relative depth (unused when metric "
              "depth is published: then z is in metres)", min_value=1e-4, max_value=1e4),
    ParamSpec("points_stride", "use every Nth pixel in x and y for the point cloud",
              min_value=1, max_value=32),
    ParamSpec("metric_max_dt_s", "largest absolute stamp difference (s) between an image "
              "and the metric depth paired with it", min_value=0.0, max_value=1.0),
    ParamSpec("metric_min_pixels", "fewest masked pixels with a valid metric reading needed to "
              "fit scale and shift", min_value=2, max_value=10_000_000),
    ParamSpec("log_throttle_s", "a given bad-input cause (topic + reason), and cache resets, are "
              "logged at most once per this many seconds", min_value=0.1, max_value=3600.0),
    ParamSpec("num_threads", "torch CPU threads; 0 = automatic: OMP_NUM_THREADS when set, else "
              "half the CPUs (1 to 4), which leaves room for the camera driver and the rest of "
              "the robot (torch's default of one thread per core made inference ten times slower "
              "on a busy 2-core machine)", read_only=True, min_value=0, max_value=256),
    ParamSpec("max_input_pixels", "larger input images (width × height) are skipped, read from "
              "the JPEG/PNG header before decoding or from the Image fields (decompression "
              "bombs)", min_value=1, max_value=1 << 30),
    ParamSpec("max_image_side", "downscale inputs whose longer side exceeds this before "
              "inference; outputs and camera_info follow (0 = never). 640 keeps a 1920×1080 "
              "stream at the 640×480 cost on CPU", min_value=0, max_value=1 << 15),
    ParamSpec("mask_outputs", "NaN in relative_depth and normals where mask <= mask_threshold "
              "(REP 117: no valid value; the model is trained on people only); false = publish "
              "the raw maps"),
    ParamSpec("metric_wait_s", "longest wait (s) for a metric depth image that arrives after its "
              "colour image", min_value=0.0, max_value=1.0),
)
PARAMETERS: dict[str, ParamSpec] = {s.name: s for s in _SPECS}
DEFAULTS = NodeConfig()


class DeclareErrors:
    """Values refused when the parameters were declared (from the YAML or ``-p``), by name.

    The node declares such a parameter with its default instead and fails configure while any
    error is left; a valid ``ros2 param set`` of that parameter clears its error.
    """

    def __init__(self) -> None:
        self._errors: dict[str, str] = {}

    def record(self, name: str, message: str) -> None:
        self._errors[name] = message

    def resolve(self, names: Any) -> None:
        """Forget the errors of ``names`` (parameters that now have a valid value)."""
        for name in names:
            self._errors.pop(name, None)

    def message(self) -> str | None:
        """One line naming every refused value, or None when there is none."""
        if not self._errors:
            return None
        return "; ".join(f"{name}: {msg}" for name, msg in sorted(self._errors.items()))


def param_type(name: str) -> type:
    """Return the Python type of a parameter (bool, int, float or str)."""
    return type(getattr(DEFAULTS, name))


def validate_value(name: str, value: Any) -> str | None:
    """Check ``value`` for parameter ``name``.

    Return None if ``value`` is valid, else a sentence saying what was expected.
    """
    spec = PARAMETERS.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    expected = param_type(name)
    ok_type = (isinstance(value, expected)
               and not (expected is not bool and isinstance(value, bool)))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok_type = True
    if not ok_type:
        return f"{name}: expected {expected.__name__}, got {type(value).__name__} {value!r}"
    if spec.choices and value not in spec.choices:
        return f"{name}: expected one of {'/'.join(spec.choices)}, got {value!r}"
    if spec.min_value is not None and not spec.min_value <= value <= spec.max_value:
        return (f"{name}: expected a value in [{spec.min_value:g}, {spec.max_value:g}], got "
                f"{value!r}")
    if name == "device" and not (value == "cpu" or value == "cuda" or
                                 (value.startswith("cuda:") and value[5:].isdigit())):
        return f"device: expected cpu, cuda or cuda:N, got {value!r}"
    return None
