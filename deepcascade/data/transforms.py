"""Image geometry: resize the shorter side, centre-crop a square, and the tensor <-> PIL conversions.

torch is imported only by the conversions, so the Pillow geometry also serves the torch-free ONNX engine
(``inference/onnx_engine.py``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize so that the shorter side is ``size`` (bicubic, antialiased), keeping the aspect ratio."""
    w, h = img.size
    if min(w, h) == size:
        return img
    scale = size / min(w, h)
    return img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (3, H, W) in [0, 1]."""
    import torch

    arr = np.asarray(img, dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def to_pil(x: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [0, 1] -> PIL RGB."""
    import torch

    arr = (x.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, mode="RGB")


def center_square(img: Image.Image, image_size: int) -> torch.Tensor:
    """Resize the shorter side to ``image_size`` and centre-crop a square: the whole object, no randomness.

    An ``image_size`` x ``image_size`` input passes through unchanged.
    """
    return to_tensor(center_crop(resize_shorter(img, image_size), image_size))
