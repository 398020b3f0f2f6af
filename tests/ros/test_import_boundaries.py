"""Only hcdp_ros/node.py may import ROS client libraries: everything else must run without ROS."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROS_MODULES = ("rclpy", "launch", "launch_ros", "launch_testing", "sensor_msgs", "std_msgs",
               "diagnostic_msgs",
               "diagnostic_updater", "rcl_interfaces", "lifecycle_msgs", "cv_bridge",
               "sensor_msgs_py")


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["hcdp_ros", "hcdp_model", "training"])
def test_no_module_but_the_node_imports_ros(package):
    offenders = {str(p.relative_to(ROOT)): sorted(_imported_roots(p) & set(ROS_MODULES))
                 for p in _python_files(package) if p != ROOT / "hcdp_ros" / "node.py"}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_node_module_does_import_rclpy():
    # guards the test above against a renamed node module silently passing it
    assert "rclpy" in _imported_roots(ROOT / "hcdp_ros" / "node.py")


def test_the_checker_sees_nested_and_from_imports(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from rclpy.node import Node\n    import sensor_msgs.msg\n")
    assert {"rclpy", "sensor_msgs"} <= _imported_roots(sample)
