"""Reference people masks for photographs from a real-trained segmenter.

The segmenter is MediaPipe selfie segmentation (Apache-2.0), whose model file ships inside the
mediapipe 0.10.14 wheel; it runs offline.

A development tool of the `real-eval` extra, run by `hcdp eval-real --fetch` with whichever Python
has mediapipe: it imports nothing from hcdp, and nothing in hcdp imports it. For each image IMG it
writes IMG's stem + ".ref.png" beside it: the segmenter's person probability, 0-255.

    python segment_photos.py IMAGE...
"""
from __future__ import annotations

from pathlib import Path
import sys

import cv2
import mediapipe as mp
import numpy as np

MODEL_SELECTION = 0  # the general 256x256 model (1 is the landscape 144x256 one)


def main(paths: list[str]) -> int:
    segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation
    with segmenter(model_selection=MODEL_SELECTION) as seg:
        for raw in paths:
            path = Path(raw)
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                print(f"{path}: OpenCV cannot read this image", file=sys.stderr)
                return 1
            result = seg.process(np.ascontiguousarray(bgr[:, :, ::-1]))
            mask = np.clip(result.segmentation_mask * 255.0, 0, 255).round().astype(np.uint8)
            cv2.imwrite(str(path.with_name(path.stem + ".ref.png")), mask)
            print(f"{path.name}: person share {(mask > 127).mean():.3f}")
    print(f"mediapipe {mp.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
