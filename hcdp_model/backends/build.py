"""Build, verify and open backends: what `hcdp export` and `load_predictor` share.

`export_artefact` writes an artefact (ONNX graph, torch.export program or Torch-TensorRT program) with
its manifest, loads it back from disk and streams random and real frames through it and through eager
fp32 PyTorch, failing above a tolerance. `open_artefact` loads an artefact, refusing a mismatched one.
`open_backend` is what `load_predictor` calls: an eager model, an explicit artefact, or a cached build.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import checkpoint_hash, load_checkpoint
from ..model import HCDPModel
from ..preprocess import Letterbox
from . import trt
from .base import BACKENDS, PRECISIONS, Backend, BackendError, check_precision
from .cache import cached_artefact
from .frames import random_frames, real_frames
from .manifest import Manifest, gpu_name, manifest_path, runtime_versions
from .module import ModuleBackend
from .ort import ONNX_OPSET, OnnxRuntimeBackend, export_onnx, io_names
from .step import ExportStep
from .torch_eager import TorchBackend

log = logging.getLogger(__name__)
FORMATS = {"onnx": ".onnx", "torch-export": ".pt2", "tensorrt": trt.SUFFIX}
# Max |export - eager fp32| over depth, normals and mask logits, per precision of the export.
TOLERANCES = {"fp32": 1e-3, "fp16": 5e-2, "bf16": 1e-1}


class ExportError(BackendError):
    """An export does not reproduce eager PyTorch within the tolerance."""


@dataclass
class ExportSpec:
    format: str                                   # onnx | torch-export | tensorrt
    precision: str = "fp32"
    window: int = 16
    camera_size: tuple[int, int] = (480, 640)     # (H, W): the letterbox recorded in the manifest
    device: str = "cpu"
    onnx_exporter: str = "torchscript"
    tolerance: float | None = None                # None: TOLERANCES[precision]
    verify_frames: int = 4
    extra: dict[str, object] = field(default_factory=dict)

    def validate(self) -> "ExportSpec":
        if self.format not in FORMATS:
            raise ValueError(f"expected format {'/'.join(FORMATS)}, got {self.format!r}")
        dtype = check_precision(self.precision, torch.device(self.device))
        if self.format == "onnx" and dtype == torch.bfloat16:
            raise ValueError("ONNX export supports fp32 and fp16 (on CUDA), not bf16")
        if self.window < 1:
            raise ValueError(f"expected a window >= 1, got {self.window}")
        return self

    @property
    def io_dtype(self) -> torch.dtype:
        """Graph input/output dtype: TensorRT programs keep fp32 I/O and lower precision inside."""
        return trt.IO_DTYPE if self.format == "tensorrt" else PRECISIONS[self.precision]


def load_streaming_model(checkpoint: str | Path) -> HCDPModel:
    model = load_checkpoint(checkpoint)
    if model.temporal_blocks is not None:
        model.set_temporal_mode("causal")
    return model.eval()


def _shapes(tensors) -> list[list[int]]:
    return [list(t.shape) for t in tensors]


def make_manifest(spec: ExportSpec, step: ExportStep, checkpoint: str | Path, digest: str) -> Manifest:
    example = step.example_inputs()
    with torch.inference_mode():
        outputs = step(*example)
    inputs, output_names = io_names(step)
    h, w = spec.camera_size
    box = Letterbox.fit(h, w, step.resolution)
    return Manifest(
        format=spec.format, checkpoint=str(checkpoint), checkpoint_hash=digest,
        preset=step.step.model.cfg.preset, precision=spec.precision, window=spec.window,
        model_resolution=step.resolution, camera_size=[h, w],
        letterbox={"content_h": box.new_h, "content_w": box.new_w, "top": box.top, "left": box.left},
        inputs=dict(zip(inputs, _shapes(example))), outputs=dict(zip(output_names, _shapes(outputs))),
        io_dtype=str(spec.io_dtype).removeprefix("torch."), versions=runtime_versions(),
        gpu=gpu_name(spec.device) if torch.device(spec.device).type == "cuda" else None,
        extra=dict(spec.extra))


def stream_difference(candidate: Backend, reference: ExportStep, frames: list[torch.Tensor]) -> float:
    """Stream `frames` through both from an empty cache; max |candidate - reference| over all outputs
    of all frames (so errors in the cache path show up in later frames)."""
    device = candidate.device
    ref_state = reference.init_state(1, device, torch.float32)
    cand_state = candidate.init_state()
    worst = 0.0
    with torch.inference_mode():
        for frame in frames:
            frame = frame.to(device)
            depth, normal, mask_logits, *ref_state = reference(frame, *ref_state)
            want = (depth, normal, mask_logits)
            got, cand_state = candidate.step(frame.to(candidate.input_dtype), cand_state)
            worst = max(worst, *(float((g.float() - r.float()).abs().max()) for g, r in zip(got, want)))
    return worst


def _write(spec: ExportSpec, step: ExportStep, out: Path) -> None:
    device = torch.device(spec.device)
    dtype = PRECISIONS[spec.precision]
    if spec.format == "onnx":
        export_onnx(copy.deepcopy(step).cpu(), out, dtype, spec.onnx_exporter)
    elif spec.format == "torch-export":
        module = copy.deepcopy(step).to(device, dtype).eval()
        with torch.no_grad():
            program = torch.export.export(module, step.example_inputs(device, dtype))
        torch.export.save(program, str(out))
    else:
        program, inputs = trt.compile_step(copy.deepcopy(step), trt.detect_api(), spec.precision, device)
        trt.save_program(program, out, inputs)


def export_artefact(checkpoint: str | Path, out: str | Path, spec: ExportSpec) -> Manifest:
    """Write the step graph of `checkpoint` to `out` (+ `out`.json manifest), verified against eager."""
    spec.validate()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if spec.format == "tensorrt":
        api = trt.detect_api()  # fail before minutes of work if the runtime is missing
        spec.extra |= {"tensorrt_api": "explicit_typing" if api.explicit_typing else "enabled_precisions"}
    if spec.format == "onnx":
        spec.extra |= {"onnx_exporter": spec.onnx_exporter, "opset": ONNX_OPSET}
    model = load_streaming_model(checkpoint)
    reference = ExportStep(model, spec.window).to(spec.device)
    manifest = make_manifest(spec, reference, checkpoint, checkpoint_hash(checkpoint))
    _write(spec, reference, out)
    manifest.save(manifest_path(out))
    candidate = open_artefact(out, spec.device)
    tolerance = spec.tolerance if spec.tolerance is not None else TOLERANCES[spec.precision]
    real, source = real_frames(model.cfg.resolution, spec.verify_frames, spec.camera_size)
    diffs = {"random": stream_difference(candidate, reference, random_frames(model.cfg.resolution,
                                                                           spec.verify_frames)),
             "real": stream_difference(candidate, reference, real)}
    manifest.extra["verification"] = {"max_abs_diff": diffs, "tolerance": tolerance, "frames": spec.verify_frames,
                                      "real_frames": source, "passed": max(diffs.values()) <= tolerance}
    manifest.save(manifest_path(out))
    if max(diffs.values()) > tolerance:
        out.unlink()
        manifest_path(out).unlink()
        raise ExportError(f"{out}: {spec.format} {spec.precision} export differs from eager fp32 PyTorch by "
                          f"{max(diffs.values()):.3g} (random frames {diffs['random']:.3g}, real frames "
                          f"{diffs['real']:.3g}) > tolerance {tolerance:g}; artefact removed")
    return manifest


def _tensorrt_expected() -> dict[str, object]:
    api = trt.detect_api()
    return {"gpu": gpu_name(), "versions.tensorrt": api.tensorrt_version,
            "versions.torch_tensorrt": api.torch_tensorrt_version}


def open_artefact(path: str | Path, device: str | torch.device = "cpu",
                  expected: dict[str, object] | None = None) -> Backend:
    """Load an exported artefact by its manifest's format; refuse it if the manifest differs from
    `expected` (and, for TensorRT, from this machine's GPU and versions)."""
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"{path}: artefact not found")
    manifest = Manifest.load(manifest_path(path))
    expected = dict(expected or {})
    if manifest.format == "onnx":
        return OnnxRuntimeBackend(path, device, expected=expected)
    if manifest.format == "tensorrt":
        expected |= _tensorrt_expected()
    problems = manifest.mismatches(expected)
    if problems:
        raise BackendError(f"{path}: refusing a mismatched {manifest.format} artefact ({'; '.join(problems)}); "
                           f"rebuild it with `hcdp export --backend {manifest.format}`")
    if manifest.format == "tensorrt":
        return ModuleBackend("tensorrt", trt.load_program(path), manifest, device)
    if manifest.format != "torch-export":
        raise BackendError(f"{path}: unknown artefact format {manifest.format!r}; expected one of {list(FORMATS)}")
    try:
        program = torch.export.load(str(path)).module()
    except Exception as err:  # a corrupt zip/serialised program: many exception types, one meaning
        raise BackendError(f"{path}: cannot load the torch.export program ({type(err).__name__}: "
                           f"{str(err).strip()[:300]}); the file is corrupt, re-export it") from err
    return ModuleBackend("torch-export", program, manifest, device)


ARTEFACT_BACKENDS = {".onnx": "onnxruntime", ".pt2": "torch", trt.SUFFIX: "tensorrt"}


def open_backend(checkpoint: str | Path, backend: str = "torch", window: int = 16, device: str = "cpu",
                 precision: str = "fp32") -> Backend:
    """A checkpoint (or an exported artefact) as a ready backend.

    torch: eager model (or a .pt2 from `hcdp export --backend torch-export`). onnxruntime / tensorrt:
    a .onnx / .ep artefact is loaded as is (refused if its window or precision differ from the ones
    asked for); a checkpoint is exported once into the artefact cache (~/.cache/hcdp/<format>/<key>)
    and loaded from there afterwards."""
    if backend not in BACKENDS:
        raise ValueError(f"expected backend {'/'.join(BACKENDS)}, got {backend!r}")
    check_precision(precision, torch.device(device))
    path = Path(checkpoint)
    if path.suffix in ARTEFACT_BACKENDS:
        if ARTEFACT_BACKENDS[path.suffix] != backend:
            raise BackendError(f"{path}: a {path.suffix} artefact runs with backend "
                               f"{ARTEFACT_BACKENDS[path.suffix]!r}, not {backend!r}")
        return open_artefact(path, device, {"window": window, "precision": precision})
    if backend == "torch":
        return TorchBackend(load_streaming_model(path), window, device, precision)
    fmt = "onnx" if backend == "onnxruntime" else "tensorrt"
    spec = ExportSpec(format=fmt, precision=precision, window=window, device=device).validate()
    digest = checkpoint_hash(path)
    expected: dict[str, object] = {"format": fmt, "checkpoint_hash": digest, "precision": precision,
                                   "window": window}
    if fmt == "onnx":
        fields = {**expected, "torch": torch.__version__, "exporter": spec.onnx_exporter, "opset": ONNX_OPSET}
    else:
        api = trt.detect_api()
        step = ExportStep(load_streaming_model(path), window)
        inputs = dict(zip(io_names(step)[0], _shapes(step.example_inputs())))
        gpu = gpu_name(device)
        fields = trt.cache_fields(api, gpu, precision, window, step.resolution, digest, inputs)
        expected |= {"gpu": gpu, "versions.tensorrt": api.tensorrt_version,
                     "versions.torch_tensorrt": api.torch_tensorrt_version, "inputs": inputs}

    def build(out: Path) -> Manifest:
        if fmt == "tensorrt":
            log.warning("building the TensorRT program for %s (%s, window %d) on %s: this takes minutes, "
                        "once per GPU, TensorRT version, precision and window; it is cached under %s",
                        path, precision, window, gpu, out.parent)
        return export_artefact(path, out, spec)

    return cached_artefact(fmt, fields, "step" + FORMATS[fmt], expected, build,
                           lambda out: open_artefact(out, device, expected))
