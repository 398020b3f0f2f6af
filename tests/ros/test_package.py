"""package.xml declares exactly the ROS packages its code imports.

The code: the node, the launch file and the launch test (issue 14 item 8: rviz2 and cv_bridge were
hard dependencies nothing needed).
"""
import ast
from pathlib import Path
import xml.etree.ElementTree as ET

ROOT = Path(__file__).resolve().parents[2]
ROS_PACKAGES = {"rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs",
                "diagnostic_updater", "rcl_interfaces", "lifecycle_msgs", "launch", "launch_ros",
                "launch_testing", "launch_testing_ros", "ament_index_python", "cv_bridge",
                "sensor_msgs_py", "rviz2", "message_filters"}


def _depends(kind: str) -> set[str]:
    return {e.text for e in ET.parse(ROOT / "package.xml").getroot().iter(kind)}


def _ros_imports(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots & ROS_PACKAGES


def test_every_ros_import_of_the_node_and_launch_file_is_an_exec_depend():
    used = (_ros_imports(ROOT / "hcdp_ros" / "node.py")
            | _ros_imports(ROOT / "launch" / "hcdp.launch.py"))
    assert used <= _depends("exec_depend"), used - _depends("exec_depend")
    ros_declared = _depends("exec_depend") & ROS_PACKAGES
    assert ros_declared - used <= {"std_msgs"}, ros_declared - used  # std_msgs: the msgs' headers


def test_heavy_or_unused_packages_are_not_dependencies():
    declared = _depends("exec_depend") | _depends("depend")
    assert not {"rviz2", "cv_bridge", "sensor_msgs_py"} & declared


def test_the_launch_test_imports_are_test_depends():
    used = _ros_imports(ROOT / "tests" / "ros" / "test_node_launch.py")
    assert used - _depends("exec_depend") <= _depends("test_depend"), used
