"""Image squares: every image is brought to its ``load_size`` square (shorter side -> L, centre crop), the
unit the feature cache stores and training crops are taken from."""

from __future__ import annotations

import collections
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..data.images import load_image
from ..data.transforms import center_crop, resize_shorter
from ..errors import UserError


def file_list_hash(files: Sequence[Path]) -> str:
    """SHA-256 over the files' paths relative to their common folder, sizes and modification times."""
    files = [Path(f) for f in files]
    if not files:
        return hashlib.sha256(b"").hexdigest()
    root = os.path.commonpath([str(f.resolve().parent) for f in files])
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        rel = os.path.relpath(str(f.resolve()), root).replace(os.sep, "/")
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_square(path: str | Path, load_size: int) -> np.ndarray:
    """Decode ``path`` to its uint8 (3, L, L) square: shorter side -> L, centre crop (as ``center_square``)."""
    try:
        img = load_image(path, max_side=load_size)
    except Exception as e:  # the file changed or vanished since it was scanned
        raise UserError(f"cannot read image {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    sq = center_crop(resize_shorter(img, load_size), load_size)
    return np.ascontiguousarray(np.asarray(sq, dtype=np.uint8).transpose(2, 0, 1))


def iter_squares(files: Sequence[Path], load_size: int, batch_size: int, workers: int = 2
                 ) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (first index, uint8 (n, 3, L, L)) batches; decoding runs in threads one batch ahead."""
    with ThreadPoolExecutor(max(1, workers)) as ex:
        starts = iter(range(0, len(files), batch_size))
        pending: collections.deque = collections.deque()

        def submit(i0):
            pending.append((i0, [ex.submit(load_square, files[i], load_size)
                                 for i in range(i0, min(i0 + batch_size, len(files)))]))

        for _ in range(2):
            i0 = next(starts, None)
            if i0 is not None:
                submit(i0)
        while pending:
            i0, futures = pending.popleft()
            nxt = next(starts, None)
            if nxt is not None:
                submit(nxt)
            yield i0, torch.from_numpy(np.stack([f.result() for f in futures]))


def mirror_window(x: np.ndarray, oy: int, ox: int, size: int, flip: bool) -> np.ndarray:
    """Window (.., size, size) at (oy, ox) of ``x`` (..., H, W), or of its horizontal mirror when ``flip``."""
    if not flip:
        return x[..., oy:oy + size, ox:ox + size]
    w = x.shape[-1]
    x0 = w - size - ox
    return x[..., oy:oy + size, x0:x0 + size][..., ::-1]
