"""The `hcdp` dispatcher: every sub-command's --help names the defaults of its options."""
import argparse
import importlib

from hcdp_model.cli import command_parser, main, SUBCOMMANDS
import pytest


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


def test_each_package_registers_its_own_sub_commands():
    from importlib.metadata import entry_points

    from hcdp_model.commands import GROUP

    found = {e.name: e for e in entry_points(group=GROUP)}
    assert set(found) == set(SUBCOMMANDS) == {
        "info", "export", "init-from", "synth", "make-sample-bag", "train", "eval", "ablate",
        "bag", "eval-real"}
    for name, entry in found.items():
        registrar = entry.value.split(".")[0]  # the package whose commands module names it
        assert SUBCOMMANDS[name][0].split(".")[0] == registrar, (name, entry.value)


def test_discovery_refuses_a_name_registered_twice_and_an_object_that_is_no_command(monkeypatch):
    from importlib.metadata import EntryPoint

    from hcdp_model import cli
    from hcdp_model.commands import GROUP

    twice = [EntryPoint("info", "hcdp_model.commands:INFO", GROUP),
             EntryPoint("info", "hcdp_model.commands:EXPORT", GROUP)]
    monkeypatch.setattr(cli, "entry_points", lambda group: twice)
    with pytest.raises(RuntimeError, match="'info' is registered twice"):
        cli.discover()
    foreign = [EntryPoint("x", "hcdp_model.commands:GROUP", GROUP)]
    monkeypatch.setattr(cli, "entry_points", lambda group: foreign)
    with pytest.raises(TypeError, match="expected an hcdp_model.commands.Command, got str"):
        cli.discover()


def test_an_unknown_command_lists_the_registered_ones(capsys):
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    err = capsys.readouterr().err
    assert "unknown command 'no-such-command'; expected one of ablate, bag, eval" in err
