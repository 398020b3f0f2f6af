"""hcdp export: artefacts reproduce eager PyTorch, manifests are right, bad artefacts fail clearly.

ONNX and torch.export artefacts reproduce eager PyTorch over a streaming sequence (so the cache
path is exercised), manifests say what was exported, and bad artefacts fail clearly.
"""
import json

from hcdp_model.backends import BackendError
from hcdp_model.backends import build as build_module
from hcdp_model.backends.build import (
    export_artefact, ExportError, ExportSpec, open_artefact, open_backend,
)
from hcdp_model.backends.manifest import Manifest, manifest_path
from hcdp_model.backends.step import ExportStep
from hcdp_model.checkpoint import checkpoint_hash, load_checkpoint
from hcdp_model.cli import main as hcdp
import pytest
from tests.model.helpers import random_clip
import torch

WINDOW = 3


@pytest.fixture(scope="module")
def checkpoint(micro_checkpoint):
    return micro_checkpoint


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "step.onnx"
    export_artefact(checkpoint, out, ExportSpec("onnx", window=WINDOW, camera_size=(40, 60)))
    return out


def _eager_vs_backend(checkpoint, backend, frames=2 * WINDOW + 1):
    """Stream the same clip through eager PyTorch and `backend`; per-frame outputs side by side."""
    model = load_checkpoint(checkpoint)
    model.set_temporal_mode("causal")
    step = ExportStep(model.eval(), WINDOW)
    clip = random_clip(model, frames, seed=3)[0]
    ref_state, state, pairs = step.init_state(), backend.init_state(), []
    with torch.no_grad():
        for frame in clip:
            depth, normal, mask, *ref_state = step(frame[None], *ref_state)
            got, state = backend.step(frame[None], state)
            pairs.append(((depth, normal, mask), got))
    return pairs


def test_onnx_export_equals_eager_over_a_streaming_sequence(checkpoint, onnx_file):
    pairs = _eager_vs_backend(checkpoint, open_artefact(onnx_file))
    for want, got in pairs:
        for w, g in zip(want, got):
            torch.testing.assert_close(g, w, atol=1e-4, rtol=0)
    # the later frames attend over a full cache, so they differ from a fresh start
    assert not torch.allclose(pairs[-1][0][0], pairs[0][0][0])


def test_onnx_manifest_records_identity_shapes_versions_and_verification(checkpoint, onnx_file):
    manifest = json.loads(manifest_path(onnx_file).read_text())
    assert manifest["format"] == "onnx" and manifest["window"] == WINDOW
    assert manifest["precision"] == "fp32"
    assert manifest["checkpoint_hash"] == checkpoint_hash(checkpoint)
    assert manifest["camera_size"] == [40, 60] and manifest["model_resolution"] == 56
    assert manifest["letterbox"] == {"content_h": 37, "content_w": 56, "top": 9, "left": 0}
    assert list(manifest["inputs"])[:4] == ["frame", "block0_keys", "block0_values",
                                            "block0_valid"]
    assert manifest["inputs"]["frame"] == [1, 3, 56, 56]
    assert manifest["inputs"]["block0_valid"] == [WINDOW - 1]
    assert manifest["outputs"]["normal"] == [1, 3, 56, 56]
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["versions"]["onnxruntime"]
    check = manifest["extra"]["verification"]
    assert check["passed"] and max(check["max_abs_diff"].values()) < 1e-4
    assert check["tolerance"] == 1e-3


def test_torch_export_program_equals_eager(checkpoint, tmp_path):
    out = tmp_path / "step.pt2"
    manifest = export_artefact(checkpoint, out, ExportSpec("torch-export", window=WINDOW))
    assert manifest.format == "torch-export" and out.is_file()
    for want, got in _eager_vs_backend(checkpoint, open_artefact(out), frames=WINDOW + 1):
        for w, g in zip(want, got):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


def test_dynamo_onnx_exporter_also_equals_eager(checkpoint, tmp_path):
    pytest.importorskip("onnxscript")
    manifest = export_artefact(checkpoint, tmp_path / "step.onnx",
                               ExportSpec("onnx", window=WINDOW, onnx_exporter="dynamo"))
    assert manifest.extra["onnx_exporter"] == "dynamo"
    assert max(manifest.extra["verification"]["max_abs_diff"].values()) < 1e-4


def test_export_that_differs_from_eager_fails_loudly_and_leaves_no_artefact(checkpoint, tmp_path,
                                                                            monkeypatch):
    real_export = build_module.export_onnx

    def export_wrong_weights(step, path, *args, **kwargs):
        with torch.no_grad():
            # an exporter bug: the graph is not the model
            step.step.model.heads.mask[-1].bias.add_(0.5)
        return real_export(step, path, *args, **kwargs)

    monkeypatch.setattr(build_module, "export_onnx", export_wrong_weights)
    out = tmp_path / "step.onnx"
    with pytest.raises(ExportError, match=r"differs from eager fp32 PyTorch by .* > tolerance "
                                          r"0.001"):
        export_artefact(checkpoint, out, ExportSpec("onnx", window=WINDOW))
    assert not out.exists() and not manifest_path(out).exists()


def test_corrupt_onnx_file_gives_a_clear_error(onnx_file, tmp_path):
    bad = tmp_path / "step.onnx"
    bad.write_bytes(onnx_file.read_bytes()[:1000])
    manifest_path(bad).write_text(manifest_path(onnx_file).read_text())
    with pytest.raises(BackendError, match=r"step.onnx: ONNX Runtime cannot load .* corrupt"):
        open_artefact(bad)


def test_corrupt_torch_export_file_gives_a_clear_error(onnx_file, tmp_path):
    bad = tmp_path / "step.pt2"
    bad.write_bytes(b"not a zip archive")
    manifest = Manifest.load(manifest_path(onnx_file))
    manifest.format = "torch-export"
    manifest.save(manifest_path(bad))
    with pytest.raises(BackendError, match=r"step.pt2: cannot load the torch.export program .* "
                                           r"corrupt"):
        open_artefact(bad, trust_artefact=True)  # untrusted, it is refused before loading


def test_artefact_without_manifest_is_refused(onnx_file, tmp_path):
    lonely = tmp_path / "step.onnx"
    lonely.write_bytes(onnx_file.read_bytes())
    with pytest.raises(BackendError, match="manifest not found"):
        open_artefact(lonely)


def test_onnx_artefact_for_another_window_is_refused(onnx_file):
    with pytest.raises(BackendError, match=r"refusing a mismatched ONNX artefact \(window: "
                                           r"artefact 3, expected 5"):
        open_backend(onnx_file, backend="onnxruntime", window=5)
    with pytest.raises(BackendError, match="runs with backend 'onnxruntime', not 'torch'"):
        open_backend(onnx_file, backend="torch", window=WINDOW)


def test_export_cli_prints_the_difference_and_writes_the_manifest(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    code = hcdp(["export", "--checkpoint", str(checkpoint), "--backend", "onnx", "--window",
                 str(WINDOW),
                 "--size", "48", "64", "--frames", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "max abs difference vs eager fp32: random frames" in printed and ": OK" in printed
    assert Manifest.load(manifest_path(out)).camera_size == [48, 64]


def test_export_cli_rejects_a_wrong_suffix_and_a_missing_checkpoint(tmp_path, capsys):
    assert hcdp(["export", "--backend", "onnx", "--out", str(tmp_path / "x.pt2")]) == 2
    assert "must end with .onnx" in capsys.readouterr().out
    assert hcdp(["export", "--checkpoint", str(tmp_path / "nope"), "--backend", "onnx",
                 "--out", str(tmp_path / "x.onnx")]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_example_inputs_follow_the_device_of_the_weights():
    """Check `make_manifest` builds `example_inputs()` on the device of the weights.

    `make_manifest` runs the step on `example_inputs()`: on a CUDA model they were made on the CPU
    ("Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor)", issue 19.5).
    """
    from hcdp_model.model import HCDPModel
    from tests.model.helpers import micro_config

    step = ExportStep(HCDPModel(micro_config(temporal=True)).eval(), WINDOW).to("meta")
    assert {t.device.type for t in step.example_inputs()} == {"meta"}
    cpu = ExportStep(HCDPModel(micro_config(temporal=True)).eval(), WINDOW)
    assert {t.device.type for t in cpu.example_inputs()} == {"cpu"}
    assert [t.shape for t in step.example_inputs()] == [t.shape for t in cpu.example_inputs()]


def test_export_takes_its_check_frames_from_the_caller(checkpoint, tmp_path):
    frames = [f[None] for f in random_clip(load_checkpoint(checkpoint), 4, seed=7)[0]]
    out = tmp_path / "step.onnx"
    manifest = export_artefact(checkpoint, out, ExportSpec("onnx", window=WINDOW),
                               frames=(frames, "the caller's frames"))
    assert manifest.extra["verification"]["real_frames"] == "the caller's frames"
    stored = build_module.load_tensors(build_module.check_path(out).read_bytes())
    torch.testing.assert_close(stored["frame_0"], frames[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend, suffix", [("onnx", ".onnx"), ("torch-export", ".pt2")])
def test_export_cli_on_cuda(checkpoint, tmp_path, capsys, backend, suffix):
    if backend == "onnx":
        ort = pytest.importorskip("onnxruntime")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            pytest.skip("onnxruntime has no CUDA execution provider")
    out = tmp_path / f"step{suffix}"
    code = hcdp(["export", "--checkpoint", str(checkpoint), "--backend", backend,
                 "--window", str(WINDOW), "--device", "cuda", "--out", str(out)])
    assert code == 0, capsys.readouterr().out
    assert json.loads(manifest_path(out).read_text())["gpu"]


def test_export_cli_verifies_on_the_images_of_check_images(checkpoint, tmp_path, capsys):
    # the camera-like check frames come from the caller (a folder of images), not from a bag
    import cv2
    import numpy as np

    from hcdp_model.backends.frames import check_frames, read_images

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for k in range(3):
        cv2.imwrite(str(images / f"{k:02d}.png"), rng.integers(0, 256, (30, 40, 3), np.uint8))
    out = tmp_path / "step.onnx"
    assert hcdp(["export", "--checkpoint", str(checkpoint), "--backend", "onnx", "--window",
                 str(WINDOW), "--size", "30", "40", "--frames", "3", "--check-images",
                 str(images), "--out", str(out)]) == 0
    verification = json.loads(manifest_path(out).read_text())["extra"]["verification"]
    assert verification["real_frames"] == f"images of {images}"
    resolution = load_checkpoint(checkpoint).cfg.resolution
    expected = check_frames(read_images(images, 2), resolution, (30, 40))
    stored = build_module.load_tensors(build_module.check_path(out).read_bytes())
    torch.testing.assert_close(stored["frame_1"], expected[1])
    with pytest.raises(ValueError, match="found none at"):
        read_images(tmp_path / "nothing", 2)


@pytest.mark.parametrize("zooms", [(1.0,), (1.0, 2.0)])
def test_onnx_export_of_a_model_with_the_selfie_prior_equals_eager(tmp_path, zooms):
    """The real-trained prior (prior.kind selfie, in the bundled model) exports like the rest.

    With prior.selfie_zooms too: the network at two input sizes, the logits' maximum.
    """
    from hcdp_model.checkpoint import save_checkpoint
    from hcdp_model.model import HCDPModel
    from tests.model.helpers import activate_temporal, micro_config

    torch.manual_seed(0)
    cfg = micro_config(temporal=True, prior="selfie")
    cfg.prior.selfie_zooms = zooms
    model = activate_temporal(HCDPModel(cfg))
    with torch.no_grad():  # the prior's path active, as after training
        model.human_prior.psi.weight.normal_(0.0, 0.5)
        model.fusion.layers[0].weight[:, -1].normal_(0.0, 0.5)
    checkpoint = save_checkpoint(model, tmp_path / "selfie")
    out = tmp_path / "step.onnx"
    export_artefact(checkpoint, out, ExportSpec("onnx", window=WINDOW, camera_size=(40, 60)))
    pairs = _eager_vs_backend(checkpoint, open_artefact(out))
    for want, got in pairs:
        for w, g in zip(want, got):
            torch.testing.assert_close(g, w, atol=1e-4, rtol=0)
