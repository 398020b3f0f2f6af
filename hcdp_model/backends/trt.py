"""Torch-TensorRT: feature detection, per-precision compile settings, compiled program save/load.

Two APIs are supported, chosen from `torch_tensorrt.__version__`:
  * 2.8 / 2.9 (2.8 is the last release for Jetson Orin): TensorRT's weak typing, the builder may
    pick any kernel precision in `enabled_precisions`;
  * >= 2.10: weak typing is deprecated; `use_explicit_typing=True`, and a lower precision comes
    from Torch-TensorRT's rule-based autocast (`enable_autocast`, `autocast_low_precision_type`),
    which keeps numerically sensitive layers in fp32.
Either way the compiled program takes and returns fp32 tensors, so the cache layout is the same.
Programs are saved as ExportedPrograms (`torch_tensorrt.save(...,
output_format="exported_program")`) and loaded with `torch.export.load` after importing
torch_tensorrt (which registers the engine op). `torch.export.load` can unpickle, so
`build.open_artefact` hands this module only the bytes of a program this machine built (or one the
caller trusts), read once and loaded from memory.
"""
from __future__ import annotations

from dataclasses import dataclass
import importlib
import io
from pathlib import Path
import re

import torch

from .base import BackendError, PRECISIONS
from .cache import cache_root
from .step import ExportStep

MIN_VERSION = (2, 8)
EXPLICIT_TYPING_VERSION = (2, 10)
IO_DTYPE = torch.float32
SUFFIX = ".ep"


def parse_version(text: str) -> tuple[int, int]:
    """'2.8.0+cu128' / '2.10.0.dev20251001' / '2.10.0a0' -> (major, minor)."""
    match = re.match(r"\s*(\d+)\.(\d+)", str(text))
    if match is None:
        raise BackendError(f"cannot read the torch_tensorrt version {text!r}; expected "
                           "MAJOR.MINOR[...]")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class TensorRTApi:
    torch_tensorrt_version: str
    tensorrt_version: str

    @property
    def explicit_typing(self) -> bool:
        return parse_version(self.torch_tensorrt_version) >= EXPLICIT_TYPING_VERSION

    def precision_settings(self, precision: str) -> dict[str, object]:
        """Keyword arguments for `torch_tensorrt.compile` that select `precision`."""
        if precision not in PRECISIONS:
            raise ValueError(f"expected precision {'/'.join(PRECISIONS)}, got {precision!r}")
        low = PRECISIONS[precision]
        if not self.explicit_typing:
            return {"enabled_precisions": {torch.float32, low}}
        if precision == "fp32":
            return {"use_explicit_typing": True}
        return {"use_explicit_typing": True, "enable_autocast": True,
                "autocast_low_precision_type": low}


def _import(name: str, hint: str):
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise BackendError(f"backend tensorrt needs the {name} package ({hint})") from err


def detect_api() -> TensorRTApi:
    """Import torch_tensorrt and tensorrt, check the versions, pick the compile API."""
    hint = ("pip install torch-tensorrt on a desktop GPU; on Jetson use NVIDIA's wheels for your "
            "JetPack, see docs/performance.md")
    ttrt = _import("torch_tensorrt", hint)
    trt = _import("tensorrt", hint)
    version = getattr(ttrt, "__version__", None)
    if version is None:
        raise BackendError("torch_tensorrt has no __version__; cannot tell which compile API "
                           "it has")
    if parse_version(version) < MIN_VERSION:
        raise BackendError(f"torch_tensorrt {version} is too old; expected >= "
                           f"{'.'.join(map(str, MIN_VERSION))} (2.8 for Jetson Orin, >= 2.10 on "
                           "desktops)")
    return TensorRTApi(torch_tensorrt_version=str(version),
                       tensorrt_version=str(getattr(trt, "__version__", "?")))


def cache_fields(api: TensorRTApi, gpu: str | None, precision: str, window: int, resolution: int,
                 checkpoint_hash: str, inputs: dict[str, list[int]]) -> dict[str, object]:
    """Everything a compiled engine depends on; the cache key hashes exactly these."""
    return {"format": "tensorrt", "gpu": gpu, "tensorrt": api.tensorrt_version,
            "torch_tensorrt": api.torch_tensorrt_version, "torch": torch.__version__,
            "precision": precision,
            "window": window, "resolution": resolution, "inputs": inputs,
            "checkpoint_hash": checkpoint_hash}


def compile_step(step: ExportStep, api: TensorRTApi, precision: str, device: torch.device):
    """Compile the fp32 step graph with static shapes into a Torch-TensorRT program.

    Slow: minutes.
    """
    if device.type != "cuda":
        raise BackendError(f"backend tensorrt needs a CUDA device, got {device}")
    ttrt = _import("torch_tensorrt", "see docs/performance.md")
    inputs = list(step.example_inputs(device, IO_DTYPE))
    # TensorRT's timing cache in the persistent hcdp cache (Torch-TensorRT's default is under
    # /tmp).
    timing = cache_root() / "tensorrt" / "timing_cache.bin"
    timing.parent.mkdir(parents=True, exist_ok=True)
    return ttrt.compile(step.to(device, IO_DTYPE).eval(), ir="dynamo", inputs=inputs,
                        timing_cache_path=str(timing), **api.precision_settings(precision)), inputs


def save_program(program, path: Path, inputs: list[torch.Tensor]) -> None:
    ttrt = _import("torch_tensorrt", "see docs/performance.md")
    ttrt.save(program, str(path), output_format="exported_program", inputs=inputs)


def load_program(path: str | Path, data: io.BytesIO):
    """Load a saved Torch-TensorRT program as a callable module.

    `data`: the bytes of `path`, already found trusted. A corrupt file raises BackendError.
    """
    # registers torch.ops.tensorrt.execute_engine
    _import("torch_tensorrt", "see docs/performance.md")
    try:
        return torch.export.load(data).module()
    except Exception as err:  # zip, deserialisation and engine errors all mean "unusable"
        raise BackendError(f"{path}: cannot load the TensorRT program ({type(err).__name__}: "
                           f"{str(err).strip()[:300]}); it is corrupt or was built by other "
                           "versions, rebuild it") from err
