"""On-disk cache of per-image arrays (Inception features, LPIPS embeddings, probe features, pixels).

What is expensive to compute per image is computed once and kept under ``OUT/cache/`` as a ``.npy`` memory map,
so a second evaluation (another run against the same real images, another direction) reads it instead. A cache
entry is named by a hash of everything that determines it (the image set's fingerprint, the model and its
weights' SHA-256, the size); its ``.json`` is written last, so an interrupted fill is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..fileio import atomic_path, write_text

log = logging.getLogger("deepcascade")


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached_rows(cache_dir: str | Path | None, name: str, key: dict, shape: tuple, dtype,
                fill: Callable[[np.ndarray], None], slot: str | None = None) -> np.ndarray:
    """An array of ``shape`` (rows = images) filled by ``fill(array)``, cached under ``cache_dir``.

    With ``cache_dir`` None the array is filled in memory. Otherwise the result is a read-only memory map, so
    large embedding sets are read in chunks rather than held in memory. Entries of the same ``slot`` (e.g. one
    folder's images through one model) replace each other, so re-written translations do not pile up.
    """
    if cache_dir is None or 0 in shape:  # nothing worth caching (an empty file cannot be memory-mapped)
        arr = np.zeros(shape, dtype=dtype)
        fill(arr)
        return arr
    cache_dir = Path(cache_dir)
    stem = f"{name}-{key_hash(key)}"
    data, meta = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    want = {"key": key, "shape": list(shape), "dtype": np.dtype(dtype).name, "slot": slot, "complete": True}
    if data.is_file() and meta.is_file():
        try:
            if json.loads(meta.read_text()) == json.loads(json.dumps(want, default=str)):
                arr = np.load(data, mmap_mode="r")
                if arr.shape == tuple(shape):
                    log.debug("cache hit %s", data)
                    return arr
        except (OSError, ValueError):
            pass  # unreadable or stale entry: recompute below
    meta.unlink(missing_ok=True)
    if slot is not None:
        _drop_slot(cache_dir, name, slot)
    with atomic_path(data) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        fill(arr)
        arr.flush()
        del arr
    write_text(meta, json.dumps(want, indent=1, default=str) + "\n")
    return np.load(data, mmap_mode="r")


def _drop_slot(cache_dir: Path, name: str, slot: str) -> None:
    """Remove the other entries of ``slot`` (stale versions of the same images through the same model)."""
    for meta in cache_dir.glob(f"{name}-*.json"):
        try:
            if json.loads(meta.read_text()).get("slot") != slot:
                continue
        except (OSError, ValueError):
            continue
        meta.unlink(missing_ok=True)
        meta.with_suffix(".npy").unlink(missing_ok=True)
