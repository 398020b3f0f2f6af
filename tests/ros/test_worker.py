import threading
import time

from hcdp_ros.worker import InferenceWorker, LatestSlot


def test_slot_keeps_only_the_newest_item_and_reports_each_overwrite():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.take(timeout=0) == 3
    assert slot.take(timeout=0) is None


def test_close_wakes_a_waiting_taker():
    slot: LatestSlot[int] = LatestSlot()
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take()))
    taker.start()
    time.sleep(0.05)
    slot.close()
    taker.join(timeout=1)
    assert got == [None] and not taker.is_alive()


def test_a_slow_model_fed_faster_than_it_runs_drops_frames_instead_of_queueing():
    inference_s, period_s, frames = 0.05, 0.005, 120  # camera 200 Hz, model 20 Hz
    started: list[tuple[int, float]] = []
    submitted_at: dict[int, float] = {}
    max_pending = 0

    def process(i: int) -> None:
        started.append((i, time.monotonic()))
        time.sleep(inference_s)

    worker: InferenceWorker[int] = InferenceWorker(process, on_error=lambda e, i: None)
    worker.start()
    for i in range(frames):
        submitted_at[i] = time.monotonic()
        worker.submit(i)
        max_pending = max(max_pending, worker.pending)
        time.sleep(period_s)
    assert worker.stop(timeout=2)

    processed = [i for i, _ in started]
    assert max_pending <= 1  # never more than one frame waits
    assert processed == sorted(processed)  # newest-first hand-off never reorders
    assert worker.dropped >= frames // 2  # most frames are dropped, not queued
    assert worker.submitted == frames
    # every frame was processed, dropped, or (at most one) discarded by stop()
    assert worker.submitted - worker.dropped - worker.processed in (0, 1)
    # bounded latency: a frame starts at most one inference (plus scheduling slack) after it
    # arrived
    waits = [t - submitted_at[i] for i, t in started]
    assert max(waits) < inference_s + 0.1
    # a queue would process every frame and finish ~frames × inference after the start
    assert len(processed) < frames * period_s / inference_s * 1.5 + 2


def test_an_exception_in_one_frame_is_reported_and_the_worker_keeps_going():
    errors, done = [], []
    gate = threading.Event()

    def process(i: int) -> None:
        if i == 0:
            raise RuntimeError("bad frame")
        done.append(i)
        gate.set()

    worker: InferenceWorker[int] = InferenceWorker(process, on_error=lambda e,
                                                   i: errors.append((str(e), i)))
    worker.start()
    worker.submit(0)
    time.sleep(0.05)
    worker.submit(1)
    assert gate.wait(timeout=2)
    worker.stop()
    assert errors == [("bad frame", 0)] and done == [1]
