"""`hcdp make-sample-bag`: a ROS 2 bag (rosbags, no ROS install) from one generated sequence.

Topics (header.frame_id `camera_color_optical_frame`, stamps start + index / fps):
  /camera/color/image_raw     sensor_msgs/msg/Image rgb8
  /camera/color/camera_info   sensor_msgs/msg/CameraInfo (plumb_bob, zero distortion)
  /ground_truth/depth         sensor_msgs/msg/Image 32FC1, metres, NaN where there is no human
  /ground_truth/normals       sensor_msgs/msg/Image 32FC3, unit, camera optical frame
  /ground_truth/mask          sensor_msgs/msg/Image 32FC1 in [0, 1]
  /ground_truth/flow_fwd      sensor_msgs/msg/Image 32FC2, pixels (dx, dy) to the next frame
Messages are zstd-compressed per message (rosbag2's standard `zstd` compression; rosbags reads it).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import shutil
import sys

from hcdp_training.data.format import META, read_frame, read_meta
import numpy as np

FRAME_ID = "camera_color_optical_frame"
START_NS = 1_700_000_000 * 10**9
TOPICS = {
    "/camera/color/image_raw": "sensor_msgs/msg/Image",
    "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
    "/ground_truth/depth": "sensor_msgs/msg/Image",
    "/ground_truth/normals": "sensor_msgs/msg/Image",
    "/ground_truth/mask": "sensor_msgs/msg/Image",
    "/ground_truth/flow_fwd": "sensor_msgs/msg/Image",
}
_ENCODINGS = {("uint8", 3): "rgb8", ("float32", 1): "32FC1", ("float32", 2): "32FC2",
              ("float32", 3): "32FC3"}


def _header(types, stamp_ns: int):
    Time, Header = types["builtin_interfaces/msg/Time"], types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=FRAME_ID)


def image_message(types, header, array: np.ndarray):
    """sensor_msgs/Image for uint8 HxWx3 (rgb8) or float32 HxW / HxWxC (32FC1/2/3).

    The data is little-endian.
    """
    channels = 1 if array.ndim == 2 else array.shape[2]
    encoding = _ENCODINGS.get((array.dtype.name, channels))
    if encoding is None:
        raise ValueError(f"expected uint8 HxWx3 or float32 HxW[xC<=3], got {array.dtype} "
                         f"{array.shape}")
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    h, w = data.shape[:2]
    return types["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding=encoding,
                                          is_bigendian=0,
                                          step=w * channels * data.itemsize,
                                          data=data.reshape(-1).view(np.uint8))


def camera_info_message(types, header, K: np.ndarray, width: int, height: int):
    P = np.zeros((3, 4))
    P[:, :3] = K
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
    return types["sensor_msgs/msg/CameraInfo"](
        header=header, height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5),
        k=K.astype(np.float64).reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0,
        binning_y=0,
        roi=roi)


def write_bag(sequence: Path, out: Path) -> int:
    """Write the bag for `sequence` at `out` (a new folder); returns the number of frames."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, Writer
    from rosbags.typesys import Stores, get_typestore

    meta = read_meta(sequence)
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    types = typestore.types
    writer = Writer(out, version=9)
    writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    with writer:
        conns = {t: writer.add_connection(t, m, typestore=typestore) for t, m in TOPICS.items()}
        for index in range(int(meta["frames"])):
            f = read_frame(sequence, index)
            stamp = START_NS + round(index * 1e9 / float(meta["fps"]))
            header = _header(types, stamp)
            messages = {
                "/camera/color/image_raw": image_message(types, header, f["rgb"]),
                "/camera/color/camera_info": camera_info_message(types, header, f["K"],
                                                                 f["rgb"].shape[1],
                                                                 f["rgb"].shape[0]),
                "/ground_truth/depth": image_message(types, header, f["depth"]),
                "/ground_truth/normals": image_message(types, header, f["normal"]),
                "/ground_truth/mask": image_message(types, header, f["mask"]),
                "/ground_truth/flow_fwd": image_message(types, header, f["flow_fwd"]),
            }
            for topic, msg in messages.items():
                writer.write(conns[topic], stamp, typestore.serialize_cdr(msg, TOPICS[topic]))
    return int(meta["frames"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequence", required=True,
                        help="a generated sequence folder (holding meta.json)")
    parser.add_argument("--out", required=True, help="bag folder to create (must not exist)")


def run(args: argparse.Namespace) -> int:
    out, sequence = Path(args.out), Path(args.sequence)
    if out.exists():
        print(f"hcdp make-sample-bag: {out} exists; rosbag2 writers only create new bags",
              file=sys.stderr)
        return 2
    if not (sequence / META).is_file():
        print(f"hcdp make-sample-bag: --sequence {sequence}: expected a generated sequence folder "
              f"holding {META} (e.g. OUT/seq_00000 of `hcdp synth --out OUT`)", file=sys.stderr)
        return 2
    try:
        frames = write_bag(sequence, out)
    except (OSError, ValueError, KeyError) as err:  # a sequence folder with missing or bad frames
        print(f"hcdp make-sample-bag: cannot write {out} from {sequence}: "
              f"{type(err).__name__}: {err}", file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True)  # the bag is incomplete; it was not there before
        return 2
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"hcdp make-sample-bag: wrote {frames} frames x {len(TOPICS)} topics to {out} "
          f"({size / 1e6:.1f} MB)")
    return 0
