"""The streaming predictor: one camera frame in, one `Prediction` at the camera resolution out.

`StreamingPredictor` runs any runtime `Backend` (hcdp_model.backends) with preprocessing, the cache
reset rules and postprocessing; `load_predictor` opens a checkpoint or an exported artefact for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import time

import numpy as np
import torch

from .backends.base import (Backend, DEFAULT_BACKEND, DEFAULT_DEVICE, DEFAULT_PRECISION,
                            DEFAULT_WINDOW)
from .backends.build import open_backend
from .backends.torch_eager import TorchBackend
from .heads import unit
from .model import HCDPModel
from .preprocess import check_image, preprocess, unpreprocess


@dataclass
class Prediction:
    depth: np.ndarray    # [H,W] float32, relative, >= 0, larger = farther, input resolution
    normals: np.ndarray  # [H,W,3] float32 unit, camera optical frame
    mask: np.ndarray     # [H,W] float32 in [0,1]
    reset: bool          # the temporal cache was reset before this frame
    window_fill: int     # frames in the temporal cache after this frame (1..window)
    inference_ms: float
    reset_reason: str | None = None


class StreamingPredictor:
    """Feeds frames one at a time through a causal model.

    Reset rules: stamp going backwards, a gap above `max_gap_s`, a frame_id change, an image size
    change (and the first frame).

    `model` is an HCDPModel (run by the torch backend with `window`/`device`/`precision`, default
    16/cpu/fp32) or any runtime `Backend` (hcdp_model.backends), which brings its own window,
    device and precision: values given here must then match it.
    """

    def __init__(self, model: HCDPModel | Backend, window: int | None = None,
                 device: str | None = None, precision: str | None = None,
                 max_gap_s: float = 0.5) -> None:
        if isinstance(model, Backend):
            asked = {"window": window, "device": None if device is None else torch.device(device),
                     "precision": precision}
            wrong = [f"{k} {v} (the backend has {getattr(model, k)})" for k, v in asked.items()
                     if v is not None and v != getattr(model, k)]
            if wrong:
                raise ValueError(f"backend {model.describe()} does not match the requested "
                                 f"{', '.join(wrong)}")
            self.backend = model
        else:
            self.backend = TorchBackend(model, DEFAULT_WINDOW if window is None else window,
                                        device or DEFAULT_DEVICE, precision or DEFAULT_PRECISION)
        self.device = self.backend.device
        self.dtype = self.backend.input_dtype
        self.precision = self.backend.precision
        self.window = self.backend.window
        self.resolution = self.backend.resolution
        self.max_gap_s = max_gap_s
        self._state: tuple[torch.Tensor, ...] | None = None
        self._fill = 0
        self._last: tuple[float, str, tuple[int, int]] | None = None

    def reset(self) -> None:
        self._state = None
        self._fill = 0
        self._last = None

    def reset_reason(self, stamp: float, frame_id: str, size: tuple[int, int]) -> str | None:
        if self._last is None:
            return "first frame"
        last_stamp, last_id, last_size = self._last
        if stamp < last_stamp:
            return f"time went backwards ({last_stamp:.3f} -> {stamp:.3f} s)"
        if stamp - last_stamp > self.max_gap_s:
            return f"gap of {stamp - last_stamp:.3f} s > max_gap_s {self.max_gap_s}"
        if frame_id != last_id:
            return f"frame_id changed ({last_id!r} -> {frame_id!r})"
        if size != last_size:
            return f"image size changed ({last_size[1]}x{last_size[0]} -> {size[1]}x{size[0]})"
        return None

    @torch.inference_mode()
    def step(self, image: np.ndarray, stamp: float, frame_id: str = "",
             encoding: str = "rgb8") -> Prediction:
        check_image(image, encoding)
        size = image.shape[:2]
        reason = self.reset_reason(stamp, frame_id, size)
        if reason is not None:
            self._state = self.backend.init_state()
            self._fill = 0
        self._last = (stamp, frame_id, size)
        start = time.perf_counter()
        x, box = preprocess(image, self.resolution, encoding, device=self.device, dtype=self.dtype)
        (depth, normal, mask_logits), self._state = self.backend.step(x, self._state)
        self._fill = min(self._fill + 1, self.window)
        outputs = torch.cat([depth, normal, mask_logits], dim=1).float()
        maps = unpreprocess(outputs, box)[0]  # [5,H,W]
        depth_map, normals, mask = host_maps(maps)
        elapsed = (time.perf_counter() - start) * 1e3
        return Prediction(depth=depth_map, normals=normals, mask=mask, reset=reason is not None,
                          window_fill=self._fill, inference_ms=elapsed, reset_reason=reason)


def host_maps(maps: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-resolution maps [5,H,W] (depth, normal xyz, mask logit) -> contiguous float32 arrays.

    depth [H,W] >= 0, unit normals [H,W,3], mask [H,W] in [0,1]. The three are written into one
    packed buffer on the maps' device, so a GPU needs one device->host copy (into pinned memory);
    on the CPU the buffer is the result (no extra copy).
    """
    _, h, w = maps.shape
    n = h * w
    packed = maps.new_empty(5 * n)
    torch.clamp_min(maps[0], 0, out=packed[:n].view(h, w))
    packed[n:4 * n].view(h, w, 3).copy_(unit(maps[1:4], dim=0).permute(1, 2, 0))
    torch.sigmoid(maps[4], out=packed[4 * n:].view(h, w))
    if packed.device.type == "cuda":
        host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        torch.cuda.current_stream(packed.device).synchronize()
        packed = host
    flat = packed.numpy()
    return flat[:n].reshape(h, w), flat[n:4 * n].reshape(h, w, 3), flat[4 * n:].reshape(h, w)


def default_checkpoint() -> Path:
    """Return the bundled default model.

    data/models/default in a source checkout, else the ROS share dir.
    """
    here = Path(__file__).resolve().parent.parent / "data" / "models" / "default"
    if here.is_dir():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory  # only on ROS machines
        return Path(get_package_share_directory(ament_package())) / "models" / "default"
    except (ImportError, LookupError):
        return here


def ament_package() -> str:
    """Name the ROS package that installed this one, found from the installed metadata.

    Its distribution, e.g. the ament_python package whose share directory holds the bundled model;
    found from the metadata so that this package names none of its users.
    """
    from importlib.metadata import packages_distributions

    return packages_distributions().get(__name__.split(".")[0], [""])[0]


def load_predictor(checkpoint: str | Path | None = None, window: int = DEFAULT_WINDOW,
                   device: str = DEFAULT_DEVICE, precision: str = DEFAULT_PRECISION,
                   backend: str = DEFAULT_BACKEND, max_gap_s: float = 0.5,
                   trust_artefact: bool = False) -> StreamingPredictor:
    """Load a checkpoint (None: the bundled default) into a StreamingPredictor on `backend`.

    `backend`: torch, onnxruntime or tensorrt; see hcdp_model.backends.build.open_backend.
    `checkpoint` may also be an artefact written by `hcdp export` (.onnx, .pt2, .ep) for the
    matching backend; a .pt2/.ep this machine did not build loads only with `trust_artefact`
    (docs/security.md).
    """
    runtime = open_backend(default_checkpoint() if checkpoint is None else checkpoint,
                           backend=backend,
                           window=window, device=device, precision=precision,
                           trust_artefact=trust_artefact)
    return StreamingPredictor(runtime, max_gap_s=max_gap_s)
