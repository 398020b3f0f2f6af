"""One frame through the node, without ROS.

Decode → StreamingPredictor.step → every output message.

The live node (`node.py`) and the offline bag runner share this class, so both publish the same
topics with the same encodings, stamps and conventions. Bad metric depth spoils only ``~/depth``
(reported in ``FrameOutputs.problems``); a bad image raises
:class:`~hcdp_ros.conversions.InputError`.

Honest outputs: the model's depth and normals are supervised on people only, so by default
(``OutputOptions.mask_outputs``) ``relative_depth`` and ``normals`` are NaN where the mask is at or
below ``mask_threshold`` (REP 117: NaN = no valid value); the mask is always full-frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import cv2
from hcdp_ros.conversions import (
    decode_compressed,
    decode_image,
    DecodedImage,
    DEFAULT_MAX_INPUT_PIXELS,
    InputError,
)
from hcdp_ros.messages import (
    binary_mask,
    CameraInfoFields,
    image_fields,
    ImageFields,
    point_cloud_fields,
    PointCloudFields,
    viz_images,
    VizRequest,
)
from hcdp_ros.metric_depth import apply_metric, fit_metric_depth, MetricFit, registered_to
from hcdp_ros.params import NodeConfig
from hcdp_ros.pointcloud import backproject
import numpy as np


def stamp_seconds(header: Any) -> float:
    """``header.stamp`` (sec, nanosec; rclpy and rosbags alike) as float seconds."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def decode_input(msg: Any, compressed: bool, topic: str,
                 max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> DecodedImage:
    """Decode the input image of an Image (``compressed=False``) or CompressedImage message.

    More than ``max_pixels`` pixels is refused before decoding (``conversions.ImageTooLarge``).
    """
    if compressed:
        return decode_compressed(msg, topic, max_pixels)
    return decode_image(msg, topic, max_pixels)


def limit_side(image: DecodedImage, max_side: int) -> DecodedImage:
    """``image`` downscaled (area averaging) so its longer side is at most ``max_side``.

    As is when it fits or ``max_side`` is 0. Every output then has the smaller size.
    """
    height, width = image.pixels.shape[:2]
    if max_side <= 0 or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(np.ascontiguousarray(image.pixels), size, interpolation=cv2.INTER_AREA)
    return DecodedImage(small, image.encoding)


def off_person_nan(mask: np.ndarray, threshold: float) -> np.ndarray:
    """float32 H×W: 1 where ``mask > threshold``, NaN elsewhere (REP 117: no valid value).

    A map times this keeps its values on the person exactly; one multiply is ~5× faster than a
    masked assignment (3 ms against 15 ms for depth and normals at 640×480).
    """
    return np.where(mask > threshold, np.float32(1.0), np.float32(np.nan))


_NODE_DEFAULTS = NodeConfig()


@dataclass(frozen=True)
class OutputOptions:
    """The dynamic output parameters of the node; their defaults are params.NodeConfig's."""

    mask_threshold: float = _NODE_DEFAULTS.mask_threshold
    publish_points: bool = _NODE_DEFAULTS.publish_points
    depth_scale: float = _NODE_DEFAULTS.depth_scale
    points_stride: int = _NODE_DEFAULTS.points_stride
    metric_min_pixels: int = _NODE_DEFAULTS.metric_min_pixels
    viz: VizRequest = VizRequest()
    # NaN depth/normals off the person; False: the raw maps
    mask_outputs: bool = _NODE_DEFAULTS.mask_outputs

    @classmethod
    def from_config(cls, config: NodeConfig, viz: VizRequest = VizRequest(),
                    **changes: Any) -> OutputOptions:
        """Build the output options of `config` (node parameters), with `viz` and `changes`."""
        values = {f.name: getattr(config, f.name) for f in fields(cls) if f.name != "viz"}
        return cls(**{**values, "viz": viz, **changes})


@dataclass(frozen=True)
class MetricInput:
    """A decoded metric depth image and the topic it came from.

    The image is float32 metres, NaN = no reading.
    """

    depth: np.ndarray
    topic: str


@dataclass
class FrameOutputs:
    """Everything published for one input frame; ``images`` keys are messages.TOPICS keys."""

    header: Any
    prediction: Any
    images: dict[str, ImageFields]
    points: PointCloudFields | None = None
    camera_info: CameraInfoFields | None = None
    metric_fit: MetricFit | None = None
    problems: list[InputError] = field(default_factory=list)


class FrameProcessor:
    """Runs the predictor on decoded frames and builds the output messages."""

    def __init__(self, predictor: Any):
        self.predictor = predictor

    def process(self, header: Any, image: DecodedImage, options: OutputOptions,
                camera: CameraInfoFields | None = None, metric: MetricInput | None = None,
                reset: str | None = None) -> FrameOutputs:
        """Predict on ``image`` (stamp and frame_id from ``header`` drive the cache reset rules).

        ``reset``: a reason to clear the temporal cache before this frame (the node's input-gap
        rule, the ``~/reset`` service); the prediction then reports it as its reset reason.
        """
        if reset is not None:
            self.predictor.reset()
        pred = self.predictor.step(image.pixels, stamp_seconds(header), header.frame_id,
                                   image.encoding)
        if reset is not None:
            pred = replace(pred, reset=True, reset_reason=reset)
        # pack each map once (the predictor may return strided views); every consumer shares these
        depth, normals, mask = (np.ascontiguousarray(a)
                                for a in (pred.depth, pred.normals, pred.mask))
        threshold = options.mask_threshold
        if options.mask_outputs:
            person = off_person_nan(mask, threshold)
            shown_depth, shown_normals = depth * person, normals * person[..., None]
        else:
            shown_depth, shown_normals = depth, normals
        images = {
            "relative_depth": image_fields(header, shown_depth),
            "normals": image_fields(header, shown_normals),
            "mask": image_fields(header, mask),
            "mask_binary": image_fields(header, binary_mask(mask, threshold)),
        }
        rgb = image.to_rgb() if options.viz.mask else None
        images.update(viz_images(header, depth, shown_normals, mask, rgb, options.viz))
        out = FrameOutputs(header, pred, images)

        metric_depth = None
        if metric is not None:
            try:
                target = registered_to(metric.depth, *depth.shape)
                out.metric_fit = fit_metric_depth(depth, target, mask, threshold,
                                                  options.metric_min_pixels,
                                                  metric.topic)
            except InputError as err:
                out.problems.append(err)
            else:
                metric_depth = apply_metric(depth, out.metric_fit, mask, threshold)
                images["depth"] = image_fields(header, metric_depth)

        if camera is not None:
            # re-stamped to the output, and re-scaled when the calibration has another size
            out.camera_info = camera.scaled_to(*depth.shape, header)
            if options.publish_points:
                z = (metric_depth if metric_depth is not None
                     else depth * np.float32(options.depth_scale))
                colors = image.to_rgb() if rgb is None else rgb
                points, picked = backproject(z, mask, camera.intrinsics(*depth.shape), threshold,
                                             options.points_stride, colors)
                out.points = point_cloud_fields(header, points, picked)
        return out
