"""Procedural appearance: skin tones, outfits (clothing as textures), prints that are not geometry.

Albedo is computed in the fragment shader from the canonical (template) surface position, so
patterns stick to the body through any motion. A material is 4 vec4 rows:
  a = (base RGB, pattern kind), b = (second RGB, pattern frequency in cycles/metre),
  c = (stripe angle, fabric texture layer, decal texture layer, decal kind),
  d = (decal centre x, centre z, half size in template metres, side: -1 front, +1 back, 0 both).
Pattern kinds: 0 solid, 1 stripes, 2 checker, 3 dots, 4 fabric texture. Decal kinds: 0 none,
1 logo (alpha-blended image), 2 tattoo (ink from a text image). Colours are linear RGB.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SLOTS = ("skin", "top", "bottom", "shoes", "hair", "outer", "eyes")
PATTERNS = ("solid", "stripes", "checker", "dots", "fabric")
TEXTURE_SIZE = 256
# Texture array layers: 0 logo (RGBA), 1 text (tattoo ink), 2.. greyscale fabrics.
TEXTURE_LAYERS = ("logo", "text", "brick", "gravel", "grass", "noise")
FABRIC_LAYERS = (2, 3, 4, 5)
# sRGB skin albedos from very light to very dark (roughly Fitzpatrick I-VI plus extremes).
SKIN_SRGB = np.array([[255, 224, 196], [241, 194, 167], [224, 172, 138], [198, 134, 103],
                      [161, 102, 68], [120, 74, 50], [85, 53, 38], [60, 40, 30]], np.float64) / 255
HAIR_SRGB = np.array([[20, 17, 15], [59, 38, 26], [106, 78, 56], [170, 136, 90], [222, 190, 140],
                      [140, 60, 30], [180, 180, 180]], np.float64) / 255


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.power(np.clip(c, 0, 1), 2.2)


def skin_albedo(tone: float) -> np.ndarray:
    """Linear RGB skin albedo for a tone in [0, 1] (0 lightest, 1 darkest).

    It is interpolated in the palette.
    """
    x = np.clip(tone, 0, 1) * (len(SKIN_SRGB) - 1)
    i = min(int(x), len(SKIN_SRGB) - 2)
    return srgb_to_linear(SKIN_SRGB[i] * (1 - (x - i)) + SKIN_SRGB[i + 1] * (x - i))


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """Sample a clothing colour: random hue, mostly muted saturation, any value."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255) * rng.uniform(0.3, 1),
                      rng.uniform(30, 250)]]])
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0] / 255.0
    return srgb_to_linear(rgb)


@dataclass
class Decal:
    kind: int  # 1 logo, 2 tattoo
    centre: tuple[float, float]
    half: float
    side: float


def material(base: np.ndarray, pattern: str = "solid", second: np.ndarray | None = None,
             frequency: float = 0.0,
             angle: float = 0.0, fabric_layer: int = 2, decal: Decal | None = None) -> np.ndarray:
    """One material row block [4,4] in the layout above."""
    second = base if second is None else second
    m = np.zeros((4, 4), np.float32)
    m[0] = (*base, PATTERNS.index(pattern))
    m[1] = (*second, frequency)
    m[2] = (angle, fabric_layer, 0 if decal is None or decal.kind == 1 else 1,
            0 if decal is None else decal.kind)
    if decal is not None:
        m[3] = (*decal.centre, decal.half, decal.side)
    return m


PATTERN_PROBABILITIES = (0.35, 0.2, 0.1, 0.1, 0.25)


def random_pattern(rng: np.random.Generator) -> str:
    return str(rng.choice(PATTERNS, p=PATTERN_PROBABILITIES))


def random_clothing(rng: np.random.Generator, pattern: str,
                    decal: Decal | None = None) -> np.ndarray:
    """Sample a clothing material with `pattern`, random colours, frequency, angle and fabric."""
    return material(random_colour(rng), pattern, random_colour(rng), rng.uniform(6, 30),
                    rng.uniform(-0.6, 0.6),
                    int(rng.choice(FABRIC_LAYERS)), decal)


def _noise_texture(size: int) -> np.ndarray:
    """Deterministic multi-octave value noise in [0, 255] (a knit/fleece-like fabric)."""
    rng = np.random.default_rng(1234)
    out = np.zeros((size, size), np.float64)
    for octave in range(1, 6):
        cells = 2 ** (octave + 1)
        grid = rng.random((cells, cells))
        out += cv2.resize(np.tile(grid, (2, 2)), (2 * size, 2 * size),
                          interpolation=cv2.INTER_CUBIC)[
            :size, :size] / octave
    out = (out - out.min()) / (out.max() - out.min())
    return (out * 255).astype(np.uint8)


def texture_layers() -> np.ndarray:
    """Return the texture array [L,S,S,4] uint8.

    The layers are the scikit-image logo and text, and fabrics from its photos.
    """
    import skimage.data

    def square(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        s = min(h, w)
        return cv2.resize(img[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2],
                          (TEXTURE_SIZE, TEXTURE_SIZE),
                          interpolation=cv2.INTER_AREA)

    def grey_rgba(img: np.ndarray) -> np.ndarray:
        g = square(img)
        return np.dstack([g, g, g, np.full_like(g, 255)])

    text = np.full((TEXTURE_SIZE, TEXTURE_SIZE), 255, np.uint8)
    t = skimage.data.text()
    t = cv2.resize(t, (TEXTURE_SIZE, int(TEXTURE_SIZE * t.shape[0] / t.shape[1])),
                   interpolation=cv2.INTER_AREA)
    top = (TEXTURE_SIZE - t.shape[0]) // 2
    text[top:top + t.shape[0]] = np.where(t < 110, 0, 255)
    layers = [square(skimage.data.logo()), grey_rgba(text), grey_rgba(skimage.data.brick()),
              grey_rgba(skimage.data.gravel()), grey_rgba(skimage.data.grass()),
              grey_rgba(_noise_texture(TEXTURE_SIZE))]
    return np.stack(layers).astype(np.uint8)
