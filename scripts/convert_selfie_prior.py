r"""Convert MediaPipe's selfie_segmentation.tflite into hcdp_model.selfie_prior weights.

    pip download --no-deps mediapipe==0.10.14 -d /tmp/mpwheel
    unzip -j /tmp/mpwheel/mediapipe-0.10.14-*.whl \\
        mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite -d gen/selfie
    python scripts/convert_selfie_prior.py gen/selfie/selfie_segmentation.tflite \\
        gen/selfie/selfie_prior

writes gen/selfie/selfie_prior.safetensors (SelfiePrior's state_dict, float32: the graph's
float16 weights dequantised exactly) and gen/selfie/selfie_prior.json (source sha256, licence,
op list, parameter count, layer mapping). Needs the `convert` extra (the PyPI `tflite` package, a
pure-Python flatbuffer reader) besides torch, numpy and safetensors.

Layouts: CONV_2D kernels are OHWI -> torch OIHW; DEPTHWISE_CONV_2D kernels 1HWO -> O1HW; the
custom Convolution2DTransposeBias kernel is OHWI like TFLite's TRANSPOSE_CONV (TensorFlow's
conv2d_transpose filter HWOI, transposed) -> torch ConvTranspose2d's [I,O,H,W]; no spatial flip
(both compute out[s*y + k] += in[y] * w[k]). The parity test (tests/model/test_selfie_prior.py)
checks the result against the TFLite runtime.

The graph is checked, not trusted: every operator and option is compared with what SelfiePrior
computes (op counts, strides, SAME/VALID padding, no fused activations, half-pixel resizes, the
custom op's options), every weight must be consumed exactly once with the expected shape, and a
different sha256 than the known mediapipe 0.10.14 file is reported. A wrong file stops with a
message and exit status 2.
"""
from __future__ import annotations

import argparse
from collections import Counter
import hashlib
import json
from pathlib import Path
import struct
import sys
from typing import Any

from hcdp_model.selfie_prior import (NUM_PARAMETERS, SelfiePrior, SOURCE_FILE, SOURCE_LICENSE,
                                     SOURCE_PACKAGE, SOURCE_SHA256, TFLITE_LAYERS)
import numpy as np
import torch
from torch import nn

LICENSE_NOTE = (
    "Apache-2.0: the mediapipe 0.10.14 wheel's LICENSE (mediapipe-0.10.14.dist-info/LICENSE, "
    "Apache License 2.0) covers the package, model files included; the wheel carries no model "
    "card and the .tflite metadata (ImageSegmenter, min parser 1.5.0) has no licence field; the "
    "MediaPipe model card (online) could not be checked offline"
)
# operator counts of the mediapipe 0.10.14 general model (DEQUANTIZE: float16 weights)
EXPECTED_OPS = {
    "DEQUANTIZE": 110, "CONV_2D": 43, "RELU": 22, "ADD": 14, "HARD_SWISH": 11,
    "DEPTHWISE_CONV_2D": 11, "LOGISTIC": 11, "AVERAGE_POOL_2D": 10, "MUL": 10,
    "RESIZE_BILINEAR": 3, "Convolution2DTransposeBias": 1,
}
CUSTOM_OP = "Convolution2DTransposeBias"


class ConversionError(RuntimeError):
    """The file is not the graph SelfiePrior reproduces (message says what differs)."""


def _import_tflite() -> Any:
    try:
        import tflite
    except ImportError as exc:
        raise ConversionError("the PyPI package `tflite` is needed: pip install tflite "
                              "(or the `convert` extra: pip install -e .[convert])") from exc
    return tflite


class Graph:
    """The one subgraph of a .tflite file: operators by name, constant tensors as numpy."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ConversionError("not a TFLite flatbuffer (no 'TFL3' identifier at byte 4)")
        tflite = _import_tflite()
        self.tflite = tflite
        self.data = data
        try:
            self.model = tflite.Model.GetRootAsModel(data, 0)
            if self.model.SubgraphsLength() != 1:
                raise ConversionError(
                    f"expected one subgraph, found {self.model.SubgraphsLength()}")
            self.sub = self.model.Subgraphs(0)
            builtin = {v: k for k, v in vars(tflite.BuiltinOperator).items()
                       if not k.startswith("_")}
            self.codes = []
            for i in range(self.model.OperatorCodesLength()):
                oc = self.model.OperatorCodes(i)
                code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
                if code == tflite.BuiltinOperator.CUSTOM:
                    self.codes.append(oc.CustomCode().decode())
                else:
                    self.codes.append(builtin.get(code, f"BUILTIN_{code}"))
            self.ops = [self.sub.Operators(i) for i in range(self.sub.OperatorsLength())]
        except ConversionError:
            raise
        except Exception as exc:  # noqa: B902 - a corrupt flatbuffer raises anything
            raise ConversionError(f"cannot parse the flatbuffer: {exc!r}") from exc
        # DEQUANTIZE output -> its float16 input, so conv inputs resolve to stored tensors
        self.source = {int(op.Outputs(0)): int(op.Inputs(0)) for op in self.ops
                       if self.op_name(op) == "DEQUANTIZE"}

    def op_name(self, op: Any) -> str:
        return self.codes[op.OpcodeIndex()]

    def tensor_name(self, index: int) -> str:
        return self.sub.Tensors(self.source.get(index, index)).Name().decode()

    def shape(self, index: int) -> tuple[int, ...]:
        t = self.sub.Tensors(index)
        return tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()

    def constants(self) -> dict[str, np.ndarray]:
        """Every float tensor with data, by name, as float32 (float16 is widened exactly)."""
        types = {self.tflite.TensorType.FLOAT16: np.float16,
                 self.tflite.TensorType.FLOAT32: np.float32}
        out: dict[str, np.ndarray] = {}
        for i in range(self.sub.TensorsLength()):
            t = self.sub.Tensors(i)
            if t.Type() not in types:
                continue
            buf = self.model.Buffers(t.Buffer())
            if buf.DataLength():
                raw = buf.DataAsNumpy().tobytes()
            elif buf.Offset() > 1:  # large models keep data after the flatbuffer
                raw = self.data[buf.Offset():buf.Offset() + buf.Size()]
            else:
                continue
            arr = np.frombuffer(raw, dtype=types[t.Type()]).reshape(self.shape(i))
            out[t.Name().decode()] = arr.astype(np.float32)
        return out


def _options(op: Any, kind: Any) -> Any:
    """Read the builtin options table of `op` as `kind` (e.g. tflite.Conv2DOptions)."""
    table = op.BuiltinOptions()
    opts = kind()
    opts.Init(table.Bytes, table.Pos)
    return opts


def check_graph(graph: Graph) -> Counter:
    """Raise ConversionError where the graph differs from what SelfiePrior computes."""
    tfl = graph.tflite
    counts = Counter(graph.op_name(op) for op in graph.ops)
    if dict(counts) != EXPECTED_OPS:
        raise ConversionError(f"operator counts {dict(counts)} differ from the selfie "
                              f"segmentation general model's {EXPECTED_OPS}")
    inputs, outputs = graph.sub.InputsAsNumpy(), graph.sub.OutputsAsNumpy()
    if len(inputs) != 1 or graph.shape(int(inputs[0])) != (1, 256, 256, 3):
        raise ConversionError(f"expected one input [1,256,256,3], got "
                              f"{[graph.shape(int(i)) for i in inputs]}")
    if len(outputs) != 1 or graph.shape(int(outputs[0])) != (1, 256, 256, 1):
        raise ConversionError(f"expected one output [1,256,256,1], got "
                              f"{[graph.shape(int(i)) for i in outputs]}")
    modules = dict(SelfiePrior().named_modules())
    layer_of = {name: prefix for prefix, name in TFLITE_LAYERS.items()}
    same, valid = tfl.Padding.SAME, tfl.Padding.VALID
    for i, op in enumerate(graph.ops):
        name = graph.op_name(op)
        where = f"operator {i} ({name})"
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            kind = tfl.Conv2DOptions if name == "CONV_2D" else tfl.DepthwiseConv2DOptions
            opts = _options(op, kind)
            layer = graph.tensor_name(int(op.Inputs(1))).rsplit("/", 1)[0]
            if layer not in layer_of:
                raise ConversionError(f"{where}: unknown layer {layer!r}")
            module = modules[layer_of[layer]]
            k, s = module.kernel_size[0], module.stride[0]
            depthwise = module.groups > 1
            if depthwise != (name == "DEPTHWISE_CONV_2D"):
                raise ConversionError(f"{where}: layer {layer} is depthwise={depthwise}")
            if (opts.StrideH(), opts.StrideW()) != (s, s) or opts.DilationHFactor() != 1 \
                    or opts.DilationWFactor() != 1:
                raise ConversionError(f"{where}: {layer} stride/dilation differ from {s}x{s}")
            if opts.FusedActivationFunction() != tfl.ActivationFunctionType.NONE:
                raise ConversionError(f"{where}: {layer} has a fused activation")
            if opts.Padding() not in (same, valid) or (k > 1 and opts.Padding() != same):
                raise ConversionError(f"{where}: {layer} padding is not SAME")
            if depthwise and opts.DepthMultiplier() != 1:
                raise ConversionError(f"{where}: {layer} depth multiplier != 1")
        elif name in ("ADD", "MUL"):
            kind = tfl.AddOptions if name == "ADD" else tfl.MulOptions
            if _options(op, kind).FusedActivationFunction() != 0:
                raise ConversionError(f"{where}: fused activation")
        elif name == "AVERAGE_POOL_2D":
            opts = _options(op, tfl.Pool2DOptions)
            h, w = graph.shape(int(op.Inputs(0)))[1:3]
            if (opts.FilterHeight(), opts.FilterWidth()) != (h, w) or opts.Padding() != valid:
                raise ConversionError(f"{where}: not a global average pool")
        elif name == "RESIZE_BILINEAR":
            opts = _options(op, tfl.ResizeBilinearOptions)
            h, w = graph.shape(int(op.Inputs(0)))[1:3]
            if opts.AlignCorners() or not opts.HalfPixelCenters() \
                    or graph.shape(int(op.Outputs(0)))[1:3] != (2 * h, 2 * w):
                raise ConversionError(f"{where}: not a half-pixel bilinear x2")
        elif name == CUSTOM_OP:
            raw = bytes(op.CustomOptionsAsNumpy()) if op.CustomOptionsLength() else b""
            # TfLiteTransposeConvParams {padding, stride_width, stride_height}; padding 1 = SAME
            if len(raw) < 12 or struct.unpack("<3i", raw[:12]) != (1, 2, 2):
                raise ConversionError(f"{where}: options {raw.hex()} are not SAME, stride 2x2")
            if graph.shape(int(op.Inputs(1))) != (1, 2, 2, 16):
                raise ConversionError(f"{where}: kernel is not [1,2,2,16] (OHWI)")
    return counts


def to_state_dict(graph: Graph) -> dict[str, torch.Tensor]:
    """Build SelfiePrior's state_dict from the graph's constants, layouts converted, checked."""
    consts = graph.constants()
    reference = SelfiePrior()
    modules = dict(reference.named_modules())
    expected = reference.state_dict()
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for prefix, layer in TFLITE_LAYERS.items():
        module = modules[prefix]
        for suffix, part in (("weight", "Kernel"), ("bias", "Bias")):
            name = f"{layer}/{part}"
            if name not in consts:
                raise ConversionError(f"tensor {name!r} (for {prefix}.{suffix}) is missing")
            arr = consts[name]
            used.add(name)
            if part == "Kernel":
                if isinstance(module, nn.ConvTranspose2d):
                    arr = arr.transpose(3, 0, 1, 2)  # OHWI -> [I,O,H,W]
                elif module.groups > 1:
                    arr = arr.transpose(3, 0, 1, 2)  # 1HWO -> O1HW
                else:
                    arr = arr.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            key = f"{prefix}.{suffix}"
            if tuple(arr.shape) != tuple(expected[key].shape):
                raise ConversionError(f"{name}: shape {tuple(consts[name].shape)} does not fit "
                                      f"{key} {tuple(expected[key].shape)}")
            state[key] = torch.from_numpy(np.ascontiguousarray(arr))
    left = sorted(set(consts) - used)
    if left:
        raise ConversionError(f"weights the module does not use: {left}")
    count = sum(t.numel() for t in state.values())
    if count != NUM_PARAMETERS:
        raise ConversionError(f"{count} parameters, expected {NUM_PARAMETERS}")
    return state


def convert(source: Path, out: Path) -> dict[str, Any]:
    """Write out.safetensors and out.json from the .tflite at `source`; returns the JSON."""
    from safetensors.torch import save_file

    if not source.is_file():
        raise ConversionError(f"{source}: no such file")
    data = source.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    graph = Graph(data)
    counts = check_graph(graph)
    state = to_state_dict(graph)
    model = SelfiePrior()
    model.load_state_dict(state, strict=True)
    info = {
        "source": {"file": SOURCE_FILE, "package": SOURCE_PACKAGE, "path": str(source),
                   "bytes": len(data), "sha256": sha, "known_sha256": SOURCE_SHA256,
                   "sha256_matches": sha == SOURCE_SHA256,
                   "description": (graph.model.Description() or b"").decode()},
        "license": SOURCE_LICENSE,
        "license_note": LICENSE_NOTE,
        "ops": dict(counts),
        "parameters": NUM_PARAMETERS,
        "stored_dtype": "float32 (the graph's float16 weights, widened exactly)",
        "input": "RGB float [B,3,H,W] in [0,1]; the graph's size 256x256",
        "outputs": {"probability": "[B,1,H,W]", "dec8": "[B,24,H/8,W/8]",
                    "dec4": "[B,16,H/4,W/4]", "dec2": "[B,16,H/2,W/2]"},
        "layers": TFLITE_LAYERS,
    }
    weights = out.with_name(out.name + ".safetensors")
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(weights), metadata={
        "source_sha256": sha, "license": SOURCE_LICENSE,
        "source": f"{SOURCE_PACKAGE}:{SOURCE_FILE}"})
    out.with_name(out.name + ".json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tflite", type=Path, help="selfie_segmentation.tflite")
    parser.add_argument("out", type=Path,
                        help="output prefix: writes OUT.safetensors and OUT.json")
    args = parser.parse_args(argv)
    out = args.out.with_suffix("") if args.out.suffix == ".safetensors" else args.out
    try:
        info = convert(args.tflite, out)
    except ConversionError as exc:
        print(f"error: {args.tflite}: {exc}", file=sys.stderr)
        return 2
    if not info["source"]["sha256_matches"]:
        print(f"warning: sha256 {info['source']['sha256']} is not mediapipe 0.10.14's "
              f"{SOURCE_SHA256} (the graph checks passed)", file=sys.stderr)
    print(f"{out}.safetensors: {info['parameters']} parameters, "
          f"sha256 {info['source']['sha256']}, ops {info['ops']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
