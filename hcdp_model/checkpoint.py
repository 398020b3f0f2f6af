"""Checkpoints: safetensors weights + the model config (YAML or JSON), never a pickle.

Layouts accepted by `load_checkpoint` (and written by `save_checkpoint`):
  DIR/model.safetensors + DIR/config.yaml      (a directory; config.json also accepted)
  NAME.safetensors + NAME.yaml                 (a file pair; NAME.json also accepted)
A checkpoint is untrusted input: safetensors cannot execute code, and every problem (missing file,
corrupt or truncated data, a config that does not describe the weights) raises CheckpointError naming
the file and the problem.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ConfigError, ModelConfig
from .model import HCDPModel

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAMES = ("config.yaml", "config.json")


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
        configs = [path.with_suffix(s) for s in (".yaml", ".json") if path.with_suffix(s).is_file()]
    elif path.suffix in (".yaml", ".yml", ".json"):
        weights, configs = path.with_suffix(".safetensors"), [path]
    else:
        raise CheckpointError(f"{path}: expected a checkpoint directory, a .safetensors file or its config "
                              f"(.yaml/.json){'' if path.exists() else '; the path does not exist'}")
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file not found")
    if not configs or not configs[0].is_file():
        raise CheckpointError(f"{path}: model config not found (expected {' or '.join(CONFIG_NAMES)} "
                              f"beside the weights)")
    return weights, configs[0]


def save_checkpoint(model: HCDPModel, path: str | Path, metadata: dict[str, str] | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write weights + config. `path` ending in .safetensors writes a file pair, otherwise a directory.
    `dtype` (e.g. torch.float16) stores floating-point weights in that type to halve the file; loading
    casts them back to the model's type."""
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
    save_file(state, str(weights), metadata={"format": "hcdp", "preset": model.cfg.preset, **(metadata or {})})
    model.cfg.save(config)
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> HCDPModel:
    weights, config_path = resolve_checkpoint(path)
    try:
        cfg = ModelConfig.load(config_path)
    except ConfigError as err:
        raise CheckpointError(f"{config_path}: invalid model config: {err}") from err
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({err})") from err
    model = HCDPModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs config {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
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
    model.load_state_dict(state)
    return model.to(device)


def checkpoint_hash(path: str | Path) -> str:
    """sha256 over the weights and the config bytes: the identity used in export caches and manifests."""
    digest = hashlib.sha256()
    for file in resolve_checkpoint(path):
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
