"""rosbags message classes take the output dataclasses as they are (sensor_msgs field names).

The output dataclasses use sensor_msgs field names, so this is what the offline bag runner does;
the messages survive CDR serialisation unchanged.
"""
import dataclasses

from hcdp_ros.conversions import decode_camera_info, decode_image
from hcdp_ros.messages import VizRequest
from hcdp_ros.pipeline import FrameProcessor, OutputOptions
import numpy as np
from rosbags.typesys import get_typestore, Stores
from tests.ros.fakes import camera_info_msg, FakePredictor

STORE = get_typestore(Stores.ROS2_HUMBLE)
T = STORE.types
H, W = 6, 8


def _fields(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _roundtrip(msg):
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def test_pipeline_outputs_become_rosbags_messages_that_round_trip():
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=7, nanosec=9),
                                      frame_id="cam")
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    image = T["sensor_msgs/msg/Image"](header=header, height=H, width=W, encoding="rgb8",
                                       is_bigendian=0,
                                       step=W * 3, data=rgb.reshape(-1))
    k = np.array([[10.0, 0, 4], [0, 10.0, 3], [0, 0, 1]])
    info_msg = camera_info_msg(k, H, W)
    info_msg.roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                         width=0, do_rectify=False)
    out = FrameProcessor(FakePredictor()).process(
        image.header, decode_image(image, "/img"),
        OutputOptions(points_stride=1, viz=VizRequest(True, True, True)),
        decode_camera_info(info_msg, "/ci"))

    for key, fields in out.images.items():
        msg = _roundtrip(T["sensor_msgs/msg/Image"](**_fields(fields)))
        assert msg.header.stamp.sec == 7 and msg.header.frame_id == "cam", key
        assert msg.encoding == fields.encoding and bytes(msg.data) == fields.data.tobytes(), key

    cloud = _fields(out.points)
    cloud["fields"] = [T["sensor_msgs/msg/PointField"](**_fields(f)) for f in out.points.fields]
    msg = _roundtrip(T["sensor_msgs/msg/PointCloud2"](**cloud))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and msg.width == out.points.width
    assert bytes(msg.data) == out.points.data.tobytes()

    info = _fields(out.camera_info)
    info["roi"] = T["sensor_msgs/msg/RegionOfInterest"](**_fields(out.camera_info.roi))
    msg = _roundtrip(T["sensor_msgs/msg/CameraInfo"](**info))
    np.testing.assert_array_equal(msg.k.reshape(3, 3), k)
    assert msg.header.stamp.nanosec == 9 and msg.distortion_model == "plumb_bob"
