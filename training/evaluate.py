"""`hcdp eval`: a checkpoint streamed causally against its own per-frame model (+ smoothing).

The checkpoint, streamed causally, against its own per-frame model and per-frame + exponential
smoothing, on held-out sequences in hcdp's on-disk format (docs/evaluation.md).

Four methods, one run, the same frames and the same flow:
- `streaming`: the checkpoint through `load_predictor` with window W, frame by frame, exactly
  what the node runs (causal temporal attention over the last W-1 frames). `--backend` runs every
  method on torch, onnxruntime or tensorrt; `--checkpoint` may then be an `hcdp export` artefact
  (the baselines run the weights its manifest names).
- `window_1`: the same weights streamed with window 1: every temporal block sees only the current
  frame.
  The difference to `streaming` is what attention over earlier frames contributes, and nothing else
  (the other comparisons change the weights too).
- `per_frame`: the stage-1 model (`--stage1`), or by default the checkpoint with its temporal
  blocks removed. Stage 2 freezes the encoder and trains the other non-temporal modules at 1/100 of
  the temporal learning rate (paper Table 19), so removing the blocks gives the per-frame network
  the temporal blocks were trained on top of; it is always at hand, and the difference to
  `streaming` is the temporal blocks alone. `--stage1` evaluates the stage-1 checkpoint file
  itself.
- `per_frame_ema`: `per_frame`'s outputs smoothed over time by what a user would bolt on without
  ground truth or flow (`exponential_smoothing`): y_0 = x_0, y_t = alpha x_t + (1 - alpha) y_{t-1}
  per pixel, on the raw relative depth as the model outputs it (no alignment: at run time there is
  nothing to align to), on the normals (renormalised to unit length) and on the soft mask.

Metrics are `hcdp_training.metrics.evaluate_sequence` per sequence (ground-truth flow, or OpenCV
DIS flow with `--flow opencv`), aggregated by `MetricAccumulator` (every frame or frame pair weighs
the same). `--perturb SEED` feeds every method the same inputs with per-frame nuisances
(`FrameNuisance`: sensor noise, codec, exposure, blur, a corrupted patch, drawn anew for every
frame); ground truth and flow stay those of the clean scene. `--attention` prints, per temporal
block, the attention mass on the current frame vs earlier ones (`hcdp_training.temporal_context`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import sys
import tempfile
import time
from typing import Protocol

import cv2
from hcdp_model.backends.base import (BackendError, BACKENDS, DEFAULT_BACKEND, DEFAULT_DEVICE,
                                      DEFAULT_PRECISION, DEFAULT_WINDOW, PRECISIONS)
from hcdp_model.backends.build import ARTEFACT_BACKENDS
from hcdp_model.backends.manifest import Manifest, manifest_path
from hcdp_model.checkpoint import (checkpoint_hash, CheckpointError, load_checkpoint,
                                   save_checkpoint)
from hcdp_model.model import HCDPModel
from hcdp_model.predictor import default_checkpoint, load_predictor, Prediction
from hcdp_model.preprocess import preprocess
from hcdp_model.visualize import colorize_depth, contact_sheet, mask_to_rgb, normals_to_rgb
from hcdp_training.augment import FrameNuisance
from hcdp_training.data.format import list_sequences, read_frame, read_meta
from hcdp_training.metrics import clip_flows, evaluate_sequence, METRIC_NAMES, MetricAccumulator
from hcdp_training.temporal_context import attention_report, mean_report, report_table
import numpy as np
import torch
from tqdm import tqdm

METHODS = ("streaming", "window_1", "per_frame", "per_frame_ema")
HIGHER_IS_BETTER = frozenset({"Within11.25", "Within22.5", "Within30", "IoU"})
FLOW_SOURCES = ("gt", "opencv")
SHEET_TILE = 192  # px, the height every contact-sheet tile is scaled to
SHEET_NAMES = {"streaming": "stream", "window_1": "W=1", "per_frame": "per-frame",
               "per_frame_ema": "EMA"}  # short column labels


class Predictor(Protocol):
    """What the evaluator drives: `StreamingPredictor`, or anything with the same two methods."""

    def step(self, image: np.ndarray, stamp: float, frame_id: str = "",
             encoding: str = "rgb8") -> Prediction: ...

    def reset(self) -> None: ...


@dataclass
class Sequence:
    """One evaluation sequence: images, ground truth and the flow the temporal metrics use."""

    name: str
    fps: float
    rgb: np.ndarray       # [T,H,W,3] uint8
    depth: np.ndarray     # [T,H,W] metres, NaN off the human
    normal: np.ndarray    # [T,H,W,3]
    mask: np.ndarray      # [T,H,W]
    flow_fwd: np.ndarray  # [T,H,W,2] frame k -> k+1
    flow_bwd: np.ndarray  # [T,H,W,2] frame k -> k-1


@dataclass
class Predictions:
    """One method's outputs over a sequence."""

    depth: np.ndarray    # [T,H,W] relative
    normals: np.ndarray  # [T,H,W,3] unit
    mask: np.ndarray     # [T,H,W] in [0,1]
    inference_ms: np.ndarray  # [T]


@dataclass
class EvalResult:
    summary: dict[str, dict[str, float]]                   # method -> metric -> dataset mean
    # method -> metric -> frames (pairs) averaged
    counts: dict[str, dict[str, int]]
    per_sequence: dict[str, dict[str, dict[str, float]]]   # method -> sequence -> metric -> mean
    inference_ms: dict[str, float]                         # method -> mean model time per frame
    metadata: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON-ready result.

        `methods` (one object per method, `METRIC_NAMES` keys), counts, per-sequence values,
        timing and metadata; NaN (a metric without a single valid frame) becomes null.
        """
        return json_safe({"methods": self.summary, "counts": self.counts,
                          "per_sequence": self.per_sequence,
                          "inference_ms": self.inference_ms, "metadata": self.metadata})


def json_safe(value):
    """Dicts/lists with non-finite floats replaced by None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def per_frame_model(model: HCDPModel) -> HCDPModel:
    """Return the same weights without temporal blocks (the fused one included).

    Every frame is predicted on its own (the stage-1 network). Changes `model` in place.
    """
    model.temporal_blocks = model.fused_temporal = None
    model.cfg.temporal.enabled = model.cfg.temporal.fused = False
    return model


def source_checkpoint(checkpoint: Path) -> Path:
    """Return the checkpoint whose weights the baselines run.

    `checkpoint` itself, or for an artefact of `hcdp export` (.onnx, .pt2, .ep) the checkpoint its
    manifest names, whose hash must match.
    """
    if checkpoint.suffix not in ARTEFACT_BACKENDS:
        return checkpoint
    try:
        manifest = Manifest.load(manifest_path(checkpoint))
    except FileNotFoundError as err:
        raise CheckpointError(f"{checkpoint}: no manifest beside the artefact ({err})") from err
    source = Path(manifest.checkpoint)
    found = checkpoint_hash(source) if source.exists() else None
    if found != manifest.checkpoint_hash:
        raise CheckpointError(
            f"{checkpoint}: the baselines need the weights it was exported from; expected "
            f"{source} with hash {manifest.checkpoint_hash[:12]}, found "
            f"{'no such checkpoint' if found is None else 'hash ' + found[:12]}")
    return source


def per_frame_checkpoint(checkpoint: Path, workdir: Path) -> Path:
    """`checkpoint` itself when it has no temporal blocks, else its `per_frame_model`.

    The per-frame model is written under `workdir`, so that every method loads through the same
    `load_predictor`.
    """
    model = load_checkpoint(checkpoint)
    if model.temporal_blocks is None:
        return checkpoint
    return save_checkpoint(per_frame_model(model), workdir / "per_frame")


def load_predictors(checkpoint: Path, stage1: Path | None, window: int, workdir: Path,
                    **runtime) -> dict[str, Predictor]:
    """Load the three predicting methods, each through `load_predictor` with the same `runtime`.

    `runtime` is (device, backend, precision, trust_artefact). `streaming` on `checkpoint` (a
    checkpoint or an exported artefact) at `window`, `window_1` on the same weights at window 1,
    `per_frame` on `stage1` or those weights without temporal blocks.
    """
    weights = source_checkpoint(checkpoint)
    per_frame = per_frame_checkpoint(stage1 or weights, workdir)
    return {"streaming": load_predictor(checkpoint, window, **runtime),
            "window_1": load_predictor(weights, 1, **runtime),
            "per_frame": load_predictor(per_frame, 1, **runtime)}


def load_sequence(sequence_dir: Path, max_frames: int | None = None, flow: str = "gt",
                  perturb: int | None = None) -> Sequence:
    """Read a sequence (the first `max_frames` frames) with its flow.

    Stride-1 ground-truth flow, or OpenCV DIS flow between the images when `flow == "opencv"`.
    With `perturb` (a seed), the images get `FrameNuisance` drawn per frame from (seed, sequence
    name); ground truth and flow stay the clean scene's.
    """
    if flow not in FLOW_SOURCES:
        raise ValueError(f"expected flow source {'/'.join(FLOW_SOURCES)}, got {flow!r}")
    meta = read_meta(sequence_dir)
    count = int(meta["frames"]) if max_frames is None else min(int(meta["frames"]), max_frames)
    frames = [read_frame(sequence_dir, i) for i in range(count)]
    stack = {key: np.stack([f[key] for f in frames])
             for key in ("rgb", "depth", "normal", "mask", "flow_fwd", "flow_bwd")}
    if flow == "opencv":
        stack["flow_fwd"], stack["flow_bwd"] = clip_flows(stack["rgb"])
    if perturb is not None:
        name_key = [ord(c) for c in Path(sequence_dir).name]
        rng = np.random.default_rng([perturb, *name_key])
        nuisance = FrameNuisance()
        stack["rgb"] = np.stack([nuisance(image, rng) for image in stack["rgb"]])
    return Sequence(name=Path(sequence_dir).name, fps=float(meta.get("fps", 15.0)), **stack)


def run_predictor(predictor: Predictor, sequence: Sequence,
                  progress: tqdm | None = None) -> Predictions:
    """Feed the sequence frame by frame, as a camera would.

    Stamps come from the frame rate; one frame_id.
    """
    predictor.reset()
    outs = []
    for k, image in enumerate(sequence.rgb):
        outs.append(predictor.step(image, stamp=k / sequence.fps, frame_id=sequence.name))
        if progress is not None:
            progress.update(1)
    return Predictions(depth=np.stack([o.depth for o in outs]),
                       normals=np.stack([o.normals for o in outs]),
                       mask=np.stack([o.mask for o in outs]),
                       inference_ms=np.array([o.inference_ms for o in outs], np.float64))


def ema_step(previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None, depth: np.ndarray,
             normals: np.ndarray, mask: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray,
                                                                           np.ndarray]:
    """One step of `exponential_smoothing`.

    (depth, normals, mask) blended into the previous smoothed frame (None: the first frame,
    returned as it is); the normals are renormalised after the blend.
    """
    if previous is None:
        return depth, normals, mask
    blend = alpha * normals + (1.0 - alpha) * previous[1]
    return (alpha * depth + (1.0 - alpha) * previous[0],
            blend / np.maximum(np.linalg.norm(blend, axis=-1, keepdims=True), 1e-6),
            alpha * mask + (1.0 - alpha) * previous[2])


def exponential_smoothing(pred: Predictions, alpha: float) -> Predictions:
    """Causal per-pixel exponential smoothing y_0 = x_0, y_t = alpha x_t + (1 - alpha) y_{t-1}.

    Of the raw relative depth, the normals (renormalised after each blend) and the soft mask.
    alpha = 1 changes nothing; smaller alpha is smoother and lags more behind motion (nothing is
    motion-compensated).
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"expected a smoothing alpha in (0, 1], got {alpha}")
    depth, normals, mask = pred.depth.copy(), pred.normals.copy(), pred.mask.copy()
    state = None
    for t in range(depth.shape[0]):
        state = ema_step(state, depth[t], normals[t], mask[t], alpha)
        depth[t], normals[t], mask[t] = state
    return Predictions(depth=depth, normals=normals, mask=mask, inference_ms=pred.inference_ms)


def sequence_metrics(pred: Predictions, sequence: Sequence) -> dict[str, np.ndarray]:
    return evaluate_sequence(pred.depth, pred.normals, pred.mask, sequence.flow_fwd,
                             gt_depth=sequence.depth,
                             gt_normal=sequence.normal, gt_mask=sequence.mask,
                             flow_bwd=sequence.flow_bwd)


def evaluate(sequence_dirs: list[Path], predictors: dict[str, Predictor],
             smoothing: float | None = 0.5,
             flow: str = "gt", max_frames: int | None = None, progress: bool = True,
             keep_first: bool = False, perturb: int | None = None
             ) -> tuple[EvalResult, tuple[Sequence, dict[str, Predictions]] | None]:
    """Run every predictor over every sequence and aggregate their metrics.

    With `smoothing` and a "per_frame" predictor, add "per_frame_ema" (`exponential_smoothing` of
    its outputs). With `keep_first`, also return the first sequence and its predictions (for the
    contact sheet).
    """
    if not sequence_dirs or not predictors:
        raise ValueError(f"expected sequences and predictors, got {len(sequence_dirs)} sequences "
                         f"and {len(predictors)} predictors")
    methods = list(predictors) + (["per_frame_ema"] if smoothing is not None
                                  and "per_frame" in predictors else [])
    lengths = [min(int(read_meta(d)["frames"]), max_frames or math.inf) for d in sequence_dirs]
    accumulators = {m: MetricAccumulator() for m in methods}
    times: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    kept = None
    bar = tqdm(total=len(predictors) * sum(lengths), desc="hcdp eval", unit="frame",
               disable=not progress)
    for directory in sequence_dirs:
        sequence = load_sequence(directory, max_frames, flow, perturb)
        preds = {name: run_predictor(predictor, sequence, bar) for name,
                 predictor in predictors.items()}
        if "per_frame_ema" in methods:
            preds["per_frame_ema"] = exponential_smoothing(preds["per_frame"], smoothing)
        for method, pred in preds.items():
            accumulators[method].add(sequence_metrics(pred, sequence), sequence=sequence.name)
            times[method].append(pred.inference_ms)
        bar.set_postfix({m: f"{np.mean(np.concatenate(times[m])):.0f}ms" for m in predictors})
        if keep_first and kept is None:
            kept = (sequence, preds)
    bar.close()
    result = EvalResult(
        summary={m: a.summary() for m, a in accumulators.items()},
        counts={m: a.counts() for m, a in accumulators.items()},
        per_sequence={m: a.sequence_summary() for m, a in accumulators.items()},
        inference_ms={m: float(np.mean(np.concatenate(t))) for m, t in times.items()},
        metadata={"sequences": len(sequence_dirs), "frames": int(sum(lengths)),
                  "pairs": int(sum(n - 1 for n in lengths)), "flow": flow,
                  "smoothing_alpha": smoothing,
                  "max_frames": max_frames, "perturb_seed": perturb},
    )
    return result, kept


COMPARISONS = (("window_1", "streaming vs W=1 (same weights)"), ("per_frame", "streaming vs "
                                                                              "per-frame"))


def relative_change(new: float, ref: float) -> str:
    """Return `new` against `ref` in percent, or '–' when either is missing or `ref` is 0."""
    finite = math.isfinite(ref) and ref != 0 and math.isfinite(new)
    return f"{100.0 * (new - ref) / abs(ref):+.1f}%" if finite else "–"


def markdown_table(result: EvalResult, labels: dict[str, str] | None = None) -> str:
    """Metrics as rows (arrow: which way is better), methods as columns.

    Plus the relative change of `streaming` against each baseline present: the same weights at
    window 1, and `per_frame`.
    """
    methods = list(result.summary)
    labels = labels or {}
    header = ["Metric"] + [labels.get(m, m) for m in methods]
    compare = [(m, title) for m, title in COMPARISONS if "streaming" in methods and m in methods]
    header += [title for _, title in compare]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    names = [n for n in METRIC_NAMES if any(n in result.summary[m] for m in methods)]
    for name in names:
        values = [result.summary[m].get(name, math.nan) for m in methods]
        row = [f"{name} {'↑' if name in HIGHER_IS_BETTER else '↓'}"] + [_fmt(v) for v in values]
        new = result.summary["streaming"].get(name, math.nan) if compare else math.nan
        row += [relative_change(new, result.summary[m].get(name, math.nan)) for m, _ in compare]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


def _tile(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)


def _slice_row(mask: np.ndarray) -> int:
    """Return the image row that crosses the human in the most (frame, pixel) pairs.

    It is the x-t slice's row.
    """
    return int(np.argmax((mask > 0.5).sum(axis=(0, 2))))


def sheet_image(sequence: Sequence, preds: dict[str, Predictions], frames: int = 3) -> np.ndarray:
    """Contact sheet: one row per sampled frame and a last row of x-t time slices.

    A frame's row: input, GT depth/normals/mask, then each method's depth, normals and mask. The
    x-t slices: the same columns along one image row (drawn in white on the inputs) stacked over
    time, top = first frame, so flicker shows as horizontal streaks.
    Depth is coloured on the GT mask for every method (the region the metrics use; each method's
    own mask has its column), with robust percentiles per tile.
    """
    t_count, h, w = sequence.mask.shape
    tile_w = max(1, round(SHEET_TILE * w / h))
    row_y = _slice_row(sequence.mask)
    picks = sorted(set(np.linspace(0, t_count - 1,
                                   min(frames, t_count)).round().astype(int).tolist()))
    sources = [("GT", sequence.depth, sequence.normal, sequence.mask)]
    sources += [(SHEET_NAMES.get(m, m), p.depth, p.normals, p.mask) for m, p in preds.items()]
    column_labels = ["input"] + [f"{name} {kind}" for name,
                                 *_ in sources for kind in ("depth", "normals", "mask")]

    def columns(rgb, pick) -> list[np.ndarray]:
        out = [rgb]
        region = pick(sequence.mask)
        for _, depth, normals, mask in sources:
            out += [colorize_depth(pick(depth), region),
                    normals_to_rgb(np.nan_to_num(pick(normals))),
                    mask_to_rgb(pick(mask))]
        return out

    rows = []
    for k in picks:
        rgb = sequence.rgb[k].copy()
        rgb[row_y] = 255
        rows.append([_tile(c, tile_w, SHEET_TILE) for c in columns(rgb, lambda a: a[k])])
    xt = [_tile(c, tile_w, SHEET_TILE)
          for c in columns(sequence.rgb[:, row_y], lambda a: a[:, row_y])]
    cv2.putText(xt[0], f"x-t, y={row_y}", (4, SHEET_TILE - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (255, 255, 255), 1,
                cv2.LINE_AA)
    rows.append(xt)
    return contact_sheet(rows, column_labels)


def method_labels(window: int, smoothing: float) -> dict[str, str]:
    return {"streaming": f"streaming W={window}", "window_1": "same weights "
                                                              "W=1", "per_frame": "per-frame",
            "per_frame_ema": f"per-frame+EMA a={smoothing:g}"}


def sequence_clip(sequence: Sequence, resolution: int) -> torch.Tensor:
    """Preprocess a sequence's images as one clip [1, T, 3, S, S] (the model's offline input)."""
    return torch.cat([preprocess(image, resolution)[0] for image in sequence.rgb])[None]


def attention_summary(model: HCDPModel, sequence_dirs: list[Path], window: int,
                      max_frames: int | None,
                      perturb: int | None) -> list[dict]:
    """`attention_report` of `model` averaged over the sequences (at most `window` frames each)."""
    frames = min(window, max_frames or window)
    reports = []
    for directory in sequence_dirs:
        sequence = load_sequence(directory, frames, "gt", perturb)
        if len(sequence.rgb) >= 2:
            reports.append(attention_report(model, sequence_clip(sequence, model.cfg.resolution),
                                            window))
    return mean_report(reports)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint",
                        help="stage-2 checkpoint (directory or .safetensors); default: the "
                             "bundled model")
    parser.add_argument("--data", required=True,
                        help="folder of sequences in hcdp's format (hcdp synth)")
    parser.add_argument("--stage1", help="stage-1 checkpoint for the per-frame baselines; "
                                         "default: --checkpoint with its temporal blocks removed")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="streaming window W (frames)")
    parser.add_argument("--perturb", type=int, metavar="SEED",
                        help="feed every method inputs with per-frame nuisances (noise, JPEG, "
                             "exposure, blur, a corrupted patch) drawn from SEED; ground truth "
                             "stays clean")
    parser.add_argument("--attention", action="store_true",
                        help="also print, per temporal block, the attention mass on the current "
                             "frame vs earlier ones (over the first W frames of each sequence)")
    parser.add_argument("--smoothing", type=float, default=0.5,
                        help="alpha of the per-frame + EMA baseline: y_t = alpha x_t + (1 - "
                             "alpha) y_{t-1}")
    parser.add_argument("--flow", choices=FLOW_SOURCES, default="gt",
                        help="flow for the temporal metrics: ground truth, or OpenCV DIS between "
                             "the images")
    parser.add_argument("--max-sequences", type=int, help="evaluate only the first N sequences")
    parser.add_argument("--max-frames", type=int,
                        help="evaluate only the first N frames of each sequence")
    parser.add_argument("--device", default=DEFAULT_DEVICE,
                        help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS,
                        help="runtime of every method (load_predictor); --checkpoint may be an "
                             "artefact of hcdp export for it")
    parser.add_argument("--precision", default=DEFAULT_PRECISION, choices=tuple(PRECISIONS),
                        help="inference precision of every method (fp16 needs a CUDA device)")
    parser.add_argument("--trust-artefact", action="store_true",
                        help="load a .pt2/.ep this machine did not build (it can run code)")
    parser.add_argument("--json", type=Path, help="write the metrics as JSON here")
    parser.add_argument("--markdown", type=Path,
                        help="write the markdown table here (it is printed anyway)")
    parser.add_argument("--sheet", type=Path,
                        help="write a contact sheet PNG of the first sequence here")
    parser.add_argument("--sheet-frames", type=int, default=3,
                        help="frames shown on the contact sheet")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def run(args: argparse.Namespace) -> int:
    if args.window < 1 or (args.max_frames is not None and args.max_frames < 1):
        print(f"hcdp eval: expected --window >= 1 and --max-frames >= 1, got {args.window} and "
              f"{args.max_frames}",
              file=sys.stderr)
        return 2
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    runtime = {"device": args.device, "backend": args.backend, "precision": args.precision,
               "trust_artefact": args.trust_artefact}
    try:
        sequences = list_sequences(args.data)[:args.max_sequences]
        with tempfile.TemporaryDirectory(prefix="hcdp_eval_") as workdir:
            stage1 = Path(args.stage1) if args.stage1 else None
            predictors = load_predictors(checkpoint, stage1, args.window, Path(workdir),
                                         **runtime)
        # the streaming weights, for the attention report and the metadata
        model = load_checkpoint(source_checkpoint(checkpoint))
    except (CheckpointError, BackendError, ValueError, FileNotFoundError) as err:
        print(f"hcdp eval: {err}", file=sys.stderr)
        return 2
    if not sequences:
        print("hcdp eval: no sequences (folders with meta.json) under "
              f"{args.data}", file=sys.stderr)
        return 2
    if model.temporal_blocks is None:
        print(f"hcdp eval: warning: {checkpoint} has no temporal blocks; 'streaming' is a "
              "per-frame model too", file=sys.stderr)
    else:
        model.set_temporal_mode("causal")  # what the node runs, whatever mode stage 2 trained in
    start = time.perf_counter()
    result, kept = evaluate(sequences, predictors, args.smoothing, args.flow, args.max_frames,
                            progress=not args.no_progress, keep_first=args.sheet is not None,
                            perturb=args.perturb)
    labels = method_labels(args.window, args.smoothing)
    result.metadata.update({
        "checkpoint": str(checkpoint), "data": str(args.data),
        "per_frame_model": str(args.stage1) if args.stage1 else "checkpoint without temporal "
                                                                "blocks",
        "window": args.window, "device": args.device, "backend": args.backend,
        "precision": args.precision, "resolution": model.cfg.resolution,
        "method_labels": labels, "elapsed_s": round(time.perf_counter() - start, 2),
    })
    table = markdown_table(result, labels)
    if args.attention and model.temporal_blocks is not None:
        attention = attention_summary(model, sequences, args.window, args.max_frames, args.perturb)
        result.metadata["attention"] = attention
        table += ("\n\nTemporal attention (first W frames of each "
                  "sequence):\n\n") + report_table(attention)
    print(table)
    if args.markdown:
        _write(args.markdown, table + "\n")
    if args.json:
        _write(args.json, json.dumps(result.to_json(), indent=1) + "\n")
    if args.sheet and kept is not None:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet),
                    cv2.cvtColor(sheet_image(*kept, frames=args.sheet_frames), cv2.COLOR_RGB2BGR))
    return 0
