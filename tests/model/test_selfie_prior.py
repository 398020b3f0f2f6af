r"""SelfiePrior (hcdp_model/selfie_prior.py): MediaPipe selfie segmentation as a torch module.

The CPU tests always run (random weights). The parity tests compare the converted module with the
TFLite runtime on real photos and a random image; they need the converted weights, the .tflite
and an interpreter (`ai-edge-litert` or `tflite-runtime`), which live outside the project's venv:

    python3 -m venv /tmp/tfl-venv
    /tmp/tfl-venv/bin/pip install ai-edge-litert numpy tflite torch==2.13.0 safetensors \\
        pytest scikit-image
    pip download --no-deps mediapipe==0.10.14 -d /tmp/mpwheel
    unzip -j /tmp/mpwheel/mediapipe-0.10.14-*.whl \\
        mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite -d gen/selfie
    PYTHONPATH=. /tmp/tfl-venv/bin/python scripts/convert_selfie_prior.py \\
        gen/selfie/selfie_segmentation.tflite gen/selfie/selfie_prior
    OMP_NUM_THREADS=1 HCDP_SELFIE_PRIOR=gen/selfie/selfie_prior.safetensors PYTHONPATH=. \\
        /tmp/tfl-venv/bin/python -m pytest -s tests/model/test_selfie_prior.py

HCDP_SELFIE_TFLITE names the .tflite when it is not selfie_segmentation.tflite beside the
weights. Measured (ai-edge-litert 2.3.0, XNNPACK, torch 2.13.0 CPU): max |p_torch - p_tflite| =
2.0e-5 astronaut, 1.5e-5 camera, 6.0e-5 chelsea, 7e-13 noise; the decoder features agree to
1.0e-5 of their max abs (float32 rounding: a float64 torch run is as far from the runtime).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from hcdp_model.config import ConfigError
from hcdp_model.model import HCDPModel
from hcdp_model.preprocess import denormalize, IMAGENET_MEAN, IMAGENET_STD, preprocess
from hcdp_model.prior import content_box, PERSON_LOGIT_CAP
from hcdp_model.selfie_prior import (FEATURES, NUM_PARAMETERS, SameConv, SelfiePrior,
                                     TFLITE_LAYERS)
from hcdp_training.config import TrainConfig
from hcdp_training.stages import build_model, load_selfie_prior, prepare, swap_prior
import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from tests.model.helpers import activate_temporal, micro_config
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
PROB_TOL = 1e-4      # max abs difference of the person probability against the TFLite runtime
FEATURE_TOL = 5e-5   # max abs difference of the decoder features, relative to their max abs
GRAPH_TENSORS = 110  # float16 constants of the .tflite (one DEQUANTIZE each): 55 kernels + biases


def _random_model(feature: str = "dec8") -> SelfiePrior:
    torch.manual_seed(0)
    model = SelfiePrior(feature)
    with torch.no_grad():  # larger than the default init, so the gates and skips matter
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model.freeze()


# ---------------------------------------------------------------- always-run CPU tests


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_shapes_at_the_graph_size(feature: str) -> None:
    model = SelfiePrior(feature).freeze()
    prob, feats = model(torch.rand(2, 3, 256, 256))
    channels, stride = FEATURES[feature]
    assert prob.shape == (2, 1, 256, 256)
    assert feats.shape == (2, channels, 256 // stride, 256 // stride)
    assert model.embed_dim == channels


def test_other_sizes_divisible_by_32() -> None:
    maps = SelfiePrior().freeze().forward_features(torch.rand(1, 3, 320, 192))
    assert maps["dec8"].shape == (1, 24, 40, 24)
    assert maps["dec4"].shape == (1, 16, 80, 48)
    assert maps["dec2"].shape == (1, 16, 160, 96)
    assert maps["logits"].shape == (1, 1, 320, 192)


@pytest.mark.parametrize("shape", [(1, 3, 250, 256), (1, 3, 256, 200), (1, 4, 256, 256),
                                   (3, 256, 256)])
def test_bad_inputs_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        SelfiePrior()(torch.rand(shape))


def test_unknown_feature_is_refused() -> None:
    with pytest.raises(ValueError, match="feature"):
        SelfiePrior("dec16")


def test_output_is_a_probability() -> None:
    prob, feats = _random_model()(torch.rand(2, 3, 256, 256))
    assert torch.isfinite(prob).all() and torch.isfinite(feats).all()
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    assert prob.std() > 0  # not a constant map


def test_parameter_count_is_the_graphs() -> None:
    model = SelfiePrior()
    assert sum(p.numel() for p in model.parameters()) == NUM_PARAMETERS == 106_401
    assert len(model.state_dict()) == GRAPH_TENSORS
    assert not list(model.buffers())


def test_every_layer_has_one_tflite_source() -> None:
    prefixes = {k.rsplit(".", 1)[0] for k in SelfiePrior().state_dict()}
    assert prefixes == set(TFLITE_LAYERS)
    assert len(set(TFLITE_LAYERS.values())) == len(TFLITE_LAYERS) == GRAPH_TENSORS // 2


def test_state_dict_round_trips_through_safetensors(tmp_path: Path) -> None:
    model = _random_model("dec2")
    path = tmp_path / "selfie.safetensors"
    save_file(model.state_dict(), str(path))
    loaded = SelfiePrior.from_safetensors(path, feature="dec2")
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(load_file(str(path))[key], value)
    x = torch.rand(1, 3, 256, 256)
    for a, b in zip(model(x), loaded(x)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kernel,stride,size", [(3, 2, 16), (5, 2, 16), (3, 1, 9), (5, 1, 8),
                                                (3, 2, 15)])
def test_same_padding_is_tensorflows(kernel: int, stride: int, size: int) -> None:
    """SAME: out = ceil(n/s); total pad max((out-1)*s + k - n, 0), the extra one at the end."""
    torch.manual_seed(0)
    conv = SameConv(4, 4, kernel, stride, depthwise=True)
    x = torch.randn(1, 4, size, size)
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before, after = total // 2, total - total // 2
    ref = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, conv.bias,
                   stride=stride, groups=4)
    assert torch.allclose(conv(x), ref, atol=1e-6)
    assert conv(x).shape[-1] == out


def test_bilinear_x2_is_tflite_half_pixel() -> None:
    """Bilinear x2 equals TFLite's RESIZE_BILINEAR with half_pixel_centers.

    src = (dst + 0.5) / 2 - 0.5, the lower index clamped at 0 and the upper at n-1
    (tensorflow/lite/kernels/internal/reference/resize_bilinear.h).
    """
    from hcdp_model.selfie_prior import _up2

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7)).astype(np.float32)

    def axis(n_in: int) -> list[tuple[int, int, float]]:
        taps = []
        for d in range(2 * n_in):
            src = (d + 0.5) / 2 - 0.5
            lo = max(int(np.floor(src)), 0)
            hi = min(int(np.ceil(src)), n_in - 1)
            taps.append((lo, hi, src - lo))
        return taps

    ref = np.zeros((10, 14), np.float32)
    for i, (y0, y1, fy) in enumerate(axis(5)):
        for j, (x0, x1, fx) in enumerate(axis(7)):
            top = x[y0, x0] * (1 - fx) + x[y0, x1] * fx
            bottom = x[y1, x0] * (1 - fx) + x[y1, x1] * fx
            ref[i, j] = top * (1 - fy) + bottom * fy
    got = _up2(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert np.abs(got - ref).max() < 1e-6


def _converter():
    spec = importlib.util.spec_from_file_location(
        "convert_selfie_prior", ROOT / "scripts" / "convert_selfie_prior.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converter_refuses_a_file_that_is_not_tflite(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"\x00" * 64)
    assert _converter().main([str(bogus), str(tmp_path / "out")]) == 2
    assert "not a TFLite flatbuffer" in capsys.readouterr().err
    assert _converter().main([str(tmp_path / "missing.tflite"), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out.safetensors").exists()


# ---------------------------------------------------------------- parity with the runtime


def _weights() -> Path:
    env = os.environ.get("HCDP_SELFIE_PRIOR")
    if not env:
        pytest.skip("HCDP_SELFIE_PRIOR is not set (the converted .safetensors; see the module "
                    "docstring)")
    path = Path(env)
    if not path.is_file():
        pytest.skip(f"HCDP_SELFIE_PRIOR={env}: no such file")
    return path


def _tflite_path(weights: Path) -> Path:
    path = Path(os.environ.get("HCDP_SELFIE_TFLITE",
                               weights.with_name("selfie_segmentation.tflite")))
    if not path.is_file():
        pytest.skip(f"{path}: no .tflite (set HCDP_SELFIE_TFLITE)")
    return path


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            pytest.skip("no TFLite interpreter (pip install ai-edge-litert, in its own venv)")
    return Interpreter


def _run_tflite(interpreter, image: np.ndarray) -> dict[str, np.ndarray]:
    """Run one [256,256,3] float32 image; outputs by name, each [1,h,w,C] -> [C,h,w]."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
    interpreter.invoke()
    return {d["name"]: interpreter.get_tensor(d["index"])[0].transpose(2, 0, 1)
            for d in interpreter.get_output_details()}


def _photos() -> dict[str, np.ndarray]:
    """Real photos and noise as float32 RGB [256,256,3] in [0,1] (squashed, as MediaPipe does)."""
    skdata = pytest.importorskip("skimage.data")

    def fit(img: np.ndarray) -> np.ndarray:
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        x = torch.from_numpy(img[:, :, :3].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(256, 256), mode="bilinear", antialias=True,
                          align_corners=False)
        return x[0].permute(1, 2, 0).clamp(0, 1).contiguous().numpy()

    rng = np.random.default_rng(0)
    return {"astronaut": fit(skdata.astronaut()),  # a portrait
            "camera": fit(skdata.camera()),        # a man with a camera, grey
            "chelsea": fit(skdata.chelsea()),      # a cat: no person
            "random": rng.random((256, 256, 3), dtype=np.float32)}


@pytest.fixture(scope="module")
def converted() -> tuple[SelfiePrior, Path, object]:
    weights = _weights()
    return SelfiePrior.from_safetensors(weights), _tflite_path(weights), _interpreter_class()


def test_probability_matches_the_tflite_runtime(converted) -> None:
    model, tflite_path, interpreter_class = converted
    interpreter = interpreter_class(model_path=str(tflite_path), num_threads=1)
    try:
        interpreter.allocate_tensors()
    except RuntimeError as exc:  # the custom op needs the XNNPACK delegate or MediaPipe's op
        pytest.skip(f"this interpreter cannot run Convolution2DTransposeBias: {exc}")
    worst = 0.0
    for name, image in _photos().items():
        ref = next(iter(_run_tflite(interpreter, image).values()))[0]
        with torch.no_grad():
            prob = model(torch.from_numpy(image).permute(2, 0, 1)[None])[0][0, 0].numpy()
        diff = float(np.abs(prob - ref).max())
        print(f"\n{name}: max |p_torch - p_tflite| = {diff:.3g} (person share "
              f"{(ref > 0.5).mean():.3f})")
        assert diff <= PROB_TOL, name
        worst = max(worst, diff)
    print(f"worst probability difference {worst:.3g}")


def test_decoder_features_match_the_tflite_runtime(converted) -> None:
    """The graph cut before the custom op, its outputs set to the three decoder stages."""
    model, tflite_path, interpreter_class = converted
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        pytest.skip("needs ai-edge-litert's flatbuffer schema (object API) to rewrite the graph")
    tensors = {"dec8": "add_7__xeno_compat__1", "dec4": "add_10__xeno_compat__1",
               "dec2": "add_13__xeno_compat__1"}
    graph = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite_path.read_bytes(), 0))
    sub = graph.subgraphs[0]
    index = {t.name.decode(): i for i, t in enumerate(sub.tensors)}
    sub.outputs = [index[n] for n in tensors.values()]
    last = max(i for i, op in enumerate(sub.operators) if set(op.outputs) & set(sub.outputs))
    sub.operators = sub.operators[:last + 1]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(graph.Pack(builder), file_identifier=b"TFL3")
    interpreter = interpreter_class(model_content=bytes(builder.Output()), num_threads=1)
    interpreter.allocate_tensors()
    for name, image in _photos().items():
        refs = _run_tflite(interpreter, image)
        with torch.no_grad():
            maps = model.forward_features(torch.from_numpy(image).permute(2, 0, 1)[None])
        for key, tensor in tensors.items():
            ref, got = refs[tensor], maps[key][0].numpy()
            scale = max(float(np.abs(ref).max()), 1e-6)
            rel = float(np.abs(got - ref).max()) / scale
            print(f"\n{name} {key}: max abs diff / max abs = {rel:.3g} (max abs {scale:.3g})")
            assert rel <= FEATURE_TOL, (name, key)


def test_converter_reproduces_the_weights(converted, tmp_path: Path) -> None:
    pytest.importorskip("tflite", reason="the converter needs the PyPI package `tflite`")
    _, tflite_path, _ = converted
    out = tmp_path / "again"
    assert _converter().main([str(tflite_path), str(out)]) == 0
    fresh, shipped = load_file(str(out) + ".safetensors"), load_file(str(_weights()))
    assert fresh.keys() == shipped.keys()
    assert all(torch.equal(fresh[k], shipped[k]) for k in fresh)


# ------------------------------------------------------------ as the model's prior (kind selfie)


def _selfie_model(temporal: bool = False, kind: str = "selfie") -> HCDPModel:
    torch.manual_seed(0)
    model = HCDPModel(micro_config(temporal=temporal, prior=kind))
    with torch.no_grad():  # a trained-like prior path: psi and phi's person column non-zero
        model.human_prior.psi.weight.normal_(0.0, 0.5)
        model.fusion.layers[0].weight[:, -1].normal_(0.0, 0.5)
        for p in model.human_prior.selfie.parameters():  # person logits within the cap
            p.copy_(torch.randn_like(p) * 0.2)
    return model.eval()


@pytest.mark.parametrize("kind, z_dim", [("selfie", FEATURES["dec8"][0] + 1),
                                         ("learned_selfie", 8 + FEATURES["dec8"][0] + 1)])
def test_selfie_prior_model_runs_at_a_size_the_network_cannot_take_and_uses_the_person_map(
        kind: str, z_dim: int) -> None:
    model = _selfie_model(kind=kind)
    assert model.cfg.resolution % 32  # 56 px: the prior resizes to 64 and back
    clip = torch.randn(1, 2, 3, 56, 56)
    out = model(clip)
    assert out["depth"].shape == (1, 2, 1, 56, 56)
    assert model.fusion.layers[0].weight.shape[1] == 8 + 8 + 1  # neck + CNN branch + person
    z, person = model.human_prior.embedding(clip[0])
    assert z.shape[1] == z_dim and person.shape == (2, 1, 56, 56)
    assert person.abs().max() <= PERSON_LOGIT_CAP
    with torch.no_grad():  # the person map reaches depth through phi and psi ...
        model.fusion.layers[0].weight[:, -1] = 0.0
        model.human_prior.psi.weight[:, -(FEATURES["dec8"][0] + 1):] = 0.0
        plain = model(clip)
    assert (plain["depth"] - out["depth"]).abs().max() > 1e-4
    with torch.no_grad():  # ... and the mask through mask_gain * person logits
        model.human_prior.mask_gain.zero_()
        no_gain = model(clip)["mask_logits"]
    torch.testing.assert_close(plain["mask_logits"] - no_gain, person.view(1, 2, 1, 56, 56))


def test_selfie_prior_un_normalises_the_frames_it_is_given():
    model = _selfie_model()
    rgb = torch.rand(1, 3, 64, 64)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    _, person = model.human_prior.embedding((rgb - mean) / std)
    expected = model.human_prior.selfie.forward_features(rgb)["logits"]
    torch.testing.assert_close(person, expected.clamp(-PERSON_LOGIT_CAP, PERSON_LOGIT_CAP))


@pytest.mark.parametrize("in_h, in_w", [(30, 64), (64, 20), (64, 64), (1, 64), (47, 61)])
def test_content_box_is_where_preprocess_puts_the_image(in_h: int, in_w: int) -> None:
    image = np.random.default_rng(0).integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
    x, box = preprocess(image, 64)
    centre, half = content_box(x)
    want_centre = [(2 * box.left + box.new_w) / 64 - 1, (2 * box.top + box.new_h) / 64 - 1]
    want_half = [box.new_w / 64, box.new_h / 64]
    torch.testing.assert_close(centre, torch.tensor([want_centre]))
    torch.testing.assert_close(half, torch.tensor([want_half]))


def test_content_box_of_a_frame_without_an_image_is_the_whole_frame() -> None:
    centre, half = content_box(torch.zeros(2, 3, 16, 24))
    assert centre.tolist() == [[0.0, 0.0]] * 2 and half.tolist() == [[1.0, 1.0]] * 2


def test_selfie_network_sees_the_image_stretched_to_its_input_and_never_the_bands() -> None:
    """As MediaPipe runs it (ImageToTensor, keep_aspect_ratio false): the content, stretched."""
    model = _selfie_model()
    prior = model.human_prior
    image = np.random.default_rng(1).integers(0, 256, (24, 64, 3), dtype=np.uint8)
    x, box = preprocess(image, 64)  # bands of 20 rows above and below
    seen = []
    hook = prior.selfie.stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        person, _ = prior.selfie_maps(x, None)
    finally:
        hook.remove()
    content = denormalize(x)[..., box.top:box.top + box.new_h, :].clamp(0.0, 1.0)
    stretched = F.interpolate(content, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(seen[0], stretched, atol=1e-5, rtol=0)
    # its logits come back into the box; the bands are no person
    logits = prior.selfie(stretched)[0].logit().clamp(-PERSON_LOGIT_CAP, PERSON_LOGIT_CAP)
    back = F.interpolate(logits, size=(box.new_h, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(person[..., box.top:box.top + box.new_h, :], back, atol=1e-3,
                               rtol=0)
    assert (person[..., :box.top, :] == -PERSON_LOGIT_CAP).all()
    assert (person[..., box.top + box.new_h:, :] == -PERSON_LOGIT_CAP).all()


def test_selfie_zooms_run_the_network_on_the_content_stretched_larger_and_take_the_max() -> None:
    """prior.selfie_zooms (1, 2): logits = max(zoom 1's, zoom 2's); features from zoom 1."""
    prior = _selfie_model().human_prior
    image = np.random.default_rng(3).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    x, box = preprocess(image, 64)  # bands of 12 rows above and below
    single, feat = prior.selfie_maps(x, None)
    seen = []
    hook = prior.selfie.stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        prior.zooms = (2.0,)
        zoomed, _ = prior.selfie_maps(x, None)
        prior.zooms = (1.0, 2.0)
        both, both_feat = prior.selfie_maps(x, None)
    finally:
        hook.remove()
        prior.zooms = (1.0,)
    assert seen[0].shape[-2:] == (128, 128)  # the content stretched to twice the input size
    content = denormalize(x)[..., box.top:box.top + box.new_h, :].clamp(0.0, 1.0)
    stretched = F.interpolate(content, size=(128, 128), mode="bilinear", align_corners=False)
    torch.testing.assert_close(seen[0], stretched, atol=1e-5, rtol=0)
    assert not torch.allclose(zoomed, single)
    torch.testing.assert_close(both, torch.maximum(single, zoomed))
    torch.testing.assert_close(both_feat, feat)
    assert (both[..., :box.top, :] == -PERSON_LOGIT_CAP).all()  # the bands stay no person


def test_selfie_zooms_are_checked_and_saved(tmp_path) -> None:
    from hcdp_model.checkpoint import load_checkpoint, save_checkpoint

    for zooms, message in (((), r"expected 1 to 4 scales, got 0"),
                           ((1.0, 0.5), r"selfie_zooms\[1\]: expected a value in \[1.0, 8.0\]"),
                           ((1.0,) * 5, r"expected 1 to 4 scales, got 5")):
        cfg = micro_config(prior="selfie")
        cfg.prior.selfie_zooms = zooms
        with pytest.raises(ConfigError, match=message):
            cfg.validate()
    model = HCDPModel(micro_config(prior="selfie")).eval()
    with pytest.raises(ConfigError, match="expected a value in"):
        model.set_selfie_zooms((0.5,))
    assert model.cfg.prior.selfie_zooms == (1.0,) and model.human_prior.zooms == (1.0,)
    model.set_selfie_zooms((1, 2))  # what scripts/bundle_model.py --selfie-zooms calls
    with pytest.raises(ValueError, match="no selfie prior"):
        HCDPModel(micro_config()).set_selfie_zooms((1.0, 2.0))
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "m")).eval()
    assert loaded.human_prior.zooms == (1.0, 2.0)
    clip = torch.randn(1, 1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip)["mask_logits"], model(clip)["mask_logits"])


def test_selfie_prior_treats_each_frame_of_a_batch_with_its_own_box() -> None:
    prior = _selfie_model(kind="learned_selfie").human_prior
    rng = np.random.default_rng(2)
    frames = [preprocess(rng.integers(0, 256, shape, dtype=np.uint8), 64)[0]
              for shape in ((24, 64, 3), (64, 40, 3), (64, 64, 3))]
    z, person = prior.embedding(torch.cat(frames))
    for i, frame in enumerate(frames):
        z_i, person_i = prior.embedding(frame)
        torch.testing.assert_close(z[i:i + 1], z_i, atol=1e-5, rtol=0)
        torch.testing.assert_close(person[i:i + 1], person_i, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["selfie", "learned_selfie"])
def test_selfie_prior_stays_frozen_through_stage_preparation(tmp_path, kind: str) -> None:
    model = _selfie_model(temporal=True, kind=kind)
    cfg = TrainConfig.from_dict({"stage": 2, "out": str(tmp_path), "model": {"init": "x"},
                                 "data": {"root": "x", "frames": 2}})
    prepare(model, cfg)
    frozen = [*model.human_prior.selfie.parameters(),
              *(model.human_prior.encoder.parameters() if model.human_prior.encoder else [])]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert model.human_prior.psi.weight.requires_grad and model.human_prior.mask_gain.requires_grad
    assert model.fusion.layers[0].weight.requires_grad


@pytest.mark.parametrize("temporal", [False, True])
def test_swap_to_learned_selfie_keeps_every_weight_and_depth_and_normals_exactly(
        temporal: bool) -> None:
    torch.manual_seed(1)
    old = HCDPModel(micro_config(temporal=temporal))
    if temporal:
        old.insert_fused_temporal_block()
        activate_temporal(old)
    with torch.no_grad():
        old.human_prior.psi.weight.normal_(0.0, 0.5)  # our prior's contribution is kept
    new = swap_prior(old.eval(), "learned_selfie").eval()
    assert new.cfg.prior.kind == "learned_selfie" and old.cfg.prior.kind == "learned"
    clip = torch.randn(1, 3, 3, 56, 56)
    with torch.no_grad():
        a, b = old(clip, window=3), new(clip, window=3)
        _, person = new.human_prior.embedding(clip[0])
    assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["normal"], b["normal"])
    torch.testing.assert_close(b["mask_logits"], a["mask_logits"] + person.view(1, 3, 1, 56, 56))
    with torch.no_grad():  # ... and the person column does reach the depth once trained
        new.fusion.layers[0].weight[:, -1] = 1.0
        assert (new(clip, window=3)["depth"] - a["depth"]).abs().max() > 1e-4


def test_swap_to_selfie_drops_only_what_the_old_prior_added():
    torch.manual_seed(1)
    old = HCDPModel(micro_config())
    with torch.no_grad():
        old.human_prior.psi.weight.zero_()
        old.human_prior.psi.bias.zero_()
    new = swap_prior(old.eval(), "selfie").eval()
    assert new.human_prior.encoder is None
    clip = torch.randn(1, 2, 3, 56, 56)
    with torch.no_grad():
        a, b = old(clip), new(clip)
    assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["normal"], b["normal"])


def test_selfie_init_loads_converted_weights_and_refuses_other_files_and_models(tmp_path):
    model = _selfie_model()
    source = _random_model()
    path = tmp_path / "selfie_prior.safetensors"
    save_file(source.state_dict(), str(path))
    load_selfie_prior(model, str(path))
    for name, value in source.state_dict().items():
        assert torch.equal(model.human_prior.selfie.state_dict()[name], value)
    assert not any(p.requires_grad for p in model.human_prior.selfie.parameters())
    bad = tmp_path / "other.safetensors"
    save_file({"stem.weight": torch.zeros(1)}, str(bad))
    with pytest.raises(ConfigError, match="not the converted selfie segmentation weights"):
        load_selfie_prior(model, str(bad))
    with pytest.raises(ConfigError, match="has no selfie network"):
        load_selfie_prior(HCDPModel(micro_config()), str(path))


def test_train_config_checks_the_prior_swap_and_stage_0_refuses_the_selfie_prior(tmp_path):
    base = {"stage": 1, "out": str(tmp_path), "data": {"root": "x"}}
    with pytest.raises(ConfigError, match="model.prior_kind: expected one of"):
        TrainConfig.from_dict({**base, "model": {"init": "x", "prior_kind": "cse"}})
    with pytest.raises(ConfigError, match="expected model.init too"):
        TrainConfig.from_dict({**base, "model": {"prior_kind": "selfie"}})
    config = tmp_path / "micro.yaml"
    micro_config(prior="selfie").save(config)
    cfg = TrainConfig.from_dict({**base, "stage": 0, "model": {"config": str(config)}})
    with pytest.raises(ConfigError, match="prior.kind selfie is trained already"):
        build_model(cfg)


def test_swap_back_from_learned_selfie_drops_the_person_column_and_keeps_our_prior():
    torch.manual_seed(2)
    old = HCDPModel(micro_config())
    with torch.no_grad():
        old.human_prior.psi.weight.normal_(0.0, 0.5)
    there = swap_prior(old.eval(), "learned_selfie")
    back = swap_prior(there, "learned").eval()
    clip = torch.randn(1, 2, 3, 56, 56)
    with torch.no_grad():
        a, b = old(clip), back(clip)
    for name in a:
        assert torch.equal(a[name], b[name]), name
