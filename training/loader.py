"""Training data: the dataset for a stage, reproducible augmentation, a resumable sharded sampler.

Exact resume needs every sample to be a function of (data seed, epoch, index) only, never of the
order in which a process happened to draw random numbers:
- order: `ResumableSampler` is torch's DistributedSampler (permutation seeded by seed + epoch,
  sharded by rank) that can start `start` samples into its shard;
- augmentation: `SeededAugment` gives the dataset a fresh `Augment` seeded by (seed, epoch, index)
  for each item, so the draw does not depend on worker count, worker seeds or the resume position;
- clip strides: `VideoClips` already draws them from (seed, epoch, index) after `set_epoch`.
"""
from __future__ import annotations

import itertools
from typing import Iterator

from hcdp_training.augment import Augment
from hcdp_training.config import TrainConfig
from hcdp_training.data import StaticFrames, VideoClips
from hcdp_training.data.synthhuman import SynthHumanFrames
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled, drop_last) that can start into this rank's shard.

    Its iteration skips the first `start` indices of this rank's shard: the data position of a
    resumed run.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class SeededAugment(Dataset):
    """Wraps a dataset that has an `augment` attribute, seeding its augmentation per item.

    Item i of epoch e is augmented by Augment(config, rng=default_rng([seed, e, i])). `set_epoch`
    also reaches the inner dataset.
    """

    def __init__(self, dataset: Dataset, augment: Augment | None, seed: int) -> None:
        self.dataset, self.augment, self.seed, self.epoch = dataset, augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            self.dataset.augment = Augment(self.augment.config, rng=rng)
        return self.dataset[index]


def build_dataset(cfg: TrainConfig, resolution: int) -> SeededAugment:
    """Return the stage's dataset at `data.size`, wrapped for seeded augmentation.

    `data.size` 0 means the model resolution.
    """
    d = cfg.data
    size = d.size or resolution
    augment = Augment(d.augmentation) if d.augment else None
    if d.kind == "video":
        from hcdp_training.video import VideoFolderClips

        dataset = VideoFolderClips(d.root, frames=d.frames, stride=d.stride, size=size,
                                   seed=d.seed)
        return SeededAugment(dataset, None, d.seed)
    if d.kind == "synthhuman":
        dataset = SynthHumanFrames(d.root, size=size)
    elif cfg.stage == 2:
        dataset = VideoClips(d.root, frames=d.frames, stride=d.stride, size=size, seed=d.seed)
    else:
        dataset = StaticFrames(d.root, size=size)
    return SeededAugment(dataset, augment, d.seed)


def make_loader(dataset: SeededAugment, sampler: ResumableSampler, cfg: TrainConfig,
                epoch: int) -> DataLoader:
    """Return a DataLoader for one epoch (from `sampler.start`).

    Its own generator keeps the global torch RNG untouched, so creating a loader mid-epoch on
    resume draws nothing the uninterrupted run did not.
    """
    dataset.set_epoch(epoch)
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(cfg.data.seed * 100_003 + epoch)
    return DataLoader(dataset, batch_size=cfg.optim.batch_size, sampler=sampler, drop_last=True,
                      num_workers=cfg.data.num_workers, generator=generator,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False)
