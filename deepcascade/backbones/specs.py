"""What each backbone's feature pyramid looks like, as plain data (no torch): stride, channels and a
human-readable name per level.

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
        """Image sides must be multiples of the deepest stride: then every level is exactly side / stride
        (no rounding: VGG-19 floors odd sizes, EfficientNet's TF 'SAME' padding rounds up), and crop windows
        on that grid align at every level."""
        return max(self.strides.values())

    def feature_size(self, level: int, image_size: int) -> int:
        return image_size // self.levels[level].stride

    def size_problem(self, size: int, what: str) -> str | None:
        """None when ``size`` fits this backbone, else a message naming ``what`` (the field or flag) and sizes
        that work."""
        m = self.size_multiple
        if size % m == 0 and size >= m:
            return None
        lo, hi = max(m, size // m * m), (size // m + 1) * m
        near = f"{lo} or {hi}" if lo != hi and lo < size else f"{hi}"
        return (f"{what} is {size}, but backbone {self.name} needs a multiple of {m} (the stride "
                f"of its level 5, {self.levels[5].name}); e.g. {near}")


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
}


def get_spec(name: str) -> BackboneSpec:
    from ..errors import UserError

    if name not in SPECS:
        raise UserError(f"unknown backbone {name!r}; available: {', '.join(SPECS)}")
    return SPECS[name]
