"""Once-per-cause log throttling.

A flood of the same bad input gives one line per period, with a count.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable
import threading
import time


class CauseThrottle:
    """Decides whether a message for ``key`` (e.g. ``(topic, cause)``) should be logged now."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic):
        if not period_s > 0:
            raise ValueError(f"period_s: expected > 0, got {period_s}")
        self.period_s = period_s
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> int | None:
        """None to stay quiet, else a count of suppressed messages for ``key``.

        The count is the number of messages for ``key`` suppressed since the last one.
        """
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)
