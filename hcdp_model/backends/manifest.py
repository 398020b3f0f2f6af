"""The manifest written beside every exported or compiled artefact, with runtime versions.

A manifest says what the artefact is (format, checkpoint hash, shapes, precision, window), what
built it (versions of torch / onnxruntime / TensorRT / torch_tensorrt, GPU name, date) and how well
it matched eager PyTorch. Loaders compare the identity fields against what they expect and refuse
(or rebuild, for a cache) on any difference, so a stale artefact is never used silently.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import datetime
import importlib.metadata
import json
from pathlib import Path

import torch

from .base import BackendError

# Distribution names whose versions an artefact records; looked up without importing them.
RUNTIMES = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt",
            "torch_tensorrt": "torch_tensorrt"}
ORT_GPU_DISTRIBUTION = "onnxruntime-gpu"


def runtime_versions() -> dict[str, str | None]:
    """Installed versions (None when absent), from package metadata: nothing is imported."""
    versions: dict[str, str | None] = {}
    for key, dist in RUNTIMES.items():
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = None
    if versions["onnxruntime"] is None:
        try:
            versions["onnxruntime"] = importlib.metadata.version(ORT_GPU_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            pass
    versions["torch"] = torch.__version__
    return versions


def gpu_name(device: torch.device | str | None = None) -> str | None:
    """Return the CUDA device's name, or None without CUDA.

    A CPU artefact does not depend on it.
    """
    if not torch.cuda.is_available():
        return None
    device = torch.device(device if device is not None else "cuda")
    return torch.cuda.get_device_name(device if device.type == "cuda" else None)


@dataclass
class Manifest:
    format: str  # noqa: A003 (the manifest JSON's field name) onnx | torch-export | tensorrt
    checkpoint: str
    checkpoint_hash: str
    preset: str
    precision: str
    window: int
    model_resolution: int
    camera_size: list[int]         # [H, W] whose letterbox is recorded below
    letterbox: dict[str, int]
    inputs: dict[str, list[int]]   # name -> shape, in call order
    outputs: dict[str, list[int]]
    io_dtype: str
    versions: dict[str, str | None] = field(default_factory=runtime_versions)
    gpu: str | None = None
    export_date: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
                             .isoformat(timespec="seconds"))
    # exporter options, verification results
    extra: dict[str, object] = field(default_factory=dict)

    # The fields an artefact's identity depends on: any difference means "not this artefact".
    IDENTITY = ("format", "checkpoint_hash", "precision", "window", "model_resolution", "inputs",
                "io_dtype")

    def identity(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.IDENTITY}

    def mismatches(self, expected: dict[str, object]) -> list[str]:
        """'field: artefact X, expected Y' for every expected field that differs.

        Nested fields are named with dots (`versions.tensorrt`).
        """
        problems = []
        for key, want in expected.items():
            have: object = asdict(self)
            for part in key.split("."):
                have = have.get(part) if isinstance(have, dict) else None
            if have != want:
                problems.append(f"{key}: artefact {have!r}, expected {want!r}")
        return problems

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"{path}: manifest not found (every exported artefact has one "
                               "beside it; re-export with `hcdp export`)")
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as err:
            raise BackendError(f"{path}: corrupt manifest ({err})") from err


def manifest_path(artefact: str | Path) -> Path:
    """model.onnx -> model.onnx.json."""
    artefact = Path(artefact)
    return artefact.with_name(artefact.name + ".json")
