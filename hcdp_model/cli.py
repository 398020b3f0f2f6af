"""The `hcdp` command: one entry point, one sub-command per tool.

Sub-commands are imported lazily so that `hcdp info` does not pay for the trainer's or the bag
runner's imports. Each module named below defines `add_arguments(parser)` and `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "info": ("hcdp_model.info", "parameters and GMACs per block of a preset"),
    "export": ("hcdp_model.export", "export the streaming step graph (onnx, torch-export, tensorrt)"),
    "init-from": ("hcdp_model.init_from", "our model from a DA-V2 / VDA / DINOv2/v3 file"),
    "synth": ("hcdp_training.synth.cli", "generate synthetic human video data with ground truth"),
    "make-sample-bag": ("hcdp_training.synth.sample_bag", "write the demo rosbag from a generated sequence"),
    "train": ("hcdp_training.train", "run a training stage (0: prior, 1: images, 2: video) from a YAML config"),
    "eval": ("hcdp_training.evaluate", "evaluate a checkpoint on held-out sequences"),
    "ablate": ("hcdp_training.ablation", "train and evaluate the paper's ablation variants at tiny scale"),
    "bag": ("hcdp_ros.bag", "run the model over a rosbag2 without ROS; write predictions and metrics"),
    "eval-real": ("hcdp_training.real.cli", "score a checkpoint on real photos and videos (no labels)"),
}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` names every option's default, except where there is none to name (None, a flag
    that is off) or the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in help_text.lower():
            return help_text
        return super()._get_help_string(action)


def _load(name: str):
    module_name, _ = SUBCOMMANDS[name]
    return importlib.import_module(module_name)


def command_parser(name: str, module) -> argparse.ArgumentParser:
    """The parser of `hcdp <name>`, its options added by the sub-command's module."""
    parser = argparse.ArgumentParser(prog=f"hcdp {name}", description=SUBCOMMANDS[name][1],
                                     formatter_class=DefaultsHelpFormatter)
    module.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="hcdp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; expected one of {', '.join(SUBCOMMANDS)}")
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    try:
        module = _load(name)
    except ModuleNotFoundError as err:
        print(f"hcdp {name}: cannot import {SUBCOMMANDS[name][0]} ({err}); "
              "is the matching extra installed (pip install -e '.[training]')?", file=sys.stderr)
        return 2
    args = command_parser(name, module).parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
