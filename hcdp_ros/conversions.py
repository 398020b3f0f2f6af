"""ROS-free decoding of sensor_msgs/Image- and CompressedImage-like messages.

A message is anything with the ROS fields as attributes: ``height, width, encoding, is_bigendian,
step, data`` (Image) or ``format, data`` (CompressedImage). ``data`` may be ``bytes``, an
``array.array('B')`` (rclpy) or a numpy uint8 array (rosbags). Raw colour images come back as
zero-copy numpy views of ``data`` whenever the layout allows it (rgb8, bgr8, mono8; rgba8/bgra8 as
a channel-sliced view), so the caller must keep the message alive while it uses the pixels.

Every malformed message raises an :class:`InputError` subclass naming the topic and the cause;
nothing else escapes this module for a bad message.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
from hcdp_ros.messages import CameraInfoFields, RoiFields
import numpy as np


class InputError(ValueError):
    """A message the node cannot use. ``cause`` is a short, stable key (one log line per cause)."""

    cause = "bad_input"

    def __init__(self, detail: str, topic: str):
        super().__init__(f"{detail} on {topic}")
        self.detail = detail
        self.topic = topic


class MalformedMessage(InputError):
    """A field is missing or has the wrong type or a negative value."""

    cause = "malformed_message"


class UnsupportedEncoding(InputError):
    """An encoding or compressed format this node does not decode."""

    cause = "unsupported_encoding"


class EmptyImage(InputError):
    """Zero height or width, or no data."""

    cause = "empty_image"


class SizeMismatch(InputError):
    """``step`` too small for the width, or ``data`` shorter than ``step × height`` (truncated)."""

    cause = "size_mismatch"


class CorruptCompressed(InputError):
    """A CompressedImage payload that the codec cannot decode."""

    cause = "corrupt_compressed"


class ImageTooLarge(InputError):
    """More pixels than ``max_input_pixels``: refused from the header, before any decoding."""

    cause = "image_too_large"


class InvalidDepth(InputError):
    """A metric depth image without enough finite, positive values to use."""

    cause = "invalid_depth"


class MissingDepth(InputError):
    """No metric depth image close enough in time to the colour image."""

    cause = "no_metric_depth"


_BAYER = ("rggb", "bggr", "gbrg", "grbg")
# encoding -> bytes per pixel, for the colour inputs the node accepts
COLOR_ENCODINGS: dict[str, int] = {
    "rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4,
    "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2,
    "rgb16": 6, "bgr16": 6, "mono16": 2, "rgba16": 8, "bgra16": 8,
    **{f"bayer_{p}8": 1 for p in _BAYER}, **{f"bayer_{p}16": 2 for p in _BAYER},
}
# a robot camera sends at most this many pixels; more is refused before decoding (a header can
# claim any size: 8000×8000 from a 600-byte JPEG would cost 192 MB and many seconds)
DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096
_ENCODING_SHOWN = 32  # characters of a refused encoding/format string that reach the log
# encoding -> (numpy dtype, metres per unit) for the metric depth input (REP 118)
DEPTH_ENCODINGS: dict[str, tuple[str, float]] = {"16UC1": ("u2", 1e-3), "32FC1": ("f4", 1.0)}

_YUV_TO_RGB = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}
# OpenCV names a Bayer pattern after the second row (cv_bridge's mapping): ROS rggb = OpenCV BG
_BAYER_TO_RGB = {
    "rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB,
}
_BAYER_ALL = frozenset(e for e in COLOR_ENCODINGS if e.startswith("bayer_"))
_MAX_SIDE = 1 << 15
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# start-of-frame markers (not DHT/JPG/DAC)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class DecodedImage:
    """Pixels ready for the predictor: ``H×W×3`` for rgb8/bgr8, ``H×W`` for mono8 (uint8)."""

    pixels: np.ndarray
    encoding: str

    def to_rgb(self) -> np.ndarray:
        """Return a contiguous uint8 ``H×W×3`` RGB copy (for visualisation)."""
        if self.encoding == "rgb8":
            return np.ascontiguousarray(self.pixels)
        if self.encoding == "bgr8":
            return cv2.cvtColor(np.ascontiguousarray(self.pixels), cv2.COLOR_BGR2RGB)
        return cv2.cvtColor(np.ascontiguousarray(self.pixels), cv2.COLOR_GRAY2RGB)


def shown(text: str) -> str:
    """``text`` quoted and capped for a log line.

    A newline or a megabyte of junk in a message field cannot forge or flood the log.
    """
    if len(text) <= _ENCODING_SHOWN:
        return repr(text)
    return f"{text[:_ENCODING_SHOWN]!r}… ({len(text)} characters)"


def _field(msg: Any, name: str, topic: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError:
        raise MalformedMessage(f"message has no field '{name}'", topic) from None


def _int_field(msg: Any, name: str, topic: str) -> int:
    value = _field(msg, name, topic)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise MalformedMessage(f"expected integer {name}, got {type(value).__name__}", topic)
    if value < 0:
        raise MalformedMessage(f"expected {name} >= 0, got {value}", topic)
    return int(value)


def _data_bytes(msg: Any, topic: str) -> np.ndarray:
    """``msg.data`` as a 1-D uint8 numpy view (no copy)."""
    data = _field(msg, "data", topic)
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise MalformedMessage(
                f"expected data as a 1-D uint8 array, got {data.dtype} with shape "
                f"{data.shape}", topic
            )
        return data if data.flags.c_contiguous else np.ascontiguousarray(data)
    if isinstance(data, (str, list, tuple)) or data is None:
        raise MalformedMessage(f"expected data as bytes, got {type(data).__name__}", topic)
    try:
        view = memoryview(data)
    except TypeError:
        raise MalformedMessage("expected data as bytes, got "
                               f"{type(data).__name__}", topic) from None
    if view.itemsize != 1 or view.ndim != 1:
        raise MalformedMessage(
            f"expected data as bytes, got a buffer of format {view.format!r} and shape "
            f"{view.shape}", topic
        )
    return np.frombuffer(view, dtype=np.uint8)


def _image_header(msg: Any, topic: str, accepted: tuple[str, ...],
                  max_pixels: int) -> tuple[int, int, str, int, bool]:
    encoding = _field(msg, "encoding", topic)
    if not isinstance(encoding, str):
        raise MalformedMessage("expected encoding as a string, got "
                               f"{type(encoding).__name__}", topic)
    height = _int_field(msg, "height", topic)
    width = _int_field(msg, "width", topic)
    step = _int_field(msg, "step", topic)
    bigendian = _field(msg, "is_bigendian", topic)
    if not isinstance(bigendian, (bool, int, np.integer, np.bool_)):
        raise MalformedMessage("expected integer is_bigendian, got "
                               f"{type(bigendian).__name__}", topic)
    if encoding not in accepted:
        raise UnsupportedEncoding(
            f"expected encoding {_accepted_text(accepted)}, got "
            f"{shown(encoding) if encoding else '(empty)'}", topic)
    if height == 0 or width == 0:
        raise EmptyImage(f"expected a non-empty image, got {width}×{height}", topic)
    if height > _MAX_SIDE or width > _MAX_SIDE:
        raise SizeMismatch(f"expected width and height <= {_MAX_SIDE}, got "
                           f"{width}×{height}", topic)
    _check_pixels(width, height, max_pixels, topic)
    return height, width, encoding, step, bool(bigendian)


def _accepted_text(accepted: tuple[str, ...]) -> str:
    """Return the accepted encodings for a message, the 16-bit and Bayer families folded."""
    plain = [e for e in accepted if not (e.startswith("bayer_") or e.endswith("16"))]
    text = "/".join(plain)
    if len(plain) < len(accepted):
        text += " (also rgb16/bgr16/mono16/rgba16/bgra16, bayer_rggb/bggr/gbrg/grbg 8 or 16)"
    return text


def _check_pixels(width: int, height: int, max_pixels: int, topic: str) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(f"expected at most {max_pixels} pixels (max_input_pixels), got "
                            f"{width}×{height} = {width * height}", topic)


def _rows(data: np.ndarray, height: int, width: int, step: int, bpp: int, encoding: str,
          topic: str) -> np.ndarray:
    """Return a strided ``[H, W, bpp]`` uint8 view of ``data``.

    The view honours row padding (``step``).
    """
    row_bytes = width * bpp
    if step < row_bytes:
        raise SizeMismatch(f"expected step >= {row_bytes} for {width} px of {encoding}, got "
                           f"{step}", topic)
    needed = step * height
    if data.size < needed:
        raise SizeMismatch(
            f"expected at least {needed} data bytes for {width}×{height} {encoding} with step "
            f"{step}, got {data.size} (truncated)", topic
        )
    # writeable only if the message's buffer is (rclpy's array('B') and rosbags' arrays are)
    return np.lib.stride_tricks.as_strided(data, shape=(height, width, bpp),
                                           strides=(step, bpp, 1))


def decode_image(msg: Any, topic: str,
                 max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> DecodedImage:
    """Decode a sensor_msgs/Image-like message for the predictor.

    rgb8, bgr8 and mono8 are zero-copy views; rgba8/bgra8 are views with the alpha channel sliced
    off; 16-bit rgb16/bgr16/mono16/rgba16/bgra16 keep their high byte (value ÷ 256, a view);
    yuv422 (UYVY), uyvy, yuv422_yuy2, yuyv and bayer_{rggb,bggr,gbrg,grbg}{8,16} are converted to
    rgb8 (one copy). More than ``max_pixels`` pixels is refused before the data is touched.
    """
    height, width, encoding, step, bigendian = _image_header(msg, topic, tuple(COLOR_ENCODINGS),
                                                             max_pixels)
    bpp = COLOR_ENCODINGS[encoding]
    if encoding in _YUV_TO_RGB and width % 2:
        raise SizeMismatch(f"expected an even width for {encoding}, got {width}", topic)
    if encoding in _BAYER_ALL and (width % 2 or height % 2):
        raise SizeMismatch(f"expected an even width and height for {encoding}, got "
                           f"{width}×{height}", topic)
    pixels = _rows(_data_bytes(msg, topic), height, width, step, bpp, encoding, topic)
    if encoding.endswith("16"):
        # the high byte of each 16-bit value: byte 1 of a little-endian pair, byte 0 of a big one
        pixels = pixels[:, :, (0 if bigendian else 1)::2]
        encoding = encoding[:-2] + "8"
    if encoding in ("rgb8", "bgr8"):
        return DecodedImage(pixels, encoding)
    if encoding == "mono8":
        return DecodedImage(pixels[:, :, 0], encoding)
    if encoding == "rgba8":
        return DecodedImage(pixels[:, :, :3], "rgb8")
    if encoding == "bgra8":
        return DecodedImage(pixels[:, :, :3], "bgr8")
    if encoding.startswith("bayer_"):
        mosaic = np.ascontiguousarray(pixels[:, :, 0])
        return DecodedImage(cv2.cvtColor(mosaic, _BAYER_TO_RGB[encoding[6:10]]), "rgb8")
    rgb = cv2.cvtColor(np.ascontiguousarray(pixels), _YUV_TO_RGB[encoding])
    return DecodedImage(rgb, "rgb8")


def _png_size(payload: bytes, topic: str) -> tuple[int, int]:
    """(width, height) from IHDR, after checking that every chunk fits in the payload.

    A corrupt chunk length otherwise makes libpng allocate and read gigabytes.
    """
    pos, size = 8, None
    while pos + 8 <= len(payload):
        length = int.from_bytes(payload[pos:pos + 4], "big")
        kind = payload[pos + 4:pos + 8]
        if pos + 12 + length > len(payload):
            raise CorruptCompressed(f"PNG chunk {kind!r} claims {length} bytes, beyond the "
                                    f"{len(payload)}-byte payload", topic)
        if kind == b"IHDR" and length >= 8:
            size = (int.from_bytes(payload[pos + 8:pos + 12], "big"),
                    int.from_bytes(payload[pos + 12:pos + 16], "big"))
        pos += 12 + length
        if kind == b"IEND":
            break
    if size is None:
        raise CorruptCompressed("PNG payload without an IHDR chunk", topic)
    return size


def _jpeg_size(payload: bytes, topic: str) -> tuple[int, int]:
    """(width, height) from the first start-of-frame segment (markers are walked, not pixels)."""
    pos = 2
    while pos + 4 <= len(payload):
        if payload[pos] != 0xFF:
            raise CorruptCompressed(f"JPEG marker expected at byte {pos}, got "
                                    f"0x{payload[pos]:02x}", topic)
        marker = payload[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_SOF and pos + 9 <= len(payload):
            return (int.from_bytes(payload[pos + 7:pos + 9], "big"),
                    int.from_bytes(payload[pos + 5:pos + 7], "big"))
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + int.from_bytes(payload[pos + 2:pos + 4], "big")
    raise CorruptCompressed("JPEG payload without a frame header", topic)


def _check_compressed_size(payload: bytes, fmt: str, topic: str, max_pixels: int) -> None:
    """Refuse non-JPEG/PNG payloads and images above ``max_pixels`` from the header alone."""
    if payload.startswith(_PNG_SIGNATURE):
        width, height = _png_size(payload, topic)
    elif payload.startswith(b"\xff\xd8"):
        width, height = _jpeg_size(payload, topic)
    else:
        raise CorruptCompressed(
            f"expected a JPEG or PNG payload for format {shown(fmt)}, got {payload[:4]!r}…",
            topic)
    if width == 0 or height == 0:
        raise CorruptCompressed(f"expected a non-empty image, the header says {width}×{height}",
                                topic)
    _check_pixels(width, height, max_pixels, topic)


def decode_compressed(msg: Any, topic: str,
                      max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> DecodedImage:
    """Decode a sensor_msgs/CompressedImage-like message to bgr8.

    The message is JPEG or PNG, as image_transport sends. ``format`` follows image_transport
    (``"jpeg"``, ``"rgb8; jpeg compressed bgr8"``); compressedDepth payloads are refused (they are
    depth, not colour). The header is read before decoding and more than ``max_pixels`` pixels is
    refused (:class:`ImageTooLarge`), so a decompression bomb costs microseconds, not gigabytes.
    """
    fmt = _field(msg, "format", topic)
    if not isinstance(fmt, str):
        raise MalformedMessage(f"expected format as a string, got {type(fmt).__name__}", topic)
    if "compresseddepth" in fmt.lower():
        raise UnsupportedEncoding(f"expected a colour format (jpeg/png), got {shown(fmt)}", topic)
    data = _data_bytes(msg, topic)
    if data.size == 0:
        raise EmptyImage("expected a compressed payload, got 0 bytes", topic)
    _check_compressed_size(data.tobytes(), fmt, topic, max_pixels)
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as err:
        raise CorruptCompressed(f"cannot decode {data.size} bytes of {shown(fmt)}: {err}",
                                topic) from None
    if bgr is None or bgr.size == 0:
        raise CorruptCompressed(f"cannot decode {data.size} bytes of {shown(fmt)}", topic)
    return DecodedImage(bgr, "bgr8")


def decode_metric_depth(msg: Any, topic: str,
                        max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """Decode a REP 118 depth image (16UC1 millimetres or 32FC1 metres) to float32 metres.

    Zero, negative and non-finite readings become NaN (REP 118: no reading). Always a new array.
    """
    height, width, encoding, step, bigendian = _image_header(msg, topic, tuple(DEPTH_ENCODINGS),
                                                             max_pixels)
    kind, metres_per_unit = DEPTH_ENCODINGS[encoding]
    itemsize = int(kind[1])
    raw = _rows(_data_bytes(msg, topic), height, width, step, itemsize, encoding, topic)
    # view the per-pixel byte groups as one scalar each, honouring the message's byte order
    dtype = np.dtype(("<" if not bigendian else ">") + kind)
    values = np.ascontiguousarray(raw).view(dtype)[:, :, 0]
    depth = values.astype(np.float32)
    if metres_per_unit != 1.0:
        depth *= np.float32(metres_per_unit)
    depth[~((depth > 0) & np.isfinite(depth))] = np.nan
    return depth


def decode_float_image(msg: Any, channels: int, topic: str,
                       max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """Decode a 32FC<channels> Image (e.g. ground truth in a bag) as float32.

    ``H×W`` (1 channel) or ``H×W×C``, honouring ``step`` and the byte order. Always a new array.
    """
    encoding = f"32FC{channels}"
    height, width, _, step, bigendian = _image_header(msg, topic, (encoding,), max_pixels)
    raw = _rows(_data_bytes(msg, topic), height, width, step, 4 * channels, encoding, topic)
    dtype = np.dtype((">" if bigendian else "<") + "f4")
    values = np.ascontiguousarray(raw).view(dtype).astype(np.float32)
    return values[..., 0] if channels == 1 else values.reshape(height, width, channels)


def _float_array(msg: Any, name: str, size: int | None, topic: str) -> np.ndarray:
    value = _field(msg, name, topic)
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise MalformedMessage(f"expected {name} as numbers, got "
                               f"{type(value).__name__}", topic) from None
    if size is not None and array.size != size:
        raise MalformedMessage(f"expected {size} values in {name}, got {array.size}", topic)
    return array


def decode_camera_info(msg: Any, topic: str) -> CameraInfoFields:
    """Validate a sensor_msgs/CameraInfo-like message.

    The fields are ``header, height, width, distortion_model, d, k, r, p, binning_x, binning_y,
    roi``; K must be finite with positive focal lengths. The result keeps the message's header (the
    node re-stamps it per output frame).
    """
    height = _int_field(msg, "height", topic)
    width = _int_field(msg, "width", topic)
    if height == 0 or width == 0:
        raise EmptyImage(f"expected a calibrated image size, got {width}×{height}", topic)
    model = _field(msg, "distortion_model", topic)
    if not isinstance(model, str):
        raise MalformedMessage("expected distortion_model as a string, got "
                               f"{type(model).__name__}", topic)
    k = _float_array(msg, "k", 9, topic).reshape(3, 3)
    if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise MalformedMessage("expected finite K with fx, fy > 0, got "
                               f"{k.reshape(-1).tolist()}", topic)
    roi = _field(msg, "roi", topic)
    x_offset, y_offset, roi_height, roi_width = (
        _int_field(roi, n, topic) for n in ("x_offset", "y_offset", "height", "width"))
    return CameraInfoFields(
        header=_field(msg, "header", topic), height=height, width=width, distortion_model=model,
        d=_float_array(msg, "d", None, topic), k=k.reshape(-1),
        r=_float_array(msg, "r", 9, topic), p=_float_array(msg, "p", 12, topic),
        binning_x=_int_field(msg, "binning_x", topic),
        binning_y=_int_field(msg, "binning_y", topic),
        roi=RoiFields(x_offset, y_offset, roi_height, roi_width,
                      bool(_field(roi, "do_rectify", topic))),
    )
