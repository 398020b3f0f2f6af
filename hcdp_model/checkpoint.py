"""Checkpoints: safetensors weights + the model config (YAML or JSON), never a pickle.

Layouts accepted by `load_checkpoint` (and written by `save_checkpoint`):
  DIR/model.safetensors + DIR/config.yaml      (a directory, named by DIR or by
                                                DIR/model.safetensors; config.json also accepted)
  NAME.safetensors + NAME.yaml                 (a file pair; NAME.json also accepted)
A checkpoint is untrusted input: safetensors cannot execute code, and every problem (missing file,
corrupt or truncated data, a config that does not describe the weights) raises CheckpointError
naming the file and the problem. The config is checked against the weights' names, shapes and
dtypes read from the safetensors header before any tensor is allocated (so an edited config cannot
make the loader build a model of many gigabytes), and weights holding NaN or Inf are refused.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from safetensors import safe_open, SafetensorError
from safetensors.torch import load_file, save_file
import torch

from .config import ConfigError, ModelConfig
from .model import HCDPModel

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAMES = ("config.yaml", "config.json")
# safetensors dtype names a floating-point model tensor may be stored in (loading casts them).
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, truncated or does not match its config."""


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """Checkpoint path (directory, .safetensors or config file) -> (weights, config) paths."""
    path = Path(path)
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        configs = [path / n for n in CONFIG_NAMES if (path / n).is_file()]
    elif path.suffix == ".safetensors":
        weights = path
        configs = [path.with_suffix(s) for s in (".yaml", ".json")
                   if path.with_suffix(s).is_file()]
        if not configs and path.name == WEIGHTS_NAME:  # the weights file of a directory layout
            configs = [path.parent / n for n in CONFIG_NAMES if (path.parent / n).is_file()]
    elif path.suffix in (".yaml", ".yml", ".json"):
        weights, configs = path.with_suffix(".safetensors"), [path]
    else:
        raise CheckpointError(f"{path}: expected a checkpoint directory, a .safetensors file or "
                              "its config (.yaml/.json)"
                              f"{'' if path.exists() else '; the path does not exist'}")
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file not found")
    if not configs or not configs[0].is_file():
        raise CheckpointError(f"{path}: model config not found (expected "
                              f"{' or '.join(CONFIG_NAMES)} beside the weights)")
    return weights, configs[0]


def _umask() -> int:
    """Read the process umask from /proc where Linux has it.

    Setting it to read it races threads.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(model: HCDPModel, path: str | Path, metadata: dict[str, str] | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write weights + config.

    `path` ending in .safetensors writes a file pair, otherwise a directory. `dtype` (e.g.
    torch.float16) stores floating-point weights in that type to halve the file; loading casts them
    back to the model's type.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        weights, config = path, path.with_suffix(".yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        path.mkdir(parents=True, exist_ok=True)
        weights, config = path / WEIGHTS_NAME, path / CONFIG_NAMES[0]
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    metadata = {"format": "hcdp", "preset": model.cfg.preset, **(metadata or {})}
    save_file(state, str(weights), metadata=metadata)
    # safetensors writes a private temporary file (mode 0600) and renames it; give the checkpoint
    # the mode any other file of the user gets (0644 under the usual umask 022).
    os.chmod(weights, 0o666 & ~_umask())
    model.cfg.save(config)
    return path


def read_header(weights: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Read name -> (safetensors dtype, shape) from the file's header; no tensor is read."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            return {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape()))
                    for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({err})") from err


def expected_tensors(cfg: ModelConfig) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """Map name -> (dtype, shape) of the model `cfg` describes.

    Built on the meta device: no memory.
    """
    with torch.device("meta"):
        model = HCDPModel(cfg)
    return {k: (v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}


def _check_header(weights: Path, config_path: Path, cfg: ModelConfig) -> None:
    """Refuse weights whose names, shapes or dtypes do not fit `cfg`, before any allocation."""
    header, expected = read_header(weights), expected_tensors(cfg)
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    mismatched = [f"{k}: file {header[k][1]} vs config {shape}"
                  for k, (_, shape) in expected.items() if k in header and header[k][1] != shape]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if mismatched:
            problems.append(f"{len(mismatched)} with other shapes (e.g. {mismatched[:3]})")
        raise CheckpointError(f"{weights}: weights do not match the config {config_path.name}: "
                              + "; ".join(problems))
    not_float = [f"{k} ({header[k][0]})" for k, (dtype, _) in expected.items()
                 if dtype.is_floating_point and header[k][0] not in FLOAT_DTYPES]
    if not_float:
        raise CheckpointError(f"{weights}: expected floating-point weights "
                              f"({'/'.join(FLOAT_DTYPES)}), found {len(not_float)} tensors of "
                              f"another dtype (e.g. "
                              f"{', '.join(not_float[:3])})")


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> HCDPModel:
    weights, config_path = resolve_checkpoint(path)
    try:
        cfg = ModelConfig.load(config_path)
    except ConfigError as err:
        raise CheckpointError(f"{config_path}: invalid model config: {err}") from err
    _check_header(weights, config_path, cfg)
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({err})") from err
    non_finite = [k for k, v in state.items()
                  if v.is_floating_point() and not bool(v.isfinite().all())]
    if non_finite:
        raise CheckpointError(f"{weights}: {len(non_finite)} tensors hold NaN or Inf values (e.g. "
                              f"{', '.join(non_finite[:3])}); the weights are corrupt or come "
                              "from a diverged training run")
    model = HCDPModel(cfg)
    model.load_state_dict(state)
    return model.to(device)


def checkpoint_hash(path: str | Path) -> str:
    """sha256 over the weights and the config bytes.

    The identity used in export caches and manifests.
    """
    digest = hashlib.sha256()
    for file in resolve_checkpoint(path):
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
