"""Image grids for sample pages, and a quick look at feature maps when no inversion network exists."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from ..fileio import atomic_path
from ..data.transforms import to_pil


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Network images in [-1, 1] -> [0, 1]."""
    return (images.float() + 1.0) / 2.0


def feature_preview(features: torch.Tensor, size: int) -> torch.Tensor:
    """Channel mean of normalized features (N, C, h, w) as grey images (N, 3, size, size) in [0, 1]."""
    m = features.float().mean(1, keepdim=True)
    lo = m.amin(dim=(2, 3), keepdim=True)
    hi = m.amax(dim=(2, 3), keepdim=True)
    m = (m - lo) / (hi - lo).clamp_min(1e-6)
    return F.interpolate(m, size=(size, size), mode="nearest").repeat(1, 3, 1, 1)


def save_image_atomic(image, path: str | Path) -> None:
    """Write a PIL image (format from the suffix) atomically: no half-written file, a previous one intact."""
    path = Path(path)
    kwargs = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    with atomic_path(path) as tmp:
        image.save(tmp, **kwargs)


def save_grid(columns: list[torch.Tensor], path: str | Path, padding: int = 2) -> None:
    """Save a grid whose rows are samples and whose columns are the given (N, 3, H, W) [0, 1] batches."""
    n = columns[0].shape[0]
    tiles = [col[i].detach().float().cpu().clamp(0, 1) for i in range(n) for col in columns]
    grid = make_grid(torch.stack(tiles), nrow=len(columns), padding=padding, pad_value=1.0)
    save_image_atomic(to_pil(grid), path)
