from hcdp_ros.diagnostics import NodeStats, OK, RateMeter, RecentValues, StageTimes, WARN
from hcdp_ros.log_throttle import CauseThrottle
import pytest


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
        stats.record_output(now + 0.03, stamp=now, times=StageTimes(2.0, 20.0, 1.0),
                            window_fill=min(i + 1, 16), reset=i == 0)
    report = stats.report(101.0, dropped=3)
    values = dict(report.values)
    assert report.level == OK
    assert values["input_rate_hz"] == "10.00" and values["output_rate_hz"] == "10.00"
    assert values["latency_ms_mean"] == "30.0" and values["inference_ms_mean"] == "20.0"
    assert values["decode_ms_p50"] == "2.0" and values["publish_ms_p95"] == "1.0"
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


def test_percentiles_match_numpy_on_the_recent_window():
    import numpy as np

    values = RecentValues(size=100)
    samples = np.random.default_rng(0).exponential(50.0, 250)
    for v in samples:
        values.add(float(v))
    recent = samples[-100:]
    for q in (0, 50, 95, 100):
        assert values.percentile(q) == pytest.approx(np.percentile(recent, q))
    assert np.isnan(RecentValues().percentile(50))


def test_each_stage_reports_p50_and_p95_and_a_slow_tail_shows_in_p95_only():
    stats = NodeStats("torch", "fp32", "cpu", 16)
    for i in range(100):
        slow = i % 10 == 0  # every tenth frame decodes slowly
        stats.record_input(i * 0.05)
        times = StageTimes(50.0 if slow else 5.0, 30.0, 2.0)
        stats.record_output(i * 0.05 + 0.01, i * 0.05, times, 16, False)
    values = dict(stats.report(5.0, 0).values)
    assert values["decode_ms_p50"] == "5.0" and values["decode_ms_p95"] == "50.0"
    assert values["inference_ms_p50"] == values["inference_ms_p95"] == "30.0"
    for stage in ("decode", "inference", "publish", "latency"):
        assert {f"{stage}_ms_{k}" for k in ("mean", "p50", "p95", "max")} <= set(values)


def test_resets_per_second_over_the_last_window():
    stats = NodeStats("torch", "fp32", "cpu", 16, rate_window_s=5.0)
    for i in range(50):  # 10 Hz output, a reset every second
        stats.record_input(i * 0.1)
        stats.record_output(i * 0.1, i * 0.1, StageTimes(1, 1, 1), 1, reset=i % 10 == 0)
    values = dict(stats.report(4.95, 0).values)
    assert values["cache_resets"] == "5" and values["cache_resets_per_s"] == "1.00"
    assert dict(stats.report(30.0, 0).values)["cache_resets_per_s"] == "0.00"


def test_the_startup_check_of_the_backend_is_reported_when_there_is_one():
    check = {"max_error": 1.5e-4, "tolerance": 1e-3, "frames": 4}
    stats = NodeStats("onnxruntime", "fp32", "cpu", 16, startup_check=check)
    values = dict(stats.report(0, 0).values)
    assert (values["startup_check.max_error"], values["startup_check.tolerance"],
            values["startup_check.frames"]) == ("0.00015", "0.001", "4")
    assert not any(k.startswith("startup_check") for k, _ in NodeStats("torch", "fp32", "cpu", 16)
                   .report(0, 0).values)
