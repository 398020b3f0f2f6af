"""`hcdp train`: run one training stage from a YAML config (docs/training.md).

    hcdp train --config configs/tiny_cpu_stage1.yaml [--out DIR] [--resume] [--stop-at STEP] [key=value ...]
    torchrun --nproc_per_node=8 -m hcdp_model.cli train --config configs/base_stage1.yaml

The loop, top to bottom: build the stage's model and task (training/stages.py), AdamW over its named
parameter groups with the warm-up + polynomial schedule (training/schedule.py), then for each micro-batch:
forward under autocast (CUDA), backward of loss / accumulation; every `accumulation` micro-batches: unscale,
clip, optionally drop the step (grad norm above `drop_grad_norm`), optimizer + scheduler step, log,
checkpoint. Under torchrun the task is wrapped in DistributedDataParallel, each rank reads its shard
(DistributedSampler), and rank 0 alone logs and writes checkpoints.

Exact resume: the checkpoint holds the optimizer, scheduler, grad scaler, RNG states, the epoch and the
micro-batches consumed in it; data order and augmentation are functions of (seed, epoch, index)
(training/loader.py), so a resumed CPU run reproduces the uninterrupted run's weights bit for bit.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hcdp_model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hcdp_model.config import ConfigError
from hcdp_model.model import HCDPModel
from hcdp_model.pretrained import BackboneLoadError
from hcdp_training.config import TrainConfig, load_config
from hcdp_training.loader import ResumableSampler, build_dataset, make_loader
from hcdp_training.logger import RunLogger
from hcdp_training.schedule import build_scheduler
from hcdp_training.stages import build_model, make_task, param_groups, prepare
from hcdp_training.state import (Progress, git_commit, list_checkpoints, load_trainer_state,
                                 save_training_checkpoint, set_rng_state)

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
    """Read torchrun's environment; init the process group (nccl on CUDA, gloo on CPU) when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but torch sees no CUDA device")
    if cuda:
        torch.cuda.set_device(local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Distributed(rank, world, torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


@dataclass
class TrainResult:
    model: HCDPModel
    progress: Progress
    losses: list[float]  # mean loss of every optimizer step of this invocation
    final: Path | None  # the final checkpoint; None when stopped early (stop_at)


def _resume_point(cfg: TrainConfig) -> Path:
    found = list_checkpoints(Path(cfg.out))
    if not found:
        raise FileNotFoundError(f"--resume: no checkpoint with {'trainer_state.pt'} under {cfg.out}/checkpoints")
    return found[-1]


def _metadata(cfg: TrainConfig) -> dict[str, str]:
    return {"stage": str(cfg.stage), "data_seed": str(cfg.data.seed), "data_root": cfg.data.root,
            "git_commit": git_commit(), "train_config": cfg.to_yaml()}


def train(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None) -> TrainResult:
    """Run (or resume) the stage described by `cfg`; `stop_at` ends the invocation after that many
    optimizer steps in total, with a checkpoint, so that a later `resume` continues it."""
    env = setup_distributed(cfg.device)
    out = Path(cfg.out)
    checkpoint_dir = _resume_point(cfg) if resume else None
    model = prepare(load_checkpoint(checkpoint_dir), cfg) if checkpoint_dir else build_model(cfg)
    model.to(env.device)
    task = make_task(model, cfg).to(env.device)
    module = task
    if env.world > 1:
        # Some trainable parameters take no part in a forward (e.g. DINOv2's mask_token).
        module = DistributedDataParallel(task, device_ids=[env.device.index] if env.device.type == "cuda" else None,
                                         find_unused_parameters=True)

    o = cfg.optim
    groups = param_groups(model, cfg)
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, betas=o.betas, weight_decay=o.weight_decay)
    scheduler = build_scheduler(optimizer, o.steps, o.warmup_steps, o.warmup_start_factor, o.decay_power)
    cuda = env.device.type == "cuda"
    amp = cuda and o.precision != "fp32"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and o.precision == "fp16")
    progress = Progress()
    if checkpoint_dir:
        state = load_trainer_state(checkpoint_dir)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        set_rng_state(state["rng"])
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(cfg.to_yaml())
        if o.precision != "fp32" and not cuda:
            print(f"hcdp train: optim.precision {o.precision} applies on CUDA only; running fp32 on CPU",
                  file=sys.stderr)

    dataset = build_dataset(cfg, model.cfg.resolution)
    sampler = ResumableSampler(dataset, env.world, env.rank, cfg.data.seed)
    per_epoch = sampler.num_samples // o.batch_size
    if per_epoch == 0:
        raise ValueError(f"data.root {cfg.data.root}: {len(dataset)} samples over {env.world} process(es) give "
                         f"no full batch of {o.batch_size}; lower optim.batch_size or add data")
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
                with torch.autocast(env.device.type, dtype=AMP_DTYPES.get(o.precision), enabled=amp):
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
            drop = (overflow and not scaler.is_enabled()) or (o.drop_grad_norm > 0 and norm > o.drop_grad_norm)
            if drop:
                progress.skipped += 1
            else:
                scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # a skipped step still advances the schedule, on purpose
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step\\(\\)` before")
                scheduler.step()
            progress.step += 1
            losses.append(step_loss)
            log.step(step_loss, progress.skipped)
            if progress.step % cfg.log.scalars_every == 0 or progress.step == end:
                lrs = {f"lr/{g['name']}": g["lr"] for g in optimizer.param_groups}
                log.scalars(progress.step, {**{f"loss/{k}": v for k, v in step_terms.items()}, **lrs,
                                            "train/grad_norm": norm, "train/skipped_steps": progress.skipped})
            if cfg.log.images_every and progress.step % cfg.log.images_every == 0:
                log.images(progress.step, target, pred)
            stopping = progress.step == end and end < o.steps
            if env.main and (progress.step % cfg.checkpoint.every == 0 or stopping):
                save_training_checkpoint(out, model, progress, optimizer, scheduler, scaler, metadata,
                                         cfg.checkpoint.keep)
            micro, step_loss, step_terms = 0, 0.0, {}
            if progress.step >= end:
                break
        else:  # the epoch ran out (a partial accumulation carries over into the next one)
            progress.epoch, progress.position = progress.epoch + 1, 0
    log.close()

    final = None
    if progress.step >= o.steps and env.main:
        final = save_checkpoint(model, out / "final", {**metadata, "steps": str(progress.step),
                                                        "skipped_steps": str(progress.skipped)})
        print(f"hcdp train: stage {cfg.stage} done, {progress.step} steps ({progress.skipped} skipped); "
              f"final checkpoint {final}", file=sys.stderr)
    if env.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(model, progress, losses, final)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config YAML (see configs/ and docs/training.md)")
    parser.add_argument("--out", help="output folder (overrides the config's out)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint under out")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="stop after this many steps in total, with a checkpoint (for time-sliced jobs)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. optim.steps=100 data.root=data/train")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, args.overrides)
        if args.out:
            cfg.out = args.out
        result = train(cfg, resume=args.resume, stop_at=args.stop_at)
    except (ConfigError, CheckpointError, BackboneLoadError, OSError, ValueError) as err:
        print(f"hcdp train: {err}", file=sys.stderr)
        return 2
    print(f"hcdp train: {asdict(result.progress)}")
    return 0
