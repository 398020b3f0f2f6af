"""hcdp_ros: the lifecycle node and its ROS-free helpers.

node.py is the only module that imports rclpy.
"""
