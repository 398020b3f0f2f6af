from hcdp_ros.conversions import decode_camera_info, InvalidDepth
from hcdp_ros.messages import TOPICS, VIZ_KEYS, VizRequest
from hcdp_ros.pipeline import (
    decode_input,
    FrameProcessor,
    MetricInput,
    OutputOptions,
    stamp_seconds,
)
import numpy as np
import pytest
from tests.ros.fakes import camera_info_msg, FakePredictor, header, image_msg

H, W = 8, 12
K = np.array([[10.0, 0, 6.0], [0, 10.0, 4.0], [0, 0, 1]])


def _run(options=OutputOptions(), camera=True, metric=None, encoding="bgr8", hdr=None):
    predictor = FakePredictor()
    msg = image_msg(np.zeros((H, W, 3), np.uint8), encoding,
                    hdr=hdr or header(12, 250_000_000, "cam"))
    info = decode_camera_info(camera_info_msg(K, H, W), "/ci") if camera else None
    out = FrameProcessor(predictor).process(msg.header, decode_input(msg, False, "/img"), options,
                                            info, metric)
    return out, predictor, msg


def test_stamp_frame_id_and_encoding_reach_the_predictor_unchanged():
    _, predictor, _ = _run()
    assert predictor.calls == [(12.25, "cam", "bgr8", (H, W, 3))]
    assert stamp_seconds(header(3, 5)) == pytest.approx(3.000000005)


def test_every_output_carries_the_input_header_object():
    everything = OutputOptions(metric_min_pixels=4, viz=VizRequest(True, True, True))
    metric = MetricInput(np.full((H, W), 2.0, np.float32) + np.arange(W, dtype=np.float32) / W,
                         "/d")
    out, _, msg = _run(everything, metric=metric)
    assert set(out.images) == set(TOPICS) - {"points", "camera_info"}
    assert all(image.header is msg.header for image in out.images.values())
    assert out.points.header is msg.header and out.camera_info.header is msg.header


def test_core_outputs_have_the_node_encodings_at_input_resolution():
    out, _, _ = _run()
    encodings = {k: (v.encoding, v.height, v.width) for k, v in out.images.items()}
    assert encodings == {"relative_depth": ("32FC1", H, W), "normals": ("32FC3", H, W),
                         "mask": ("32FC1", H, W), "mask_binary": ("mono8", H, W)}


@pytest.mark.parametrize("want",
                         [VizRequest(), VizRequest(depth=True), VizRequest(False, True, True)])
def test_visualisations_are_built_only_when_requested(want):
    out, _, _ = _run(OutputOptions(viz=want))
    built = {k for k in VIZ_KEYS if k in out.images}
    assert built == {k for k, on in zip(VIZ_KEYS, (want.depth, want.normals, want.mask)) if on}
    assert all(out.images[k].encoding == "rgb8" for k in built)


def test_points_use_depth_scale_times_relative_depth_inside_the_mask():
    out, _, _ = _run(OutputOptions(depth_scale=3.0, points_stride=1))
    record = out.points.data.view(np.float32).reshape(-1, 4)
    # fake depth = 1 + u / W on the centre half of the image
    v, u = np.mgrid[H // 4: 3 * H // 4, W // 4: 3 * W // 4]
    np.testing.assert_allclose(record[:, 2], 3.0 * (1 + u.ravel() / W), rtol=1e-6)
    np.testing.assert_allclose(record[:, 0], (u.ravel() - 6.0) / 10.0 * record[:, 2], rtol=1e-5)


def test_without_camera_info_there_are_no_points_or_camera_info():
    out, _, _ = _run(camera=False)
    assert out.points is None and out.camera_info is None


def test_metric_depth_recovers_the_scale_and_points_become_metric():
    relative = 1.0 + np.arange(W, dtype=np.float32) / W
    metric = MetricInput(np.broadcast_to(0.5 * relative + 2.0, (H, W)).copy(), "/d")
    out, _, _ = _run(OutputOptions(points_stride=1, metric_min_pixels=4), metric=metric)
    assert out.metric_fit.scale == pytest.approx(0.5, rel=1e-4)
    depth = out.images["depth"].data.view(np.float32).reshape(H, W)
    assert np.isnan(depth[0, 0]) and depth[H // 2,
                                           W // 2] == pytest.approx(0.5 * relative[W // 2] + 2.0)
    z = out.points.data.view(np.float32).reshape(-1, 4)[:, 2]
    assert z.min() > 2.0


def test_bad_metric_depth_spoils_only_the_metric_output():
    metric = MetricInput(np.full((H, W), np.nan, np.float32), "/d")
    out, _, _ = _run(metric=metric)
    assert "depth" not in out.images and "relative_depth" in out.images
    assert len(out.problems) == 1 and isinstance(out.problems[0], InvalidDepth)


def test_the_real_predictor_resets_on_the_header_changes_the_node_passes_through():
    from hcdp_model.model import HCDPModel
    from hcdp_model.predictor import StreamingPredictor
    from tests.model.helpers import micro_config

    processor = FrameProcessor(StreamingPredictor(HCDPModel(micro_config(temporal=True)),
                                                  window=4))
    pixels = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    frames = [(header(1, 0, "cam"), None), (header(1, 100_000_000, "cam"), None),  # continues
              (header(1, 50_000_000, "cam"), "backwards"), (header(3, 0, "cam"), "gap"),
              (header(3, 100_000_000, "other"), "frame_id"),
              (header(3, 200_000_000, "other"), None)]
    resets = []
    for hdr, _ in frames:
        msg = image_msg(pixels, "rgb8", hdr=hdr)
        pred = processor.process(hdr, decode_input(msg, False, "/img"), OutputOptions()).prediction
        resets.append(pred.reset_reason)
    assert resets[0] == "first frame" and resets[1] is None and resets[5] is None
    for got, (_, expected) in zip(resets[2:5], frames[2:5]):
        assert expected in got
