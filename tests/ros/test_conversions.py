import cv2
from hcdp_ros.conversions import (
    CorruptCompressed,
    decode_camera_info,
    decode_compressed,
    decode_image,
    decode_metric_depth,
    EmptyImage,
    ImageTooLarge,
    InputError,
    MalformedMessage,
    SizeMismatch,
    UnsupportedEncoding,
)
import numpy as np
import pytest
from tests.ros.fakes import camera_info_msg, compressed_msg, image_msg

TOPIC = "/camera/image_raw"
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize("step_pad", [0, 5])
def test_rgb8_and_bgr8_decode_to_the_same_pixels_as_zero_copy_views(step_pad):
    for encoding, pixels in (("rgb8", RGB), ("bgr8", RGB[..., ::-1].copy())):
        msg = image_msg(pixels, encoding, step=8 * 3 + step_pad)
        decoded = decode_image(msg, TOPIC)
        assert decoded.encoding == encoding
        np.testing.assert_array_equal(decoded.to_rgb(), RGB)
        assert np.shares_memory(decoded.pixels, np.frombuffer(msg.data, np.uint8))


def test_mono8_is_a_zero_copy_view_and_to_rgb_repeats_the_grey_level():
    grey = RGB[..., 0].copy()
    msg = image_msg(grey, "mono8", step=11)
    decoded = decode_image(msg, TOPIC)
    assert decoded.encoding == "mono8" and decoded.pixels.shape == (6, 8)
    np.testing.assert_array_equal(decoded.pixels, grey)
    np.testing.assert_array_equal(decoded.to_rgb(), np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("encoding, order", [("rgba8", [0, 1, 2]), ("bgra8", [2, 1, 0])])
def test_four_channel_encodings_drop_alpha_without_copying(encoding, order):
    alpha = np.full(RGB.shape[:2] + (1,), 77, np.uint8)
    pixels = np.concatenate([RGB[..., order], alpha], axis=2)
    msg = image_msg(pixels, encoding)
    decoded = decode_image(msg, TOPIC)
    np.testing.assert_array_equal(decoded.to_rgb(), RGB)
    assert np.shares_memory(decoded.pixels, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("encoding, to_yuv",
                         [("yuv422", cv2.COLOR_YUV2RGB_UYVY), ("uyvy", cv2.COLOR_YUV2RGB_UYVY),
                          ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2),
                          ("yuyv", cv2.COLOR_YUV2RGB_YUY2)])
def test_yuv422_variants_convert_like_opencv(encoding, to_yuv):
    packed = RNG.integers(16, 235, (4, 6, 2), dtype=np.uint8)
    decoded = decode_image(image_msg(packed, encoding), TOPIC)
    assert decoded.encoding == "rgb8"
    np.testing.assert_array_equal(decoded.pixels, cv2.cvtColor(packed, to_yuv))


def test_a_grey_uyvy_pixel_pair_decodes_to_grey():
    # U = V = 128 is zero chroma: both pixels come out with R = G = B
    packed = np.array([[[128, 100], [128, 200]]], dtype=np.uint8)  # U Y0 V Y1
    rgb = decode_image(image_msg(packed, "uyvy"), TOPIC).pixels
    assert rgb.shape == (1, 2, 3)
    assert np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])
    assert rgb[0, 0, 0] < rgb[0, 1, 0]


def test_bytes_bytearray_array_module_and_numpy_data_are_all_accepted():
    import array

    msg = image_msg(RGB, "rgb8")
    for data in (bytes(msg.data), np.frombuffer(msg.data, np.uint8), array.array("B", msg.data),
                 bytearray(msg.data)):
        msg.data = data
        np.testing.assert_array_equal(decode_image(msg, TOPIC).pixels, RGB)


@pytest.mark.parametrize("fmt, ext", [("jpeg", ".png"), ("rgb8; png compressed bgr8", ".png")])
def test_compressed_png_round_trips_exactly_to_bgr8(fmt, ext):
    ok, buf = cv2.imencode(ext, RGB[..., ::-1])
    decoded = decode_compressed(compressed_msg(buf.tobytes(), fmt), TOPIC)
    assert ok and decoded.encoding == "bgr8"
    np.testing.assert_array_equal(decoded.to_rgb(), RGB)


def test_compressed_jpeg_decodes_close_to_the_original():
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (16, 1, 3))
    _, buf = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = decode_compressed(compressed_msg(buf.tobytes()), TOPIC)
    assert np.abs(decoded.to_rgb().astype(int) - smooth).max() <= 8


def test_16uc1_depth_is_millimetres_and_zero_is_nan():
    mm = np.array([[0, 1000], [2500, 65535]], dtype=np.uint16)
    depth = decode_metric_depth(image_msg(mm, "16UC1"), "/camera/depth")
    np.testing.assert_allclose(depth, [[np.nan, 1.0], [2.5, 65.535]], rtol=1e-6)
    assert depth.dtype == np.float32


def test_big_endian_16uc1_is_byte_swapped():
    mm = np.array([[1000, 2]], dtype=">u2")
    depth = decode_metric_depth(image_msg(mm, "16UC1", bigendian=True), "/camera/depth")
    np.testing.assert_allclose(depth, [[1.0, 0.002]])


def test_32fc1_depth_keeps_metres_and_marks_invalid_readings_nan():
    metres = np.array([[1.5, np.nan, np.inf], [0.0, -1.0, 3.25]], dtype=np.float32)
    depth = decode_metric_depth(image_msg(metres, "32FC1", step=3 * 4 + 4), "/camera/depth")
    expected = np.array([[1.5, np.nan, np.nan], [np.nan, np.nan, 3.25]], dtype=np.float32)
    np.testing.assert_array_equal(depth, expected)


def test_camera_info_is_validated_and_k_rescaled_for_another_image_size():
    k = np.array([[500.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    info = decode_camera_info(camera_info_msg(k, 480, 640), "/camera/camera_info")
    np.testing.assert_array_equal(info.intrinsics(480, 640), k)
    half = info.intrinsics(240, 320)
    np.testing.assert_allclose(half, [[250, 0, 160], [0, 200, 120], [0, 0, 1]])


# ---- every bad-input class names the topic and the cause ----------------------------------------

def _bad(**overrides):
    msg = image_msg(RGB, "rgb8")
    for key, value in overrides.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize("msg, error, words", [
    (_bad(encoding="16UC1"), UnsupportedEncoding, "expected encoding rgb8/bgr8/mono8"),
    (_bad(encoding=""), UnsupportedEncoding, "(empty)"),
    (_bad(height=0), EmptyImage, "non-empty"),
    (_bad(width=0), EmptyImage, "non-empty"),
    (_bad(step=10), SizeMismatch, "expected step >= 24"),
    (_bad(data=bytes(RGB.size - 1)), SizeMismatch, "truncated"),
    (_bad(height=70000, step=24), SizeMismatch, "<= 32768"),
    (_bad(width=7, encoding="yuyv", step=14), SizeMismatch, "even width"),
    (_bad(height=-1), MalformedMessage, "height >= 0"),
    (_bad(step=2.5), MalformedMessage, "integer step"),
    (_bad(encoding=None), MalformedMessage, "encoding as a string"),
    (_bad(data=None), MalformedMessage, "data as bytes"),
    (_bad(data="abc"), MalformedMessage, "data as bytes"),
    (_bad(data=np.zeros(144, np.float32)), MalformedMessage, "uint8"),
])
def test_bad_raw_images_raise_the_matching_input_error(msg, error, words):
    with pytest.raises(error) as info:
        decode_image(msg, TOPIC)
    assert words in str(info.value) and str(info.value).endswith(f"on {TOPIC}")
    assert info.value.topic == TOPIC and info.value.cause == error.cause


def test_missing_field_is_malformed():
    msg = image_msg(RGB, "rgb8")
    del msg.step
    with pytest.raises(MalformedMessage, match="no field 'step'"):
        decode_image(msg, TOPIC)


@pytest.mark.parametrize("msg, error", [
    (compressed_msg(b""), EmptyImage),
    (compressed_msg(b"\xff\xd8\xff\xe0 definitely not a jpeg"), CorruptCompressed),
    (compressed_msg(bytes(100), "16UC1; compressedDepth png"), UnsupportedEncoding),
    (compressed_msg(b"abc", None), MalformedMessage),
])
def test_bad_compressed_images_raise_the_matching_input_error(msg, error):
    with pytest.raises(error, match="/camera/image_raw/compressed"):
        decode_compressed(msg, "/camera/image_raw/compressed")


def test_truncated_jpeg_is_reported_as_corrupt():
    _, buf = cv2.imencode(".jpg", RGB)
    with pytest.raises(CorruptCompressed):
        decode_compressed(compressed_msg(buf.tobytes()[:20]), TOPIC)


def test_depth_topic_rejects_colour_encodings():
    with pytest.raises(UnsupportedEncoding,
                       match="expected encoding 16UC1/32FC1, got 'rgb8' on /d"):
        decode_metric_depth(image_msg(RGB, "rgb8"), "/d")


def test_camera_info_with_zero_focal_length_is_malformed():
    k = np.array([[0.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    with pytest.raises(MalformedMessage, match="fx, fy > 0"):
        decode_camera_info(camera_info_msg(k, 480, 640), "/ci")


def test_every_input_error_is_a_value_error_with_a_cause_key():
    causes = {cls.cause for cls in InputError.__subclasses__()}
    assert len(causes) == len(InputError.__subclasses__())
    assert all(issubclass(cls, ValueError) for cls in InputError.__subclasses__())


def test_png_with_a_corrupt_chunk_length_is_refused_before_decoding():
    # without the check libpng allocates ~3 GB and reads for seconds on this payload
    payload = bytearray(cv2.imencode(".png", RGB)[1].tobytes())
    at = payload.index(b"IDAT") - 4
    payload[at:at + 4] = (0xC09A0022).to_bytes(4, "big")
    with pytest.raises(CorruptCompressed, match="beyond the"):
        decode_compressed(compressed_msg(bytes(payload), "png"), TOPIC)


def test_jpeg_claiming_a_gigapixel_frame_is_refused_before_decoding():
    payload = bytearray(cv2.imencode(".jpg", RGB)[1].tobytes())
    sof = payload.index(b"\xff\xc0")
    payload[sof + 5:sof + 9] = (30000).to_bytes(2, "big") + (30000).to_bytes(2, "big")
    with pytest.raises(ImageTooLarge, match="30000×30000"):
        decode_compressed(compressed_msg(bytes(payload)), TOPIC)


def test_payloads_other_than_jpeg_or_png_are_refused():
    bmp = cv2.imencode(".bmp", RGB)[1].tobytes()
    with pytest.raises(CorruptCompressed, match="expected a JPEG or PNG payload"):
        decode_compressed(compressed_msg(bmp, "bmp"), TOPIC)
