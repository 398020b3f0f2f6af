"""Loading official DINOv2/DINOv3 backbone files.

State dicts built with the official names and shapes (tests/fixtures/dino_official_keys.json,
taken from the hub models instantiated without weights).
"""
import collections
import io
import json
from pathlib import Path
import pickle
import zipfile

from hcdp_model.backbone import VisionTransformer
from hcdp_model.config import BackboneConfig
from hcdp_model.pretrained import BackboneLoadError, load_backbone, resize_pos_embed
import pytest
import torch

FIXTURES = Path(__file__).parent.parent / "fixtures"
OFFICIAL = json.loads((FIXTURES / "dino_official_keys.json").read_text())["models"]
# Ours drops only these official tensors (documented in hcdp_model/pretrained.py).
DROPPED = (".attn.qkv.bias_mask", "local_cls_norm.")


def backbone_config(name: str) -> BackboneConfig:
    m = OFFICIAL[name]
    v3 = m["family"] == "dinov3"
    return BackboneConfig(family=m["family"], embed_dim=m["embed_dim"], depth=m["depth"],
                          num_heads=m["num_heads"],
                          patch_size=m["patch_size"], num_register_tokens=m["num_register_tokens"],
                          layerscale_init=1e-5 if v3 else 1.0,
                          intermediate_layers=tuple(range(m["depth"] - 4, m["depth"])))


def official_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(shape, generator=g) * 0.02 for k,
             shape in OFFICIAL[name]["state_dict"]}
    if "rope_embed.periods" in state:
        state["rope_embed.periods"] = torch.rand(state["rope_embed.periods"].shape,
                                                 generator=g) + 1
    for k in state:
        if k.endswith("bias_mask"):
            d = state[k].shape[0] // 3
            state[k] = torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)])
    return state


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_encoder_names_and_shapes_equal_the_official_release(name):
    cfg = backbone_config(name)
    resolution = 518 if cfg.family == "dinov2" else 224
    with torch.device("meta"):
        encoder = VisionTransformer(cfg, resolution)
    ours = {k: list(v.shape) for k, v in encoder.state_dict().items()}
    official = {k: shape for k,
                shape in OFFICIAL[name]["state_dict"] if not any(d in k for d in DROPPED)}
    assert ours == official


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vits14_reg", "dinov3_vits16"])
def test_official_file_loads_every_tensor_and_resizes_positions(tmp_path, name):
    cfg = backbone_config(name)
    encoder = VisionTransformer(cfg, 16 * cfg.patch_size)  # not the 518 grid of the release
    state = official_state(name)
    torch.save(state, tmp_path / "backbone.pth")
    report = load_backbone(encoder, tmp_path / "backbone.pth", strict=True)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    own = encoder.state_dict()
    for key in report.loaded:
        if key != "pos_embed":
            assert torch.equal(own[key], state[key]), key
    if cfg.family == "dinov2":
        assert own["pos_embed"].shape == (1, 1 + 16 * 16, cfg.embed_dim)
        assert len(report.resized) == 1
        torch.testing.assert_close(own["pos_embed"][:, 0], state["pos_embed"][:, 0])
    else:
        assert sum(k.endswith("bias_mask") for k in report.ignored) == cfg.depth
    with torch.no_grad():
        feats = encoder(torch.randn(1, 3, 16 * cfg.patch_size, 16 * cfg.patch_size))
    assert [f.shape[-1] for f in feats] == [16] * 4 and all(torch.isfinite(f).all() for f in feats)


def test_depth_anything_prefix_and_wrappers_are_stripped(tmp_path):
    cfg = backbone_config("dinov2_vits14")
    state = {"pretrained." + k: v for k, v in official_state("dinov2_vits14").items()}
    state["depth_head.projects.0.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "da2.pth")
    report = load_backbone(VisionTransformer(cfg, 518), tmp_path / "da2.pth")
    assert report.missing == [] and report.unexpected == ["depth_head.projects.0.weight"]


def test_a_file_of_another_model_is_an_error_not_a_warning(tmp_path):
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.bias": torch.zeros(10)},
               tmp_path / "resnet.pth")
    with pytest.raises(BackboneLoadError, match="no tensor matched the dinov2 encoder"):
        load_backbone(VisionTransformer(backbone_config("dinov2_vits14"), 224),
                      tmp_path / "resnet.pth")


def test_a_backbone_of_another_size_is_an_error_naming_a_shape(tmp_path):
    torch.save(official_state("dinov2_vitb14"), tmp_path / "b.pth")
    small = VisionTransformer(backbone_config("dinov2_vits14"), 224)
    with pytest.raises(BackboneLoadError, match=r"175 have other shapes \(e\.g\. cls_token file "
                                                r"\(1, 1, 768\) vs encoder \(1, 1, "
                                                r"384\)\).*different size"):
        load_backbone(small, tmp_path / "b.pth")


def test_partial_mismatch_is_reported_and_strict_refuses_it(tmp_path):
    state = official_state("dinov2_vits14")
    state["norm.weight"] = torch.zeros(385)
    del state["norm.bias"]
    torch.save(state, tmp_path / "s.pth")
    encoder = VisionTransformer(backbone_config("dinov2_vits14"), 224)
    report = load_backbone(encoder, tmp_path / "s.pth")
    assert report.mismatched == ["norm.weight file (385,) vs encoder (384,)"]
    assert report.missing == ["norm.bias"]
    assert "mismatched (1): norm.weight" in str(report)
    with pytest.raises(BackboneLoadError, match="strict load failed"):
        load_backbone(encoder, tmp_path / "s.pth", strict=True)


def test_pickled_code_in_a_pth_file_is_refused(tmp_path):
    class Boom:

        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"cls_token": Boom()}))
    with pytest.raises(BackboneLoadError, match="evil.pth: cannot read backbone weights"):
        load_backbone(VisionTransformer(backbone_config("dinov2_vits14"), 224),
                      tmp_path / "evil.pth")


def test_pos_embed_resize_is_identity_on_the_release_grid_and_keeps_a_ramp_a_ramp():
    ramp = torch.linspace(0, 1, 37).repeat(37, 1)  # varies along x only
    pos = torch.cat([torch.full((1, 1, 1), 7.0), ramp.reshape(1, 37 * 37, 1)], dim=1)
    assert resize_pos_embed(pos, 37, antialias=False) is pos
    for antialias in (False, True):
        out = resize_pos_embed(pos, 16, antialias)[0, 1:, 0].reshape(16, 16)
        assert out.shape == (16, 16) and torch.allclose(out[0], out[5])  # rows identical
        assert (out[0, 1:] > out[0, :-1]).all()                           # still increasing


def test_dinov3_rope_matches_the_documented_layout():
    cfg = backbone_config("dinov3_vits16")
    encoder = VisionTransformer(cfg, 224)
    k = torch.arange(16, dtype=torch.float32)
    torch.testing.assert_close(encoder.rope_embed.periods, 100 ** (k / 16))
    sin, cos = encoder.rope_embed(14, 20)
    assert sin.shape == (280, 64)
    torch.testing.assert_close(sin[:, :32], sin[:, 32:])  # tiled twice


def test_dinov3_key_bias_has_no_effect():
    cfg = backbone_config("dinov3_vits16")
    encoder = VisionTransformer(cfg, 64).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = encoder(x)
        for block in encoder.blocks:
            block.attn.qkv.bias[cfg.embed_dim:2 * cfg.embed_dim] += 5.0
        b = encoder(x)
    for fa, fb in zip(a, b):
        torch.testing.assert_close(fa, fb)


def _junk_files() -> dict[str, bytes]:
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:  # a zip that is not a torch archive
        archive.writestr("a/data.pkl", b"junk")
        archive.writestr("a/version", b"3")
    good = io.BytesIO()
    torch.save({"cls_token": torch.zeros(1, 1, 8)}, good)
    return {"text": b"hello world\n", "random": bytes(range(256)) * 20, "empty": b"",
            "foreign zip": zipped.getvalue(), "truncated": good.getvalue()[:200],
            "forbidden global": pickle.dumps(collections.OrderedDict)}


@pytest.mark.parametrize("kind", sorted(_junk_files()))
def test_a_junk_pth_file_is_a_one_line_error(tmp_path, kind):
    path = tmp_path / "junk.pth"
    path.write_bytes(_junk_files()[kind])
    message = (r"junk.pth: cannot read backbone weights .*; expected a .pth state dict or a "
               r".safetensors file")
    with pytest.raises(BackboneLoadError, match=message) as info:
        load_backbone(VisionTransformer(backbone_config("dinov2_vits14"), 224), path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_a_pth_is_not_unpickled_by_a_torch_whose_weights_only_mode_can_run_code(
        tmp_path, monkeypatch):
    torch.save(official_state("dinov2_vits14"), tmp_path / "backbone.pth")
    encoder = VisionTransformer(backbone_config("dinov2_vits14"), 224)
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(BackboneLoadError, match=r"refusing to unpickle a .pth with torch 2.5.1: "
                                                r"before 2.6 .*CVE-2025-32434"):
        load_backbone(encoder, tmp_path / "backbone.pth")
    monkeypatch.setattr(torch, "__version__", "2.6.0+cpu")
    assert load_backbone(encoder, tmp_path / "backbone.pth").loaded
