"""flake8 with the project's ament-compatible configuration reports nothing.

The configuration is setup.cfg [flake8] (issue 15); nothing is reported over the packages, tests,
scripts, benchmarks and launch files. CI runs it without ROS.
"""
from __future__ import annotations

import configparser
from pathlib import Path
import runpy
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The same files test/test_flake8.py checks under colcon (test/lint_paths.py).
LINTED = runpy.run_path(str(ROOT / "test" / "lint_paths.py"))["PATHS"]


def flake8(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("flake8", reason="flake8 is in the dev extra: pip install -e '.[dev]'")
    return subprocess.run([sys.executable, "-m", "flake8", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_the_configuration_is_ament_flake8s_at_99_columns():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    section = config["flake8"]
    assert section["max-line-length"] == "99"
    assert section["import-order-style"] == "google"
    assert set(section["extend-ignore"].split(",")) == {
        "B902", "C816", "D100", "D101", "D102", "D103", "D104", "D105", "D106", "D107", "D203",
        "D212", "D404", "I202"}


def test_flake8_reports_nothing_over_the_repository():
    result = flake8(*LINTED)
    assert result.returncode == 0 and not result.stdout.strip(), (
        f"expected no flake8 finding (setup.cfg [flake8]), found:\n{result.stdout}{result.stderr}")


def test_the_check_sees_a_long_line_and_an_unused_import(tmp_path):
    # The same configuration finds what it is there to find (a check that cannot fail proves
    # nothing): a 100-column line and an unused import.
    bad = tmp_path / "probe.py"
    bad.write_text("import os\n\nX = '" + "x" * 94 + "'\n")
    result = flake8(str(bad))
    assert result.returncode == 1
    assert "E501 line too long (100 > 99 characters)" in result.stdout
    assert "F401 'os' imported but unused" in result.stdout


# The plugins ros-jazzy-ament-flake8 installs beside flake8 (its package.xml): without them flake8
# silently skips docstring, import-order, builtin and comprehension checks that `colcon test` runs.
AMENT_PLUGINS = ("flake8-blind-except", "flake8-builtins", "flake8-class-newline",
                 "flake8-comprehensions", "flake8-deprecated", "flake8-docstrings",
                 "flake8_import_order", "flake8-quotes")


def test_flake8_runs_with_the_plugins_ament_flake8_brings():
    version = " ".join(flake8("--version").stdout.split()).replace("- ", "-")
    missing = [name for name in AMENT_PLUGINS if name not in version]
    assert not missing, f"flake8 plugins missing (dev extra): {missing}; flake8 says: {version}"


def test_the_check_sees_docstring_import_order_and_builtin_findings(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text('import sys\nimport os\n\n\ndef f(list):\n    """returns x"""\n'
                   "    return os, sys, list\n")
    result = flake8(str(bad))
    assert result.returncode == 1
    for code in ("I100", "A002", "D400", "D401", "D403"):
        assert f" {code} " in result.stdout, (code, result.stdout)
