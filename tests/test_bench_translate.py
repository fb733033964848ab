"""benchmarks/bench_translate.py compares against the published CycleGAN generator and times the translate path
Translator runs; both checked here on tiny inputs (no timing asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_translate import ResNet9Generator, TranslatePath, images, psnr  # noqa: E402


def test_resnet9_is_cyclegans_generator():
    net = ResNet9Generator()
    # CycleGAN's print_network reports 11.378 M parameters for resnet_9blocks (instance norm, biased convs)
    assert sum(p.numel() for p in net.parameters()) == 11_378_179
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs[:3]] == \
        [(3, 64, 7, 1), (64, 128, 3, 2), (128, 256, 3, 2)]
    assert len(convs) == 3 + 18 + 1
    with torch.no_grad():
        y = net(torch.rand(1, 3, 32, 32))
    assert y.shape == (1, 3, 32, 32) and 0 <= y.min() and y.max() <= 1


def test_translate_path_shapes_and_psnr():
    x = images(2, 32, seed=0)
    path = TranslatePath(32, images(2, 32, seed=1))
    y = path(x)
    assert y.shape == (2, 3, 32, 32) and 0 <= y.min() and y.max() <= 1
    assert sorted(path.cascade.levels) == ["3", "4"] and path.inversion.stride == 4
    assert psnr(y, y) == float("inf") and 5 < psnr(y, 1 - y) < 60
