"""Running the frozen backbone for the feature pipeline: a :class:`FeatureSpec` says which backbone, where, in
which precision and at which sizes; :func:`extract` runs it without gradients."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable

import torch

_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def extract(backbone, images: torch.Tensor, levels: Iterable[int], precision: str = "fp32",
            channels_last: bool = False) -> dict[int, torch.Tensor]:
    """Backbone features (float32, NCHW-contiguous) of images in [0, 1], under no_grad and optional autocast."""
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {list(_PRECISIONS)}, got {precision!r}")
    dtype = _PRECISIONS[precision]
    with torch.no_grad(), torch.autocast(images.device.type, dtype=dtype or torch.bfloat16,
                                         enabled=dtype is not None):
        x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        out = backbone(x, levels)
    return {l: v.float().contiguous() for l, v in out.items()}



def backbone_identity(backbone) -> dict:
    """What identifies a backbone's features: name, weights (file SHA-256, or a hash of random ones), ReLU."""
    if getattr(backbone, "weights_sha256", None):
        weights = f"sha256:{backbone.weights_sha256}"
    else:
        # Random weights carry no file; hash the parameters themselves (a changed seed or init changes it).
        h = hashlib.sha256()
        for k, v in sorted(backbone.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        weights = f"random:params-sha256:{h.hexdigest()[:32]}"
    return {"backbone": backbone.name, "weights": weights, "relu": bool(backbone.relu)}



@dataclass
class FeatureSpec:
    """Everything that determines the features of an image: the backbone, the device and precision it runs
    in, and the geometry (the ``load_size`` square every image is brought to, the ``image_size`` training crop,
    and how many fixed training crops per image the feature cache holds).
    """

    backbone: torch.nn.Module
    load_size: int
    image_size: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    channels_last: bool = False
    crops: int = 4

    @property
    def n_crops(self) -> int:
        """Training crops per image in the cache: ``crops``, or 1 when the square is the crop."""
        return 1 if self.load_size == self.image_size else max(1, int(self.crops))

    def __post_init__(self):
        self.device = torch.device(self.device)
        if self.image_size > self.load_size:
            from ..errors import UserError

            raise UserError(f"image_size ({self.image_size}) must be <= load_size ({self.load_size})")

    def extract(self, images: torch.Tensor, levels: Iterable[int]) -> dict[int, torch.Tensor]:
        """:func:`extract` with this spec's backbone, precision and memory format."""
        return extract(self.backbone, images, levels, self.precision, self.channels_last)

    def identity(self) -> dict:
        """:func:`backbone_identity` of the backbone."""
        return backbone_identity(self.backbone)
