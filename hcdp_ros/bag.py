"""`hcdp bag`: the node's pipeline over a recorded rosbag2, without ROS (the evaluator's tool).

Reads an image topic (sensor_msgs/Image or CompressedImage, told apart by the topic's type) and an
optional camera_info topic from a rosbag2 (sqlite3 or mcap, via the `rosbags` library), runs the
same StreamingPredictor and FrameProcessor as the live node with the node's default output
parameters, and writes a new bag with the node's topics and encodings under ``--namespace``
(``/hcdp/relative_depth``, ``/hcdp/normals``, ...). Every output message carries its input image's
header and bag timestamp. A message the node would skip (an
:class:`~hcdp_ros.conversions.InputError`, or bytes that do not deserialize) is skipped and
counted, never fatal.

Synchronisation: an image is processed once every message with a bag timestamp up to its own has
been read, so a camera_info or ground truth recorded at the same time (but stored after it) applies
to it.
Ground truth (``<gt-prefix>/depth``, ``/normals``, ``/mask``, ``/flow_fwd``) is matched to images
by header stamp.

Frames stream through: besides the current frame, only the previous one (for the pair metrics), the
contact sheet's few frames and one pixel row per frame (its x-t slice) are kept; at most one image
waits for the messages of its timestamp, even when every message of a bag shares one.

Every output path is checked before any work: nothing is ever written inside the input bag, an
existing output is replaced only with ``--overwrite``, ``--sheet`` needs an image extension OpenCV
writes, ``--video`` an ``.mp4`` and every parent folder must be creatable and writable.
"""
from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass
import json
import math
import os
from pathlib import Path
import shutil
import sys
import time
from typing import Any

import cv2
from hcdp_model.backends.base import BACKENDS, PRECISIONS
from hcdp_model.checkpoint import checkpoint_hash, CheckpointError, load_checkpoint
from hcdp_model.predictor import default_checkpoint, load_predictor, StreamingPredictor
from hcdp_model.threads import default_threads, set_threads
from hcdp_ros.bag_metrics import Baselines, finite_or_none, FrameRecord, GT_CHANNELS, StreamMetrics
from hcdp_ros.bag_pictures import ContactSheet, FrameView, SideBySideVideo
from hcdp_ros.conversions import (
    decode_camera_info,
    decode_float_image,
    InputError,
    MalformedMessage,
    SizeMismatch,
)
from hcdp_ros.messages import (
    DEFAULT_NAMESPACE,
    ImageFields,
    output_topic,
    TOPICS,
    VIZ_KEYS,
    VizRequest,
)
from hcdp_ros.params import DEFAULTS
from hcdp_ros.pipeline import (
    decode_input,
    FrameOutputs,
    FrameProcessor,
    OutputOptions,
    stamp_seconds,
)
from hcdp_training.evaluate import per_frame_model
import numpy as np
from rosbags.rosbag2 import (
    CompressionFormat,
    CompressionMode,
    Reader,
    StoragePlugin,
    Writer,
)
from rosbags.typesys import get_typestore, Stores
from tqdm import tqdm

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD = "sensor_msgs/msg/PointCloud2"
POINT_FIELD = "sensor_msgs/msg/PointField"
ROI = "sensor_msgs/msg/RegionOfInterest"
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
RESET_LOG_MAX = 20
FALLBACK_FPS = 15.0
# sensor_msgs definitions are the same in Humble and Jazzy; the output bag is written with these
STORE = get_typestore(Stores.ROS2_HUMBLE)


class BagError(Exception):
    """A problem with the command's inputs or outputs.

    For example a missing topic, an unreadable bag or an existing output.
    """


@dataclass(frozen=True)
class BagConfig:
    """Everything `hcdp bag` needs; `from_args` maps the command line onto it."""

    input_bag: Path
    output_bag: Path
    image_topic: str
    camera_info_topic: str | None = None
    checkpoint: str | None = None
    backend: str = DEFAULTS.backend
    precision: str = DEFAULTS.precision
    device: str = DEFAULTS.device
    window: int = DEFAULTS.window
    namespace: str = DEFAULT_NAMESPACE
    storage: str = "sqlite3"
    metrics: Path | None = None
    video: Path | None = None
    sheet: Path | None = None
    gt_prefix: str = "/ground_truth"
    viz: bool = True
    compression: str = "none"
    overwrite: bool = False
    threads: int = 1
    baselines: bool = True  # with --metrics: also score window 1, per frame and per frame + EMA
    mask_outputs: bool = True  # NaN depth/normals off the person (the node's mask_outputs)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BagConfig:
        optional = {name: None if getattr(args, name) is None else Path(getattr(args, name))
                    for name in ("metrics", "video", "sheet")}
        return cls(Path(args.input_bag), Path(args.output_bag), args.image_topic,
                   args.camera_info_topic,
                   args.checkpoint, args.backend, args.precision, args.device, args.window,
                   args.namespace,
                   args.storage, gt_prefix=args.gt_prefix.rstrip("/"), viz=not args.no_viz,
                   compression=args.compression, overwrite=args.overwrite, threads=args.threads,
                   baselines=not args.no_baselines, mask_outputs=not args.raw_maps, **optional)

    @property
    def visuals(self) -> bool:
        """The viz images are computed for the viz topics, the video or the sheet."""
        return self.viz or self.video is not None or self.sheet is not None


# --- output paths, checked before any work -------------------------------------------------------


VIDEO_SUFFIXES = (".mp4",)  # OpenCV's 'mp4v' encoder (SideBySideVideo)


def _protected(input_bag: Path) -> list[Path]:
    """Return what no output may touch.

    The input bag, and the bag folder of an input .db3/.mcap file.
    """
    path = input_bag.resolve()
    if path.is_file() and (path.parent / "metadata.yaml").is_file():
        return [path, path.parent]
    return [path]


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _check_parent(path: Path, flag: str) -> None:
    """Check that ``path``'s nearest existing ancestor is a folder this process can write into."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BagError(f"{flag} {path}: expected a folder above it, but {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BagError(f"{flag} {path}: {parent} is not writable")


def check_outputs(cfg: BagConfig) -> None:
    """Refuse, before any work, each output that would lose data or fail after the bag ran."""
    protected = _protected(cfg.input_bag)
    bag = cfg.output_bag.resolve()
    for root in protected:
        if _within(bag, root) or _within(root, bag):
            raise BagError(f"output bag {cfg.output_bag} would overlap the input bag "
                           f"{cfg.input_bag}; pick a path outside it")
    if cfg.output_bag.exists():
        if not cfg.overwrite:
            raise BagError(f"output {cfg.output_bag} exists; refusing to overwrite it (remove it, "
                           "pick another path or pass --overwrite)")
        if not (cfg.output_bag / "metadata.yaml").is_file():
            raise BagError(f"output {cfg.output_bag} exists and is not a rosbag2 folder (no "
                           "metadata.yaml); refusing to replace it, even with --overwrite")
    _check_parent(cfg.output_bag, "output bag")
    seen: dict[Path, str] = {}
    for flag, path in (("--metrics", cfg.metrics), ("--video", cfg.video), ("--sheet", cfg.sheet)):
        if path is None:
            continue
        resolved = path.resolve()
        if any(_within(resolved, root) for root in protected):
            raise BagError(f"{flag} {path} is inside the input bag {cfg.input_bag}; refusing to "
                           "write there (even with --overwrite)")
        if _within(resolved, bag):
            raise BagError(f"{flag} {path} is inside the output bag {cfg.output_bag}; pick a path "
                           "outside it")
        if resolved in seen:
            raise BagError(f"{flag} and {seen[resolved]} are the same file {path}")
        seen[resolved] = flag
        if flag == "--sheet" and not cv2.haveImageWriter(str(path)):
            raise BagError(f"--sheet {path}: expected an image file OpenCV writes (.png, .jpg, "
                           f"...), got {path.suffix or 'no extension'}")
        if flag == "--video" and path.suffix.lower() not in VIDEO_SUFFIXES:
            raise BagError(f"--video {path}: expected {' or '.join(VIDEO_SUFFIXES)}, got "
                           f"{path.suffix or 'no extension'}")
        if path.is_dir():
            raise BagError(f"{flag} {path} is a folder; expected a file path")
        if path.exists() and not cfg.overwrite:
            raise BagError(f"{flag} {path} exists; refusing to overwrite it (remove it, pick "
                           "another path or pass --overwrite)")
        _check_parent(path, flag)


# --- input --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputTopics:
    """The connections read from the input bag."""

    image: list[Any]
    compressed: bool
    camera_info: list[Any]
    ground_truth: dict[str, list[Any]]  # kind (GT_CHANNELS key) -> connections
    image_count: int

    def all_connections(self) -> list[Any]:
        return self.image + self.camera_info + [c for conns in self.ground_truth.values()
                                                for c in conns]


@contextmanager
def open_input(path: Path) -> Iterator[Reader]:
    """Yield an open rosbag2 reader, or raise a BagError saying why ``path`` is not one."""
    if not path.exists():
        raise BagError(f"input bag {path} does not exist")
    reader = None
    try:
        reader = Reader(path)
        reader.open()
    # noqa: BLE001 - rosbags and its sqlite/yaml/mcap layers raise many types
    except Exception as err:
        raise BagError(f"cannot read {path} as a rosbag2 (a bag folder with metadata.yaml, or a "
                       f".db3/.mcap file): {type(err).__name__}: {err}") from None
    try:
        yield reader
    finally:
        reader.close()


def _topic_listing(reader: Reader) -> str:
    return "; ".join(f"{name} ({info.msgtype}, {info.msgcount} messages)"
                     for name, info in sorted(reader.topics.items())) or "(no topics)"


def select_topics(reader: Reader, cfg: BagConfig) -> InputTopics:
    """Check that the requested topics exist with usable types.

    Ground truth only for ``--metrics``.
    """
    topics = reader.topics

    def need(name: str, types: tuple[str, ...]) -> Any:
        info = topics.get(name)
        if info is None:
            raise BagError(f"topic {name} is not in {cfg.input_bag}; the bag has: "
                           f"{_topic_listing(reader)}")
        if info.msgtype not in types:
            raise BagError(f"expected {' or '.join(types)} on {name}, got {info.msgtype}")
        return info

    image = need(cfg.image_topic, (IMAGE, COMPRESSED_IMAGE))
    camera = need(cfg.camera_info_topic,
                  (CAMERA_INFO,)).connections if cfg.camera_info_topic else []
    ground_truth = {}
    if cfg.metrics is not None:
        for kind in GT_CHANNELS:
            info = topics.get(f"{cfg.gt_prefix}/{kind}")
            if info is not None and info.msgtype == IMAGE:
                ground_truth[kind] = info.connections
    return InputTopics(image.connections, image.msgtype == COMPRESSED_IMAGE, camera, ground_truth,
                       image.msgcount)


def synchronised(messages: Iterable[tuple[Any, int, Any]],
                 image_topic: str) -> Iterator[tuple[Any, int, Any]]:
    """Yield ``messages`` (bag time order), each image after the other messages of its bag time.

    Each image is moved after the other messages of its bag timestamp, up to the next image: at
    most one image is held, whatever the bag's timestamps.
    """
    held: tuple[Any, int, Any] | None = None
    for item in messages:
        image = item[0].topic == image_topic
        if held is not None and (item[1] > held[1] or image):
            yield held
            held = None
        if image:
            held = item
        else:
            yield item
    if held is not None:
        yield held


def deserialize(raw: Any, msgtype: str, topic: str) -> Any:
    """Return a rosbags message of type ``msgtype``.

    Raise MalformedMessage for bytes that are not a valid ``msgtype``.
    """
    try:
        return STORE.deserialize_cdr(raw, msgtype)
    # noqa: BLE001 - corrupt CDR raises SerdeError, struct.error, IndexError, ...
    except Exception as err:
        raise MalformedMessage(f"cannot deserialize {msgtype} ({type(err).__name__}: "
                               f"{err})", topic) from None


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# --- output bag ---------------------------------------------------------------------------------


def _message(msgtype: str, source: Any, **override: Any) -> Any:
    """Return a rosbags message from one of the hcdp_ros.messages dataclasses.

    The dataclass and the message have the same field names.
    """
    values = {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
    values.update(override)
    return STORE.types[msgtype](**values)


class OutputBag:
    """A new rosbag2 receiving FrameOutputs as the node publishes them.

    The topics are under ``namespace``.
    """

    def __init__(self, path: Path, storage: str, namespace: str, viz: bool,
                 compression: str = "none"):
        self.writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
        # per message, as `ros2 bag record --compression-mode message` does
        if compression == "zstd":
            self.writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
        self.namespace = namespace
        self.viz = viz
        self.path = path
        self.connections: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()
        self.message_bytes = 0  # serialized (uncompressed) size of every message written

    def __enter__(self) -> OutputBag:
        self.writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()

    def write(self, outputs: FrameOutputs, timestamp: int) -> None:
        """Every output of one frame at bag time ``timestamp`` (the input image's)."""
        for key, image in outputs.images.items():
            if self.viz or key not in VIZ_KEYS:
                self._write(key, IMAGE, _message(IMAGE, image), timestamp)
        if outputs.points is not None:
            fields = [_message(POINT_FIELD, f) for f in outputs.points.fields]
            self._write("points", POINT_CLOUD,
                        _message(POINT_CLOUD, outputs.points, fields=fields), timestamp)
        if outputs.camera_info is not None:
            roi = _message(ROI, outputs.camera_info.roi)
            self._write("camera_info", CAMERA_INFO,
                        _message(CAMERA_INFO, outputs.camera_info, roi=roi), timestamp)

    def _write(self, key: str, msgtype: str, msg: Any, timestamp: int) -> None:
        topic = output_topic(key, self.namespace)
        if key not in self.connections:
            self.connections[key] = self.writer.add_connection(topic, msgtype, typestore=STORE)
        raw = STORE.serialize_cdr(msg, msgtype)
        self.writer.write(self.connections[key], timestamp, raw)
        self.counts[topic] += 1
        self.message_bytes += len(raw)

    def disk_bytes(self) -> int:
        """Return the bag's size on disk (after close)."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


# --- the run ------------------------------------------------------------------------------------


def _viz_tile(fields: ImageFields) -> np.ndarray:
    return fields.data.reshape(fields.height, fields.width, 3)


def _bag_fps(reader: Reader, image_count: int) -> float:
    """Estimate the image rate from the bag's time span (for the video)."""
    if image_count < 2 or reader.duration <= 0:
        return FALLBACK_FPS
    return float(np.clip((image_count - 1) * 1e9 / reader.duration, 1.0, 120.0))


def _model_info(cfg: BagConfig, predictor: StreamingPredictor) -> dict[str, Any]:
    checkpoint = Path(cfg.checkpoint) if cfg.checkpoint else default_checkpoint()
    try:
        digest: str | None = checkpoint_hash(checkpoint)
    except CheckpointError:  # an exported artefact (.onnx, .pt2, ...) rather than a checkpoint
        digest = None
    return {"checkpoint": str(checkpoint), "bundled_default": cfg.checkpoint is None,
            "checkpoint_sha256": digest,
            "backend": cfg.backend, "precision": cfg.precision, "device": cfg.device,
            "window": predictor.window,
            "resolution": predictor.resolution, "runtime": predictor.backend.describe()}


class BagRunner:
    """Feeds one input bag through the predictor into the output bag and the optional sinks."""

    def __init__(self, cfg: BagConfig, topics: InputTopics, predictor: StreamingPredictor,
                 out: OutputBag,
                 progress: tqdm):
        self.cfg = cfg
        self.topics = topics
        self.processor = FrameProcessor(predictor)
        visuals = VizRequest(cfg.visuals, cfg.visuals, cfg.visuals)
        self.options = OutputOptions.from_config(DEFAULTS, visuals, mask_outputs=cfg.mask_outputs)
        self.out = out
        self.progress = progress
        self.camera = None
        self.ground_truth: dict[int, dict[str, np.ndarray]] = {}
        self.gt_topics = {f"{cfg.gt_prefix}/{kind}": kind for kind in topics.ground_truth}
        self.metrics = StreamMetrics() if cfg.metrics is not None else None
        self.baselines: Baselines | None = None
        self.sheet = ContactSheet(topics.image_count) if cfg.sheet is not None else None
        self.video: SideBySideVideo | None = None
        self.read = 0
        self.written = 0
        self.skipped: Counter[str] = Counter()
        self.bad_messages: dict[str, Counter[str]] = defaultdict(Counter)
        self.reported: set[tuple[str, str]] = set()
        self.resets = 0
        self.reset_log: list[dict[str, Any]] = []
        self.inference_ms: list[float] = []
        self.frame_ms: list[float] = []
        self._continues = False

    def run(self, messages: Iterable[tuple[Any, int, Any]]) -> None:
        for conn, timestamp, raw in synchronised(messages, self.cfg.image_topic):
            if conn.topic == self.cfg.image_topic:
                self.on_image(conn.msgtype, timestamp, raw)
            elif conn.topic == self.cfg.camera_info_topic:
                self.on_camera_info(raw)
            else:
                self.on_ground_truth(conn.topic, raw)
        if self.metrics is not None:
            self.metrics.finish()
        if self.baselines is not None:
            self.baselines.finish()
        if self.video is not None:
            self.video.close()

    def _report(self, err: InputError) -> None:
        """Count a skipped message; say so once per topic and cause (the node's throttled log)."""
        if err.topic == self.cfg.image_topic:
            self.skipped[err.cause] += 1
        else:
            self.bad_messages[err.topic][err.cause] += 1
        if (err.topic, err.cause) not in self.reported:
            self.reported.add((err.topic, err.cause))
            tqdm.write(f"hcdp bag: skipped input: {err} (further {err.cause} on this topic "
                       "counted silently)",
                       file=sys.stderr)

    def on_camera_info(self, raw: Any) -> None:
        topic = self.cfg.camera_info_topic
        try:
            self.camera = decode_camera_info(deserialize(raw, CAMERA_INFO, topic), topic)
        except InputError as err:
            self._report(err)

    def on_ground_truth(self, topic: str, raw: Any) -> None:
        kind = self.gt_topics[topic]
        try:
            msg = deserialize(raw, IMAGE, topic)
            values = decode_float_image(msg, GT_CHANNELS[kind], topic)
        except InputError as err:
            self._report(err)
            return
        self.ground_truth.setdefault(stamp_ns(msg.header), {})[kind] = values

    def _take_ground_truth(self, stamp: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
        """Return this stamp's ground truth (of the image's size).

        It forgets that ground truth and anything older.
        """
        gt = self.ground_truth.pop(stamp, {})
        for old in [s for s in self.ground_truth if s < stamp]:
            del self.ground_truth[old]
        for kind, values in list(gt.items()):
            if values.shape[:2] != size:
                del gt[kind]
                self._report(SizeMismatch("expected ground truth of the image size "
                                          f"{size[1]}×{size[0]}, got "
                                          f"{values.shape[1]}×{values.shape[0]}",
                                          f"{self.cfg.gt_prefix}/{kind}"))
        return gt

    def on_image(self, msgtype: str, timestamp: int, raw: Any) -> None:
        index = self.read
        self.read += 1
        self.progress.update(1)
        topic = self.cfg.image_topic
        start = time.perf_counter()
        try:
            msg = deserialize(raw, msgtype, topic)
            image = decode_input(msg, self.topics.compressed, topic)
        except InputError as err:
            self._report(err)
            self._continues = False
            return
        outputs = self.processor.process(msg.header, image, self.options, self.camera)
        self.out.write(outputs, timestamp)
        self.frame_ms.append((time.perf_counter() - start) * 1e3)
        self.written += 1
        pred = outputs.prediction
        self.inference_ms.append(pred.inference_ms)
        if pred.reset:
            self.resets += 1
            if len(self.reset_log) < RESET_LOG_MAX:
                self.reset_log.append({"frame": index, "stamp": stamp_seconds(msg.header),
                                       "reason": pred.reset_reason})
        self._sinks(index, msg.header, image.to_rgb(), outputs,
                    continues=self._continues and not pred.reset)
        self._continues = True

    def _sinks(self, index: int, header: Any, rgb: np.ndarray, outputs: FrameOutputs,
               continues: bool) -> None:
        pred = outputs.prediction
        if self.metrics is not None:
            gt = self._take_ground_truth(stamp_ns(header), rgb.shape[:2])
            self.metrics.add(FrameRecord(rgb, pred.depth, pred.normals, pred.mask, gt), continues)
            if self.baselines is not None:
                self.baselines.add(rgb, stamp_seconds(header), header.frame_id, gt)
        if self.sheet is None and self.cfg.video is None:
            return
        tiles = (rgb,) + tuple(_viz_tile(outputs.images[k]) for k in VIZ_KEYS)
        view = FrameView(index, stamp_seconds(header), rgb, pred.depth, pred.normals, pred.mask,
                         tiles)
        if self.sheet is not None:
            self.sheet.add(view)
        if self.video is not None:
            self.video.add(view)

    def report(self) -> dict[str, Any]:
        inference = np.asarray(self.inference_ms or [math.nan])
        frame = np.asarray(self.frame_ms or [math.nan])
        return {
            "counts": {"frames_read": self.read, "frames_written": self.written,
                       "frames_skipped": sum(self.skipped.values()),
                       "skipped_by_cause": dict(self.skipped),
                       "bad_messages": {t: dict(c) for t, c in self.bad_messages.items()},
                       "resets": self.resets, "reset_log": self.reset_log,
                       "messages_written": dict(sorted(self.out.counts.items()))},
            "timing": {"inference_ms_mean": finite_or_none(float(inference.mean())),
                       "inference_ms_median": finite_or_none(float(np.median(inference))),
                       "inference_ms_max": finite_or_none(float(inference.max())),
                       "frame_ms_mean": finite_or_none(float(frame.mean())),
                       "frame_ms_note": "decode + predictor + output messages + bag write, per "
                                        "written frame"},
        }


def _load(cfg: BagConfig) -> StreamingPredictor:
    try:
        return load_predictor(cfg.checkpoint, window=cfg.window, device=cfg.device,
                              precision=cfg.precision,
                              backend=cfg.backend)
    # noqa: BLE001 - any load failure (path, config, backend, runtime) is a user error
    except Exception as err:
        raise BagError(f"cannot load model {cfg.checkpoint or '(bundled default)'} with "
                       f"backend={cfg.backend} precision={cfg.precision} device={cfg.device}: "
                       f"{err}") from None


def _baselines(cfg: BagConfig) -> Baselines:
    """Build the --metrics baselines of the model.

    The same weights at window 1 and, for a checkpoint (not an exported artefact, whose graph has
    no per-frame variant), the weights without temporal blocks.
    """
    predictors: dict[str, StreamingPredictor] = {}
    unavailable: dict[str, str] = {}
    try:
        predictors["window_1"] = load_predictor(cfg.checkpoint, window=1, device=cfg.device,
                                                precision=cfg.precision, backend=cfg.backend)
    except Exception as err:  # noqa: BLE001 - e.g. an artefact exported for another window
        unavailable["window_1"] = f"cannot load the model at window 1: {err}"
    try:
        model = load_checkpoint(cfg.checkpoint or default_checkpoint())
    except CheckpointError as err:
        unavailable["per_frame"] = f"not a checkpoint, so there is no per-frame model: {err}"
    else:
        per_frame = per_frame_model(model)
        predictors["per_frame"] = StreamingPredictor(per_frame, window=1, device=cfg.device,
                                                     precision=cfg.precision)
    return Baselines(predictors, unavailable)


def run_bag(cfg: BagConfig) -> dict[str, Any]:
    """Process the bag; returns the report (the metrics JSON's content) and writes every output."""
    check_outputs(cfg)
    set_threads(cfg.threads)
    cv2.setNumThreads(cfg.threads)  # OpenCV's DIS flow (the metrics) shares the same cores
    started = time.perf_counter()
    with open_input(cfg.input_bag) as reader:
        topics = select_topics(reader, cfg)
        predictor = _load(cfg)
        for path in (cfg.output_bag, cfg.metrics, cfg.video, cfg.sheet):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        if cfg.output_bag.exists():  # check_outputs allowed it: --overwrite of a rosbag2 folder
            shutil.rmtree(cfg.output_bag)
        with OutputBag(cfg.output_bag, cfg.storage, cfg.namespace, cfg.viz,
                       cfg.compression) as out, \
                tqdm(total=topics.image_count, unit="frame", desc="hcdp bag",
                     file=sys.stderr) as progress:
            runner = BagRunner(cfg, topics, predictor, out, progress)
            if cfg.metrics is not None and cfg.baselines:
                runner.baselines = _baselines(cfg)
            if cfg.video is not None:
                runner.video = SideBySideVideo(cfg.video, _bag_fps(reader, topics.image_count))
            runner.run(reader.messages(connections=topics.all_connections()))
        report = {
            "input": {"bag": str(cfg.input_bag), "image_topic": cfg.image_topic,
                      "image_type": COMPRESSED_IMAGE if topics.compressed else IMAGE,
                      "camera_info_topic": cfg.camera_info_topic,
                      "ground_truth_topics": sorted(runner.gt_topics)},
            "output": {"bag": str(cfg.output_bag), "storage": cfg.storage,
                       "namespace": cfg.namespace,
                       "topics": [output_topic(k, cfg.namespace) for k in TOPICS
                                  if output_topic(k, cfg.namespace) in out.counts]},
            "model": _model_info(cfg, predictor),
            **runner.report(),
        }
    report["output"].update(compression=cfg.compression, message_bytes=out.message_bytes,
                            bag_bytes=out.disk_bytes())
    if runner.metrics is not None:
        report["metrics"] = runner.metrics.report()
    if runner.baselines is not None:
        report["metrics_baselines"] = runner.baselines.report()
    if runner.sheet is not None and runner.written:
        if not cv2.imwrite(str(cfg.sheet), cv2.cvtColor(runner.sheet.image(), cv2.COLOR_RGB2BGR)):
            raise BagError(f"--sheet {cfg.sheet}: OpenCV could not write the contact sheet")
    report["timing"]["wall_s"] = time.perf_counter() - started
    if cfg.metrics is not None:
        cfg.metrics.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report


# --- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input_bag",
                        help="rosbag2 to read (folder with metadata.yaml, or a .db3/.mcap file)")
    parser.add_argument("output_bag",
                        help="rosbag2 folder to create (must not exist, unless --overwrite)")
    parser.add_argument("--image-topic", required=True,
                        help="sensor_msgs/Image or CompressedImage topic (the type is read from "
                             "the bag)")
    parser.add_argument("--camera-info-topic",
                        help="sensor_msgs/CameraInfo topic; enables points and camera_info")
    parser.add_argument("--checkpoint",
                        help="checkpoint or exported artefact (default: the bundled model)")
    parser.add_argument("--backend", default=DEFAULTS.backend, choices=BACKENDS,
                        help="inference runtime")
    parser.add_argument("--precision", default=DEFAULTS.precision, choices=tuple(PRECISIONS),
                        help="inference precision (fp16/bf16 need a GPU backend)")
    parser.add_argument("--device", default=DEFAULTS.device, help="cpu, cuda or cuda:N")
    parser.add_argument("--window", type=int, default=DEFAULTS.window,
                        help="frames in the temporal cache")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE,
                        help="namespace of the output topics")
    parser.add_argument("--storage", default="sqlite3", choices=tuple(STORAGES), help="output bag "
                                                                                      "storage")
    parser.add_argument("--metrics", help="write metrics and counts to this JSON file")
    parser.add_argument("--no-baselines", action="store_true",
                        help="with --metrics, skip the baselines scored beside the model (the "
                             "same weights at window 1, per frame, per frame + EMA; they triple "
                             "the time)")
    parser.add_argument("--video", help="write an input | depth | normals | mask MP4 here")
    parser.add_argument("--sheet",
                        help="write a contact sheet PNG (a few frames + an x-t slice) here")
    parser.add_argument("--gt-prefix", default="/ground_truth",
                        help="ground truth topics <prefix>/depth, /normals, /mask, /flow_fwd (for "
                             "--metrics)")
    parser.add_argument("--no-viz", action="store_true",
                        help="do not write the three */viz topics")
    parser.add_argument("--raw-maps", action="store_true",
                        help="write relative depth and normals everywhere (default: NaN outside "
                             "the person, as the node's mask_outputs; the model is supervised on "
                             "people only)")
    parser.add_argument("--compression", choices=("none", "zstd"), default="none",
                        help="zstd: compress each output message (the closing line prints the "
                             "bag's size and its messages' size before compression; ros2 bag play "
                             "reads it with the standard zstd plugin)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output bag (a rosbag2 folder) and existing "
                             "--metrics/--video/--sheet files; never anything in the input bag")
    threads = default_threads()
    parser.add_argument("--threads", type=_positive_int, default=threads,
                        help=f"CPU threads for inference and optical flow (default: {threads} "
                             "here: OMP_NUM_THREADS when set, else half the CPUs, 1 to 4, so a "
                             "shared machine is not oversubscribed)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        report = run_bag(BagConfig.from_args(args))
    # OSError: an output (bag, video, sheet) that cannot be written
    except (BagError, OSError) as err:
        print(f"hcdp bag: {err}", file=sys.stderr)
        return 2
    counts, timing, output = report["counts"], report["timing"], report["output"]
    size = f"{output['bag_bytes'] / 1e6:.1f} MB"
    if output["compression"] != "none":
        size += f" for {output['message_bytes'] / 1e6:.1f} MB of messages before compression"
    print(f"hcdp bag: wrote {counts['frames_written']} of {counts['frames_read']} frames to "
          f"{args.output_bag} ({size}; {counts['frames_skipped']} skipped, {counts['resets']} "
          f"cache resets, {timing['inference_ms_mean'] or math.nan:.1f} ms/frame inference on "
          f"{args.threads} thread(s), {timing['wall_s']:.1f} s)")
    if counts["frames_written"] == 0:
        print("hcdp bag: no frame could be processed; see the skipped inputs "
              "above", file=sys.stderr)
        return 1
    return 0
