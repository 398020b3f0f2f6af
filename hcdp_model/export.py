"""`hcdp export`: write the streaming step graph, verified against eager PyTorch, with a manifest.

The graph (frame + fixed-shape cache in, outputs + new cache out) is written as an ONNX model, a
torch.export program (.pt2) or a Torch-TensorRT program (.ep), verified against eager PyTorch on
random and real frames, and a manifest JSON is written beside it (PATH.json).

    hcdp export --checkpoint data/models/default --backend onnx --size 480 640 --window 16 --out
    step.onnx

--size is the camera size whose letterbox the manifest records; the graph itself runs at the
model's fixed resolution. The command fails (exit 1, artefact removed) when the export differs
from eager PyTorch by more than the tolerance.
"""
from __future__ import annotations

import argparse
import json
import logging

from .backends.base import BackendError, DEFAULT_WINDOW
from .backends.build import export_artefact, ExportSpec, FORMATS, TOLERANCES
from .backends.manifest import manifest_path
from .backends.ort import EXPORTERS
from .checkpoint import CheckpointError
from .predictor import default_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint directory or .safetensors (default: the bundled model)")
    parser.add_argument("--backend", choices=list(FORMATS), required=True, help="artefact format")
    parser.add_argument("--precision", choices=list(TOLERANCES), default="fp32",
                        help="fp16 needs --device cuda; tensorrt keeps fp32 inputs and outputs")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(480, 640),
                        help="camera image size whose letterbox is recorded (default 480 640)")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="streaming window (frames)")
    parser.add_argument("--out", required=True, help="output file (.onnx, .pt2 or .ep)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (tensorrt needs cuda)")
    parser.add_argument("--onnx-exporter", choices=EXPORTERS, default="torchscript",
                        help="torch.onnx exporter: torchscript (dynamo=False) or dynamo (needs "
                             "onnxscript)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="max |export - eager fp32| allowed (default per precision: "
                             + ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items()) + ")")
    parser.add_argument("--frames", type=int, default=4, help="frames per verification sequence")
    parser.add_argument("--check-images", metavar="PATH",
                        help="a folder of images or a video file: the camera frames the export is "
                             "verified on and re-checked with where it is opened (default: "
                             "generated frames)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    checkpoint = args.checkpoint or default_checkpoint()
    suffix = FORMATS[args.backend]
    if not args.out.endswith(suffix):
        print(f"hcdp export: --out for --backend {args.backend} must end with {suffix}, got "
              f"{args.out}")
        return 2
    spec = ExportSpec(format=args.backend, precision=args.precision, window=args.window,
                      camera_size=tuple(args.size), device=args.device,
                      onnx_exporter=args.onnx_exporter,
                      tolerance=args.tolerance, verify_frames=args.frames,
                      check_images=args.check_images)
    try:
        manifest = export_artefact(checkpoint, args.out, spec)
    except (BackendError, CheckpointError, ValueError) as err:
        print(f"hcdp export: FAILED: {err}")
        return 1
    check = manifest.extra["verification"]
    diffs = check["max_abs_diff"]
    print(f"wrote {args.out} ({args.backend}, {args.precision}, window {args.window}, "
          f"{manifest.model_resolution}x{manifest.model_resolution})")
    print(f"max abs difference vs eager fp32: random frames {diffs['random']:.3g}, real frames "
          f"{diffs['real']:.3g} ({check['real_frames']}); tolerance {check['tolerance']:g}: OK")
    print(f"manifest {manifest_path(args.out)}:")
    print(json.dumps({k: getattr(manifest, k) for k in ("checkpoint_hash", "versions", "gpu")},
                     indent=2))
    return 0
