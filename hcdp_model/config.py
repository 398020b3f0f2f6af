"""Model configuration: one dataclass per block, presets, YAML/JSON load and validation."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import types
import typing
from typing import Any

import yaml

FAMILIES = ("dinov2", "dinov3")
PRIORS = ("learned", "fourier_uv", "selfie", "learned_selfie", "none")
SELFIE_KINDS = ("selfie", "learned_selfie")  # priors with the real-trained selfie network
TEMPORAL_MODES = ("causal", "bidirectional")
DEPTH_HEADS = ("hcdp", "depth_anything")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type, or out of range."""


# Upper bounds on sizes: well above every released model (DINOv3 7B: width 4096, 40 blocks, 32
# heads), far below what would make a hand-edited config allocate many gigabytes or run for
# minutes.
MAX_WIDTH = 8192
MAX_DEPTH = 64
MAX_HEADS = 128
MIN_RATIO, MAX_RATIO = 0.1, 16.0
MAX_RESOLUTION = 4096
MAX_ZOOMS, MAX_ZOOM = 4, 8.0  # prior.selfie_zooms: scales, and the largest


def _bounded(name: str, value: int | float, low: int | float, high: int | float) -> None:
    _check(math.isfinite(value) and low <= value <= high,
           f"{name}: expected a value in [{low}, {high}], got {value}")


@dataclass
class BackboneConfig:
    """ViT encoder of the DINOv2 or DINOv3 family.

    DINOv2: patch 14, learned absolute positions; DINOv3: patch 16, RoPE.
    """

    family: str = "dinov2"
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    patch_size: int = 14
    # DINOv2 "register tokens" (0 or 4) / DINOv3 "storage tokens" (4 in every released model).
    num_register_tokens: int = 0
    # Positional-embedding grid of the released DINOv2 checkpoints (518 / 14 = 37); unused by
    # DINOv3.
    pretrain_img_size: int = 518
    layerscale_init: float = 1.0
    # 0-based indices of the blocks whose (normalised) patch tokens feed the decoder.
    intermediate_layers: tuple[int, int, int, int] = (2, 5, 8, 11)
    rope_base: float = 100.0

    @property
    def norm_eps(self) -> float:
        return 1e-6 if self.family == "dinov2" else 1e-5

    def validate(self) -> None:
        _check(self.family in FAMILIES,
               f"backbone.family: expected one of {FAMILIES}, got {self.family!r}")
        _bounded("backbone.embed_dim", self.embed_dim, 1, MAX_WIDTH)
        _bounded("backbone.depth", self.depth, 1, MAX_DEPTH)
        _bounded("backbone.num_heads", self.num_heads, 1, MAX_HEADS)
        _bounded("backbone.mlp_ratio", self.mlp_ratio, MIN_RATIO, MAX_RATIO)
        _bounded("backbone.patch_size", self.patch_size, 1, 64)
        _bounded("backbone.num_register_tokens", self.num_register_tokens, 0, 64)
        _bounded("backbone.pretrain_img_size", self.pretrain_img_size, self.patch_size,
                 MAX_RESOLUTION)
        _bounded("backbone.layerscale_init", self.layerscale_init, 0.0, 1e3)
        _bounded("backbone.rope_base", self.rope_base, 1e-3, 1e9)
        _check(self.embed_dim % self.num_heads == 0,
               f"backbone.embed_dim {self.embed_dim} must be divisible by num_heads "
               f"{self.num_heads}")
        _check(len(self.intermediate_layers) == 4,
               "backbone.intermediate_layers: expected 4 block indices, got "
               f"{list(self.intermediate_layers)}")
        _check(all(0 <= i < self.depth for i in self.intermediate_layers)
               and list(self.intermediate_layers) == sorted(set(self.intermediate_layers)),
               f"backbone.intermediate_layers {list(self.intermediate_layers)} must be ascending, "
               f"distinct and in [0, {self.depth})")
        if self.family == "dinov3":
            _check((self.embed_dim // self.num_heads) % 4 == 0,
                   "backbone: DINOv3 RoPE needs head_dim divisible by 4")


@dataclass
class DecoderConfig:
    """DPT reassemble + fusion (Ranftl et al.; Depth Anything V2 layout)."""

    features: int = 64
    out_channels: tuple[int, int, int, int] = (48, 96, 192, 384)
    # hcdp: depth from the fused features like the other heads; depth_anything: Depth Anything V2's
    # depth head on F_DPT (so its weights map exactly), see hcdp_model/heads.py and docs/model.md.
    depth_head: str = "hcdp"

    def validate(self) -> None:
        _bounded("decoder.features", self.features, 1, MAX_WIDTH)
        for i, channels in enumerate(self.out_channels):
            _bounded(f"decoder.out_channels[{i}]", channels, 1, MAX_WIDTH)
        _check(self.depth_head in DEPTH_HEADS,
               f"decoder.depth_head: expected one of {DEPTH_HEADS}, got {self.depth_head!r}")


@dataclass
class TemporalConfig:
    """Temporal attention: four blocks, one per DPT scale, after reassemble (paper §3.2).

    `fused` adds a fifth block on the fused features before CWA and the heads, whose update comes
    only from the last `fused_window` frames (temporal.FusedTemporalBlock, issue 17).
    """

    enabled: bool = False
    mode: str = "causal"
    num_heads: int = 4
    mlp_ratio: float = 2.0
    # Relative time offsets beyond this share the last bias entry.
    max_relative_distance: int = 32
    fused: bool = False
    fused_window: int = 4

    def validate(self) -> None:
        _check(self.mode in TEMPORAL_MODES,
               f"temporal.mode: expected one of {TEMPORAL_MODES}, got {self.mode!r}")
        _check(self.max_relative_distance >= 1, "temporal.max_relative_distance must be >= 1")
        _bounded("temporal.max_relative_distance", self.max_relative_distance, 1, 4096)
        _bounded("temporal.num_heads", self.num_heads, 1, MAX_HEADS)
        _bounded("temporal.mlp_ratio", self.mlp_ratio, MIN_RATIO, MAX_RATIO)
        _check(isinstance(self.fused, bool), f"temporal.fused: expected true or false, got "
               f"{self.fused!r}")
        _bounded("temporal.fused_window", self.fused_window, 1, self.max_relative_distance + 1)
        _check(not self.fused or self.enabled, "temporal.fused needs temporal.enabled: true")


@dataclass
class PriorConfig:
    """Human geometric prior (paper eq. 4-5).

    Embedding z -> 1x1 conv + upsample -> added to F_DPT.
    """

    # learned: our stage-0 CNN; fourier_uv: its canonical coordinates, Fourier-encoded; selfie:
    # MediaPipe selfie segmentation, real-trained (selfie_prior.py); learned_selfie: both; none.
    kind: str = "learned"
    embed_dim: int = 16  # learned: the embedding width D (selfie: fixed by the network)
    width: int = 32  # learned / fourier_uv: the CNN's width
    fourier_frequencies: int = 4
    selfie_feature: str = "dec8"  # selfie: the decoder stage psi reads (dec8 | dec4 | dec2)
    # selfie: the scales the network runs at (the frame's content stretched to zoom x the model
    # resolution); the person logits are the maximum over them, psi's features come from the
    # first. The network was trained on selfies: a zoom finds people that fill little of the frame.
    selfie_zooms: tuple[float, ...] = (1.0,)

    def validate(self) -> None:
        _check(self.kind in PRIORS, f"prior.kind: expected one of {PRIORS}, got {self.kind!r}")
        _check(self.selfie_feature in ("dec8", "dec4", "dec2"),
               "prior.selfie_feature: expected dec8, dec4 or dec2, got "
               f"{self.selfie_feature!r}")
        _check(1 <= len(self.selfie_zooms) <= MAX_ZOOMS,
               f"prior.selfie_zooms: expected 1 to {MAX_ZOOMS} scales, got "
               f"{len(self.selfie_zooms)}")
        for i, zoom in enumerate(self.selfie_zooms):
            _bounded(f"prior.selfie_zooms[{i}]", zoom, 1.0, MAX_ZOOM)
        _bounded("prior.embed_dim", self.embed_dim, 1, MAX_WIDTH)
        _bounded("prior.width", self.width, 1, MAX_WIDTH)
        _bounded("prior.fourier_frequencies", self.fourier_frequencies, 1, 32)


@dataclass
class FusionConfig:
    """CNN branch on the full-resolution image, fusion phi, channel weight adaptation, heads."""

    cnn_branch: bool = True
    cnn_channels: int = 32
    channels: int = 32
    cwa: bool = True
    cwa_reduction: int = 4
    head_channels: int = 32

    def validate(self) -> None:
        for name in ("cnn_channels", "channels", "head_channels"):
            _bounded(f"fusion.{name}", getattr(self, name), 1, MAX_WIDTH)
        _bounded("fusion.cwa_reduction", self.cwa_reduction, 1, self.channels)


@dataclass
class ModelConfig:
    preset: str = "custom"
    # Square internal resolution the encoder runs at whatever the camera size (multiple of the
    # patch).
    resolution: int = 518
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    @property
    def grid(self) -> int:
        return self.resolution // self.backbone.patch_size

    def validate(self) -> "ModelConfig":
        self.backbone.validate()
        self.decoder.validate()
        self.temporal.validate()
        self.prior.validate()
        self.fusion.validate()
        p = self.backbone.patch_size
        _check(self.resolution % p == 0 and self.resolution >= 4 * p,
               f"resolution {self.resolution} must be a multiple of the patch size {p} and >= "
               f"{4 * p}")
        _bounded("resolution", self.resolution, 4 * p, MAX_RESOLUTION)
        _check(self.decoder.features % self.temporal.num_heads == 0,
               f"decoder.features {self.decoder.features} must be divisible by temporal.num_heads "
               f"{self.temporal.num_heads} (the temporal blocks split the features into heads)")
        _check(not self.temporal.fused or self.fusion.channels % self.temporal.num_heads == 0,
               f"fusion.channels {self.fusion.channels} must be divisible by temporal.num_heads "
               f"{self.temporal.num_heads} (temporal.fused attends over the fused features)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "ModelConfig":
        return build(cls, data, source).validate()

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2) if path.suffix == ".json" else yaml.safe_dump(
            self.to_dict(), sort_keys=False)
        path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read model config ({err})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of model settings, got "
                              f"{type(data).__name__}")
        return cls.from_dict(data, source=str(path))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def build(cls: type, data: Any, source: str) -> Any:
    """Build dataclass `cls` from a mapping, checking every value against the field's annotation.

    Annotations checked: bool, int, float, str, fixed and variable tuples, X | None, nested
    dataclasses; unknown keys and wrong types raise ConfigError naming the key. The dataclass's own
    __post_init__ checks still run.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown {cls.__name__} keys {unknown}; expected some of "
                          f"{sorted(known)}")
    kwargs = {name: _value(hints[name], value, f"{source}:{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from err


def _value(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _value(inner[0], value, where)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v, where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_value(a, v, where) for a, v in zip(args, value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                hint is int and not float(value).is_integer()):
            raise ConfigError(f"{where}: expected {'an int' if hint is int else 'a number'}, got "
                              f"{value!r}")
        return hint(value)
    if hint is str:
        if value is None:  # `key:` with no value, or key= on the command line
            return ""
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")


def _vit(family: str, dim: int, depth: int, heads: int, layers: tuple[int, int, int, int],
         registers: int = 0) -> BackboneConfig:
    if family == "dinov3":
        return BackboneConfig(family="dinov3", embed_dim=dim, depth=depth, num_heads=heads,
                              patch_size=16,
                              num_register_tokens=4, layerscale_init=1e-5,
                              intermediate_layers=layers)
    return BackboneConfig(family="dinov2", embed_dim=dim, depth=depth, num_heads=heads,
                          patch_size=14,
                          num_register_tokens=registers, intermediate_layers=layers)


def preset(name: str, family: str = "dinov2") -> ModelConfig:
    """Return one of the four shipped presets.

    small/base/large match the official ViT-S/B/L backbones and the Depth Anything V2 decoder
    widths; tiny is a CPU/CI model with the same structure.
    """
    if family not in FAMILIES:
        raise ConfigError(f"family: expected one of {FAMILIES}, got {family!r}")
    p = 16 if family == "dinov3" else 14
    if name == "tiny":
        cfg = ModelConfig(
            resolution=16 * p,
            backbone=_vit(family, 192, 6, 3, (1, 2, 4, 5)),
            decoder=DecoderConfig(features=48, out_channels=(32, 64, 128, 192)),
            temporal=TemporalConfig(num_heads=4, mlp_ratio=2.0),
            prior=PriorConfig(embed_dim=16, width=24),
            fusion=FusionConfig(cnn_channels=16, channels=24, head_channels=24),
        )
    elif name == "small":
        cfg = ModelConfig(
            resolution=37 * p,
            backbone=_vit(family, 384, 12, 6, (2, 5, 8, 11)),
            decoder=DecoderConfig(features=64, out_channels=(48, 96, 192, 384)),
            temporal=TemporalConfig(num_heads=4),
        )
    elif name == "base":
        cfg = ModelConfig(
            resolution=37 * p,
            backbone=_vit(family, 768, 12, 12, (2, 5, 8, 11)),
            decoder=DecoderConfig(features=128, out_channels=(96, 192, 384, 768)),
            temporal=TemporalConfig(num_heads=8),
            prior=PriorConfig(embed_dim=16, width=48),
            fusion=FusionConfig(cnn_channels=32, channels=48, head_channels=48),
        )
    elif name == "large":
        cfg = ModelConfig(
            resolution=37 * p,
            backbone=_vit(family, 1024, 24, 16, (4, 11, 17, 23)),
            decoder=DecoderConfig(features=256, out_channels=(256, 512, 1024, 1024)),
            temporal=TemporalConfig(num_heads=8),
            prior=PriorConfig(embed_dim=16, width=64),
            fusion=FusionConfig(cnn_channels=32, channels=64, head_channels=64),
        )
    else:
        raise ConfigError(f"unknown preset {name!r}; expected one of {PRESETS}")
    cfg.preset = name
    return cfg.validate()


PRESETS = ("tiny", "small", "base", "large")
