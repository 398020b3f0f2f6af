import json
import os
from pathlib import Path
import pickle
import stat
import subprocess
import sys

from hcdp_model.checkpoint import (
    checkpoint_hash, CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint,
)
from hcdp_model.model import HCDPModel
import pytest
from safetensors.torch import save_file
from tests.model.helpers import activate_temporal, micro_config, random_clip
import torch
import yaml


@pytest.mark.parametrize("name", ["ckpt", "model.safetensors"])
def test_save_then_load_gives_identical_outputs(tmp_path, name):
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    path = save_checkpoint(model, tmp_path / name)
    loaded = load_checkpoint(path).eval()
    clip = random_clip(model, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip)["depth"], model(clip)["depth"], atol=0, rtol=0)
    assert loaded.cfg == model.cfg


def test_a_truncated_weights_file_names_the_file(tmp_path):
    path = save_checkpoint(HCDPModel(micro_config()), tmp_path / "ckpt")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt or truncated"):
        load_checkpoint(path)


def test_a_pickle_renamed_to_safetensors_is_not_unpickled(tmp_path):
    path = save_checkpoint(HCDPModel(micro_config()), tmp_path / "ckpt")

    class Boom:

        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (path / "model.safetensors").write_bytes(pickle.dumps({"x": Boom()}))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_config_are_reported(tmp_path):
    path = save_checkpoint(HCDPModel(micro_config()), tmp_path / "ckpt")
    other = micro_config(temporal=True)
    other.decoder.features = 24
    other.save(path / "config.yaml")
    with pytest.raises(CheckpointError, match=r"do not match the config config\.yaml: \d+ missing "
                                              r".*other shapes"):
        load_checkpoint(path)


def test_missing_files_and_bad_configs_say_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere.bin")
    path = save_checkpoint(HCDPModel(micro_config()), tmp_path / "ckpt")
    (path / "config.yaml").write_text("resolution: 56\nbogus: 1\n")
    with pytest.raises(CheckpointError, match="unknown ModelConfig keys \\['bogus'\\]"):
        load_checkpoint(path)
    (path / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="model config not found"):
        load_checkpoint(path)


def test_hash_changes_with_the_weights(tmp_path):
    a = save_checkpoint(HCDPModel(micro_config()), tmp_path / "a")
    b = save_checkpoint(HCDPModel(micro_config()), tmp_path / "b")
    assert checkpoint_hash(a) == checkpoint_hash(a) and checkpoint_hash(a) != checkpoint_hash(b)


def test_the_weights_file_inside_a_checkpoint_folder_names_the_checkpoint(tmp_path):
    path = save_checkpoint(HCDPModel(micro_config()), tmp_path / "ckpt")
    assert resolve_checkpoint(path / "model.safetensors") == resolve_checkpoint(path)
    assert load_checkpoint(path / "model.safetensors").cfg == load_checkpoint(path).cfg
    assert checkpoint_hash(path / "model.safetensors") == checkpoint_hash(path)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoint_files_get_the_mode_the_users_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_checkpoint(HCDPModel(micro_config()), tmp_path / "ckpt")
    finally:
        os.umask(old)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in path.iterdir()}
    assert modes == {"model.safetensors": mode, "config.yaml": mode}


_LOAD_AND_MEASURE = """
import json, resource, sys, time
from hcdp_model.checkpoint import CheckpointError, load_checkpoint
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
before = peak()
start = time.perf_counter()
try:
    load_checkpoint(sys.argv[1])
    message = None
except CheckpointError as err:
    message = str(err)
print(json.dumps({"seconds": time.perf_counter() - start, "message": message,
                  "peak_growth_mb": (peak() - before) / 1024}))
"""


def test_a_config_edited_to_huge_sizes_is_refused_fast_without_allocating_the_model(tmp_path):
    path = save_checkpoint(HCDPModel(micro_config()), tmp_path / "ckpt")
    config = yaml.safe_load((path / "config.yaml").read_text())
    # ViT-L sized encoder (~300 M parameters, 1.2 GB in fp32) over the micro model's weights
    config["backbone"] |= {"embed_dim": 1024, "depth": 24, "num_heads": 16,
                           "intermediate_layers": [4, 11, 17, 23]}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run([sys.executable, "-c", _LOAD_AND_MEASURE, str(path)], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).parents[2],
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["message"] is not None and "weights do not match the config" in result["message"]
    assert "encoder.cls_token: file (1, 1, 32) vs config (1, 1, 1024)" in result["message"]
    assert result["seconds"] < 1.0 and result["peak_growth_mb"] < 100, result


def test_negative_sizes_in_the_config_are_a_one_line_error(tmp_path):
    path = save_checkpoint(HCDPModel(micro_config()), tmp_path / "ckpt")
    text = (path / "config.yaml").read_text()
    (path / "config.yaml").write_text(text.replace("features: 16", "features: -16"))
    message = r"decoder.features: expected a value in \[1, 8192\], got -16"
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def _save_state(path, change):
    model = HCDPModel(micro_config())
    save_checkpoint(model, path)
    state = dict(model.state_dict())
    change(state)
    save_file(state, str(path / "model.safetensors"))
    return path


def test_weights_holding_nan_or_inf_are_refused(tmp_path):
    def poison(state):
        state["heads.mask.0.weight"] = state["heads.mask.0.weight"].clone()
        state["heads.mask.0.weight"].view(-1)[3] = float("nan")
        state["neck.bias"] = torch.full_like(state["neck.bias"], float("inf"))

    path = _save_state(tmp_path / "ckpt", poison)
    with pytest.raises(CheckpointError, match=r"2 tensors hold NaN or Inf values \(e\.g\. "
                                              r"heads\.mask\.0\.weight, neck\.bias\)"):
        load_checkpoint(path)


def test_integer_weights_are_refused(tmp_path):
    def to_int(state):
        state["neck.weight"] = (state["neck.weight"] * 100).to(torch.int32)

    path = _save_state(tmp_path / "ckpt", to_int)
    with pytest.raises(CheckpointError, match=r"expected floating-point weights "
                                              r"\(F16/BF16/F32/F64\), found 1 tensors of another "
                                              r"dtype \(e\.g\. neck\.weight \(I32\)\)"):
        load_checkpoint(path)
