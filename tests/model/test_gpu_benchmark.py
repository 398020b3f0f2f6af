"""benchmarks/gpu.py on a machine without a GPU.

It refuses clearly, and its helpers and measuring functions (device-agnostic) run on the CPU with
the tiny preset.
"""
from __future__ import annotations

from benchmarks import gpu
import pytest
import torch


def test_it_refuses_without_cuda_and_says_what_to_run_instead():
    with pytest.raises(gpu.NoCuda, match="needs a CUDA GPU, found none") as err:
        gpu.require_cuda(False)
    assert "benchmarks/streaming.py" in str(err.value)
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        gpu.main(["--device", "cpu", "--presets", "tiny"])


def test_summarise_gives_median_and_nearest_rank_p90():
    assert gpu.summarise([5.0, 1.0, 3.0]) == (3.0, 5.0)
    assert gpu.summarise([float(i) for i in range(1, 11)]) == (5.5, 9.0)
    with pytest.raises(ValueError, match="at least one timing"):
        gpu.summarise([])


def test_plan_lists_only_what_is_installed_and_asked():
    def nothing(module):
        return False
    rows = gpu.plan(["small"], ["fp16"], skip_compile=True, installed=nothing)
    assert [m for _, _, m in rows] == ["single eager", "stream eager", "stream cudagraph",
                                       "node 640x480", "node 1280x720"]
    full = gpu.plan(["small", "base"], ["bf16", "fp16"], False, lambda m: True)
    measured = {(p, q, m) for p, q, m in full}
    assert ("base", "fp16", "stream tensorrt") in measured
    assert ("small", "fp16", "stream compile+cudagraph") in measured
    assert ("small", "bf16", "stream onnxruntime-cuda") not in measured  # no bf16 ONNX


def test_table_and_ratios():
    rows = [gpu.Row("small", "fp16", "single eager", 2.0, 2.5, peak_mb=100.0),
            gpu.Row("small", "fp16", "stream cudagraph", 2.2, 2.4),
            gpu.Row("small", "fp16", "stream tensorrt", note="not built: BackendError: x")]
    assert gpu.ratios(rows) == {"small fp16 cudagraph": pytest.approx(1.1)}
    table = gpu.format_table(rows).splitlines()
    assert "median ms" in table[0] and len(table) == 5
    assert "2.20" in table[3] and table[4].rstrip().endswith("not built: BackendError: x")


def test_step_and_node_measurements_run_on_the_cpu():
    cpu = torch.device("cpu")
    rows = gpu.measure_steps("tiny", "fp32", 2, 2, cpu, ["eager"])
    assert [r.what for r in rows] == ["single eager", "stream eager"]
    assert all(r.ms > 0 and r.p90_ms >= r.ms and r.peak_mb is None for r in rows)
    node = gpu.measure_node("tiny", "fp32", 2, 1, cpu, cuda_graph=False)
    assert [r.what for r in node] == ["node 640x480", "node 1280x720"] and node[0].ms > 0


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_training_throughput_runs_a_real_optimizer_step(stage):
    row = gpu.measure_training("tiny", stage, batch=1, frames=2, size=224, steps=1,
                               device=torch.device("cpu"))
    assert row.what == f"train stage {stage}" and row.images_per_s > 0
    assert row.images_per_s == pytest.approx((2 if stage == 2 else 1) / row.ms * 1e3)


def test_train_batch_matches_the_dataset_layout():
    clip = gpu.train_batch(2, batch=2, frames=3, size=8, device=torch.device("cpu"))
    assert clip["image"].shape == (2, 3, 3, 8, 8) and clip["K"].shape == (2, 3, 3, 3)
    assert clip["frame_index"].tolist() == [[0, 1, 2]] * 2
    frame = gpu.train_batch(1, batch=2, frames=3, size=8, device=torch.device("cpu"))
    assert frame["depth"].shape == (2, 1, 8, 8) and "stride" not in frame
    assert torch.allclose(frame["normal"].norm(dim=1), torch.ones(2, 8, 8), atol=1e-5)


def test_artefact_rows_export_verify_and_time_or_say_why_not():
    pytest.importorskip("onnxruntime")
    cpu = torch.device("cpu")
    row = gpu.measure_artefact("tiny", "fp32", "stream onnxruntime-cuda", 2, 1, cpu)
    assert row.ms > 0 and "onnxruntime" in row.note, row
    failed = gpu.measure_artefact("tiny", "fp16", "stream tensorrt", 2, 1, cpu)
    assert failed.ms is None and failed.note.startswith("not built: "), failed
