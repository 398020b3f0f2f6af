"""Self-supervised stage 2 on unlabeled video (issue 4 item 4; beyond the paper).

The temporal terms of eqs. 12-13 need no labels, only optical flow, which OpenCV's DIS computes
(`hcdp_training.metrics.flow_opencv`). Alone they would let the model collapse to a constant (a
flat depth is perfectly stable), so the loss also distils the frozen stage-1 model, frame by frame:

    L_selfsup = w_distill * L_stage1(pred, teacher) + lambda^d_temp L^d_temp + lambda^n_temp
    L^n_temp

L_stage1 is eq. 11 with the teacher's per-frame predictions as targets: its depth (relative; eq. 6
fits scale and shift), its normals and its soft mask sigmoid(logits), gated where that mask is >
mask_threshold.
The temporal terms (eqs. 12-14) use the DIS flows between adjacent clip frames, their
cycle-consistency mask, the dilated predicted-depth-edge mask and the teacher's human region (mask
> teacher_mask_threshold); the depth term is measured in units of the teacher depth's range
(`temporal_depth_loss`, `reference`).
The student starts as the teacher plus zero-initialised temporal blocks, so the distillation term
starts at its minimum and only the temporal terms move it.

Input: `data.root` holds video files (cv2.VideoCapture: .mp4 .avi .mov .mkv .webm .m4v) and/or
folders of images (.png .jpg .jpeg .bmp, sorted by name), one sequence each; `root` itself may be
one image folder.
"""
from __future__ import annotations

from pathlib import Path

import cv2
from hcdp_model.checkpoint import load_checkpoint
from hcdp_model.model import HCDPModel
from hcdp_training.batch import as_clip, Batch, TaskOutput
from hcdp_training.config import TrainConfig
from hcdp_training.data.datasets import resize_square, StridedClips
from hcdp_training.losses import (stage1_loss, temporal_depth_loss, temporal_masks,
                                  temporal_normal_loss)
from hcdp_training.metrics import clip_flows
import numpy as np
import torch
from torch import nn

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def find_sources(root: str | Path) -> list[Path]:
    """Video files and image folders under `root` (recursively), sorted.

    `root` itself if it is an image folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {root}: expected a folder of videos or image "
                                "sequences")
    if _images(root):
        return [root]
    sources = [p for p in root.rglob("*") if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
               or (p.is_dir() and _images(p))]
    if not sources:
        raise FileNotFoundError(f"data.root {root}: found no video ({'/'.join(VIDEO_SUFFIXES)}) "
                                f"and no folder of images ({'/'.join(IMAGE_SUFFIXES)})")
    return sorted(sources)


def count_frames(source: Path) -> int:
    """Count the frames of a video or of an image folder.

    A video is decoded once: container frame counts are often wrong.
    """
    if source.is_dir():
        return len(_images(source))
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise OSError(f"{source}: OpenCV cannot open this video")
    count = 0
    while cap.grab():
        count += 1
    cap.release()
    return count


def read_frames(source: Path, indices: list[int]) -> list[np.ndarray]:
    """uint8 RGB frames `indices` (ascending) of a video or image folder."""
    if source.is_dir():
        files = _images(source)
        frames = [cv2.imread(str(files[i]), cv2.IMREAD_COLOR) for i in indices]
    else:
        cap = cv2.VideoCapture(str(source))
        cap.set(cv2.CAP_PROP_POS_FRAMES, indices[0])
        frames, wanted, position = [], set(indices), indices[0]
        while position <= indices[-1]:
            ok, image = cap.read()
            if not ok:
                break
            if position in wanted:
                frames.append(image)
            position += 1
        cap.release()
    if len(frames) != len(indices) or any(f is None for f in frames):
        raise OSError(f"{source}: cannot read frames {indices}")
    return [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]


class VideoFolderClips(StridedClips):
    """Clips of `frames` frames with a random stride in (min, max), with DIS flows.

    The stride is drawn from (seed, epoch, index) like `VideoClips`; frames are centre-cropped and
    resized to `size`. Items: image [T,3,S,S] in [0,1], flow_fwd / flow_bwd [T,2,S,S], stride,
    frame_index [T].
    """

    augment = None  # unlabeled frames are used as they are (the teacher sees the same pixels)

    def __init__(self, root: str | Path, frames: int, stride: tuple[int, int], size: int,
                 seed: int = 0) -> None:
        self.sources = find_sources(root)
        span = self._index_clips({s: count_frames(s) for s in self.sources}, frames, stride, seed)
        if not self.index:
            raise ValueError(f"data.root {root}: no video has the {span} frames a clip of "
                             f"{frames} at stride {stride[0]} needs (lengths "
                             f"{sorted(self.lengths.values())})")
        self.size = size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        source, stride, indices = self.clip_frames(i)
        eye = np.eye(3, dtype=np.float32)
        frames = [resize_square({"rgb": f, "K": eye}, self.size)["rgb"]
                  for f in read_frames(source, indices)]
        fwd, bwd = clip_flows(frames)
        image = np.stack(frames).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        return {"image": torch.from_numpy(image),
                "flow_fwd": torch.from_numpy(fwd.transpose(0, 3, 1, 2).copy()),
                "flow_bwd": torch.from_numpy(bwd.transpose(0, 3, 1, 2).copy()),
                "stride": torch.tensor(stride),
                "frame_index": torch.tensor(indices)}


def teacher_targets(teacher: HCDPModel, clip: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return the frozen per-frame model's predictions on a normalised clip [B,T,3,S,S].

    As targets [B,T,C,S,S]: depth, normal and the soft mask sigmoid(mask_logits).
    """
    b, t = clip.shape[:2]
    with torch.no_grad():
        out = teacher(clip.flatten(0, 1)[:, None])
    out = {k: v[:, 0].unflatten(0, (b, t)).float() for k, v in out.items()}
    return {"depth": out["depth"], "normal": out["normal"],
            "mask": torch.sigmoid(out["mask_logits"])}


class SelfSupervisedTask(nn.Module):
    """Stage 2 on unlabeled video: the loss of the module docstring.

    The teacher is `selfsup`'s frozen copy of the stage-1 checkpoint (`model.init`).
    """

    def __init__(self, model: HCDPModel, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        self.teacher = load_checkpoint(cfg.model.init).requires_grad_(False).eval()
        self.window = cfg.model.window or None

    def forward(self, batch: Batch) -> TaskOutput:
        loss_cfg, selfsup = self.cfg.loss, self.cfg.selfsup
        clip = as_clip(batch["image"])
        pred = self.model(clip, self.window)
        target = teacher_targets(self.teacher, clip)
        distill, terms = stage1_loss(pred, target, loss_cfg)
        region = target["mask"] > selfsup.teacher_mask_threshold
        flow_fwd, flow_bwd = batch["flow_fwd"], batch["flow_bwd"]
        masks = temporal_masks(pred["depth"], flow_fwd, flow_bwd, loss_cfg, region)
        l_td = temporal_depth_loss(pred["depth"], flow_fwd, flow_bwd, masks,
                                   reference=target["depth"])
        l_tn = temporal_normal_loss(pred["normal"], flow_fwd, flow_bwd, masks)
        total = (selfsup.distill_weight * distill + loss_cfg.lambda_temp_depth * l_td
                 + loss_cfg.lambda_temp_normal * l_tn)
        terms = {**{f"distill_{k}": v for k, v in terms.items() if k not in ("stage1", "total")},
                 "distill": distill.detach(), "temp_depth": l_td.detach(),
                 "temp_normal": l_tn.detach(),
                 "total": total.detach()}
        return total, terms, pred, {**target, "image": batch["image"]}
