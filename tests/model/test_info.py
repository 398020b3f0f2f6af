import json
from pathlib import Path
import re

from hcdp_model.checkpoint import resolve_checkpoint
from hcdp_model.cli import main
from hcdp_model.config import ModelConfig
from hcdp_model.info import count, count_config, selfie_zooms_label
from hcdp_model.predictor import default_checkpoint
import pytest


@pytest.mark.parametrize("name, paper", [("base", 0.097e9), ("large", 0.337e9)])
def test_base_and_large_parameter_counts_are_within_25_percent_of_table_17(name, paper):
    info = count(name, 518, 518)
    assert 0.75 * paper <= info["params"] <= 1.25 * paper


def test_block_counts_add_up_to_the_totals():
    info = count("tiny", 480, 640, window=8)
    assert sum(b["params"] for b in info["blocks"].values()) == info["params"]
    assert sum(b["gmacs"] for b in info["blocks"].values()) == pytest.approx(info["gmacs"],
                                                                             rel=1e-6)
    assert all(b["gmacs"] > 0 for name, b in info["blocks"].items() if name != "cwa")


def test_temporal_cost_grows_with_the_window():
    small, big = count("tiny", 480, 640, window=4), count("tiny", 480, 640, window=32)
    assert big["blocks"]["temporal_blocks"]["gmacs"] > small["blocks"]["temporal_blocks"]["gmacs"]
    assert big["blocks"]["encoder"]["gmacs"] == small["blocks"]["encoder"]["gmacs"]


def test_cli_json_has_params_and_gmacs(capsys):
    assert main(["info", "--preset", "tiny", "--size", "720", "1280", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] > 1e6 and info["gmacs"] > 0.1 and info["input_size"] == [720, 1280]


def test_cli_table_prints_the_paper_numbers_beside_ours(capsys):
    main(["info", "--preset", "base"])
    out = capsys.readouterr().out
    assert "paper Table 17" in out and "471 GFLOPs" in out


@pytest.mark.parametrize("args, expected", [
    (["--window", "0"], "argument --window: expected an integer in 1..1024, got 0"),
    (["--window", "100000"], "argument --window: expected an integer in 1..1024, got 100000"),
    (["--size", "0", "640"], "argument --size: expected an integer in 1..16384, got 0"),
    (["--size", "-5", "10"], "argument --size: expected an integer in 1..16384, got -5"),
])
def test_bad_arguments_are_one_line_usage_errors(capsys, args, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and expected in err and "Traceback" not in err


def _readme_network_sizes() -> dict[str, tuple[float, float]]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = re.search(r"\*\*Network size\*\*.*?(?=\n\n)", readme, re.S).group(0)
    sizes = {"tiny": re.search(r"tiny (\d+\.\d) M parameters / (\d+\.\d) GMACs", line).groups()}
    others = re.findall(r"(small|base|large) (\d+\.\d) M / (\d+\.\d)", line)
    sizes.update({name: (m, g) for name, m, g in others})
    return {name: (float(m), float(g)) for name, (m, g) in sizes.items()}


@pytest.mark.parametrize("name", ["tiny", "small", "base", "large"])
def test_the_readme_network_sizes_are_what_hcdp_info_prints(name):
    params_m, gmacs = _readme_network_sizes()[name]
    info = count(name, 480, 640)
    assert (params_m, gmacs) == (round(info["params"] / 1e6, 1), round(info["gmacs"], 1))


def test_a_checkpoint_is_counted_with_its_fused_block_and_selfie_prior(capsys):
    cfg = ModelConfig.load(resolve_checkpoint(default_checkpoint())[1])
    assert cfg.temporal.fused and cfg.prior.kind == "learned_selfie"  # what no preset has
    info = count_config(cfg, 480, 640, window=16)
    assert info["fused_temporal"] and info["prior"] == "learned_selfie"
    assert sum(b["params"] for b in info["blocks"].values()) == info["params"]
    assert sum(b["gmacs"] for b in info["blocks"].values()) == pytest.approx(info["gmacs"],
                                                                             rel=1e-6)
    fused = info["blocks"]["fused_temporal"]
    # attention by formula: 2 x slots x C x S^2 MACs, slots capped at temporal.fused_window
    slots = min(16, cfg.temporal.fused_window)
    attention = 2 * slots * cfg.fusion.channels * cfg.resolution ** 2 / 1e9
    c, pixels = cfg.fusion.channels, cfg.resolution ** 2
    projections = 3 * c * c * pixels / 1e9  # q, k (2C x C) and P (C x C) per pixel
    assert fused["gmacs"] == pytest.approx(projections + attention, rel=1e-6)
    # window 1: the block is the identity and costs nothing
    assert count_config(cfg, 480, 640, window=1)["blocks"]["fused_temporal"]["gmacs"] == 0
    assert count_config(cfg, 480, 640, window=64)["blocks"]["fused_temporal"] == fused
    assert info["params"] > count("tiny", 480, 640)["params"]  # the selfie network's weights
    assert main(["info", "--checkpoint", str(default_checkpoint())]) == 0
    assert ("prior learned_selfie (selfie zooms 1, 2), fused temporal block yes"
            in capsys.readouterr().out)


def test_each_selfie_zoom_costs_the_network_at_its_size():
    # The bundled prior.selfie_zooms (1, 2): the second scale is the network at 448², four times
    # its cost at 224² (what a repeated zoom 1 adds), in human_prior's GMACs.
    cfg = ModelConfig.load(resolve_checkpoint(default_checkpoint())[1])
    assert tuple(cfg.prior.selfie_zooms) == (1.0, 2.0)
    prior = {}
    for zooms in ((1.0,), (1.0, 1.0), (1.0, 2.0)):
        cfg.prior.selfie_zooms = zooms
        prior[zooms] = count_config(cfg, 480, 640, window=16)["blocks"]["human_prior"]["gmacs"]
    at_224 = prior[(1.0, 1.0)] - prior[(1.0,)]
    assert at_224 > 0.02
    assert prior[(1.0, 2.0)] - prior[(1.0,)] == pytest.approx(4 * at_224, rel=0.02)
    assert selfie_zooms_label({"selfie_zooms": [1.0]}) == ""
    assert selfie_zooms_label({"selfie_zooms": None}) == ""


def test_a_missing_checkpoint_is_a_one_line_error(capsys, tmp_path):
    assert main(["info", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "hcdp info:" in err and "does not exist" in err and "Traceback" not in err


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly():
    # `hcdp info | head -1`: head exits after one line; the command stops with 141 (128 + SIGPIPE)
    # and no traceback. The read end is closed before the command has counted anything.
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import sys; from hcdp_model.cli import main; "
                             "sys.exit(main(['info', '--preset', 'tiny']))"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err
