"""hcdp_model: the network, preprocessing, checkpoints, the streaming predictor, runtime backends
and export. No ROS imports."""
