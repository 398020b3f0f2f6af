"""The read-path shortcuts of the training data (issue 19.5) change no value.

meta.json parsed once per file version, float16 normals renormalised in place of np.linalg.norm,
and a frame already at the training size skips the resize.
"""
from __future__ import annotations

import os

from benchmarks.loader import workers_needed
import cv2
from hcdp_training.data.datasets import resize_square
from hcdp_training.data.format import _unit, read_meta, write_meta
import numpy as np
import pytest


def test_unit_equals_the_linalg_norm_formula_bit_for_bit():
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(32, 40, 3)).astype(np.float16)
    normal[:5] = 0  # no human: stays zero
    n32 = normal.astype(np.float32)
    norm = np.linalg.norm(n32, axis=-1, keepdims=True)
    want = np.where(norm > 0, n32 / np.maximum(norm, 1e-12), 0.0).astype(np.float32)
    got = _unit(normal)
    assert got.dtype == np.float32 and np.array_equal(got, want) and not got[:5].any()


def test_meta_is_parsed_once_per_file_version_and_callers_get_their_own_copy(tmp_path):
    write_meta(tmp_path, {"frames": 3, "K": [[1.0]]})
    first = read_meta(tmp_path)
    first["K"][0][0] = 99.0  # a caller changing its copy changes nothing for the next
    assert read_meta(tmp_path) == {"frames": 3, "K": [[1.0]]}
    stat = (tmp_path / "meta.json").stat()
    write_meta(tmp_path, {"frames": 4, "K": [[2.0]]})
    os.utime(tmp_path / "meta.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert read_meta(tmp_path)["frames"] == 4, "a rewritten meta.json is read again"


def _frame(h, w):
    rng = np.random.default_rng(1)
    return {"rgb": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            "depth": rng.random((h, w), dtype=np.float32),
            "mask": rng.random((h, w), dtype=np.float32),
            "normal": rng.random((h, w, 3), dtype=np.float32),
            "flow_fwd": rng.random((h, w, 2), dtype=np.float32),
            "K": np.array([[100, 0, w / 2 - 0.5], [0, 100, h / 2 - 0.5], [0, 0, 1]], np.float32),
            "extrinsics": np.eye(4, dtype=np.float32)}


def test_a_frame_already_at_the_size_is_what_the_resize_would_give():
    frame = _frame(48, 48)
    got = resize_square(frame, 48)
    for key, value in frame.items():
        if key in ("K", "extrinsics"):
            continue
        interp = cv2.INTER_NEAREST if key in ("depth", "normal", "flow_fwd") else cv2.INTER_LINEAR
        want = cv2.resize(value, (48, 48), interpolation=interp).reshape(value.shape)
        assert np.array_equal(got[key], want), key
    np.testing.assert_array_equal(got["K"], frame["K"])
    assert got["K"].dtype == np.float32
    other = resize_square(_frame(48, 64), 48)  # the general path still crops
    assert other["rgb"].shape == (48, 48, 3) and other["K"][0, 2] == 31.5 - 8


def test_workers_needed_rounds_up_and_refuses_nonsense():
    assert workers_needed(740, 30) == 25 and workers_needed(10, 30) == 1
    with pytest.raises(ValueError, match="expected a positive images/s per worker, got 0"):
        workers_needed(740, 0)
