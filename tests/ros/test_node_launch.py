"""launch_testing: the real node, launched twice by hcdp.launch.py with the bundled model.

Skipped where rclpy is not installed. On a ROS 2 (Humble/Jazzy) machine after `colcon build` and
`source install/setup.bash`, either of
    launch_test tests/ros/test_node_launch.py
    python3 -m pytest tests/ros/test_node_launch.py
runs it (the second through launch_testing's pytest plugin, which on Jazzy needs pytest < 8:
`pip install "pytest<8"`). It checks issue 14 items 1-5 on the real middleware:
1. outputs (camera_info included, re-scaled to the image size) arrive on /hcdp/..., and the
   camera's camera_info topic has no second publisher;
2. every stamp on the outputs was sent by this test (messages are told apart by frame_id, so a
   leftover from another test cannot break the check), and the node exits with code 0;
3. a value refused at start-up (mask_threshold 2.0) fails configure until `set_parameters`
   fixes it, then configure succeeds;
4. metric depth published 20 ms after its colour image is paired (no `no_metric_depth`);
5. autostart activates once: a later cleanup + configure leaves the node inactive;
6. a 30 Hz stream processed by a slower model (frames dropped) never resets the cache.
"""
import os
import tempfile
import time
import unittest

import pytest

rclpy = pytest.importorskip("rclpy")
launch_testing = pytest.importorskip("launch_testing")

# after the importorskip calls, so pytest comes first (I100)
from ament_index_python.packages import get_package_share_directory  # noqa: E402, I100
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import GroupAction, IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
import numpy as np  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

IMAGE, CAMERA_INFO, DEPTH = "/hcdp_test/image", "/hcdp_test/camera_info", "/hcdp_test/depth"
BAD = "/hcdp_bad/hcdp"  # the second instance, started with mask_threshold 2.0
H, W = 120, 160
OUTPUTS = {"/hcdp/relative_depth": ("32FC1", Image), "/hcdp/normals": ("32FC3", Image),
           "/hcdp/mask": ("32FC1", Image), "/hcdp/mask/binary": ("mono8", Image),
           "/hcdp/relative_depth/viz": ("rgb8", Image), "/hcdp/points": (None, PointCloud2),
           "/hcdp/camera_info": (None, CameraInfo)}


def _params_file(text: str) -> str:
    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    handle.write("/**/hcdp:\n  ros__parameters:\n" + text)
    handle.close()
    return handle.name


def _instance(namespace: str, params: str, topics: tuple[str, str, str]) -> GroupAction:
    launch_file = os.path.join(get_package_share_directory("hcdp_ros"), "launch", "hcdp.launch.py")
    args = {"image": topics[0], "camera_info": topics[1], "metric_depth": topics[2],
            "namespace": namespace, "params_file": _params_file(params), "use_rviz": "false",
            "autostart": "true"}
    return GroupAction([IncludeLaunchDescription(PythonLaunchDescriptionSource(launch_file),
                                                 launch_arguments=args.items())], scoped=True)


@pytest.mark.launch_test
def generate_test_description():
    # max_gap_s 0.12: a 30 Hz stream is continuous, a CPU model slower than 8 Hz is not
    main = _instance("hcdp", "    use_metric_depth: true\n    max_gap_s: 0.12\n",
                     (IMAGE, CAMERA_INFO, DEPTH))
    bad = _instance("hcdp_bad", "    mask_threshold: 2.0\n",
                    ("/hcdp_bad_test/image", "/hcdp_bad_test/camera_info", "/hcdp_bad_test/d"))
    return LaunchDescription([main, bad, launch_testing.actions.ReadyToTest()])


def _stamped(msg, stamp_s: float, frame_id: str):
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_s), int(stamp_s % 1 * 1e9)
    msg.header.frame_id = frame_id
    return msg


def _image(stamp_s: float, frame_id: str) -> Image:
    msg = _stamped(Image(height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3),
                   stamp_s, frame_id)
    pixels = np.zeros((H, W, 3), np.uint8)
    pixels[H // 4: 3 * H // 4, W // 3: 2 * W // 3] = (200, 150, 120)  # a bright block on black
    msg.data.frombytes(pixels.tobytes())
    return msg


def _depth(stamp_s: float, frame_id: str) -> Image:
    msg = _stamped(Image(height=H, width=W, encoding="16UC1", is_bigendian=0, step=W * 2),
                   stamp_s, frame_id)
    rows = np.linspace(1000, 3000, H, dtype=np.uint16)[:, None]  # millimetres
    msg.data.frombytes(np.ascontiguousarray(np.broadcast_to(rows, (H, W))).tobytes())
    return msg


def _camera_info(frame_id: str) -> CameraInfo:
    # calibrated at twice the image size: the node must re-publish it scaled to H×W
    msg = CameraInfo(height=2 * H, width=2 * W, distortion_model="plumb_bob")
    msg.k = np.array([200.0, 0, W, 0, 200.0, H, 0, 0, 1])
    msg.p = np.array([200.0, 0, W, 0, 0, 200.0, H, 0, 0, 0, 1, 0])
    msg.header.frame_id = frame_id
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
        self.diagnostics = []
        self.subs = [self.node.create_subscription(kind, topic, self.received[topic].append, 10)
                     for topic, (_, kind) in OUTPUTS.items()]
        self.subs.append(self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                                       self.diagnostics.append, 10))
        self.image_pub = self.node.create_publisher(Image, IMAGE, 10)
        self.info_pub = self.node.create_publisher(CameraInfo, CAMERA_INFO, 10)
        self.depth_pub = self.node.create_publisher(Image, DEPTH, 10)

    def tearDown(self):
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        for pub in (self.image_pub, self.info_pub, self.depth_pub):
            self.node.destroy_publisher(pub)

    def _mine(self, topic, frame_id):
        return [m for m in self.received[topic] if m.header.frame_id == frame_id]

    def _stream(self, frames, frame_id, until, timeout_s=120.0):
        """Publish frames at ~10 Hz (cycling), each one's depth 20 ms after it.

        They are published until ``until()`` or the timeout (model loading included).
        """
        start, i = time.monotonic(), 0
        while time.monotonic() - start < timeout_s and not until():
            frame = frames[i % len(frames)]
            self.info_pub.publish(_camera_info(frame_id))
            self.image_pub.publish(frame)
            time.sleep(0.02)  # RGB-D drivers deliver depth after colour
            stamp = frame.header.stamp.sec + frame.header.stamp.nanosec * 1e-9
            self.depth_pub.publish(_depth(stamp, frame_id))
            i += 1
            rclpy.spin_once(self.node, timeout_sec=0.08)

    def _status(self):
        """Return the latest /diagnostics status of the configured /hcdp/hcdp as a dict.

        It is found by its fully qualified name; "starting up" and "not configured" ones carry no
        counters.
        """
        for array in reversed(self.diagnostics):
            for status in array.status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name.endswith("/hcdp/hcdp") and "published_frames" in values:
                    return values
        return None

    def _call(self, kind, name, request, timeout_s=30.0):
        client = self.node.create_client(kind, name)
        try:
            self.assertTrue(client.wait_for_service(timeout_sec=timeout_s), f"no service {name}")
            future = client.call_async(request)
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=timeout_s)
            self.assertTrue(future.done(), f"{name} did not answer")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def _transition(self, transition_id):
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self._call(ChangeState, f"{BAD}/change_state", request).success

    def _state(self):
        return self._call(GetState, f"{BAD}/get_state", GetState.Request()).current_state.id

    def test_every_output_arrives_on_its_own_topic_with_the_input_header(self):
        frame_id = "test_outputs_frame"
        frames = [_image(1000.0 + 0.1 * i, frame_id) for i in range(200)]
        sent = {(f.header.stamp.sec, f.header.stamp.nanosec) for f in frames}
        self._stream(frames, frame_id,
                     lambda: all(len(self._mine(t, frame_id)) >= 3 for t in OUTPUTS))
        for topic, (encoding, _) in OUTPUTS.items():
            msgs = self._mine(topic, frame_id)
            self.assertGreaterEqual(len(msgs), 3, f"too few messages on {topic}")
            for msg in msgs:
                self.assertIn((msg.header.stamp.sec, msg.header.stamp.nanosec), sent, topic)
                if encoding is not None:
                    self.assertEqual((msg.encoding, msg.height, msg.width), (encoding, H, W),
                                     topic)
        info = self._mine("/hcdp/camera_info", frame_id)[-1]
        self.assertEqual((info.height, info.width), (H, W))
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3),
                                   [[100, 0, W / 2], [0, 100, H / 2], [0, 0, 1]])
        # the camera's topic has one publisher (this test), not the node's output as well
        self.assertEqual(self.node.count_publishers(CAMERA_INFO), 1)

    def test_metric_depth_arriving_after_its_colour_image_is_paired(self):
        frame_id = "test_depth_frame"
        frames = [_image(2000.0 + 0.1 * i, frame_id) for i in range(600)]
        self._stream(frames, frame_id, lambda: self._status() is not None and
                     bool(self._mine("/hcdp/relative_depth", frame_id)))
        before = self._status()
        self.assertIsNotNone(before, "no /diagnostics status named …/hcdp/hcdp")

        def counts(status):
            return (int(status["published_frames"]),
                    int(status.get("bad_input.no_metric_depth", "0")))

        self._stream(frames, frame_id, lambda: counts(self._status())[0] >= counts(before)[0] + 20)
        published, unpaired = (a - b for a, b in zip(counts(self._status()), counts(before)))
        self.assertGreaterEqual(published, 20)
        self.assertLessEqual(unpaired, 1, self._status())  # before the fix: every frame

    def test_bad_input_is_skipped_and_the_node_keeps_running(self):
        frame_id = "test_bad_input_frame"
        bad = _image(3000.0, frame_id)
        bad.encoding = "16UC1"
        truncated = _image(3000.1, frame_id)
        truncated.data = truncated.data[:100]
        self._stream([bad, truncated], frame_id, lambda: False, timeout_s=2.0)
        good = [_image(3001.0 + 0.1 * i, frame_id) for i in range(100)]
        sent = {(f.header.stamp.sec, f.header.stamp.nanosec) for f in good}
        self._stream(good, frame_id,
                     lambda: len(self._mine("/hcdp/relative_depth", frame_id)) >= 2,
                     timeout_s=60.0)
        published = self._mine("/hcdp/relative_depth", frame_id)
        self.assertGreaterEqual(len(published), 2)
        # only the good frames came out: the bad ones were skipped, not published
        self.assertTrue({(m.header.stamp.sec, m.header.stamp.nanosec) for m in published} <= sent)

    def test_a_model_slower_than_the_camera_keeps_its_temporal_cache(self):
        frame_id = "test_slow_model_frame"
        frames = iter([_image(4000.0 + i / 30, frame_id) for i in range(3000)])  # 30 Hz stamps

        def publish_until(done, timeout_s=120.0):
            start = time.monotonic()
            while time.monotonic() - start < timeout_s and not done():
                self.image_pub.publish(next(frames))
                rclpy.spin_once(self.node, timeout_sec=1 / 30)

        def fresh_status():
            self.diagnostics.clear()
            publish_until(lambda: self._status() is not None)
            return self._status()

        # the first frame of this sequence resets (its stamp jumps): let it be counted first
        publish_until(lambda: bool(self._mine("/hcdp/relative_depth", frame_id)))
        before = fresh_status()
        start = time.monotonic()
        publish_until(lambda: time.monotonic() - start > 5.0)
        after = fresh_status()
        self.assertIsNotNone(before)
        self.assertIsNotNone(after)
        published = int(after["published_frames"]) - int(before["published_frames"])
        dropped = int(after["dropped_frames"]) - int(before["dropped_frames"])
        self.assertGreater(published, 0)
        # processed frames lie further apart than max_gap_s whenever frames were dropped; the
        # input stream never had a gap, so the cache must not reset
        self.assertEqual(int(after["cache_resets"]), int(before["cache_resets"]),
                         f"{published} published, {dropped} dropped")

    def test_the_reset_service_answers(self):
        response = self._call(Trigger, "/hcdp/hcdp/reset", Trigger.Request())
        self.assertTrue(response.success, response.message)

    def test_a_fixed_parameter_lets_configure_succeed_and_autostart_activates_once(self):
        deadline = time.monotonic() + 60.0
        while self._state() != State.PRIMARY_STATE_UNCONFIGURED and time.monotonic() < deadline:
            time.sleep(0.5)  # the launch file's own configure attempt may still run
        self.assertFalse(self._transition(Transition.TRANSITION_CONFIGURE))  # mask_threshold 2.0
        request = SetParameters.Request()
        request.parameters = [Parameter(name="mask_threshold", value=ParameterValue(
            type=ParameterType.PARAMETER_DOUBLE, double_value=0.5))]
        result = self._call(SetParameters, f"{BAD}/set_parameters", request).results[0]
        self.assertTrue(result.successful, result.reason)
        self.assertTrue(self._transition(Transition.TRANSITION_CONFIGURE))
        # autostart: the first configure that reaches inactive is followed by activate
        while self._state() != State.PRIMARY_STATE_ACTIVE and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(self._state(), State.PRIMARY_STATE_ACTIVE)
        for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                           Transition.TRANSITION_CONFIGURE):
            self.assertTrue(self._transition(transition), transition)
        time.sleep(3.0)  # time enough for a (wrong) second activation
        self.assertEqual(self._state(), State.PRIMARY_STATE_INACTIVE)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_node_exits_cleanly(self, proc_info):
        # exit code 0 only: a node killed by a signal (-2, -15, -9) fails this test
        launch_testing.asserts.assertExitCodes(proc_info)
