"""One home per run-time default (issue 15).

The streaming window, backend, precision and device defaults are hcdp_model.backends.base's
DEFAULT_* names, which every entry point reads.
"""
from __future__ import annotations

import inspect
import io
from pathlib import Path
import tokenize

from hcdp_model.backends.base import (
    DEFAULT_BACKEND, DEFAULT_DEVICE, DEFAULT_PRECISION, DEFAULT_WINDOW,
)

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "hcdp_model" / "backends" / "base.py"
SCANNED = ("hcdp_model", "hcdp_ros", "training", "benchmarks", "scripts", "launch")


def window_literals(path: Path, root: Path = ROOT) -> list[str]:
    """Find lines where code (not a comment or a string) writes the window default as a number.

    For example `window: int = 16`, `default=16` on a --window option, `16 if window is None`.
    """
    found = []
    lines = path.read_text().splitlines()
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    for before, token, after in zip(tokens, tokens[1:], tokens[2:]):
        if token.type != tokenize.NUMBER or token.string != str(DEFAULT_WINDOW):
            continue
        line = lines[token.start[0] - 1]
        if "window" in line.lower() and (before.string == "=" or after.string == "if"):
            found.append(f"{path.relative_to(root)}:{token.start[0]}: {line.strip()}")
    return found


def test_the_window_default_is_written_once():
    found = [hit for folder in SCANNED for path in sorted((ROOT / folder).rglob("*.py"))
             if path != HOME for hit in window_literals(path)]
    assert not found, (f"expected the window default only in {HOME.relative_to(ROOT)} "
                       "(DEFAULT_WINDOW), found:\n" + "\n".join(found))


def test_the_scan_sees_each_way_of_writing_it(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("class C:\n    window: int = 16\n\n"
                     "p.add_argument('--window', type=int, default=16)\n"
                     "w = 16 if window is None else window\n"
                     "sizes = {'window': [8, 16]}  # a sweep, not a default\n")
    assert [hit.split(":")[1] for hit in window_literals(probe, tmp_path)] == ["2", "4", "5"]


def test_every_entry_point_defaults_to_the_one_home():
    from hcdp_model.backends.build import ExportSpec, open_backend
    from hcdp_model.predictor import load_predictor
    from hcdp_ros.params import NodeConfig

    node = NodeConfig()
    assert (node.window, node.backend, node.precision, node.device) == (
        DEFAULT_WINDOW, DEFAULT_BACKEND, DEFAULT_PRECISION, DEFAULT_DEVICE)
    spec = ExportSpec("onnx")
    assert (spec.window, spec.precision, spec.device) == (DEFAULT_WINDOW, DEFAULT_PRECISION,
                                                          DEFAULT_DEVICE)
    for function in (open_backend, load_predictor):
        defaults = {k: v.default for k, v in inspect.signature(function).parameters.items()}
        assert (defaults["window"], defaults["backend"], defaults["precision"],
                defaults["device"]) == (DEFAULT_WINDOW, DEFAULT_BACKEND, DEFAULT_PRECISION,
                                        DEFAULT_DEVICE), function.__name__
