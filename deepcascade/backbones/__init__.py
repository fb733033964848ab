"""Frozen feature extractors. ``build_backbone`` is the registry: add an entry to add a backbone."""

from __future__ import annotations

import logging

import torch

from ..errors import UserError
from .base import LEVELS, Backbone
from .weights import load_state_dict_file, resolve_pretrained, sha256_of

log = logging.getLogger("deepcascade")

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"  # torchvision VGG19_Weights.IMAGENET1K_V1


def _vgg19(weights: str, relu: bool, seed: int) -> Backbone:
    from torchvision.models import VGG19_Weights

    from .vgg19 import VGG19Pyramid

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = VGG19Pyramid(relu=relu)
    if weights == "random":
        net.weights_description = f"RANDOM weights (seed {seed}) - for tests only, features are meaningless"
        return net
    if weights == "imagenet":
        path = resolve_pretrained(VGG19_Weights.IMAGENET1K_V1.url, "DEEPCASCADE_VGG19_WEIGHTS", "vgg19")
        desc = f"ImageNet IMAGENET1K_V1 ({path})"
    else:
        path, desc = weights, f"file {weights}"
    sd = load_state_dict_file(path)
    try:
        net.load_weights(sd, str(path))
    except (KeyError, RuntimeError) as e:
        raise UserError(f"weights file {path} does not fit VGG-19: {str(e).splitlines()[0][:300]}") from None
    net.weights_file, net.weights_sha256, net.weights_description = str(path), sha256_of(path), desc
    return net


def _efficientnet_lite0(weights: str, relu: bool, seed: int) -> Backbone:
    from .efficientnet_lite0 import build as build_effnet

    return build_effnet(weights, relu, seed)


REGISTRY = {"vgg19": _vgg19, "efficientnet_lite0": _efficientnet_lite0}


def build_backbone(name: str, weights: str = "imagenet", relu: bool = False, seed: int = 0) -> Backbone:
    """Build a frozen backbone; the weights used are logged (random ones always said loudly)."""
    if name not in REGISTRY:
        raise UserError(f"unknown backbone {name!r}; available: {', '.join(REGISTRY)}")
    net = REGISTRY[name](weights, relu, seed).freeze()
    (log.warning if weights == "random" else log.info)(
        "backbone %s: %s%s", name, net.weights_description,
        f" sha256={net.weights_sha256}" if net.weights_sha256 else "")
    return net


def backbone_from_config(cfg) -> Backbone:
    b = cfg.backbone
    return build_backbone(b.name, b.weights, b.relu, b.seed)


__all__ = ["LEVELS", "Backbone", "build_backbone", "backbone_from_config"]
