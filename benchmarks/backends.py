"""Per-frame latency, throughput and memory of every available backend and precision.

    python benchmarks/backends.py [--preset tiny] [--device cpu] [--window 16] [--rounds 20]
                                  [--threads 2] [--compile] [--checkpoint DIR] [--json]

What is timed is one streaming step (encoder + temporal attention over a full W-1 frame cache +
decoder) at the model resolution, batch 1, the cache already filled, i.e. `Backend.step`; camera
pre/post-processing is the same for every backend and not included. Backends are timed interleaved
round by round, so background load on a shared machine hits all alike; medians and same-run ratios
against torch eager fp32 are printed.

CPU: torch fp32 and bf16 (eager, optional torch.compile), ONNX Runtime fp32 (graph optimisation
levels `all` and `extended`). CUDA: torch fp32/fp16/bf16 (eager, CUDA graphs, + compile), ONNX
Runtime fp32/fp16 when a
GPU execution provider is installed, Torch-TensorRT fp32/fp16 when torch_tensorrt is installed.
Memory: on CPU the resident-set growth while building and warming each backend (built one after the
other: an upper-bound-ish view, freed pages are not always returned) and the process peak RSS; on
CUDA `torch.cuda.max_memory_allocated` per backend (ONNX Runtime's own CUDA arena is not visible to
it).
Weights are random unless --checkpoint is given: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
import platform
import resource
import statistics
import tempfile
import time

from hcdp_model.backends.base import Backend, BackendError, DEFAULT_WINDOW
from hcdp_model.backends.build import export_artefact, ExportSpec, load_streaming_model
from hcdp_model.backends.manifest import gpu_name, runtime_versions
from hcdp_model.backends.ort import OnnxRuntimeBackend
from hcdp_model.backends.torch_eager import TorchBackend
from hcdp_model.checkpoint import save_checkpoint
from hcdp_model.config import preset
from hcdp_model.model import HCDPModel
import torch


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def random_checkpoint(name: str, folder: Path) -> Path:
    cfg = preset(name)
    cfg.temporal.enabled = True
    cfg.temporal.mode = "causal"
    torch.manual_seed(0)
    return save_checkpoint(HCDPModel(cfg), folder / name)


def candidates(args, checkpoint: Path, folder: Path) -> dict[str, callable]:
    """Return name -> builder; only what this machine can run."""
    cuda = torch.device(args.device).type == "cuda"
    model = lambda: load_streaming_model(checkpoint)  # noqa: E731 - fresh weights per backend
    out = {"torch fp32": lambda: TorchBackend(model(), args.window, args.device, "fp32",
                                              cuda_graph=False)}
    for precision in (["fp16", "bf16"] if cuda else ["bf16"]):
        out[f"torch {precision}"] = lambda p=precision: TorchBackend(
            model(), args.window, args.device, p, cuda_graph=False)
    if cuda:  # the eager step replayed from a CUDA graph (no launch or host cost per kernel)
        for precision in ("fp32", "fp16", "bf16"):
            out[f"torch-cudagraph {precision}"] = lambda p=precision: TorchBackend(
                model(), args.window, args.device, p, cuda_graph=True)
    if args.compile:
        for precision in (["fp32", "fp16"] if cuda else ["fp32"]):
            out[f"torch-compile {precision}"] = lambda p=precision: TorchBackend(
                model(), args.window, args.device, p, compile=True)
    if importlib.util.find_spec("onnxruntime") is not None:
        for precision in (["fp32", "fp16"] if cuda else ["fp32"]):
            def onnx(p=precision) -> Path:
                path = folder / f"step_{p}.onnx"
                if not path.exists():
                    export_artefact(checkpoint, path,
                                    ExportSpec("onnx", p, args.window, device=args.device))
                return path
            for level in ("all", "extended"):
                out[f"onnxruntime {precision} ({level})"] = (
                    lambda p=precision, lv=level: OnnxRuntimeBackend(
                        onnx(p), args.device, args.threads, optimization=lv))
    if cuda and importlib.util.find_spec("torch_tensorrt") is not None:
        from hcdp_model.backends.build import open_artefact

        for precision in ("fp32", "fp16"):
            def tensorrt(p=precision) -> Backend:
                path = folder / f"step_{p}.ep"
                export_artefact(checkpoint, path,
                                ExportSpec("tensorrt", p, args.window, device=args.device))
                return open_artefact(path, args.device)
            out[f"tensorrt {precision}"] = tensorrt
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint instead of random weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads for torch and ONNX Runtime")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile (slow to build)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = torch.device(args.device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(args.preset,
                                                                                     folder)
        resolution = load_streaming_model(checkpoint).cfg.resolution
        g = torch.Generator().manual_seed(0)
        frames = [torch.randn(1, 3, resolution, resolution, generator=g) for _ in range(4)]
        backends: dict[str, Backend] = {}
        states, memory, skipped = {}, {}, {}
        for name, build in candidates(args, checkpoint, folder).items():
            before = rss_mb()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            try:
                backend = build()
                state = backend.init_state()
                for i in range(args.window):  # fill the cache: attention runs over the full window
                    _, state = backend.step(frames[i % 4].to(args.device, backend.input_dtype),
                                            state)
                sync()
            except (BackendError, RuntimeError, ValueError) as err:
                skipped[name] = str(err).splitlines()[0][:200]
                continue
            backends[name], states[name] = backend, state
            memory[name] = (torch.cuda.max_memory_allocated() / 2**20 if cuda
                            else rss_mb() - before)
        inputs = {n: [f.to(args.device, b.input_dtype) for f in frames] for n,
                  b in backends.items()}
        times: dict[str, list[float]] = {n: [] for n in backends}
        for r in range(args.rounds):
            for name, backend in backends.items():
                sync()
                start = time.perf_counter()
                _, states[name] = backend.step(inputs[name][r % 4], states[name])
                sync()
                times[name].append((time.perf_counter() - start) * 1e3)

    median = {n: statistics.median(t) for n, t in times.items()}
    base = median.get("torch fp32")
    result = {
        "preset": args.preset, "resolution": resolution, "window": args.window,
        "device": args.device,
        "gpu": gpu_name(args.device) if cuda else None,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads, "rounds": args.rounds, "versions": runtime_versions(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "backends": {n: {"median_ms": median[n], "min_ms": min(times[n]), "fps": 1e3 / median[n],
                         "ratio_vs_torch_fp32": median[n] / base if base else None,
                         ("cuda_peak_mb" if cuda else "rss_growth_mb"): memory[n]}
                     for n in backends},
        "skipped": skipped,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.preset} at {resolution}x{resolution}, window {args.window}, {args.device} "
          f"({result['gpu'] or result['cpu']}), {args.threads} threads, median of {args.rounds} "
          "interleaved rounds")
    mem_label = "CUDA peak MB" if cuda else "RSS growth MB"
    print(f"{'backend':34s} {'median ms':>10s} {'min ms':>8s} {'frames/s':>9s} "
          f"{'vs torch fp32':>14s} {mem_label:>14s}")
    for name, row in result["backends"].items():
        ratio = f"{row['ratio_vs_torch_fp32']:.2f}x" if row["ratio_vs_torch_fp32"] else "-"
        print(f"{name:34s} {row['median_ms']:10.1f} {row['min_ms']:8.1f} {row['fps']:9.2f} "
              f"{ratio:>14s} {memory[name]:14.0f}")
    print(f"process peak RSS {result['peak_rss_mb']:.0f} MB")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")


if __name__ == "__main__":
    main()
