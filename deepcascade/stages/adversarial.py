"""The adversarial step every WGAN-GP stage shares (level-5 translators, cascade levels, deepVAE levels).

One training step is ``n_critic`` critic updates, each on a fresh batch, then one generator update on the last
batch with the critics frozen [paper: four critic updates per generator update]. A stage supplies the two
updates as functions of one batch; this module owns their order and the critics' freezing.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..engine.trainer import TrainContext


def adversarial_step(batches: Sequence, critic_update: Callable[[object], dict],
                     generator_losses: Callable[[object], dict], critics: Sequence[torch.nn.Module],
                     ctx: TrainContext) -> dict:
    """Critic updates on ``batches[:-1]``, then the generator update on ``batches[-1]``.

    ``critic_update(batch)`` performs one critic optimizer step (through ``ctx.optimize("D", ...)``) and returns
    its statistics; ``generator_losses(batch)`` returns the generator's losses with the total under ``"loss"``,
    computed here under autocast and optimized as ``"G"``. Returns the last critic statistics and the generator
    losses, detached.
    """
    stats = {}
    for batch in batches[:-1]:
        stats = critic_update(batch)
    for d in critics:
        d.requires_grad_(False)
    with ctx.autocast():
        g = generator_losses(batches[-1])
    ctx.optimize("G", g["loss"])
    for d in critics:
        d.requires_grad_(True)
    return {**stats, **{k: v.detach() for k, v in g.items()}}


def make_optimizers(nets: dict, lr: float, generators=("T_AB", "T_BA"), critics=("D_A", "D_B")) -> dict:
    """Adam(lr, betas (0.5, 0.999)) [paper]: 'G' over the generator networks, 'D' over the critics."""
    def adam(names):
        return torch.optim.Adam([p for n in names for p in nets[n].parameters()], lr=lr, betas=(0.5, 0.999))

    return {"G": adam(generators), "D": adam(critics)}
