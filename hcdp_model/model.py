"""HCDPModel: the paper's Figure 2.

    frames --E_DINO--> 4 token maps --reassemble--> 4 scales --temporal blocks-->
        --DPT fusion--> F_DPT
    F_DPT + psi(z_prior) --neck, upsample--> [ . , E_CNN(x)] --phi--> (fused temporal block)
        --> CWA --> depth / normal / mask heads
The fused temporal block (`temporal.fused`, not in the paper; temporal.FusedTemporalBlock) steadies
what the per-frame paths (prior, CNN branch) bring in after the DPT-scale blocks.
With `decoder.depth_head: depth_anything` the depth head is Depth Anything V2's, reading F'_DPT
(plus a zero-initialised input from the CWA features); see heads.py.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import nn
import torch.nn.functional as F

from .backbone import VisionTransformer
from .config import ModelConfig
from .dpt import Fusion, Reassemble
from .fusion import ChannelWeightAdaptation, CNNBranch, FeatureFusion
from .heads import Heads
from .prior import HumanPrior
from .temporal import FusedTemporalBlock, TemporalBlock

Outputs = dict[str, torch.Tensor]


class Side(NamedTuple):
    """What `fuse` hands `predict` besides the fused features."""

    f_dpt: torch.Tensor  # F'_DPT (for the depth_anything head)
    person_logits: torch.Tensor | None  # a selfie prior's person logits [N,1,S,S], else None


class HCDPModel(nn.Module):

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        features, fc = cfg.decoder.features, cfg.fusion
        self.encoder = VisionTransformer(cfg.backbone, cfg.resolution)
        self.reassemble = Reassemble(cfg.backbone.embed_dim, cfg.decoder)
        self.temporal_blocks = (nn.ModuleList([TemporalBlock(features, cfg.temporal)
                                               for _ in range(4)])
                                if cfg.temporal.enabled else None)
        self.dpt_fusion = Fusion(cfg.decoder)
        self.human_prior = HumanPrior(cfg.prior, features) if cfg.prior.kind != "none" else None
        self.neck = nn.Conv2d(features, fc.channels, 1)
        self.cnn_branch = CNNBranch(fc.cnn_channels) if fc.cnn_branch else None
        person = self.human_prior.person_channels if self.human_prior is not None else 0
        self.fusion = FeatureFusion(fc.channels + (fc.cnn_channels if fc.cnn_branch else 0)
                                    + person, fc.channels)
        self.fused_temporal = (FusedTemporalBlock(fc.channels, cfg.temporal)
                               if cfg.temporal.enabled and cfg.temporal.fused else None)
        self.cwa = (ChannelWeightAdaptation(fc.channels, fc.cwa_reduction) if fc.cwa
                    else nn.Identity())
        self.heads = Heads(fc.channels, fc.head_channels, cfg.decoder.depth_head, features)

    # -- the two per-frame halves; the temporal blocks run between them ---------------------------
    def encode(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Normalised frames [N,3,S,S] -> 4 reassembled scales [N, features, 4g|2g|g|g/2, ...]."""
        return self.reassemble(self.encoder(frames))

    def decode(self, frames: torch.Tensor, scales: list[torch.Tensor]) -> Outputs:
        return self.predict(*self.fuse(frames, scales))

    def fuse(self, frames: torch.Tensor, scales: list[torch.Tensor]) -> tuple[torch.Tensor, Side]:
        """Frames [N,3,S,S] and the 4 scales -> fused features [N,C,S,S] and what the heads add.

        Side: F_DPT (eq. 5) and, with a selfie prior, its person logits [N,1,S,S].
        """
        f_dpt, person = self.dpt_fusion(scales), None
        if self.human_prior is not None:
            z_tilde, person = self.human_prior(frames, f_dpt.shape[-2:])
            f_dpt = f_dpt + z_tilde
        parts = [F.interpolate(self.neck(f_dpt), size=frames.shape[-2:], mode="bilinear",
                               align_corners=False)]
        if self.cnn_branch is not None:
            parts.append(self.cnn_branch(frames))
        if person is not None:  # a selfie prior: its full-resolution person probability
            parts.append(torch.sigmoid(person))
        fused = self.fusion(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
        return fused, Side(f_dpt, person)

    def predict(self, fused: torch.Tensor, side: Side) -> Outputs:
        """Fused features (after the fused temporal block, if any) -> CWA -> the three heads.

        With a selfie prior the mask is a correction of its person logits:
        mask_logits = head + mask_gain * person_logits.
        """
        out = self.heads(self.cwa(fused), side.f_dpt)
        if side.person_logits is not None:
            out["mask_logits"] = (out["mask_logits"]
                                  + self.human_prior.mask_gain * side.person_logits)
        return out

    def forward(self, clip: torch.Tensor, window: int | None = None) -> Outputs:
        """Clip [B,T,3,S,S] (normalised, see preprocess.py) -> depth, normal, mask_logits.

        Shapes: depth [B,T,1,S,S], normal [B,T,3,S,S], mask_logits [B,T,1,S,S]. `window` limits
        causal temporal attention to the last W frames.
        """
        if clip.ndim != 5 or clip.shape[2] != 3:
            raise ValueError(f"expected a clip [B,T,3,H,W], got shape {tuple(clip.shape)}")
        s = self.cfg.resolution
        if clip.shape[-2:] != (s, s):
            raise ValueError(f"expected frames of {s}x{s} (the model resolution; use "
                             f"preprocess()), got {clip.shape[-2]}x{clip.shape[-1]}")
        b, t = clip.shape[:2]
        frames = clip.flatten(0, 1)
        scales = self.encode(frames)
        if self.temporal_blocks is not None:
            scales = [block(x.unflatten(0, (b, t)), window).flatten(0, 1)
                      for block, x in zip(self.temporal_blocks, scales)]
        fused, side = self.fuse(frames, scales)
        if self.fused_temporal is not None:
            fused = self.fused_temporal(fused.unflatten(0, (b, t)), window).flatten(0, 1)
        return {name: y.unflatten(0, (b, t)) for name, y in self.predict(fused, side).items()}

    def scale_sizes(self) -> list[int]:
        """Side lengths of the 4 reassembled scales: 4g, 2g, g and ceil(g/2) for patch grid g."""
        g = self.cfg.grid
        return [4 * g, 2 * g, g, (g + 1) // 2]

    # -- stage transitions ------------------------------------------------------------------------
    def insert_temporal_blocks(self, mode: str | None = None) -> None:
        """Stage 2: add zero-initialised temporal blocks.

        Predictions are unchanged until trained.
        """
        if mode is not None:
            self.cfg.temporal.mode = mode
        self.cfg.temporal.enabled = True
        self.cfg.temporal.validate()
        ref = next(self.parameters())
        self.temporal_blocks = nn.ModuleList(
            [TemporalBlock(self.cfg.decoder.features, self.cfg.temporal)
             for _ in range(4)]).to(ref.device)

    def insert_fused_temporal_block(self) -> None:
        """Add the zero-initialised fused temporal block (an identity until trained)."""
        if self.temporal_blocks is None:
            raise ValueError("the fused temporal block needs the DPT-scale temporal blocks (a "
                             "stage-2 model); this model has none")
        self.cfg.temporal.fused = True
        self.cfg.validate()
        ref = next(self.parameters())
        self.fused_temporal = FusedTemporalBlock(self.cfg.fusion.channels,
                                                 self.cfg.temporal).to(ref.device)

    def set_selfie_zooms(self, zooms: tuple[float, ...]) -> None:
        """Run the selfie network at these scales (prior.selfie_zooms; same weights)."""
        if self.human_prior is None or self.human_prior.selfie is None:
            raise ValueError("this model has no selfie prior (prior.kind selfie or "
                             "learned_selfie)")
        zooms = tuple(float(z) for z in zooms)
        dataclasses.replace(self.cfg.prior, selfie_zooms=zooms).validate()
        self.cfg.prior.selfie_zooms = zooms
        self.human_prior.zooms = zooms

    def set_fused_window(self, frames: int) -> None:
        """Let the fused temporal block attend over the last `frames` frames.

        Its weights serve any window (the relative time bias is clipped at
        max_relative_distance); the config records the new window.
        """
        if self.fused_temporal is None:
            raise ValueError("this model has no fused temporal block")
        dataclasses.replace(self.cfg.temporal, fused_window=frames).validate()
        self.cfg.temporal.fused_window = frames
        self.fused_temporal.window = frames

    def set_temporal_mode(self, mode: str) -> None:
        """Switch causal <-> bidirectional.

        Weights are shared; only the attention mask differs.
        """
        self.cfg.temporal.mode = mode
        self.cfg.temporal.validate()
        fused = [] if self.fused_temporal is None else [self.fused_temporal]
        for block in [*(self.temporal_blocks or []), *fused]:
            block.causal = mode == "causal"

    def freeze_prior_encoder(self) -> None:
        """Freeze the prior's networks (our stage-0 CNN and/or the selfie network); psi trains."""
        if self.human_prior is not None:
            self.human_prior.freeze_networks()

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Return the parameters of the DPT decoder and (depth_anything layout) of the depth head.

        The DPT decoder (reassemble, fusion) and Depth Anything's depth-head convolutions: what
        `hcdp init-from` maps from a Depth Anything file.
        """
        modules = [self.reassemble, self.dpt_fusion]
        if self.cfg.decoder.depth_head == "depth_anything":
            modules += [self.heads.depth.output_conv1, self.heads.depth.output_conv2]
        return [p for m in modules for p in m.parameters()]

    def block_modules(self) -> dict[str, nn.Module]:
        """Return the named blocks of Figure 2.

        For parameter/GMAC reports and per-group learning rates.
        """
        blocks = {"encoder": self.encoder, "reassemble": self.reassemble,
                  "temporal_blocks": self.temporal_blocks, "dpt_fusion": self.dpt_fusion,
                  "human_prior": self.human_prior, "neck": self.neck,
                  "cnn_branch": self.cnn_branch, "fusion": self.fusion,
                  "fused_temporal": self.fused_temporal, "cwa": self.cwa, "heads": self.heads}
        return {name: m for name, m in blocks.items() if m is not None}
