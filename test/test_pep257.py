# ament lint test (ament_python layout): `colcon test` runs it where ament_pep257 is installed.
"""ament_pep257 (docstring conventions) over the package's Python code."""
from pathlib import Path

import pytest

ament_pep257 = pytest.importorskip("ament_pep257.main", reason="needs ament_pep257 (ROS 2)")

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("hcdp_model", "hcdp_ros", "training", "tests", "test", "scripts", "benchmarks", "launch",
         "setup.py")


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    rc = ament_pep257.main(argv=[str(ROOT / p) for p in PATHS])
    assert rc == 0, "Found code style errors / warnings"
