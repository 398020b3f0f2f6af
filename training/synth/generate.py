"""Generate sequences to disk.

One process-local anny body and renderer, worker processes for speed.

A run records its settings in `synth_config.json` before it renders anything, and each sequence
folder is complete once its `meta.json` is written (last). A new run needs an empty `out`;
`resume=True` (`hcdp synth --resume`) finishes exactly the run `synth_config.json` describes,
rendering only the sequences without a `meta.json`, so stale and new frames never mix.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import json
import math
import multiprocessing as mp
import os
from pathlib import Path
import shutil
import time

from hcdp_training.data.format import read_meta, write_frame, write_meta
from hcdp_training.synth.appearance import texture_layers
from hcdp_training.synth.body import BodyModel, CANONICAL_HI, CANONICAL_LO
from hcdp_training.synth.motion import MOTIONS
from hcdp_training.synth.render import Renderer, RenderOutput
from hcdp_training.synth.scene import (background_window, build_scene, frame_geometry,
                                       lighting_for_frame, sample_scene, SceneSpec)
import numpy as np
from tqdm import tqdm

FORMAT_VERSION = 1
RUN_FILE = "synth_config.json"  # the settings of the run that writes `out` (see the docstring)
MAX_SIZE = 4096  # pixels per side; the renderer keeps a few float images of this size per worker


@dataclass(frozen=True)
class SynthConfig:
    """Generator settings (`hcdp synth` flags)."""

    out: str
    sequences: int = 4
    frames: int = 16
    width: int = 256
    height: int = 256
    fps: float = 15.0
    seed: int = 0
    flow_strides: int = 2
    # static samples: one frame each, Sapiens face/upper/full-body views
    static: bool = False
    max_people: int = 3
    motions: tuple[str, ...] = MOTIONS + ("mix",)
    # share of sequences seen from far: people small, anywhere in the frame (camera.FAR)
    far_share: float = 0.0
    # share of sequences whose people stand on a textured ground plane (its depth: ground_depth)
    ground_share: float = 0.0
    workers: int = 1

    def validate(self) -> None:
        if self.sequences < 1 or self.frames < 1:
            raise ValueError(f"expected sequences >= 1 and frames >= 1, got {self.sequences} and "
                             f"{self.frames}")
        if min(self.width, self.height) < 16 or max(self.width, self.height) > MAX_SIZE:
            raise ValueError(f"expected an image size between 16x16 and {MAX_SIZE}x{MAX_SIZE} "
                             f"(H W), got {self.height}x{self.width}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"expected fps > 0, got {self.fps}")
        if self.workers < 1:
            raise ValueError(f"expected workers >= 1, got {self.workers}")
        if not 1 <= self.flow_strides <= 6:
            raise ValueError(f"expected flow_strides in 1..6, got {self.flow_strides}")
        if not 1 <= self.max_people <= 3:
            raise ValueError(f"expected max_people in 1..3, got {self.max_people}")
        for name in ("far_share", "ground_share"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"expected {name} in [0, 1], got {value}")
        if self.static and self.frames != 1:
            raise ValueError(f"static samples have exactly one frame, got frames={self.frames}")
        bad = [m for m in self.motions if m not in MOTIONS + ("mix",)]
        if bad:
            raise ValueError(f"expected motions among {MOTIONS + ('mix',)}, got {bad}")


def sequence_seed(master: int, index: int) -> int:
    """Per-sequence seed derived from the master seed (independent of worker count and order)."""
    return int(np.random.SeedSequence([master, index]).generate_state(1)[0])


class SequenceWriter:
    """Holds the anny body and the renderer of one process; renders and writes whole sequences."""

    def __init__(self, config: SynthConfig, body: BodyModel | None = None) -> None:
        self.config = config
        self.body = body if body is not None else BodyModel.load()
        self.renderer = Renderer(config.width, config.height, config.flow_strides,
                                 texture_layers())

    def render(self, spec: SceneSpec):
        """Yield (scene, RenderOutput) per frame of the scene."""
        c = self.config
        scene = build_scene(self.body, spec, c.width, c.height, c.static)
        self.renderer.set_scene(scene.faces, scene.canonical, scene.material_ids, scene.materials,
                                CANONICAL_LO, CANONICAL_HI, scene.background, scene.ground)
        for t in range(spec.frames):
            yield scene, self.renderer.render(frame_geometry(scene, t, c.flow_strides), scene.K,
                                              lighting_for_frame(scene, t),
                                              background_window(scene, t))

    def write(self, index: int) -> dict:
        c = self.config
        spec = sample_scene(sequence_seed(c.seed, index), c.frames, c.fps, c.static, c.max_people,
                            c.motions, c.far_share, c.ground_share)
        out = Path(c.out) / f"seq_{index:05d}"
        coverage = []
        scene = None
        for t, (scene, frame) in enumerate(self.render(spec)):
            _write(out, t, frame)
            coverage.append(float(frame.mask.mean()))
        meta = {"format_version": FORMAT_VERSION, "frames": c.frames, "width": c.width,
                "height": c.height,
                "fps": c.fps, "flow_strides": c.flow_strides, "static": c.static, "index": index,
                "K": [scene.K.tolist()] * c.frames, "extrinsics": scene.world_to_camera.tolist(),
                "mask_coverage": coverage, "controls": spec.to_json()}
        write_meta(out, meta)
        return {"index": index, "controls": spec.to_json(), "mask_coverage": coverage}


def _write(out: Path, t: int, frame: RenderOutput) -> None:
    write_frame(out, t, frame.rgb, frame.mask, frame.depth, frame.normal, frame.canonical,
                frame.flow_fwd, frame.flow_bwd, ground_depth=frame.ground_depth)


_WORKER: SequenceWriter | None = None


def _init_worker(config: SynthConfig) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(1)
    _WORKER = SequenceWriter(config)


def _run(index: int) -> dict:
    assert _WORKER is not None
    return _WORKER.write(index)


def run_settings(config: SynthConfig) -> dict:
    """Return what decides the bytes of a run.

    Not where it is written, nor how many workers render.
    """
    settings = asdict(config)
    del settings["out"], settings["workers"]
    settings["motions"] = list(settings["motions"])
    for option in ("far_share", "ground_share"):
        if not settings[option]:  # runs recorded before the option resume as they were
            del settings[option]
    return {"format_version": FORMAT_VERSION, **settings}


def _start_or_resume(config: SynthConfig, resume: bool) -> list[int]:
    """Check `out` against the request; record the run; the sequence indices still to render."""
    out = Path(config.out)
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    run_file = out / RUN_FILE
    if entries and not resume:
        raise ValueError(f"--out {out} is not empty ({', '.join(entries[:5])}"
                         f"{', ...' if len(entries) > 5 else ''}); pick an empty folder, or pass "
                         f"--resume to finish the run its {RUN_FILE} records")
    wanted = run_settings(config)
    if entries:
        try:
            recorded = json.loads(run_file.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"--resume: {run_file} cannot be read ({err}); only a run started "
                             "by this generator can be resumed") from None
        changed = [f"{k}: {recorded.get(k)!r} -> {v!r}" for k, v in wanted.items()
                   if recorded.get(k) != v]
        if changed:
            raise ValueError(f"--resume: {out} holds a different run ({'; '.join(changed)}); "
                             "repeat its settings or pick an empty folder")
    else:
        out.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps(wanted, indent=1) + "\n")
    todo = []
    for index in range(config.sequences):
        folder = out / f"seq_{index:05d}"
        if not _complete(folder, config):
            if folder.exists():  # a sequence cut short: render it again from its first frame
                shutil.rmtree(folder)
            todo.append(index)
    return todo


def _complete(folder: Path, config: SynthConfig) -> bool:
    """Tell whether a sequence is complete.

    Its meta.json (written after its frames) is whole and describes this run.
    """
    try:
        meta = read_meta(folder)
    except (OSError, ValueError):  # absent, or cut short while being written
        return False
    return meta.get("frames") == config.frames and "controls" in meta


def _record_of(out: Path, index: int) -> dict:
    """Return the card record of a sequence written by an earlier invocation of the run."""
    meta = read_meta(out / f"seq_{index:05d}")
    return {"index": index, "controls": meta["controls"], "mask_coverage": meta["mask_coverage"]}


def generate_dataset(config: SynthConfig, progress: bool = True, resume: bool = False) -> dict:
    """Render `config.sequences` sequences under `config.out` and write the dataset card.

    `config.out` is an empty folder, or with `resume` the run it records. Returns a summary.
    """
    config.validate()
    out = Path(config.out)
    todo = _start_or_resume(config, resume)
    BodyModel.load()  # build anny's cache once before forking workers
    start = time.perf_counter()
    done = config.sequences - len(todo)
    bar = tqdm(total=config.sequences * config.frames, initial=done * config.frames, unit="frame",
               desc="hcdp synth", disable=not progress, dynamic_ncols=True)
    fresh: dict[int, dict] = {}
    with bar:
        if config.workers <= 1 or len(todo) <= 1:
            _init_worker(config)
            results = (_run(i) for i in todo)
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(config.workers, initializer=_init_worker,
                                                initargs=(config,))
            results = pool.imap(_run, todo)
        try:
            for record in results:
                fresh[record["index"]] = record
                bar.update(config.frames)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    seconds = time.perf_counter() - start
    from hcdp_training.synth.card import write_card

    records = [fresh[i] if i in fresh else _record_of(out, i) for i in range(config.sequences)]
    write_card(out, config, records)
    frames = len(todo) * config.frames
    return {"sequences": config.sequences, "frames": config.sequences * config.frames,
            "rendered_sequences": len(todo), "rendered_frames": frames, "seconds": seconds,
            "frames_per_second": frames / seconds if seconds > 0 else math.nan,
            "workers": config.workers, "cpu_count": os.cpu_count()}
