"""Stand-ins for ROS messages and the streaming predictor, for the ROS-free tests."""
from __future__ import annotations

from dataclasses import dataclass, field
import time
from types import SimpleNamespace

from hcdp_model.predictor import Prediction
import numpy as np


def header(sec: int = 10, nanosec: int = 500_000_000,
           frame_id: str = "camera_optical") -> SimpleNamespace:
    return SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_msg(pixels: np.ndarray, encoding: str, step: int | None = None, hdr=None,
              bigendian: bool = False) -> SimpleNamespace:
    """Return an Image-like message whose rows are padded to ``step`` bytes.

    The default is no padding. Its data is a writable buffer, like rclpy's array('B').
    """
    h, w = pixels.shape[:2]
    row = pixels.reshape(h, -1).view(np.uint8)
    step = row.shape[1] if step is None else step
    data = np.zeros((h, step), dtype=np.uint8)
    data[:, : row.shape[1]] = row
    return SimpleNamespace(header=hdr or header(), height=h, width=w, encoding=encoding,
                           is_bigendian=int(bigendian), step=step, data=bytearray(data.tobytes()))


def compressed_msg(data: bytes, fmt: str = "jpeg", hdr=None) -> SimpleNamespace:
    return SimpleNamespace(header=hdr or header(), format=fmt, data=data)


def camera_info_msg(k: np.ndarray, height: int, width: int) -> SimpleNamespace:
    roi = SimpleNamespace(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return SimpleNamespace(header=header(), height=height, width=width,
                           distortion_model="plumb_bob",
                           d=[0.0] * 5, k=np.asarray(k, dtype=np.float64).reshape(-1),
                           r=np.eye(3).reshape(-1), p=np.hstack([k, np.zeros((3, 1))]).reshape(-1),
                           binning_x=0, binning_y=0, roi=roi)


@dataclass
class FakePredictor:
    """StreamingPredictor's interface with a closed-form output.

    depth = 1 + x/W (farther to the right), mask = 1 in the centre half, normals = (0, 0, -1).
    Records every call; ``delay_s`` simulates a slow model.
    """

    delay_s: float = 0.0
    calls: list[tuple[float, str, str, tuple[int, ...]]] = field(default_factory=list)

    def step(self, image: np.ndarray, stamp: float, frame_id: str = "",
             encoding: str = "rgb8") -> Prediction:
        self.calls.append((stamp, frame_id, encoding, image.shape))
        if self.delay_s:
            time.sleep(self.delay_s)
        h, w = image.shape[:2]
        depth = np.broadcast_to(1.0 + np.arange(w, dtype=np.float32) / w, (h, w)).copy()
        mask = np.zeros((h, w), dtype=np.float32)
        mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1.0
        normals = np.zeros((h, w, 3), dtype=np.float32)
        normals[..., 2] = -1.0
        first = len(self.calls) == 1
        return Prediction(depth=depth, normals=normals, mask=mask, reset=first,
                          window_fill=min(len(self.calls), 16), inference_ms=self.delay_s * 1e3,
                          reset_reason="first frame" if first else None)

    def reset(self) -> None:
        self.calls.clear()
