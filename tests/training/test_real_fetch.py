"""hcdp eval-real --fetch on stand-in package folders and segmenters: what it copies and writes."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from hcdp_training.real import fetch
import numpy as np


def _package(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True)
    for name in names:
        (root / name).write_bytes(name.encode())
    return root


def test_fetch_copies_every_medium_and_records_origin_and_licence(tmp_path, monkeypatch):
    doc = tmp_path / "usr/share/doc/opencv-doc"
    _package(doc / "examples/data", [m.name for m in fetch.OPENCV_MEDIA])
    (doc / "copyright").write_text("Files: *\nLicense: Apache-2.0 AND BSD-3-Clause\n")
    monkeypatch.setattr(fetch, "OPENCV_DOC", doc)
    done = type("Done", (), {"stdout": "9.9"})  # what dpkg-query prints: the version
    monkeypatch.setattr(fetch.subprocess, "run", lambda *a, **k: done)
    skimage = _package(tmp_path / "skimage/data", [m.name for m in fetch.SKIMAGE_MEDIA])
    monkeypatch.setattr(fetch, "_skimage_data", lambda: (skimage, "0.0"))
    mahotas = _package(tmp_path / "mahotas/data", [m.name for m in fetch.MAHOTAS_MEDIA])
    monkeypatch.setattr(fetch, "_mahotas_data", lambda scratch: (mahotas, "1.0 (installed)"))
    monkeypatch.setattr(fetch.importlib.util, "find_spec", lambda name: None)  # no mediapipe
    out = tmp_path / "real"
    assert fetch.fetch(out) == 0
    assert (out / "videos/vtest.avi").read_bytes() == b"vtest.avi"
    assert sorted(p.name for p in (out / "photos").iterdir()) == sorted(
        m.name for m in fetch.OPENCV_MEDIA + fetch.SKIMAGE_MEDIA + fetch.MAHOTAS_MEDIA
        if m.folder == "photos")
    assert "Apache-2.0" in (out / "licenses/opencv-doc.copyright").read_text()
    sources = (out / "SOURCES.md").read_text()
    assert "| videos/vtest.avi |" in sources and "Debian opencv-doc 9.9 (installed)" in sources
    assert "CC0 by the photographer, Lav Varshney" in sources
    assert "PyPI mahotas 1.0 (installed), mahotas/demos/data/luispedro.jpg" in sources
    assert "photos: none: no Python with mediapipe was given" in sources


def test_fetch_says_what_it_expected_when_a_medium_is_missing(tmp_path, monkeypatch, capsys):
    doc = tmp_path / "opencv-doc"
    _package(doc / "examples/data", ["messi5.jpg"])
    (doc / "copyright").write_text("Files: *\n")
    monkeypatch.setattr(fetch, "OPENCV_DOC", doc)
    monkeypatch.setattr(fetch.subprocess, "run", lambda *a, **k: type("Done", (), {"stdout": ""}))
    monkeypatch.setattr(fetch, "_skimage_data", lambda: None)
    monkeypatch.setattr(fetch, "_mahotas_data", lambda scratch: (tmp_path, "1.0"))
    assert fetch.fetch(tmp_path / "real") == 2
    assert f"expected {doc / 'examples/data/vtest.avi'} in the package" in capsys.readouterr().err


def _stand_in_packages(tmp_path: Path, monkeypatch) -> None:
    """Every medium in stand-in package folders, as in the first test."""
    doc = tmp_path / "opencv-doc"
    _package(doc / "examples/data", [m.name for m in fetch.OPENCV_MEDIA])
    (doc / "copyright").write_text("Files: *\n")
    monkeypatch.setattr(fetch, "OPENCV_DOC", doc)
    skimage = _package(tmp_path / "skimage/data", [m.name for m in fetch.SKIMAGE_MEDIA])
    monkeypatch.setattr(fetch, "_skimage_data", lambda: (skimage, "0.0"))
    mahotas = _package(tmp_path / "mahotas/data", [m.name for m in fetch.MAHOTAS_MEDIA])
    monkeypatch.setattr(fetch, "_mahotas_data", lambda scratch: (mahotas, "1.0 (installed)"))


def test_fetch_writes_the_pose_reference_and_the_selfie_comparison(tmp_path, monkeypatch):
    _stand_in_packages(tmp_path, monkeypatch)
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        reference = cmd[cmd.index("--reference") + 1] if "--reference" in cmd else None
        lines = {"pose": "messi5.jpg: person share 0.142 (Pose found 1 of at most 4 people)",
                 "selfie": "messi5.jpg: person share 0.217 (selfie segmentation)"}
        return type("Done", (), {"returncode": 0, "stderr": "",
                                 "stdout": f"{lines.get(reference, '')}\nmediapipe 0.10.14\n"})

    monkeypatch.setattr(fetch.subprocess, "run", run)
    assert fetch.fetch(tmp_path / "real", segmenter_python="/opt/mp/bin/python") == 0
    segmenter = [c for c in calls if c[0] == "/opt/mp/bin/python"]
    script = str(Path(fetch.__file__).with_name("segment_photos.py"))
    assert [c[1:4] for c in segmenter] == [[script, "--reference", "pose"],
                                           [script, "--reference", "selfie"]]
    photos = sorted(segmenter[0][4:])
    assert photos == sorted(str(tmp_path / "real/photos" / m.name)
                            for m in fetch.OPENCV_MEDIA + fetch.SKIMAGE_MEDIA
                            + fetch.MAHOTAS_MEDIA if m.folder == "photos")
    sources = (tmp_path / "real/SOURCES.md").read_text()
    assert ("photos: `<stem>.ref.png`, the reference: MediaPipe Pose segmentation (BlazePose GHUM"
            in sources)
    assert "mediapipe 0.10.14" in sources and "independent of the model's human prior" in sources
    assert ("for comparison only (never the reference): `<stem>.selfie.ref.png`, MediaPipe selfie "
            "segmentation" in sources)
    assert "the same network as the model's human prior" in sources
    assert "  - messi5.jpg: person share 0.142 (Pose found 1 of at most 4 people)" in sources
    assert "  - messi5.jpg: person share 0.217 (selfie segmentation)" in sources


def test_fetch_says_which_segmenter_failed(tmp_path, monkeypatch, capsys):
    _stand_in_packages(tmp_path, monkeypatch)

    def run(cmd, **kwargs):
        failed = "--reference" in cmd and cmd[cmd.index("--reference") + 1] == "selfie"
        return type("Done", (), {"returncode": int(failed), "stdout": "mediapipe 0.10.14\n",
                                 "stderr": "No module named 'mediapipe'" if failed else ""})

    monkeypatch.setattr(fetch.subprocess, "run", run)
    assert fetch.fetch(tmp_path / "real", segmenter_python="py") == 2
    err = capsys.readouterr().err
    assert "segment_photos.py --reference selfie with py failed: No module named" in err
    assert not (tmp_path / "real/SOURCES.md").exists()


def _segment_photos():
    """training/real/segment_photos.py loaded from its file (no mediapipe needed for its masks)."""
    path = Path(fetch.__file__).with_name("segment_photos.py")
    spec = importlib.util.spec_from_file_location("segment_photos", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _OnePersonAtATime:
    """A stand-in for Pose: the first bright square still visible, or None when none is."""

    def __init__(self, squares: list[tuple[int, int, int]]):
        self.squares = squares   # (row, column, side)
        self.seen: list[np.ndarray] = []

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        self.seen.append(rgb.copy())
        for r, c, side in self.squares:
            if rgb[r:r + side, c:c + side].min() == 255:
                mask = np.zeros(rgb.shape[:2], np.float32)
                mask[r:r + side, c:c + side] = 0.9
                return mask
        return None


def test_pose_people_greys_out_each_person_and_takes_the_maximum():
    segment_photos = _segment_photos()
    rgb = np.zeros((100, 200, 3), np.uint8)
    squares = [(10, 10, 30), (50, 120, 40)]
    for r, c, side in squares:
        rgb[r:r + side, c:c + side] = 255
    pose = _OnePersonAtATime(squares)
    mask, people = segment_photos.pose_people(pose, rgb)
    assert people == 2 and len(pose.seen) == 3  # the third run finds no one
    expected = np.zeros((100, 200), np.float32)
    for r, c, side in squares:
        expected[r:r + side, c:c + side] = 0.9
    np.testing.assert_array_equal(mask, expected)
    assert (pose.seen[1][10:40, 10:40] < 255).all()   # the first person greyed out
    assert (pose.seen[1][50:90, 120:160] == 255).all()  # the second one left as it was


def test_pose_people_stops_at_a_person_already_found_and_gives_zeros_for_no_one():
    segment_photos = _segment_photos()
    rgb = np.full((60, 60, 3), 255, np.uint8)
    again = np.zeros((60, 60), np.float32)
    again[20:40, 20:40] = 1.0
    runs = []

    def same_person(image):  # the grey does not hide them: Pose finds the same person again
        runs.append(image)
        return again

    mask, people = segment_photos.pose_people(same_person, rgb)
    assert people == 1 and len(runs) == 2
    np.testing.assert_array_equal(mask, again)
    mask, people = segment_photos.pose_people(lambda image: None, rgb)
    assert people == 0 and mask.shape == (60, 60) and not mask.any()
