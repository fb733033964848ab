"""LPIPS nearest neighbours of each translation among the target domain's training images (the paper's check that
translations are not copies of training images, supplementary section 5, figures 17-18).

Exhaustive: every translation against every training image, over cached embeddings (``perceptual.py``), in
chunks that bound memory. Candidates are ranked with a float32 matrix product on the device
(|q|^2 + |r|^2 - 2 q.r); the best ``k + MARGIN`` of each query are then re-scored exactly, in float64, as the
sum of squared differences, and the ``k`` smallest exact distances are returned.
"""

from __future__ import annotations

import numpy as np
import torch
from ..progress import progress

MARGIN = 8
CHUNK_BYTES = 256 << 20  # float32 bytes of embeddings held per chunk


def _rows_per_chunk(dim: int) -> int:
    return max(1, CHUNK_BYTES // (4 * max(1, dim)))


def exact_distances(q: np.ndarray, refs: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """float64 ||q - refs[j]||^2 for each j in ``idx`` (one query row)."""
    order = np.argsort(idx)  # memory maps read fastest in order
    rows = np.asarray(refs[idx[order]], dtype=np.float64)
    d = ((rows - np.asarray(q, dtype=np.float64)[None]) ** 2).sum(1)
    out = np.empty_like(d)
    out[order] = d
    return out


def nearest_neighbours(queries: np.ndarray, refs: np.ndarray, k: int = 3, device="cpu",
                       desc: str = "nearest neighbours") -> tuple[np.ndarray, np.ndarray]:
    """Indices (Nq, k) into ``refs`` and exact squared distances (Nq, k), nearest first."""
    nq, nr = len(queries), len(refs)
    k = min(k, nr)
    cand_k = min(nr, k + MARGIN)
    if nq == 0 or k == 0:
        return np.zeros((nq, k), np.int64), np.zeros((nq, k))
    step = _rows_per_chunk(queries.shape[1])
    device = torch.device(device)
    best_d = torch.full((nq, 0), float("inf"))
    best_i = torch.zeros((nq, 0), dtype=torch.long)
    with progress(total=nr, desc=desc, unit="img", leave=False, dynamic_ncols=True) as bar:
        for r0 in range(0, nr, step):
            r = torch.from_numpy(np.array(refs[r0: r0 + step], dtype=np.float32)).to(device)
            r2 = (r * r).sum(1)
            ds, is_ = [], []
            for q0 in range(0, nq, step):
                q = torch.from_numpy(np.array(queries[q0: q0 + step], dtype=np.float32)).to(device)
                d = (q * q).sum(1, keepdim=True) + r2[None] - 2.0 * q @ r.T
                top = torch.topk(d, min(cand_k, d.shape[1]), dim=1, largest=False)
                ds.append(top.values.cpu())
                is_.append(top.indices.cpu() + r0)
            best_d = torch.cat([best_d, torch.cat(ds)], 1)
            best_i = torch.cat([best_i, torch.cat(is_)], 1)
            top = torch.topk(best_d, min(cand_k, best_d.shape[1]), dim=1, largest=False)
            best_d, best_i = top.values, best_i.gather(1, top.indices)
            bar.update(len(r))
    idx = np.zeros((nq, k), np.int64)
    dist = np.zeros((nq, k))
    for i in range(nq):
        cand = best_i[i].numpy()
        exact = exact_distances(queries[i], refs, cand)
        order = np.lexsort((cand, exact))[:k]  # ties broken by index, as a brute-force argsort would be stable
        idx[i], dist[i] = cand[order], exact[order]
    return idx, dist
