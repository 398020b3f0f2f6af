"""Training configuration: one dataclass per concern, loaded from YAML and validated.

Unknown keys are rejected.

A run is described by a `TrainConfig`:

    stage        0 (prior encoder), 1 (static images) or 2 (clips; self-supervised when
                 data.kind = video)
    model        what network to build or load, and what to initialise it from
    data         where the samples are and how they are cut, resized and augmented
    optim        AdamW, per-group learning rates, the warm-up + polynomial schedule, batch,
                 precision
    loss         the paper's loss weights and thresholds (`hcdp_training.losses.LossConfig`)
    selfsup      the distillation weight of self-supervised stage 2 on unlabeled video
    log          TensorBoard scalars / image grids and the progress bar
    checkpoint   how often to write a checkpoint and how many to keep

`load_config(path, overrides)` reads the YAML and applies `key.sub=value` overrides (values parsed
as YAML). Every value is type-checked against the dataclass annotations and range-checked in
`validate()`, and every error names the key, what was expected and what was found. docs/training.md
lists every key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hcdp_model.config import build, ConfigError, FAMILIES, PRESETS, PRIORS, TEMPORAL_MODES
from hcdp_training.augment import AugmentConfig
from hcdp_training.losses import LossConfig
import yaml

STAGES = (0, 1, 2)
DATA_KINDS = ("hcdp", "synthhuman", "video")
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class ModelSection:
    """The network.

    Stage 0/1 build `preset` (or the model config file `config`); `init` loads a full checkpoint
    instead (required in stage 2: the stage-1 model).
    """

    preset: str = "tiny"
    family: str = "dinov2"
    # a model config YAML/JSON (hcdp_model.config.ModelConfig); overrides preset/family
    config: str = ""
    init: str = ""  # checkpoint to start from (stage 2: the stage-1 checkpoint)
    # stage-0 checkpoint whose prior encoder is copied in (stage 1), then frozen
    prior_init: str = ""
    # prior.kind selfie / learned_selfie: the converted selfie_prior.safetensors
    # (scripts/convert_selfie_prior.py), loaded into the prior's selfie network (stage 1 or 2)
    selfie_init: str = ""
    # with `init`: rebuild the checkpoint's model with this prior.kind ("" = keep it); every other
    # weight is kept, the new prior adds nothing until trained (stages.swap_prior)
    prior_kind: str = ""
    # official DINOv2/DINOv3 weights file for the encoder (stage 1; local path only)
    backbone: str = ""
    temporal_mode: str = "causal"  # stage 2: causal (streaming) or bidirectional (offline clips)
    # stage 2, causal: attention window in frames during training (0 = the whole clip)
    window: int = 0
    # stage 2: add the fused temporal block (temporal.FusedTemporalBlock) if the model has none
    fused_temporal: bool = False


@dataclass
class DataSection:
    """Training samples.

    `hcdp`: our generated sequences (training/data/format.py); `synthhuman`: DAViD's release layout
    (stage 0/1 have no canonical coordinates there, so stage 1 only); `video`: a folder of
    unlabeled videos or image sequences (stage 2 only, self-supervised).
    """

    kind: str = "hcdp"
    root: str = ""
    frames: int = 1  # frames per clip (stage 2); 1 in stages 0/1
    stride: tuple[int, int] = (1, 1)  # random frame stride range (min, max) of the clips
    size: int = 0  # square side the samples are resized/cropped to; 0 = the model resolution
    augment: bool = True  # DAViD augmentations (clip-consistent in stage 2)
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 0
    # data order, augmentation and clip strides are functions of (seed, epoch, index)
    seed: int = 0


@dataclass
class OptimSection:
    """AdamW with per-group learning rates and the paper's schedule.

    The schedule is appendix A.6, Tables 18/19.
    """

    steps: int = 1000  # optimizer steps
    batch_size: int = 4  # samples (clips in stage 2) per process and micro-batch
    # micro-batches per optimizer step; global batch = batch_size x accumulation x world
    accumulation: int = 1
    lr_encoder: float = 1e-4  # Table 18 "Encoder" (stage 1); unused while the encoder is frozen
    lr_temporal: float = 1e-4  # Table 19 "Temporal modules" (stage 2)
    # Table 18 "Others" 1e-5; Table 19 "Others" 1e-6; stage 0: the prior encoder
    lr_others: float = 1e-5
    # Stage 1: the DPT decoder (+ the depth_anything depth head) as its own group, e.g. when it was
    # mapped from a Depth Anything file by `hcdp init-from`; None = part of "others".
    lr_decoder: float | None = None
    # Stage 2: the temporal blocks' relative time biases as their own group; None = lr_temporal.
    # AdamW moves a parameter by about its learning rate per step, so at 1e-4 over a few hundred
    # steps a bias cannot move the ~1 it takes to make attention prefer recent frames
    # (docs/training.md).
    lr_time_bias: float | None = None
    # Stage 2: the fused temporal block as its own group; None = lr_temporal.
    lr_fused_temporal: float | None = None
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 2000
    warmup_start_factor: float = 0.01  # linear warm-up from lr/100 (start_factor = 1/100)
    decay_power: float = 1.5  # polynomial decay to 0 at the last step
    clip_grad_norm: float = 1.0  # 0 = no clipping
    drop_grad_norm: float = 0.0  # skip the step when the (pre-clip) norm exceeds this; 0 = never
    freeze_encoder: bool = False  # stage 1: optional (Table 18); stage 2: always frozen (Table 19)
    precision: str = "fp32"  # fp32 | bf16 | fp16 autocast; CUDA only (CPU always runs fp32)


@dataclass
class SelfSupSection:
    """Self-supervised stage 2 on unlabeled video (training/video.py)."""

    # weight of the stage-1 loss against the frozen stage-1 model's predictions
    distill_weight: float = 1.0
    # teacher mask > this is the human region of the temporal terms
    teacher_mask_threshold: float = 0.5


@dataclass
class LogSection:
    scalars_every: int = 10  # optimizer steps between TensorBoard scalar writes
    images_every: int = 200  # optimizer steps between image grids (0 = never)
    tensorboard: bool = True
    progress: bool = True  # tqdm bar with loss, it/s and ETA


@dataclass
class CheckpointSection:
    every: int = 500  # optimizer steps between checkpoints (model + trainer_state.pt)
    keep: int = 2  # most recent checkpoints kept (the final one is always written)


@dataclass
class TrainConfig:
    stage: int = 1
    out: str = "runs/train"  # output folder: checkpoints/, final/, tb/, train_config.yaml
    seed: int = 0  # model initialisation seed
    device: str = "auto"  # auto = cuda when available (LOCAL_RANK's GPU under torchrun), else cpu
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossConfig = field(default_factory=LossConfig)
    selfsup: SelfSupSection = field(default_factory=SelfSupSection)
    log: LogSection = field(default_factory=LogSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)

    @property
    def self_supervised(self) -> bool:
        return self.stage == 2 and self.data.kind == "video"

    def validate(self) -> "TrainConfig":
        m, d, o = self.model, self.data, self.optim
        _check(self.stage in STAGES, f"stage: expected one of {STAGES}, got {self.stage!r}")
        _check(self.device in DEVICES, f"device: expected one of {DEVICES}, got {self.device!r}")
        _check(m.preset in PRESETS, f"model.preset: expected one of {PRESETS}, got {m.preset!r}")
        _check(m.family in FAMILIES, f"model.family: expected one of {FAMILIES}, got {m.family!r}")
        _check(m.temporal_mode in TEMPORAL_MODES,
               f"model.temporal_mode: expected one of {TEMPORAL_MODES}, got {m.temporal_mode!r}")
        _check(m.prior_kind in ("", *PRIORS),
               f"model.prior_kind: expected one of {PRIORS} (or empty), got {m.prior_kind!r}")
        _check(not m.prior_kind or m.init, "model.prior_kind: changes the prior of the model.init "
                                           "checkpoint; expected model.init too")
        _check(m.window >= 0, f"model.window: expected >= 0 (0 = whole clip), got {m.window}")
        _check(self.stage != 2 or m.init,
               "model.init: stage 2 starts from the stage-1 checkpoint; "
               "expected its path, got nothing")
        _check(d.kind in DATA_KINDS, f"data.kind: expected one of {DATA_KINDS}, got {d.kind!r}")
        _check(bool(d.root), "data.root: expected the training data folder, got nothing")
        _check(d.kind != "video" or self.stage == 2,
               f"data.kind video (unlabeled) is for stage 2 only, got stage {self.stage}")
        _check(d.kind != "video" or self.loss.temporal == "flow",
               "loss.temporal: unlabeled video has no ground-truth depth for TGM; expected flow, "
               "got tgm")
        _check(d.kind != "synthhuman" or self.stage == 1,
               "data.kind synthhuman has static labelled images for stage 1 only, got stage "
               f"{self.stage}")
        if self.stage == 2:
            _check(d.frames >= 2, "data.frames: stage 2 needs clips of >= 2 frames, got "
                                  f"{d.frames}")
        else:
            _check(d.frames == 1, f"data.frames: stage {self.stage} trains on single images; "
                                  "expected 1, "
                   f"got {d.frames}")
        _check(1 <= d.stride[0] <= d.stride[1], "data.stride: expected 1 <= min <= max, got "
                                                f"{list(d.stride)}")
        _check(d.size >= 0 and d.num_workers >= 0,
               "data.size and data.num_workers: expected >= 0, got "
               f"{d.size} and {d.num_workers}")
        _check(o.steps >= 1 and o.batch_size >= 1 and o.accumulation >= 1,
               f"optim.steps, batch_size, accumulation: expected >= 1, got {o.steps}, "
               f"{o.batch_size}, {o.accumulation}")
        for name in ("lr_encoder", "lr_temporal", "lr_others", "weight_decay", "clip_grad_norm",
                     "drop_grad_norm",
                     "decay_power"):
            _check(getattr(o, name) >= 0, f"optim.{name}: expected >= 0, got {getattr(o, name)}")
        _check(o.lr_decoder is None or o.lr_decoder >= 0,
               f"optim.lr_decoder: expected null or >= 0, got {o.lr_decoder}")
        _check(o.lr_time_bias is None or o.lr_time_bias >= 0,
               f"optim.lr_time_bias: expected null or >= 0, got {o.lr_time_bias}")
        _check(o.lr_fused_temporal is None or o.lr_fused_temporal >= 0,
               f"optim.lr_fused_temporal: expected null or >= 0, got {o.lr_fused_temporal}")
        _check(all(0 <= b < 1 for b in o.betas), "optim.betas: expected values in [0, 1), got "
                                                 f"{list(o.betas)}")
        _check(o.warmup_steps >= 0, f"optim.warmup_steps: expected >= 0, got {o.warmup_steps}")
        _check(0 < o.warmup_start_factor <= 1,
               f"optim.warmup_start_factor: expected in (0, 1], got {o.warmup_start_factor}")
        _check(o.drop_grad_norm == 0 or o.drop_grad_norm > o.clip_grad_norm,
               "optim.drop_grad_norm: expected 0 (off) or above clip_grad_norm "
               f"{o.clip_grad_norm}, got {o.drop_grad_norm}")
        _check(o.precision in PRECISIONS,
               f"optim.precision: expected one of {PRECISIONS}, got {o.precision!r}")
        _check(self.selfsup.distill_weight >= 0,
               f"selfsup.distill_weight: expected >= 0, got {self.selfsup.distill_weight}")
        _check(0 <= self.selfsup.teacher_mask_threshold < 1,
               "selfsup.teacher_mask_threshold: expected in [0, 1), "
               f"got {self.selfsup.teacher_mask_threshold}")
        _check(self.log.scalars_every >= 1 and self.log.images_every >= 0,
               "log.scalars_every >= 1 and log.images_every >= 0 expected, got "
               f"{self.log.scalars_every}, {self.log.images_every}")
        _check(self.checkpoint.every >= 1 and self.checkpoint.keep >= 1,
               "checkpoint.every and checkpoint.keep: expected >= 1, got "
               f"{self.checkpoint.every}, {self.checkpoint.keep}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "TrainConfig":
        return build(cls, data, source).validate()


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML training config and apply `a.b=value` overrides (value parsed as YAML)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the training config ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of training settings, got "
                          f"{type(data).__name__}")
    for item in overrides:
        apply_override(data, item)
    return TrainConfig.from_dict(data, source=str(path))


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set `data[a][b] = yaml(value)` for the override string `a.b=value`.

    Sections are created as needed.
    """
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    *sections, last = key.split(".")
    node = data
    for name in sections:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {name} is a value, not a section")
    try:
        node[last] = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: cannot parse the value ({err})") from err


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _plain(value: Any) -> Any:
    """Tuples -> lists (YAML-safe), recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
