"""Coarse-to-fine conditional translators T^l and their AdaIN parameter predictors M^l (docs/method.md section 4).

For level l in direction A->B: ``e~_l = T^l(e~_{l+1}; theta)`` with ``theta = M^l(e_l(source))``: the translator
upsamples the translated deeper level, and the predictor reads the source's own level-l features to set the
AdaIN scales and shifts inside the translator. :class:`CascadeModel` chains the trained levels, deepest first
(docs/method.md section 5).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..domains import NETWORK_DIRECTIONS

NEGATIVE_SLOPE = 0.2
ADAIN_EPS = 1e-5


def adain(h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = ADAIN_EPS) -> torch.Tensor:
    """Adaptive instance normalization: ``gamma * (h - mean(h)) / std(h) + beta`` per sample and channel.

    ``h`` is (N, C, H, W); ``gamma`` and ``beta`` are (N, C). Mean and (biased) variance are taken over H, W of
    each sample and channel; ``eps`` is added to the variance. At 1x1 maps the result is ``beta``.
    """
    mean = h.mean(dim=(2, 3), keepdim=True)
    var = h.var(dim=(2, 3), keepdim=True, unbiased=False)
    return gamma[:, :, None, None] * (h - mean) * torch.rsqrt(var + eps) + beta[:, :, None, None]


class AdaIN(nn.Module):
    """Parameter-free module form of :func:`adain` (gamma and beta come from the predictor at run time)."""

    def __init__(self, eps: float = ADAIN_EPS):
        super().__init__()
        self.eps = eps

    def forward(self, h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return adain(h, gamma, beta, self.eps)


class CascadeTranslator(nn.Module):
    """T^l: translated level-(l+1) features (N, x, s, s) -> level-l features (N, out_channels, s', s') in (-1, 1).

    Table 3 of the supplementary (x = ``in_channels``, the deeper level's channels):
    conv x->x 3x3 AdaIN lrelu · conv x->x 3x3 AdaIN lrelu · convT x->x/2 4x4 s2 AdaIN lrelu · conv x/2->out 3x3 ·
    tanh. Padding 1 everywhere, so the output is exactly twice the input size (s' = 2s).

    Deviations, all [ours]:
      * the table's last conv outputs x/2 channels; that is the target level's width except at VGG level 4,
        where conv_5_1 and conv_4_1 both have 512 channels. The last conv therefore outputs
        ``out_channels`` (the target level's channel count); the convT keeps the table's x/2.
      * the convs followed by AdaIN have no bias: AdaIN subtracts the per-channel instance mean, which
        cancels a per-channel bias exactly, so such a bias would be a dead parameter.
      * ``scale`` is the ratio of the two levels' strides. The table's 2 is VGG-19's (and EfficientNet-Lite0's)
        one halving per level; where two levels share a resolution (AlexNet's conv3..conv5) ``scale=1``
        replaces the transposed conv by a non-strided 3x3 conv x->x/2, everything else unchanged.
      * ``output_padding`` (0 or 1, only with ``scale=2``) adds one row and column: AlexNet's levels are
        2s + 1 wide where the deeper level is s (docs/method.md section 1). Its 4x4 kernel can still express
        the exactly aligned interpolation (deeper position j at 2j + 1), so nothing else changes.

    ``params`` (N, n_adain_params) holds, in this order,
    ``[dgamma1 (x), beta1 (x), dgamma2 (x), beta2 (x), dgamma3 (x/2), beta3 (x/2)]`` for the three AdaIN layers;
    the scale used is ``gamma = 1 + dgamma``, so all-zero params mean plain instance normalization.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2, output_padding: int = 0):
        super().__init__()
        if scale not in (1, 2):
            raise ValueError(f"CascadeTranslator: scale must be 1 (equal resolutions) or 2, got {scale!r}")
        if output_padding not in (0, 1) or (scale == 1 and output_padding):
            raise ValueError(f"CascadeTranslator: output_padding must be 0 or 1, and 0 with scale 1; got "
                             f"{output_padding!r} with scale {scale}")
        x, h = in_channels, in_channels // 2
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale, self.output_padding = scale, output_padding
        # Table 3 of the supplementary, in order of application.
        self.conv1, self.norm1, self.act1 = nn.Conv2d(x, x, 3, 1, 1, bias=False), AdaIN(), nn.LeakyReLU(NEGATIVE_SLOPE)
        self.conv2, self.norm2, self.act2 = nn.Conv2d(x, x, 3, 1, 1, bias=False), AdaIN(), nn.LeakyReLU(NEGATIVE_SLOPE)
        # the upsampling layer; a non-strided conv in its place between levels of one resolution
        up = (nn.ConvTranspose2d(x, h, 4, 2, 1, output_padding=output_padding, bias=False) if scale == 2
              else nn.Conv2d(x, h, 3, 1, 1, bias=False))
        self.up, self.norm3, self.act3 = up, AdaIN(), nn.LeakyReLU(NEGATIVE_SLOPE)
        self.conv_out, self.out_act = nn.Conv2d(h, out_channels, 3, 1, 1), nn.Tanh()
        self.adain_channels = (x, x, h)  # channels of the three AdaIN'd layers

    def output_size(self, size: int) -> int:
        """Side of the output for an input of side ``size``."""
        return size * self.scale + self.output_padding

    @property
    def n_adain_params(self) -> int:
        """Length of ``params``: a gamma and a beta per AdaIN'd channel, 2 * (x + x + x/2)."""
        return 2 * sum(self.adain_channels)

    def split_params(self, params: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(gamma, beta) per AdaIN layer from predictor outputs (N, n_adain_params); gamma = 1 + dgamma."""
        if params.dim() != 2 or params.shape[1] != self.n_adain_params:
            raise ValueError(f"params must be (N, {self.n_adain_params}), got {tuple(params.shape)}")
        sizes = [c for c in self.adain_channels for _ in range(2)]  # dgamma_i, beta_i
        chunks = torch.split(params, sizes, dim=1)
        return [(1 + chunks[2 * i], chunks[2 * i + 1]) for i in range(len(self.adain_channels))]

    def forward(self, h: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Level-l features (N, out_channels, :meth:`output_size` of H and W) from deeper features ``h``
        (N, x, H, W) and AdaIN params."""
        (g1, b1), (g2, b2), (g3, b3) = self.split_params(params)
        h = self.act1(self.norm1(self.conv1(h), g1, b1))
        h = self.act2(self.norm2(self.conv2(h), g2, b2))
        h = self.act3(self.norm3(self.up(h), g3, b3))
        return self.out_act(self.conv_out(h))


def predictor_convs(level: int, stride: int | None = None) -> int:
    """Number of strided convs of M^l: 3 at VGG level 4 (Table 2), one more per extra halving.

    With VGG-19 strides this is 3 + (4 - level): 3, 4, 5, 6 for levels 4, 3, 2, 1 (28, 56, 112, 224 px maps at
    224 px images, all brought to 4x4). For another backbone pass the level's ``stride``: the count is then
    3 + log2(8 / stride) (at least 1), i.e. the same rule measured in halvings rather than level numbers, so
    the depth follows the level's size: AlexNet's conv3 and conv4 (stride 16, 13 px at 224 px) get 2 convs
    (13 -> 7 -> 4), conv2 3 and conv1 4 (55 -> 28 -> 14 -> 7 -> 4).
    """
    if stride is None:
        if level not in (1, 2, 3, 4):
            raise ValueError(f"cascade levels are 1..4, got {level}")
        return 3 + (4 - level)
    if stride < 1 or stride & (stride - 1):
        raise ValueError(f"stride must be a power of 2, got {stride}")
    return max(1, 3 + 3 - int(math.log2(stride)))


class AdaINPredictor(nn.Module):
    """M^l: source level-l features (N, in_channels, s, s) -> AdaIN parameters (N, n_params) for T^l.

    Table 2 of the supplementary (written for level 4): ``n_convs`` 3x3 stride-2 convs (padding 1) with
    LeakyReLU(0.2), the first in_channels -> width [ours: the table only shows 512 -> 512], the others
    width -> width; linear 4*4*width -> hidden, LeakyReLU; linear hidden -> n_params.

    An ``AdaptiveAvgPool2d(4)`` sits before the first linear layer [ours] so it always sees 4x4xwidth: at 224 px
    images the convs already end at 4x4 (28 -> 14 -> 7 -> 4 at level 4) and the pool is the identity; at larger
    images it averages, at smaller ones (64 px: 8 -> 4 -> 2 -> 1) it replicates the map. So one network serves
    every image size, at the cost of a coarser or redundant code away from 224 px.

    The last linear layer starts at zero [ours], so the initial output is dgamma = 0, beta = 0: T^l starts as a
    plain instance-normalizing network and the predictor learns to modulate it, instead of injecting random
    per-sample scales and shifts at step 0. Its gradient is not zero (it is the outer product of the output
    gradient with the hidden activations), so it trains from the first step.
    """

    def __init__(self, in_channels: int, n_params: int, n_convs: int, width: int = 512, hidden: int = 1000):
        super().__init__()
        if n_convs < 1:
            raise ValueError(f"AdaINPredictor needs at least one conv, got n_convs={n_convs}")
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers += [nn.Conv2d(in_channels if i == 0 else width, width, 3, 2, 1), nn.LeakyReLU(NEGATIVE_SLOPE)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Sequential(
            nn.Linear(4 * 4 * width, hidden), nn.LeakyReLU(NEGATIVE_SLOPE), nn.Linear(hidden, n_params)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """AdaIN parameters (N, n_params) in the layout of :meth:`CascadeTranslator.split_params`."""
        return self.head(self.pool(self.features(features)).flatten(1))


class CascadeModel(nn.Module):
    """Level-5 translators plus the (T^l, M^l) pairs of the levels trained so far, both directions."""

    def __init__(self, deep: dict, levels: dict[int, dict]):
        super().__init__()
        self.deep = nn.ModuleDict({d: deep[f"T_{d}"] for d in NETWORK_DIRECTIONS.values()})
        self.levels = nn.ModuleDict({
            str(l): nn.ModuleDict({k: v for k, v in nets.items() if k[0] in "TM"}) for l, nets in levels.items()})

    @property
    def final_level(self) -> int:
        """Shallowest level this cascade can produce."""
        return min([5] + [int(l) for l in self.levels])

    @torch.no_grad()
    def translate(self, features: dict[int, torch.Tensor], direction: str, final_level: int | None = None
                  ) -> dict[int, torch.Tensor]:
        """Translated normalized features of every level from 5 down to ``final_level``.

        ``features`` holds the source's normalized features of levels final_level..5.
        """
        d = NETWORK_DIRECTIONS.get(direction, direction)
        if d not in NETWORK_DIRECTIONS.values():
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        final = self.final_level if final_level is None else final_level
        if final < self.final_level:
            raise ValueError(f"final level {final} is not trained (this run reaches level {self.final_level})")
        out = {5: self.deep[d](features[5])}
        for level in range(4, final - 1, -1):
            nets = self.levels[str(level)]
            out[level] = nets[f"T_{d}"](out[level + 1], nets[f"M_{d}"](features[level]))
        return out
