"""The hcdp lifecycle node: thin rclpy wiring around the ROS-free pipeline (the only rclpy module).

Lifecycle: ``on_configure`` validates the parameters, sets torch's CPU threads and loads the model
(FAILURE with the reason on a bad path, backend, value or failed start-up check; the process stays
up), creates the publishers; ``on_activate`` starts the inference worker and subscribes;
``on_deactivate`` unsubscribes and stops the worker; ``on_cleanup``/``on_shutdown`` release
everything. Every name the node creates comes from ``hcdp_ros.topics``; topics, parameters and
conventions are in docs/ros.md.
"""
from __future__ import annotations

import math
import threading
import time
import traceback
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from diagnostic_updater import DiagnosticStatusWrapper, Updater
from hcdp_model.predictor import load_predictor
from hcdp_model.threads import default_threads, set_threads
from hcdp_ros.conversions import (
    decode_camera_info,
    decode_metric_depth,
    InputError,
    MissingDepth,
)
from hcdp_ros.diagnostics import NodeStats, OK, StageTimes, WARN
from hcdp_ros.input_gaps import InputGaps
from hcdp_ros.log_throttle import CauseThrottle
from hcdp_ros.messages import (
    CameraInfoFields,
    ImageFields,
    NODE_NAME,
    PointCloudFields,
    TOPICS,
    VIZ_KEYS,
    VizRequest,
)
from hcdp_ros.pairing import StampPairing
from hcdp_ros.params import (
    ConfigError,
    DeclareErrors,
    DEFAULTS,
    NodeConfig,
    param_type,
    PARAMETERS,
)
from hcdp_ros.pipeline import (
    decode_input,
    FrameOutputs,
    FrameProcessor,
    limit_side,
    MetricInput,
    OutputOptions,
    stamp_seconds,
)
from hcdp_ros.topics import INPUTS, node_names, RESET_SERVICE
from hcdp_ros.worker import InferenceWorker
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import (
    CameraInfo,
    CompressedImage,
    Image,
    PointCloud2,
    PointField,
    RegionOfInterest,
)
from std_srvs.srv import Trigger

_ROS_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
              float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
_LEVELS = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN}
_MSG_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage,
              "sensor_msgs/msg/CameraInfo": CameraInfo, "sensor_msgs/msg/PointCloud2": PointCloud2}
REQUESTED_RESET = "requested through ~/reset"


def _descriptor(name: str) -> ParameterDescriptor:
    spec = PARAMETERS[name]
    kind = param_type(name)
    descriptor = ParameterDescriptor(name=name, type=_ROS_TYPES[kind],
                                     description=spec.description,
                                     read_only=spec.read_only)
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if kind is float and spec.min_value is not None:
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0)]
    if kind is int and spec.min_value is not None:
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.min_value), to_value=int(spec.max_value), step=1)]
    return descriptor


def _image_msg(out: ImageFields) -> Image:
    msg = Image(header=out.header, height=out.height, width=out.width, encoding=out.encoding,
                is_bigendian=out.is_bigendian, step=out.step)
    msg.data.frombytes(out.data)  # one memcpy; assigning a sequence would iterate per byte
    return msg


def _cloud_msg(out: PointCloudFields) -> PointCloud2:
    msg = PointCloud2(header=out.header, height=out.height, width=out.width,
                      fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype,
                                         count=f.count)
                              for f in out.fields],
                      is_bigendian=out.is_bigendian, point_step=out.point_step,
                      row_step=out.row_step,
                      is_dense=out.is_dense)
    msg.data.frombytes(out.data)
    return msg


def _camera_info_msg(out: CameraInfoFields) -> CameraInfo:
    roi = out.roi
    return CameraInfo(header=out.header, height=out.height, width=out.width,
                      distortion_model=out.distortion_model, d=out.d.tolist(), k=out.k, r=out.r,
                      p=out.p, binning_x=out.binning_x, binning_y=out.binning_y,
                      roi=RegionOfInterest(x_offset=roi.x_offset, y_offset=roi.y_offset,
                                           height=roi.height,
                                           width=roi.width, do_rectify=roi.do_rectify))


class HcdpNode(LifecycleNode):
    """Relative depth, normals and a soft human mask for every (newest) camera frame."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        self._declare_errors = DeclareErrors()
        for name in PARAMETERS:
            default = getattr(DEFAULTS, name)
            try:
                self.declare_parameter(name, default, _descriptor(name))
            except (InvalidParameterTypeException, InvalidParameterValueException) as err:
                # keep the process up: report in on_configure until a valid value is set
                self._declare_errors.record(name, str(err))
                self.declare_parameter(name, default, _descriptor(name), ignore_override=True)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._config = DEFAULTS
        self._throttle = CauseThrottle(DEFAULTS.log_throttle_s)
        self._processor: FrameProcessor | None = None
        self._worker: InferenceWorker[Any] | None = None  # items: (Compressed)Image messages
        self._stats: NodeStats | None = None
        self._gaps: InputGaps | None = None
        self._metric: StampPairing[Any] = StampPairing()  # metric depth messages by stamp
        self._reset_requested = threading.Event()
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._topics = dict(INPUTS)  # resolved names once subscribed
        self._camera: Any = None
        self._reset_service = self.create_service(Trigger, RESET_SERVICE, self._on_reset)
        self._updater = Updater(self)
        self._updater.setHardwareID("hcdp")
        # the fully qualified name tells /hcdp/hcdp from /hcdp2/hcdp in /diagnostics
        self._updater.add(self.get_fully_qualified_name(), self._diagnose)

    # --- lifecycle -------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        refused = self._declare_errors.message()
        if refused:
            self.get_logger().error(
                f"configure failed: invalid hcdp parameters: {refused} (fix a dynamic one with "
                "`ros2 param set` and configure again; a read-only one needs a restart)")
            return TransitionCallbackReturn.FAILURE
        try:
            config = NodeConfig(**{n: self.get_parameter(n).value for n in PARAMETERS}).validate()
        except ConfigError as err:
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        threads = config.num_threads or default_threads()
        set_threads(threads)
        try:
            # the gap rule runs on the input stream (InputGaps), not between processed frames
            predictor = load_predictor(config.model_path or None, window=config.window,
                                       device=config.device, precision=config.precision,
                                       backend=config.backend, max_gap_s=math.inf,
                                       trust_artefact=config.trust_artefact)
        except Exception as err:  # noqa: BLE001 - a load failure is a FAILURE, not a crash
            self.get_logger().error(
                f"configure failed: cannot load model {config.model_path or '(bundled default)'} "
                f"with backend={config.backend} precision={config.precision} "
                f"device={config.device}: {err}")
            return TransitionCallbackReturn.FAILURE
        self._config = config
        self._throttle = CauseThrottle(config.log_throttle_s)
        self._processor = FrameProcessor(predictor)
        check = getattr(predictor.backend, "startup_check", None)
        self._stats = NodeStats(config.backend, config.precision, config.device, config.window,
                                startup_check=check)
        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.VOLATILE)
        names = node_names(config.compressed, config.use_metric_depth).publishers
        self._pubs = {key: self.create_lifecycle_publisher(_MSG_TYPES[names[topic]], topic,
                                                           output_qos)
                      for key, topic in TOPICS.items() if topic in names}
        self.get_logger().info(
            f"model loaded (backend={config.backend}, precision={config.precision}, "
            f"device={config.device}, window={config.window}, threads={threads}"
            f"{'' if check is None else f', start-up check {check}'})")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self._config
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=config.qos_depth,
                         reliability=(ReliabilityPolicy.BEST_EFFORT
                                      if config.qos_reliability == "best_effort"
                                      else ReliabilityPolicy.RELIABLE),
                         durability=DurabilityPolicy.VOLATILE)
        self._gaps = InputGaps(config.max_gap_s)
        self._metric.clear()
        self._reset_requested.clear()
        self._worker = InferenceWorker(self._process, self._on_worker_error)
        self._worker.start()
        image_type, image_key = ((CompressedImage, "compressed") if config.compressed
                                 else (Image, "image"))
        subs = {"image": self.create_subscription(image_type, INPUTS[image_key], self._on_image,
                                                  qos),
                "camera_info": self.create_subscription(CameraInfo, INPUTS["camera_info"],
                                                        self._on_camera_info, qos)}
        if config.use_metric_depth:
            subs["metric_depth"] = self.create_subscription(Image, INPUTS["metric_depth"],
                                                            self._on_metric_depth, qos)
        self._subs = list(subs.values())
        # resolved names, for log lines that say where a bad message came from
        self._topics = {key: sub.topic_name for key, sub in subs.items()}
        self.get_logger().info(f"listening on {', '.join(self._topics.values())}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return super().on_shutdown(state)

    def _stop_inputs(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._worker is not None and not self._worker.stop():
            self.get_logger().warn(
                "inference thread still busy after 5 s; it exits after this frame")
        self._worker = None
        self._gaps = None
        self._camera = None
        self._metric.clear()

    def release(self) -> None:
        """Stop the worker, drop subscriptions, publishers and the model (idempotent)."""
        self._stop_inputs()
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self._processor = None
        self._stats = None

    # --- parameters ------------------------------------------------------------------------------

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        ours = {p.name: p.value for p in params if p.name in PARAMETERS}
        try:
            self._config = self._config.with_values(ours)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        self._declare_errors.resolve(ours)  # a value refused at start-up is fixed now
        self._throttle.period_s = self._config.log_throttle_s
        return SetParametersResult(successful=True)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """``~/reset``: clear the temporal cache before the next frame (scene cut, teleport)."""
        if self._worker is None:
            response.success = False
            response.message = "not active: there is no temporal cache to clear"
            return response
        self._reset_requested.set()
        response.success = True
        response.message = "the temporal cache is cleared before the next frame"
        return response

    # --- callbacks (executor thread) -------------------------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, msg: Any) -> None:
        worker, stats, gaps = self._worker, self._stats, self._gaps
        if worker is None or stats is None or gaps is None:
            return
        stats.record_input(self._now())
        gaps.record(stamp_seconds(msg.header))  # every frame, also those the worker will drop
        worker.submit(msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._camera = decode_camera_info(msg, self._topics["camera_info"])
        except InputError as err:
            self._report(err)

    def _on_metric_depth(self, msg: Image) -> None:
        self._metric.add(stamp_seconds(msg.header), msg)

    # --- inference (worker thread) ---------------------------------------------------------

    def _process(self, msg: Any) -> None:
        processor, stats, gaps = self._processor, self._stats, self._gaps
        config, pubs = self._config, self._pubs
        if processor is None or stats is None or gaps is None:
            return
        header = msg.header
        start = time.perf_counter()
        try:
            image = limit_side(decode_input(msg, config.compressed, self._topics["image"],
                                            config.max_input_pixels), config.max_image_side)
        except InputError as err:
            self._report(err)
            return
        decoded = time.perf_counter()
        metric, problem = self._paired_metric(header, config)
        gap = gaps.take(stamp_seconds(header))
        requested = self._reset_requested.is_set()
        if requested:
            self._reset_requested.clear()  # a request arriving from here on is for the next frame
        reset = REQUESTED_RESET if requested else gap
        want = VizRequest(*(pubs[k].get_subscription_count() > 0 for k in VIZ_KEYS))
        options = OutputOptions.from_config(config, want)
        begin = time.perf_counter()
        outputs = processor.process(header, image, options, self._camera, metric, reset)
        predicted = time.perf_counter()
        for err in ([problem] if problem else []) + outputs.problems:
            self._report(err)
        self._publish(pubs, outputs)
        published = time.perf_counter()
        pred = outputs.prediction
        times = StageTimes(decode=(decoded - start) * 1e3, inference=(predicted - begin) * 1e3,
                           publish=(published - predicted) * 1e3)
        stats.record_output(self._now(), stamp_seconds(header), times, pred.window_fill,
                            pred.reset)
        if pred.reset and pred.reset_reason not in (None, "first frame"):
            suppressed = self._throttle.allow(("temporal cache reset",))
            if suppressed is not None:
                more = f" ({suppressed} more since the last report)" if suppressed else ""
                self.get_logger().info(f"temporal cache reset: {pred.reset_reason}{more}")

    def _paired_metric(self, header: Any, config: NodeConfig
                       ) -> tuple[MetricInput | None, InputError | None]:
        if not config.use_metric_depth:
            return None, None
        topic = self._topics["metric_depth"]
        msg, dt = self._metric.match(stamp_seconds(header), config.metric_max_dt_s,
                                     config.metric_wait_s)
        if msg is None:
            nearest = "none received" if dt is None else f"nearest {dt:.3f} s"
            return None, MissingDepth(f"no metric depth within {config.metric_max_dt_s} s of the "
                                      f"image ({nearest})", topic)
        try:
            depth = decode_metric_depth(msg, topic, config.max_input_pixels)
            return MetricInput(depth, topic), None
        except InputError as err:
            return None, err

    @staticmethod
    def _publish(pubs: dict[str, Any], outputs: FrameOutputs) -> None:
        for key, image in outputs.images.items():
            pubs[key].publish(_image_msg(image))
        if outputs.points is not None:
            pubs["points"].publish(_cloud_msg(outputs.points))
        if outputs.camera_info is not None:
            pubs["camera_info"].publish(_camera_info_msg(outputs.camera_info))

    def _report(self, err: InputError) -> None:
        if self._stats is not None:
            self._stats.record_bad_input(err.cause)
        suppressed = self._throttle.allow((err.topic, err.cause))
        if suppressed is not None:
            more = f" ({suppressed} more like it since the last report)" if suppressed else ""
            self.get_logger().warn(f"skipped input: {err}{more}")

    def _on_worker_error(self, exc: Exception, msg: Any) -> None:
        if self._throttle.allow(("worker", type(exc).__name__)) is not None:
            self.get_logger().error(
                f"frame skipped, inference failed: {exc}\n"
                f"{''.join(traceback.format_exception(exc))}")

    # --- diagnostics -----------------------------------------------------------------------------

    def _diagnose(self, stat: DiagnosticStatusWrapper) -> DiagnosticStatusWrapper:
        stats, worker = self._stats, self._worker
        if stats is None:
            stat.summary(DiagnosticStatus.WARN, "not configured (no model loaded)")
            return stat
        report = stats.report(self._now(), worker.dropped if worker is not None else 0)
        stat.summary(_LEVELS[report.level], report.message if worker is not None else "inactive")
        for key, value in report.values:
            stat.add(key, value)
        return stat


def main(args: list[str] | None = None) -> None:
    """Console script ``hcdp_node``: spin the lifecycle node until Ctrl-C or shutdown."""
    rclpy.init(args=args)
    node = HcdpNode()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.release()
        node.destroy_node()
        rclpy.try_shutdown()
