"""The hcdp lifecycle node: thin rclpy wiring around the ROS-free pipeline (the only rclpy module).

Lifecycle: ``on_configure`` validates the parameters and loads the model (FAILURE with the reason on
a bad path, backend or value; the process stays up), creates the publishers and the inference
worker; ``on_activate`` subscribes; ``on_deactivate`` unsubscribes and stops the worker;
``on_cleanup``/``on_shutdown`` release everything. Topics (relative to the namespace, default
``/hcdp``) and conventions are in docs/ros.md.
"""
from __future__ import annotations

import traceback
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from diagnostic_updater import DiagnosticStatusWrapper, Updater
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField, RegionOfInterest

from hcdp_model.predictor import load_predictor
from hcdp_ros.conversions import InputError, MissingDepth, decode_camera_info, decode_metric_depth
from hcdp_ros.diagnostics import OK, WARN, NodeStats
from hcdp_ros.log_throttle import CauseThrottle
from hcdp_ros.messages import (
    NODE_NAME,
    TOPICS,
    VIZ_KEYS,
    CameraInfoFields,
    ImageFields,
    PointCloudFields,
    VizRequest,
)
from hcdp_ros.params import DEFAULTS, PARAMETERS, ConfigError, NodeConfig, param_type
from hcdp_ros.pipeline import FrameOutputs, FrameProcessor, MetricInput, OutputOptions, decode_input, stamp_seconds
from hcdp_ros.worker import InferenceWorker

_ROS_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
              float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
_LEVELS = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN}


def _descriptor(name: str) -> ParameterDescriptor:
    spec = PARAMETERS[name]
    kind = param_type(name)
    descriptor = ParameterDescriptor(name=name, type=_ROS_TYPES[kind], description=spec.description,
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
                      fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                              for f in out.fields],
                      is_bigendian=out.is_bigendian, point_step=out.point_step, row_step=out.row_step,
                      is_dense=out.is_dense)
    msg.data.frombytes(out.data)
    return msg


def _camera_info_msg(out: CameraInfoFields) -> CameraInfo:
    roi = out.roi
    return CameraInfo(header=out.header, height=out.height, width=out.width, distortion_model=out.distortion_model,
                      d=out.d.tolist(), k=out.k, r=out.r, p=out.p, binning_x=out.binning_x, binning_y=out.binning_y,
                      roi=RegionOfInterest(x_offset=roi.x_offset, y_offset=roi.y_offset, height=roi.height,
                                           width=roi.width, do_rectify=roi.do_rectify))


class HcdpNode(LifecycleNode):
    """Relative depth, normals and a soft human mask for every (newest) camera frame."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        self._declare_errors: list[str] = []
        for name in PARAMETERS:
            default = getattr(DEFAULTS, name)
            try:
                self.declare_parameter(name, default, _descriptor(name))
            except (InvalidParameterTypeException, InvalidParameterValueException) as err:
                # keep the process up: report in on_configure, run nothing with a bad value
                self._declare_errors.append(f"{name}: {err}")
                self.declare_parameter(name, default, _descriptor(name), ignore_override=True)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._config = DEFAULTS
        self._throttle = CauseThrottle(DEFAULTS.log_throttle_s)
        self._processor: FrameProcessor | None = None
        self._worker: InferenceWorker[Any] | None = None  # items: Image or CompressedImage messages
        self._stats: NodeStats | None = None
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._topics = {"image": "image", "camera_info": "camera_info", "metric_depth": "metric_depth"}
        self._camera: Any = None
        self._metric_msg: Any = None
        self._updater = Updater(self)
        self._updater.setHardwareID("hcdp")
        self._updater.add("hcdp", self._diagnose)

    # --- lifecycle -------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._declare_errors:
            self.get_logger().error("configure failed: " + "; ".join(self._declare_errors))
            return TransitionCallbackReturn.FAILURE
        try:
            config = NodeConfig(**{n: self.get_parameter(n).value for n in PARAMETERS}).validate()
        except ConfigError as err:
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        try:
            predictor = load_predictor(config.model_path or None, window=config.window, device=config.device,
                                       precision=config.precision, backend=config.backend,
                                       max_gap_s=config.max_gap_s)
        except Exception as err:  # noqa: BLE001 - any load failure is a FAILURE transition, not a crash
            self.get_logger().error(
                f"configure failed: cannot load model {config.model_path or '(bundled default)'} with "
                f"backend={config.backend} precision={config.precision} device={config.device}: {err}")
            return TransitionCallbackReturn.FAILURE
        self._config = config
        self._throttle = CauseThrottle(config.log_throttle_s)
        self._processor = FrameProcessor(predictor)
        self._stats = NodeStats(config.backend, config.precision, config.device, config.window)
        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        types = {"points": PointCloud2, "camera_info": CameraInfo}
        self._pubs = {key: self.create_lifecycle_publisher(types.get(key, Image), topic, output_qos)
                      for key, topic in TOPICS.items()
                      if key != "depth" or config.use_metric_depth}
        self.get_logger().info(
            f"model loaded (backend={config.backend}, precision={config.precision}, device={config.device}, "
            f"window={config.window})")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self._config
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=config.qos_depth,
                         reliability=(ReliabilityPolicy.BEST_EFFORT if config.qos_reliability == "best_effort"
                                      else ReliabilityPolicy.RELIABLE),
                         durability=DurabilityPolicy.VOLATILE)
        self._worker = InferenceWorker(self._process, self._on_worker_error)
        self._worker.start()
        if config.compressed:
            image_sub = self.create_subscription(CompressedImage, "image/compressed", self._on_image, qos)
        else:
            image_sub = self.create_subscription(Image, "image", self._on_image, qos)
        self._subs = [image_sub, self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)]
        if config.use_metric_depth:
            self._subs.append(self.create_subscription(Image, "metric_depth", self._on_metric_depth, qos))
        # resolved names, for log lines that say where a bad message came from
        self._topics = dict(zip(("image", "camera_info", "metric_depth"), (s.topic_name for s in self._subs)))
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
            self.get_logger().warn("inference thread still busy after 5 s; it exits after this frame")
        self._worker = None
        self._camera = self._metric_msg = None

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
        self._throttle.period_s = self._config.log_throttle_s
        return SetParametersResult(successful=True)

    # --- callbacks (executor thread) ---------------------------------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, msg: Any) -> None:
        worker, stats = self._worker, self._stats
        if worker is None or stats is None:
            return
        stats.record_input(self._now())
        worker.submit(msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._camera = decode_camera_info(msg, self._topics["camera_info"])
        except InputError as err:
            self._report(err)

    def _on_metric_depth(self, msg: Image) -> None:
        self._metric_msg = msg

    # --- inference (worker thread) -----------------------------------------------------------------

    def _process(self, msg: Any) -> None:
        processor, stats, config, pubs = self._processor, self._stats, self._config, self._pubs
        if processor is None or stats is None:
            return
        header = msg.header
        try:
            image = decode_input(msg, config.compressed, self._topics["image"])
        except InputError as err:
            self._report(err)
            return
        metric, problem = self._paired_metric(header, config)
        want = VizRequest(*(pubs[k].get_subscription_count() > 0 for k in VIZ_KEYS))
        options = OutputOptions(config.mask_threshold, config.publish_points, config.depth_scale,
                                config.points_stride, config.metric_min_pixels, want)
        outputs = processor.process(header, image, options, self._camera, metric)
        for err in ([problem] if problem else []) + outputs.problems:
            self._report(err)
        self._publish(pubs, outputs)
        pred = outputs.prediction
        stats.record_output(self._now(), stamp_seconds(header), pred.inference_ms, pred.window_fill, pred.reset)
        if pred.reset and pred.reset_reason not in (None, "first frame"):
            self.get_logger().info(f"temporal cache reset: {pred.reset_reason}")

    def _paired_metric(self, header: Any, config: NodeConfig) -> tuple[MetricInput | None, InputError | None]:
        if not config.use_metric_depth:
            return None, None
        msg, topic = self._metric_msg, self._topics["metric_depth"]
        if msg is None or abs(stamp_seconds(msg.header) - stamp_seconds(header)) > config.metric_max_dt_s:
            return None, MissingDepth(f"no metric depth within {config.metric_max_dt_s} s of the image", topic)
        try:
            return MetricInput(decode_metric_depth(msg, topic), topic), None
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
                f"frame skipped, inference failed: {exc}\n{''.join(traceback.format_exception(exc))}")

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

