"""Exponential moving averages of the generators' weights (the generator EMA of StarGAN v2, StyleGAN, BigGAN).

An adversarial generator's last iterate is one point of an oscillation; the average of its recent iterates is
a steadier network. ``torch.optim.swa_utils.AveragedModel`` keeps the averaged copy (and its update count, a
buffer, so that a resume continues the same average); the decay warms up as ``min(decay, (1 + n) / (10 + n))``
after ``n`` updates, so that a run of a few hundred steps does not keep the random initialisation in its average.
Buffers (normalization statistics) are copied, not averaged. The averaged copies are what the stage's inference
snapshot holds; training checkpoints hold both.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel


def _warm_ema(decay: float):
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = float(n_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update


def averaged_copies(nets: dict[str, torch.nn.Module], names, decay: float) -> dict[str, AveragedModel]:
    """An :class:`AveragedModel` of each of ``nets[name]`` (none when ``decay`` is 0)."""
    if decay <= 0:
        return {}
    return {k: AveragedModel(nets[k], multi_avg_fn=_warm_ema(decay), use_buffers=False) for k in names}


@torch.no_grad()
def update(averages: dict[str, AveragedModel], nets: dict[str, torch.nn.Module]) -> None:
    """One averaging step after an optimizer step (AveragedModel copies the buffers as they are)."""
    for k, avg in averages.items():
        avg.update_parameters(nets[k])
