"""Every name the node creates (subscriptions, publishers, services), without ROS.

Inputs live under ``input/`` and outputs at the namespace root, so a remapping of an input (the
launch file remaps ``input/camera_info`` to the camera's topic) can never catch an output of the
same base name: ``/hcdp/camera_info`` is the node's own, re-scaled camera_info. :func:`remap`
follows rcl's rule (the rule's match part and the name are both expanded in the node's namespace,
then compared) so the tests can check what a launch file's remappings do.
"""
from __future__ import annotations

from dataclasses import dataclass

from hcdp_ros.messages import TOPICS

# input key -> name relative to the node's namespace
INPUTS: dict[str, str] = {
    "image": "input/image",
    "compressed": "input/image/compressed",
    "camera_info": "input/camera_info",
    "metric_depth": "input/metric_depth",
}
RESET_SERVICE = "~/reset"  # std_srvs/Trigger: clear the temporal cache


@dataclass(frozen=True)
class NodeNames:
    """Relative names and message types (``pkg/msg/Type``) the node creates for one config."""

    subscriptions: dict[str, str]
    publishers: dict[str, str]
    services: dict[str, str]


def node_names(compressed: bool, use_metric_depth: bool) -> NodeNames:
    """Return the names ``node.py`` creates.

    The image (or compressed image) and camera_info inputs, the metric depth input and ``depth``
    output only with ``use_metric_depth``.
    """
    image = ("compressed", "sensor_msgs/msg/CompressedImage") if compressed else \
        ("image", "sensor_msgs/msg/Image")
    subs = {INPUTS[image[0]]: image[1], INPUTS["camera_info"]: "sensor_msgs/msg/CameraInfo"}
    if use_metric_depth:
        subs[INPUTS["metric_depth"]] = "sensor_msgs/msg/Image"
    kinds = {"points": "sensor_msgs/msg/PointCloud2", "camera_info": "sensor_msgs/msg/CameraInfo"}
    pubs = {topic: kinds.get(key, "sensor_msgs/msg/Image") for key, topic in TOPICS.items()
            if key != "depth" or use_metric_depth}
    return NodeNames(subs, pubs, {RESET_SERVICE: "std_srvs/srv/Trigger"})


def expand(name: str, namespace: str, node: str) -> str:
    """Return the fully qualified name of ``name`` (absolute, ``~/`` private or relative)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("/"):
        return name
    if name == "~" or name.startswith("~/"):
        return f"{ns}/{node}{name[1:]}"
    return f"{ns}/{name}"


def remap(name: str, namespace: str, node: str, rules: list[tuple[str, str]]) -> str:
    """``name`` fully qualified after the first matching remapping rule (rcl's semantics)."""
    full = expand(name, namespace, node)
    for match, replacement in rules:
        if expand(match, namespace, node) == full:
            return expand(replacement, namespace, node)
    return full


def launch_remappings(image: str, camera_info: str, metric_depth: str) -> list[tuple[str, str]]:
    """Return the launch file's remappings: the node's inputs to the camera's topics.

    The compressed image maps to image_transport's ``<image>/compressed``.
    """
    return [(INPUTS["image"], image), (INPUTS["compressed"], image.rstrip("/") + "/compressed"),
            (INPUTS["camera_info"], camera_info), (INPUTS["metric_depth"], metric_depth)]
