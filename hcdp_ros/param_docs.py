"""The node's parameters written out for people, from their one spec.

From params.PARAMETERS and params.NodeConfig's defaults: `config/hcdp.yaml`, a comment above every
parameter, and the table of docs/ros.md's "Parameters" section.

    python -m hcdp_ros.param_docs           # rewrite both from the spec
    python -m hcdp_ros.param_docs --check   # exit 1 naming the file that differs
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import textwrap

from hcdp_ros.params import DEFAULTS, param_type, PARAMETERS, ParamSpec

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "config" / "hcdp.yaml"
DOCS_PATH = ROOT / "docs" / "ros.md"
TABLE_HEADER = ("| name | type | default | range / choices | read-only | description |\n"
                "|---|---|---|---|---|---|\n")
ROS_TYPES = {bool: "bool", int: "int", float: "double", str: "string"}
YAML_HEAD = """\
# Parameters of the hcdp lifecycle node (docs/ros.md describes every one). Generated from
# hcdp_ros/params.py by `python -m hcdp_ros.param_docs`: change the spec there, not this file.
# The node is named `hcdp` (default namespace `hcdp`); the key /**/hcdp matches any namespace.
# Doubles must be written with a decimal point (1.0, not 1): ROS 2 parameters are statically typed.
/**/hcdp:
  ros__parameters:
"""
SECTIONS = {
    True: "read-only: set at start-up (change them here or with -p, then restart the node)",
    False: "dynamic: can be changed while the node runs (ros2 param set /hcdp/hcdp NAME VALUE)",
}


def number(value: float) -> str:
    """Format a range bound as people write it: 0.01, 60, 32768, 1e-4, 1e4, 1e7, 2^30."""
    if isinstance(value, int):
        if value >= 1 << 20 and value & (value - 1) == 0:
            return f"2^{value.bit_length() - 1}"
        if value >= 10 ** 6 and str(value).rstrip("0") == "1":
            return f"1e{len(str(value)) - 1}"
        return str(value)
    if value and not 1e-3 <= abs(value) < 1e4:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:g}"


def choices(spec: ParamSpec, separator: str) -> str:
    if spec.choices:
        return separator.join(spec.choices)
    if spec.min_value is not None and spec.max_value is not None:
        return f"{number(spec.min_value)}..{number(spec.max_value)}"
    return ""


def yaml_value(value: bool | int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def yaml_text() -> str:
    """config/hcdp.yaml: read-only parameters first, then the dynamic ones, in spec order."""
    lines = []
    for read_only in (True, False):
        lines.append(f"    # --- {SECTIONS[read_only]} ---")
        for name, spec in PARAMETERS.items():
            if spec.read_only != read_only:
                continue
            allowed = choices(spec, " | ")
            text = spec.description[0].upper() + spec.description[1:]
            text += f" [{allowed}]." if allowed else "."
            lines += textwrap.wrap(text, 99, initial_indent="    # ",
                                   subsequent_indent="    # ", break_on_hyphens=False)
            lines.append(f"    {name}: {yaml_value(getattr(DEFAULTS, name))}")
        lines.append("")
    return YAML_HEAD + "\n".join(lines).rstrip("\n") + "\n"


def documented_default(value: bool | int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return repr(value)


def table_text() -> str:
    """docs/ros.md's parameter table, in spec order."""
    rows = []
    for name, spec in PARAMETERS.items():
        allowed = choices(spec, ", ").replace("..", "–")
        cells = (f"`{name}`", ROS_TYPES[param_type(name)],
                 documented_default(getattr(DEFAULTS, name)), allowed,
                 "yes" if spec.read_only else "no", spec.description)
        rows.append(" ".join(["|", *(f"{c} |" if c else "|" for c in cells)]))
    return TABLE_HEADER + "\n".join(rows) + "\n"


def docs_text(current: str) -> str:
    """docs/ros.md with the table of its "## Parameters" section replaced by `table_text()`."""
    head, section = current.split("## Parameters", 1)
    start = section.index(TABLE_HEADER.splitlines()[0])
    end = section.index("\n\n", start) + 1
    return head + "## Parameters" + section[:start] + table_text() + section[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="report files that differ from the spec instead of writing them")
    args = parser.parse_args(argv)
    wanted = {YAML_PATH: yaml_text(), DOCS_PATH: docs_text(DOCS_PATH.read_text())}
    stale = [path for path, text in wanted.items() if path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} differs from hcdp_ros/params.py; run "
                  "`python -m hcdp_ros.param_docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
