"""Backends: onnxruntime, the artefact cache and the Torch-TensorRT logic.

The onnxruntime backend drives StreamingPredictor exactly like the torch one; the artefact cache
reuses, rebuilds stale or corrupt entries; the Torch-TensorRT logic (API detection, compile
settings, cache keys, manifest checks) works with torch_tensorrt absent, against fake modules.
"""
import logging
import subprocess
import sys
import types

from hcdp_model.backends import BackendError, ExportStep
from hcdp_model.backends import build as build_module
from hcdp_model.backends import trt
from hcdp_model.backends.cache import cache_key, cache_root, cached_artefact
from hcdp_model.backends.manifest import Manifest, manifest_path
from hcdp_model.backends.torch_eager import TorchBackend
from hcdp_model.model import HCDPModel
from hcdp_model.predictor import load_predictor, StreamingPredictor
import numpy as np
import pytest
from tests.model.helpers import activate_temporal, micro_config, random_clip
import torch

WINDOW = 3


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def checkpoint(micro_checkpoint):
    return micro_checkpoint


def _frames(n, h=40, w=60):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_onnxruntime_predictor_equals_torch_predictor_through_resets(checkpoint):
    torch_pred = load_predictor(checkpoint, window=WINDOW, backend="torch")
    ort_pred = load_predictor(checkpoint, window=WINDOW, backend="onnxruntime")
    assert ort_pred.backend.name == "onnxruntime" and ort_pred.window == WINDOW
    stamps = [0.0, 0.1, 0.2, 0.3, 0.4, 2.0, 2.1]  # a gap before the 6th frame resets both
    fills = []
    for stamp, image in zip(stamps, _frames(len(stamps))):
        a = torch_pred.step(image, stamp, "cam", "bgr8")
        b = ort_pred.step(image, stamp, "cam", "bgr8")
        np.testing.assert_allclose(b.depth, a.depth, atol=1e-4)
        np.testing.assert_allclose(b.normals, a.normals, atol=1e-4)
        np.testing.assert_allclose(b.mask, a.mask, atol=1e-5)
        assert (b.reset, b.window_fill) == (a.reset, a.window_fill)
        fills.append(b.window_fill)
    assert fills == [1, 2, 3, 3, 3, 1, 2]


def test_onnxruntime_runs_window_1_whose_cache_of_earlier_frames_is_empty(checkpoint):
    # at window 1 the cache tensors hold 0 frames: IO binding must still get a valid pointer
    torch_pred = load_predictor(checkpoint, window=1, backend="torch")
    ort_pred = load_predictor(checkpoint, window=1, backend="onnxruntime")
    assert any(s.numel() == 0 for s in ort_pred.backend.init_state())
    for stamp, image in zip([0.0, 0.1, 0.2], _frames(3)):
        a = torch_pred.step(image, stamp, "cam", "bgr8")
        b = ort_pred.step(image, stamp, "cam", "bgr8")
        np.testing.assert_allclose(b.depth, a.depth, atol=1e-4)
        np.testing.assert_allclose(b.mask, a.mask, atol=1e-5)


def test_onnx_build_is_cached_and_a_corrupt_cached_file_is_rebuilt(checkpoint, monkeypatch,
                                                                   caplog):
    load_predictor(checkpoint, window=WINDOW, backend="onnxruntime")
    [cached] = list((cache_root() / "onnx").glob("*/step.onnx"))
    calls = []
    real_export = build_module.export_artefact
    monkeypatch.setattr(build_module, "export_artefact", lambda *a,
                        **k: calls.append(a) or real_export(*a, **k))
    load_predictor(checkpoint, window=WINDOW, backend="onnxruntime")
    assert calls == []  # reused
    cached.write_bytes(b"\x00garbage")
    with caplog.at_level(logging.WARNING):
        predictor = load_predictor(checkpoint, window=WINDOW, backend="onnxruntime")
    assert len(calls) == 1 and "unusable" in caplog.text and "rebuilding" in caplog.text
    assert predictor.step(_frames(1)[0], 0.0).depth.shape == (40, 60)


def test_export_step_with_float_valid_flags_still_equals_the_offline_causal_forward():
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    step = ExportStep(model, WINDOW)
    state = step.init_state()
    assert state[2].dtype == torch.float32 and state[2].tolist() == [0.0] * (WINDOW - 1)
    clip = random_clip(model, 2 * WINDOW)
    with torch.no_grad():
        offline = model(clip, window=WINDOW)
        for t in range(clip.shape[1]):
            depth, _, _, *state = step(clip[:, t], *state)
            torch.testing.assert_close(depth, offline["depth"][:, t], atol=1e-4, rtol=0)
    assert state[2].tolist() == [1.0] * (WINDOW - 1)


def test_torch_backend_ring_buffer_equals_the_offline_causal_forward_without_copying_the_cache():
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    backend = TorchBackend(model, WINDOW)
    state = backend.init_state()
    keys, ages = state[0], state[2]
    assert ages.tolist() == [-1] * WINDOW  # W slots, all empty
    clip = random_clip(model, 2 * WINDOW + 1)
    with torch.no_grad():
        offline = model(clip, window=WINDOW)
    for t in range(clip.shape[1]):
        (depth, _, _), state = backend.step(clip[:, t], state)
        torch.testing.assert_close(depth, offline["depth"][:, t], atol=1e-4, rtol=0)
    assert state[0] is keys  # the same buffer, updated in place
    assert sorted(state[2].tolist()) == list(range(WINDOW))  # frames since written; 0 = this frame


def test_predictor_refuses_a_backend_built_for_another_window():
    backend = TorchBackend(HCDPModel(micro_config(temporal=True)), WINDOW)
    assert StreamingPredictor(backend).window == WINDOW
    with pytest.raises(ValueError, match=r"does not match the requested window 8 \(the backend "
                                         r"has 3\)"):
        StreamingPredictor(backend, window=8)


def test_unknown_backend_is_refused(checkpoint):
    with pytest.raises(ValueError, match="expected backend torch/onnxruntime/tensorrt, got "
                                         "'openvino'"):
        load_predictor(checkpoint, backend="openvino")


def test_importing_the_backends_loads_neither_onnxruntime_nor_torch_tensorrt():
    code = ("import sys, hcdp_model.predictor, hcdp_model.export, hcdp_model.backends.build; "
            "print(sorted(m for m in ('onnxruntime', 'torch_tensorrt', 'tensorrt') if m in "
            "sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- the generic artefact cache (what the TensorRT path relies on) -------------------------------

def _manifest(**changes) -> Manifest:
    fields = {"format": "tensorrt", "checkpoint": "c", "checkpoint_hash": "abc",
              "preset": "micro", "precision": "fp16", "window": WINDOW, "model_resolution": 56,
              "camera_size": [480, 640], "letterbox": {}, "inputs": {"frame": [1, 3, 56, 56]},
              "outputs": {}, "io_dtype": "float32", "gpu": "NVIDIA H100"}
    return Manifest(**{**fields, **changes})


class _FakeBuilds:

    def __init__(self):
        self.built = 0

    def build(self, path):
        self.built += 1
        path.write_text(f"engine {self.built}")
        return _manifest()

    @staticmethod
    def load(path):
        text = path.read_text()
        if not text.startswith("engine"):
            raise BackendError(f"{path}: corrupt")
        return text


def test_cache_builds_once_then_loads():
    fake = _FakeBuilds()
    expected = {"precision": "fp16", "gpu": "NVIDIA H100"}
    assert cached_artefact("trt", {"k": 1}, "step.ep", expected, fake.build,
                           fake.load) == "engine 1"
    assert cached_artefact("trt", {"k": 1}, "step.ep", expected, fake.build,
                           fake.load) == "engine 1"
    assert fake.built == 1


def test_cache_rebuilds_an_entry_whose_manifest_does_not_match(caplog):
    fake = _FakeBuilds()
    cached_artefact("trt", {"k": 1}, "step.ep", {"gpu": "NVIDIA H100"}, fake.build, fake.load)
    [entry] = list((cache_root() / "trt").glob("*/step.ep"))
    _manifest(gpu="Orin").save(manifest_path(entry))  # e.g. a cache directory copied from a Jetson
    with caplog.at_level(logging.WARNING):
        assert cached_artefact("trt", {"k": 1}, "step.ep", {"gpu": "NVIDIA H100"},
                               fake.build, fake.load) == "engine 2"
    assert "gpu: artefact 'Orin', expected 'NVIDIA H100'" in caplog.text


def test_cache_rebuilds_a_corrupt_entry_and_keeps_no_half_built_one(caplog):
    fake = _FakeBuilds()
    cached_artefact("trt", {"k": 1}, "step.ep", {}, fake.build, fake.load)
    [entry] = list((cache_root() / "trt").glob("*/step.ep"))
    entry.write_text("truncated")
    with caplog.at_level(logging.WARNING):
        assert cached_artefact("trt", {"k": 1}, "step.ep", {}, fake.build, fake.load) == "engine 2"
    assert "unusable" in caplog.text

    def failing_build(path):
        path.write_text("half")
        raise RuntimeError("TensorRT builder ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cached_artefact("trt", {"k": 2}, "step.ep", {}, failing_build, fake.load)
    assert not (cache_root() / "trt" / cache_key({"k": 2})).exists()


# --- Torch-TensorRT without torch_tensorrt -------------------------------------------------------

def _fake_tensorrt(monkeypatch, version, trt_version="10.3.0"):
    monkeypatch.setitem(sys.modules, "torch_tensorrt", types.SimpleNamespace(__version__=version))
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=trt_version))


@pytest.mark.parametrize("version, explicit",
                         [("2.8.0", False), ("2.8.0+cu126", False), ("2.9.0", False),
                          ("2.10.0", True), ("2.10.0.dev20251001+cu130", True),
                          ("2.11.0a0", True), ("3.0.0", True)])
def test_detection_picks_the_compile_api_by_torch_tensorrt_version(monkeypatch, version, explicit):
    _fake_tensorrt(monkeypatch, version)
    api = trt.detect_api()
    assert api.explicit_typing is explicit and api.tensorrt_version == "10.3.0"


def test_precision_settings_for_the_2_8_and_the_explicit_typing_api():
    old, new = trt.TensorRTApi("2.8.0", "10.3.0"), trt.TensorRTApi("2.10.0", "10.13.0")
    assert old.precision_settings("fp16") == {"enabled_precisions": {torch.float32, torch.float16}}
    assert old.precision_settings("fp32") == {"enabled_precisions": {torch.float32}}
    assert new.precision_settings("fp32") == {"use_explicit_typing": True}
    assert new.precision_settings("fp16") == {"use_explicit_typing": True, "enable_autocast": True,
                                              "autocast_low_precision_type": torch.float16}
    assert new.precision_settings("bf16")["autocast_low_precision_type"] == torch.bfloat16
    with pytest.raises(ValueError, match="expected precision"):
        new.precision_settings("int8")


def test_missing_or_too_old_torch_tensorrt_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # import raises ImportError
    with pytest.raises(BackendError, match="backend tensorrt needs the torch_tensorrt package"):
        trt.detect_api()
    _fake_tensorrt(monkeypatch, "2.7.0")
    with pytest.raises(BackendError, match=r"torch_tensorrt 2.7.0 is too old; expected >= 2.8"):
        trt.detect_api()
    _fake_tensorrt(monkeypatch, "nightly")
    with pytest.raises(BackendError, match="cannot read the torch_tensorrt version 'nightly'"):
        trt.detect_api()


def test_tensorrt_cache_key_changes_with_every_field():
    api = trt.TensorRTApi("2.8.0", "10.3.0")
    base = {"api": api, "gpu": "Orin", "precision": "fp16", "window": 16, "resolution": 518,
            "checkpoint_hash": "abc", "inputs": {"frame": [1, 3, 518, 518]}}
    variants = [{}, {"api": trt.TensorRTApi("2.10.0", "10.3.0")},
                {"api": trt.TensorRTApi("2.8.0", "10.7.0")},
                {"gpu": "NVIDIA H100"}, {"precision": "fp32"}, {"window": 8}, {"resolution": 224},
                {"checkpoint_hash": "abd"}, {"inputs": {"frame": [1, 3, 224, 224]}}]
    keys = {cache_key(trt.cache_fields(**{**base, **v})) for v in variants}
    assert len(keys) == len(variants)
    assert cache_key(trt.cache_fields(**base)) == cache_key(trt.cache_fields(**base))  # stable


def test_tensorrt_artefact_from_another_gpu_or_version_is_refused(monkeypatch, tmp_path):
    _fake_tensorrt(monkeypatch, "2.8.0", "10.3.0")
    monkeypatch.setattr(build_module, "gpu_name", lambda device=None: "NVIDIA H100")
    artefact = tmp_path / "step.ep"
    artefact.write_bytes(b"engine")
    _manifest(gpu="Orin",
              versions={"tensorrt": "10.3.0",
                        "torch_tensorrt": "2.8.0"}).save(manifest_path(artefact))
    with pytest.raises(BackendError, match=r"refusing a mismatched tensorrt artefact \(gpu: "
                                           r"artefact 'Orin', expected 'NVIDIA H100'\)"):
        build_module.open_artefact(artefact, "cuda")
    _manifest(versions={"tensorrt": "10.7.0",
                        "torch_tensorrt": "2.8.0"}).save(manifest_path(artefact))
    with pytest.raises(BackendError, match="versions.tensorrt: artefact '10.7.0', expected "
                                           "'10.3.0'"):
        build_module.open_artefact(artefact, "cuda")


def test_tensorrt_compile_needs_a_cuda_device():
    step = ExportStep(HCDPModel(micro_config(temporal=True)), WINDOW)
    with pytest.raises(BackendError, match="needs a CUDA device, got cpu"):
        trt.compile_step(step, trt.TensorRTApi("2.8.0", "10.3.0"), "fp16", torch.device("cpu"))
