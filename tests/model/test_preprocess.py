from hcdp_model.preprocess import (
    denormalize, Letterbox, letterbox_maps, preprocess, to_rgb, unpreprocess,
)
import numpy as np
import pytest
import torch


@pytest.mark.parametrize("h, w, content, top, left", [
    (480, 640, (168, 224), 28, 0),
    (720, 1280, (126, 224), 49, 0),
    (1080, 720, (224, 149), 0, 37),
    (224, 224, (224, 224), 0, 0),
])
def test_letterbox_keeps_aspect_and_centres(h, w, content, top, left):
    box = Letterbox.fit(h, w, 224)
    assert (box.new_h, box.new_w) == content and (box.top, box.left) == (top, left)


@pytest.mark.parametrize("h, w", [(480, 640), (720, 1280), (1080, 720), (31, 17)])
def test_coordinate_mapping_round_trips(h, w):
    box = Letterbox.fit(h, w, 224)
    x, y = np.array([0.0, w - 1, w / 3]), np.array([0.0, h - 1, h / 2])
    xi, yi = box.to_input(*box.to_model(x, y))
    np.testing.assert_allclose(xi, x, atol=1e-9)
    np.testing.assert_allclose(yi, y, atol=1e-9)


@pytest.mark.parametrize("h, w", [(224, 112), (100, 224), (224, 224)])
def test_round_trip_is_exact_when_the_image_fits_at_scale_one(h, w):
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x, box = preprocess(image, 224)
    back = unpreprocess(denormalize(x), box)[0].permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(back, image, atol=1e-3)


@pytest.mark.parametrize("h, w", [(480, 640), (720, 1280), (1080, 720)])
def test_round_trip_of_a_smooth_image_is_close(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (h + w) * 255], -1).astype(np.uint8)
    x, box = preprocess(image, 224)
    back = unpreprocess(denormalize(x), box)[0].permute(1, 2, 0).numpy() * 255
    inner = (slice(8, -8), slice(8, -8))  # border pixels blend with the padding
    assert np.abs(back[inner] - image[inner]).mean() < 1.5


def test_padding_is_zero_after_normalisation_and_content_is_where_letterbox_says():
    image = np.full((50, 100, 3), 255, np.uint8)
    x, box = preprocess(image, 56)
    assert x.shape == (1, 3, 56, 56)
    assert (box.new_h, box.new_w, box.top) == (28, 56, 14)
    assert torch.all(x[..., :box.top, :] == 0) and torch.all(x[..., box.top + box.new_h:, :] == 0)
    assert torch.all(x[..., box.top:box.top + box.new_h, :] > 0)


def test_encodings_give_the_same_rgb():
    rgb = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb(rgb[..., ::-1].copy(), "bgr8"), rgb)
    assert to_rgb(rgb, "rgb8") is rgb
    mono = rgb[..., 0].copy()
    np.testing.assert_array_equal(to_rgb(mono, "mono8"), np.repeat(mono[..., None], 3, 2))
    a, _ = preprocess(rgb, 28, "rgb8")
    b, _ = preprocess(rgb[..., ::-1].copy(), 28, "bgr8")
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("image, encoding, message", [
    (np.zeros((4, 4, 3), np.uint8), "16UC1", "expected encoding rgb8/bgr8/mono8, got '16UC1'"),
    (np.zeros((4, 4, 3), np.float32), "rgb8", "expected a uint8 image"),
    (np.zeros((4, 4), np.uint8), "rgb8", "expected a HxWx3 array for rgb8"),
    (np.zeros((0, 4, 3), np.uint8), "rgb8", "non-empty"),
])
def test_bad_images_are_rejected_with_what_was_expected(image, encoding, message):
    with pytest.raises(ValueError, match=message):
        preprocess(image, 28, encoding)


def test_letterbox_maps_places_ground_truth_like_the_image():
    depth = torch.arange(50 * 100, dtype=torch.float32).reshape(1, 1, 50, 100)
    box = Letterbox.fit(50, 100, 100)
    placed = letterbox_maps(depth, box, mode="nearest", fill=-1.0)
    assert torch.equal(placed[..., 25:75, :], depth)
    assert torch.all(placed[..., :25, :] == -1)
    torch.testing.assert_close(unpreprocess(placed, box, mode="nearest"), depth)


def _reference_host_maps(maps):
    """Compute what the predictor computed before the packed copy (three separate results)."""
    from hcdp_model.heads import unit
    normals = unit(maps[1:4], dim=0).permute(1, 2, 0).contiguous()
    return maps[0].clamp_min(0).numpy(), normals.numpy(), torch.sigmoid(maps[4]).numpy()


def test_host_maps_pack_depth_normals_and_mask_into_one_buffer():
    from hcdp_model.predictor import host_maps
    maps = torch.randn(5, 7, 9, generator=torch.Generator().manual_seed(0))
    got = host_maps(maps)
    for g, want in zip(got, _reference_host_maps(maps)):
        assert g.dtype == np.float32 and g.shape == want.shape and g.flags.c_contiguous
        np.testing.assert_array_equal(g, want)
    assert got[0].base is got[1].base is got[2].base is not None, "expected views of one buffer"
    assert got[0].min() >= 0 and np.allclose(np.linalg.norm(got[1], axis=2), 1, atol=1e-5)


def test_upload_to_the_cpu_shares_contiguous_memory_and_copies_strided_views():
    from hcdp_model.preprocess import upload
    rgb = np.random.default_rng(0).integers(0, 256, (1, 4, 5, 3), dtype=np.uint8)
    shared = upload(rgb, torch.device("cpu"))
    assert shared.data_ptr() == rgb.ctypes.data
    flipped = rgb[..., ::-1]
    copied = upload(flipped, torch.device("cpu"))
    assert copied.is_contiguous() and np.array_equal(copied.numpy(), flipped)
    frozen = np.frombuffer(rgb.tobytes(), np.uint8).reshape(rgb.shape)  # read-only
    assert np.array_equal(upload(frozen, torch.device("cpu")).numpy(), rgb)


def test_normalisation_constants_are_made_once_per_device_and_dtype():
    from hcdp_model.preprocess import _normalisation
    first = _normalisation(torch.device("cpu"), torch.float32)
    assert first is _normalisation(torch.device("cpu"), torch.float32)
    assert first[0].dtype == torch.float32 and not first[0].is_inference()
    assert _normalisation(torch.device("cpu"), torch.bfloat16)[1].dtype == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_preprocess_and_host_maps_on_cuda_equal_the_cpu():
    from hcdp_model.predictor import host_maps
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for encoding in ("rgb8", "bgr8"):
        cpu, box = preprocess(image, 224, encoding)
        gpu, _ = preprocess(image, 224, encoding, device="cuda")
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
    maps = unpreprocess(torch.randn(1, 5, 224, 224), box)[0]
    for g, want in zip(host_maps(maps.cuda()), _reference_host_maps(maps)):
        np.testing.assert_allclose(g, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("h, w, size", [(480, 640, 56), (30, 40, 56), (7, 9, 28)])
def test_bgr8_and_mono8_converted_after_the_resize_equal_converting_first(h, w, size):
    """Check converting bgr8/mono8 after the resize equals converting on the host first.

    preprocess uploads bgr8/mono8 bytes as they are and reorders / expands the channels at model
    resolution; the resize works per channel, so that is exactly converting on the host first.
    """
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    mono = np.ascontiguousarray(rgb[..., 1])
    for image, encoding in ((bgr[0], "bgr8"), (mono[0], "mono8"), (bgr, "bgr8"), (mono, "mono8")):
        got, box = preprocess(image, size, encoding)
        converted = (to_rgb(image, encoding)[None]
                     if image.ndim == (2 if encoding == "mono8" else 3)
                     else np.stack([to_rgb(im, encoding) for im in image]))
        want, want_box = preprocess(np.ascontiguousarray(converted), size, "rgb8")
        assert box == want_box and got.shape == want.shape
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_predictor_uploads_a_bgr8_frame_without_a_host_conversion_copy(monkeypatch):
    """Check the bgr8 frame reaches the device as the caller's bytes.

    It is a view, on the CPU no copy at all: the reversed-channel host copy cost 2.6 ms at 640x480
    (7 ms at 1280x720).
    """
    import hcdp_model.preprocess as module

    seen = []
    original = module.upload

    def spy(images, device):
        seen.append(images)
        return original(images, device)

    monkeypatch.setattr(module, "upload", spy)
    bgr = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    preprocess(bgr, 28, "bgr8")
    assert seen[0].base is bgr and seen[0].strides[-1] == 1, "expected the caller's bytes"
