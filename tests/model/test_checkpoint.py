import pickle

import pytest
import torch

from hcdp_model.checkpoint import CheckpointError, checkpoint_hash, load_checkpoint, save_checkpoint
from hcdp_model.model import HCDPModel
from tests.model.helpers import activate_temporal, micro_config, random_clip


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
    with pytest.raises(CheckpointError, match=r"do not match the config config\.yaml: \d+ missing .*other shapes"):
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
