"""`hcdp bag` metrics: temporal consistency and accuracy of a streamed bag.

One consecutive pair at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

from hcdp_training.evaluate import ema_step
from hcdp_training.metrics import (
    DEPTH_METRICS,
    evaluate_sequence,
    flow_opencv,
    MASK_METRICS,
    MetricAccumulator,
    NORMAL_METRICS,
    TEMPORAL_METRICS,
)
import numpy as np

# ground-truth kind -> 32FC<channels>
GT_CHANNELS = {"depth": 1, "normals": 3, "mask": 1, "flow_fwd": 2}
ACCURACY_METRICS = DEPTH_METRICS + NORMAL_METRICS + MASK_METRICS  # dtSSD (a pair metric) included


@dataclass
class FrameRecord:
    """What the metrics keep of one frame.

    Input size arrays; ``gt`` keyed by GT_CHANNELS kinds.
    """

    rgb: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    mask: np.ndarray
    gt: dict[str, np.ndarray]


def _evaluate(frames: list[FrameRecord], flow_fwd: np.ndarray,
              flow_bwd: np.ndarray | None) -> dict[str, np.ndarray]:
    """evaluate_sequence over ``frames``, with each ground truth that every frame has."""
    gt = {kind: np.stack([f.gt[kind] for f in frames]) for kind in ("depth", "normals", "mask")
          if all(kind in f.gt for f in frames)}
    return evaluate_sequence(np.stack([f.depth for f in frames]),
                             np.stack([f.normals for f in frames]),
                             np.stack([f.mask for f in frames]), flow_fwd, gt.get("depth"),
                             gt.get("normals"),
                             gt.get("mask"), flow_bwd)


class StreamMetrics:
    """The metrics of hcdp_training.metrics over a stream, one consecutive pair at a time.

    Pair (k, k+1) is evaluated with ``evaluate_sequence`` on those two frames: temporal consistency
    with OpenCV DIS flow (forward and backward, so the cycle check applies, as `hcdp eval --flow
    opencv`) and, when frame k has ground-truth ``flow_fwd``, with that flow. Frame metrics
    (accuracy) come from the same call. A pair is skipped when the cache was reset at k+1 or an
    input frame between them was skipped.
    """

    def __init__(self) -> None:
        self.accuracy = MetricAccumulator()
        self.dis_flow = MetricAccumulator()
        self.gt_flow = MetricAccumulator()
        self.pairs = 0
        self.frames = 0
        self._prev: FrameRecord | None = None
        self._prev_scored = False

    def add(self, frame: FrameRecord, continues: bool) -> None:
        """Add one frame to the stream.

        ``continues``: ``frame`` follows the previous one directly in the same temporal segment.
        """
        prev = self._prev
        if prev is not None and continues and prev.depth.shape == frame.depth.shape:
            self._pair(prev, frame)
        else:
            self._flush()
        self._prev = frame

    def finish(self) -> None:
        self._flush()
        self._prev = None

    def _flush(self) -> None:
        """Frame metrics of a previous frame that no pair scored (a segment of one frame)."""
        if self._prev is not None and not self._prev_scored:
            zero = np.zeros((1,) + self._prev.depth.shape + (2,), np.float32)
            self._add_frame(_evaluate([self._prev], zero, None), 0)
        self._prev_scored = False

    def _add_frame(self, result: dict[str, np.ndarray], index: int) -> None:
        self.accuracy.add({k: v[index] for k,
                           v in result.items() if k in ACCURACY_METRICS and k != "dtSSD"})
        self.frames += 1

    def _pair(self, prev: FrameRecord, cur: FrameRecord) -> None:
        zero = np.zeros(prev.depth.shape + (2,), np.float32)
        fwd = np.stack([flow_opencv(prev.rgb, cur.rgb), zero])
        bwd = np.stack([zero, flow_opencv(cur.rgb, prev.rgb)])
        result = _evaluate([prev, cur], fwd, bwd)
        if not self._prev_scored:
            self._add_frame(result, 0)
        self._add_frame(result, 1)
        self._prev_scored = True
        self.dis_flow.add({k: v for k, v in result.items() if k in TEMPORAL_METRICS})
        if "dtSSD" in result:
            self.accuracy.add({"dtSSD": result["dtSSD"]})
        if "flow_fwd" in prev.gt:
            gt_result = _evaluate([prev, cur], np.stack([prev.gt["flow_fwd"], zero]), None)
            self.gt_flow.add({k: v for k, v in gt_result.items() if k in TEMPORAL_METRICS})
        self.pairs += 1

    def report(self) -> dict[str, Any]:
        def section(acc: MetricAccumulator) -> dict[str, Any]:
            return {"mean": {k: finite_or_none(v) for k, v in acc.summary().items()},
                    "count": acc.counts()}

        out: dict[str, Any] = {"frames_evaluated": self.frames, "pairs_evaluated": self.pairs,
                               "temporal": {"opencv_dis_flow": section(self.dis_flow)}}
        if self.gt_flow.counts():
            out["temporal"]["ground_truth_flow"] = section(self.gt_flow)
        if self.accuracy.counts():
            out["accuracy"] = section(self.accuracy)
        return out


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a metric without any valid frame is null."""
    return float(value) if math.isfinite(value) else None


class Baselines:
    """The same frames through the baselines of `hcdp eval`, scored like the model.

    Each is scored with a `StreamMetrics`: `window_1` (the same weights with no past: what temporal
    context adds), `per_frame` (the weights without temporal blocks) and `per_frame_ema` (per_frame
    smoothed by `ema_step`, alpha `smoothing`). `predictors` holds the ones that could be built;
    `unavailable` says why the others could not.
    """

    def __init__(self, predictors: dict[str, Any], unavailable: dict[str, str],
                 smoothing: float = 0.5):
        self.predictors, self.unavailable, self.smoothing = predictors, unavailable, smoothing
        methods = list(predictors) + (["per_frame_ema"] if "per_frame" in predictors else [])
        self.metrics = {m: StreamMetrics() for m in methods}
        self._ema: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, rgb: np.ndarray, stamp: float, frame_id: str, gt: dict[str, np.ndarray]) -> None:
        for method, predictor in self.predictors.items():
            pred = predictor.step(rgb, stamp, frame_id)
            continues = not pred.reset
            self.metrics[method].add(FrameRecord(rgb, pred.depth, pred.normals, pred.mask, gt),
                                     continues)
            if method == "per_frame":
                self._ema = ema_step(None if pred.reset else self._ema, pred.depth, pred.normals,
                                     pred.mask, self.smoothing)
                self.metrics["per_frame_ema"].add(FrameRecord(rgb, *self._ema, gt), continues)

    def finish(self) -> None:
        for metrics in self.metrics.values():
            metrics.finish()

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {m: metrics.report() for m, metrics in self.metrics.items()}
        out.update({m: {"unavailable": why} for m, why in self.unavailable.items()})
        if "per_frame_ema" in out:
            out["per_frame_ema"]["smoothing_alpha"] = self.smoothing
        return out
