"""The `hcdp` sub-commands of the ROS package.

They are registered in setup.py's `hcdp.commands` entry-point group (see hcdp_model.commands).
Importing this module imports no ROS code.
"""
from hcdp_model.commands import Command

BAG = Command("hcdp_ros.bag",
              "run the model over a rosbag2 without ROS; write predictions and metrics")
