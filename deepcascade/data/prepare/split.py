"""Deterministic train/test splits that depend only on a key (a file's relative path, a COCO image id) and a
seed: never on the listing order, the machine, or Python's per-process string hashing."""

from __future__ import annotations

import hashlib


def split_key(key, seed: int = 0) -> float:
    """A number in [0, 1) that is a pure function of ``(seed, key)``: the first 8 bytes of SHA-256."""
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def in_test(key, fraction: float, seed: int = 0) -> bool:
    """Threshold split: ``key`` is held out when its split key is below ``fraction``.

    Each key decides alone, so the held-out set of one category does not depend on which other categories are
    prepared (the COCO zebra test images are the same for zebra<->giraffe and zebra<->elephant)."""
    return split_key(key, seed) < fraction


def held_out_keys(keys, fraction: float, seed: int = 0) -> set:
    """Rank split: the ``round(fraction * len(keys))`` keys with the smallest split keys (an exact count).

    Adding or removing one key moves at most one other key across the boundary."""
    keys = list(keys)
    n_test = int(fraction * len(keys) + 0.5)
    return set(sorted(keys, key=lambda k: (split_key(k, seed), str(k)))[:n_test])
