"""Checkpoints of a training run.

The model (safetensors, hcdp_model.checkpoint) beside a `trainer_state.pt` holding only tensors and
primitive values (optimizer, scheduler, grad scaler, step, data position, RNG states), loaded with
`torch.load(weights_only=True)`.

Layout under the run folder `out`:
    train_config.yaml
    checkpoints/step_0000100/{model.safetensors, config.yaml, trainer_state.pt}
    final/{model.safetensors, config.yaml}

Every checkpoint folder is written beside its final name (`.step_0000100.partial`), flushed to
disk and then renamed into place, so a crash never leaves a truncated folder under a
complete-looking name.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
import os
from pathlib import Path
import random
import re
import shutil
import subprocess
import sys
from typing import Any

from hcdp_model.checkpoint import CONFIG_NAMES, save_checkpoint, WEIGHTS_NAME
from hcdp_model.model import HCDPModel
import numpy as np
import torch

STATE_NAME = "trainer_state.pt"
CONFIG_NAME = "train_config.yaml"
RUN_ENTRIES = ("checkpoints", "final", CONFIG_NAME, "tb")  # what a run writes under its `out`
_STEP_DIR = re.compile(r"^step_(\d+)$")
_PARTIAL = ".partial"


@dataclass
class Progress:
    """Where a run is.

    Optimizer steps done, the epoch, micro-batches consumed in it, steps skipped.
    """

    step: int = 0
    epoch: int = 0
    position: int = 0
    skipped: int = 0


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) global RNG states as tensors / primitives."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": np_state["state"]["pos"],
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
                         "state": {"key": n["key"].numpy().astype(np.uint32),
                                   "pos": int(n["pos"])},
                         "has_gauss": int(n["has_gauss"]), "gauss": float(n["gauss"])})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def git_commit(where: Path | None = None) -> str:
    """Return the commit of the source checkout this package runs from (or of `where`).

    "-dirty" is appended when tracked files differ from it, so a checkpoint trained from
    uncommitted code says so; "" outside git.
    """
    cwd = where or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=10,
                              check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def _fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` and the folder itself to disk (before it is renamed)."""
    for path in [*folder.rglob("*"), folder]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``.

    When the block succeeds, flush it and rename it to ``target`` (replacing an older one); when it
    fails, remove it and leave ``target`` as it was.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}{_PARTIAL}")
    old = target.with_name(f".{target.name}.old")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        target.rename(old)  # a folder cannot replace a non-empty one in a single rename
    tmp.rename(target)
    _fsync_tree(target.parent)
    if old.exists():
        shutil.rmtree(old)


def save_final_checkpoint(model: HCDPModel, out: Path, metadata: dict[str, str]) -> Path:
    """Write ``out/final`` atomically (never left truncated)."""
    target = Path(out) / "final"
    with atomic_folder(target) as tmp:
        save_checkpoint(model, tmp, metadata)
    return target


def save_training_checkpoint(out: Path, model: HCDPModel, progress: Progress,
                             optimizer: torch.optim.Optimizer, scheduler: Any,
                             scaler: torch.amp.GradScaler, metadata: dict[str, str],
                             keep: int) -> Path:
    """Write checkpoints/step_N (model + trainer state) atomically; keep the `keep` newest."""
    path = Path(out) / "checkpoints" / f"step_{progress.step:07d}"
    state = {"progress": asdict(progress), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
             "rng": rng_state()}
    with atomic_folder(path) as tmp:
        save_checkpoint(model, tmp, {**metadata, "steps": str(progress.step)})
        torch.save(state, tmp / STATE_NAME)
    for old in list_checkpoints(out)[:-keep]:
        shutil.rmtree(old)
    return path


def is_complete(folder: Path) -> bool:
    """Check whether `folder` holds the weights, the model config and the trainer state."""
    names = (WEIGHTS_NAME, CONFIG_NAMES[0], STATE_NAME)
    return all((Path(folder) / name).is_file() for name in names)


def list_checkpoints(out: Path) -> list[Path]:
    """Complete step checkpoints under `out`, oldest first (partial, incomplete ones left out)."""
    folder = Path(out) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := _STEP_DIR.match(p.name)) and is_complete(p)]
    return [p for _, p in sorted(found)]


def newest_loadable(out: Path, load: Callable[[Path], Any]) -> tuple[Path, Any]:
    """Return the newest complete checkpoint under ``out`` that ``load`` reads without error.

    Also returns what ``load`` returned; each newer one that fails is named on stderr.
    FileNotFoundError when none is left.
    """
    failures = []
    for path in reversed(list_checkpoints(out)):
        try:
            return path, load(path)
        except (RuntimeError, OSError, ValueError, KeyError) as err:
            failures.append(f"{path.name}: {err}")
            print(f"hcdp train: --resume: skipping {path} ({err})", file=sys.stderr)
    detail = f"; unreadable: {'; '.join(failures)}" if failures else ""
    raise FileNotFoundError(f"--resume: no complete checkpoint (a step_N folder with "
                            f"{WEIGHTS_NAME}, {CONFIG_NAMES[0]} and {STATE_NAME}) under "
                            f"{Path(out) / 'checkpoints'}{detail}")


def run_entries(out: Path) -> list[str]:
    """Return the names in ``out`` (empty when it does not exist)."""
    out = Path(out)
    return sorted(p.name for p in out.iterdir()) if out.is_dir() else []


def clear_run(out: Path) -> None:
    """Remove what a run writes under ``out`` (RUN_ENTRIES); anything else is left alone."""
    for name in RUN_ENTRIES:
        path = Path(out) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def load_trainer_state(path: Path) -> dict[str, Any]:
    """Load a step folder's trainer state (tensors and primitives only: `weights_only=True`)."""
    file = Path(path) / STATE_NAME
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt zip/pickle raises many types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(f"{file}: cannot read the trainer state ({reason})") from None
    missing = [k for k in ("progress", "optimizer", "scheduler", "scaler", "rng")
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise RuntimeError(f"{file}: expected a trainer state with progress, optimizer, "
                           f"scheduler, scaler and rng, missing {', '.join(missing)}")
    return state
