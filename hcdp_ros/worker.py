"""Latest-frame-only hand-off between the subscription callback and one inference thread.

The callback calls :meth:`InferenceWorker.submit`, which never blocks: a frame waiting in the slot
is replaced by the newer one and counted as dropped. So a model slower than the camera drops frames
instead of queueing them, and the latency from arrival to processing stays bounded by one
inference.
"""
from __future__ import annotations

from collections.abc import Callable
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A one-item mailbox: ``put`` overwrites, ``take`` waits for an item or for ``close``."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._full = False
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: T) -> bool:
        """Store ``item``; True if it replaced an item nobody had taken (that one is dropped)."""
        with self._cond:
            replaced = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """Return the newest item, or None when closed (or on timeout)."""
        with self._cond:
            self._cond.wait_for(lambda: self._full or self._closed, timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Wake the taker; an item still in the slot is discarded."""
        with self._cond:
            self._closed = True
            self._item, self._full = None, False
            self._cond.notify_all()

    @property
    def pending(self) -> bool:
        """Whether an item waits in the slot (at most one ever does)."""
        with self._cond:
            return self._full


class InferenceWorker(Generic[T]):
    """Runs ``process(item)`` on a background thread for the newest submitted item only.

    ``on_error(exc, item)`` is called (on the worker thread) for any exception ``process`` raises,
    so one bad frame never stops the worker.
    """

    def __init__(self, process: Callable[[T], None],
                 on_error: Callable[[Exception, T], None], name: str = "hcdp-inference"):
        self._process = process
        self._on_error = on_error
        self._slot: LatestSlot[T] = LatestSlot()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()
        self.submitted = 0
        self.dropped = 0
        self.processed = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: T) -> None:
        """Hand over ``item`` without blocking; a not-yet-started older item is dropped."""
        replaced = self._slot.put(item)
        with self._lock:
            self.submitted += 1
            self.dropped += int(replaced)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop after the item in progress; True if the thread ended within ``timeout``."""
        self._slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Items waiting (0 or 1)."""
        return int(self._slot.pending)

    def _run(self) -> None:
        while (item := self._slot.take()) is not None:
            try:
                self._process(item)
            # noqa: BLE001 - reported through on_error, the worker lives on
            except Exception as exc:
                self._on_error(exc, item)
            with self._lock:
                self.processed += 1
