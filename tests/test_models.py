"""The network: the paper preset's size and cost, the decoder, offline ImageNet weights, checkpoints."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from lmliqa import presets
from lmliqa.contract import PreprocessContract
from lmliqa.models import weights as weights_mod
from lmliqa.models.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from lmliqa.models.decoder import PanelDecoderLayer
from lmliqa.models.network import ConvTokens, ViTTokens, build_model, count_parameters, gmacs_per_crop

torch.set_num_threads(2)


def test_import_lmliqa_and_runtimes_without_torch():
    code = ("import sys, lmliqa, lmliqa.runtimes, lmliqa.contract, lmliqa.config, lmliqa.data, lmliqa.cli, "
            "lmliqa.info; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_paper_preset_is_deiqt_size_and_cost():
    cfg = presets.get("paper").config
    with torch.device("meta"):
        model = build_model(cfg, pretrained="none")
    # method.md §2.3: encoder 21,674,496 + decoder layer 2,366,592 + panels 2,304 + head 384
    assert count_parameters(model.encoder) == 21_674_496
    assert count_parameters(model.decoder) == 2_366_592
    assert model.panels.numel() == 2_304 and model.head.weight.numel() == 384 and model.head.bias is None
    assert count_parameters(model) == 24_043_776
    assert gmacs_per_crop(cfg) == pytest.approx(4.67, abs=0.01)
    vit = model.encoder.vit
    assert vit.no_embed_class and tuple(vit.pos_embed.shape) == (1, 196, 384)  # pos-embed added before CLS
    assert len(vit.blocks) == 12 and vit.blocks[0].ls1.gamma.shape == (384,)   # LayerScale blocks
    assert vit.norm.eps == 1e-6


def test_panel_decoder_matches_torch_transformer_decoder_layer():
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(64, 4, 256, dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=True).eval()
    ours = PanelDecoderLayer(64, 4, 256).eval()
    assert ours.load_state_dict(ref.state_dict(), strict=True)
    tgt, mem = torch.randn(3, 6, 64), torch.randn(3, 49, 64)
    with torch.no_grad():
        out, attn = ours(tgt, mem, need_weights=True)
        torch.testing.assert_close(out, ref(tgt, mem), atol=1e-5, rtol=1e-5)
    assert attn.shape == (3, 6, 49)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 6))


@pytest.mark.parametrize("name", sorted(presets.names()))
def test_presets_forward_dynamic_batch(name):
    cfg = presets.get(name).config
    model = build_model(cfg, pretrained="none").eval()
    s = cfg.contract.crop_size
    for b in (1, 3):
        out = model.forward_all(torch.rand(b, 3, s, s) * 255, need_attn=True)
        assert out.score.shape == (b,) and out.feature.shape == (b, cfg.dim)
        assert out.attn.shape[:2] == (b, cfg.panels)
    assert isinstance(model.encoder, ConvTokens if "mobile" in name else ViTTokens)


def test_normalisation_happens_inside_the_network():
    cfg = presets.get("tiny").config
    model = build_model(cfg, pretrained="none").eval()
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 96, 96)).astype(np.float32)
    with torch.no_grad():
        tok = model.encoder(torch.from_numpy(cfg.contract.normalise(x)))
        direct = model.head(model.decoder(model.panels + tok.cls.unsqueeze(1), tok.patches)[0]).mean(dim=(1, 2))
        torch.testing.assert_close(model(torch.from_numpy(x)), direct, atol=1e-5, rtol=1e-5)


IMAGENET_CAT = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.mark.parametrize("backbone,mean,std", [
    ("mobilenetv2_100", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("tf_efficientnet_lite0", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ("tf_efficientnet_lite1", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ("tf_efficientnet_lite2", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
])
def test_offline_imagenet_weights_classify_wheel_photos(backbone, mean, std, wheel_photo):
    import timm

    model = timm.create_model(backbone, num_classes=1000).eval()
    weights_mod.load_offline_weights(model, backbone)
    contract = PreprocessContract(resize="shorter_side", resize_size=(256,), eval_rows=1, eval_cols=1,
                                  interpolation="bicubic", mean=mean, std=std)
    x = np.concatenate([contract.normalise(contract.eval_crops(wheel_photo(f)))
                        for f in ("chelsea.png", "coffee.png")])
    with torch.no_grad():
        probs = model(torch.from_numpy(x)).softmax(-1)
    top5 = probs.topk(5).indices.tolist()
    assert set(top5[0]) & set(IMAGENET_CAT), top5[0]
    assert ESPRESSO in top5[1], top5[1]
    assert probs[1, ESPRESSO] > 0.3


def test_offline_weights_feed_the_mobile_presets():
    import timm

    for name in ("mobile", "mobile-lite0", "mobile-lite1", "mobile-lite2"):
        cfg = presets.get(name).config
        model = build_model(cfg)  # offline weights
        ref = timm.create_model(cfg.backbone, num_classes=0)
        weights_mod.load_offline_weights(ref, cfg.backbone)
        for k, v in ref.state_dict().items():
            assert torch.equal(model.encoder.cnn.state_dict()[k], v), k


def test_offline_weights_checksum_is_enforced(monkeypatch):
    import dataclasses

    from lmliqa.errors import WeightsError

    b = presets.get_backbone("mobilenetv2_100")
    bad = dataclasses.replace(b, offline_weights=dataclasses.replace(b.offline_weights, sha256="0" * 64))
    monkeypatch.setitem(presets._BACKBONES, "mobilenetv2_100", bad)
    with pytest.raises(WeightsError, match="expected 0000"):
        weights_mod.offline_state_dict("mobilenetv2_100")
    with pytest.raises(WeightsError, match="no offline weights"):
        weights_mod.offline_state_dict("resnet50")


def test_the_model_registry_says_everything_about_a_preset_but_its_weights():
    """One entry per preset: backbone, offline weights and their hash, regions, scopes, recipe, licence; the network
    built from it reads its regions from the entry, and a preset's recipe ships in the package."""
    from lmliqa.models.network import build_model

    for p in presets.presets():
        b = p.backbone
        assert b.float_scope and b.weights_licence and set(b.network_regions) >= {"head", "decoder", "stem"}
        assert p.recipe_path is None or p.recipe_path.is_file(), p.name
        assert p.config.backbone == b.name and p.config.pretrained == b.pretrained
        if b.offline_weights:
            assert len(b.offline_weights.sha256) == 64 and b.offline_weights.pip.startswith(b.offline_weights.package
                                                                                            .replace("_", "-"))
        with torch.device("meta"):
            net = build_model(p.config, pretrained="none")
        assert net.regions == b.network_regions and net.encoder.kind == b.kind
    assert presets.get("mobile-lite1").recipe == "mobile"
    with pytest.raises(presets.PresetError, match="unknown preset 'nope'"):
        presets.get("nope")


def test_checkpoint_round_trip_is_exact(tmp_path):
    torch.manual_seed(1)
    model = build_model(presets.get("tiny").config, pretrained="none").eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, extra={"trained_on": "test"})
    back, meta = load_checkpoint(path)
    x = torch.rand(2, 3, 96, 96) * 255
    with torch.no_grad():
        assert torch.equal(model(x), back.eval()(x))
    assert meta["config"]["contract"] == presets.get("tiny").config.contract.to_dict()
    assert meta["extra"] == {"trained_on": "test"}
    assert read_metadata(path)["config"]["name"] == "tiny"
    assert not list(tmp_path.glob("*.tmp"))


def test_foreign_files_are_not_checkpoints(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="without lmliqa metadata"):
        load_checkpoint(tmp_path / "other.safetensors")
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(tmp_path / "pickle.pt")


def test_info_json_reports_presets_and_backends(capsys):
    from lmliqa.cli import main

    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    presets = {p["preset"]: p for p in info["presets"]}
    assert abs(presets["paper"]["params"] - 24.0e6) <= 0.1e6
    assert presets["paper"]["gmac_per_crop"] == pytest.approx(4.67, abs=0.01)
    assert presets["mobile"]["params"] < 6e6 and presets["mobile"]["pretrained"] == "offline"
    found = {t["target"]: t for t in info["targets"]}
    assert found["torch"]["stages"] == {"runtime": True} and found["torch"]["versions"]["torch"]
    assert set(found) == {"torch", "onnx", "openvino", "coreml", "tensorrt", "litert", "executorch", "web",
                          "qualcomm"}
