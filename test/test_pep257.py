# ament lint test (ament_python layout): `colcon test` runs it where ament_pep257 is installed.
"""ament_pep257 (docstring conventions) over the package's Python code."""
from lint_paths import PATHS
import pytest

ament_pep257 = pytest.importorskip("ament_pep257.main", reason="needs ament_pep257 (ROS 2)")


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    assert ament_pep257.main(argv=list(PATHS)) == 0, "Found code style errors / warnings"
