"""``backbone.name: alexnet`` (supplementary section 1.3, docs/method.md section 1): levels against torchvision's
AlexNet, the size rule, weight resolution, the equal-resolution cascade networks, cache windows, and the whole
pipeline (train --stage all, translate) and ``deepcascade features`` with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from torchvision.models import alexnet

from deepcascade.backbones import backbone_from_config, build_backbone
from deepcascade.backbones.specs import SPECS
from deepcascade.config import build_config
from deepcascade.errors import UserError
from deepcascade.features.extract import crop_consistency
from deepcascade.models import inversion_nets, level_nets
from deepcascade.networks import CascadeTranslator, DeepTranslator

from conftest import save_torchvision_weights, torchvision_levels

CONV_INDEX = {1: 0, 2: 3, 3: 6, 4: 8, 5: 10}  # torchvision alexnet().features, docs/method.md section 1
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference(module_tmp):
    """A random torchvision AlexNet saved with full-model keys (as torchvision's file) and features-only keys."""
    d = module_tmp("alexnet_weights")
    torch.manual_seed(7)
    net = alexnet().eval()
    return (net, *save_torchvision_weights(net, d, "alexnet"))


def _reference_features(net, x, relu):
    return torchvision_levels(net, x, CONV_INDEX, relu)


@pytest.mark.parametrize("size", [32, 64, 224])
def test_levels_equal_torchvision_through_backbone_weights(reference, size):
    net, full, _ = reference
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    for relu in (False, True):
        cfg = build_config(extra={"data": {"image_size": size, "load_size": size},
                                  "backbone": {"name": "alexnet", "weights": str(full), "relu": relu}})
        bb = backbone_from_config(cfg)
        with torch.no_grad():
            got = bb(x)  # all levels in one call: no level may be overwritten by a later (in-place) layer
        ref = _reference_features(net, x, relu)
        for l in CONV_INDEX:
            assert got[l].shape == ref[l].shape, (size, relu, l)
            assert (got[l] - ref[l]).abs().max().item() <= 1e-5, (size, relu, l)
            assert bool((got[l] >= 0).all()) == relu, (size, relu, l)  # pre-ReLU levels have negatives
            assert bb.feature_shape(l, size) == tuple(got[l].shape[1:])
        assert bb.weights_sha256 and bb.channels == {1: 64, 2: 192, 3: 384, 4: 256, 5: 256}


def test_slices_continue_the_network(reference):
    _, full, _ = reference
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for relu in (False, True):
        bb = build_backbone("alexnet", str(full), relu=relu)
        with torch.no_grad():
            f = bb(x)
            for l in (1, 2, 3, 4):
                assert torch.equal(bb.slice(l)(f[l]), f[l + 1]), (relu, l)


def test_features_only_keys_load_and_foreign_files_are_refused(reference, tmp_path):
    net, full, feats = reference
    a, b = build_backbone("alexnet", str(full)), build_backbone("alexnet", str(feats))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    vgg_like = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}, vgg_like)
    with pytest.raises(UserError, match="does not fit AlexNet"):
        build_backbone("alexnet", str(vgg_like))


def test_level_sides_follow_the_spec_on_the_16_px_grid_only():
    """The sizes config accepts are exactly those whose every level is H/stride - 1 (at least 1): multiples of
    16 from 32. Others are refused: 232 px gives 57, 28, 13 where the rule says 57, 28, 13.5."""
    spec = SPECS["alexnet"]
    f = alexnet().features.eval()
    for size in range(16, 273, 8):
        x = torch.zeros(1, 3, size, size)
        sides = {}
        with torch.no_grad():
            for i, layer in enumerate(f[:12]):
                if x.shape[-1] < 3 and isinstance(layer, torch.nn.MaxPool2d):
                    break
                x = layer(x)
                sides.update({l: x.shape[-1] for l, j in CONV_INDEX.items() if j == i})
        exact = len(sides) == 5 and all(sides[l] + 1 == size / s.stride >= 2 for l, s in spec.levels.items())
        assert (spec.size_problem(size, "x") is None) == exact, (size, sides)
        if exact:
            assert all(spec.feature_size(l, size) == sides[l] for l in CONV_INDEX)
    assert spec.min_size == 32 and spec.size_multiple == 16
    assert [spec.feature_size(l, 224) for l in CONV_INDEX] == [55, 27, 13, 13, 13]
    for bad in (16, 232):
        with pytest.raises(UserError, match=r"data.image_size.*alexnet.*multiple of 16"):
            build_config(extra={"backbone": {"name": "alexnet"}, "data": {"image_size": bad, "load_size": 256}})


def test_imagenet_weights_offline_name_the_alexnet_file(tmp_path):
    torch_home = tmp_path / "torch_home"
    torch_home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DEEPCASCADE_ALEXNET_WEIGHTS"}
    env.update(DEEPCASCADE_OFFLINE="1", TORCH_HOME=str(torch_home),
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    code = "from deepcascade.backbones import build_backbone; build_backbone('alexnet', 'imagenet')"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                       cwd=str(tmp_path))
    assert r.returncode != 0
    assert "alexnet-owt-7be5be79.pth" in r.stderr and str(torch_home) in r.stderr
    assert "DEEPCASCADE_ALEXNET_WEIGHTS" in r.stderr and "backbone.weights" in r.stderr


def test_hub_cache_and_environment_variable_resolve_the_file(reference, tmp_path, monkeypatch):
    net, full, _ = reference
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "alexnet-owt-7be5be79.pth").write_bytes(full.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("DEEPCASCADE_OFFLINE", "1")
    monkeypatch.delenv("DEEPCASCADE_ALEXNET_WEIGHTS", raising=False)
    bb = build_backbone("alexnet", "imagenet")
    assert bb.weights_file == str(hub / "alexnet-owt-7be5be79.pth")
    assert torch.equal(bb.features[0].weight, net.features[0].weight)
    monkeypatch.setenv("DEEPCASCADE_ALEXNET_WEIGHTS", str(full))
    assert build_backbone("alexnet", "imagenet").weights_file == str(full)


@pytest.mark.parametrize("size", [32, 64, 224])
def test_cascade_and_inversion_networks_fit_every_level(size):
    """T^l maps level l+1 to exactly level l's side (stride 1 between conv3..conv5, 2s + 1 below), the critics
    take that side, and I_l returns the image size from every level, trimmed ones included."""
    bb = build_backbone("alexnet", "random")
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        f = bb(x)
        for level in (4, 3, 2, 1):
            nets = level_nets(bb, level, size, critic_width=8, predictor_width=8)
            t, m = nets["T_AB"], nets["M_AB"]
            assert t.scale == (1 if level >= 3 else 2) and t.output_padding == (0 if level >= 3 else 1)
            out = t(f[level + 1], m(f[level]))
            assert out.shape == f[level].shape, (size, level)
            assert nets["D_A"](out).shape == (2,)
            assert t.arch["args"]["scale"] == t.scale  # stored in snapshots, so loading rebuilds the same net
        for level in (5, 4, 3, 2, 1):
            inv = inversion_nets(bb.channels[level], bb.strides[level], False, trim=1)["I"]
            assert inv(f[level]).shape == (2, 3, size, size), (size, level)
        assert DeepTranslator(256, gn_groups=8)(f[5]).shape == f[5].shape


def test_stride_one_translator_keeps_vgg_default_bit_identical():
    """The default arguments build exactly the old network (same parameters from the same seed)."""
    torch.manual_seed(0)
    a = CascadeTranslator(16, 8)
    torch.manual_seed(0)
    b = CascadeTranslator(16, 8, scale=2, output_padding=0)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert isinstance(a.up, torch.nn.ConvTranspose2d) and a.output_size(7) == 14
    c = CascadeTranslator(16, 8, scale=1)
    assert isinstance(c.up, torch.nn.Conv2d) and c.output_size(7) == 7
    with pytest.raises(ValueError):
        CascadeTranslator(16, 8, scale=1, output_padding=1)


def test_cached_windows_align_with_the_features_of_the_crop():
    """A window at a 16-px offset of the features of the whole square is the features of the cropped image
    (away from the border, where zero padding differs): position i of level l sits at pixel 16 i / s_l + ..."""
    bb = build_backbone("alexnet", "random")
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    err = crop_consistency(bb, images, levels=[1, 2], image_size=96, margin=3)
    assert err[1] < 1e-6 and err[2] < 1e-6, err
    # one position off (offset 16 is position 4 of level 1, not 5), the same comparison is far from equal
    full, crop = bb(images, [1])[1], bb(images[..., 16:112, 16:112], [1])[1]
    assert crop.shape[-1] == 23  # another input size: equal within float rounding, not bit for bit
    assert (full[..., 4:27, 4:27] - crop)[..., 3:-3, 3:-3].abs().max() < 1e-5
    assert (full[..., 5:28, 5:28] - crop)[..., 3:-3, 3:-3].abs().max() > 1e-2


def test_features_command_with_alexnet(reference, tmp_path):
    net, full, _ = reference
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "a.png")
    out = tmp_path / "f.safetensors"
    r = subprocess.run([sys.executable, "-m", "deepcascade", "features", "--backbone", "alexnet", "--weights",
                        str(full), "--images", str(tmp_path / "imgs"), "--image-size", "48", "--out", str(out),
                        "--device", "cpu"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    from deepcascade.data import transforms
    from deepcascade.data.images import load_image

    ref = _reference_features(net, transforms.center_square(load_image(tmp_path / "imgs" / "a.png"), 48)[None],
                              False)
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["backbone"] == "alexnet"
        for l in CONV_INDEX:
            g = f.get_tensor(f"a.png/level{l}")
            assert g.shape == ref[l].shape[1:] == (ref[l].shape[1], 48 // SPECS["alexnet"].levels[l].stride - 1,
                                                   48 // SPECS["alexnet"].levels[l].stride - 1)
            assert (g - ref[l][0]).abs().max().item() <= 1e-5
    r = subprocess.run([sys.executable, "-m", "deepcascade", "features", "--backbone", "alexnet", "--weights",
                        "random", "--images", str(tmp_path / "imgs"), "--image-size", "40", "--out",
                        str(tmp_path / "g.safetensors")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2 and "--image-size is 40" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_every_command_with_alexnet(tmp_path, tiny_config, synthetic_data):
    """train --stage all (random AlexNet, 32 px crops of 48 px squares, deepVAE on) down to level 2, so the
    cascade and the deepVAE have stride-1 (5 -> 4 -> 3) and 2s + 1 (3 -> 2) translators and I_2 inverts a
    trimmed level; then translate, synthesize and evaluate, whose outputs have the image size."""
    data = synthetic_data(n=6, size=48, n_test=2)
    tiny = {"steps": 2, "batch_size": 2, "critic_width": 16}
    cfg = tiny_config(tmp_path / "cfg.yaml", data, name="alex", backbone={"name": "alexnet", "weights": "random"},
                      data={"image_size": 32, "load_size": 48}, engine={"checkpoint_every": 1000},
                      invert={"levels": [2], "steps": 2, "batch_size": 2, "lambda_adv": 0.0},
                      deep={**tiny, "gn_groups": 8}, cascade={**tiny, "final_level": 2, "predictor_width": 16},
                      synth={**tiny, "enabled": True, "final_level": 2, "n_critic": 1, "nz": 16, "nz_level": 8,
                             "mapping_width": 16, "gn_groups": 8},
                      cache={"levels": [5, 4, 3, 2]})
    run = tmp_path / "run"

    def cli(*args, timeout=900):
        r = subprocess.run([sys.executable, "-m", "deepcascade", *map(str, args)], capture_output=True, text=True,
                           cwd=REPO, timeout=timeout)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    r = cli("train", cfg, "--stage", "all", "--run-dir", run)
    for stage in ("invert2", "deep", "cascade4", "cascade3", "cascade2", "synth_a5", "synth_a2", "synth_b2"):
        assert f"{stage}: done" in r.stdout and (run / "models" / f"{stage}.pt").is_file()
    out = tmp_path / "out"
    cli("translate", "--run", run, "--input", data / "testA", "--out", out, "--direction", "a2b", "--save-levels")
    results = sorted(out.glob("*.png"))
    assert len(results) == 2 and (out / "index.html").is_file()
    assert all(Image.open(p).size == (32, 32) for p in results)
    cli("synthesize", "--run", run, "--domain", "b", "--n", "2", "--out", tmp_path / "syn", "--save-levels")
    samples = sorted((tmp_path / "syn").glob("sample_*.png"))
    assert len(samples) == 2 and all(Image.open(p).size == (32, 32) for p in samples)
    cli("evaluate", "--run", run, "--out", tmp_path / "eval", "--metrics", "classifier,layout")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["a2b"]["classifier"]["kind"] == "efficientnet_lite0"  # independent of the AlexNet translator
    assert metrics["a2b"]["images"]["fake"] == 2

    from deepcascade import Translator

    t = Translator.from_run(run, device="cpu")
    assert {int(l): t.cascade.levels[l]["T_AB"].scale for l in t.cascade.levels} == {4: 1, 3: 1, 2: 2}
    y, levels = t.translate_tensor(torch.rand(1, 3, 32, 32), "b2a", return_levels=True)
    assert y.shape == (1, 3, 32, 32) and set(levels) == {2}
    with pytest.raises(ValueError, match="at least 32"):
        t.translate_tensor(torch.rand(1, 3, 16, 16))
