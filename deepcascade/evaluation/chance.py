"""Chance levels and how far a run goes from chance to the floor.

A figure that compares each translation with its source (a colour distance, a shift of the object) means little
alone: it is read between its floor (the same figure for the untranslated source or its reconstruction, which
no translation can beat) and its chance level (the same figure for a real target-domain image that has nothing
to do with the source). ``progress = (chance - value) / (chance - floor)``: 1 at the floor, 0 at chance,
negative beyond chance.

The chance level pairs each source with ``CHANCE_PAIRS`` real target images drawn at random (without
replacement, from a generator seeded by the evaluation's seed), so it is the same on every evaluation of the
same images.
"""

from __future__ import annotations

import numpy as np

CHANCE_PAIRS = 8  # random target images per source


def partners(n_sources: int, n_targets: int, seed: int, k: int = CHANCE_PAIRS) -> list[np.ndarray]:
    """For each of ``n_sources`` sources, the indices of ``min(k, n_targets)`` distinct random target images."""
    rng = np.random.default_rng(seed)
    k = min(k, n_targets)
    return [rng.choice(n_targets, size=k, replace=False) if k else np.zeros(0, int) for _ in range(n_sources)]


def progress(value: float | None, floor: float | None, chance: float | None) -> float | None:
    """``(chance - value) / (chance - floor)``; None when a figure is missing or chance is not above the floor
    (then the figure cannot tell a translation from an unrelated image)."""
    if value is None or floor is None or chance is None or not chance > floor:
        return None
    return float((chance - value) / (chance - floor))


def mean_or_none(values) -> float | None:
    """Mean of the finite values, None when there is none."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else None
