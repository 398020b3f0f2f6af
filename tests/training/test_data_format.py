"""The on-disk format.

Lossless-enough round trips, deterministic bytes, the read_frame contract.
"""
import time

from hcdp_training.data import list_sequences, read_frame
from hcdp_training.data.format import write_frame, write_meta, write_npz
import numpy as np
import pytest

H, W = 12, 16


def write_sequence(path, frames: int = 3, strides: int = 2, seed: int = 0) -> list[dict]:
    """Write a tiny sequence with known arrays; return what was written per frame."""
    rng = np.random.default_rng(seed)
    written = []
    for t in range(frames):
        depth = rng.uniform(1, 4, (H, W)).astype(np.float32)
        depth[:, :3] = np.nan
        normal = rng.normal(size=(H, W, 3))
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        frame = {"rgb": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                 "mask": rng.uniform(0, 1, (H, W)),
                 "depth": depth, "normal": normal.astype(np.float32),
                 "canonical": rng.uniform(-1, 1, (H, W, 3)).astype(np.float32),
                 "flow_fwd": [rng.normal(0, 5, (H, W, 2)).astype(np.float32)
                              for _ in range(strides)],
                 "flow_bwd": [rng.normal(0, 5, (H, W, 2)).astype(np.float32)
                              for _ in range(strides)]}
        write_frame(path, t, frame["rgb"], frame["mask"], frame["depth"], frame["normal"],
                    frame["canonical"],
                    frame["flow_fwd"], frame["flow_bwd"])
        written.append(frame)
    K = [[[20.0, 0, (W - 1) / 2], [0, 20.0, (H - 1) / 2], [0, 0, 1]]] * frames
    write_meta(path, {"frames": frames, "flow_strides": strides, "width": W, "height": H, "K": K,
                      "extrinsics": [np.eye(4).tolist()] * frames})
    return written


def test_read_frame_returns_the_contract_keys_dtypes_and_the_written_values(tmp_path):
    written = write_sequence(tmp_path / "seq")
    frame = read_frame(tmp_path / "seq", 1, stride=2)
    assert set(frame) == {"rgb", "depth", "normal", "mask", "flow_fwd", "flow_bwd", "canonical",
                          "ground_depth", "K", "extrinsics"}
    # written without a ground: none is read back
    assert frame["ground_depth"].shape == (H, W) and np.isnan(frame["ground_depth"]).all()
    w = written[1]
    assert frame["rgb"].dtype == np.uint8 and np.array_equal(frame["rgb"], w["rgb"])
    assert frame["depth"].dtype == np.float32
    np.testing.assert_array_equal(np.isnan(frame["depth"]), np.isnan(w["depth"]))
    np.testing.assert_allclose(frame["depth"], w["depth"], rtol=0)  # depth is stored as float32
    np.testing.assert_allclose(frame["mask"], w["mask"], atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(frame["normal"], w["normal"], atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(frame["normal"], axis=-1), 1.0, atol=1e-5)
    # float16 at |flow| < 32 px
    np.testing.assert_allclose(frame["flow_fwd"], w["flow_fwd"][1], atol=0.01)
    np.testing.assert_allclose(frame["flow_bwd"], w["flow_bwd"][1], atol=0.01)
    np.testing.assert_allclose(frame["canonical"], w["canonical"], atol=1e-3)
    assert frame["K"].shape == (3, 3) and frame["K"][0, 0] == 20.0


def test_a_ground_depth_is_stored_beside_the_frame_and_read_back(tmp_path):
    rng = np.random.default_rng(1)
    ground = np.where(rng.random((H, W)) < 0.5, rng.uniform(1, 30, (H, W)), np.nan)
    write_frame(tmp_path / "seq", 0, np.zeros((H, W, 3), np.uint8), np.zeros((H, W)),
                np.full((H, W), np.nan), np.zeros((H, W, 3)), np.zeros((H, W, 3)),
                [np.zeros((H, W, 2))], [np.zeros((H, W, 2))], ground_depth=ground)
    write_meta(tmp_path / "seq", {"frames": 1, "flow_strides": 1, "width": W, "height": H,
                                  "K": [np.eye(3).tolist()], "extrinsics": [np.eye(4).tolist()]})
    read = read_frame(tmp_path / "seq", 0)["ground_depth"]
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, ground.astype(np.float32))


def test_read_frame_rejects_a_missing_stride_or_index_with_a_clear_message(tmp_path):
    write_sequence(tmp_path / "seq", frames=2, strides=1)
    with pytest.raises(ValueError, match=r"flow stride in \[1, 1\]"):
        read_frame(tmp_path / "seq", 0, stride=2)
    with pytest.raises(IndexError, match=r"frame index in \[0, 2\)"):
        read_frame(tmp_path / "seq", 2)
    with pytest.raises(FileNotFoundError, match="meta.json"):
        read_frame(tmp_path / "nothing", 0)


def test_npz_bytes_do_not_depend_on_the_time_of_writing(tmp_path):
    arrays = {"b": np.arange(10, dtype=np.float16), "a": np.ones((3, 3), np.float32)}
    write_npz(tmp_path / "x.npz", arrays)
    time.sleep(2.1)  # zip timestamps have 2-second resolution
    write_npz(tmp_path / "y.npz", dict(reversed(arrays.items())))
    assert (tmp_path / "x.npz").read_bytes() == (tmp_path / "y.npz").read_bytes()
    with np.load(tmp_path / "x.npz") as z:
        assert np.array_equal(z["b"], arrays["b"])


def test_list_sequences_finds_sequence_folders_sorted_or_the_folder_itself(tmp_path):
    for name in ("seq_1", "seq_0"):
        write_sequence(tmp_path / name, frames=1, strides=1)
    (tmp_path / "other").mkdir()
    assert [p.name for p in list_sequences(tmp_path)] == ["seq_0", "seq_1"]
    assert list_sequences(tmp_path / "seq_1") == [tmp_path / "seq_1"]
