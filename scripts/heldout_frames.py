"""What the held-out diagnostics share (person_depth_tilt.py, normal_shape.py).

Their arguments, and the W=1 predictions of each checkpoint on the scored frames of every held-out
sequence.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator

from hcdp_model.predictor import load_predictor, Prediction
from hcdp_training.data import list_sequences, read_frame


def parse_arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=Path("gen/heldout"))
    parser.add_argument("--frames", type=int, nargs="+", default=[0, 8, 16],
                        help="frame indices scored in each sequence")
    return parser.parse_args()


def predictions(checkpoint: Path, data: Path,
                frames: list[int]) -> Iterator[tuple[dict, Prediction]]:
    """Yield (the frame as read_frame gives it, the W=1 prediction) for each scored frame."""
    predictor = load_predictor(checkpoint, window=1)
    for seq in list_sequences(data):
        for t in frames:
            f = read_frame(seq, t)
            # a new frame id per frame: every step starts afresh (W=1 needs no past anyway)
            yield f, predictor.step(f["rgb"], 0.0, f"{seq.name}/{t}")
