"""Pair a colour frame with the metric depth image nearest in stamp, whichever arrived first.

RGB-D drivers often deliver the depth image a few milliseconds after the colour image with the
same (or a close) stamp. Pairing only with depth already received loses every such frame, so
:class:`StampPairing` buffers the last few depth messages and, for a colour frame, waits (up to a
bound) for a depth image that may still come — the rule of message_filters' approximate-time
policy for two topics: the nearest stamp within ``max_dt`` wins, and once a depth image stamped at
or after the colour frame is there, no later one can be nearer (stamps arrive in order).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class StampPairing(Generic[T]):
    """The last ``size`` (stamp, item) pairs of one topic; ``match`` may wait for the next one."""

    def __init__(self, size: int = 8, clock: Callable[[], float] = time.monotonic):
        if size < 1:
            raise ValueError(f"size: expected >= 1, got {size}")
        self._items: deque[tuple[float, T]] = deque(maxlen=size)
        self._cond = threading.Condition()
        self._clock = clock

    def add(self, stamp: float, item: T) -> None:
        """Buffer ``item`` stamped ``stamp`` (seconds) and wake a waiting ``match``."""
        with self._cond:
            self._items.append((stamp, item))
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def match(self, stamp: float, max_dt: float, wait_s: float) -> tuple[T | None, float | None]:
        """Return the buffered item nearest to ``stamp`` within ``max_dt``, and the difference.

        That is ``(item, |stamp difference|)``, or ``(None, nearest difference or None)``. Waits up
        to ``wait_s`` seconds while no item stamped at or after ``stamp`` has arrived (a nearer one
        may still come).
        """
        deadline = self._clock() + wait_s
        with self._cond:
            while not any(s >= stamp for s, _ in self._items):
                left = deadline - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._items:
                return None, None
            dt, item = min(((abs(s - stamp), item) for s, item in self._items),
                           key=lambda pair: pair[0])
        return (item, dt) if dt <= max_dt else (None, dt)
