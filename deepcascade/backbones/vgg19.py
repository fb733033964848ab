"""VGG-19 feature pyramid: conv_i_1 for i = 1..5 (docs/method.md section 1)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG19_Weights
from torchvision.models.vgg import cfgs, make_layers

from ..errors import UserError
from .base import SequentialPyramid
from .specs import SPECS
from .weights import load_state_dict_file, load_torchvision_features, resolve_pretrained

# torchvision ``vgg19().features`` index of conv_i_1; the ReLU follows at index + 1.
CONV_INDEX = {1: 0, 2: 5, 3: 10, 4: 19, 5: 28}


class VGG19Pyramid(SequentialPyramid):
    """conv_i_1 outputs of torchvision's VGG-19, pre-ReLU (default) or post-ReLU."""

    conv_index = CONV_INDEX
    spec = SPECS["vgg19"]

    def __init__(self, relu: bool = False):
        super().__init__(relu)
        # torchvision's VGG-19 feature layers (same indices and state-dict keys), up to conv_5_1 and its ReLU;
        # building vgg19() itself would also allocate the 120M-parameter classifier we never use.
        self.features = make_layers(cfgs["E"])[: CONV_INDEX[5] + 2]
        for layer in self.features:  # torchvision's VGG initialisation, for the seeded 'random' weights
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        for layer in self.features:  # in-place ReLUs would overwrite the pre-ReLU level outputs we return
            if isinstance(layer, nn.ReLU):
                layer.inplace = False

    def load_weights(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load a torchvision-format state dict: full-model keys ``features.N.weight`` or ``N.weight``."""
        load_torchvision_features(self.features, state_dict, source, "VGG-19")


def create(relu: bool) -> VGG19Pyramid:
    return VGG19Pyramid(relu=relu)


def imagenet_weights() -> tuple[Path, str]:
    """torchvision's VGG19_Weights.IMAGENET1K_V1 file (env var, hub cache, download, or a UserError)."""
    path = resolve_pretrained(VGG19_Weights.IMAGENET1K_V1.url, "DEEPCASCADE_VGG19_WEIGHTS", "vgg19")
    return path, f"ImageNet IMAGENET1K_V1 ({path})"


def load_weights(net: VGG19Pyramid, path) -> None:
    try:
        net.load_weights(load_state_dict_file(path), str(path))
    except (KeyError, RuntimeError) as e:
        raise UserError(f"weights file {path} does not fit VGG-19: {str(e).splitlines()[0][:300]}") from None


# ------------------------------------------------------------------------------------- the whole classifier
#: ``features`` indices of conv_5_1..conv_5_4, the convolutions fine-tuning trains (supplementary section 1.3)
CONV5_INDICES = (28, 30, 32, 34)


class VGG19Classifier(nn.Module):
    """torchvision's VGG-19 classifier with its key layout (``features.N``, ``classifier.0/3/6``): features,
    7x7 adaptive average pool, fc6 (25088 -> hidden[0]), ReLU, dropout, fc7, ReLU, dropout, fc8 -> classes.

    The same modules and forward as ``torchvision.models.vgg19``; the fully connected widths are arguments
    (4096, 4096 in torchvision's weights) so that a base file is loaded as it is (:func:`load_classifier`).
    """

    def __init__(self, hidden: tuple[int, int] = (4096, 4096), num_classes: int = 1000):
        super().__init__()
        self.features = make_layers(cfgs["E"])
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, hidden[0]), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden[1], num_classes))
        for m in self.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of ImageNet-standardized images (N, 3, H, W)."""
        return self.classifier(torch.flatten(self.avgpool(self.features(images)), 1))


def load_classifier(weights: str = "imagenet", seed: int = 0) -> tuple[VGG19Classifier, str | None, str]:
    """The whole VGG-19 classifier with base weights: 'imagenet' (resolved as for the pyramid), a file path
    (torchvision's full key layout, classifier included) or 'random' (seeded). Returns (net, file, description).

    The fully connected widths are read from the file, so any torchvision-layout VGG-19 loads with strict keys.
    """
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return VGG19Classifier(), None, f"RANDOM weights (seed {seed}) - for tests only"
    path, desc = imagenet_weights() if weights == "imagenet" else (Path(weights), f"file {weights}")
    sd = load_state_dict_file(path)
    sd = {k: v for k, v in sd.items() if k.startswith(("features.", "classifier."))}
    fc = [sd.get(f"classifier.{i}.weight") for i in (0, 3, 6)]
    if any(w is None or w.dim() != 2 for w in fc) or fc[0].shape[1] != 512 * 7 * 7:
        raise UserError(f"weights file {path} is not a whole torchvision VGG-19 (fine-tuning needs its fully "
                        f"connected layers classifier.0/3/6 as well as features.N; torchvision's "
                        f"{VGG19_Weights.IMAGENET1K_V1.url.rsplit('/', 1)[-1]} has them)")
    net = VGG19Classifier((fc[0].shape[0], fc[1].shape[0]), fc[2].shape[0])
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise UserError(f"weights file {path} does not fit VGG-19: {' '.join(str(e).split())[:300]}") from None
    return net, str(path), desc
