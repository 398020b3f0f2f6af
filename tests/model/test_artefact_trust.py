"""Exported artefacts from elsewhere: refused when not built here, re-checked where opened.

A torch.export / Torch-TensorRT program this machine did not build is refused before it is loaded
(loading can run code), and every artefact re-runs its stored check frames where it is opened,
refusing one that no longer computes what was exported.
"""
import io
import json
import shutil
import sys
import types
import zipfile

from hcdp_model.backends import BackendError
from hcdp_model.backends import build as build_module
from hcdp_model.backends.build import check_path, export_artefact, ExportSpec, open_artefact
from hcdp_model.backends.cache import cache_root
from hcdp_model.backends.manifest import Manifest, manifest_path
from hcdp_model.predictor import load_predictor
import numpy as np
import onnx
from onnx import numpy_helper
import pytest
import torch

WINDOW = 3
UNTRUSTED = "refusing a torch-export artefact this machine did not build"


@pytest.fixture(scope="module")
def checkpoint(micro_checkpoint):
    return micro_checkpoint


def _copy_artefact(src, dst, data: bytes | None = None):
    """Write `dst` with the bytes of `src` (or `data`) and src's manifest and check data beside it.

    That is what a user receives from someone else.
    """
    dst.write_bytes(src.read_bytes() if data is None else data)
    shutil.copy(manifest_path(src), manifest_path(dst))
    shutil.copy(check_path(src), check_path(dst))
    return dst


def _rewrite_zip(src, change) -> bytes:
    """Return the archive `src` with each member's bytes passed through change(name, data)."""
    out = io.BytesIO()
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as new:
        for info in archive.infolist():
            new.writestr(info.filename, change(info.filename, archive.read(info.filename)))
    return out.getvalue()


class _WritesMarker:
    """Unpickling this writes `path`: the attacker's code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('code ran')",))


def _poisoned(src, marker) -> bytes:
    """Return a real torch.export archive whose first weight is swapped for a code-running pickle.

    The archive's weights config marks it `use_pickle`, so torch.export.load unpickles it.
    """
    payload = io.BytesIO()
    torch.save(_WritesMarker(marker), payload)

    def change(name, data):
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("weights/" + "weight_0"):
            return payload.getvalue()
        return data

    return _rewrite_zip(src, change)


@pytest.fixture
def program(checkpoint, tmp_path):
    out = tmp_path / "built_here" / "step.pt2"
    export_artefact(checkpoint, out, ExportSpec("torch-export", window=WINDOW, verify_frames=2))
    return out


def test_a_crafted_pt2_archive_is_refused_before_any_code_runs(program, tmp_path):
    marker = tmp_path / "MARKER"
    evil = _copy_artefact(program, tmp_path / "evil.pt2", _poisoned(program, marker))
    with pytest.raises(BackendError, match=UNTRUSTED + ".*trust_artefact=True"):
        load_predictor(evil, window=WINDOW, backend="torch")  # what hcdp bag and the node call
    with pytest.raises(BackendError, match=UNTRUSTED):
        open_artefact(evil)
    assert not marker.exists()
    # the archive really is hostile: a caller that says it trusts the file runs the payload
    with pytest.raises(BackendError):
        open_artefact(evil, trust_artefact=True)
    assert marker.read_text() == "code ran"


def test_a_pt2_exported_here_loads_and_the_same_file_on_another_machine_is_refused(program):
    predictor = load_predictor(program, window=WINDOW, backend="torch")
    assert predictor.backend.name == "torch-export"
    shutil.rmtree(cache_root() / "trusted")  # another machine: the file, but not the record
    with pytest.raises(BackendError, match=UNTRUSTED):
        load_predictor(program, window=WINDOW, backend="torch")
    assert load_predictor(program, window=WINDOW, backend="torch",
                          trust_artefact=True).backend.startup_check["frames"] == 2


def test_a_crafted_tensorrt_program_is_refused_before_any_code_runs(program, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_tensorrt", types.SimpleNamespace(__version__="2.8.0"))
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(build_module, "gpu_name", lambda device=None: "NVIDIA H100")
    marker = tmp_path / "MARKER"
    evil = _copy_artefact(program, tmp_path / "evil.ep", _poisoned(program, marker))
    manifest = Manifest.load(manifest_path(evil))
    manifest.format, manifest.gpu = "tensorrt", "NVIDIA H100"
    manifest.versions |= {"tensorrt": "10.3.0", "torch_tensorrt": "2.8.0"}
    manifest.save(manifest_path(evil))
    with pytest.raises(BackendError, match="refusing a tensorrt artefact this machine did not"):
        open_artefact(evil)
    assert not marker.exists()


# --- the start-up check -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_artefact(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "step.onnx"
    export_artefact(checkpoint, out, ExportSpec("onnx", window=WINDOW, camera_size=(40, 60)))
    return out


def _onnx_with_changed_weights(src, dst):
    """Return the exported graph with one mask-head bias moved by 0.5.

    That is what a corrupted copy, a broken converter or a runtime bug would give.
    """
    model = onnx.load(str(src))
    initializer = next(i for i in model.graph.initializer if "mask" in i.name and "bias" in i.name)
    changed = numpy_helper.to_array(initializer) + np.float32(0.5)
    initializer.CopyFrom(numpy_helper.from_array(changed, initializer.name))
    onnx.save(model, str(dst))
    shutil.copy(manifest_path(src), manifest_path(dst))
    shutil.copy(check_path(src), check_path(dst))
    return dst


def test_an_untouched_artefact_passes_its_startup_check_and_reports_it(onnx_artefact, checkpoint):
    predictor = load_predictor(onnx_artefact, window=WINDOW, backend="onnxruntime")
    check = predictor.backend.startup_check
    assert set(check) == {"max_error", "tolerance", "frames"}
    assert check["frames"] == 2 and check["tolerance"] == 1e-3 and 0 <= check["max_error"] < 1e-4
    eager = load_predictor(checkpoint, window=WINDOW, backend="torch")
    assert eager.backend.startup_check is None  # nothing exported, nothing to check


def test_an_artefact_whose_weights_changed_after_export_is_refused_at_start_up(onnx_artefact,
                                                                               tmp_path):
    changed = _onnx_with_changed_weights(onnx_artefact, tmp_path / "step.onnx")
    with pytest.raises(BackendError, match=r"start-up check failed on this machine: onnxruntime "
                                           r"fp32 on cpu .* by 0\.[0-9]+ > tolerance 0\.001 "
                                           r"\(over 2 frames\)"):
        load_predictor(changed, window=WINDOW, backend="onnxruntime")


def test_a_trusted_pt2_whose_weights_changed_is_refused_at_start_up(program, tmp_path):
    with zipfile.ZipFile(program) as archive:
        [name] = [n for n in archive.namelist() if n.endswith("model_weights_config.json")]
        config = json.loads(archive.read(name))["config"]
    [bias] = [meta["path_name"] for fqn, meta in config.items()
              if fqn.endswith("heads.mask.0.bias")]

    def shift_mask_bias(name, data):
        if name.endswith("weights/" + bias):
            return (np.frombuffer(data, np.float32) + np.float32(0.5)).tobytes()
        return data

    changed = _copy_artefact(program, tmp_path / "changed.pt2",
                             _rewrite_zip(program, shift_mask_bias))
    with pytest.raises(BackendError, match=r"start-up check failed .* > tolerance 0\.001"):
        load_predictor(changed, window=WINDOW, backend="torch", trust_artefact=True)


def test_missing_or_altered_check_data_is_refused(onnx_artefact, tmp_path):
    copy = _copy_artefact(onnx_artefact, tmp_path / "step.onnx")
    check_path(copy).write_bytes(check_path(copy).read_bytes()[:-8] + bytes(8))
    with pytest.raises(BackendError, match="check data does not match the sha256 its manifest"):
        open_artefact(copy)
    check_path(copy).unlink()
    with pytest.raises(BackendError, match=r"no start-up check data \(expected "
                                           r"step.onnx.check.safetensors"):
        open_artefact(copy)


def test_an_onnx_model_reading_a_file_or_embedding_an_engine_is_refused(onnx_artefact, tmp_path):
    model = onnx.load(str(onnx_artefact))
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../../../etc/passwd"), ("offset", "0"), ("length", "64")):
        weight.external_data.add(key=key, value=value)
    reads_a_file = tmp_path / "reads" / "step.onnx"
    reads_a_file.parent.mkdir()
    onnx.save(model, str(reads_a_file))
    _copy_artefact(onnx_artefact, reads_a_file, reads_a_file.read_bytes())
    with pytest.raises(BackendError, match=r"refusing an ONNX model that reaches outside its "
                                           fr"graph \(tensor '{weight.name}' stored as external "
                                           r"data\)"):
        load_predictor(reads_a_file, window=WINDOW, backend="onnxruntime")

    model = onnx.load(str(onnx_artefact))
    engine = onnx.helper.make_node("EPContext", [model.graph.input[0].name], ["engine_out"],
                                   name="engine", domain="com.microsoft", embed_mode=1,
                                   ep_cache_context=b"\x7fELF compiled engine bytes")
    model.graph.node.append(engine)
    embeds = tmp_path / "embeds" / "step.onnx"
    embeds.parent.mkdir()
    onnx.save(model, str(embeds))
    _copy_artefact(onnx_artefact, embeds, embeds.read_bytes())
    with pytest.raises(BackendError, match=r"EPContext node 'engine' \(an embedded compiled "
                                           r"engine\)"):
        open_artefact(embeds)


def test_an_export_that_cannot_record_its_program_as_built_here_fails_clearly(checkpoint, tmp_path,
                                                                              monkeypatch):
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    out = tmp_path / "step.pt2"
    with pytest.raises(BackendError, match=r"cannot record .*step.pt2 as built here .*set "
                                           r"XDG_CACHE_HOME to a writable folder"):
        export_artefact(checkpoint, out, ExportSpec("torch-export", window=WINDOW))
    assert list(tmp_path.iterdir()) == [blocked]  # nothing half-written is left


def test_startup_frames_must_be_among_the_verification_frames():
    for frames in (0, 5):
        with pytest.raises(ValueError, match=r"expected startup_frames in \[1, verify_frames=4\], "
                                             rf"got {frames}"):
            ExportSpec("onnx", startup_frames=frames).validate()
