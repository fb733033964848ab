"""Deepest-level (conv_5_1) translation: T_AB, T_BA with WGAN-GP, cycle and identity (docs/method.md section 3).

The losses are written as functions of the networks and a batch (``critic_step``, ``generator_losses``),
so the stage and the tests share them; :class:`DeepStage` adds data, sampling and the engine.
"""

from __future__ import annotations

import logging

import torch

from ..rundir import stage_name
from ..engine.trainer import Stage, TrainContext, per_rank_batch
from ..losses import cycle_loss, identity_loss, layout_loss, wgan_critic_loss, wgan_generator_loss
from ..models import deep_nets
from ..outputs.grids import feature_preview, save_grid, to_unit
from .adversarial import adversarial_step, make_optimizers
from .experiment import Experiment

LEVEL = 5
log = logging.getLogger("deepcascade")


def critic_fakes(nets: dict, batches_a: list, batches_b: list, ctx: TrainContext) -> list[tuple]:
    """(T_AB(a), T_BA(b)) of every critic batch, detached, each direction in one pass over the batches together:
    the translators do not change during the critic updates, and one batch of n_critic x n runs faster than
    n_critic batches of n (benchmarks/bench_train.py). Per sample the same translation (the translators
    normalize per sample), up to float rounding."""
    if not batches_a:
        return []
    with ctx.autocast(), torch.no_grad():
        fake_b = nets["T_AB"](torch.cat(batches_a)).split([len(x) for x in batches_a])
        fake_a = nets["T_BA"](torch.cat(batches_b)).split([len(x) for x in batches_b])
    return list(zip(fake_b, fake_a))


def critic_step(nets: dict, a: torch.Tensor, b: torch.Tensor, lambda_gp: float, ctx: TrainContext,
                fakes: tuple | None = None) -> dict:
    """One update of both critics: real target-domain features vs (detached) translations; ``fakes``:
    (T_AB(a), T_BA(b)) when the caller has them already (:func:`critic_fakes`)."""
    with ctx.autocast():
        if fakes is None:
            with torch.no_grad():
                fakes = nets["T_AB"](a), nets["T_BA"](b)
        fake_b, fake_a = fakes
        lb = wgan_critic_loss(nets["D_B"], b, fake_b, lambda_gp, scaler=ctx.scalers["D"])
        la = wgan_critic_loss(nets["D_A"], a, fake_a, lambda_gp, scaler=ctx.scalers["D"])
        loss = la["loss"] + lb["loss"]
    ctx.optimize("D", loss)
    return {"critic": loss.detach(), "gp": la["gp"] + lb["gp"], "wasserstein": la["wasserstein"] + lb["wasserstein"]}


def generator_losses(nets: dict, a: torch.Tensor, b: torch.Tensor, c) -> dict:
    """Adversarial + lambda_cycle * cycle + lambda_identity * identity (+ lambda_layout * layout), for both
    directions.

    ``c`` is the ``deep`` config section (or anything with its fields).
    """
    t_ab, t_ba = nets["T_AB"], nets["T_BA"]
    ab, ba = t_ab(a), t_ba(b)
    adv = wgan_generator_loss(nets["D_B"], ab) + wgan_generator_loss(nets["D_A"], ba)
    cyc = cycle_loss(a, b, t_ba(ab), t_ab(ba), c.norm)
    idt = identity_loss(a, b, t_ba(a), t_ab(b), c.norm)
    total = adv + c.lambda_cycle * cyc + c.lambda_identity * idt
    out = {"g_adv": adv, "cycle": cyc, "identity": idt}
    if c.lambda_layout > 0:
        out["layout"] = layout_loss(a, b, ab, ba)
        total = total + c.lambda_layout * out["layout"]
    return {"loss": total, **out}


def train_step(nets: dict, batches_a: list, batches_b: list, c, ctx: TrainContext) -> dict:
    """``n_critic`` critic updates on fresh batches, then one generator update on the last batch."""
    fakes = critic_fakes(nets, batches_a[:-1], batches_b[:-1], ctx)
    return adversarial_step(list(zip(batches_a, batches_b, fakes + [None])),
                            lambda abf: critic_step(nets, *abf[:2], c.lambda_gp, ctx, fakes=abf[2]),
                            lambda abf: generator_losses(nets, *abf[:2], c), [nets["D_A"], nets["D_B"]], ctx)


class DeepStage(Stage):
    """Trains the level-5 translators from (cached) normalized conv_5_1 features of both domains."""

    def __init__(self, exp: Experiment):
        c = exp.cfg.deep
        self.exp, self.c = exp, c
        self.name = stage_name("deep", LEVEL)
        self.steps = c.steps
        self.batch_size = per_rank_batch(c.batch_size, exp.cfg.engine.batch_per_rank)
        channels, size, _ = exp.backbone.feature_shape(LEVEL, exp.cfg.data.image_size)
        self.nets = deep_nets(channels, size, c.gn_groups, c.critic_width, c.min_bottleneck)
        if size < c.min_bottleneck:
            log.warning("level 5 is %dx%d at %d px with %s: smaller than deep.min_bottleneck (%d), so the "
                        "translators have little room to keep the source's layout; use a larger data.image_size",
                        size, size, exp.cfg.data.image_size, exp.backbone.name, c.min_bottleneck)
        self.optimizers = make_optimizers(self.nets, c.lr)
        self.ema_nets, self.ema_decay = ("T_AB", "T_BA"), c.ema_decay
        self.compat = {**exp.compat, "level": LEVEL}
        self._fixed = None

    def next_batch(self, generator):
        n, k = self.batch_size, self.c.n_critic + 1
        a = self.exp.domain_a.sample(n * k, generator, levels=[LEVEL], with_image=False)[LEVEL]
        b = self.exp.domain_b.sample(n * k, generator, levels=[LEVEL], with_image=False)[LEVEL]
        return list(a.split(n)), list(b.split(n))

    def train_step(self, batch, ctx):
        return train_step(self.nets, batch[0], batch[1], self.c, ctx)

    @torch.no_grad()
    def sample(self, path):
        """Rows: fixed A sources, then fixed B sources (translated the other way).

        Columns: source | I_5(source features) | I_5(translation), or channel means of the features when
        I_5 has not been trained.
        """
        exp = self.exp
        if self._fixed is None:
            self._fixed = (exp.domain_a.fixed(4, levels=[LEVEL]), exp.domain_b.fixed(4, levels=[LEVEL]))
        inv = exp.models.inversion(LEVEL)
        size = exp.cfg.data.image_size
        show = (lambda f: to_unit(inv(f))) if inv is not None else (lambda f: feature_preview(f, size))
        cols = [[], [], []]
        for fixed, t in zip(self._fixed, (self.nets["T_AB"], self.nets["T_BA"])):
            t.eval()
            cols[0].append(fixed["image"])
            cols[1].append(show(fixed[LEVEL]))
            cols[2].append(show(t(fixed[LEVEL])))
            t.train()
        save_grid([torch.cat(c) for c in cols], path)
