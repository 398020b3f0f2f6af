"""Start the hcdp lifecycle node (configured and activated automatically) and, optionally, rviz.

    ros2 launch hcdp_ros hcdp.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info

Autostart works the same on Humble and Jazzy: the launch file emits the lifecycle ChangeState
events itself (configure at start, activate the first time configuring ends in `inactive`) instead
of relying on the `autostart` option that only newer launch_ros releases have. The activation
handler runs once: a later manual cleanup + configure leaves the node inactive. If configure fails
(bad model path, backend or parameter) the node stays up, unconfigured, and says why in its log.
rviz2 is optional (not a package dependency): `use_rviz:=true` needs `ros-$ROS_DISTRO-rviz2`.
"""
import os

from ament_index_python.packages import get_package_share_directory, PackageNotFoundError
from hcdp_ros.topics import launch_remappings
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from lifecycle_msgs.msg import Transition

PACKAGE = "hcdp_ros"
TRUE = ("true", "1", "yes", "on")


def _arguments():
    share = get_package_share_directory(PACKAGE)
    return [
        DeclareLaunchArgument("image", default_value="/camera/color/image_raw",
                              description="input sensor_msgs/Image topic (its /compressed sibling "
                                          "with compressed:=true)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/color/camera_info",
                              description="sensor_msgs/CameraInfo of the input camera"),
        DeclareLaunchArgument("metric_depth",
                              default_value="/camera/aligned_depth_to_color/image_raw",
                              description="registered metric depth (with use_metric_depth)"),
        DeclareLaunchArgument("compressed", default_value="",
                              description="true: subscribe to <image>/compressed; empty: as in "
                                          "params_file"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "hcdp.yaml"),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="checkpoint; empty: as in params_file (default: the "
                                          "bundled model)"),
        DeclareLaunchArgument("backend", default_value="",
                              description="torch | onnxruntime | tensorrt; empty: as in "
                                          "params_file"),
        DeclareLaunchArgument("namespace", default_value="hcdp",
                              description="namespace of the node and its topics"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate the node right away"),
        DeclareLaunchArgument("use_rviz", default_value="false",
                              description="also start rviz2 with hcdp.rviz (rviz2 installed)"),
        DeclareLaunchArgument("rviz_config",
                              default_value=os.path.join(share, "launch", "rviz", "hcdp.rviz"),
                              description="rviz2 configuration"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="debug | info | warn | error"),
    ]


def _change_state(node, transition_id):
    return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                       transition_id=transition_id))


def _launch_setup(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    # launch arguments left empty defer to the params file instead of overriding it; strings stay
    # strings (a model path like "2024" must not become an integer)
    overrides = {name: ParameterValue(arg(name), value_type=str)
                 for name in ("model_path", "backend") if arg(name)}
    if arg("compressed"):
        overrides["compressed"] = arg("compressed").lower() in TRUE
    node = LifecycleNode(
        package=PACKAGE, executable="hcdp_node", name="hcdp", namespace=arg("namespace"),
        output="screen", parameters=[arg("params_file"), overrides],
        # the node's inputs (input/...) to the camera's topics; outputs are never remapped
        remappings=launch_remappings(arg("image"), arg("camera_info"), arg("metric_depth")),
        arguments=["--ros-args", "--log-level", arg("log_level")],
    )
    actions = [node]
    if arg("autostart").lower() in TRUE:
        actions = [
            # once: a later manual cleanup + configure must leave the node inactive
            RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
                entities=[_change_state(node, Transition.TRANSITION_ACTIVATE)], handle_once=True)),
            node,
            _change_state(node, Transition.TRANSITION_CONFIGURE),
        ]
    if arg("use_rviz").lower() in TRUE:
        try:
            get_package_share_directory("rviz2")
        except PackageNotFoundError:
            raise RuntimeError("use_rviz:=true needs rviz2, which hcdp_ros does not depend on: "
                               "sudo apt install ros-$ROS_DISTRO-rviz2") from None
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                            arguments=["-d", arg("rviz_config")]))
    return actions


def generate_launch_description():
    return LaunchDescription(_arguments() + [OpaqueFunction(function=_launch_setup)])
