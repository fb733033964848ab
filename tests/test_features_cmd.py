"""``deepcascade features`` and the VGG-19 backbone against torchvision's reference implementation."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from torchvision.models import vgg19

from deepcascade.backbones import build_backbone
from deepcascade.cli import main
from deepcascade.data import transforms
from deepcascade.data.images import load_image

from conftest import save_torchvision_weights, torchvision_levels

CONV_INDEX = {1: 0, 2: 5, 3: 10, 4: 19, 5: 28}  # docs/method.md section 1
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference(module_tmp):
    """A random torchvision VGG-19, saved with full-model keys and with features-only keys ('N.weight')."""
    d = module_tmp("weights")
    torch.manual_seed(123)
    net = vgg19().eval()
    return (net, *save_torchvision_weights(net, d, "vgg19"))


def _reference_features(net, x, relu):
    return torchvision_levels(net, x, CONV_INDEX, relu)


@pytest.mark.parametrize("keys", ["full", "features"])
def test_backbone_matches_torchvision(reference, keys):
    net, full, feats = reference
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for relu in (True, False):
        bb = build_backbone("vgg19", str(full if keys == "full" else feats), relu=relu)
        with torch.no_grad():
            got = bb(x)
        ref = _reference_features(net, x, relu)

        for l in CONV_INDEX:  # several levels in one call: no level may be overwritten by a later layer
            assert (got[l] - ref[l]).abs().max().item() <= 1e-5, (keys, relu, l)
            assert (got[l].min() >= 0) == relu


def _images(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    (folder / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(folder / "sub" / "b.png")
    good = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    good.save(folder / "c.jpg", quality=90)
    data = (folder / "c.jpg").read_bytes()
    (folder / "c.jpg").write_bytes(data[: len(data) // 3])  # truncated: corrupt
    return ["a.png", "sub/b.png"]


@pytest.mark.parametrize("relu", [False, True])
def test_features_command_matches_torchvision(tmp_path, reference, relu, capsys, caplog):
    net, _, feats_file = reference
    names = _images(tmp_path / "imgs")
    out = tmp_path / "out" / "feats.safetensors"
    argv = ["features", "--backbone", "vgg19", "--weights", str(feats_file), "--images", str(tmp_path / "imgs"),
            "--levels", "1,2,3,4,5", "--image-size", "32", "--out", str(out), "--device", "cpu"]
    assert main(argv + (["--relu"] if relu else [])) == 0
    err = capsys.readouterr().err
    assert "c.jpg" in err and "c.jpg" in caplog.text  # the corrupt file is named
    assert not list(out.parent.glob("*.tmp*"))  # written atomically
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
        assert keys == {f"{n}/level{l}" for n in names for l in CONV_INDEX}
        assert meta["relu"] == ("true" if relu else "false") and meta["image_size"] == "32"
        assert meta["backbone"] == "vgg19" and len(meta["weights_sha256"]) == 64
        got = {k: f.get_tensor(k) for k in keys}
    for n in names:
        x = transforms.center_square(load_image(tmp_path / "imgs" / n), 32)[None]
        ref = _reference_features(net, x, relu)
        for l in CONV_INDEX:
            g = got[f"{n}/level{l}"]
            assert g.shape == ref[l].shape[1:]
            assert (g - ref[l][0]).abs().max().item() <= 1e-5, (n, l)


def test_features_command_user_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["features", "--weights", "random", "--images", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "no usable image" in capsys.readouterr().err
    _images(tmp_path / "imgs")
    assert main(["features", "--weights", "random", "--images", str(tmp_path / "imgs"), "--levels", "0,6",
                 "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "--levels" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


def test_imagenet_weights_offline_is_a_clear_error(tmp_path):
    _images(tmp_path / "imgs")
    torch_home = tmp_path / "torch_home"
    torch_home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DEEPCASCADE_VGG19_WEIGHTS"}
    env.update(DEEPCASCADE_OFFLINE="1", TORCH_HOME=str(torch_home),
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "deepcascade", "features", "--weights", "imagenet", "--images",
                        str(tmp_path / "imgs"), "--out", str(tmp_path / "o.safetensors")],
                       env=env, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert "vgg19-dcbb9e9d.pth" in r.stderr and str(torch_home) in r.stderr and "backbone.weights" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.safetensors").exists()
