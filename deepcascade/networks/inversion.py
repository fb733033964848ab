"""Feature inversion I_l and its PatchGAN discriminator (docs/method.md section 2).

"Feature Inversion" paragraph of the supplementary: one network per backbone level turns normalized level-l
features back into an RGB image in [-1, 1]; it is trained with an LSGAN PatchGAN discriminator.
"""

from __future__ import annotations

import torch
from torch import nn

NEGATIVE_SLOPE = 0.2  # "All layers utilize Leaky ReLU nonlinearity (0.2)"


def _is_power_of_two(n: int) -> bool:
    return isinstance(n, int) and n >= 1 and (n & (n - 1)) == 0


class InversionNet(nn.Module):
    """Invert normalized level-l features (N, in_channels, H/stride - trim, W/stride - trim) to images
    (N, 3, H, W) in [-1, 1].

    Architecture ("Feature Inversion" paragraph of the supplementary): three non-strided 3x3 convs
    in_channels -> in_channels; log2(stride) transposed convs (4x4, stride 2, padding 1 [ours], so each one
    exactly doubles the resolution) that halve the channel count, never below ``min_channels`` (and never
    above the current count); a non-strided 3x3 conv to ``out_channels``; tanh. LeakyReLU(0.2) after every
    conv but the last, no normalization. Fully convolutional: any input size works.

    ``trim = 1`` [ours] is for levels one position short of H/stride (AlexNet's, whose unpadded pools drop a
    border): the first transposed conv then has no padding and maps n to 2n + 2 = 2H/stride, after which the
    doublings reach H exactly. It also centres deeper position j where the level has it (pixel
    stride * j + stride - 1), to half a pixel.

    Args:
        in_channels: channels of the level (``backbone.channels[level]``).
        stride: spatial stride of the level relative to the image (``backbone.strides[level]``), a power of 2.
        out_channels: image channels.
        min_channels: floor of the channel halving, so deep upsampling chains keep some width.
        trim: 0, or 1 for levels of side H/stride - 1 (``backbone.spec.levels[level].trim``); needs stride >= 2.
        width: [ours] the three non-strided convs are ``max(in_channels, width)`` wide (0: ``in_channels``, the
            paper's rule). The rule was written for VGG-19, whose levels are wide (256 channels at stride 4);
            a narrow level (EfficientNet-Lite0's 24 channels at stride 4) leaves a decoder of a few thousand
            weights that can only blur (``invert.width``, figures in docs/measurements.md).
    """

    def __init__(self, in_channels: int, stride: int, out_channels: int = 3, min_channels: int = 8,
                 trim: int = 0, width: int = 0):
        super().__init__()
        if not _is_power_of_two(stride):
            raise ValueError(f"InversionNet: stride must be a power of 2, got {stride!r}")
        if trim not in (0, 1) or (trim and stride < 2):
            raise ValueError(f"InversionNet: trim must be 0, or 1 with a stride of at least 2; got trim {trim!r} "
                             f"at stride {stride}")
        self.in_channels, self.stride, self.out_channels, self.trim = in_channels, stride, out_channels, trim
        ch = max(in_channels, width)
        layers: list[nn.Module] = []
        for i in range(3):  # three non-strided convs N -> N (N -> width, then width -> width when wider)
            layers += [nn.Conv2d(in_channels if i == 0 else ch, ch, 3, 1, 1), nn.LeakyReLU(NEGATIVE_SLOPE)]
        for i in range(stride.bit_length() - 1):  # log2(stride) upsamplings to the image resolution
            nxt = max(ch // 2, min(min_channels, ch))
            padding = 0 if (i == 0 and trim) else 1  # n -> 2n + 2 for a trimmed level, else n -> 2n
            layers += [nn.ConvTranspose2d(ch, nxt, 4, 2, padding), nn.LeakyReLU(NEGATIVE_SLOPE)]
            ch = nxt
        layers += [nn.Conv2d(ch, out_channels, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], ``stride`` times (the spatial size of ``features`` + ``trim``)."""
        return self.net(features)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator on images: one real/fake score per receptive-field patch (N, 1, H/16, W/16).

    "Four strided convolutional layers, each utilizes batch normalization (except the first one) and Leaky
    ReLU" (supplementary): 4x4 stride-2 convs with widths w, 2w, 4w, 8w, then a 3x3 stride-1 conv to one
    channel [ours: 3x3 with padding keeps a 2x2 map at 32 px inputs, where pix2pix's 4x4 would shrink it].
    The convs followed by BatchNorm have no bias, since BatchNorm's mean subtraction cancels it. Trained with
    LSGAN (``losses.lsgan_d_loss``), so the output is a raw score, no sigmoid.
    """

    def __init__(self, in_channels: int = 3, width: int = 64):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 4, 2, 1), nn.LeakyReLU(NEGATIVE_SLOPE)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(NEGATIVE_SLOPE)]
        layers += [nn.Conv2d(widths[-1], 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch scores (N, 1, H/16, W/16) for images (N, C, H, W), H and W at least 16 (32 and up advised)."""
        return self.net(images)
