"""Networks against the supplementary's tables: layer lists, parameter counts, shapes, ranges."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepcascade.networks import (
    AdaIN,
    AdaINPredictor,
    CascadeTranslator,
    DeepTranslator,
    FeatureCritic,
    InversionNet,
    PatchDiscriminator,
    adain,
    group_count,
    predictor_convs,
)

VGG_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
VGG_STRIDES = {1: 1, 2: 2, 3: 4, 4: 8, 5: 16}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_params(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def layer_list(module: nn.Module) -> list[tuple]:
    """(kind, in, out, kernel, stride) for convs/linears, (kind,) for norms and activations, in module order."""
    out = []
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            out.append(("convT", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]))
        elif isinstance(m, nn.Conv2d):
            out.append(("conv", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]))
        elif isinstance(m, nn.Linear):
            out.append(("linear", m.in_features, m.out_features))
        elif isinstance(m, nn.GroupNorm):
            out.append(("GN",))
        elif isinstance(m, AdaIN):
            out.append(("AdaIN",))
        elif isinstance(m, nn.LeakyReLU):
            out.append(("lrelu",))
        elif isinstance(m, nn.ReLU):
            out.append(("relu",))
        elif isinstance(m, nn.Tanh):
            out.append(("tanh",))
    return out


# ---------------------------------------------------------------- inversion


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_inversion_net_shapes_range_and_size(level):
    c, s = VGG_CHANNELS[level], VGG_STRIDES[level]
    torch.manual_seed(level)
    net = InversionNet(c, s).eval()
    with torch.no_grad():
        for size in (64, 224):
            img = net(torch.randn(1, c, size // s, size // s))
            assert img.shape == (1, 3, size, size)
            assert img.min() >= -1 and img.max() <= 1
    # "three non-strided convolutional layers, with N input channels" then ConvTranspose layers that double
    # the resolution and halve the channels until the image resolution, then a conv to 3 channels.
    expected = 3 * conv_params(3, c, c)
    ch = c
    while s > 1:
        expected += conv_params(4, ch, ch // 2)
        ch, s = ch // 2, s // 2
    expected += conv_params(3, ch, 3)
    assert n_params(net) == expected


def test_inversion_net_upsampling_count_and_activations():
    net = InversionNet(512, 16)
    layers = layer_list(net)
    assert [l for l in layers if l[0] == "convT"] == [
        ("convT", 512, 256, 4, 2), ("convT", 256, 128, 4, 2), ("convT", 128, 64, 4, 2), ("convT", 64, 32, 4, 2)
    ]
    assert layers[-2:] == [("conv", 32, 3, 3, 1), ("tanh",)]
    assert sum(l[0] == "lrelu" for l in layers) == 3 + 4  # every conv but the last
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) for m in net.modules())


def test_inversion_net_min_channels_and_bad_stride():
    net = InversionNet(16, 8, min_channels=8)
    assert [l[2] for l in layer_list(net) if l[0] == "convT"] == [8, 8, 8]
    for bad in (0, 3, 6, 12):
        with pytest.raises(ValueError):
            InversionNet(64, bad)


def test_inversion_net_width_floor():
    """invert.width lifts a narrow level's first convs (24 -> 128 -> 128) and the halvings start from there;
    a level at least that wide is unchanged (the paper's rule)."""
    net = InversionNet(24, 4, width=128)
    layers = layer_list(net)
    assert [l for l in layers if l[0] == "conv"][:3] == [("conv", 24, 128, 3, 1), ("conv", 128, 128, 3, 1),
                                                         ("conv", 128, 128, 3, 1)]
    assert [l[1:3] for l in layers if l[0] == "convT"] == [(128, 64), (64, 32)]
    assert net(torch.randn(2, 24, 16, 16)).shape == (2, 3, 64, 64)
    assert layer_list(InversionNet(256, 4, width=128)) == layer_list(InversionNet(256, 4))


def test_patch_discriminator():
    d = PatchDiscriminator().eval()
    with torch.no_grad():
        assert d(torch.randn(2, 3, 64, 64)).shape == (2, 1, 4, 4)
        assert d(torch.randn(1, 3, 32, 32)).shape == (1, 1, 2, 2)
    strided = [l for l in layer_list(d) if l[0] == "conv" and l[4] == 2]
    assert strided == [("conv", 3, 64, 4, 2), ("conv", 64, 128, 4, 2), ("conv", 128, 256, 4, 2), ("conv", 256, 512, 4, 2)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3
    assert isinstance(d.net[1], nn.LeakyReLU)  # no batch norm after the first conv


# ---------------------------------------------------------------- deepest level

TABLE_1 = [  # Table 1 of the supplementary: name, in, out, kernel, stride, GN
    ("conv", 512, 512, 3, 1, False),
    ("conv", 512, 256, 3, 2, True),
    ("conv", 256, 512, 3, 2, True),
    ("convT", 512, 256, 3, 2, True),
    ("convT", 256, 256, 3, 2, True),
    ("conv", 256, 512, 3, 1, True),
    ("conv", 512, 512, 3, 1, False),
]


def test_deep_translator_matches_table_1():
    net = DeepTranslator(512)
    expected = []
    for kind, cin, cout, k, s, gn in TABLE_1:
        expected.append((kind, cin, cout, k, s))
        if gn:
            expected += [("GN",), ("relu",)]  # every GN row is followed by a relu row
    expected.append(("tanh",))
    assert layer_list(net) == expected
    count = sum(conv_params(k, cin, cout) + (2 * cout if gn else 0) for _, cin, cout, k, _, gn in TABLE_1)
    assert n_params(net) == count
    assert all(m.num_groups == 32 for m in net.modules() if isinstance(m, nn.GroupNorm))


@pytest.mark.parametrize("size", [4, 7, 8, 14, 1, 2])
def test_deep_translator_keeps_shape_and_range(size):
    torch.manual_seed(size)
    net = DeepTranslator(64, gn_groups=32)
    with torch.no_grad():
        x = torch.rand(2, 64, size, size) * 2 - 1
        y = net(x)
    assert y.shape == x.shape
    assert y.abs().max() < 1


def test_deep_translator_full_width_at_conv5_size():
    with torch.no_grad():
        y = DeepTranslator().eval()(torch.rand(1, 512, 14, 14) * 2 - 1)
    assert y.shape == (1, 512, 14, 14) and y.abs().max() < 1


def test_group_count_reduces_to_a_divisor():
    assert group_count(512, 32) == 32
    assert group_count(112, 32) == 28
    assert group_count(40, 32) == 20
    assert group_count(7, 32) == 7
    net = DeepTranslator(112)  # half width 56 -> 28 groups, full width 112 -> 28 groups
    assert {m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)} == {28}


@pytest.mark.parametrize("in_size, n_strided", [(1, 0), (2, 0), (4, 0), (14, 2), (16, 2), (28, 3), (64, 4)])
def test_feature_critic_scores_and_no_norm(in_size, n_strided):
    critic = FeatureCritic(32, in_size, width=64)
    with torch.no_grad():
        scores = critic(torch.randn(3, 32, in_size, in_size))
    assert scores.shape == (3,)
    assert sum(l[0] == "conv" and l[4] == 2 for l in layer_list(critic)) == n_strided
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    assert not any(isinstance(m, norms) for m in critic.modules())
    with pytest.raises(ValueError):
        critic(torch.randn(1, 32, in_size + 1, in_size + 1))


def test_feature_critic_at_conv5():
    critic = FeatureCritic(512, 14)
    assert critic.out_size == 4
    with torch.no_grad():
        assert critic(torch.randn(2, 512, 14, 14)).shape == (2,)


# ---------------------------------------------------------------- coarse to fine


def test_adain_sets_per_channel_statistics():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 5, 8, 8, generator=g) * 3 + 2
    gamma = torch.rand(3, 5, generator=g) * 1.5 + 0.5
    beta = torch.randn(3, 5, generator=g)
    out = adain(h, gamma, beta)
    assert torch.allclose(out.mean(dim=(2, 3)), beta, atol=1e-3)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), gamma, atol=1e-3)
    assert torch.equal(AdaIN()(h, gamma, beta), out)


def table_3(x: int, out: int) -> list[tuple]:
    """Table 3 of the supplementary with our output-width fix: name, in, out, kernel, stride, AdaIN."""
    return [
        ("conv", x, x, 3, 1, True),
        ("conv", x, x, 3, 1, True),
        ("convT", x, x // 2, 4, 2, True),
        ("conv", x // 2, out, 3, 1, False),
    ]


def table_2(cin: int, n_convs: int, n_out: int) -> list[tuple]:
    """Table 2 of the supplementary, extended by one conv per shallower level: name, in, out[, kernel, stride]."""
    rows = [("conv", cin if i == 0 else 512, 512, 3, 2) for i in range(n_convs)]
    return rows + [("linear", 4 * 4 * 512, 1000), ("linear", 1000, n_out)]


@pytest.mark.parametrize("level", [4, 3, 2])
def test_cascade_translator_and_predictor_match_tables(level):
    x, out = VGG_CHANNELS[level + 1], VGG_CHANNELS[level]
    size = 224 // VGG_STRIDES[level]  # 28, 56, 112
    torch.manual_seed(level)
    t = CascadeTranslator(x, out)
    assert t.n_adain_params == 2 * (x + x + x // 2)

    expected = []
    for kind, cin, cout, k, s, ada in table_3(x, out):
        expected.append((kind, cin, cout, k, s))
        expected += [("AdaIN",), ("lrelu",)] if ada else [("tanh",)]
    assert layer_list(t) == expected
    # AdaIN'd convs carry no bias (cancelled by the instance mean); the last conv has one.
    assert n_params(t) == sum(conv_params(k, cin, cout, bias=not ada) for _, cin, cout, k, _, ada in table_3(x, out))

    n_convs = predictor_convs(level)
    assert n_convs == {4: 3, 3: 4, 2: 5}[level]
    m = AdaINPredictor(out, t.n_adain_params, n_convs)
    rows = table_2(out, n_convs, t.n_adain_params)
    expected = []
    for row in rows[:-1]:
        expected += [row, ("lrelu",)]
    expected.append(rows[-1])
    assert layer_list(m) == expected
    count = sum(conv_params(3, r[1], r[2]) for r in rows if r[0] == "conv")
    count += sum(r[1] * r[2] + r[2] for r in rows if r[0] == "linear")
    assert n_params(m) == count

    with torch.no_grad():
        src = torch.rand(1, out, size, size) * 2 - 1
        assert m.features(src).shape[-2:] == (4, 4)  # 224 px maps already end at 4x4: the pool is the identity
        params = m(src)
        assert params.shape == (1, t.n_adain_params)
        assert torch.count_nonzero(params) == 0  # zero-initialised head: gamma = 1, beta = 0 at the start
        y = t(torch.rand(1, x, size // 2, size // 2) * 2 - 1, params + 0.1 * torch.randn_like(params))
        assert y.shape == (1, out, size, size)
        assert y.abs().max() < 1
        small = size * 64 // 224  # 8, 16, 32 at 64 px images
        assert m(torch.rand(2, out, small, small)).shape == (2, t.n_adain_params)


def test_cascade_params_layout_and_errors():
    t = CascadeTranslator(8, 6)
    params = torch.arange(t.n_adain_params, dtype=torch.float32).unsqueeze(0)
    (g1, b1), (g2, b2), (g3, b3) = t.split_params(params)
    assert [g1.shape[1], g2.shape[1], g3.shape[1]] == [8, 8, 4]
    assert g1[0, 0] == 1 + 0 and b1[0, 0] == 8 and g2[0, 0] == 1 + 16 and b2[0, 0] == 24
    assert g3[0, 0] == 1 + 32 and b3[0, -1] == t.n_adain_params - 1
    with pytest.raises(ValueError):
        t(torch.randn(1, 8, 4, 4), torch.zeros(1, t.n_adain_params + 1))


def test_predictor_convs_rule():
    assert [predictor_convs(l) for l in (4, 3, 2, 1)] == [3, 4, 5, 6]
    assert [predictor_convs(l, VGG_STRIDES[l]) for l in (4, 3, 2, 1)] == [3, 4, 5, 6]
    assert predictor_convs(4, stride=16) == 2  # a backbone at stride 16: 14 -> 7 -> 4 at 224 px
    with pytest.raises(ValueError):
        predictor_convs(5)


def test_predictor_learns_from_first_step():
    m = AdaINPredictor(4, 6, 2, width=8, hidden=16)
    (m(torch.randn(2, 4, 16, 16)) - 1).pow(2).sum().backward()
    assert m.head[-1].weight.grad.abs().sum() > 0
