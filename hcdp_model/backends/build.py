"""Build, verify and open backends: what `hcdp export` and `load_predictor` share.

`export_artefact` writes an artefact (ONNX graph, torch.export program or Torch-TensorRT program)
with its manifest, loads it back from disk and streams random and real frames through it and
through eager fp32 PyTorch, failing above a tolerance. It also stores a few of those real frames
with eager's outputs beside the artefact (PATH.check.safetensors), so that wherever the artefact is
opened to run, `open_artefact` streams them through the runtime of that machine and refuses the
artefact when it differs from eager by more than the export's tolerance (the result:
`backend.startup_check`). `open_artefact` also refuses a mismatched artefact, and a torch.export /
Torch-TensorRT program this machine did not build unless the caller trusts it (loading one can run
code: docs/security.md).
`open_backend` is what `load_predictor` calls: an eager model, an explicit artefact, or a cached
build.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
import io
import logging
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
import torch

from . import trt
from .base import (Backend, BackendError, BACKENDS, check_precision, DEFAULT_BACKEND,
                   DEFAULT_DEVICE, DEFAULT_PRECISION, DEFAULT_WINDOW, PRECISIONS)
from .cache import cached_artefact, content_digest, forget_trusted, is_trusted, record_trusted
from .frames import random_frames, real_frames
from .manifest import gpu_name, Manifest, manifest_path, runtime_versions
from .module import ModuleBackend
from .ort import export_onnx, io_names, ONNX_OPSET, OnnxRuntimeBackend
from .step import ExportStep
from .torch_eager import TorchBackend
from ..checkpoint import checkpoint_hash, load_checkpoint
from ..model import HCDPModel
from ..preprocess import Letterbox

log = logging.getLogger(__name__)
FORMATS = {"onnx": ".onnx", "torch-export": ".pt2", "tensorrt": trt.SUFFIX}
# Max |export - eager fp32| over depth, normals and mask logits, per precision of the export.
TOLERANCES = {"fp32": 1e-3, "fp16": 5e-2, "bf16": 1e-1}
# Formats loaded with torch.export.load, which unpickles: loaded only if built here or trusted.
CODE_FORMATS = ("torch-export", "tensorrt")


class ExportError(BackendError):
    """An export does not reproduce eager PyTorch within the tolerance."""


@dataclass
class ExportSpec:
    # onnx | torch-export | tensorrt; `format` is a keyword callers pass (ExportSpec(format=...))
    format: str  # noqa: A003 (public field name, kept)
    precision: str = DEFAULT_PRECISION
    window: int = DEFAULT_WINDOW
    camera_size: tuple[int, int] = (480, 640)     # (H, W): the letterbox recorded in the manifest
    device: str = DEFAULT_DEVICE
    onnx_exporter: str = "torchscript"
    tolerance: float | None = None                # None: TOLERANCES[precision]
    verify_frames: int = 4
    startup_frames: int = 2                       # real frames re-run where the artefact is opened
    check_images: str | None = None               # images/video for real frames; None: generated
    extra: dict[str, object] = field(default_factory=dict)

    def validate(self) -> "ExportSpec":
        if self.format not in FORMATS:
            raise ValueError(f"expected format {'/'.join(FORMATS)}, got {self.format!r}")
        dtype = check_precision(self.precision, torch.device(self.device))
        if self.format == "onnx" and dtype == torch.bfloat16:
            raise ValueError("ONNX export supports fp32 and fp16 (on CUDA), not bf16")
        if self.window < 1:
            raise ValueError(f"expected a window >= 1, got {self.window}")
        if not 1 <= self.startup_frames <= self.verify_frames:
            raise ValueError(f"expected startup_frames in [1, verify_frames="
                             f"{self.verify_frames}], got {self.startup_frames}")
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


def make_manifest(spec: ExportSpec, step: ExportStep, checkpoint: str | Path,
                  digest: str) -> Manifest:
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
        letterbox={"content_h": box.new_h, "content_w": box.new_w, "top": box.top,
                   "left": box.left},
        inputs=dict(zip(inputs, _shapes(example))),
        outputs=dict(zip(output_names, _shapes(outputs))),
        io_dtype=str(spec.io_dtype).removeprefix("torch."), versions=runtime_versions(),
        gpu=gpu_name(spec.device) if torch.device(spec.device).type == "cuda" else None,
        extra=dict(spec.extra))


def check_path(artefact: str | Path) -> Path:
    """model.onnx -> model.onnx.check.safetensors: start-up check frames and eager's outputs."""
    artefact = Path(artefact)
    return artefact.with_name(artefact.name + ".check.safetensors")


def reference_outputs(reference: ExportStep,
                      frames: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Eager fp32 outputs of `frames` streamed from an empty cache, with the frames, as one dict.

    The flat dict (frame_i, depth_i, normal_i, mask_logits_i) is on the CPU.
    """
    device = next(reference.parameters()).device
    state = reference.init_state(1, device, torch.float32)
    stored: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            depth, normal, mask_logits, *state = reference(frame.to(device), *state)
            for name, t in (("frame", frame), ("depth", depth), ("normal", normal),
                            ("mask_logits", mask_logits)):
                stored[f"{name}_{i}"] = t.detach().float().cpu().contiguous()
    return stored


def startup_check(backend: Backend, path: Path, manifest: Manifest) -> dict[str, float | int]:
    """Stream the artefact's stored check frames through `backend` from an empty cache.

    Returns the max |backend - eager fp32| over all outputs. Refuses (BackendError) above the
    stored tolerance.
    """
    record = manifest.extra.get("startup_check")
    data_path = check_path(path)
    if not isinstance(record, dict) or not data_path.is_file():
        raise BackendError(f"{path}: no start-up check data (expected {data_path.name} and a "
                           "startup_check entry in the manifest); re-export it with `hcdp export`")
    data = data_path.read_bytes()
    if content_digest(data) != record.get("sha256"):
        raise BackendError(f"{data_path}: the check data does not match the sha256 its manifest "
                           "records; re-export the artefact with `hcdp export`")
    try:
        stored = load_tensors(data)
        frames = int(record["frames"])
        tolerance = float(record["tolerance"])
        sequence = [[stored[f"{n}_{i}"] for n in ("frame", "depth", "normal", "mask_logits")]
                    for i in range(frames)]
    except (KeyError, TypeError, ValueError, SafetensorError) as err:
        raise BackendError(f"{data_path}: corrupt start-up check data ({err}); re-export the "
                           "artefact with `hcdp export`") from err
    state = backend.init_state()
    worst = 0.0
    with torch.inference_mode():
        for frame, *want in sequence:
            got, state = backend.step(frame.to(backend.device, backend.input_dtype), state)
            worst = max(worst, *(float((g.float().cpu() - w).abs().max())
                                 for g, w in zip(got, want)))
    if not worst <= tolerance:  # also refuses NaN
        raise BackendError(f"{path}: start-up check failed on this machine: {backend.describe()} "
                           f"differs from the eager fp32 outputs stored at export by "
                           f"{worst:.3g} > tolerance {tolerance:g} (over {frames} frames); the "
                           "runtime here computes something else than the exported model: "
                           "re-export on this machine, or use another backend or precision")
    return {"max_error": worst, "tolerance": tolerance, "frames": frames}


def stream_difference(candidate: Backend, reference: ExportStep,
                      frames: list[torch.Tensor]) -> float:
    """Stream `frames` through both from an empty cache; return max |candidate - reference|.

    The maximum is over all outputs of all frames (so errors in the cache path show up in later
    frames).
    """
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
            worst = max(worst,
                        *(float((g.float() - r.float()).abs().max()) for g, r in zip(got, want)))
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
        program, inputs = trt.compile_step(copy.deepcopy(step), trt.detect_api(), spec.precision,
                                           device)
        trt.save_program(program, out, inputs)


def export_artefact(checkpoint: str | Path, out: str | Path, spec: ExportSpec,
                    frames: tuple[list[torch.Tensor], str] | None = None) -> Manifest:
    """Write the step graph of `checkpoint` to `out` (+ `out`.json manifest), verified vs eager.

    `frames`: the caller's preprocessed real check frames (any device) and where they came from
    (default: `frames.real_frames` of `spec.check_images`).
    """
    spec.validate()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if spec.format == "tensorrt":
        api = trt.detect_api()  # fail before minutes of work if the runtime is missing
        spec.extra |= {"tensorrt_api": "explicit_typing" if api.explicit_typing
                       else "enabled_precisions"}
    if spec.format == "onnx":
        spec.extra |= {"onnx_exporter": spec.onnx_exporter, "opset": ONNX_OPSET}
    model = load_streaming_model(checkpoint)
    reference = ExportStep(model, spec.window).to(spec.device)
    manifest = make_manifest(spec, reference, checkpoint, checkpoint_hash(checkpoint))
    _write(spec, reference, out)
    try:
        digest = record_trusted(out) if spec.format in CODE_FORMATS else None
    except BackendError:
        out.unlink()  # a program that could never be loaded here
        raise
    tolerance = spec.tolerance if spec.tolerance is not None else TOLERANCES[spec.precision]
    real, source = frames or real_frames(model.cfg.resolution, spec.verify_frames,
                                         spec.camera_size, spec.check_images)
    check_data = save_tensors(reference_outputs(reference, real[:spec.startup_frames]))
    check_path(out).write_bytes(check_data)
    manifest.extra["startup_check"] = {"file": check_path(out).name,
                                       "sha256": content_digest(check_data),
                                       "frames": spec.startup_frames, "tolerance": tolerance}
    manifest.save(manifest_path(out))
    candidate = open_artefact(out, spec.device, check=False)  # verified below, on more frames
    noise = random_frames(model.cfg.resolution, spec.verify_frames)
    diffs = {"random": stream_difference(candidate, reference, noise),
             "real": stream_difference(candidate, reference, real)}
    manifest.extra["verification"] = {"max_abs_diff": diffs, "tolerance": tolerance,
                                      "frames": spec.verify_frames,
                                      "real_frames": source,
                                      "passed": max(diffs.values()) <= tolerance}
    manifest.save(manifest_path(out))
    if max(diffs.values()) > tolerance:
        for file in (out, manifest_path(out), check_path(out)):
            file.unlink()
        if digest is not None:
            forget_trusted(digest)
        raise ExportError(f"{out}: {spec.format} {spec.precision} export differs from eager fp32 "
                          f"PyTorch by {max(diffs.values()):.3g} (random frames "
                          f"{diffs['random']:.3g}, real frames {diffs['real']:.3g}) > tolerance "
                          f"{tolerance:g}; artefact removed")
    return manifest


def _tensorrt_expected() -> dict[str, object]:
    api = trt.detect_api()
    return {"gpu": gpu_name(), "versions.tensorrt": api.tensorrt_version,
            "versions.torch_tensorrt": api.torch_tensorrt_version}


def _read_code_artefact(path: Path, fmt: str, trust_artefact: bool) -> io.BytesIO:
    """Read the bytes of a torch.export / Torch-TensorRT program, if this machine built them.

    Or if the caller trusts the file. They are hashed and loaded from memory, so the file cannot be
    swapped between the check and the load.
    """
    data = path.read_bytes()
    if not trust_artefact and not is_trusted(content_digest(data)):
        raise BackendError(
            f"{path}: refusing a {fmt} artefact this machine did not build: loading it runs "
            "torch.export.load, which can execute code stored in the file (pickled weights). "
            f"Export it here (`hcdp export --backend {fmt}`) from its checkpoint, use an ONNX "
            "artefact, or load it with trust_artefact=True if you trust where it came from "
            "(docs/security.md)")
    return io.BytesIO(data)


def open_artefact(path: str | Path, device: str | torch.device = DEFAULT_DEVICE,
                  expected: dict[str, object] | None = None, trust_artefact: bool = False,
                  check: bool = True) -> Backend:
    """Load an exported artefact by its manifest's format to run it here.

    Refuses it if the manifest differs from `expected` (and, for TensorRT, from this machine's GPU
    and versions); a torch.export or TensorRT program unless this machine built it or
    `trust_artefact`; and, with `check`, when its stored check frames streamed through this
    machine's runtime differ from eager by more than the export's tolerance (the measured result
    is `backend.startup_check`).
    """
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"{path}: artefact not found")
    manifest = Manifest.load(manifest_path(path))
    expected = dict(expected or {})
    if manifest.format == "onnx":
        backend: Backend = OnnxRuntimeBackend(path, device, expected=expected)
    else:
        if manifest.format == "tensorrt":
            expected |= _tensorrt_expected()
        problems = manifest.mismatches(expected)
        if problems:
            raise BackendError(f"{path}: refusing a mismatched {manifest.format} artefact "
                               f"({'; '.join(problems)}); rebuild it with "
                               f"`hcdp export --backend {manifest.format}`")
        if manifest.format not in CODE_FORMATS:
            raise BackendError(f"{path}: unknown artefact format {manifest.format!r}; "
                               f"expected one of {list(FORMATS)}")
        data = _read_code_artefact(path, manifest.format, trust_artefact)
        if manifest.format == "tensorrt":
            backend = ModuleBackend("tensorrt", trt.load_program(path, data), manifest, device)
        else:
            try:
                program = torch.export.load(data).module()
            except Exception as err:  # a corrupt zip/serialised program: many types, one meaning
                reason = f"{type(err).__name__}: {str(err).strip()[:300]}"
                raise BackendError(f"{path}: cannot load the torch.export program ({reason}); "
                                   "the file is corrupt, re-export it") from err
            backend = ModuleBackend("torch-export", program, manifest, device)
    if check:
        backend.startup_check = startup_check(backend, path, manifest)
    return backend


ARTEFACT_BACKENDS = {".onnx": "onnxruntime", ".pt2": "torch", trt.SUFFIX: "tensorrt"}


def open_backend(checkpoint: str | Path, backend: str = DEFAULT_BACKEND,
                 window: int = DEFAULT_WINDOW, device: str = DEFAULT_DEVICE,
                 precision: str = DEFAULT_PRECISION, trust_artefact: bool = False) -> Backend:
    """Open a checkpoint (or an exported artefact) as a ready backend.

    torch: eager model (or a .pt2 from `hcdp export --backend torch-export`). onnxruntime /
    tensorrt: a .onnx / .ep artefact is loaded as is (refused if its window or precision differ
    from the ones asked for); a checkpoint is exported once into the artefact cache
    (~/.cache/hcdp/<format>/<key>) and loaded from there afterwards. Every artefact passes its
    start-up check here first; a .pt2 or .ep this machine did not build is refused unless
    `trust_artefact` (see `open_artefact`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"expected backend {'/'.join(BACKENDS)}, got {backend!r}")
    check_precision(precision, torch.device(device))
    path = Path(checkpoint)
    if path.suffix in ARTEFACT_BACKENDS:
        if ARTEFACT_BACKENDS[path.suffix] != backend:
            raise BackendError(f"{path}: a {path.suffix} artefact runs with backend "
                               f"{ARTEFACT_BACKENDS[path.suffix]!r}, not {backend!r}")
        return open_artefact(path, device, {"window": window, "precision": precision},
                             trust_artefact=trust_artefact)
    if backend == "torch":
        return TorchBackend(load_streaming_model(path), window, device, precision)
    fmt = "onnx" if backend == "onnxruntime" else "tensorrt"
    spec = ExportSpec(format=fmt, precision=precision, window=window, device=device).validate()
    digest = checkpoint_hash(path)
    expected: dict[str, object] = {"format": fmt, "checkpoint_hash": digest,
                                   "precision": precision,
                                   "window": window}
    if fmt == "onnx":
        fields = {**expected, "torch": torch.__version__, "exporter": spec.onnx_exporter,
                  "opset": ONNX_OPSET}
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
            log.warning("building the TensorRT program for %s (%s, window %d) on %s: this takes "
                        "minutes, once per GPU, TensorRT version, precision and window; it is "
                        "cached under %s",
                        path, precision, window, gpu, out.parent)
        return export_artefact(path, out, spec)

    return cached_artefact(fmt, fields, "step" + FORMATS[fmt], expected, build,
                           lambda out: open_artefact(out, device, expected))
