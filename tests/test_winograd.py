"""Winograd's F(m x m, 3x3) convolutions (deepcascade.networks.winograd), which the CPU fast path swaps in for the
wide 3x3 convolutions: the same outputs as the direct convolution within float rounding, for odd sizes, with
and without bias, in bf16 within bf16's rounding, and the swap touches exactly the eligible convolutions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepcascade.networks.winograd import WinogradConv2d, eligible, winograd_convs


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("tile, tol", [(2, 1e-5), (4, 1e-4)])
@pytest.mark.parametrize("h, w, bias", [(8, 8, True), (7, 13, False), (1, 5, True), (14, 14, True)])
def test_equals_direct_convolution(tile, tol, h, w, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 40, 3, padding=1, bias=bias)
    if bias:
        nn.init.uniform_(conv.bias, -1, 1)
    x = torch.randn(3, 24, h, w)
    with torch.no_grad():
        ref, out = conv(x), WinogradConv2d(conv, tile)(x)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert rel_err(out, ref) < tol, rel_err(out, ref)


def test_wrong_kernel_is_wrong():
    """The comparison above can fail: a Winograd conv of other weights is far from the direct result."""
    torch.manual_seed(0)
    conv, other = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        assert rel_err(WinogradConv2d(other, 2)(x), conv(x)) > 0.1


def test_bf16_autocast_within_bf16_rounding():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(2, 64, 12, 12)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref, out = conv(x), WinogradConv2d(conv, 2)(x)
    assert out.dtype == torch.bfloat16
    assert rel_err(out, conv(x).detach()) < 3e-2 and rel_err(ref, conv(x).detach()) < 3e-2


def test_large_maps_stay_direct():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1)
    wino = WinogradConv2d(conv, 2, max_side=8)
    big, small = torch.randn(2, 16, 9, 6), torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(wino(big), conv(big))  # direct: the very same computation
        assert not torch.equal(wino(small), conv(small)) and rel_err(wino(small), conv(small)) < 1e-5


def test_swap_takes_only_eligible_convolutions():
    net = nn.Sequential(nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(), nn.Conv2d(512, 256, 3, padding=1),
                        nn.Sequential(nn.Conv2d(512, 512, 3, padding=1, stride=2),
                                      nn.Conv2d(512, 512, 3, padding=1, padding_mode="reflect"),
                                      nn.Conv2d(512, 512, 1), nn.Conv2d(600, 512, 3, padding=1)))
    assert [eligible(m, 512) for m in net if isinstance(m, nn.Conv2d)] == [True, False]
    assert winograd_convs(net, min_channels=512, tile=2) == 2
    assert isinstance(net[0], WinogradConv2d) and isinstance(net[3][3], WinogradConv2d)
    assert [type(m) for m in (net[2], net[3][0], net[3][1], net[3][2])] == [nn.Conv2d] * 4
    with pytest.raises(ValueError, match="3x3 stride-1 padding-1"):
        WinogradConv2d(nn.Conv2d(4, 4, 3, stride=2, padding=1))
