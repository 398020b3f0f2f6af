"""The cache's gap rule looks at the input stream, so a slow model keeps its temporal cache."""
from hcdp_ros.input_gaps import InputGaps
import pytest


def test_a_slow_model_on_a_steady_stream_never_resets():
    # 30 Hz camera, a model that takes 1.5 s per frame: the node sees every 45th frame
    gaps = InputGaps(max_gap_s=0.5)
    stamps = [i / 30 for i in range(30 * 20)]
    reasons = []
    for i, stamp in enumerate(stamps):
        gaps.record(stamp)
        if i % 45 == 0:
            reasons.append(gaps.take(stamp))
    assert len(reasons) == 14 and reasons == [None] * 14


def test_processed_stamps_alone_would_reset_every_frame():
    # the old rule (consecutive processed stamps): 1.5 s apart > 0.5 s on every frame
    processed = [i * 45 / 30 for i in range(14)]
    assert all(b - a > 0.5 for a, b in zip(processed, processed[1:]))


def test_a_pause_of_the_camera_resets_even_when_the_frames_around_it_were_dropped():
    gaps = InputGaps(max_gap_s=0.5)
    for stamp in (0.0, 0.1, 0.2):
        gaps.record(stamp)
    assert gaps.take(0.0) is None
    for stamp in (1.2, 1.3):  # the camera stalled 1 s after 0.2; 0.1, 0.2 and 1.2 are dropped
        gaps.record(stamp)
    reason = gaps.take(1.3)
    assert reason == "input stream gap of 1.000 s > max_gap_s 0.5"
    gaps.record(1.4)
    assert gaps.take(1.4) is None  # counted once


def test_frames_received_after_the_processed_one_count_for_the_next():
    gaps = InputGaps(max_gap_s=0.5)
    gaps.record(0.0)
    gaps.take(0.0)
    gaps.record(0.1)
    gaps.record(2.0)  # arrived while frame 0.1 was being taken
    assert gaps.take(0.1) is None
    assert gaps.take(2.0).startswith("input stream gap of 1.900 s")


def test_backwards_stamps_are_left_to_the_predictor_and_reset_forgets():
    gaps = InputGaps(max_gap_s=0.5)
    gaps.record(5.0)
    gaps.take(5.0)
    gaps.record(1.0)
    assert gaps.take(1.0) is None  # the predictor resets on time going backwards
    gaps.reset()
    gaps.record(9.0)
    assert gaps.take(9.0) is None  # nothing before it after a reset
    gaps.take(20.0)  # a stamp nobody recorded: compared with the last processed one
    assert gaps.take(20.0) is None
    with pytest.raises(ValueError, match="max_gap_s: expected > 0"):
        InputGaps(0.0)
