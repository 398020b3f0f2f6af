"""Synthetic human video data with exact ground truth (issue 3, paper section 3.1 / appendix A.1).

anny bodies with garment and hair geometry, procedural motions, cameras, lights and backgrounds,
rendered headless with moderngl into RGB, planar depth, camera-frame normals, soft mask, forward
and backward optical flow and canonical body-surface coordinates. Entry points:
`generate.generate_dataset` and the `hcdp synth` command (`cli.py`).
"""
