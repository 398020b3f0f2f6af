"""People masks for photographs from real-trained networks in the mediapipe 0.10.14 wheel.

Two networks, both Apache-2.0 with their model files inside the wheel, both run offline:

- `pose` (the default) writes the reference `<stem>.ref.png`: the segmentation output of MediaPipe
  Pose (BlazePose GHUM, `pose_detection.tflite` + `pose_landmark_full.tflite`). It is another
  network than the model's frozen human prior, so the reference is independent of it.
- `selfie` writes `<stem>.selfie.ref.png`: MediaPipe selfie segmentation (general model), the very
  network the model's human prior is converted from (hcdp_model/selfie_prior.py). It is for
  comparison only, never the reference; its name ends in `.ref.png` so that `hcdp eval-real` does
  not take it for a photo.

Pose segments one person a run. To cover several, the person found is greyed out (the image's
mean colour over their mask dilated by `DILATION` of the longer side) and Pose runs again, up to
`MAX_PEOPLE` times; the masks are combined by their per-pixel maximum. A photo where Pose finds no
one gets an all-zero mask.

A development tool of the `real-eval` extra, run by `hcdp eval-real --fetch` with whichever Python
has mediapipe: it imports nothing from hcdp, and nothing in hcdp imports it. Masks are person
probabilities, 0-255. Each photo's line says its person share; the last line is the mediapipe
version.

    python segment_photos.py [--reference pose|selfie] IMAGE...
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
from typing import Callable

import cv2
import numpy as np

SUFFIXES = {"pose": ".ref.png", "selfie": ".selfie.ref.png"}
SELFIE_MODEL = 0     # the general 256x256 model (1 is the landscape 144x256 one)
POSE_COMPLEXITY = 1  # pose_landmark_full.tflite
MAX_PEOPLE = 4
DILATION = 0.05      # of the longer side: the margin greyed out around a person already found
MIN_NEW = 0.5        # a later detection must lie this much outside the people already found


def pose_people(segment: Callable[[np.ndarray], np.ndarray | None],
                rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """(person probability [H,W] float32, people found) from up to MAX_PEOPLE runs of `segment`.

    `segment` maps an RGB image to Pose's segmentation mask, or None when it finds no one.
    """
    mask = np.zeros(rgb.shape[:2], np.float32)
    covered = np.zeros(rgb.shape[:2], bool)
    work = rgb.copy()
    fill = rgb.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    radius = max(3, round(DILATION * max(rgb.shape[:2])))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    people = 0
    for _ in range(MAX_PEOPLE):
        found = segment(work)
        if found is None:
            break
        person = found > 0.5
        # nobody new: an empty mask, or mostly a person already found showing past the grey
        if not person.any() or (person & ~covered).sum() < MIN_NEW * person.sum():
            break
        mask = np.maximum(mask, found)
        people += 1
        covered |= cv2.dilate(person.astype(np.uint8), disc) > 0
        work[covered] = fill
    return mask, people


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", choices=tuple(SUFFIXES), default="pose",
                        help="pose: the reference <stem>.ref.png; selfie: <stem>.selfie.ref.png, "
                        "the model prior's network, for comparison")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    args = parser.parse_args(argv)
    # imported here so that pose_people can be tested without mediapipe
    import mediapipe as mp

    if args.reference == "pose":
        network = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=POSE_COMPLEXITY,
                                         enable_segmentation=True, smooth_segmentation=False)
    else:
        network = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=SELFIE_MODEL)
    with network:
        for raw in args.images:
            path = Path(raw)
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                print(f"{path}: OpenCV cannot read this image", file=sys.stderr)
                return 1
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            if args.reference == "pose":
                prob, people = pose_people(lambda im: network.process(im).segmentation_mask, rgb)
                found = (f"Pose found {people} of at most {MAX_PEOPLE} people" if people
                         else "Pose found no one: all-zero mask")
            else:
                prob, found = network.process(rgb).segmentation_mask, "selfie segmentation"
            mask = np.clip(prob * 255.0, 0, 255).round().astype(np.uint8)
            cv2.imwrite(str(path.with_name(path.stem + SUFFIXES[args.reference])), mask)
            print(f"{path.name}: person share {(mask > 127).mean():.3f} ({found})")
    print(f"mediapipe {mp.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
