"""Run logging on rank 0.

A tqdm bar (loss, it/s, ETA), TensorBoard scalars and image grids drawn with the project's one set
of colour maps (hcdp_model.visualize).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from hcdp_model.visualize import colorize_depth, contact_sheet, mask_to_rgb, normals_to_rgb
import numpy as np
import torch
from tqdm import tqdm


def _frame(x: torch.Tensor, t: int) -> np.ndarray:
    """Sample 0, frame t of [B,C,H,W] or [B,T,C,H,W] -> numpy HxWxC float32."""
    x = x[0, t] if x.dim() == 5 else x[0]
    return x.detach().float().cpu().permute(1, 2, 0).numpy()


def _mask(m: Mapping[str, torch.Tensor], t: int) -> np.ndarray | None:
    if "mask_logits" in m:
        return torch.sigmoid(torch.from_numpy(_frame(m["mask_logits"], t)[..., 0])).numpy()
    return _frame(m["mask"], t)[..., 0] if "mask" in m else None


def image_grid(target: Mapping[str, torch.Tensor], pred: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Contact sheet of sample 0 (first and last frame of a clip), HxWx3 uint8.

    The image, then target | prediction for each of depth, normals, canonical coordinates and mask
    that both have.
    """
    image = target["image"]
    frames = [0, image.shape[1] - 1] if image.dim() == 5 and image.shape[1] > 1 else [0]
    rows, labels = [], ["image"]
    for t in frames:
        rgb = (np.clip(_frame(image, t), 0, 1) * 255 + 0.5).astype(np.uint8)
        gt_mask, pred_mask = _mask(target, t), _mask(pred, t)
        row = [rgb]
        for key, label in (("depth", "depth"), ("normal", "normals"), ("canonical", "canonical")):
            if key not in target or key not in pred:
                continue
            a, b = _frame(target[key], t), _frame(pred[key], t)
            if key == "depth":
                a = np.where(a[..., 0] > 0, a[..., 0], np.nan)
                row += [colorize_depth(a, gt_mask), colorize_depth(b[..., 0], gt_mask)]
            else:
                row += [normals_to_rgb(np.clip(a, -1, 1)), normals_to_rgb(np.clip(b, -1, 1))]
            labels += [f"{label} target", f"{label} pred"] if t == frames[0] else []
        if gt_mask is not None and pred_mask is not None:
            row += [mask_to_rgb(gt_mask, rgb), mask_to_rgb(pred_mask, rgb)]
            labels += ["mask target", "mask pred"] if t == frames[0] else []
        rows.append(row)
    return contact_sheet(rows, labels)


class RunLogger:
    """Rank-0 logging; on other ranks (enabled=False) every method does nothing."""

    def __init__(self, out: Path, total: int, initial: int, enabled: bool, tensorboard: bool,
                 progress: bool,
                 description: str) -> None:
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"))
        self.bar = tqdm(total=total, initial=initial, desc=description, unit="step",
                        dynamic_ncols=True,
                        disable=not (enabled and progress))

    def step(self, loss: float, skipped: int) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}", skipped=skipped, refresh=False)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def images(self, step: int, target: Mapping[str, torch.Tensor],
               pred: Mapping[str, torch.Tensor]) -> None:
        if self.writer is not None:
            self.writer.add_image("samples", image_grid(target, pred), step, dataformats="HWC")

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
