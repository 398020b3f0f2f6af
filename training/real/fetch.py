"""`hcdp eval-real --fetch DIR`: assemble the real-footage validation set.

The media ship in Debian and PyPI packages, with SOURCES.md naming each file's package, path and
licence.

Third-party media: DIR belongs outside git (e.g. gen/real/, which .gitignore covers). Nothing is
downloaded but the Debian package opencv-doc (`apt-get download`) and the mahotas wheel
(`pip download --no-deps`), each only when it is not installed.
The photos' reference masks (MediaPipe Pose segmentation) and their selfie-segmentation
comparison masks come from `segment_photos.py` run by a Python with mediapipe (the `real-eval`
extra); without one, photos have no reference.
"""
from __future__ import annotations

from dataclasses import dataclass
import importlib.metadata
import importlib.util
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import zipfile

OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
OPENCV_DATA = "examples/data"
OPENCV_LICENCE = ("Apache-2.0 AND BSD-3-Clause: the package's copyright file, `Files: *` (no "
                  "stanza of its own for samples/data; the footage's authors are not named)")


@dataclass(frozen=True)
class Medium:
    name: str         # file name in the package and in DIR
    folder: str       # photos or videos
    shows: str
    licence: str      # for skimage: what the image's own docstring says


OPENCV_MEDIA = (
    Medium("vtest.avi", "videos", "pedestrians on a campus path, static camera, 768x576, 10 fps",
           OPENCV_LICENCE),
    Medium("messi5.jpg", "photos", "a footballer kicking a ball, crowd behind", OPENCV_LICENCE),
    Medium("basketball1.png", "photos", "two people throwing a ball in an office (grey)",
           OPENCV_LICENCE),
)
SKIMAGE_MEDIA = (
    Medium("astronaut.png", "photos", "astronaut Eileen Collins, portrait",
           "public domain (NASA Great Images; skimage.data.astronaut docstring)"),
    Medium("camera.png", "photos", "a man with a camera on a tripod (grey)",
           "CC0 by the photographer, Lav Varshney (skimage.data.camera docstring)"),
)
MAHOTAS_VERSION = "1.4.19"
MAHOTAS_MEDIA = (
    Medium("luispedro.jpg", "photos", "close-up portrait of a man (mahotas' author)",
           "MIT: the package's licence (the wheel states none of its own for the image)"),
)


def _opencv_data(scratch: Path) -> tuple[Path, str]:
    """(opencv-doc's data folder, package version): the installed one, else the .deb unpacked."""
    if (OPENCV_DOC / OPENCV_DATA).is_dir():
        version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "opencv-doc"],
                                 capture_output=True, text=True).stdout.strip()
        return OPENCV_DOC / OPENCV_DATA, f"{version or 'unknown version'} (installed)"
    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=scratch, check=True,
                   capture_output=True)
    deb = next(scratch.glob("opencv-doc_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch / "root")], check=True)
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                             text=True, check=True).stdout.strip()
    data = scratch / "root" / OPENCV_DOC.relative_to("/") / OPENCV_DATA
    return data, f"{version} (apt-get download)"


def _skimage_data() -> tuple[Path, str] | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "data", importlib.metadata.version("scikit-image")


def _mahotas_data(scratch: Path) -> tuple[Path, str]:
    """(mahotas' demo data folder, version): the installed package, else its wheel unpacked."""
    spec = importlib.util.find_spec("mahotas")
    if spec is not None and spec.origin is not None:
        version = importlib.metadata.version("mahotas")
        return Path(spec.origin).parent / "demos" / "data", f"{version} (installed)"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(scratch),
                    f"mahotas=={MAHOTAS_VERSION}"], check=True, capture_output=True)
    wheel = next(scratch.glob("mahotas-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        for medium in MAHOTAS_MEDIA:
            archive.extract(f"mahotas/demos/data/{medium.name}", scratch / "mahotas-wheel")
    return scratch / "mahotas-wheel" / "mahotas" / "demos" / "data", \
        f"{MAHOTAS_VERSION} (pip download)"


def _run_segmenter(python: str, reference: str, photos: list[Path]) -> list[str]:
    """segment_photos.py's lines: one a photo, then the mediapipe version."""
    script = Path(__file__).with_name("segment_photos.py")
    done = subprocess.run([python, str(script), "--reference", reference, *map(str, photos)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"segment_photos.py --reference {reference} with {python} failed: "
                           f"{done.stderr.strip()[-400:]}")
    return done.stdout.strip().splitlines()


def _segment(photos: list[Path], python: str | None) -> str:
    """Run both segmenters over the photos; returns what SOURCES.md says about their masks."""
    if python is None and importlib.util.find_spec("mediapipe") is not None:
        python = sys.executable
    if python is None:
        return ("none: no Python with mediapipe was given (--segmenter-python), so the photos are "
                "scored on the depth ramp and the correlation only")
    pose = _run_segmenter(python, "pose", photos)
    selfie = _run_segmenter(python, "selfie", photos)
    return "\n".join([
        f"`<stem>.ref.png`, the reference: MediaPipe Pose segmentation (BlazePose GHUM, "
        f"pose_detection.tflite + pose_landmark_full.tflite), {pose[-1]}, Apache-2.0, model files "
        "shipped in the wheel, run offline by training/real/segment_photos.py; several people by "
        "greying out each one found and running again. A network independent of the model's "
        "human prior; a development reference, never used at run time",
        *(f"  - {line}" for line in pose[:-1]),
        f"- photos, for comparison only (never the reference): `<stem>.selfie.ref.png`, MediaPipe "
        f"selfie segmentation (general model), {selfie[-1]}: the same network as the model's "
        "human prior (hcdp_model/selfie_prior.py), so it is not independent of the model",
        *(f"  - {line}" for line in selfie[:-1])])


def fetch(out: Path, segmenter_python: str | None = None) -> int:
    out = Path(out)
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            opencv_dir, opencv_version = _opencv_data(Path(tmp))
        except (subprocess.CalledProcessError, FileNotFoundError, StopIteration) as err:
            print(f"hcdp eval-real --fetch: cannot get Debian's opencv-doc ({err}); expected it "
                  f"installed at {OPENCV_DOC} or apt-get download to work", file=sys.stderr)
            return 2
        sources = [(m, opencv_dir / m.name, f"Debian opencv-doc {opencv_version}, "
                    f"{OPENCV_DOC / OPENCV_DATA / m.name}") for m in OPENCV_MEDIA]
        skimage = _skimage_data()
        if skimage is None:
            print("hcdp eval-real --fetch: scikit-image is not installed (the training extra); "
                  "its photos are left out", file=sys.stderr)
        else:
            sources += [(m, skimage[0] / m.name, f"PyPI scikit-image {skimage[1]}, "
                         f"skimage/data/{m.name}") for m in SKIMAGE_MEDIA]
        try:
            mahotas_dir, mahotas_version = _mahotas_data(Path(tmp))
            sources += [(m, mahotas_dir / m.name, f"PyPI mahotas {mahotas_version}, "
                         f"mahotas/demos/data/{m.name}") for m in MAHOTAS_MEDIA]
        except (subprocess.CalledProcessError, StopIteration, KeyError) as err:
            print(f"hcdp eval-real --fetch: mahotas' demo photo left out ({err})", file=sys.stderr)
        (out / "licenses").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(opencv_dir.parent.parent / "copyright",
                        out / "licenses" / "opencv-doc.copyright")
        photos = []
        for medium, src, origin in sources:
            if not src.is_file():
                print(f"hcdp eval-real --fetch: expected {src} in the package, found nothing",
                      file=sys.stderr)
                return 2
            dest = out / medium.folder / medium.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            if medium.folder == "photos":
                photos.append(dest)
            rows.append(f"| {medium.folder}/{medium.name} | {medium.shows} | {origin} | "
                        f"{medium.licence} |")
    try:
        photo_reference = _segment(photos, segmenter_python)
    except RuntimeError as err:
        print(f"hcdp eval-real --fetch: {err}", file=sys.stderr)
        return 2
    text = "\n".join([
        "# Real-footage validation set (third-party media: never commit, never train on it)", "",
        "Assembled by `hcdp eval-real --fetch` from installed packages.", "",
        "| file | shows | origin | licence |", "|---|---|---|---|", *rows, "",
        "References (no hand labels):", "",
        "- videos: background subtraction computed by `hcdp eval-real` (static camera assumed)",
        f"- photos: {photo_reference}", "",
        "licenses/opencv-doc.copyright is the Debian package's copyright file.", ""])
    (out / "SOURCES.md").write_text(text)
    print(text)
    return 0
