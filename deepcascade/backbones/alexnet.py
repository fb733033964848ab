"""AlexNet feature pyramid: its five convolutions as levels 1..5 (docs/method.md section 1, supplementary 1.3).

torchvision's AlexNet ``features`` (the "one weird trick" variant whose ImageNet weights torchvision ships,
``alexnet-owt-7be5be79.pth``)::

    index  layer                                   level   side at H = 16k    at 224 px
    0      conv 3->64, 11x11, stride 4, padding 2   1       H/4 - 1            55
    1      ReLU
    2      max pool 3x3, stride 2 (no padding)
    3      conv 64->192, 5x5, padding 2             2       H/8 - 1            27
    4      ReLU
    5      max pool 3x3, stride 2
    6      conv 192->384, 3x3, padding 1            3       H/16 - 1           13
    7      ReLU
    8      conv 384->256, 3x3, padding 1            4       H/16 - 1           13
    9      ReLU
    10     conv 256->256, 3x3, padding 1            5       H/16 - 1           13
    11     ReLU
    (12    max pool: not part of any level)

Sizes. conv1 gives floor((H - 7) / 4) + 1 and each unpadded pool floor((n - 1) / 2), so the levels are *not*
``H / stride``: for every image side that is a multiple of 16 they are exactly ``H / stride - 1`` (strides 4,
8, 16, 16, 16), and each level is ``2n + 1`` wide where the next deeper one is n. Other sides do not follow one
rule (232 px gives 57, 28, 13), so image sides must be multiples of 16, and at least 32 (level 5 1x1); the
spec (``specs.py``, ``trim = 1``) states this and config validation enforces it. On that grid a window at a
pixel offset that is a multiple of 16 is the same window of every level (offset / stride), as the feature cache
needs: position i of level l is centred on pixel ``stride * i + stride - 1``.

Levels 3, 4 and 5 share one resolution, so the cascade uses stride-1 translators between them and stride-2
ones (output ``2n + 1``) below; the inversion networks follow each level's stride and trim
(``networks/cascade.py``, ``networks/inversion.py``, ``models.py``).

As for VGG-19, each level is the conv output before its ReLU by default (``relu=True``: after) and the input is
standardized with the ImageNet mean and std, the normalization torchvision's weights were trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import AlexNet_Weights

from ..errors import UserError
from .base import SequentialPyramid
from .specs import SPECS
from .weights import load_state_dict_file, load_torchvision_features, resolve_pretrained

# torchvision ``alexnet().features`` index of each level's conv; its ReLU follows at index + 1.
CONV_INDEX = {1: 0, 2: 3, 3: 6, 4: 8, 5: 10}


def _features() -> nn.Sequential:
    """torchvision's AlexNet ``features`` layers 0..11 (same indices, state-dict keys and initialisation)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
    )  # not in place: an in-place ReLU would overwrite the pre-ReLU level outputs we return


class AlexNetPyramid(SequentialPyramid):
    """conv1..conv5 outputs of torchvision's AlexNet, pre-ReLU (default) or post-ReLU."""

    conv_index = CONV_INDEX
    spec = SPECS["alexnet"]

    def __init__(self, relu: bool = False):
        super().__init__(relu)
        self.features = _features()


def create(relu: bool) -> AlexNetPyramid:
    return AlexNetPyramid(relu=relu)


def imagenet_weights() -> tuple[Path, str]:
    """torchvision's AlexNet_Weights.IMAGENET1K_V1 file (env var, hub cache, download, or a UserError)."""
    path = resolve_pretrained(AlexNet_Weights.IMAGENET1K_V1.url, "DEEPCASCADE_ALEXNET_WEIGHTS", "alexnet")
    return path, f"ImageNet IMAGENET1K_V1 ({path})"


def load_weights(net: AlexNetPyramid, path) -> None:
    try:
        load_torchvision_features(net.features, load_state_dict_file(path), str(path), "AlexNet")
    except (KeyError, RuntimeError) as e:
        raise UserError(f"weights file {path} does not fit AlexNet: {str(e).splitlines()[0][:300]}") from None
