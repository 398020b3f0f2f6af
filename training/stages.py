"""What each stage trains: start model, frozen parts, parameter groups and the task module.

Each stage defines the model it starts from, what is frozen, the parameter groups and their
learning rates, and the task module that turns a batch into (loss, terms, prediction, target).

Stage 0 (human prior, SPEC 3.4): the prior encoder regresses the generated canonical body-surface
coordinates and the person mask (`prior_loss`); it is frozen in every later stage, as the paper
freezes CSE.
Stage 1 (sec. 3.3.1): static images, eq. 11; groups "encoder" (lr_encoder) and "others"
(lr_others), Table 18.
Stage 2 (sec. 3.3.2): clips, eq. 14; temporal blocks inserted (zero-initialised: step 0 predicts
exactly what stage 1 did), encoder frozen; groups "temporal" (lr_temporal) and "others"
(lr_others), Table 19.
"""
from __future__ import annotations

import sys
from typing import Any

from hcdp_model.checkpoint import load_checkpoint
from hcdp_model.config import ConfigError, ModelConfig, preset, SELFIE_KINDS
from hcdp_model.model import HCDPModel
from hcdp_model.preprocess import normalize_float
from hcdp_model.pretrained import load_backbone
from hcdp_training.batch import as_clip, Batch, TaskOutput
from hcdp_training.config import TrainConfig
from hcdp_training.losses import LossConfig, seg_loss, stage1_loss, stage2_loss
from hcdp_training.video import SelfSupervisedTask
import torch
from torch import nn


def build_model(cfg: TrainConfig) -> HCDPModel:
    """Build the stage's starting model (seeded by cfg.seed), with its frozen parts frozen."""
    m = cfg.model
    torch.manual_seed(cfg.seed)
    if m.init:
        model = load_checkpoint(m.init)
        if m.prior_kind and m.prior_kind != model.cfg.prior.kind:
            model = swap_prior(model, m.prior_kind)
    elif m.config:
        model = HCDPModel(ModelConfig.load(m.config))
    else:
        model = HCDPModel(preset(m.preset, m.family))
    if cfg.stage == 0 and model.human_prior is None:
        raise ConfigError("stage 0 trains the human prior encoder, but the model has prior.kind "
                          "'none'")
    if cfg.stage == 0 and model.cfg.prior.kind == "selfie":
        raise ConfigError("stage 0 trains our own prior encoder; prior.kind selfie is trained "
                          "already (load it with model.prior_init in stage 1 or 2)")
    if m.selfie_init:
        load_selfie_prior(model, m.selfie_init)
    elif cfg.stage > 0 and model.cfg.prior.kind in SELFIE_KINDS and not m.init:
        print("hcdp train: prior.kind selfie without model.selfie_init: the selfie network has "
              "random weights (convert them with scripts/convert_selfie_prior.py)",
              file=sys.stderr)
    if cfg.stage == 1:
        if m.prior_init:
            load_prior_encoder(model, m.prior_init)
        elif model.human_prior is not None and not m.init:
            print("hcdp train: stage 1 without model.prior_init: the prior encoder stays at its "
                  "random initialisation and is frozen (run stage 0 first)", file=sys.stderr)
        if m.backbone:
            print(f"hcdp train: encoder from {m.backbone}: "
                  f"{load_backbone(model.encoder, m.backbone)}",
                  file=sys.stderr)
    if cfg.stage == 2 and model.temporal_blocks is None:
        model.insert_temporal_blocks(m.temporal_mode)
    if cfg.stage == 2 and m.fused_temporal and model.fused_temporal is None:
        model.insert_fused_temporal_block()
    prepare(model, cfg)
    return model


def prepare(model: HCDPModel, cfg: TrainConfig) -> HCDPModel:
    """Set the temporal mode and freeze what the stage does not train.

    Also applied after loading a checkpoint.
    """
    model.requires_grad_(True)
    if cfg.stage == 0:
        model.requires_grad_(False)
        model.human_prior.encoder.requires_grad_(True)
        return model
    model.freeze_prior_encoder()
    if cfg.stage == 1:
        # Stage 1 sees single frames: trained there, the temporal blocks would learn a per-frame
        # role (issue 17). A stage-1 run from a stage-2 model (`model.init`) keeps them as is.
        for block in (model.temporal_blocks, model.fused_temporal):
            if block is not None:
                block.requires_grad_(False)
    if cfg.stage == 2:
        model.set_temporal_mode(cfg.model.temporal_mode)
    if cfg.stage == 2 or cfg.optim.freeze_encoder:
        model.encoder.requires_grad_(False)
    return model


def swap_prior(model: HCDPModel, kind: str) -> HCDPModel:
    """Rebuild `model` with prior.kind `kind`, keeping every weight the new model has room for.

    Kept: everything outside the prior, and (between learned and learned_selfie) our prior CNN
    with its psi columns. Zero: the new psi columns (all of psi for -> selfie) and the fusion
    phi's input column for the selfie person map (dropped when going back), so F_DPT, depth and
    normals are unchanged until trained (-> learned_selfie, and back) or lose only what the old
    prior added (-> selfie). The mask changes at once: mask_gain starts at 1
    (HCDPModel.predict). The selfie network's weights come from model.selfie_init.
    """
    old_kind = model.cfg.prior.kind
    cfg = ModelConfig.from_dict(model.cfg.to_dict())
    cfg.prior.kind = kind
    new = HCDPModel(cfg).to(next(model.parameters()).device)
    old_state = model.state_dict()
    ours = ("learned", "learned_selfie")  # kinds whose z starts with our CNN's embedding
    keep_psi = old_kind in ours and kind in ours
    with torch.no_grad():
        for name, tensor in new.state_dict().items():
            source = old_state.get(name)
            if name.startswith("human_prior.psi."):
                tensor.zero_()
                if keep_psi and source is not None and source.dim() == 1:
                    tensor.copy_(source)  # the bias
                elif keep_psi and source is not None:
                    cols = cfg.prior.embed_dim  # our CNN's z comes first
                    tensor[:, :cols] = source[:, :cols]
            elif name.startswith("human_prior."):
                if source is not None and source.shape == tensor.shape:
                    tensor.copy_(source)
            elif source is None:
                raise ConfigError(f"model.prior_kind: {name} has no counterpart in model.init")
            elif name == "fusion.layers.0.weight" and source.shape != tensor.shape:
                shared = min(source.shape[1], tensor.shape[1])  # the person channel comes last
                tensor.zero_()
                tensor[:, :shared] = source[:, :shared]
            else:
                tensor.copy_(source)
    return new


def load_selfie_prior(model: HCDPModel, path: str) -> None:
    """Load the converted selfie segmentation weights into the prior's selfie network (frozen)."""
    prior = model.human_prior
    if prior is None or prior.selfie is None:
        raise ConfigError(f"model.selfie_init {path}: the model's prior.kind "
                          f"{model.cfg.prior.kind!r} has no selfie network (expected one of "
                          f"{SELFIE_KINDS})")
    from safetensors.torch import load_file

    try:
        prior.selfie.load_state_dict(load_file(path), strict=True)
    except (RuntimeError, OSError) as err:
        raise ConfigError(f"model.selfie_init {path}: not the converted selfie segmentation "
                          f"weights (scripts/convert_selfie_prior.py): {err}") from err
    prior.selfie.freeze()


def load_prior_encoder(model: HCDPModel, path: str) -> None:
    """Copy `human_prior.encoder.*` from a (stage-0) checkpoint into `model`."""
    source = load_checkpoint(path)
    if model.human_prior is None or source.human_prior is None:
        raise ConfigError(f"model.prior_init {path}: both models need a human prior (prior.kind "
                          "not 'none')")
    if model.human_prior.encoder is None or source.human_prior.encoder is None:
        raise ConfigError(f"model.prior_init {path}: prior.kind selfie has no stage-0 encoder "
                          "(its network comes from model.selfie_init)")
    try:
        model.human_prior.encoder.load_state_dict(source.human_prior.encoder.state_dict())
    except RuntimeError as err:
        raise ConfigError(f"model.prior_init {path}: its prior encoder does not fit this model's "
                          f"prior config ({err})") from err


def param_groups(model: HCDPModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Named AdamW groups of the trainable parameters with their base learning rates.

    Empty groups are dropped. A group whose learning rate is 0 is frozen, not just dropped: its
    parameters get requires_grad False here (no gradient is computed for them), so call this
    once, on the model that trains.
    """
    o = cfg.optim
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if cfg.stage == 0:
        special, special_lr, name = [], 0.0, ""
    elif cfg.stage == 1:
        special, special_lr, name = list(model.encoder.parameters()), o.lr_encoder, "encoder"
    else:
        special = list(model.temporal_blocks.parameters())
        special_lr, name = o.lr_temporal, "temporal"
    special_ids = {id(p) for p in special}
    groups = [{"name": name, "params": [p for p in special if id(p) in trainable],
               "lr": special_lr}]
    if cfg.stage == 1 and o.lr_decoder is not None:
        decoder = [p for p in model.decoder_parameters() if id(p) in trainable]
        groups.append({"name": "decoder", "params": decoder, "lr": o.lr_decoder})
        special_ids |= {id(p) for p in decoder}
    if cfg.stage == 2 and model.fused_temporal is not None:
        fused = list(model.fused_temporal.parameters())
        lr = o.lr_temporal if o.lr_fused_temporal is None else o.lr_fused_temporal
        groups.append({"name": "fused_temporal", "lr": lr,
                       "params": [p for p in fused if id(p) in trainable]})
        special_ids |= {id(p) for p in fused}
    if cfg.stage == 2 and o.lr_time_bias is not None:
        biases = {id(block.attn.relative_bias) for block in model.temporal_blocks}
        groups[0]["params"] = [p for p in groups[0]["params"] if id(p) not in biases]
        groups.append({"name": "time_bias", "lr": o.lr_time_bias,
                       "params": [b.attn.relative_bias for b in model.temporal_blocks
                                  if id(b.attn.relative_bias) in trainable]})
    others = [p for p in model.parameters() if id(p) in trainable and id(p) not in special_ids]
    groups.append({"name": "others", "params": others, "lr": o.lr_others})
    for g in groups:  # a learning rate of 0 freezes: no gradient is computed for those weights
        if g["lr"] == 0:
            for p in g["params"]:
                p.requires_grad_(False)
    return [g for g in groups if g["params"] and g["lr"] != 0]


def prior_loss(canonical: torch.Tensor, mask_logits: torch.Tensor, batch: Batch,
               cfg: LossConfig) -> tuple[
        torch.Tensor, dict[str, torch.Tensor]]:
    """Stage-0 objective (ours; the paper uses a pretrained CSE).

    L1 of the canonical body-surface coordinates [B,3,H,W] (summed over x, y, z) over the GT human
    mask (> mask_threshold), plus the mask term of eq. 10.
    """
    gate = batch["mask"] > cfg.mask_threshold
    err = (canonical.float() - batch["canonical"]).abs().sum(1, keepdim=True)
    l1 = torch.where(gate, err, torch.zeros_like(err)).sum() / gate.sum().clamp_min(1)
    seg = seg_loss(mask_logits, batch["mask"])
    total = l1 + seg
    return total, {"canonical": l1.detach(), "seg": seg.detach(), "total": total.detach()}


class PriorTask(nn.Module):
    """Stage 0: only the prior encoder runs (and is wrapped by DDP)."""

    def __init__(self, model: HCDPModel, cfg: LossConfig) -> None:
        super().__init__()
        self.encoder, self.cfg = model.human_prior.encoder, cfg

    def forward(self, batch: Batch) -> TaskOutput:
        canonical, logits = self.encoder.predict(normalize_float(batch["image"]))
        loss, terms = prior_loss(canonical, logits, batch, self.cfg)
        return loss, terms, {"canonical": canonical, "mask_logits": logits}, batch


class SupervisedTask(nn.Module):
    """Stages 1 and 2 on labelled data: eq. 11 on frames, eq. 14 on clips."""

    def __init__(self, model: HCDPModel, cfg: LossConfig, stage: int, window: int = 0) -> None:
        super().__init__()
        self.model, self.cfg, self.stage, self.window = model, cfg, stage, window or None

    def forward(self, batch: Batch) -> TaskOutput:
        pred = self.model(as_clip(batch["image"]), self.window)
        if self.stage == 1:
            pred = {k: v[:, 0] for k, v in pred.items()}
            loss, terms = stage1_loss(pred, batch, self.cfg)
        else:
            loss, terms = stage2_loss(pred, batch, self.cfg)
        return loss, terms, pred, batch


def make_task(model: HCDPModel, cfg: TrainConfig) -> nn.Module:
    if cfg.stage == 0:
        return PriorTask(model, cfg.loss)
    if cfg.self_supervised:
        return SelfSupervisedTask(model, cfg)
    return SupervisedTask(model, cfg.loss, cfg.stage, cfg.model.window)
