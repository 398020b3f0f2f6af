from hcdp_ros.conversions import decode_image, decode_metric_depth
from hcdp_ros.messages import binary_mask, FLOAT32, image_fields, point_cloud_fields
import numpy as np
import pytest
from tests.ros.fakes import header

HDR = header()


@pytest.mark.parametrize("array, encoding, step", [
    (np.arange(12, dtype=np.float32).reshape(3, 4), "32FC1", 16),
    (np.arange(36, dtype=np.float32).reshape(3, 4, 3), "32FC3", 48),
    (np.arange(12, dtype=np.uint8).reshape(3, 4), "mono8", 4),
    (np.arange(36, dtype=np.uint8).reshape(3, 4, 3), "rgb8", 12),
])
def test_image_fields_have_ros_encoding_step_and_little_endian_bytes(array, encoding, step):
    out = image_fields(HDR, array)
    assert (out.height, out.width, out.encoding, out.step, out.is_bigendian) == (3, 4, encoding,
                                                                                 step, 0)
    assert out.header is HDR and out.data.dtype == np.uint8 and out.data.size == step * 3
    assert out.data.tobytes() == array.astype(array.dtype.newbyteorder("<")).tobytes()


def test_image_fields_of_a_contiguous_array_share_its_memory():
    depth = np.ones((5, 6), np.float32)
    assert np.shares_memory(image_fields(HDR, depth).data, depth)


def test_strided_views_are_packed_once():
    maps = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    out = image_fields(HDR, maps[..., 0])  # like Prediction.depth, a strided view
    np.testing.assert_array_equal(out.data.view(np.float32).reshape(2, 3), maps[..., 0])


def test_output_images_round_trip_through_the_input_decoders():
    rgb = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    depth = np.linspace(0.5, 4.0, 20, dtype=np.float32).reshape(4, 5)
    np.testing.assert_array_equal(decode_image(image_fields(HDR, rgb), "/t").pixels, rgb)
    np.testing.assert_array_equal(decode_metric_depth(image_fields(HDR, depth), "/t"), depth)


def test_unsupported_arrays_are_refused_with_the_found_type():
    with pytest.raises(ValueError, match="got float64"):
        image_fields(HDR, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="float32 H×W"):
        image_fields(HDR, np.zeros((2, 2, 2), np.float32))


def test_binary_mask_is_255_strictly_above_the_threshold():
    mask = np.array([[0.0, 0.5, 0.51, 1.0]], np.float32)
    np.testing.assert_array_equal(binary_mask(mask, 0.5), [[0, 0, 255, 255]])


def test_point_cloud_fields_pack_xyz_and_rviz_rgb():
    points = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]], np.float32)
    colors = np.array([[255, 0, 16], [1, 2, 3]], np.uint8)
    cloud = point_cloud_fields(HDR, points, colors)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("rgb", 12, FLOAT32, 1)]
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (1, 2, 16, 32)
    record = cloud.data.view(np.float32).reshape(2, 4)
    np.testing.assert_array_equal(record[:, :3], points)
    assert record[:, 3].view(np.uint32).tolist() == [0xFF0010, 0x010203]
    assert cloud.header is HDR and cloud.is_dense and not cloud.is_bigendian


def test_point_cloud_without_colour_has_12_byte_points():
    cloud = point_cloud_fields(HDR, np.zeros((0, 3), np.float32), None)
    assert cloud.width == 0 and cloud.point_step == 12 and cloud.data.size == 0


def test_output_topics_live_under_the_node_namespace():
    from hcdp_ros.messages import output_topic

    assert output_topic("mask_binary") == "/hcdp/mask/binary"
    assert output_topic("relative_depth_viz", "/robot/hcdp/") == "/robot/hcdp/relative_depth/viz"
    assert output_topic("points", "") == "/points"
