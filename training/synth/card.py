"""Dataset card: the histogram of every generator control, as JSON and markdown.

The files are `card.json` and `CARD.md`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict
import json
from pathlib import Path

import numpy as np

BINS = 10


def control_values(records: list[dict]) -> dict[str, list]:
    """Flatten each sequence's logged controls into named lists of numbers or category labels."""
    values: dict[str, list] = {}

    def add(name: str, value) -> None:
        values.setdefault(name, []).append(value)

    for rec in records:
        c = rec["controls"]
        add("people_per_frame", str(len(c["people"])))
        for person, motion, speed in zip(c["people"], c["motions"], c["motion_speed"]):
            for k, v in person["phenotype"].items():
                add(f"person.phenotype.{k}", v)
            add("person.skin_tone", person["skin_tone"])
            add("person.hair_colour", str(person["hair_colour"]))
            for g in person["garments"] or ["none"]:
                add("person.garments", g)
            add("person.sleeve_length_m", str(person["sleeve_length"]))
            add("person.leg_cover", person["leg_cover"])
            add("person.top_pattern", person["top_pattern"])
            add("person.bottom_pattern", person["bottom_pattern"])
            add("person.outer_pattern", person["outer_pattern"])
            for p in person["prints"] or ["none"]:
                add("person.prints", p)
            add("person.motion", motion.split(":")[0])
            add("person.motion_speed", speed)
        cam = c["camera"]
        add("camera.view", cam["view"])
        for k in ("vfov_deg", "azimuth_deg", "elevation_deg", "extent_m", "orbit_deg_s",
                  "shake_deg"):
            add(f"camera.{k}", cam[k])
        add("camera.tracking", str(cam["tracking"]))
        add("camera.border_cut", str(bool(max(abs(x) for x in cam["offset"]) > 0.08)))
        for k, v in c["light"].items():
            add(f"light.{k}", v)
        add("background", c["background"])
        add("mask_coverage", float(np.mean(rec["mask_coverage"])))
    return values


def histogram(values: list) -> dict:
    """Count the values per category (strings) or over `BINS` equal bins (numbers)."""
    if all(isinstance(v, str) for v in values):
        return {"kind": "categorical", "counts": dict(sorted(Counter(values).items()))}
    arr = np.asarray(values, np.float64)
    counts, edges = np.histogram(arr, bins=BINS)
    return {"kind": "numeric", "min": float(arr.min()), "max": float(arr.max()),
            "mean": float(arr.mean()),
            "edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}


def _bar(count: int, total: int, width: int = 20) -> str:
    return "#" * round(width * count / max(total, 1))


def to_markdown(card: dict) -> str:
    lines = ["# Synthetic dataset card", "", f"{card['sequences']} sequences x "
                                             f"{card['frames_per_sequence']} frames "
             f"({card['width']}x{card['height']}, {card['fps']} fps, flow strides "
             f"1..{card['flow_strides']}, {'static samples' if card['static'] else 'video'}), "
             f"master seed {card['seed']}.", ""]
    for name, h in card["controls"].items():
        lines.append(f"## {name}")
        lines.append("")
        lines.append("```")
        if h["kind"] == "categorical":
            total = sum(h["counts"].values())
            for k, v in h["counts"].items():
                lines.append(f"{k:>24} {v:6d} {_bar(v, total)}")
        else:
            total = sum(h["counts"])
            for lo, hi, v in zip(h["edges"][:-1], h["edges"][1:], h["counts"]):
                lines.append(f"{lo:>10.3f} .. {hi:<10.3f} {v:6d} {_bar(v, total)}")
            lines.append(f"mean {h['mean']:.3f}")
        lines.append("```")
        lines.append("")
    return "\n".join(lines)


def write_card(out: Path, config, records: list[dict]) -> dict:
    """Write card.json and CARD.md under `out` (deterministic for a given config and seed)."""
    cfg = asdict(config)
    card = {"sequences": len(records), "frames_per_sequence": cfg["frames"], "width": cfg["width"],
            "height": cfg["height"], "fps": cfg["fps"], "flow_strides": cfg["flow_strides"],
            "static": cfg["static"],
            "seed": cfg["seed"], "motions_enabled": list(cfg["motions"]),
            "max_people": cfg["max_people"],
            "controls": {k: histogram(v) for k, v in sorted(control_values(records).items())}}
    (out / "card.json").write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    (out / "CARD.md").write_text(to_markdown(card))
    return card
