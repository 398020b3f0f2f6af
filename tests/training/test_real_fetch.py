"""hcdp eval-real --fetch on stand-in package folders: what it copies and what SOURCES.md says."""
from __future__ import annotations

from pathlib import Path

from hcdp_training.real import fetch


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
