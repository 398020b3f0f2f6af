"""What the lint tests (test/test_*.py under colcon, tests/test_flake8.py in CI) check.

Every Python file the package ships, its tests, scripts, benchmarks and launch files.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = tuple(str(ROOT / p) for p in (
    "hcdp_model", "hcdp_ros", "training", "tests", "test", "scripts", "benchmarks", "launch",
    "setup.py"))
