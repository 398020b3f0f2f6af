"""Checkpoints of a training run: the model (safetensors, hcdp_model.checkpoint) beside a
`trainer_state.pt` holding only tensors and primitive values (optimizer, scheduler, grad scaler, step,
data position, RNG states), loaded with `torch.load(weights_only=True)`.

Layout under the run folder `out`:
    checkpoints/step_0000100/{model.safetensors, config.yaml, trainer_state.pt}
    final/{model.safetensors, config.yaml}
"""
from __future__ import annotations

import random
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hcdp_model.checkpoint import save_checkpoint
from hcdp_model.model import HCDPModel

STATE_NAME = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class Progress:
    """Where a run is: optimizer steps done, the epoch, micro-batches consumed in it, steps skipped."""

    step: int = 0
    epoch: int = 0
    position: int = 0
    skipped: int = 0


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) global RNG states as tensors / primitives."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": np_state["state"]["pos"],
                  "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
                         "has_gauss": int(n["has_gauss"]), "gauss": float(n["gauss"])})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def git_commit(where: Path | None = None) -> str:
    """The commit of the source checkout this package runs from (or of `where`), with "-dirty" appended when
    tracked files differ from it, so a checkpoint trained from uncommitted code says so; "" outside git."""
    cwd = where or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def save_training_checkpoint(out: Path, model: HCDPModel, progress: Progress, optimizer: torch.optim.Optimizer,
                             scheduler: Any, scaler: torch.amp.GradScaler, metadata: dict[str, str],
                             keep: int) -> Path:
    """Write checkpoints/step_N (model + trainer state) and delete all but the `keep` newest."""
    path = out / "checkpoints" / f"step_{progress.step:07d}"
    save_checkpoint(model, path, {**metadata, "steps": str(progress.step)})
    state = {"progress": asdict(progress), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state()}
    tmp = path / (STATE_NAME + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path / STATE_NAME)  # a crash mid-write never leaves a truncated state behind
    for old in list_checkpoints(out)[:-keep]:
        shutil.rmtree(old)
    return path


def list_checkpoints(out: Path) -> list[Path]:
    """Complete step checkpoints under `out`, oldest first."""
    folder = Path(out) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / STATE_NAME).is_file()]
    return [p for _, p in sorted(found)]


def load_trainer_state(path: Path) -> dict[str, Any]:
    file = Path(path) / STATE_NAME
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise RuntimeError(f"{file}: cannot read the trainer state ({err})") from err
