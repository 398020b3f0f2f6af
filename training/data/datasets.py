"""PyTorch datasets over hcdp sequences: single frames (stage 1) and clips of T frames (stage 2).

Items are dicts of float32 tensors: image [3,H,W] in [0,1] (RGB); depth [1,H,W] metres with NaN
replaced by 0 (the mask says where it is valid); normal [3,H,W]; mask [1,H,W]; flow_fwd, flow_bwd
[2,H,W] pixels; canonical [3,H,W]; ground_depth [1,H,W] metres, 0 off the ground; K [3,3]. Clips
stack every key over a leading T dimension and add `stride` (the frame step of the clip) and
`frame_index` [T].

Strided clips use flows *rendered* for that stride (the generator stores strides 1..S, `meta.json`
`flow_strides`), never flows composed by warping, so stride > 1 costs no accuracy; a stride above S
is refused at construction. `size` rescales the shorter side to `size` and centre-crops a square,
updating K and flow (nearest neighbour for ground truth, so no pixel mixes a human and the
background).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from hcdp_training.data.format import list_sequences, read_frame, read_meta

_NEAREST = ("depth", "normal", "flow_fwd", "flow_bwd", "canonical", "ground_depth")
_CHANNELS_FIRST = {"rgb": "image", "depth": "depth", "normal": "normal", "mask": "mask",
                   "flow_fwd": "flow_fwd",
                   "flow_bwd": "flow_bwd", "canonical": "canonical",
                   "ground_depth": "ground_depth"}


def resize_square(frame: dict, size: int) -> dict:
    """Scale the shorter side to `size` (uniform scale) and centre-crop size x size; K and flow
    follow."""
    h, w = frame["rgb"].shape[:2]
    if h == w == size:  # already square at `size`: what the resize and crop would give, exactly
        return dict(frame, K=np.asarray(frame["K"], np.float32))
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    out = dict(frame)
    for key, value in frame.items():
        if key in ("K", "extrinsics") or not isinstance(value, np.ndarray) or value.ndim < 2:
            continue
        interp = (cv2.INTER_NEAREST if key in _NEAREST
                  else cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        resized = cv2.resize(value, (nw, nh), interpolation=interp)
        if value.ndim == 3 and resized.ndim == 2:
            resized = resized[..., None]
        out[key] = resized[y0:y0 + size, x0:x0 + size]
    sx, sy = nw / w, nh / h
    for key in ("flow_fwd", "flow_bwd"):
        if key in out:
            out[key] = out[key] * np.array([sx, sy], np.float32)
    K = np.array(frame["K"], np.float64)
    # Pixel centres at integers: u' = (u + 0.5) * s - 0.5 - x0.
    K[0] *= sx
    K[1] *= sy
    K[0, 2] += 0.5 * sx - 0.5 - x0
    K[1, 2] += 0.5 * sy - 0.5 - y0
    out["K"] = K.astype(np.float32)
    return out


def to_tensors(frame: dict) -> dict[str, torch.Tensor]:
    """numpy frame dict (the `read_frame` contract) -> the dataset's tensor dict."""
    out = {}
    for key, name in _CHANNELS_FIRST.items():
        value = np.asarray(frame[key])
        if key == "rgb":
            value = value.astype(np.float32) / 255.0
        elif key in ("depth", "ground_depth"):
            value = np.nan_to_num(value.astype(np.float32), nan=0.0)
        value = value[..., None] if value.ndim == 2 else value
        out[name] = torch.from_numpy(np.ascontiguousarray(value.transpose(2, 0, 1),
                                                          dtype=np.float32))
    out["K"] = torch.from_numpy(np.asarray(frame["K"], np.float32))
    return out


class StaticFrames(Dataset):
    """Every frame of every sequence under `root` as an independent sample (stage 1).

    `augment(frame_dict) -> frame_dict` (e.g. `hcdp_training.augment.Augment`) runs on the numpy
    dict before resizing and tensor conversion.
    """

    def __init__(self, root: str | Path, size: int | None = None,
                 augment: Callable[[dict], dict] | None = None):
        self.sequences = list_sequences(root)
        if not self.sequences:
            raise FileNotFoundError(f"expected sequence folders with meta.json under {root}, "
                                    "found none")
        self.index = [(seq, t) for seq in self.sequences
                      for t in range(int(read_meta(seq)["frames"]))]
        self.size, self.augment = size, augment

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        seq, t = self.index[i]
        frame = read_frame(seq, t)
        if self.augment is not None:
            frame = self.augment(frame)
        if self.size is not None:
            frame = resize_square(frame, self.size)
        return to_tensors(frame)


class StridedClips(Dataset):
    """Clips of `frames` frames at a random stride in (min, max) over sequences of known lengths,
    the sampling `VideoClips` and the self-supervised `VideoFolderClips` (training/video.py)
    share: one item per (sequence, start) where a clip fits at the minimum stride; the stride is
    then drawn from those that fit, reproducibly from (`seed`, item, `set_epoch`)."""

    def _index_clips(self, lengths: dict, frames: int, stride: tuple[int, int], seed: int) -> int:
        """Index every clip start; returns the span (in frames) of a clip at the minimum stride."""
        lo, hi = stride
        span = (frames - 1) * lo + 1
        self.lengths = lengths
        self.index = [(seq, s) for seq in lengths for s in range(lengths[seq] - span + 1)]
        self.frames, self.stride, self.seed, self.epoch = frames, (lo, hi), seed, 0
        return span

    def set_epoch(self, epoch: int) -> None:
        """Draw different strides in each epoch (call before iterating, like
        DistributedSampler)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def clip_stride(self, i: int) -> int:
        seq, start = self.index[i]
        lo, hi = self.stride
        if self.frames > 1:
            hi = min(hi, (self.lengths[seq] - 1 - start) // (self.frames - 1))
        return int(np.random.default_rng([self.seed, self.epoch, i]).integers(lo, hi + 1))

    def clip_frames(self, i: int) -> tuple[object, int, list[int]]:
        """Item `i`'s sequence, drawn stride and frame indices."""
        seq, start = self.index[i]
        stride = self.clip_stride(i)
        return seq, stride, [start + k * stride for k in range(self.frames)]


class VideoClips(StridedClips):
    """Clips of `frames` frames with a random stride in `stride` = (min, max) (stage 2), sampled
    as `StridedClips` says. Flows are the rendered flows of
    the drawn stride. `augment.clip(list_of_frame_dicts)` (e.g. `Augment.clip`) applies one
    geometric and photometric draw to the whole clip, so the flows stay consistent.
    """

    def __init__(self, root: str | Path, frames: int, stride: tuple[int, int] = (1, 1),
                 size: int | None = None,
                 augment=None, seed: int = 0):
        lo, hi = stride
        if frames < 1 or not 1 <= lo <= hi:
            raise ValueError("expected frames >= 1 and 1 <= stride min <= max, got "
                             f"frames={frames}, stride={stride}")
        if augment is not None and not hasattr(augment, "clip"):
            raise TypeError("expected an augment with a .clip(frames) method "
                            f"(hcdp_training.augment.Augment), got {type(augment).__name__}")
        self.sequences = list_sequences(root)
        lengths = {}
        for seq in self.sequences:
            meta = read_meta(seq)
            if frames > 1 and hi > int(meta["flow_strides"]):
                raise ValueError(f"stride up to {hi} needs flows rendered for it, but {seq} has "
                                 f"flow_strides={meta['flow_strides']}; regenerate with "
                                 f"--flow-strides {hi}")
            lengths[seq] = int(meta["frames"])
        self._index_clips(lengths, frames, (lo, hi), seed)
        if not self.index:
            raise ValueError(f"no sequence under {root} is long enough for {frames} frames at "
                             f"stride {lo}")
        self.size, self.augment = size, augment

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        seq, stride, indices = self.clip_frames(i)
        clip = [read_frame(seq, t, stride=stride if self.frames > 1 else 1) for t in indices]
        if self.augment is not None:
            clip = self.augment.clip(clip)
        if self.size is not None:
            clip = [resize_square(f, self.size) for f in clip]
        tensors = [to_tensors(f) for f in clip]
        out = {k: torch.stack([t[k] for t in tensors]) for k in tensors[0]}
        out["stride"] = torch.tensor(stride)
        out["frame_index"] = torch.tensor(indices)
        return out
