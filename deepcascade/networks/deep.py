"""Deepest-level translator T_AB / T_BA and the WGAN-GP critic on feature maps (docs/method.md section 3)."""

from __future__ import annotations

import torch
from torch import nn

NEGATIVE_SLOPE = 0.2


def group_count(channels: int, groups: int) -> int:
    """Number of GroupNorm groups for ``channels``: ``groups`` if it divides, else its largest divisor below.

    GroupNorm needs the group count to divide the channel count. Our default is 32 [ours; the paper only says
    GN]; backbones other than VGG-19 have channel counts such as 40 or 112 that 32 does not divide, so the
    count is reduced to the largest divisor of ``channels`` that is <= ``groups`` (e.g. 112 -> 28, 40 -> 20).
    """
    if channels < 1 or groups < 1:
        raise ValueError(f"channels and groups must be positive, got {channels} and {groups}")
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


class _NormBlock(nn.Module):
    """conv (or convT) -> GroupNorm -> ReLU; a transposed conv is told its output size."""

    def __init__(self, conv: nn.Module, channels: int, gn_groups: int):
        super().__init__()
        self.conv = conv
        self.norm = nn.GroupNorm(group_count(channels, gn_groups), channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        transposed = isinstance(self.conv, nn.ConvTranspose2d)
        x = self.conv(x, output_size=output_size) if transposed and output_size is not None else self.conv(x)
        return self.act(self.norm(x))


def bottleneck_downsamplings(size: int, min_size: int = 4, most: int = 2) -> int:
    """How many of Table 1's stride-2 convs a ``size`` x ``size`` input can take while the bottleneck stays at
    least ``min_size`` wide: 2 at 14 (14 -> 7 -> 4, the paper's 224 px), 1 at 7 or 8, 0 at 4 or below."""
    k = 0
    while k < most and -(-size // 2 ** (k + 1)) >= min_size:
        k += 1
    return k


class DeepTranslator(nn.Module):
    """Translate normalized deepest-level features of one domain into the other's; same shape in and out.

    Table 1 of the supplementary (C = 512 at VGG-19 conv_5_1, all kernels 3, padding 1):
    conv C->C s1 · conv C->C/2 s2 GN ReLU · conv C/2->C s2 GN ReLU · convT C->C/2 s2 GN ReLU ·
    convT C/2->C/2 s2 GN ReLU · conv C/2->C s1 GN ReLU · conv C->C s1 · tanh.
    As in the table, the first conv has neither normalization nor activation.

    The spatial path is 14 -> 7 -> 4 -> 7 -> 14 at 224 px. Each transposed conv is given the size of the
    matching encoder activation as ``output_size`` [ours], so every input size comes back to its own size.
    GroupNorm uses ``gn_groups`` groups, reduced by :func:`group_count` where it does not divide.
    The tanh keeps the output in (-1, 1), the range of the normalized features.

    ``downsamplings`` [ours]: how many of the two stride-2 convs (and their transposed partners) keep stride 2.
    The others become stride-1 3x3 convs with the same channels, so the layer list and parameter count stay
    Table 1's. At the paper's 14x14 both downsample; at the 4x4 maps of small images the table would squeeze the
    map to 1x1, where no spatial layout can pass, so there none does (:func:`bottleneck_downsamplings`).
    """

    def __init__(self, channels: int = 512, gn_groups: int = 32, downsamplings: int = 2):
        super().__init__()
        if downsamplings not in (0, 1, 2):
            raise ValueError(f"downsamplings must be 0, 1 or 2, got {downsamplings}")
        c, h = channels, channels // 2
        self.channels, self.downsamplings = channels, downsamplings

        def down(c_in, c_out, strided):
            return nn.Conv2d(c_in, c_out, 3, 2 if strided else 1, 1)

        def up(c_in, c_out, strided):
            return nn.ConvTranspose2d(c_in, c_out, 3, 2, 1) if strided else nn.Conv2d(c_in, c_out, 3, 1, 1)

        # Table 1 of the supplementary, in order of application; down2/up1 and down1/up2 are partners.
        self.conv_in = nn.Conv2d(c, c, 3, 1, 1)
        self.down1 = _NormBlock(down(c, h, downsamplings >= 1), h, gn_groups)
        self.down2 = _NormBlock(down(h, c, downsamplings >= 2), c, gn_groups)
        self.up1 = _NormBlock(up(c, h, downsamplings >= 2), h, gn_groups)
        self.up2 = _NormBlock(up(h, h, downsamplings >= 1), h, gn_groups)
        self.conv_mid = _NormBlock(nn.Conv2d(h, c, 3, 1, 1), c, gn_groups)
        self.conv_out = nn.Conv2d(c, c, 3, 1, 1)
        self.out_act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translated features with the shape of ``x`` (N, C, H, W), values in (-1, 1)."""
        x0 = self.conv_in(x)
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        y = self.up1(x2, output_size=x1.shape[-2:])  # back to the size of x1 (e.g. 4 -> 7)
        y = self.up2(y, output_size=x0.shape[-2:])  # back to the input size (e.g. 7 -> 14)
        return self.out_act(self.conv_out(self.conv_mid(y)))


def critic_sizes(in_size: int, min_size: int = 4) -> list[int]:
    """Spatial sizes through the critic's stride-2 convs: [in_size, ..., first size <= min_size]."""
    sizes = [in_size]
    while sizes[-1] > min_size:
        sizes.append((sizes[-1] + 2 * 1 - 3) // 2 + 1)  # conv formula, kernel 3, padding 1, stride 2
    return sizes


class FeatureCritic(nn.Module):
    """WGAN-GP critic on normalized feature maps (N, in_channels, in_size, in_size) -> one score per sample.

    The paper gives no critic [ours]: a 3x3 stride-1 conv to ``width`` channels, then 3x3 stride-2 convs while
    the map is larger than ``min_size`` (14 -> 7 -> 4 at conv_5_1), LeakyReLU(0.2) after each, then flatten
    and a linear layer. No normalization layers, since the gradient penalty is defined per sample and batch
    statistics would couple the samples (Gulrajani et al.). Global rather than patch-wise, because the shape
    change between domains is non-local. ``in_size`` fixes the linear layer, so inputs must have that size.
    """

    def __init__(self, in_channels: int, in_size: int, width: int = 512, min_size: int = 4):
        super().__init__()
        if in_size < 1 or min_size < 1:
            raise ValueError(f"FeatureCritic: in_size and min_size must be >= 1, got {in_size}, {min_size}")
        self.in_channels, self.in_size = in_channels, in_size
        sizes = critic_sizes(in_size, min_size)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1, 1), nn.LeakyReLU(NEGATIVE_SLOPE)]
        for _ in sizes[1:]:
            layers += [nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(NEGATIVE_SLOPE)]
        self.features = nn.Sequential(*layers)
        self.out_size = sizes[-1]
        self.linear = nn.Linear(width * self.out_size**2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of shape (N,), higher for more real-looking features."""
        if tuple(x.shape[1:]) != (self.in_channels, self.in_size, self.in_size):
            raise ValueError(
                f"FeatureCritic expects (N, {self.in_channels}, {self.in_size}, {self.in_size}), got {tuple(x.shape)}"
            )
        return self.linear(self.features(x).flatten(1)).squeeze(1)
