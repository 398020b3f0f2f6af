"""hcdp's on-disk format for synthetic sequences (documented in docs/data.md).

One folder per sequence:
  meta.json            sizes, fps, flow strides, K [T,3,3], extrinsics [T,4,4] (world-to-camera),
                       and every generator control of the sequence
  rgb/000000.png       uint8 RGB
  mask/000000.png      uint8 soft mask (value / 255)
  gt/000000.npz        depth float32 [H,W] metres (NaN: no human); normal float16 [H,W,3];
                       canonical float16 [H,W,3]; flow_fwd_<s>, flow_bwd_<s> float16 [H,W,2] for
                       strides s = 1..S (zeros where frame t+s / t-s is outside the sequence);
                       ground_depth float32 [H,W] metres (sequences with a ground plane only;
                       NaN off the ground)
The .npz files are written with fixed zip timestamps so equal inputs give byte-identical files.
"""
from __future__ import annotations

import copy
import functools
import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np

META = "meta.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
COMPRESSLEVEL = 1


def frame_name(index: int) -> str:
    return f"{index:06d}"


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A standard .npz (readable by np.load) with fixed timestamps and key order: deterministic
    bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=COMPRESSLEVEL) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=COMPRESSLEVEL)


def write_meta(sequence_dir: Path, meta: dict) -> None:
    sequence_dir.mkdir(parents=True, exist_ok=True)
    (sequence_dir / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def read_meta(sequence_dir: str | Path) -> dict:
    """The sequence's meta.json (a fresh copy: callers may change it). Parsed once per file version
    (path, size, mtime) per process: `read_frame` needs it for every frame of a long sequence."""
    return copy.deepcopy(_shared_meta(sequence_dir))


def _shared_meta(sequence_dir: str | Path) -> dict:
    """The cached parse itself: read only, never change it."""
    path = Path(sequence_dir) / META
    if not path.is_file():
        raise FileNotFoundError(f"expected a sequence folder with {META}, found none at {path}")
    stat = path.stat()
    return _parsed_meta(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _parsed_meta(path: str, size: int, mtime_ns: int) -> dict:
    return json.loads(Path(path).read_text())


def write_frame(sequence_dir: Path, index: int, rgb: np.ndarray, mask: np.ndarray,
                depth: np.ndarray,
                normal: np.ndarray, canonical: np.ndarray, flow_fwd: list[np.ndarray],
                flow_bwd: list[np.ndarray], ground_depth: np.ndarray | None = None) -> None:
    """Write frame `index`; `flow_fwd[s-1]` / `flow_bwd[s-1]` are the flows for stride s.

    `ground_depth` (scenes with a ground plane only) is stored beside the other targets.
    """
    name = frame_name(index)
    for sub in ("rgb", "mask", "gt"):
        (sequence_dir / sub).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(sequence_dir / "rgb" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(sequence_dir / "mask" / f"{name}.png"),
                np.round(np.clip(mask, 0, 1) * 255).astype(np.uint8))
    arrays = {"depth": depth.astype(np.float32), "normal": normal.astype(np.float16),
              "canonical": canonical.astype(np.float16)}
    for s, (fwd, bwd) in enumerate(zip(flow_fwd, flow_bwd), start=1):
        arrays[f"flow_fwd_{s}"] = fwd.astype(np.float16)
        arrays[f"flow_bwd_{s}"] = bwd.astype(np.float16)
    if ground_depth is not None:
        arrays["ground_depth"] = ground_depth.astype(np.float32)
    write_npz(sequence_dir / "gt" / f"{name}.npz", arrays)


def _unit(normal: np.ndarray) -> np.ndarray:
    """Renormalise float16-stored normals; zero vectors (no human) stay zero."""
    normal = normal.astype(np.float32, copy=False)
    norm = np.sqrt(np.add.reduce(normal * normal, axis=-1, keepdims=True))  # as np.linalg.norm
    out = np.zeros(normal.shape, np.float32)
    return np.divide(normal, np.maximum(norm, 1e-12), out=out, where=norm > 0)


def list_sequences(root: str | Path) -> list[Path]:
    """Sequence folders (those holding meta.json) under `root`, sorted; `root` itself if it is
    one."""
    root = Path(root)
    if (root / META).is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"expected a folder of sequences, found nothing at {root}")
    return sorted(p.parent for p in root.glob(f"*/{META}"))


def read_frame(sequence_dir: str | Path, index: int, stride: int = 1) -> dict:
    """One frame's ground truth as numpy arrays (the contract other tools build on).

    Keys: rgb [H,W,3] uint8; depth [H,W] float32 metres, NaN where there is no human; normal
    [H,W,3] float32 unit, camera optical frame, facing the camera (zeros off the human); mask [H,W]
    float32 in [0,1]; flow_fwd / flow_bwd [H,W,2] float32 pixels (dx, dy) from this frame to frame
    index+stride / index-stride (zeros when that frame is outside the sequence: the last frames'
    flow_fwd and the first frames' flow_bwd); canonical [H,W,3] float32 in [-1,1] (template
    body-surface position; x is the body's left-right axis, so a mirror negates it; zeros off the
    human); ground_depth [H,W] float32 metres, the planar depth of the ground people stand on
    where it is seen, NaN elsewhere and in sequences without a ground (`hcdp synth
    --ground-share`); K [3,3] float32; extrinsics [4,4] float32 world-to-camera.
    """
    sequence_dir = Path(sequence_dir)
    meta = _shared_meta(sequence_dir)
    frames, strides = int(meta["frames"]), int(meta["flow_strides"])
    if not 0 <= index < frames:
        raise IndexError(f"expected a frame index in [0, {frames}) for {sequence_dir}, got "
                         f"{index}")
    if not 1 <= stride <= strides:
        raise ValueError(f"expected a flow stride in [1, {strides}] (rendered for "
                         f"{sequence_dir}), got {stride}")
    name = frame_name(index)
    bgr = cv2.imread(str(sequence_dir / "rgb" / f"{name}.png"), cv2.IMREAD_COLOR)
    mask = cv2.imread(str(sequence_dir / "mask" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    if bgr is None or mask is None:
        raise FileNotFoundError(f"expected rgb/{name}.png and mask/{name}.png in {sequence_dir}")
    with np.load(sequence_dir / "gt" / f"{name}.npz") as gt:
        return {
            "rgb": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
            "depth": gt["depth"].astype(np.float32),
            "normal": _unit(gt["normal"].astype(np.float32)),
            "mask": mask.astype(np.float32) / 255.0,
            "flow_fwd": gt[f"flow_fwd_{stride}"].astype(np.float32),
            "flow_bwd": gt[f"flow_bwd_{stride}"].astype(np.float32),
            "canonical": gt["canonical"].astype(np.float32),
            "ground_depth": (gt["ground_depth"].astype(np.float32) if "ground_depth" in gt.files
                             else np.full(mask.shape, np.nan, np.float32)),
            "K": np.asarray(meta["K"][index], np.float32),
            "extrinsics": np.asarray(meta["extrinsics"][index], np.float32),
        }
