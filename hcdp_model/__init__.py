"""hcdp_model: the network, preprocessing, checkpoints, streaming predictor, backends and export.

No ROS imports.
"""
