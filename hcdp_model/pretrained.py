"""Load the official DINOv2 / DINOv3 backbone checkpoints from a local file into the encoder.

Our encoder uses the official parameter names, so most keys map one to one. Documented differences
(also in docs/model.md):
  * `pos_embed` (DINOv2) is resized from the released 37x37 grid to the configured resolution with
    DINOv2's own rule: bicubic with scale factor (g + 0.1) / 37 and no antialias for the plain
    models, bicubic to size (g, g) with antialias for the `_reg` models.
  * `blocks.{i}.attn.qkv.bias_mask` (DINOv3) is not a parameter here: our attention always zeroes
    the key slice of the qkv bias, which is what the mask does. It is checked, then dropped.
  * `local_cls_norm.*` (DINOv3 ViT-L SAT-493M and 7B) is used only for training on local crops;
    ignored.
  * Wrappers and prefixes are removed: {"model": ...}, {"state_dict": ...}, "module.", "backbone.",
    "pretrained." (Depth Anything V2 checkpoints), "encoder.".
`.pth` files are read with torch.load(weights_only=True): no arbitrary unpickling (refused under
torch < 2.6, whose weights-only unpickler could be made to run code: CVE-2025-32434).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
from pathlib import Path
import re

from safetensors.torch import load_file
import torch
import torch.nn.functional as F

from .backbone import VisionTransformer

PREFIXES = ("module.", "backbone.", "pretrained.", "encoder.")
SAFE_WEIGHTS_ONLY_TORCH = (2, 6)  # CVE-2025-32434: weights_only=True could run code before 2.6
IGNORED_SUFFIXES = (".attn.qkv.bias_mask",)
IGNORED_PREFIXES = ("local_cls_norm.",)


class BackboneLoadError(RuntimeError):
    """The backbone file cannot be read, or none of its tensors fit the encoder."""


@dataclass
class LoadReport:
    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)       # encoder tensors the file lacks
    unexpected: list[str] = field(default_factory=list)    # file tensors the encoder lacks
    mismatched: list[str] = field(default_factory=list)    # same name, other shape (not loaded)
    ignored: list[str] = field(default_factory=list)       # documented, deliberately dropped
    resized: list[str] = field(default_factory=list)       # positional embedding resampled

    def __str__(self) -> str:
        lines = [f"backbone {self.path}: loaded {len(self.loaded)} tensors"]
        for name in ("resized", "ignored", "missing", "unexpected", "mismatched"):
            items = getattr(self, name)
            if items:
                shown = ", ".join(items[:6]) + (f", ... (+{len(items) - 6})" if len(items) > 6
                                                else "")
                lines.append(f"  {name} ({len(items)}): {shown}")
        return "\n".join(lines)


def _first_line(err: Exception, limit: int = 200) -> str:
    """Return the first line of an error, capped.

    Torch's weights-only refusals run to several lines.
    """
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return f"{type(err).__name__}: {line[:limit]}{'...' if len(line) > limit else ''}"


def _check_torch_for_pickles(path: Path) -> None:
    match = re.match(r"(\d+)\.(\d+)", torch.__version__)
    if match is None or (int(match.group(1)), int(match.group(2))) < SAFE_WEIGHTS_ONLY_TORCH:
        raise BackboneLoadError(
            f"{path}: refusing to unpickle a .pth with torch {torch.__version__}: before 2.6 a "
            "crafted file can run code even with weights_only=True (CVE-2025-32434); update torch "
            "or convert the file to .safetensors")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise BackboneLoadError(f"{path}: backbone file not found")
    if path.suffix != ".safetensors":
        _check_torch_for_pickles(path)
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - junk bytes raise KeyError, struct.error, ... too
        raise BackboneLoadError(f"{path}: cannot read backbone weights ({_first_line(err)}); "
                                "expected a .pth state dict or a .safetensors file") from None
    for wrapper in ("model", "state_dict", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneLoadError(f"{path}: expected a state dict of tensors, got "
                                f"{type(state).__name__}")
    out = {}
    for key, value in state.items():
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def resize_pos_embed(pos_embed: torch.Tensor, grid: int, antialias: bool) -> torch.Tensor:
    """[1, 1 + M*M, D] -> [1, 1 + grid*grid, D] following DINOv2's interpolate_pos_encoding."""
    cls, patches = pos_embed[:, :1], pos_embed[:, 1:]
    m = int(math.isqrt(patches.shape[1]))
    if m * m != patches.shape[1]:
        raise BackboneLoadError(f"pos_embed has {patches.shape[1]} patch positions, not a square "
                                "grid")
    if m == grid:
        return pos_embed
    d = patches.shape[-1]
    img = patches.reshape(1, m, m, d).permute(0, 3, 1, 2).float()
    if antialias:
        img = F.interpolate(img, size=(grid, grid), mode="bicubic", align_corners=False,
                            antialias=True)
    else:
        factor = (grid + 0.1) / m
        img = F.interpolate(img, scale_factor=(factor, factor), mode="bicubic",
                            align_corners=False)
    patches = img.permute(0, 2, 3, 1).reshape(1, grid * grid, d).to(pos_embed.dtype)
    return torch.cat([cls, patches], dim=1)


def load_backbone(encoder: VisionTransformer, path: str | Path,
                  strict: bool = False) -> LoadReport:
    """Copy the official backbone tensors into `encoder`; report what did not fit.

    Raises BackboneLoadError if nothing matched (wrong file or family), or with strict=True if
    anything is missing, unexpected or of another shape.
    """
    report = LoadReport(str(path))
    state = read_state_dict(path)
    own = encoder.state_dict()
    accepted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(IGNORED_SUFFIXES) or key.startswith(IGNORED_PREFIXES):
            report.ignored.append(key)
            continue
        if key not in own:
            report.unexpected.append(key)
            continue
        if (key == "pos_embed" and value.shape != own[key].shape
                and value.shape[-1] == own[key].shape[-1]):
            value = resize_pos_embed(value, encoder.grid,
                                     antialias=encoder.cfg.num_register_tokens > 0)
            report.resized.append(f"pos_embed {tuple(state[key].shape)} -> {tuple(value.shape)}")
        if value.shape != own[key].shape:
            report.mismatched.append(f"{key} file {tuple(value.shape)} vs encoder "
                                     f"{tuple(own[key].shape)}")
            continue
        accepted[key] = value
    report.missing = sorted(set(own) - set(accepted) - {m.split(" ")[0]
                                                        for m in report.mismatched})
    report.loaded = sorted(accepted)
    if not accepted and report.mismatched:
        raise BackboneLoadError(
            f"{path}: no tensor fits the encoder: {len(report.mismatched)} have other shapes "
            f"(e.g. {report.mismatched[0]}); is this backbone a different size than the preset?")
    if not accepted:
        sample = ", ".join(sorted(state)[:5])
        raise BackboneLoadError(
            f"{path}: no tensor matched the {encoder.cfg.family} encoder (file has e.g. {sample}; "
            f"expected names like cls_token, patch_embed.proj.weight, blocks.0.attn.qkv.weight)")
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise BackboneLoadError(f"strict load failed:\n{report}")
    encoder.load_state_dict(accepted, strict=False)
    return report
