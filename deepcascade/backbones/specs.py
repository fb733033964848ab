"""What each backbone's feature pyramid looks like, as plain data (no torch): stride, channels, a
human-readable name and the size rule per level.

Config validation, the CLI and the translator read these facts without building a network; the
:class:`~deepcascade.backbones.base.Backbone` modules take their ``channels``/``strides`` from here, so the
two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class LevelSpec:
    stride: int  # downsampling factor relative to the input image
    channels: int  # channels of the default (pre-ReLU / linear) output
    channels_relu: int  # channels with ``backbone.relu: true``
    name: str  # what the level is in the network, for messages and file keys
    #: the level is ``image / stride - trim`` positions wide (AlexNet: 1, its unpadded pools lose a border)
    trim: int = 0


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    description: str
    levels: dict[int, LevelSpec]

    def channels(self, relu: bool = False) -> dict[int, int]:
        return {l: (s.channels_relu if relu else s.channels) for l, s in self.levels.items()}

    @property
    def strides(self) -> dict[int, int]:
        return {l: s.stride for l, s in self.levels.items()}

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of the deepest stride: then every level is exactly
        side / stride - trim (no rounding: VGG-19 floors odd sizes, EfficientNet's TF 'SAME' padding rounds
        up, AlexNet's pools floor), and crop windows on that grid align at every level."""
        return max(self.strides.values())

    @property
    def min_size(self) -> int:
        """The smallest image side on the grid whose every level is at least 1x1."""
        m = self.size_multiple
        return next(k * m for k in range(1, 1 << 16) if all(self.feature_size(l, k * m) >= 1 for l in LEVELS))

    def feature_size(self, level: int, image_size: int) -> int:
        """Side of level ``level`` for an image side on the grid (:meth:`size_problem` is None)."""
        s = self.levels[level]
        return image_size // s.stride - s.trim

    def size_problem(self, size: int, what: str) -> str | None:
        """None when ``size`` fits this backbone, else a message naming ``what`` (the field or flag) and sizes
        that work."""
        m, lo_ok = self.size_multiple, self.min_size
        if size % m == 0 and size >= lo_ok:
            return None
        lo, hi = max(lo_ok, size // m * m), max(lo_ok, (size // m + 1) * m)
        near = f"{lo} or {hi}" if lo != hi and lo < size else f"{hi}"
        at_least = f" and at least {lo_ok}" if lo_ok > m else ""
        return (f"{what} is {size}, but backbone {self.name} needs a multiple of {m} (the stride "
                f"of its level 5, {self.levels[5].name}){at_least}; e.g. {near}")


def _levels(rows) -> dict[int, LevelSpec]:
    return {l: LevelSpec(*row) for l, row in zip(LEVELS, rows)}


SPECS: dict[str, BackboneSpec] = {
    "vgg19": BackboneSpec("vgg19", "VGG-19 (torchvision), conv_i_1 before (or after) its ReLU", _levels([
        (1, 64, 64, "conv_1_1"), (2, 128, 128, "conv_2_1"), (4, 256, 256, "conv_3_1"), (8, 512, 512, "conv_4_1"),
        (16, 512, 512, "conv_5_1")])),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0", "EfficientNet-Lite0, the last block of each resolution (see efficientnet_lite0.py)",
        _levels([(2, 16, 96, "block 0"), (4, 24, 144, "block 2"), (8, 40, 240, "block 4"),
                 (16, 112, 672, "block 10"), (32, 320, 1280, "block 15")])),
    # The same network cut one stage earlier: level 5 at stride 16 (block 10), so the levels have VGG-19's strides
    # (level 1, the stem, is at 2 since the stem is strided) and level 5 is 4x4 at 64 px (see efficientnet_lite0.py).
    "efficientnet_lite0_s16": BackboneSpec(
        "efficientnet_lite0_s16", "EfficientNet-Lite0 cut at stride 16: the stem, then the last block of each "
        "resolution up to block 10 (see efficientnet_lite0.py)",
        _levels([(2, 32, 32, "stem"), (2, 16, 96, "block 0"), (4, 24, 144, "block 2"), (8, 40, 240, "block 4"),
                 (16, 112, 672, "block 10")])),
    # conv1 (11x11, stride 4, padding 2) gives floor((H - 7) / 4) + 1 and each unpadded 3x3/2 max pool
    # floor((n - 1) / 2): at H = 16k that is exactly H/4 - 1, H/8 - 1, H/16 - 1 (55, 27, 13 at 224 px), each
    # level 2n + 1 wide where the next is n; conv3..conv5 share one resolution (see alexnet.py).
    "alexnet": BackboneSpec("alexnet", "AlexNet (torchvision), its five convs before (or after) their ReLU", _levels([
        (4, 64, 64, "conv1", 1), (8, 192, 192, "conv2", 1), (16, 384, 384, "conv3", 1), (16, 256, 256, "conv4", 1),
        (16, 256, 256, "conv5", 1)])),
}


def get_spec(name: str) -> BackboneSpec:
    from ..errors import UserError

    if name not in SPECS:
        raise UserError(f"unknown backbone {name!r}; available: {', '.join(SPECS)}")
    return SPECS[name]
