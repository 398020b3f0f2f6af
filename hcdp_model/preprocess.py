"""The one preprocessing / unpreprocessing pair used by the model, node, trainer and evaluator.

Any input size or aspect is letterboxed into the square model resolution S: resize keeping the
aspect (longer side -> S), pad the shorter side symmetrically, normalise with the ImageNet mean/std
(the DINO convention; padding is 0 after normalisation, i.e. the mean colour). `unpreprocess` is
the exact geometric inverse: crop the padding, resize back to the input size.
"""
from __future__ import annotations

from dataclasses import dataclass
import functools

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ENCODINGS = ("rgb8", "bgr8", "mono8")


@dataclass(frozen=True)
class Letterbox:
    """Where an in_h x in_w image sits inside the size x size model input."""

    in_h: int
    in_w: int
    size: int
    new_h: int
    new_w: int
    top: int
    left: int

    @classmethod
    def fit(cls, in_h: int, in_w: int, size: int) -> "Letterbox":
        if in_h <= 0 or in_w <= 0:
            raise ValueError(f"expected a non-empty image, got {in_h}x{in_w}")
        scale = size / max(in_h, in_w)
        new_h = min(size, max(1, round(in_h * scale)))
        new_w = min(size, max(1, round(in_w * scale)))
        return cls(in_h, in_w, size, new_h, new_w, (size - new_h) // 2, (size - new_w) // 2)

    def to_model(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input pixel coordinates (pixel centres at integers) -> model-input coordinates."""
        return ((x + 0.5) * self.new_w / self.in_w - 0.5 + self.left,
                (y + 0.5) * self.new_h / self.in_h - 0.5 + self.top)

    def to_input(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ((x - self.left + 0.5) * self.in_w / self.new_w - 0.5,
                (y - self.top + 0.5) * self.in_h / self.new_h - 0.5)


def check_image(image: np.ndarray, encoding: str = "rgb8") -> None:
    """Refuse what is not a non-empty uint8 rgb8/bgr8 (H,W,3) or mono8 (H,W) image.

    The error says what was expected.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"expected encoding {'/'.join(ENCODINGS)}, got {encoding!r}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    want = 2 if encoding == "mono8" else 3
    if image.ndim != want or (want == 3 and image.shape[2] != 3):
        raise ValueError(f"expected a {'HxW' if want == 2 else 'HxWx3'} array for {encoding}, "
                         f"got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {image.shape}")


def to_rgb(image: np.ndarray, encoding: str = "rgb8") -> np.ndarray:
    """uint8 rgb8/bgr8 (H,W,3) or mono8 (H,W) -> RGB (H,W,3) uint8.

    rgb8 is returned without a copy.
    """
    check_image(image, encoding)
    if encoding == "bgr8":
        return image[..., ::-1]
    if encoding == "mono8":
        return np.repeat(image[..., None], 3, axis=2)
    return image


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def letterbox_maps(maps: torch.Tensor, box: Letterbox, mode: str = "bilinear",
                   fill: float = 0.0) -> torch.Tensor:
    """[N,C,in_h,in_w] float maps -> [N,C,S,S], placed exactly where preprocess() puts images."""
    resized = _resize(maps, (box.new_h, box.new_w), mode)
    out = maps.new_full((*maps.shape[:2], box.size, box.size), fill)
    out[..., box.top:box.top + box.new_h, box.left:box.left + box.new_w] = resized
    return out


def upload(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 array (any strides) -> tensor on `device`.

    To a GPU through one pinned staging buffer (the one host copy also makes it contiguous; the
    transfer is asynchronous); elsewhere a view of the array when it can be one.
    """
    if device.type == "cuda":
        staging = torch.empty(images.shape, dtype=torch.uint8, pin_memory=True)
        np.copyto(staging.numpy(), images)
        return staging.to(device, non_blocking=True)
    if not images.flags.writeable:  # e.g. a view of an immutable bytes buffer
        images = images.copy()
    return torch.from_numpy(np.ascontiguousarray(images))


@functools.lru_cache(maxsize=16)
def _normalisation(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ImageNet mean and std x 255 as [1,3,1,1] on `device`.

    Made once, not uploaded per frame.
    """
    with torch.inference_mode(False), torch.no_grad():
        mean = torch.tensor(IMAGENET_MEAN, dtype=dtype).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD, dtype=dtype).view(1, 3, 1, 1) * 255
        return mean.to(device), std.to(device)


def preprocess(images: np.ndarray | torch.Tensor, size: int, encoding: str = "rgb8",
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
               ) -> tuple[torch.Tensor, Letterbox]:
    """uint8 image(s) in `encoding` -> normalised RGB [N,3,S,S] and its Letterbox.

    Images are (H,W,3) / (N,H,W,3) (or mono8 (H,W) / (N,H,W)). A tensor must be RGB [N,H,W,3].

    The frame is uploaded as it is (bgr8 and mono8 included: no host-side conversion copy) and
    converted, resized and normalised on `device`, so on a GPU the CPU only moves bytes. Channel
    order and grey expansion are applied after the resize, which works per channel, so the result
    is the same as converting first, at model-resolution cost.
    """
    device = torch.device(device)
    channels = 3
    if isinstance(images, np.ndarray):
        single_ndim = 2 if encoding == "mono8" else 3
        if images.ndim == single_ndim + 1:
            for image in images:
                check_image(image, encoding)
        else:
            check_image(images, encoding)  # says what was expected
            images = images[None]
        if encoding == "mono8":
            images, channels = images[..., None], 1
        images = upload(images, device)
    else:
        encoding = "rgb8"
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != channels:
        raise ValueError(f"expected uint8 images [N,H,W,3], got {images.dtype} "
                         f"{tuple(images.shape)}")
    box = Letterbox.fit(images.shape[1], images.shape[2], size)
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).to(dtype)
    # Resizing is linear, so normalising after it gives the same result at model resolution cost.
    x = _resize(x, (box.new_h, box.new_w), "bilinear")
    if encoding == "bgr8":
        x = x.flip(1)
    elif encoding == "mono8":
        x = x.expand(-1, 3, -1, -1)
    mean, std = _normalisation(device, dtype)
    out = x.new_zeros((x.shape[0], 3, size, size))
    out[..., box.top:box.top + box.new_h, box.left:box.left + box.new_w] = (x - mean) / std
    return out, box


def normalize_float(images: torch.Tensor) -> torch.Tensor:
    """Float RGB in [0,1] [...,3,H,W] -> ImageNet-normalised.

    For datasets that already hold floats.
    """
    mean = images.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (images - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation: [...,3,H,W] -> RGB in [0,1]."""
    mean = x.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return x * std + mean


def unpreprocess(maps: torch.Tensor, box: Letterbox, mode: str = "bilinear") -> torch.Tensor:
    """Model-resolution maps [N,C,S,S] -> [N,C,in_h,in_w]: crop the padding, resize back."""
    if maps.shape[-2:] != (box.size, box.size):
        raise ValueError(f"expected maps of {box.size}x{box.size}, got {tuple(maps.shape[-2:])}")
    crop = maps[..., box.top:box.top + box.new_h, box.left:box.left + box.new_w]
    return _resize(crop, (box.in_h, box.in_w), mode)
