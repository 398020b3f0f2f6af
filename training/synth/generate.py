"""Generate sequences to disk: one process-local anny body and renderer, worker processes for speed."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hcdp_training.data.format import write_frame, write_meta
from hcdp_training.synth.appearance import texture_layers
from hcdp_training.synth.body import CANONICAL_HI, CANONICAL_LO, BodyModel
from hcdp_training.synth.motion import MOTIONS
from hcdp_training.synth.render import Renderer, RenderOutput
from hcdp_training.synth.scene import (SceneSpec, background_window, build_scene, frame_geometry,
                                       lighting_for_frame, sample_scene)

FORMAT_VERSION = 1


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
    static: bool = False          # static samples: one frame each, Sapiens face/upper/full-body views
    max_people: int = 3
    motions: tuple[str, ...] = MOTIONS + ("mix",)
    workers: int = 1

    def validate(self) -> None:
        if self.sequences < 1 or self.frames < 1:
            raise ValueError(f"expected sequences >= 1 and frames >= 1, got {self.sequences} and {self.frames}")
        if min(self.width, self.height) < 16:
            raise ValueError(f"expected an image size of at least 16x16, got {self.width}x{self.height}")
        if not 1 <= self.flow_strides <= 6:
            raise ValueError(f"expected flow_strides in 1..6, got {self.flow_strides}")
        if not 1 <= self.max_people <= 3:
            raise ValueError(f"expected max_people in 1..3, got {self.max_people}")
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
        self.renderer = Renderer(config.width, config.height, config.flow_strides, texture_layers())

    def render(self, spec: SceneSpec):
        """Yield (scene, RenderOutput) per frame of the scene."""
        c = self.config
        scene = build_scene(self.body, spec, c.width, c.height, c.static)
        self.renderer.set_scene(scene.faces, scene.canonical, scene.material_ids, scene.materials,
                                CANONICAL_LO, CANONICAL_HI, scene.background)
        for t in range(spec.frames):
            yield scene, self.renderer.render(frame_geometry(scene, t, c.flow_strides), scene.K,
                                              lighting_for_frame(scene, t), background_window(scene, t))

    def write(self, index: int) -> dict:
        c = self.config
        spec = sample_scene(sequence_seed(c.seed, index), c.frames, c.fps, c.static, c.max_people, c.motions)
        out = Path(c.out) / f"seq_{index:05d}"
        coverage = []
        scene = None
        for t, (scene, frame) in enumerate(self.render(spec)):
            _write(out, t, frame)
            coverage.append(float(frame.mask.mean()))
        meta = {"format_version": FORMAT_VERSION, "frames": c.frames, "width": c.width, "height": c.height,
                "fps": c.fps, "flow_strides": c.flow_strides, "static": c.static, "index": index,
                "K": [scene.K.tolist()] * c.frames, "extrinsics": scene.world_to_camera.tolist(),
                "mask_coverage": coverage, "controls": spec.to_json()}
        write_meta(out, meta)
        return {"index": index, "controls": spec.to_json(), "mask_coverage": coverage}


def _write(out: Path, t: int, frame: RenderOutput) -> None:
    write_frame(out, t, frame.rgb, frame.mask, frame.depth, frame.normal, frame.canonical,
                frame.flow_fwd, frame.flow_bwd)


_WORKER: SequenceWriter | None = None


def _init_worker(config: SynthConfig) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(1)
    _WORKER = SequenceWriter(config)


def _run(index: int) -> dict:
    assert _WORKER is not None
    return _WORKER.write(index)


def generate_dataset(config: SynthConfig, progress: bool = True) -> dict:
    """Render `config.sequences` sequences under `config.out`; write the dataset card; return a summary."""
    config.validate()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    BodyModel.load()  # build anny's cache once before forking workers
    start = time.perf_counter()
    indices = range(config.sequences)
    if config.workers <= 1:
        _init_worker(config)
        records = [_run(i) for i in indices]
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(config.workers, initializer=_init_worker, initargs=(config,)) as pool:
            records = list(pool.imap(_run, indices))
    seconds = time.perf_counter() - start
    from hcdp_training.synth.card import write_card

    write_card(out, config, records)
    frames = config.sequences * config.frames
    return {"sequences": config.sequences, "frames": frames, "seconds": seconds,
            "frames_per_second": frames / seconds, "workers": config.workers, "cpu_count": os.cpu_count()}
