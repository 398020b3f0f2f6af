"""What the exported step graph is made of (issue 19.4).

TensorRT 10.3 (JetPack 6, Torch-TensorRT 2.8) has no attention layer, so the temporal attention
must export as plain products, a softmax in fp32 and sums: no scaled_dot_product_attention op,
whatever the precision. And engines build with their timing cache in the persistent hcdp cache,
not under /tmp.
"""
from __future__ import annotations

import sys
import types

from hcdp_model.backends import trt
from hcdp_model.backends.step import ExportStep
from hcdp_model.model import HCDPModel
import pytest
from tests.model.helpers import micro_config
import torch
from torch import nn

SDPA = "scaled_dot_product"


class BlockStep(nn.Module):

    def __init__(self, block) -> None:
        super().__init__()
        self.block = block

    def forward(self, x, keys, values, valid):
        out, (k, v, flags) = self.block.step(x, (keys, values, valid > 0.5))
        return out, k, v, flags.to(x.dtype)


def _calls(program) -> list[torch.fx.Node]:
    return [n for n in program.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("slot_loop", [False, True])
def test_exported_temporal_step_is_products_and_an_fp32_softmax(dtype, slot_loop, monkeypatch):
    model = HCDPModel(micro_config(temporal=True)).eval()
    block = model.temporal_blocks[0].to(dtype)
    monkeypatch.setattr("hcdp_model.temporal._slot_loop", lambda asked, x: slot_loop)
    c, side, window = model.cfg.decoder.features, model.scale_sizes()[0], 4
    x = torch.randn(1, c, side, side, dtype=dtype)
    kv = torch.randn(window - 1, 1, c, side * side, dtype=dtype)
    valid = torch.tensor([0.0, 1.0, 1.0], dtype=dtype)
    with torch.no_grad():
        program = torch.export.export(BlockStep(block), (x, kv, kv.clone(), valid))
    calls = _calls(program)
    assert not [n for n in calls if SDPA in str(n.target)], "expected no SDPA op in the step"
    softmax = [n for n in calls if "softmax" in str(n.target)]
    assert len(softmax) == 1, f"expected one softmax over the slots, got {softmax}"
    assert softmax[0].args[0].meta["val"].dtype == torch.float32, "expected the softmax in fp32"


def test_only_the_backbone_keeps_sdpa_in_the_exported_streaming_step():
    """Check only the DINO backbone's attention is SDPA; the temporal blocks contribute none.

    The DINO backbone's attention is standard SDPA (lowered by Torch-TensorRT and ONNX export); the
    temporal blocks contribute none.
    """
    model = HCDPModel(micro_config(temporal=True)).eval()
    step = ExportStep(model, 4)
    with torch.no_grad():
        program = torch.export.export(step, step.example_inputs())
    sdpa = [n for n in _calls(program) if SDPA in str(n.target)]
    owners = [" ".join(str(v) for v in n.meta.get("nn_module_stack", {}).values()) for n in sdpa]
    assert len(sdpa) == model.cfg.backbone.depth, f"expected one SDPA per backbone block, {owners}"
    assert not [o for o in owners if "temporal" in o], f"SDPA inside a temporal block: {owners}"


def test_onnx_export_of_the_step_has_no_attention_op_from_the_temporal_blocks(tmp_path):
    onnx = pytest.importorskip("onnx")
    from hcdp_model.backends.ort import export_onnx

    model = HCDPModel(micro_config(temporal=True)).eval()
    path = export_onnx(ExportStep(model, 4), tmp_path / "step.onnx")
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "Attention" not in ops and "Softmax" in ops


def test_tensorrt_compile_keeps_its_timing_cache_in_the_persistent_hcdp_cache(
        tmp_path, monkeypatch):
    seen = {}
    fake = types.ModuleType("torch_tensorrt")
    fake.compile = lambda module, **kwargs: seen.update(kwargs) or module
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    class FakeStep(nn.Module):  # compile_step only needs example inputs and .to().eval()

        def example_inputs(self, device, dtype):
            return (torch.zeros(1),)

    api = trt.TensorRTApi(torch_tensorrt_version="2.8.0", tensorrt_version="10.3.0")
    with pytest.raises(trt.BackendError, match="needs a CUDA device"):
        trt.compile_step(FakeStep(), api, "fp16", torch.device("cpu"))
    trt.compile_step(FakeStep(), api, "fp16", torch.device("cuda"))
    path = seen["timing_cache_path"]
    assert path == str(tmp_path / "cache" / "hcdp" / "tensorrt" / "timing_cache.bin")
    assert (tmp_path / "cache" / "hcdp" / "tensorrt").is_dir()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    trt.compile_step(FakeStep(), api, "fp16", torch.device("cuda"))
    home = tmp_path / "home" / ".cache" / "hcdp"
    assert seen["timing_cache_path"] == str(home / "tensorrt" / "timing_cache.bin")
