"""A real-trained person network as a frozen torch module: MediaPipe selfie segmentation.

`SelfiePrior` re-implements, layer by layer, the graph of `selfie_segmentation.tflite` (the
general 256x256 model, Apache-2.0) that the mediapipe 0.10.14 wheel ships in
mediapipe/modules/selfie_segmentation/ (sha256 `SOURCE_SHA256`). The model was trained on real
photographs, unlike our own prior encoder (hcdp_model/prior.py), which has only seen our renders.
scripts/convert_selfie_prior.py turns the .tflite into a safetensors file of this module's
state_dict; `SelfiePrior.from_safetensors` loads it. This module reads no file at import and
imports only torch (safetensors only inside from_safetensors).

The graph (inspected with the `tflite` flatbuffer reader; float16 weights dequantised to float32)
is a MobileNetV3-small-like encoder with an LR-ASPP-like head and a three-stage decoder:

    input RGB in [0, 1], [B,3,256,256] (MediaPipe: ImageToTensor, float range 0..1; the model
    metadata: mean 0, std 255 on 0..255 RGB)
    stem      conv 3x3/2 3->16, hard-swish                              -> skip2 [B,16,H/2]
    block1    1x1 16->16 relu, dw 3x3/2 relu, SE(16->8->16), 1x1 16->16 -> skip4 [B,16,H/4]
    block2    1x1 16->72 relu, dw 3x3/2 relu, 1x1 72->24
    block3    1x1 24->88 relu, dw 3x3 relu, 1x1 88->24, + residual      -> skip8 [B,24,H/8]
    block4    1x1 24->96 hs, dw 5x5/2 hs, SE(96->24->96), 1x1 96->32
    block5-8  1x1 32->{128,128,96,96} hs, dw 5x5 hs, SE, 1x1 ->32, + residual   [B,32,H/16]
    head      relu(1x1 32->128) * sigmoid(1x1 32->128 (global mean)), bilinear x2,
              1x1 128->24                                               -> [B,24,H/8]
    dec8/4/2  per stage (skip s, upsampled u): g = sigmoid(1x1(relu(1x1(mean(s + u))))),
              x = relu(1x1(s * g + u)), x = x + relu(dw 3x3(x)); then (dec8, dec4) bilinear x2
              and 1x1 to the next skip's width
    segment   MediaPipe's custom op Convolution2DTransposeBias: transposed conv 2x2/2 16->1
              with bias (options: padding SAME, stride 2x2), then sigmoid -> [B,1,H,W]

Convolutions use TensorFlow's SAME padding (asymmetric for stride 2: the extra row/column goes
at the bottom/right), reproduced with explicit F.pad. Bilinear resizes are TFLite's
RESIZE_BILINEAR with half_pixel_centers=True, align_corners=False, which for an exact x2 equals
torch's bilinear with align_corners=False. The SE "mean" is AVERAGE_POOL_2D with a VALID window
equal to the whole map.

Feature map for the prior (the second output): `feature="dec8"` (default) is the 1/8-resolution
decoder stage's output, [B,24,H/8,W/8], the same grid as our PriorEncoder's z; `"dec4"` is
[B,16,H/4,W/4] and `"dec2"` [B,16,H/2,W/2], the latter being the last features before the
output transposed conv.

Other input sizes: the .tflite graph itself is fixed at 256x256 (its pool windows and resize
sizes are constants; ai-edge-litert refuses to run it resized to 320x192). This module computes
the pools as global means and the resizes as exact x2, which equals the graph at 256x256 and is
the natural extension for any H, W divisible by 32; at other sizes there is no runtime to
compare it against.

Parity (tests/model/test_selfie_prior.py, against ai-edge-litert 2.3.0): max |p - p_tflite|
6e-5 over three skimage photos and noise (float32 rounding: float64 torch is as far from both);
mediapipe 0.10.14's own solution graph on a 256x256 astronaut: 1.8e-5. What the model is good
at: a person filling a good part of a selfie-like frame. It labels most of a cat photo as person
(skimage chelsea: 93%) and finds small, distant pedestrians poorly (vtest.avi IoU ~0.25 against
background subtraction), so as a prior it is a foreground cue more than a person detector.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

SOURCE_SHA256 = "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
SOURCE_FILE = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
SOURCE_PACKAGE = "mediapipe==0.10.14"
SOURCE_LICENSE = "Apache-2.0"
INPUT_SIZE = 256
FEATURES = {"dec8": (24, 8), "dec4": (16, 4), "dec2": (16, 2)}  # name: (channels, stride)
NUM_PARAMETERS = 106_401  # the .tflite graph's float16 weights and biases, element count


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Pad [B,C,H,W] as TensorFlow SAME does for a square kernel (extra row/column at the end)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: W then H
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class SameConv(nn.Conv2d):
    """Conv2d (dense or depthwise), TensorFlow SAME padding: [B,Cin,H,W] -> [B,Cout,H/s,W/s]."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1,
                 depthwise: bool = False) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=0,
                         groups=cin if depthwise else 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_same_pad(x, self.kernel_size[0], self.stride[0]))


class SqueezeExcite(nn.Module):
    """x * sigmoid(expand(relu(reduce(mean(x))))) on [B,C,H,W] (the global mean keeps dims)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.expand(F.relu(self.reduce(x.mean((2, 3), keepdim=True)))))
        return x * gate


class InvertedResidual(nn.Module):
    """MobileNetV3 block [B,Cin,H,W] -> [B,Cout,H/s,W/s].

    1x1 expand, act, kxk depthwise, act, optional SE, 1x1 project (linear), + input when the
    shape is kept.
    """

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int,
                 se_hidden: int | None, hard_swish: bool) -> None:
        super().__init__()
        self.expand = SameConv(cin, hidden)
        self.depthwise = SameConv(hidden, hidden, kernel, stride, depthwise=True)
        self.se = SqueezeExcite(hidden, se_hidden) if se_hidden else None
        self.project = SameConv(hidden, cout)
        self.act = F.hardswish if hard_swish else F.relu
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.depthwise(self.act(self.expand(x))))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return y + x if self.residual else y


class SegmentationHead(nn.Module):
    """LR-ASPP-like head [B,32,H/16,W/16] -> [B,24,H/8,W/8].

    relu(1x1) gated by a sigmoid of a 1x1 conv of the global mean, bilinear x2, 1x1 to the skip's
    width.
    """

    def __init__(self, cin: int = 32, hidden: int = 128, cout: int = 24) -> None:
        super().__init__()
        self.branch = nn.Conv2d(cin, hidden, 1)
        self.gate = nn.Conv2d(cin, hidden, 1)
        self.out = nn.Conv2d(hidden, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.branch(x)) * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True)))
        return self.out(_up2(y))


class DecoderStage(nn.Module):
    """Fuse skip s and upsampled u, both [B,C,h,w] -> [B,C,h,w] (then optionally x2 + 1x1).

    g = sigmoid(SE convs of mean(s + u)); x = relu(1x1(s * g + u)); x = x + relu(dw3x3(x)).
    With `cout`, `up(x)` returns the 1x1 conv of its bilinear x2 upsampling [B,cout,2h,2w].
    """

    def __init__(self, channels: int, cout: int | None) -> None:
        super().__init__()
        self.se_reduce = nn.Conv2d(channels, channels, 1)
        self.se_expand = nn.Conv2d(channels, channels, 1)
        self.fuse = nn.Conv2d(channels, channels, 1)
        self.refine = SameConv(channels, channels, 3, depthwise=True)
        self.next = nn.Conv2d(channels, cout, 1) if cout else None

    def forward(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        pooled = (skip + up).mean((2, 3), keepdim=True)
        gate = torch.sigmoid(self.se_expand(F.relu(self.se_reduce(pooled))))
        x = F.relu(self.fuse(skip * gate + up))
        return x + F.relu(self.refine(x))

    def up(self, x: torch.Tensor) -> torch.Tensor:
        assert self.next is not None
        return self.next(_up2(x))


def _up2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 of [B,C,H,W], half-pixel centres (TFLite RESIZE_BILINEAR, half_pixel=True)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class SelfiePrior(nn.Module):
    """MediaPipe selfie segmentation (general) as a frozen module.

    forward(image [B,3,H,W] RGB in [0,1], H and W divisible by 32; the graph's own size is 256)
    -> (person probability [B,1,H,W] in [0,1], features [B,C,H/s,W/s]) with (C, s) =
    FEATURES[feature]: dec8 (24, 8), dec4 (16, 4), dec2 (16, 2). `embed_dim` is C.
    """

    def __init__(self, feature: str = "dec8") -> None:
        super().__init__()
        if feature not in FEATURES:
            raise ValueError(f"feature must be one of {sorted(FEATURES)}, not {feature!r}")
        self.feature = feature
        self.embed_dim = FEATURES[feature][0]
        self.stem = SameConv(3, 16, 3, 2)
        self.block1 = InvertedResidual(16, 16, 16, 3, 2, 8, hard_swish=False)
        self.block2 = InvertedResidual(16, 72, 24, 3, 2, None, hard_swish=False)
        self.block3 = InvertedResidual(24, 88, 24, 3, 1, None, hard_swish=False)
        self.block4 = InvertedResidual(24, 96, 32, 5, 2, 24, hard_swish=True)
        self.block5 = InvertedResidual(32, 128, 32, 5, 1, 32, hard_swish=True)
        self.block6 = InvertedResidual(32, 128, 32, 5, 1, 32, hard_swish=True)
        self.block7 = InvertedResidual(32, 96, 32, 5, 1, 24, hard_swish=True)
        self.block8 = InvertedResidual(32, 96, 32, 5, 1, 24, hard_swish=True)
        self.head = SegmentationHead(32, 128, 24)
        self.dec8 = DecoderStage(24, 16)
        self.dec4 = DecoderStage(16, 16)
        self.dec2 = DecoderStage(16, None)
        # MediaPipe's Convolution2DTransposeBias: 2x2 stride 2, SAME (no padding at H/2 -> H)
        self.segment = nn.ConvTranspose2d(16, 1, 2, stride=2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.forward_features(image)
        return torch.sigmoid(feats["logits"]), feats[self.feature]

    def forward_features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return every exposed map of image [B,3,H,W].

        dec8 [B,24,H/8,W/8], dec4 [B,16,H/4,W/4], dec2 [B,16,H/2,W/2] and the output logits
        [B,1,H,W] (before the sigmoid).
        """
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an RGB batch [B,3,H,W], got {tuple(image.shape)}")
        if image.shape[-2] % 32 or image.shape[-1] % 32:
            raise ValueError(f"H and W must be divisible by 32, got {tuple(image.shape[-2:])}")
        skip2 = F.hardswish(self.stem(image))
        skip4 = self.block1(skip2)
        skip8 = self.block3(self.block2(skip4))
        x = self.block4(skip8)
        for block in (self.block5, self.block6, self.block7, self.block8):
            x = block(x)
        dec8 = self.dec8(skip8, self.head(x))
        dec4 = self.dec4(skip4, self.dec8.up(dec8))
        dec2 = self.dec2(skip2, self.dec4.up(dec4))
        return {"dec8": dec8, "dec4": dec4, "dec2": dec2, "logits": self.segment(dec2)}

    @classmethod
    def from_safetensors(cls, path: str | Path, feature: str = "dec8") -> SelfiePrior:
        """Build the module with the converted weights of `path`, frozen (eval, no grad)."""
        from safetensors.torch import load_file

        model = cls(feature)
        model.load_state_dict(load_file(str(path)), strict=True)
        return model.freeze()

    def freeze(self) -> SelfiePrior:
        """Set eval mode and requires_grad False on every parameter (the prior stays fixed)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self


# state_dict prefix -> the .tflite layer whose "<name>/Kernel" and "<name>/Bias" fill it
TFLITE_LAYERS: dict[str, str] = {
    "stem": "conv2d",
    "block1.expand": "conv2d_1",
    "block1.depthwise": "depthwise_conv2d",
    "block1.se.reduce": "conv2d_2",
    "block1.se.expand": "conv2d_3",
    "block1.project": "conv2d_4",
    "block2.expand": "conv2d_5",
    "block2.depthwise": "depthwise_conv2d_1",
    "block2.project": "conv2d_6",
    "block3.expand": "conv2d_7",
    "block3.depthwise": "depthwise_conv2d_2",
    "block3.project": "conv2d_8",
    **{
        f"block{b}.{part}": name
        for b, first, dw in ((4, 9, 3), (5, 13, 4), (6, 17, 5), (7, 21, 6), (8, 25, 7))
        for part, name in (
            ("expand", f"conv2d_{first}"),
            ("depthwise", f"depthwise_conv2d_{dw}"),
            ("se.reduce", f"conv2d_{first + 1}"),
            ("se.expand", f"conv2d_{first + 2}"),
            ("project", f"conv2d_{first + 3}"),
        )
    },
    "head.branch": "conv2d_29",
    "head.gate": "conv2d_30",
    "head.out": "conv2d_31",
    **{
        f"{stage}.{part}": name
        for stage, first, dw in (("dec8", 32, 8), ("dec4", 36, 9), ("dec2", 40, 10))
        for part, name in (
            ("se_reduce", f"conv2d_{first}"),
            ("se_expand", f"conv2d_{first + 1}"),
            ("fuse", f"conv2d_{first + 2}"),
            ("refine", f"depthwise_conv2d_{dw}"),
        )
    },
    "dec8.next": "conv2d_35",
    "dec4.next": "conv2d_39",
    "segment": "segment",
}
