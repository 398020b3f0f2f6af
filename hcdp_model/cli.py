"""The `hcdp` command: one entry point, one sub-command per tool.

Each package registers its own sub-commands in the entry-point group `hcdp.commands` (setup.py,
hcdp_model/commands.py); this command discovers them. A sub-command's module is imported only
when it runs, so that `hcdp info` does not pay for the trainer's or the bag runner's imports.
Each defines `add_arguments(parser)` and `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
from importlib.metadata import entry_points
import os
import sys

from hcdp_model.commands import Command, GROUP


def discover() -> dict[str, Command]:
    """Return the registered sub-commands by name (sorted).

    Two registrations of one name are an error.
    """
    found: dict[str, Command] = {}
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        command = entry.load()
        if not isinstance(command, Command):
            raise TypeError(f"entry point {entry.name} = {entry.value} in {GROUP}: expected an "
                            f"hcdp_model.commands.Command, got {type(command).__name__}")
        if entry.name in found and found[entry.name] != command:
            raise RuntimeError(f"hcdp sub-command {entry.name!r} is registered twice in {GROUP}: "
                               f"{found[entry.name].module} and {command.module}")
        found[entry.name] = command
    return found


# name -> (module, help line)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    name: (c.module, c.help) for name, c in discover().items()}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` names every option's default.

    Except where there is none to name (None, a flag that is off) or the help text already says it.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in help_text.lower():
            return help_text
        return super()._get_help_string(action)


def _load(name: str):
    module_name, _ = SUBCOMMANDS[name]
    return importlib.import_module(module_name)


def command_parser(name: str, module) -> argparse.ArgumentParser:
    """Build the parser of `hcdp <name>`, its options added by the sub-command's module."""
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
            known = ", ".join(SUBCOMMANDS) or (f"none: no package registers {GROUP} entry points; "
                                               "install hcdp (pip install -e .)")
            parser.error(f"unknown command {argv[0]!r}; expected one of {known}")
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
    try:
        return int(module.run(args) or 0)
    except BrokenPipeError:  # the reader closed stdout (`hcdp info | head -1`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit flush
        return 141  # 128 + SIGPIPE, as a shell tool killed by the closed pipe


if __name__ == "__main__":
    sys.exit(main())
