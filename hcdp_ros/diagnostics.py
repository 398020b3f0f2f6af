"""ROS-free statistics for /diagnostics: rates, stamp→publish latency, per-stage times, drops.

The node feeds :class:`NodeStats` from its callbacks and worker and maps :meth:`NodeStats.report`
to a diagnostic_updater task (level, message, key/values). All times are seconds on one clock that
the caller supplies (the node uses its ROS clock, so latency against header stamps is meaningful).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import threading

OK, WARN = 0, 1  # diagnostic levels (DiagnosticStatus.OK / WARN)


class RateMeter:
    """Events per second over the events of the last ``window_s`` seconds.

    Measured between the first and last of them; 0 with fewer than two.
    """

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def per_second(self, now: float) -> float:
        """Events in the last ``window_s`` seconds divided by ``window_s`` (sparse events too)."""
        self._trim(now)
        return len(self._times) / self.window_s

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class RecentValues:
    """Mean, maximum and percentiles of the last ``size`` samples."""

    def __init__(self, size: int = 100):
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def mean(self) -> float:
        return sum(self._values) / len(self._values) if self._values else float("nan")

    def maximum(self) -> float:
        return max(self._values) if self._values else float("nan")

    def percentile(self, q: float) -> float:
        """Return the ``q``-th percentile, ``q`` in 0..100; NaN without samples.

        Linear between the two nearest ranks (numpy's default).
        """
        if not self._values:
            return float("nan")
        ordered = sorted(self._values)
        rank = (len(ordered) - 1) * q / 100.0
        low = int(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


STAGES = ("decode", "inference", "publish")  # per-frame stages timed by the node


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds one frame spent in each stage.

    The stages: decoding the message, the predictor's step, building and publishing the output
    messages.
    """

    decode: float
    inference: float
    publish: float


@dataclass(frozen=True)
class Report:
    """One diagnostic status: level (OK/WARN), a message and ordered key/values."""

    level: int
    message: str
    values: list[tuple[str, str]]


def _summary(name: str, values: RecentValues) -> list[tuple[str, str]]:
    """``name_mean``, ``name_p50``, ``name_p95``, ``name_max`` of the recent values."""
    return [(f"{name}_mean", f"{values.mean():.1f}"),
            (f"{name}_p50", f"{values.percentile(50):.1f}"),
            (f"{name}_p95", f"{values.percentile(95):.1f}"),
            (f"{name}_max", f"{values.maximum():.1f}")]


class NodeStats:
    """Thread-safe counters and windows for the node; ``report`` summarises them."""

    def __init__(self, backend: str, precision: str, device: str, window: int,
                 rate_window_s: float = 5.0, stale_after_s: float = 2.0,
                 startup_check: dict | None = None):
        self.backend, self.precision, self.device, self.window = backend, precision, device, window
        self.stale_after_s = stale_after_s
        self.startup_check = startup_check  # the backend's parity check at start-up, if it ran one
        self._lock = threading.Lock()
        self._input = RateMeter(rate_window_s)
        self._output = RateMeter(rate_window_s)
        self._reset_times = RateMeter(rate_window_s)
        self._latency = RecentValues()
        self._stages = {stage: RecentValues() for stage in STAGES}
        self._last_input: float | None = None
        self._window_fill = 0
        self._resets = 0
        self._published = 0
        self._bad_inputs: dict[str, int] = {}
        self._last_bad: str = ""

    def record_input(self, now: float) -> None:
        with self._lock:
            self._input.tick(now)
            self._last_input = now

    def record_output(self, now: float, stamp: float, times: StageTimes, window_fill: int,
                      reset: bool) -> None:
        with self._lock:
            self._output.tick(now)
            self._latency.add((now - stamp) * 1000.0)
            for stage in STAGES:
                self._stages[stage].add(getattr(times, stage))
            self._window_fill = window_fill
            if reset:
                self._resets += 1
                self._reset_times.tick(now)
            self._published += 1

    def record_bad_input(self, cause: str) -> None:
        with self._lock:
            self._bad_inputs[cause] = self._bad_inputs.get(cause, 0) + 1
            self._last_bad = cause

    def report(self, now: float, dropped: int) -> Report:
        """Return the status at time ``now``; ``dropped`` is the worker's dropped-frame count."""
        with self._lock:
            input_hz, output_hz = self._input.rate(now), self._output.rate(now)
            values = [
                ("input_rate_hz", f"{input_hz:.2f}"),
                ("output_rate_hz", f"{output_hz:.2f}"),
                *_summary("latency_ms", self._latency),
                *(item for stage in STAGES
                  for item in _summary(f"{stage}_ms", self._stages[stage])),
                ("dropped_frames", str(dropped)),
                ("published_frames", str(self._published)),
                ("bad_inputs", str(sum(self._bad_inputs.values()))),
                ("window_fill", f"{self._window_fill}/{self.window}"),
                ("cache_resets", str(self._resets)),
                ("cache_resets_per_s", f"{self._reset_times.per_second(now):.2f}"),
                ("backend", self.backend),
                ("precision", self.precision),
                ("device", self.device),
            ]
            if self.startup_check is not None:
                values += [(f"startup_check.{key}", str(self.startup_check.get(key)))
                           for key in ("max_error", "tolerance", "frames")]
            values += [(f"bad_input.{cause}", str(n)) for cause,
                       n in sorted(self._bad_inputs.items())]
            if self._last_input is None or now - self._last_input > self.stale_after_s:
                level, message = WARN, "no input images"
            elif output_hz == 0.0:
                level = WARN
                message = ("input arrives but nothing is published (last bad input: "
                           f"{self._last_bad or 'none'})")
            else:
                level, message = OK, f"{output_hz:.1f} Hz out of {input_hz:.1f} Hz in"
        return Report(level, message, values)
