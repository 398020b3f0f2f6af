"""Fuzz the conversion layer.

Malformed messages may only ever raise InputError (with the topic), and whatever decodes must be
consistent with the message's own fields.
"""
from types import SimpleNamespace

import cv2
from hcdp_ros.conversions import (
    COLOR_ENCODINGS,
    decode_compressed,
    decode_image,
    decode_metric_depth,
    InputError,
)
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import numpy as np

TOPIC = "/fuzz/image"
BYTES_PER_PIXEL = {**COLOR_ENCODINGS, "16UC1": 2, "32FC1": 4}

junk = st.one_of(st.none(), st.text(max_size=4), st.floats(allow_nan=True), st.booleans(),
                 st.integers(min_value=-(2**70), max_value=2**70),
                 st.lists(st.integers(0, 255), max_size=4))
IMAGE_DEFECTS = ("unknown_encoding", "junk_encoding", "zero_size", "negative_size", "huge_size",
                 "junk_size",
                 "short_step", "junk_step", "truncated", "junk_data", "wrong_dtype",
                 "junk_bigendian",
                 "missing_field")


@st.composite
def image_messages(draw, encodings=tuple(BYTES_PER_PIXEL)):
    """Draw a valid Image message with zero to three defects.

    Any supported encoding, padded rows.
    """
    encoding = draw(st.sampled_from(encodings))
    bpp = BYTES_PER_PIXEL[encoding]
    height, width = draw(st.integers(1, 9)), 2 * draw(st.integers(1, 5))
    step = width * bpp + draw(st.integers(0, 6))
    data = draw(st.binary(min_size=step * height, max_size=step * height + 8))
    msg = SimpleNamespace(height=height, width=width, encoding=encoding,
                          is_bigendian=draw(st.integers(0, 1)),
                          step=step, data=data)
    dim = st.sampled_from(["height", "width"])
    for defect in draw(st.lists(st.sampled_from(IMAGE_DEFECTS), max_size=3, unique=True)):
        if defect == "unknown_encoding":
            msg.encoding = draw(st.sampled_from(["", "8UC3", "rgb16", "RGB8",
                                                 "bayer_rggb8"]) | st.text(max_size=6))
        elif defect == "junk_encoding":
            msg.encoding = draw(junk)
        elif defect == "zero_size":
            setattr(msg, draw(dim), 0)
        elif defect == "negative_size":
            setattr(msg, draw(dim), draw(st.integers(-(2**40), -1)))
        elif defect == "huge_size":
            setattr(msg, draw(dim), draw(st.integers(10, 2**40)))
        elif defect == "junk_size":
            setattr(msg, draw(dim), draw(junk))
        elif defect == "short_step":
            msg.step = draw(st.integers(0, max(0, width * bpp - 1)))
        elif defect == "junk_step":
            msg.step = draw(junk | st.integers(-(2**63), 2**64))
        elif defect == "truncated":
            msg.data = data[: draw(st.integers(0, max(0, step * height - 1)))]
        elif defect == "junk_data":
            msg.data = draw(junk)
        elif defect == "wrong_dtype":
            msg.data = draw(st.sampled_from([np.zeros(len(data), np.uint16),
                                             np.zeros((2, len(data)), np.uint8),
                                             np.zeros(len(data), np.float32)]))
        elif defect == "junk_bigendian":
            msg.is_bigendian = draw(junk)
        else:
            delattr(msg,
                    draw(st.sampled_from(["height", "width", "encoding", "step", "data",
                                          "is_bigendian"])))
    return msg


def _valid_payload(kind: str) -> bytes:
    tile = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    return cv2.imencode(kind, tile)[1].tobytes()


PAYLOADS = {".jpg": _valid_payload(".jpg"), ".png": _valid_payload(".png")}
COMPRESSED_DEFECTS = ("truncated", "flipped", "random", "empty", "junk_data", "junk_format",
                      "depth_format")


@st.composite
def compressed_messages(draw):
    """Draw a real JPEG/PNG CompressedImage with zero to two defects.

    The defects: truncation, byte flips, junk, …
    """
    data = bytearray(PAYLOADS[draw(st.sampled_from(sorted(PAYLOADS)))])
    msg = SimpleNamespace(format=draw(st.sampled_from(["jpeg", "png", "", "rgb8; jpeg compressed "
                                                                          "bgr8"])), data=None)
    for defect in draw(st.lists(st.sampled_from(COMPRESSED_DEFECTS), max_size=2, unique=True)):
        if defect == "truncated":
            data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
        elif defect == "flipped":
            for _ in range(draw(st.integers(1, 8))):
                if data:
                    data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif defect == "random":
            data = bytearray(draw(st.binary(min_size=1, max_size=64)))
        elif defect == "empty":
            data = bytearray()
        elif defect == "junk_data":
            msg.data = draw(junk)
        elif defect == "junk_format":
            msg.format = draw(junk)
        else:
            msg.format = "16UC1; compressedDepth png"
    if msg.data is None:
        msg.data = bytes(data)
    return msg


def _check(decode, msg):
    try:
        out = decode(msg, TOPIC)
    except InputError as err:
        assert err.topic == TOPIC and str(err).endswith(f"on {TOPIC}") and err.cause
        return False
    return out


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_messages())
def test_fuzzed_raw_images_raise_only_input_errors_and_decode_consistently(msg):
    out = _check(decode_image, msg)
    if out is not False:
        assert out.pixels.shape[:2] == (msg.height, msg.width)
        assert out.pixels.dtype == np.uint8 and out.encoding in ("rgb8", "bgr8", "mono8")
        assert msg.step >= msg.width * COLOR_ENCODINGS[msg.encoding]
        assert len(memoryview(msg.data).cast("B")) >= msg.step * msg.height


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_messages())
def test_fuzzed_depth_images_raise_only_input_errors_and_decode_consistently(msg):
    out = _check(decode_metric_depth, msg)
    if out is not False:
        assert out.shape == (msg.height, msg.width) and out.dtype == np.float32
        assert np.all(np.isnan(out) | (out > 0))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compressed_messages())
def test_fuzzed_compressed_images_raise_only_input_errors(msg):
    out = _check(decode_compressed, msg)
    if out is not False:
        assert out.pixels.ndim == 3 and out.pixels.shape[2] == 3 and out.encoding == "bgr8"
