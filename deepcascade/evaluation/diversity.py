"""Collapse measure: how varied the translations are, relative to real images of the target domain.

collapse_ratio = mean pairwise perceptual distance among the translations / the same among real target images.
About 1 for a translator whose outputs vary as much as real images do, 0 when every input gets the same output
(a collapsed translator: twenty zebras in, one giraffe out).

With embeddings whose squared Euclidean distance is the perceptual distance (``perceptual.py``), the mean over
all ordered pairs i != j is computed in one streaming pass without forming pairs:
sum_{i,j} ||e_i - e_j||^2 = 2 n sum_i ||e_i - c||^2 - 2 ||sum_i (e_i - c)||^2 for any c. We take c = e_0 (the
first row): the result is unchanged, the sums stay small, and identical embeddings give exactly 0.
"""

from __future__ import annotations

import numpy as np

from .lpips_nn import _rows_per_chunk


def mean_pairwise_distance(emb: np.ndarray) -> float:
    """Mean of ||e_i - e_j||^2 over ordered pairs i != j of the rows of ``emb`` (NaN below 2 rows)."""
    n = len(emb)
    if n < 2:
        return float("nan")
    c = np.asarray(emb[0], dtype=np.float64)
    total = np.zeros_like(c)
    sq = 0.0
    step = _rows_per_chunk(emb.shape[1])
    for s in range(0, n, step):
        x = np.asarray(emb[s: s + step], dtype=np.float64) - c
        total += x.sum(0)
        sq += float((x * x).sum())
    pair_sum = 2.0 * n * sq - 2.0 * float(total @ total)
    return max(0.0, pair_sum) / (n * (n - 1))


def collapse_ratio(fake_emb: np.ndarray, real_emb: np.ndarray) -> dict:
    """``{"value", "fake_mean_distance", "real_mean_distance", "n_fake", "n_real"}``; value None when undefined."""
    fake_d, real_d = mean_pairwise_distance(fake_emb), mean_pairwise_distance(real_emb)
    ok = np.isfinite(fake_d) and np.isfinite(real_d) and real_d > 0
    return {"value": fake_d / real_d if ok else None, "fake_mean_distance": fake_d if np.isfinite(fake_d) else None,
            "real_mean_distance": real_d if np.isfinite(real_d) else None,
            "n_fake": len(fake_emb), "n_real": len(real_emb)}
