"""What every built-in pair's renderer shares: domain names, the smallest size, the per-image random generator,
smooth noise and the supersampling factor.

Every image of every pair is a pure function of ``(pair, domain, index, size, seed)``: its generator is seeded
from those numbers alone (no global RNG), so the first N images of a bigger set are the smaller set.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ...domains import FOLDER_DOMAINS as DOMAINS

MIN_SIZE = 32
TEST_INDEX_BASE = 1_000_000_000  # test image i has index TEST_INDEX_BASE + i; train indices are 0..n-1


def image_rng(domain: str, index: int, seed: int, *stream: int) -> np.random.Generator:
    """The generator of one image: ``SeedSequence([seed, domain, index, *stream])``; ``stream`` keeps the pairs'
    draws apart (the animal pair uses none)."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be >= 0, got index={index}, seed={seed}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), DOMAINS.index(domain), int(index), *stream]))


def check_size(size: int) -> None:
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")


def supersampling(size: int) -> int:
    """Drawing scale before the box-filter downsample that antialiases the edges."""
    return 4 if size <= 96 else 3 if size <= 256 else 2


def value_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth noise in about [-1, 1]: a random ``cells`` grid upsampled bicubically to (h, w)."""
    g = rng.random((cells, cells), dtype=np.float32) * 2 - 1
    return np.asarray(Image.fromarray(g, mode="F").resize((w, h), Image.Resampling.BICUBIC))


def mix(c0, c1, t):
    """Linear blend of two colours (arrays broadcast)."""
    return np.asarray(c0, float) * (1 - t) + np.asarray(c1, float) * t
