"""The image sets an evaluation reads: files decoded once per pass, at one evaluation size, streamed in batches.

Every measure sees the same pixels: the shorter side resized to the evaluation size (PIL bicubic, antialiased)
and the centre square cropped, i.e. the test transform the translator itself applies. Translations written at
that size pass through unchanged. Images arrive as uint8 batches, the input torch-fidelity's Inception expects,
so memory stays bounded by the batch size whatever the number of files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from ..progress import progress

from ..data.images import load_image, scan_images
from ..data.transforms import center_crop, resize_shorter
from ..errors import UserError

log = logging.getLogger("deepcascade")

RESIZE = "shorter side to the evaluation size (PIL bicubic, antialiased), centre square crop"


class ImageSet(torch.utils.data.Dataset):
    """Image files read as uint8 tensors (3, size, size); unreadable files were dropped (and named) when listed."""

    def __init__(self, files: list[Path], size: int, what: str, root: Path | None = None):
        self.files = [Path(f) for f in files]
        self.size = int(size)
        self.what = what
        self.root = Path(root) if root is not None else None

    @classmethod
    def from_folder(cls, folder: str | Path, size: int, what: str) -> "ImageSet":
        """Every decodable image below ``folder`` (recursive, sorted); unreadable files are named in the log."""
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{what}: folder not found: {folder}")
        return cls(scan_images(folder, what).good, size, what, folder)

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        """The file's name relative to its folder (the key that pairs translations with their sources)."""
        p = self.files[i]
        return str(p.relative_to(self.root)) if self.root is not None and p.is_relative_to(self.root) else p.name

    def pil(self, i: int):
        """The i-th image as the evaluation sees it (PIL RGB, size x size)."""
        try:
            img = load_image(self.files[i], max_side=4 * self.size)
        except Exception as e:  # it decoded when listed: changed on disk since
            raise UserError(f"{self.what}: cannot read {self.files[i]} any more: {type(e).__name__}: {e}") from None
        return center_crop(resize_shorter(img, self.size), self.size)

    def __getitem__(self, i: int) -> torch.Tensor:
        arr = np.asarray(self.pil(i), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def subset(self, indices) -> "ImageSet":
        return ImageSet([self.files[i] for i in indices], self.size, self.what, self.root)

    def slot(self, model: str) -> str:
        """Names this set (its folder and role) through ``model``, whatever the files' current state."""
        where = self.root or (self.files[0].parent if self.files else Path("."))
        return f"{Path(where).resolve()}|{self.what}|{self.size}|{model}"

    def fingerprint(self) -> str:
        """Changes when a file, its size or modification time, or the evaluation size changes: the cache key."""
        h = hashlib.sha256(json.dumps({"size": self.size}).encode())
        for p in self.files:
            st = p.stat()
            h.update(f"\0{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        return h.hexdigest()

    def batches(self, batch_size: int, desc: str | None = None, workers: int | None = None):
        """Yield ``(start, uint8 batch (B, 3, S, S))`` in order, decoding in ``workers`` processes, with a
        progress bar."""
        if workers is None:
            workers = 0 if len(self) < 64 else 2
        loader = torch.utils.data.DataLoader(self, batch_size=batch_size, shuffle=False, num_workers=workers)
        start = 0
        with progress(total=len(self), desc=desc or self.what, unit="img", dynamic_ncols=True, leave=False) as bar:
            for batch in loader:
                yield start, batch
                start += batch.shape[0]
                bar.update(batch.shape[0])


def to_float(batch: torch.Tensor, device) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [0, 1] on ``device``."""
    return batch.to(device, non_blocking=True).float().div_(255.0)
