"""The `hcdp` sub-commands of the trainer package.

They are registered in setup.py's `hcdp.commands` entry-point group (see hcdp_model.commands).
Importing this module imports no trainer code.
"""
from hcdp_model.commands import Command

SYNTH = Command("hcdp_training.synth.cli",
                "generate synthetic human video data with ground truth")
MAKE_SAMPLE_BAG = Command("hcdp_training.synth.sample_bag",
                          "write the demo rosbag from a generated sequence")
TRAIN = Command("hcdp_training.train",
                "run a training stage (0: prior, 1: images, 2: video) from a YAML config")
EVAL = Command("hcdp_training.evaluate", "evaluate a checkpoint on held-out sequences")
ABLATE = Command("hcdp_training.ablation",
                 "train and evaluate the paper's ablation variants at tiny scale")
EVAL_REAL = Command("hcdp_training.real.cli",
                    "score a checkpoint on real photos and videos (no labels)")
