"""What the node and `hcdp bag` publish.

Honest (masked) maps, camera_info at the output size, a point cloud without non-finite points,
downscaled inputs, requested cache resets.
"""
from hcdp_ros.conversions import decode_camera_info
from hcdp_ros.messages import point_cloud_fields
from hcdp_ros.pipeline import decode_input, FrameProcessor, limit_side, OutputOptions
import numpy as np
import pytest
from tests.ros.fakes import camera_info_msg, FakePredictor, header, image_msg

H, W = 8, 12
K = np.array([[10.0, 0, 6.0], [0, 10.0, 4.0], [0, 0, 1]])


def _process(options=OutputOptions(), size=(H, W), info_size=(H, W), k=K, reset=None,
             predictor=None):
    predictor = predictor or FakePredictor()
    msg = image_msg(np.zeros(size + (3,), np.uint8), "rgb8", hdr=header(5, 0, "cam"))
    info = decode_camera_info(camera_info_msg(k, *info_size), "/ci")
    image = limit_side(decode_input(msg, False, "/img"), 0)
    return FrameProcessor(predictor).process(msg.header, image, options, info, reset=reset), msg


def _image(out, key):
    fields = out.images[key]
    channels = fields.step // (4 * fields.width)
    values = fields.data.view(np.float32).reshape(fields.height, fields.width, channels)
    return values[..., 0] if channels == 1 else values


def test_depth_and_normals_are_nan_off_the_person_by_default_and_the_mask_is_full_frame():
    out, _ = _process()
    depth, normals, mask = (_image(out, k) for k in ("relative_depth", "normals", "mask"))
    person = mask > 0.5  # the fake's centre half
    assert np.isnan(depth[~person]).all() and np.isfinite(depth[person]).all()
    assert np.isnan(normals[~person]).all() and np.isfinite(normals[person]).all()
    assert np.isfinite(mask).all() and (mask[~person] == 0).all()
    # on the person the values are the prediction's, bit for bit; the prediction (used by
    # hcdp bag's metrics) stays raw
    np.testing.assert_array_equal(depth[person], out.prediction.depth[person])
    np.testing.assert_array_equal(normals[person], out.prediction.normals[person])
    assert np.isfinite(out.prediction.depth).all()


def test_mask_outputs_false_publishes_the_raw_maps():
    out, _ = _process(OutputOptions(mask_outputs=False))
    assert np.isfinite(_image(out, "relative_depth")).all()
    assert np.isfinite(_image(out, "normals")).all()


def test_the_mask_threshold_decides_what_is_person():
    out, _ = _process(OutputOptions(mask_threshold=1.0))  # the fake's mask is 1.0 at most
    assert np.isnan(_image(out, "relative_depth")).all()


def test_normals_viz_is_black_off_the_person():
    from hcdp_ros.messages import VizRequest

    out, _ = _process(OutputOptions(viz=VizRequest(normals=True)))
    viz = out.images["normals_viz"].data.reshape(H, W, 3)
    person = _image(out, "mask") > 0.5
    assert (viz[~person] == 0).all() and (viz[person] > 0).any()


def test_camera_info_is_republished_at_the_output_size_with_scaled_intrinsics():
    k = np.array([[500.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    out, msg = _process(size=(240, 320), info_size=(480, 640), k=k)
    info = out.camera_info
    assert (info.height, info.width) == (240, 320) and info.header is msg.header
    np.testing.assert_allclose(info.k.reshape(3, 3), [[250, 0, 160], [0, 200, 120], [0, 0, 1]])
    np.testing.assert_allclose(info.p.reshape(3, 4)[:, :3],
                               [[250, 0, 160], [0, 200, 120], [0, 0, 1]])


def test_camera_info_of_the_output_size_is_republished_unchanged():
    out, _ = _process()
    np.testing.assert_array_equal(out.camera_info.k, K.reshape(-1))
    assert (out.camera_info.height, out.camera_info.width) == (H, W)


def test_downscaled_inputs_give_smaller_outputs_and_matching_camera_info():
    msg = image_msg(np.zeros((480, 640, 3), np.uint8), "rgb8")
    small = limit_side(decode_input(msg, False, "/img"), 320)
    assert small.pixels.shape == (240, 320, 3) and small.encoding == "rgb8"
    assert limit_side(small, 320) is small and limit_side(small, 0) is small
    k = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    info = decode_camera_info(camera_info_msg(k, 480, 640), "/ci")
    out = FrameProcessor(FakePredictor()).process(msg.header, small, OutputOptions(), info)
    assert out.images["relative_depth"].width == 320 and out.camera_info.width == 320
    assert out.camera_info.k[0] == pytest.approx(250.0)


def test_a_requested_reset_clears_the_cache_and_is_reported_with_its_reason():
    predictor = FakePredictor()
    _process(predictor=predictor)
    _process(predictor=predictor)
    out, _ = _process(predictor=predictor, reset="requested through ~/reset")
    assert out.prediction.reset and out.prediction.reset_reason == "requested through ~/reset"
    assert len(predictor.calls) == 1  # FakePredictor.reset() forgot the earlier frames


def test_non_finite_points_are_dropped_and_is_dense_tells_the_truth():
    points = np.array([[0, 0, 1], [np.inf, 0, 1], [0, np.nan, 2], [1, 1, 3]], np.float32)
    colours = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]], np.uint8)
    cloud = point_cloud_fields(header(), points, colours)
    record = cloud.data.view(np.float32).reshape(-1, 4)
    assert cloud.width == 2 and cloud.is_dense
    np.testing.assert_array_equal(record[:, :3], points[[0, 3]])
    assert record[1, 3].view(np.uint32) == (10 << 16 | 11 << 8 | 12)


def test_a_degenerate_camera_gives_a_cloud_without_inf():
    tiny = np.array([[1e-39, 0, 6.0], [0, 1e-39, 4.0], [0, 0, 1]])  # finite, fx > 0, x/fx = inf
    out, _ = _process(OutputOptions(points_stride=1), k=tiny)
    record = out.points.data.view(np.float32).reshape(-1, 4)
    assert np.isfinite(record[:, :3]).all() and out.points.is_dense
