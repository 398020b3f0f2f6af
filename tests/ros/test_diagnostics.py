import pytest

from hcdp_ros.diagnostics import OK, WARN, NodeStats, RateMeter
from hcdp_ros.log_throttle import CauseThrottle


def test_rate_meter_measures_a_steady_rate_and_forgets_old_events():
    meter = RateMeter(window_s=2.0)
    for i in range(21):
        meter.tick(i * 0.1)  # 10 Hz for 2 s
    assert meter.rate(2.0) == pytest.approx(10.0)
    assert meter.rate(10.0) == 0.0


def test_report_has_rates_latency_inference_drops_fill_and_backend():
    stats = NodeStats("torch", "fp32", "cpu", window=16)
    for i in range(10):
        now = 100.0 + i * 0.1
        stats.record_input(now)
        stats.record_output(now + 0.03, stamp=now, inference_ms=20.0, window_fill=min(i + 1, 16), reset=i == 0)
    report = stats.report(101.0, dropped=3)
    values = dict(report.values)
    assert report.level == OK
    assert values["input_rate_hz"] == "10.00" and values["output_rate_hz"] == "10.00"
    assert values["latency_ms_mean"] == "30.0" and values["inference_ms_mean"] == "20.0"
    assert values["dropped_frames"] == "3" and values["window_fill"] == "10/16"
    assert values["cache_resets"] == "1"
    assert (values["backend"], values["precision"], values["device"]) == ("torch", "fp32", "cpu")


def test_no_input_warns():
    report = NodeStats("torch", "fp32", "cpu", 16).report(5.0, 0)
    assert report.level == WARN and "no input" in report.message


def test_input_without_output_warns_with_the_last_bad_input_cause():
    stats = NodeStats("torch", "fp32", "cpu", 16)
    for i in range(5):
        stats.record_input(i * 0.1)
        stats.record_bad_input("unsupported_encoding")
    report = stats.report(0.5, 0)
    assert report.level == WARN and "unsupported_encoding" in report.message
    assert dict(report.values)["bad_input.unsupported_encoding"] == "5"


def test_throttle_logs_once_per_cause_per_period_and_counts_the_rest():
    now = [0.0]
    throttle = CauseThrottle(5.0, clock=lambda: now[0])
    assert throttle.allow(("/img", "size_mismatch")) == 0
    assert throttle.allow(("/img", "size_mismatch")) is None
    assert throttle.allow(("/img", "empty_image")) == 0  # another cause is not throttled
    assert throttle.allow(("/img", "size_mismatch")) is None
    now[0] = 5.5
    assert throttle.allow(("/img", "size_mismatch")) == 2
