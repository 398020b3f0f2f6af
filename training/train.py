"""`hcdp train`: run one training stage from a YAML config (docs/training.md).

    hcdp train --config training/configs/tiny_cpu_stage1.yaml [--out DIR] [--resume | --overwrite]
               [--stop-at STEP] [key=value ...]
    torchrun --nproc_per_node=8 -m hcdp_model.cli train --config training/configs/base_stage1.yaml

The loop, top to bottom: build the stage's model and task (training/stages.py), AdamW over its
named parameter groups with the warm-up + polynomial schedule (training/schedule.py), then for each
micro-batch: forward under autocast (CUDA), backward of loss / accumulation; every `accumulation`
micro-batches: unscale, clip, optionally drop the step (grad norm above `drop_grad_norm`),
optimizer + scheduler step, log, checkpoint. Under torchrun the task is wrapped in
DistributedDataParallel, each rank reads its shard (DistributedSampler), and rank 0 alone logs and
writes checkpoints.

Exact resume: the checkpoint holds the optimizer, scheduler, grad scaler, RNG states, the epoch and
the micro-batches consumed in it; data order and augmentation are functions of (seed, epoch, index)
(training/loader.py), so a resumed CPU run reproduces the uninterrupted run's weights bit for bit.

The output folder is never mixed up: a new run refuses a non-empty `out` (`--resume` continues
the run in it, `--overwrite` replaces it), `--resume` falls back past incomplete or unreadable
checkpoints to the newest readable one and refuses a config that differs from the run's
(`--allow-config-change`), and every checkpoint, `final/` included, is written atomically
(training/state.py).
"""
from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass, field
import math
import os
from pathlib import Path
import sys
from typing import Any
import warnings

from hcdp_model.checkpoint import CheckpointError, load_checkpoint, WEIGHTS_NAME
from hcdp_model.config import ConfigError
from hcdp_model.model import HCDPModel
from hcdp_model.pretrained import BackboneLoadError
from hcdp_training.config import load_config, TrainConfig
from hcdp_training.loader import build_dataset, make_loader, ResumableSampler
from hcdp_training.logger import RunLogger
from hcdp_training.schedule import build_scheduler
from hcdp_training.stages import build_model, make_task, param_groups, prepare
from hcdp_training.state import (clear_run, CONFIG_NAME, git_commit, load_trainer_state,
                                 newest_loadable, Progress, run_entries, save_final_checkpoint,
                                 save_training_checkpoint, set_rng_state)
from safetensors import safe_open
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
import yaml

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Distributed:
    """This process's place in a torchrun job (world 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Distributed:
    """Read torchrun's environment; init the process group when world > 1.

    The backend is nccl on CUDA, gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but torch sees no CUDA device")
    if cuda:
        torch.cuda.set_device(local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Distributed(rank, world,
                       torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


@dataclass
class TrainResult:
    model: HCDPModel
    progress: Progress
    losses: list[float]  # mean loss of every optimizer step of this invocation
    final: Path | None  # the final checkpoint; None when stopped early (stop_at)


class OutputError(ValueError):
    """The output folder does not fit the request (a new run into a used one, a changed config)."""


# Keys that may differ on --resume without changing what is trained: where it is written, logged.
_RESUME_FREE = ("out", "log.", "checkpoint.")


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix[:-1]: data}
    return {k: v for key, value in data.items()
            for k, v in _flat(value, f"{prefix}{key}.").items()}


def config_changes(run_yaml: str, cfg: TrainConfig) -> list[str]:
    """List ``key: old -> new`` for every setting of ``cfg`` that differs from the run's.

    The reference is the run's recorded config; output and logging settings are excepted.
    """
    recorded = yaml.safe_load(run_yaml) if run_yaml else None
    if not isinstance(recorded, dict):  # a run from before configs were recorded: no comparison
        return []
    old, new = _flat(recorded), _flat(cfg.to_dict())
    keys = [k for k in sorted(set(old) | set(new)) if not k.startswith(_RESUME_FREE)]
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def _load_resume_point(path: Path) -> tuple[HCDPModel, dict[str, Any], str]:
    """Load the model, trainer state and recorded training config (YAML) of a step folder."""
    model, state = load_checkpoint(path), load_trainer_state(path)
    with safe_open(str(path / WEIGHTS_NAME), "pt") as weights:
        recorded = (weights.metadata() or {}).get("train_config", "")
    return model, state, recorded


def check_output(cfg: TrainConfig, resume: bool, overwrite: bool) -> None:
    """Refuse a new run into a folder that already holds files (``--resume`` / ``--overwrite``)."""
    if resume and overwrite:
        raise OutputError("--resume continues the run in out, --overwrite replaces it; pass one")
    entries = run_entries(Path(cfg.out))
    if entries and not resume and not overwrite:
        raise OutputError(f"output folder {cfg.out} is not empty ({', '.join(entries[:6])}); pass "
                          "--resume to continue the run in it, --overwrite to replace it, or pick "
                          "another --out")


def check_start_points(cfg: TrainConfig, configs: Path | None = None) -> None:
    """Check that ``model.init`` and ``model.prior_init`` exist.

    When not, name the config (a YAML in ``configs`` whose ``out``/final it is) that writes them:
    what the user must run first.
    """
    for key in ("init", "prior_init"):
        value = getattr(cfg.model, key)
        if not value or Path(value).exists():
            continue
        producers = []
        for other in sorted(configs.glob("*.y*ml")) if configs and configs.is_dir() else []:
            try:
                data = yaml.safe_load(other.read_text()) or {}
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
            if isinstance(data, dict) and Path(str(data.get("out", ""))) / "final" == Path(value):
                producers.append(other)
        first = (f"run `hcdp train --config {producers[0]}` first (it writes {value}), or set "
                 if producers else "train the stage that writes it first, or set ")
        raise ConfigError(f"model.{key}: checkpoint {value} does not exist; {first}"
                          f"model.{key}=PATH to an existing checkpoint")


def _metadata(cfg: TrainConfig) -> dict[str, str]:
    return {"stage": str(cfg.stage), "data_seed": str(cfg.data.seed), "data_root": cfg.data.root,
            "git_commit": git_commit(), "train_config": cfg.to_yaml()}


def train(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None,
          overwrite: bool = False, allow_config_change: bool = False) -> TrainResult:
    """Run (or resume) the stage described by `cfg`.

    `stop_at` ends the invocation after that many optimizer steps in total, with a checkpoint, so
    that a later `resume` continues it. A new run needs an empty (or absent) `cfg.out` unless
    `overwrite`; `resume` refuses a config that differs from the resumed run's unless
    `allow_config_change`.
    """
    out = Path(cfg.out)
    check_output(cfg, resume, overwrite)
    state: dict[str, Any] | None = None
    if resume:
        _, (resumed, state, recorded) = newest_loadable(out, _load_resume_point)
        changes = config_changes(recorded, cfg)
        if changes and not allow_config_change:
            raise OutputError(f"--resume: the config differs from the run in {out} "
                              f"({'; '.join(changes)}); pass --allow-config-change to continue it "
                              "with the new settings, or train into a new --out")
    env = setup_distributed(cfg.device)
    if overwrite and env.main:
        clear_run(out)
    model = prepare(resumed, cfg) if state is not None else build_model(cfg)
    model.to(env.device)
    task = make_task(model, cfg).to(env.device)
    module = task
    if env.world > 1:
        # Some trainable parameters take no part in a forward (e.g. DINOv2's mask_token).
        module = DistributedDataParallel(task, device_ids=[env.device.index]
                                         if env.device.type == "cuda" else None,
                                         find_unused_parameters=True)

    o = cfg.optim
    groups = param_groups(model, cfg)
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, betas=o.betas, weight_decay=o.weight_decay)
    scheduler = build_scheduler(optimizer, o.steps, o.warmup_steps, o.warmup_start_factor,
                                o.decay_power)
    cuda = env.device.type == "cuda"
    amp = cuda and o.precision != "fp32"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and o.precision == "fp16")
    progress = Progress()
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        set_rng_state(state["rng"])
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_NAME).write_text(cfg.to_yaml())
        if o.precision != "fp32" and not cuda:
            print(f"hcdp train: optim.precision {o.precision} applies on CUDA only; running fp32 "
                  "on CPU",
                  file=sys.stderr)

    dataset = build_dataset(cfg, model.cfg.resolution)
    sampler = ResumableSampler(dataset, env.world, env.rank, cfg.data.seed)
    per_epoch = sampler.num_samples // o.batch_size
    if per_epoch == 0:
        raise ValueError(f"data.root {cfg.data.root}: {len(dataset)} samples over {env.world} "
                         f"process(es) give no full batch of {o.batch_size}; lower "
                         "optim.batch_size or add data")
    end = o.steps if stop_at is None else min(o.steps, stop_at)
    metadata = _metadata(cfg)
    log = RunLogger(out, o.steps, progress.step, env.main, cfg.log.tensorboard, cfg.log.progress,
                    f"stage {cfg.stage}")
    losses: list[float] = []
    micro, step_loss, step_terms = 0, 0.0, {}
    while progress.step < end:
        sampler.start = progress.position * o.batch_size
        for batch in make_loader(dataset, sampler, cfg, progress.epoch):
            batch = {k: v.to(env.device, non_blocking=True) for k, v in batch.items()}
            micro += 1
            progress.position += 1
            last = micro == o.accumulation
            sync = contextlib.nullcontext() if last or env.world == 1 else module.no_sync()
            with sync:
                with torch.autocast(env.device.type, dtype=AMP_DTYPES.get(o.precision),
                                    enabled=amp):
                    loss, terms, pred, target = module(batch)
                scaler.scale(loss / o.accumulation).backward()
            step_loss += float(loss.detach()) / o.accumulation
            for name, value in terms.items():
                step_terms[name] = step_terms.get(name, 0.0) + float(value) / o.accumulation
            if not last:
                continue

            scaler.unscale_(optimizer)
            norm = float(torch.nn.utils.clip_grad_norm_(params, o.clip_grad_norm or math.inf))
            overflow = not math.isfinite(norm)
            drop = (overflow and not scaler.is_enabled()) or (o.drop_grad_norm > 0
                                                              and norm > o.drop_grad_norm)
            if drop:
                progress.skipped += 1
            else:
                scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            # a skipped step still advances the schedule, on purpose
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step\\(\\)` "
                                                  "before")
                scheduler.step()
            progress.step += 1
            losses.append(step_loss)
            log.step(step_loss, progress.skipped)
            if progress.step % cfg.log.scalars_every == 0 or progress.step == end:
                lrs = {f"lr/{g['name']}": g["lr"] for g in optimizer.param_groups}
                log.scalars(progress.step,
                            {**{f"loss/{k}": v for k, v in step_terms.items()}, **lrs,
                             "train/grad_norm": norm, "train/skipped_steps": progress.skipped})
            if cfg.log.images_every and progress.step % cfg.log.images_every == 0:
                log.images(progress.step, target, pred)
            stopping = progress.step == end and end < o.steps
            if env.main and (progress.step % cfg.checkpoint.every == 0 or stopping):
                save_training_checkpoint(out, model, progress, optimizer, scheduler, scaler,
                                         metadata,
                                         cfg.checkpoint.keep)
            micro, step_loss, step_terms = 0, 0.0, {}
            if progress.step >= end:
                break
        else:  # the epoch ran out (a partial accumulation carries over into the next one)
            progress.epoch, progress.position = progress.epoch + 1, 0
    log.close()

    final = None
    if progress.step >= o.steps and env.main:
        final = save_final_checkpoint(model, out, {**metadata, "steps": str(progress.step),
                                                   "skipped_steps": str(progress.skipped)})
    if env.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(model, progress, losses, final)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="training config YAML (see training/configs/ and docs/training.md)")
    parser.add_argument("--out", help="output folder (overrides the config's out)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest complete checkpoint under out")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in a non-empty out, deleting the previous run's "
                             "checkpoints/, final/, tb/ and train_config.yaml")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: continue although the config differs from the run's")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="stop after this many steps in total, with a checkpoint (for "
                             "time-sliced jobs)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. optim.steps=100 data.root=data/train")


def summary(cfg: TrainConfig, result: TrainResult) -> str:
    """Return the closing line(s) of `hcdp train`.

    What was trained, where it is, what to do next.
    """
    p = result.progress
    done = (f"hcdp train: stage {cfg.stage}: {p.step} of {cfg.optim.steps} steps "
            f"({p.skipped} skipped), epoch {p.epoch}")
    losses = f"; loss {result.losses[0]:.4g} -> {result.losses[-1]:.4g}" if result.losses else ""
    if result.final is not None:
        return f"{done}{losses}\nfinal checkpoint: {result.final}"
    return (f"{done}{losses}\nstopped early with a checkpoint under "
            f"{Path(cfg.out) / 'checkpoints'}; continue with --resume")


def run(args: argparse.Namespace) -> int:
    try:
        if args.stop_at is not None and args.stop_at < 1:
            raise ValueError(f"--stop-at: expected a step >= 1, got {args.stop_at}")
        cfg = load_config(args.config, args.overrides)
        if args.out:
            cfg.out = args.out
        if not args.resume:
            check_start_points(cfg, Path(args.config).parent)
        result = train(cfg, resume=args.resume, stop_at=args.stop_at, overwrite=args.overwrite,
                       allow_config_change=args.allow_config_change)
    except (ConfigError, CheckpointError, BackboneLoadError, OSError, ValueError) as err:
        print(f"hcdp train: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:  # one summary per torchrun job
        print(summary(cfg, result))
    return 0
