# ament lint test (ament_python layout): `colcon test` runs it where ament_copyright is installed.
"""ament_copyright: every source file carries a copyright and license header."""
from pathlib import Path

import pytest

ament_copyright = pytest.importorskip("ament_copyright.main",
                                      reason="needs ament_copyright (ROS 2)")

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("hcdp_model", "hcdp_ros", "training", "tests", "test", "scripts", "benchmarks", "launch",
         "setup.py")


# As in `ros2 pkg create`'s template: the sources carry no per-file header yet (the license is
# declared once, in package.xml and setup.py); remove the skip once they do.
@pytest.mark.skip(reason="No copyright header has been placed in the source files yet.")
@pytest.mark.copyright
@pytest.mark.linter
def test_copyright():
    rc = ament_copyright.main(argv=[str(ROOT / p) for p in PATHS])
    assert rc == 0, "Found errors"
