"""Frozen feature extractors. ``build_backbone`` is the registry: add an entry to add a backbone."""

from __future__ import annotations

import importlib
import logging

from ..errors import UserError
from .specs import LEVELS, SPECS, BackboneSpec, get_spec

log = logging.getLogger("deepcascade")

# Each entry is a module with ``create(relu) -> Backbone``, ``imagenet_weights() -> (path, description)`` and
# ``load_weights(net, path)`` (raising UserError when the file does not fit). Add a backbone by adding one.
# Their static facts (strides, channels, level names) are in ``specs.py``, readable without torch.
REGISTRY = {"vgg19": "vgg19", "efficientnet_lite0": "efficientnet_lite0",
            "efficientnet_lite0_s16": "efficientnet_lite0_s16", "alexnet": "alexnet"}


def build_backbone(name: str, weights: str = "imagenet", relu: bool = False, seed: int = 0) -> "Backbone":
    """Build a frozen backbone: ``weights`` is 'imagenet', a file path, or 'random' (seeded, tests only).

    The weights used are logged with their SHA-256; random ones are always said loudly.
    """
    import torch

    from .weights import sha256_of

    if name not in REGISTRY:
        raise UserError(f"unknown backbone {name!r}; available: {', '.join(REGISTRY)}")
    entry = importlib.import_module(f"{__name__}.{REGISTRY[name]}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = entry.create(relu)
    if weights == "random":
        net.weights_description = f"RANDOM weights (seed {seed}) - for tests only, features are meaningless"
    else:
        path, desc = entry.imagenet_weights() if weights == "imagenet" else (weights, f"file {weights}")
        entry.load_weights(net, path)
        net.weights_file, net.weights_sha256, net.weights_description = str(path), sha256_of(path), desc
    net.freeze()
    (log.warning if weights == "random" else log.info)(
        "backbone %s: %s%s", name, net.weights_description,
        f" sha256={net.weights_sha256}" if net.weights_sha256 else "")
    return net


def backbone_from_config(cfg) -> "Backbone":
    b = cfg.backbone
    return build_backbone(b.name, b.weights, b.relu, b.seed)


def __getattr__(name):  # the torch-based interface is imported on first use, not with the package
    if name == "Backbone":
        from .base import Backbone

        return Backbone
    raise AttributeError(name)


__all__ = ["LEVELS", "SPECS", "BackboneSpec", "get_spec", "Backbone", "build_backbone", "backbone_from_config"]
