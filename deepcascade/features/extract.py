"""Running the frozen backbone for the feature pipeline: a :class:`FeatureSpec` says which backbone, where, in
which precision and at which sizes; :func:`extract` runs it without gradients; :func:`crop_consistency`
measures how far a window of the features of an image is from the features of the cropped image."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

from ..backbones.specs import LEVELS

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


def crop_consistency(backbone, images: torch.Tensor, levels: Iterable[int] = LEVELS, image_size: int | None = None,
                     offsets: Sequence[tuple[int, int]] | None = None, margin: int = 0,
                     precision: str = "fp32") -> dict[int, float]:
    """How close "crop of the features" is to "features of the cropped image", per level.

    ``images``: (N, 3, L, L) in [0, 1]. For each offset (default: the corners and the centre, on the 16-px
    grid), compares the level-l window of F(images) with F(window of images) and returns the relative L2 error
    sqrt(sum diff^2 / sum F(window)^2) over all images and offsets. ``margin`` leaves out that many feature
    cells along the window border (where zero padding differs).
    """
    levels = sorted(set(int(l) for l in levels))
    L = images.shape[-1]
    step = max(backbone.strides[l] for l in levels)
    S = int(image_size or (L - step))
    if offsets is None:
        last = (L - S) // step * step
        mid = (L - S) // 2 // step * step
        offsets = sorted({(0, 0), (0, last), (last, 0), (last, last), (mid, mid)})
    full = extract(backbone, images, levels, precision)
    num = {l: 0.0 for l in levels}
    den = {l: 0.0 for l in levels}
    for oy, ox in offsets:
        if oy % step or ox % step:
            raise ValueError(f"offsets must be multiples of {step}, got {(oy, ox)}")
        fc = extract(backbone, images[..., oy:oy + S, ox:ox + S], levels, precision)
        for l in levels:
            s = backbone.strides[l]
            h = backbone.spec.feature_size(l, S)
            a = full[l][..., oy // s: oy // s + h, ox // s: ox // s + h].double()
            b = fc[l].double()
            if margin:
                a, b = a[..., margin:h - margin, margin:h - margin], b[..., margin:h - margin, margin:h - margin]
            num[l] += float(((a - b) ** 2).sum())
            den[l] += float((b ** 2).sum())
    return {l: math.sqrt(num[l] / den[l]) if den[l] > 0 else 0.0 for l in levels}
