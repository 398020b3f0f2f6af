"""The temporal cache's gap rule on the input stream, so a slow model does not reset it.

The node processes the newest frame only: with a model slower than the camera, consecutive
processed frames lie far apart in time although the camera never paused. Comparing processed
stamps against ``max_gap_s`` then resets the cache on every frame and silently turns the temporal
model off. :class:`InputGaps` records the stamp of every received frame (dropped ones included) and
reports a gap only where the *input stream* had one: the camera stalled, a bag paused, a driver
restarted. A gap before a frame the model never saw still counts for the next frame it does see.
"""
from __future__ import annotations

from collections import deque
import threading


class InputGaps:
    """Largest gap between consecutive received stamps up to the frame being processed."""

    def __init__(self, max_gap_s: float, history: int = 4096):
        if not max_gap_s > 0:
            raise ValueError(f"max_gap_s: expected > 0, got {max_gap_s}")
        self.max_gap_s = max_gap_s
        self._stamps: deque[float] = deque(maxlen=history)  # received, not yet processed
        self._last_processed: float | None = None
        self._lock = threading.Lock()

    def record(self, stamp: float) -> None:
        """Record that a frame stamped ``stamp`` (seconds) arrived.

        Called for every frame, dropped or not.
        """
        with self._lock:
            self._stamps.append(stamp)

    def reset(self) -> None:
        """Forget everything (the cache is empty again: deactivate, ``~/reset``)."""
        with self._lock:
            self._stamps.clear()
            self._last_processed = None

    def take(self, stamp: float) -> str | None:
        """Return the reason to reset the cache before the frame stamped ``stamp``, or None.

        The frame stamped ``stamp`` is processed now; the reason is a gap of the input stream
        longer than ``max_gap_s`` since the last processed frame. Stamps received after this frame
        are kept for the next call.
        """
        with self._lock:
            seen = [self._last_processed] if self._last_processed is not None else []
            if stamp in self._stamps:
                while self._stamps:
                    received = self._stamps.popleft()
                    seen.append(received)
                    if received == stamp:
                        break
            else:  # not recorded (a caller that records nothing): compare with the last one
                seen.append(stamp)
            self._last_processed = stamp
        gaps = [b - a for a, b in zip(seen, seen[1:]) if b >= a]  # backwards: the predictor's rule
        largest = max(gaps, default=0.0)
        if largest > self.max_gap_s:
            return f"input stream gap of {largest:.3f} s > max_gap_s {self.max_gap_s}"
        return None
