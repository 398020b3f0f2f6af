"""hcdp_ros: the lifecycle node (node.py, the only module that imports rclpy) and its ROS-free
helpers."""
