"""The backbone interface every frozen feature extractor implements.

A backbone maps RGB images in [0, 1] (N, 3, H, W) to a feature pyramid of five levels, 1 (shallowest) to
5 (deepest). Everything downstream (normalization, cache, inversion networks, translators, critics) reads
only ``channels``, ``strides`` (from the backbone's :class:`~deepcascade.backbones.specs.BackboneSpec`) and
``forward``, so new backbones (VGG-19, EfficientNet-Lite0, AlexNet; a fine-tuned VGG-19 is VGG-19 with
another weights file) are added as further entries of the registry in ``backbones/__init__.py``.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

from .specs import LEVELS, BackboneSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module, abc.ABC):
    """A frozen feature pyramid. Subclasses set ``spec`` and implement ``_features`` and ``slice``."""

    spec: BackboneSpec

    def __init__(self, relu: bool = False):
        super().__init__()
        self.relu = relu
        self.name = self.spec.name
        #: channels of each level, e.g. {1: 64, 2: 128, 3: 256, 4: 512, 5: 512} (depends on ``relu``)
        self.channels: dict[int, int] = self.spec.channels(relu)
        #: downsampling factor of each level relative to the input image (sizes: ``spec.feature_size``)
        self.strides: dict[int, int] = self.spec.strides
        self.weights_file: str | None = None  # path of the loaded weights, None for random
        self.weights_sha256: str | None = None  # SHA-256 of that file
        self.weights_description = ""  # one line for the log, e.g. "ImageNet (vgg19-dcbb9e9d.pth)"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> "Backbone":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True):  # the backbone is always in eval mode
        return super().train(False)

    @property
    def level_names(self) -> dict[int, str]:
        """Human-readable name of each level (``conv_5_1``, ``block 15``)."""
        return {l: s.name for l, s in self.spec.levels.items()}

    def feature_shape(self, level: int, image_size: int) -> tuple[int, int, int]:
        """(C, h, w) of level ``level`` for square images of side ``image_size`` (on the spec's grid)."""
        s = self.spec.feature_size(level, image_size)
        return (self.channels[level], s, s)

    def forward(self, images: torch.Tensor, levels=LEVELS) -> dict[int, torch.Tensor]:
        """Features of ``levels`` for images in [0, 1]; ImageNet mean/std is applied here."""
        levels = sorted(set(int(l) for l in levels))
        for l in levels:
            if l not in LEVELS:
                raise ValueError(f"level must be in 1..5, got {l}")
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return self._features(x, levels)

    @abc.abstractmethod
    def _features(self, x: torch.Tensor, levels: list[int]) -> dict[int, torch.Tensor]:
        """Raw features ``{level: tensor}`` of ImageNet-normalized images ``x``, for the sorted ``levels``."""

    @abc.abstractmethod
    def slice(self, level: int) -> nn.Module:
        """Frozen module mapping raw level-``level`` features to raw level-``level+1`` features."""


class SequentialPyramid(Backbone):
    """A backbone whose levels are outputs of layers of one ``nn.Sequential`` (torchvision's VGG and AlexNet
    ``features``): subclasses set ``self.features`` and ``conv_index`` (level -> index of its conv; the ReLU
    follows at index + 1)."""

    conv_index: dict[int, int]
    features: nn.Sequential

    def _end(self, level: int) -> int:
        """Index one past the layer whose output is level ``level``."""
        return self.conv_index[level] + (2 if self.relu else 1)

    def _features(self, x, levels):
        out, start = {}, 0
        for l in levels:
            end = self._end(l)
            for layer in self.features[start:end]:
                x = layer(x)
            out[l] = x
            start = end
        return out

    def slice(self, level: int) -> nn.Module:
        if level not in (1, 2, 3, 4):
            raise ValueError(f"{self.name} slices exist for levels 1..4 (level -> level+1), got {level}")
        return nn.Sequential(*self.features[self._end(level): self._end(level + 1)])
