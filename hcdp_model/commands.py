"""The `hcdp` sub-commands and how a package registers one.

Every package names its own sub-commands in setup.py's entry-point group `hcdp.commands`
(name = the sub-command, value = a `Command` in the package's `commands` module), and the `hcdp`
command (cli.py) discovers them, so this package names no module of its users. A `Command` is
the module that implements the sub-command (`add_arguments(parser)`, `run(args) -> int`),
imported only when the sub-command runs, and the line `hcdp --help` shows for it.
"""
from __future__ import annotations

from dataclasses import dataclass

GROUP = "hcdp.commands"


@dataclass(frozen=True)
class Command:
    module: str
    help: str  # noqa: A003 (field other packages' Command(...) and cli.py use)


INFO = Command("hcdp_model.info", "parameters and GMACs per block of a preset")
EXPORT = Command("hcdp_model.export",
                 "export the streaming step graph (onnx, torch-export, tensorrt)")
INIT_FROM = Command("hcdp_model.init_from", "our model from a DA-V2 / VDA / DINOv2/v3 file")
