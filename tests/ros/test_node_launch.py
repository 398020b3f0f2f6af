"""launch_testing: the real node, launched by hcdp.launch.py with the bundled tiny model, on ROS 2.

Skipped where ROS 2 is not installed. On a ROS 2 (Humble/Jazzy) machine after `colcon build`:
    launch_test tests/ros/test_node_launch.py      (or colcon test)
It publishes synthetic frames and checks that every output arrives with the input header, that bad
input is skipped without killing the node, and that the node exits cleanly.
"""
import os
import time
import unittest

import pytest

rclpy = pytest.importorskip("rclpy")
launch_testing = pytest.importorskip("launch_testing")

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

IMAGE, CAMERA_INFO = "/hcdp_test/image", "/hcdp_test/camera_info"
H, W = 120, 160
OUTPUTS = {"/hcdp/relative_depth": ("32FC1", Image), "/hcdp/normals": ("32FC3", Image),
           "/hcdp/mask": ("32FC1", Image), "/hcdp/mask/binary": ("mono8", Image),
           "/hcdp/relative_depth/viz": ("rgb8", Image), "/hcdp/points": (None, PointCloud2),
           "/hcdp/camera_info": (None, CameraInfo)}


@pytest.mark.launch_test
def generate_test_description():
    launch_file = os.path.join(get_package_share_directory("hcdp_ros"), "launch", "hcdp.launch.py")
    hcdp = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file),
        launch_arguments={"image": IMAGE, "camera_info": CAMERA_INFO, "namespace": "hcdp",
                          "use_rviz": "false"}.items())
    return LaunchDescription([hcdp, launch_testing.actions.ReadyToTest()])


def _image(stamp_s: float, encoding: str = "rgb8") -> Image:
    msg = Image(height=H, width=W, encoding=encoding, is_bigendian=0, step=W * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_s), int(stamp_s % 1 * 1e9)
    msg.header.frame_id = "test_optical_frame"
    pixels = np.zeros((H, W, 3), np.uint8)
    pixels[H // 4: 3 * H // 4, W // 3: 2 * W // 3] = (200, 150, 120)  # a bright block on black
    msg.data.frombytes(pixels.tobytes())
    return msg


def _camera_info() -> CameraInfo:
    msg = CameraInfo(height=H, width=W, distortion_model="plumb_bob")
    msg.k = np.array([100.0, 0, W / 2, 0, 100.0, H / 2, 0, 0, 1])
    msg.header.frame_id = "test_optical_frame"
    return msg


class TestHcdpNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("hcdp_launch_test")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def setUp(self):
        self.received = {topic: [] for topic in OUTPUTS}
        self.subs = [self.node.create_subscription(kind, topic, self.received[topic].append, 10)
                     for topic, (_, kind) in OUTPUTS.items()]
        self.image_pub = self.node.create_publisher(Image, IMAGE, 10)
        self.info_pub = self.node.create_publisher(CameraInfo, CAMERA_INFO, 10)

    def tearDown(self):
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        self.node.destroy_publisher(self.image_pub)
        self.node.destroy_publisher(self.info_pub)

    def _stream(self, frames, until, timeout_s=90.0):
        """Publish frames at ~10 Hz (cycling) until ``until()`` or the timeout (model load included)."""
        start, i = time.monotonic(), 0
        while time.monotonic() - start < timeout_s and not until():
            self.info_pub.publish(_camera_info())
            self.image_pub.publish(frames[i % len(frames)])
            i += 1
            rclpy.spin_once(self.node, timeout_sec=0.1)

    def test_every_output_arrives_with_the_input_header(self):
        frames = [_image(1000.0 + 0.1 * i) for i in range(200)]
        sent = {(f.header.stamp.sec, f.header.stamp.nanosec) for f in frames}
        self._stream(frames, lambda: all(len(v) >= 3 for v in self.received.values()))
        for topic, (encoding, _) in OUTPUTS.items():
            msgs = self.received[topic]
            self.assertGreaterEqual(len(msgs), 3, f"too few messages on {topic}")
            for msg in msgs:
                self.assertIn((msg.header.stamp.sec, msg.header.stamp.nanosec), sent, topic)
                self.assertEqual(msg.header.frame_id, "test_optical_frame", topic)
                if encoding is not None:
                    self.assertEqual((msg.encoding, msg.height, msg.width), (encoding, H, W), topic)

    def test_bad_input_is_skipped_and_the_node_keeps_running(self):
        bad = _image(2000.0)
        bad.encoding = "16UC1"
        truncated = _image(2000.1)
        truncated.data = truncated.data[:100]
        self._stream([bad, truncated], lambda: False, timeout_s=2.0)
        self.received["/hcdp/relative_depth"].clear()
        good = [_image(3000.0 + 0.1 * i) for i in range(100)]
        self._stream(good, lambda: len(self.received["/hcdp/relative_depth"]) >= 2, timeout_s=30.0)
        self.assertGreaterEqual(len(self.received["/hcdp/relative_depth"]), 2)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_node_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
