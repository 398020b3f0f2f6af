"""The node's output messages as plain dataclasses, built from a Prediction without ROS.

`node.py` turns each dataclass into an rclpy message and the bag runner into a rosbags message,
each with one small adapter: the field names are those of sensor_msgs (Image, PointCloud2,
PointField, CameraInfo). ``header`` is passed through untouched (the input message's own header
object), so every output carries the input's stamp and frame_id. ``data`` is a 1-D uint8 numpy view
of one contiguous array (no extra copy): rclpy adapters do ``msg.data.frombytes(fields.data)``,
rosbags adapters pass the array as is.

Topic names are relative to the node's namespace (default ``hcdp``): ``/hcdp/relative_depth`` etc.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hcdp_model.visualize import colorize_depth, mask_to_rgb, normals_to_rgb
import numpy as np

DEFAULT_NAMESPACE = "hcdp"
NODE_NAME = "hcdp"

# output key -> topic name relative to the node's namespace
TOPICS: dict[str, str] = {
    "relative_depth": "relative_depth",
    "normals": "normals",
    "mask": "mask",
    "mask_binary": "mask/binary",
    "relative_depth_viz": "relative_depth/viz",
    "normals_viz": "normals/viz",
    "mask_viz": "mask/viz",
    "points": "points",
    "camera_info": "camera_info",
    "depth": "depth",
}
VIZ_KEYS = ("relative_depth_viz", "normals_viz", "mask_viz")  # in VizRequest field order


def output_topic(key: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Return the absolute name of output ``key`` under ``namespace``, e.g. /hcdp/mask/binary."""
    return f"/{namespace.strip('/')}/{TOPICS[key]}" if namespace.strip("/") else f"/{TOPICS[key]}"


FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32


@dataclass(frozen=True)
class ImageFields:
    """sensor_msgs/Image fields."""

    header: Any
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray  # 1-D uint8 view, len == step * height


@dataclass(frozen=True)
class PointFieldSpec:
    """sensor_msgs/PointField fields."""

    name: str
    offset: int
    datatype: int
    count: int


@dataclass(frozen=True)
class PointCloudFields:
    """sensor_msgs/PointCloud2 fields (an unorganised cloud: height 1)."""

    header: Any
    height: int
    width: int
    fields: tuple[PointFieldSpec, ...]
    is_bigendian: bool
    point_step: int
    row_step: int
    data: np.ndarray  # 1-D uint8 view
    is_dense: bool


@dataclass(frozen=True)
class RoiFields:
    """sensor_msgs/RegionOfInterest fields."""

    x_offset: int
    y_offset: int
    height: int
    width: int
    do_rectify: bool


@dataclass(frozen=True)
class CameraInfoFields:
    """sensor_msgs/CameraInfo fields (``k``, ``r``, ``p`` flattened row-major, float64)."""

    header: Any
    height: int
    width: int
    distortion_model: str
    d: np.ndarray
    k: np.ndarray
    r: np.ndarray
    p: np.ndarray
    binning_x: int
    binning_y: int
    roi: RoiFields

    def scaled_to(self, height: int, width: int, header: Any) -> "CameraInfoFields":
        """Return this calibration for images of ``height × width`` with ``header``.

        The size, K, P and the ROI scaled (as image_proc's resize does) and binning cleared (K now
        describes the published pixels); the values unchanged when the size matches.
        """
        sx, sy = width / self.width, height / self.height
        k = self.k.reshape(3, 3).copy()
        k[0] *= sx
        k[1] *= sy
        p = self.p.reshape(3, 4).copy()
        p[0] *= sx
        p[1] *= sy
        if (sx, sy) == (1.0, 1.0):
            return replace(self, header=header)
        roi = self.roi
        roi = RoiFields(int(roi.x_offset * sx), int(roi.y_offset * sy), int(roi.height * sy),
                        int(roi.width * sx), roi.do_rectify)
        return replace(self, header=header, height=height, width=width, k=k.reshape(-1),
                       p=p.reshape(-1), binning_x=0, binning_y=0, roi=roi)

    def intrinsics(self, height: int, width: int) -> np.ndarray:
        """3×3 K for an image of ``height × width``.

        Scaled when the calibration has another size.
        """
        k = self.k.reshape(3, 3).copy()
        k[0] *= width / self.width
        k[1] *= height / self.height
        return k


_ENCODINGS = {  # (numpy dtype, channels) -> ROS encoding
    (np.dtype(np.float32), 1): "32FC1",
    (np.dtype(np.float32), 3): "32FC3",
    (np.dtype(np.uint8), 1): "mono8",
    (np.dtype(np.uint8), 3): "rgb8",
}


def image_fields(header: Any, array: np.ndarray) -> ImageFields:
    """Image fields for an H×W or H×W×C array.

    float32 → 32FC1/32FC3, uint8 → mono8/rgb8 (little-endian).
    """
    channels = 1 if array.ndim == 2 else array.shape[2]
    encoding = _ENCODINGS.get((array.dtype, channels))
    if encoding is None or array.ndim not in (2, 3):
        raise ValueError(
            f"expected float32 H×W / H×W×3 or uint8 H×W / H×W×3, got {array.dtype} {array.shape}"
        )
    contiguous = np.ascontiguousarray(array)
    if contiguous.dtype.byteorder == ">":
        contiguous = contiguous.astype(contiguous.dtype.newbyteorder("<"))
    height, width = contiguous.shape[:2]
    return ImageFields(header, height, width, encoding, 0, width * channels * contiguous.itemsize,
                       contiguous.reshape(-1).view(np.uint8))


def binary_mask(mask: np.ndarray, threshold: float) -> np.ndarray:
    """mono8 mask: 255 where mask > threshold, else 0."""
    return (mask > threshold).view(np.uint8) * np.uint8(255)


def point_cloud_fields(header: Any, points: np.ndarray,
                       colors: np.ndarray | None) -> PointCloudFields:
    """PointCloud2 fields for ``points [N,3] float32`` (x, y, z) and optional ``colors``.

    ``colors [N,3] uint8`` is packed as the usual rviz ``rgb`` float32 field (0x00RRGGBB). Points
    with a non-finite coordinate are dropped; ``is_dense`` says whether every published point is
    finite.
    """
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        points = points[finite]
        colors = None if colors is None else colors[finite]
    n = points.shape[0]
    names = ("x", "y", "z") if colors is None else ("x", "y", "z", "rgb")
    record = np.empty((n, len(names)), dtype=np.float32)
    record[:, :3] = points
    if colors is not None:
        c = colors.astype(np.uint32)
        record[:, 3] = ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)
    point_step = 4 * len(names)
    specs = tuple(PointFieldSpec(name, 4 * i, FLOAT32, 1) for i, name in enumerate(names))
    return PointCloudFields(header, 1, n, specs, False, point_step, point_step * n,
                            record.reshape(-1).view(np.uint8),
                            bool(np.isfinite(record[:, :3]).all()))


@dataclass(frozen=True)
class VizRequest:
    """Which visualisations someone is subscribed to (the node asks get_subscription_count())."""

    depth: bool = False
    normals: bool = False
    mask: bool = False


def viz_images(header: Any, depth: np.ndarray, normals: np.ndarray, mask: np.ndarray,
               rgb: np.ndarray | None, want: VizRequest) -> dict[str, ImageFields]:
    """rgb8 visualisations, computed only for the requested ones (keys from VIZ_KEYS).

    NaN normals are black, and so are depth colours off the mask.
    """
    out: dict[str, ImageFields] = {}
    if want.depth:
        out["relative_depth_viz"] = image_fields(header, colorize_depth(depth, mask))
    if want.normals:
        out["normals_viz"] = image_fields(header, normals_to_rgb(normals))
    if want.mask:
        out["mask_viz"] = image_fields(header, mask_to_rgb(mask, rgb))
    return out
