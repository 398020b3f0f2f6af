"""`hcdp ablate`: train and evaluate the variants of the paper's Tables 5 and 12 at tiny scale.

One table.

Every variant runs the real pipeline: stage 0 (prior encoder) -> stage 1 (images) -> stage 2
(clips, causal), from the stage configs (`training/configs/<prefix>_stage{0,1,2}.yaml`) with the
variant's model-config or loss overrides, then `hcdp eval`'s streaming evaluation of its final
checkpoint on held-out sequences, at the window W and, with the same weights, at window 1 (what
attention over earlier frames adds).
Runs that variants have in common are trained once: one stage 0 for all (the prior encoder has the
same shape for the learned and Fourier-UV priors), one stage 1 per network structure (`full`,
`tgm`, `no_temporal_loss` and `no_temporal` share theirs). `no_temporal` is that stage-1 model
itself.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import sys
import time
from typing import Any, Callable

from hcdp_model.config import ConfigError, ModelConfig, preset
from hcdp_model.predictor import load_predictor
from hcdp_training.config import load_config, TrainConfig
from hcdp_training.data.format import list_sequences
from hcdp_training.evaluate import evaluate, json_safe
from hcdp_training.metrics import METRIC_NAMES


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    table: str  # the paper table the variant reproduces
    # ModelConfig overrides by section
    model: dict[str, dict[str, Any]] = field(default_factory=dict)
    loss: tuple[str, ...] = ()  # stage-2 `loss.*=value` overrides
    temporal: bool = True  # False: no stage 2, the stage-1 model is evaluated


VARIANTS = (
    Variant("full", "learned prior, CWA, CNN branch, flow-based temporal loss", "5, 12"),
    Variant("no_prior", "without the human prior (prior.kind none)", "5",
            model={"prior": {"kind": "none"}}),
    Variant("fourier_uv", "Fourier encoding of the predicted body-surface coordinates as the "
                          "prior", "7",
            model={"prior": {"kind": "fourier_uv"}}),
    Variant("no_cwa", "without channel weight adaptation", "5", model={"fusion": {"cwa": False}}),
    Variant("no_cnn", "without the CNN branch", "5", model={"fusion": {"cnn_branch": False}}),
    Variant("tgm", "VDA's temporal gradient matching instead of the flow loss", "12",
            loss=("loss.temporal=tgm",)),
    Variant("no_temporal_loss", "stage 2 without temporal terms (lambda_temp = 0)", "12",
            loss=("loss.lambda_temp_depth=0", "loss.lambda_temp_normal=0")),
    Variant("no_temporal", "no temporal blocks: the stage-1 model", "12", temporal=False),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)

TrainFn = Callable[[TrainConfig], Path]  # run one stage, return its final checkpoint


def train_stage(cfg: TrainConfig) -> Path:
    """Run the trainer (`hcdp train`): the stage to its last step; return the final checkpoint."""
    from hcdp_training.train import train

    result = train(cfg)
    if result.final is None:
        raise RuntimeError(f"stage {cfg.stage} under {cfg.out} ended without a final checkpoint")
    return result.final


@dataclass
class AblationConfig:
    data: Path  # training sequences
    eval_data: Path  # held-out sequences (a seed never used for training)
    out: Path
    stage_configs: tuple[Path, Path, Path]  # the YAML of stage 0, 1, 2
    # optim.steps of stage 0, 1, 2 (None: the configs' own)
    steps: tuple[int, int, int] | None = None
    overrides: tuple[str, ...] = ()  # `key=value` for every stage
    window: int = 8
    max_sequences: int | None = None
    max_frames: int | None = None
    progress: bool = True
    # seed of `hcdp eval --perturb`'s per-frame nuisances (None: clean inputs)
    perturb: int | None = None


@dataclass
class TrainingRun:
    stage: int
    key: str
    checkpoint: Path
    seconds: float


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested dict update: `overrides` wins, sections are merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if nested else value
    return out


def structure_key(model: dict[str, dict[str, Any]]) -> str:
    """Return a folder-safe name for a set of model overrides: `base`, `prior.kind-none`, ..."""
    items = [f"{section}.{k}-{v}".lower()
             for section, values in sorted(model.items()) for k, v in sorted(values.items())]
    return "_".join(items) or "base"


class Ablation:
    """Trains what the requested variants need (each shared run once), evaluates every variant."""

    def __init__(self, cfg: AblationConfig, train_fn: TrainFn = train_stage) -> None:
        self.cfg = cfg
        self.train_fn = train_fn
        self.runs: dict[tuple[int, str], TrainingRun] = {}
        self.base_model = self._base_model()

    def _stage_config(self, stage: int, out: Path, extra: list[str]) -> TrainConfig:
        steps = [f"optim.steps={self.cfg.steps[stage]}"] if self.cfg.steps else []
        return load_config(self.cfg.stage_configs[stage],
                           [*self.cfg.overrides, f"data.root={self.cfg.data}",
                            f"out={out}", *steps, *extra])

    def _base_model(self) -> ModelConfig:
        """Return the network the stage-1 config builds (its model.config, else its preset)."""
        m = self._stage_config(1, self.cfg.out, []).model
        return ModelConfig.load(m.config) if m.config else preset(m.preset, m.family)

    def _model_config(self, overrides: dict[str, dict[str, Any]]) -> Path:
        path = self.cfg.out / "models" / f"{structure_key(overrides)}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        ModelConfig.from_dict(merge(self.base_model.to_dict(), overrides),
                              source=str(path)).save(path)
        return path

    def _train(self, stage: int, key: str, extra: list[str]) -> TrainingRun:
        if (stage, key) not in self.runs:
            out = self.cfg.out / f"stage{stage}_{key}"
            cfg = self._stage_config(stage, out, extra)
            print(f"hcdp ablate: stage {stage} '{key}' ({cfg.optim.steps} steps) -> "
                  f"{out}", file=sys.stderr)
            start = time.perf_counter()
            checkpoint = self.train_fn(cfg)
            self.runs[(stage, key)] = TrainingRun(stage, key, Path(checkpoint),
                                                  time.perf_counter() - start)
        return self.runs[(stage, key)]

    def checkpoint(self, variant: Variant) -> tuple[Path, list[TrainingRun]]:
        """Train (or reuse) the variant's stages.

        Returns its final checkpoint and the runs it depends on.
        """
        runs = []
        structure = structure_key(variant.model)
        model_config = self._model_config(variant.model)
        stage1_extra = [f"model.config={model_config}"]
        if ModelConfig.load(model_config).prior.kind != "none":
            prior_config = self._model_config({"prior": {"kind": "learned"}})
            runs.append(self._train(0, "prior", [f"model.config={prior_config}"]))
            stage1_extra.append(f"model.prior_init={runs[-1].checkpoint}")
        runs.append(self._train(1, structure, stage1_extra))
        if variant.temporal:
            key = structure + "".join(f"_{o.removeprefix('loss.').replace('=', '-')}"
                                      for o in variant.loss)
            runs.append(self._train(2, key, [f"model.init={runs[-1].checkpoint}", *variant.loss]))
        return runs[-1].checkpoint, runs

    def run(self, variants: list[Variant]) -> dict[str, dict[str, Any]]:
        """Per variant: metrics, training seconds, checkpoint.

        The metrics are those of its streaming model on the held-out data at window W and
        (variants with temporal blocks) at window 1.
        """
        sequences = list_sequences(self.cfg.eval_data)[:self.cfg.max_sequences]
        if not sequences:
            raise FileNotFoundError("no held-out sequences (folders with meta.json) under "
                                    f"{self.cfg.eval_data}")
        results = {}
        for variant in variants:
            checkpoint, runs = self.checkpoint(variant)
            predictors = {"streaming": load_predictor(checkpoint, window=self.cfg.window)}
            if variant.temporal:
                predictors["window_1"] = load_predictor(checkpoint, window=1)
            result, _ = evaluate(sequences, predictors, smoothing=None,
                                 max_frames=self.cfg.max_frames,
                                 progress=self.cfg.progress, perturb=self.cfg.perturb)
            results[variant.name] = {
                "metrics": result.summary["streaming"],
                "metrics_window_1": result.summary.get("window_1"),
                "table": variant.table, "description": variant.description,
                "checkpoint": str(checkpoint),
                "train_s": {f"stage{r.stage}": round(r.seconds, 1) for r in runs},
            }
        return results


def markdown_table(results: dict[str, dict[str, Any]], window: int | None = None) -> str:
    """Return a markdown table: variants as rows, metrics and training seconds as columns.

    Rows: each variant with temporal blocks is followed by a row of the same weights at window 1.
    Columns: `METRIC_NAMES` and the training seconds of the variant's stages.
    """
    header = ["Variant", "Table"] + list(METRIC_NAMES) + ["train s (0/1/2)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    at = f", W={window}" if window else ""
    for name, r in results.items():
        seconds = "/".join(f"{r['train_s'][s]:.0f}" if s in r["train_s"] else "–"
                           for s in ("stage0", "stage1", "stage2"))
        rows = [(f"{name}{at}" if r.get("metrics_window_1") else name, r["metrics"], seconds)]
        if r.get("metrics_window_1"):
            rows.append((f"{name}, same weights W=1", r["metrics_window_1"], "″"))
        for label, metrics, train_s in rows:
            values = [metrics.get(m, math.nan) for m in METRIC_NAMES]
            lines.append("| " + " | ".join([label, r["table"], *(_fmt(v) for v in values),
                                            train_s]) + " |")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "–"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="training sequences (hcdp synth output)")
    parser.add_argument("--eval-data", required=True, type=Path,
                        help="held-out sequences, generated with a seed never used for training")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="output folder")
    parser.add_argument("--variants", nargs="+", choices=VARIANT_NAMES,
                        default=list(VARIANT_NAMES),
                        help="variants to run (default: all)")
    parser.add_argument("--configs", type=Path, default=Path("training/configs"),
                        help="folder of the stage configs")
    parser.add_argument("--prefix", default="tiny_cpu",
                        help="stage configs are PREFIX_stage{0,1,2}.yaml")
    parser.add_argument("--steps", type=int, nargs=3, metavar=("S0", "S1", "S2"),
                        help="optimizer steps of stage 0, 1, 2 (default: the configs'); 1 1 1 is "
                             "a smoke run")
    parser.add_argument("--window", type=int, default=8,
                        help="streaming window W of the evaluation")
    parser.add_argument("--max-sequences", type=int,
                        help="evaluate on the first N held-out sequences")
    parser.add_argument("--max-frames", type=int,
                        help="evaluate the first N frames of each sequence")
    parser.add_argument("--perturb", type=int, metavar="SEED",
                        help="evaluate on inputs with per-frame nuisances drawn from SEED (hcdp "
                             "eval --perturb)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path,
                        help="write the table here (it is printed anyway)")
    parser.add_argument("--no-progress", action="store_true", help="no evaluation progress bars")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="training config overrides for every stage, e.g. optim.batch_size=2")


def run(args: argparse.Namespace, train_fn: TrainFn = train_stage) -> int:
    configs = tuple(args.configs / f"{args.prefix}_stage{s}.yaml" for s in range(3))
    missing = [str(p) for p in configs if not p.is_file()]
    if missing:
        print(f"hcdp ablate: stage configs not found: {', '.join(missing)} (see "
              "--configs/--prefix)", file=sys.stderr)
        return 2
    cfg = AblationConfig(data=args.data, eval_data=args.eval_data, out=args.out,
                         stage_configs=configs,
                         steps=tuple(args.steps) if args.steps else None,
                         overrides=tuple(args.overrides),
                         window=args.window, max_sequences=args.max_sequences,
                         max_frames=args.max_frames,
                         progress=not args.no_progress, perturb=args.perturb)
    chosen = [v for v in VARIANTS if v.name in args.variants]
    try:
        ablation = Ablation(cfg, train_fn)
        results = ablation.run(chosen)
    except (ConfigError, FileNotFoundError) as err:
        print(f"hcdp ablate: {err}", file=sys.stderr)
        return 2
    table = markdown_table(results, cfg.window)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        runs = [{"stage": r.stage, "key": r.key, "checkpoint": str(r.checkpoint),
                 "seconds": round(r.seconds, 1)}
                for r in ablation.runs.values()]
        summary = {"variants": results, "runs": runs, "window": cfg.window, "steps": cfg.steps,
                   "perturb_seed": cfg.perturb,
                   "data": str(cfg.data), "eval_data": str(cfg.eval_data)}
        args.json.write_text(json.dumps(json_safe(summary), indent=1) + "\n")
    return 0
