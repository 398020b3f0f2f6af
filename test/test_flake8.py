# ament lint test (ament_python layout): `colcon test` runs it where ament_flake8 is installed.
"""ament_flake8 over the package with the project's configuration (setup.cfg [flake8])."""
import configparser
from pathlib import Path

from lint_paths import PATHS, ROOT
import pytest

ament_flake8 = pytest.importorskip("ament_flake8.main", reason="needs ament_flake8 (ROS 2)")


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = ament_flake8.main_with_errors(argv=["--config", str(ROOT / "setup.cfg"), *PATHS])
    assert rc == 0, f"Found {len(errors)} code style errors / warnings:\n" + "\n".join(errors)


@pytest.mark.flake8
@pytest.mark.linter
def test_the_project_configuration_keeps_ament_flake8s_rules():
    ament, ours = configparser.ConfigParser(), configparser.ConfigParser()
    ament.read(Path(ament_flake8.__file__).parent / "configuration" / "ament_flake8.ini")
    ours.read(ROOT / "setup.cfg")
    for key in ("extend-ignore", "import-order-style", "max-line-length"):
        assert ours["flake8"][key] == ament["flake8"][key], (
            f"setup.cfg [flake8] {key}: expected ament_flake8's {ament['flake8'][key]!r}, "
            f"found {ours['flake8'][key]!r}")
