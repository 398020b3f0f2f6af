"""A micro model with the full structure (every block present) that runs in milliseconds."""
from __future__ import annotations

from hcdp_model.config import (
    BackboneConfig, DecoderConfig, FusionConfig, ModelConfig, PriorConfig, TemporalConfig,
)
from hcdp_model.model import HCDPModel
import torch


def micro_config(temporal: bool = False, mode: str = "causal", family: str = "dinov2",
                 prior: str = "learned") -> ModelConfig:
    patch = 16 if family == "dinov3" else 14
    return ModelConfig(
        preset="micro",
        resolution=4 * patch,
        backbone=BackboneConfig(family=family, embed_dim=32, depth=4, num_heads=2,
                                patch_size=patch,
                                num_register_tokens=4 if family == "dinov3" else 0,
                                intermediate_layers=(0, 1, 2, 3)),
        decoder=DecoderConfig(features=16, out_channels=(8, 16, 16, 32)),
        temporal=TemporalConfig(enabled=temporal, mode=mode, num_heads=2, max_relative_distance=8),
        prior=PriorConfig(kind=prior, embed_dim=8, width=8),
        fusion=FusionConfig(cnn_channels=8, channels=8, head_channels=8),
    ).validate()


def activate_temporal(model: HCDPModel, scale: float = 0.5) -> HCDPModel:
    """Give the zero-initialised temporal output projections (and time biases) non-zero values.

    Then the temporal blocks actually change the output in tests about them.
    """
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in model.temporal_blocks:
            block.proj_out.weight.copy_(torch.randn(block.proj_out.weight.shape,
                                                    generator=g) * scale)
            block.attn.relative_bias.copy_(torch.randn(block.attn.relative_bias.shape,
                                                       generator=g))
    return model


def random_clip(model: HCDPModel, frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    s = model.cfg.resolution
    return torch.randn(batch, frames, 3, s, s, generator=torch.Generator().manual_seed(seed))


def assert_backends_agree(backend, reference, clip: torch.Tensor, atol: float = 1e-6) -> None:
    """Stream `clip` [B,T,3,S,S] through two backends from fresh states; outputs must agree."""
    state, want_state = backend.init_state(), reference.init_state()
    for t in range(clip.shape[1]):
        got, state = backend.step(clip[:, t], state)
        want, want_state = reference.step(clip[:, t], want_state)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=atol, rtol=0)
