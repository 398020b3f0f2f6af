"""Datasets and the on-disk format: `read_frame` (one frame's ground truth as numpy),
`list_sequences`, `StaticFrames` (single frames) and `VideoClips` (clips of T frames with a random
stride)."""
from hcdp_training.data.datasets import StaticFrames, VideoClips
from hcdp_training.data.format import list_sequences, read_frame

__all__ = ["read_frame", "list_sequences", "StaticFrames", "VideoClips"]
