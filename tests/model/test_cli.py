"""The `hcdp` dispatcher: every sub-command's --help names the defaults of its options."""
import argparse
import importlib

import pytest

from hcdp_model.cli import SUBCOMMANDS, command_parser, main


def _module(name: str):
    try:
        return importlib.import_module(SUBCOMMANDS[name][0])
    except ModuleNotFoundError as err:  # an extra that is not installed here
        pytest.skip(f"{name}: {err}")


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_names_the_default_of_every_option_that_has_one(name):
    parser = command_parser(name, _module(name))
    for action in parser._actions:
        if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            continue
        formatter = parser.formatter_class(prog=parser.prog)
        formatter.add_argument(action)  # the option's own entry of --help
        entry = formatter.format_help()
        assert "default" in entry, f"hcdp {name}: no default in --help: {entry}"


def test_help_shows_the_default_values(capsys):
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "network size preset (default: tiny)" in text and "(default: 16)" in text
