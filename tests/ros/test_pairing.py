"""Metric depth is paired with the colour frame nearest in stamp, whichever arrives first."""
import threading
import time

from hcdp_ros.pairing import StampPairing
import pytest


def test_depth_already_buffered_is_paired_without_waiting():
    pairing = StampPairing()
    pairing.add(10.00, "d0")
    pairing.add(10.10, "d1")
    start = time.monotonic()
    assert pairing.match(10.09, max_dt=0.05, wait_s=1.0) == ("d1", pytest.approx(0.01))
    assert time.monotonic() - start < 0.05  # a depth at/after the stamp exists: no wait


def test_depth_arriving_after_the_colour_frame_is_waited_for_and_paired():
    # the RGB-D case of issue 14: every depth image comes 20 ms after its colour image
    pairing = StampPairing()
    paired = []
    for i in range(20):
        stamp = 100.0 + i / 15
        later = threading.Timer(0.02, pairing.add, (stamp, f"depth{i}"))
        later.start()
        paired.append(pairing.match(stamp, max_dt=0.05, wait_s=0.2)[0])
        later.join()
    assert paired == [f"depth{i}" for i in range(20)]


def test_the_nearest_stamp_within_max_dt_wins_in_either_direction():
    pairing = StampPairing()
    for stamp, name in ((1.00, "a"), (1.04, "b"), (1.10, "c")):
        pairing.add(stamp, name)
    assert pairing.match(1.05, 0.05, 0.0)[0] == "b"
    assert pairing.match(1.09, 0.05, 0.0)[0] == "c"


def test_no_depth_within_max_dt_gives_none_and_the_nearest_difference():
    pairing = StampPairing()
    pairing.add(2.0, "old")
    start = time.monotonic()
    item, dt = pairing.match(2.5, max_dt=0.05, wait_s=0.05)
    assert item is None and dt == pytest.approx(0.5)
    assert 0.04 < time.monotonic() - start < 0.5  # waited for a depth that never came
    assert StampPairing().match(1.0, 0.05, 0.0) == (None, None)


def test_the_buffer_keeps_the_last_size_items_and_clears():
    pairing = StampPairing(size=2)
    for i in range(5):
        pairing.add(float(i), i)
    assert pairing.match(0.0, 0.5, 0.0)[0] is None and pairing.match(3.0, 0.5, 0.0)[0] == 3
    pairing.clear()
    assert pairing.match(3.0, 0.5, 0.0) == (None, None)
    with pytest.raises(ValueError, match="size: expected >= 1, got 0"):
        StampPairing(0)
