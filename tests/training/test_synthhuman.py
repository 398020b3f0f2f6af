"""The DAViD SynthHuman reader on a tiny fixture written in the release's layout by the test."""
from pathlib import Path

import cv2
from hcdp_training.augment import crop_intrinsics, CropBox, hflip
from hcdp_training.data.synthhuman import (
    DAVID_NORMALS, fit_normal_convention, NormalConvention, read_synthhuman_frame,
    synthhuman_view, SynthHumanFrames,
)
import numpy as np
import OpenEXR
import pytest

H, W = 32, 40  # not square, so a transposed axis shows
K = np.array([[50.0, 0.0, 19.5], [0.0, 52.0, 15.5], [0.0, 0.0, 1.0]])
CENTRE_CM, RADIUS_CM = np.array([5.0, -3.0, 250.0]), 60.0
HOLE = (16, 20)  # a pixel on the sphere whose alpha is 0


def sphere() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Planar depth (cm), optical-frame unit normals and hit mask of a sphere seen through K."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # z = 1
    b = rays @ CENTRE_CM
    disc = b**2 - (rays**2).sum(-1) * (CENTRE_CM @ CENTRE_CM - RADIUS_CM**2)
    hit = disc > 0
    t = np.where(hit, (b - np.sqrt(np.maximum(disc, 0))) / (rays**2).sum(-1), np.nan)
    normal = (rays * t[..., None] - CENTRE_CM) / RADIUS_CM
    return t, np.where(hit[..., None], normal, 0.0), hit


def write_exr(path: Path, channels: dict) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))


def write_sample(folder: Path, sid: str, stored_normals=lambda n: n * [1.0, -1.0, -1.0]) -> dict:
    """Write one sample as the release stores it.

    Depth in cm as float16 'Y' with 65504 background, normals as 'RGB' (by default OpenGL camera
    axes: x right, y up, z towards the viewer).
    """
    folder.mkdir(parents=True, exist_ok=True)
    depth_cm, normal, hit = sphere()
    alpha = np.where(hit, 255, 0).astype(np.uint8)
    alpha[HOLE] = 0
    alpha[np.argwhere(hit)[0][0], np.argwhere(hit)[0][1]] = 128  # one soft edge pixel
    rng = np.random.default_rng(int(sid))
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / f"rgb_{sid}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / f"alpha_{sid}.png"), alpha)
    write_exr(folder / f"depth_{sid}.exr",
              {"Y": np.where(hit, depth_cm, 65504.0).astype(np.float16)})
    write_exr(folder / f"normal_{sid}.exr", {"RGB": stored_normals(normal).astype(np.float32)})
    np.savetxt(folder / f"cam_{sid}.txt", K)
    return {"rgb": rgb, "alpha": alpha, "depth_cm": depth_cm, "normal": normal, "hit": hit}


def test_frame_round_trip_converts_cm_to_metres_and_empties_the_background(tmp_path):
    truth = write_sample(tmp_path, "0000007")
    frame = read_synthhuman_frame(tmp_path, 7)
    assert sorted(frame) == ["K", "depth", "mask", "normal", "rgb"]  # no flow, no canonical
    human = truth["alpha"] > 0
    assert frame["depth"].dtype == np.float32 and frame["depth"].shape == (H, W)
    np.testing.assert_allclose(frame["depth"][human], truth["depth_cm"][human] / 100.0, rtol=1e-3)
    assert np.isnan(frame["depth"][~human]).all()
    assert np.isnan(frame["depth"][HOLE])  # on the sphere but alpha 0
    np.testing.assert_allclose(frame["mask"], truth["alpha"] / 255.0)
    assert frame["mask"].dtype == np.float32
    np.testing.assert_array_equal(frame["rgb"], truth["rgb"])
    np.testing.assert_allclose(frame["K"], K)


def test_normals_arrive_in_the_optical_frame_facing_the_camera(tmp_path):
    truth = write_sample(tmp_path, "0000000")
    frame = read_synthhuman_frame(tmp_path, "0000000")
    human = truth["alpha"] > 0
    np.testing.assert_allclose(frame["normal"][human], truth["normal"][human], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(frame["normal"][human], axis=-1), 1.0, atol=1e-5)
    assert (frame["normal"][human][:, 2] < 0).all()
    assert not frame["normal"][~human].any()
    # The sphere's left half faces left (-x) and its top faces up (-y in the optical frame).
    left = human & (np.arange(W) < 8)[None, :]
    top = human & (np.arange(H) < 8)[:, None]
    assert (frame["normal"][left][:, 0] < 0).all() and (frame["normal"][top][:, 1] < 0).all()


def test_fit_normal_convention_confirms_the_default_on_default_data(tmp_path):
    write_sample(tmp_path, "0000000")
    best, best_deg, default_deg = fit_normal_convention(tmp_path, 0)
    assert best == DAVID_NORMALS
    assert best_deg < 3.0 and default_deg == pytest.approx(best_deg)


def test_fit_normal_convention_detects_data_stored_another_way(tmp_path):
    # E.g. a writer that stored optical (x, y, z) in B, G, R order (what cv2.imwrite does).
    write_sample(tmp_path, "0000000", stored_normals=lambda n: n[..., ::-1])
    best, best_deg, default_deg = fit_normal_convention(tmp_path, 0)
    assert best == NormalConvention(axes=(2, 1, 0), signs=(1.0, 1.0, 1.0))
    assert best_deg < 3.0 and default_deg > 30.0
    frame = read_synthhuman_frame(tmp_path, 0, normal_convention=best)
    _, normal, _ = sphere()
    human = frame["mask"] > 0
    np.testing.assert_allclose(frame["normal"][human], normal[human], atol=1e-5)


def test_dataset_finds_samples_in_chunk_folders_and_returns_tensors(tmp_path):
    write_sample(tmp_path / "SynthHuman_0000", "0000000")
    write_sample(tmp_path / "SynthHuman_0001", "0005000")
    data = SynthHumanFrames(tmp_path)
    assert len(data) == 2
    item = data[1]
    assert {k: tuple(v.shape) for k, v in item.items()} == {
        "image": (3, H, W), "depth": (1, H, W), "normal": (3, H, W), "mask": (1, H, W),
        "K": (3, 3)}
    assert all(v.dtype.is_floating_point and v.isfinite().all() for v in item.values())
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert (item["depth"][item["mask"] == 0] == 0).all()
    assert (item["depth"][item["mask"] > 0] > 1.5).all()  # metres: the sphere is ~2 m away


def test_dataset_size_crops_the_centre_square_and_updates_k(tmp_path):
    write_sample(tmp_path, "0000000")
    item = SynthHumanFrames(tmp_path, size=16)[0]
    assert tuple(item["image"].shape) == (3, 16, 16)
    expected = crop_intrinsics(K.astype(np.float32), CropBox(4, 0, 32, 32, 16, 16))
    np.testing.assert_allclose(item["K"].numpy(), expected, rtol=1e-6)


def test_dataset_applies_augment_to_the_numpy_frame(tmp_path):
    write_sample(tmp_path, "0000000")
    plain = SynthHumanFrames(tmp_path)[0]
    flipped = SynthHumanFrames(tmp_path, augment=hflip)[0]
    np.testing.assert_array_equal(flipped["image"].numpy(), plain["image"].numpy()[:, :, ::-1])
    np.testing.assert_allclose(flipped["normal"][0].numpy(), -plain["normal"][0].numpy()[:, ::-1])


@pytest.mark.parametrize("index,view", [(0, "face"), (98039, "face"), (98040, "full_body"),
                                        (198015, "full_body"), (198016, "upper_body"),
                                        (298007, "upper_body")])
def test_view_follows_the_release_ordering(index, view):
    assert synthhuman_view(index) == view


def test_missing_files_and_bad_indices_say_what_was_expected(tmp_path):
    write_sample(tmp_path, "0000000")
    (tmp_path / "cam_0000000.txt").unlink()
    with pytest.raises(FileNotFoundError, match="cam_0000000.txt"):
        read_synthhuman_frame(tmp_path, 0)
    with pytest.raises(FileNotFoundError, match="rgb_NNNNNNN.png"):
        SynthHumanFrames(tmp_path / "empty")
    with pytest.raises(ValueError, match="298008"):
        synthhuman_view(298008)
