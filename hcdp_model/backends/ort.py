"""ONNX export of the step graph and the ONNX Runtime backend.

The runtime is imported only when a session is built. Inputs and outputs go through IO binding on
torch tensors (CPU or CUDA memory, no copies through numpy), so the cache stays where the model
runs.

An ONNX file runs no Python code, but two of its features reach outside the graph: tensors
stored as external data (a path ONNX Runtime opens) and EPContext nodes (a compiled TensorRT or
other engine, i.e. native code, embedded in the model). `hcdp export` writes neither, so a model
holding one is refused before ONNX Runtime sees it (docs/security.md).
"""
from __future__ import annotations

import copy
import importlib
import logging
from pathlib import Path
import warnings

import numpy as np
import torch

from .base import Backend, BackendError, State, StepOutput
from .manifest import Manifest, manifest_path
from .step import ExportStep, OUTPUT_NAMES, state_names

log = logging.getLogger(__name__)
ONNX_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
OPTIMIZATION_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                       "all": "ORT_ENABLE_ALL"}
NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16}


def io_names(step: ExportStep) -> tuple[list[str], list[str]]:
    states = state_names(len(step.init_state()))
    return ["frame", *states], [*OUTPUT_NAMES, *[f"next_{n}" for n in states]]


def export_onnx(step: ExportStep, path: str | Path, dtype: torch.dtype = torch.float32,
                exporter: str = "torchscript", opset: int = ONNX_OPSET) -> Path:
    """Write the static step graph (frame and cache in, outputs and new cache out) to `path`.

    torch 2.13 has two exporters: the TorchScript one (`dynamo=False`: fast, no extra dependency,
    marked deprecated) and the torch.export-based one (`dynamo=True`, needs the onnxscript
    package).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"expected exporter {'/'.join(EXPORTERS)}, got {exporter!r}")
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"ONNX export supports fp32 and fp16, got {dtype} (ONNX Runtime has no "
                         "bf16 kernels for most of this graph)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs, outputs = io_names(step)
    example = step.example_inputs("cpu", dtype)
    module = (step if dtype == torch.float32 else copy.deepcopy(step).to(dtype)).eval()
    with torch.inference_mode(False), torch.no_grad():
        if exporter == "dynamo":
            torch.onnx.export(module, example, str(path), dynamo=True,
                              opset_version=max(opset, 18),
                              input_names=inputs, output_names=outputs, external_data=False)
        else:
            with warnings.catch_warnings():
                # Tracer warnings flag Python-level shape logic; the shapes are static per artefact
                # and the export is verified against eager afterwards.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset,
                                  input_names=inputs, output_names=outputs)
    return path


def providers_for(device: torch.device, available: list[str], fp16: bool,
                  cache_dir: Path | None = None
                  ) -> list[str | tuple[str, dict[str, object]]]:
    """Choose the ONNX Runtime execution providers for `device`.

    CPU: the CPU provider. CUDA: TensorRT then CUDA execution providers (whichever are
    installed), with the CPU provider last for the few nodes a GPU provider may not take.
    """
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    gpu: list[str | tuple[str, dict[str, object]]] = []
    index = device.index or 0
    if "TensorrtExecutionProvider" in available:
        options: dict[str, object] = {"device_id": index, "trt_fp16_enable": fp16}
        if cache_dir is not None:
            options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)}
        gpu.append(("TensorrtExecutionProvider", options))
    if "CUDAExecutionProvider" in available:
        gpu.append(("CUDAExecutionProvider", {"device_id": index}))
    if not gpu:
        raise BackendError(f"device {device} needs onnxruntime's CUDA or TensorRT execution "
                           f"provider; this onnxruntime has {available} (install onnxruntime-gpu, "
                           "or use device cpu)")
    return [*gpu, "CPUExecutionProvider"]


def _graphs(graph):
    """`graph` and every subgraph (If/Loop/Scan bodies) inside it."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else []:
                yield from _graphs(sub)
            for sub in attribute.graphs:
                yield from _graphs(sub)


def reaching_outside(path: Path) -> list[str]:
    """List what in the ONNX model at `path` reaches outside the graph.

    External-data tensors and EPContext (embedded engine) nodes; [] for what `hcdp export` writes.
    Needs the onnx package; without it, [] with a warning (ONNX Runtime itself then refuses
    external data outside the model's folder).
    """
    try:
        onnx = importlib.import_module("onnx")
    except ImportError:
        log.warning("%s: the onnx package is not installed, so the model is not checked for "
                    "external data or embedded engines (pip install onnx)", path)
        return []
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not a readable model: ONNX Runtime says so, clearly
        return []
    external = onnx.TensorProto.EXTERNAL
    found = []
    nodes = [n for g in _graphs(model.graph) for n in g.node]
    nodes += [n for f in model.functions for n in f.node]
    for graph in _graphs(model.graph):
        tensors = [*graph.initializer,
                   *(t for sp in graph.sparse_initializer for t in (sp.values, sp.indices))]
        tensors += [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
        found += [f"tensor {t.name!r} stored as external data" for t in tensors
                  if t.data_location == external]
    found += [f"EPContext node {n.name!r} (an embedded compiled engine)" for n in nodes
              if n.op_type == "EPContext"]
    return found


def import_onnxruntime():
    try:
        return importlib.import_module("onnxruntime")
    except ImportError as err:
        raise BackendError("backend onnxruntime needs the onnxruntime package "
                           "(pip install onnxruntime, or onnxruntime-gpu for CUDA)") from err


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str | torch.device = "cpu",
                 threads: int | None = None,
                 expected: dict[str, object] | None = None, trt_cache_dir: Path | None = None,
                 optimization: str = "extended") -> None:
        """Load `path` (an .onnx written by `hcdp export`, with its manifest beside it).

        `expected` identity fields that differ from the manifest refuse the file; `threads` sets
        ONNX Runtime's intra-op threads (default: torch's thread count, so both backends use the
        same cores); `optimization` is ONNX Runtime's graph optimisation level (basic, extended or
        all). The default is `extended`: `all` adds the blocked NCHWc conv layout, which pads this
        model's 24-channel full-resolution convolutions to 32 and measured no faster for ~100 MB
        more memory (docs/performance.md).
        """
        ort = import_onnxruntime()
        self.path = Path(path)
        self.manifest = Manifest.load(manifest_path(self.path))
        problems = self.manifest.mismatches(expected or {})
        if self.manifest.format != "onnx":
            problems.insert(0, f"format: artefact {self.manifest.format!r}, expected 'onnx'")
        outside = reaching_outside(self.path) if not problems else []
        if outside:
            raise BackendError(f"{self.path}: refusing an ONNX model that reaches outside its "
                               f"graph ({'; '.join(outside[:3])}); `hcdp export` writes "
                               "neither, so this file was made elsewhere: re-export it with "
                               "`hcdp export --backend onnx`")
        if problems:
            raise BackendError(f"{self.path}: refusing a mismatched ONNX artefact "
                               f"({'; '.join(problems)}); re-export it with `hcdp export "
                               "--backend onnx`")
        self.device = torch.device(device)
        self.precision = self.manifest.precision
        self.window = self.manifest.window
        self.resolution = self.manifest.model_resolution
        self.input_dtype = getattr(torch, self.manifest.io_dtype)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        if optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(f"expected optimization {'/'.join(OPTIMIZATION_LEVELS)}, got "
                             f"{optimization!r}")
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   OPTIMIZATION_LEVELS[optimization])
        providers = providers_for(self.device, ort.get_available_providers(),
                                  self.precision == "fp16",
                                  trt_cache_dir)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        # onnxruntime raises its own untyped errors (InvalidProtobuf, Fail, ...)
        except Exception as err:
            raise BackendError(f"{self.path}: ONNX Runtime cannot load this model "
                               f"({type(err).__name__}: {str(err).strip()[:300]}); the file is "
                               "corrupt or not an ONNX model, re-export it with `hcdp export "
                               "--backend onnx`") from err
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_shapes = [list(self.manifest.inputs[n]) for n in self.input_names]
        self.output_shapes = [list(self.manifest.outputs[n]) for n in self.output_names]
        self._element_type = NUMPY_DTYPES[self.manifest.io_dtype]
        self._device_type = "cuda" if self.device.type == "cuda" else "cpu"
        self._device_id = self.device.index or 0
        # IO binding refuses a null pointer, which is what an empty tensor has (at window 1 the
        # cache of earlier frames holds 0 slots); ONNX Runtime reads or writes nothing there.
        self._scratch = torch.empty(1, dtype=self.input_dtype, device=self.device)

    def init_state(self) -> State:
        return tuple(torch.zeros(shape, dtype=self.input_dtype, device=self.device)
                     for shape in self.input_shapes[1:])

    def _bind(self, bind, name: str, tensor: torch.Tensor) -> None:
        bind(name, self._device_type, self._device_id, self._element_type, list(tensor.shape),
             tensor.data_ptr() if tensor.numel() else self._scratch.data_ptr())

    def step(self, frame: torch.Tensor, state: State) -> tuple[StepOutput, State]:
        inputs = [frame.to(self.device, self.input_dtype).contiguous(),
                  *(s.contiguous() for s in state)]
        # Fresh outputs every step: a state handed out earlier is never overwritten.
        outputs = [torch.empty(shape, dtype=self.input_dtype, device=self.device)
                   for shape in self.output_shapes]
        binding = self.session.io_binding()
        for name, tensor in zip(self.input_names, inputs):
            self._bind(binding.bind_input, name, tensor)
        for name, tensor in zip(self.output_names, outputs):
            self._bind(binding.bind_output, name, tensor)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # ORT runs on its own stream
        self.session.run_with_iobinding(binding)
        return (outputs[0], outputs[1], outputs[2]), tuple(outputs[3:])
