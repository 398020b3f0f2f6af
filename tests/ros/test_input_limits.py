"""Hostile and robot-camera inputs.

Decompression bombs, huge raw frames, Bayer and 16-bit encodings, and encoding strings that try to
forge log lines (issues 13 and 14).
"""
import json
from pathlib import Path
import subprocess
import sys
import time
import zlib

import cv2
from hcdp_ros.conversions import (
    decode_compressed,
    decode_image,
    decode_metric_depth,
    DEFAULT_MAX_INPUT_PIXELS,
    ImageTooLarge,
    SizeMismatch,
    UnsupportedEncoding,
)
from hcdp_ros.pipeline import decode_input
import numpy as np
import pytest
from tests.ros.fakes import compressed_msg, image_msg

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "/camera/image_raw"
SMALL = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)


def bomb_jpeg(side: int = 8000) -> bytes:
    """Return a ~600-byte JPEG whose frame header claims side×side pixels."""
    payload = bytearray(cv2.imencode(".jpg", SMALL)[1].tobytes())
    sof = payload.index(b"\xff\xc0")
    payload[sof + 5:sof + 9] = side.to_bytes(2, "big") + side.to_bytes(2, "big")
    return bytes(payload)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (len(data).to_bytes(4, "big") + kind + data
            + zlib.crc32(kind + data).to_bytes(4, "big"))


def bomb_png(side: int = 8000) -> bytes:
    """Return a valid PNG of side×side black rgb8 pixels.

    8000² compresses to ~190 kB of zlib data; a few rows are enough for the header to claim the
    full size.
    """
    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    rows = zlib.compress(bytes(16 * (1 + 3 * side)), 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows)
            + _chunk(b"IEND", b""))


@pytest.mark.parametrize("make, fmt", [(bomb_jpeg, "jpeg"), (bomb_png, "png")])
def test_a_header_claiming_8000x8000_is_refused_at_once(make, fmt):
    payload = make()
    assert len(payload) < 2000
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="8000×8000") as info:
        decode_input(compressed_msg(payload, fmt), True, TOPIC)
    assert time.perf_counter() - start < 0.05
    assert info.value.cause == "image_too_large" and str(info.value).endswith(f"on {TOPIC}")
    assert f"at most {DEFAULT_MAX_INPUT_PIXELS} pixels" in str(info.value)


_RSS_PROBE = """
import json, re, sys, time
sys.path.insert(0, {root!r})
from tests.ros.test_input_limits import bomb_jpeg, bomb_png
from tests.ros.fakes import compressed_msg
from hcdp_ros.conversions import InputError, decode_compressed
def peak_kb():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
payloads = [(bomb_jpeg(), "jpeg"), (bomb_png(), "png")]
# reset the peak: the imports' own peak does not count
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = peak_kb()
start = time.perf_counter()
for payload, fmt in payloads:
    try:
        decode_compressed(compressed_msg(payload, fmt), "/t", {limit})
    except InputError:
        pass
print(json.dumps({{"grew_kb": peak_kb() - before, "seconds": time.perf_counter() - start}}))
"""


def _probe(limit: int) -> dict:
    code = _RSS_PROBE.format(root=str(ROOT), limit=limit)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_bombs_allocate_nothing_large_in_a_fresh_process():
    # peak RSS (VmHWM, reset after the imports) of a fresh process: decoding 8000×8000 rgb adds
    # >= 192 MB
    result = _probe(DEFAULT_MAX_INPUT_PIXELS)
    assert result["grew_kb"] < 20_000, result
    assert result["seconds"] < 0.5, result


def test_the_probe_sees_the_allocation_when_the_limit_lets_the_bomb_through():
    # guards the test above: with a limit above 8000² the decoder really allocates the frame
    result = _probe(8000 * 8000)
    assert result["grew_kb"] > 150_000, result


def test_a_raw_image_above_the_limit_is_refused_before_its_data_is_read():
    msg = image_msg(SMALL, "rgb8")
    msg.height, msg.width, msg.step = 5000, 4000, 12000  # data is far too short: never read
    with pytest.raises(ImageTooLarge, match="4000×5000"):
        decode_image(msg, TOPIC)
    with pytest.raises(ImageTooLarge):
        decode_image(image_msg(SMALL, "rgb8"), TOPIC, max_pixels=63)
    assert decode_image(image_msg(SMALL, "rgb8"), TOPIC, max_pixels=64).pixels.shape == (8, 8, 3)
    depth = image_msg(np.ones((8, 8), np.float32), "32FC1")
    with pytest.raises(ImageTooLarge):
        decode_metric_depth(depth, "/d", max_pixels=10)


def test_compressed_limit_is_the_callers():
    payload = cv2.imencode(".png", SMALL)[1].tobytes()
    with pytest.raises(ImageTooLarge):
        decode_compressed(compressed_msg(payload, "png"), TOPIC, max_pixels=63)
    assert decode_compressed(compressed_msg(payload, "png"), TOPIC, 64).pixels.shape == (8, 8, 3)


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    channel = {"r": 0, "g": 1, "b": 2}
    out = np.zeros(rgb.shape[:2], rgb.dtype)
    for dy in range(2):
        for dx in range(2):
            out[dy::2, dx::2] = rgb[dy::2, dx::2, channel[pattern[2 * dy + dx]]]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_8_and_16_bit_demosaic_to_the_scene_colour(pattern):
    scene = np.empty((6, 8, 3), np.uint8)
    scene[...] = (200, 100, 30)  # a flat colour: every demosaicing recovers it exactly
    decoded = decode_image(image_msg(_mosaic(scene, pattern), f"bayer_{pattern}8"), TOPIC)
    assert decoded.encoding == "rgb8"
    np.testing.assert_array_equal(decoded.to_rgb(), scene)
    wide = _mosaic(scene.astype("<u2") * 256 + 77, pattern)
    decoded = decode_image(image_msg(wide, f"bayer_{pattern}16"), TOPIC)
    np.testing.assert_array_equal(decoded.to_rgb(), scene)


def test_bayer_needs_an_even_size():
    with pytest.raises(SizeMismatch, match="even width and height"):
        decode_image(image_msg(np.zeros((5, 8), np.uint8), "bayer_rggb8"), TOPIC)


@pytest.mark.parametrize("encoding, channels, expected", [
    ("mono16", 1, "mono8"), ("rgb16", 3, "rgb8"), ("bgr16", 3, "bgr8"), ("rgba16", 4, "rgb8"),
    ("bgra16", 4, "bgr8")])
@pytest.mark.parametrize("bigendian", [False, True])
def test_16_bit_images_keep_their_high_byte_in_either_byte_order(encoding, channels, expected,
                                                                 bigendian):
    values = np.random.default_rng(2).integers(0, 65536, (4, 6, channels)).astype(np.uint16)
    stored = values.astype(">u2" if bigendian else "<u2")
    msg = image_msg(stored if channels > 1 else stored[..., 0], encoding,
                    step=6 * 2 * channels + 4, bigendian=bigendian)
    decoded = decode_image(msg, TOPIC)
    assert decoded.encoding == expected
    high = (values >> 8).astype(np.uint8)
    np.testing.assert_array_equal(decoded.pixels, high[..., 0] if channels == 1 else high[..., :3])


@pytest.mark.parametrize("field, value", [("encoding", "rgb8\n[ERROR] [hcdp]: forged line"),
                                          ("encoding", "x" * 5000)])
def test_a_refused_encoding_is_quoted_and_capped_in_the_message(field, value):
    msg = image_msg(SMALL, "rgb8")
    setattr(msg, field, value)
    with pytest.raises(UnsupportedEncoding) as info:
        decode_image(msg, TOPIC)
    text = str(info.value)
    assert "\n" not in text and len(text) < 260
    assert repr(value[:32]) in text and "16" in text.split(", got")[0]


def test_a_refused_compressed_format_is_quoted_and_capped():
    fmt = "16UC1; compressedDepth\n[FATAL] forged" + "y" * 1000
    with pytest.raises(UnsupportedEncoding) as info:
        decode_compressed(compressed_msg(b"\x89PNG", fmt), TOPIC)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200
