"""Coarse-to-fine conditional translation of level l = 4, 3, ... (docs/method.md section 4).

Level l is trained with the deeper levels frozen. In direction A->B the input is the frozen cascade's
translation of the source down to level l+1, and the AdaIN parameters come from the source's own level-l
features: ``ẽ_l = T^l_AB(ẽ_{l+1}; M^l_AB(e_l(a)))``. Losses [ours; the paper only says WGAN-GP]:
  * WGAN-GP on level-l features, one critic per direction (real = target-domain features);
  * teacher-forced reconstruction ``||T^l_AB(e_{l+1}(b); M^l_AB(e_l(b))) - e_l(b)||_1`` and symmetric,
    weight ``cascade.lambda_rec``: fed the target domain's own deeper features, T^l must reproduce its level;
  * optional up-consistency (``cascade.lambda_up``): the output pushed through the frozen backbone slice
    l -> l+1 (denormalize, slice, normalize) should give back the translated level-l+1 input.
"""

from __future__ import annotations

import torch

from ..rundir import stage_name
from ..engine.trainer import Stage, TrainContext, per_rank_batch
from ..errors import UserError
from ..losses import feature_distance, layout_loss, wgan_critic_loss, wgan_generator_loss
from ..models import level_nets
from ..networks import CascadeModel
from ..outputs.grids import feature_preview, save_grid, to_unit
from .adversarial import adversarial_step, make_optimizers
from .experiment import Experiment


def translate_level(nets: dict, d: str, deeper: torch.Tensor, source_l: torch.Tensor) -> torch.Tensor:
    """T^l_d(deeper; M^l_d(source level-l features))."""
    return nets[f"T_{d}"](deeper, nets[f"M_{d}"](source_l))


def _cat(parts: list) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def critic_fakes(nets: dict, level: int, batches: list[tuple], ctx: TrainContext) -> list[tuple]:
    """(translated A, translated B) of every critic batch ``(a, b, in_ab, in_ba)``, detached, each direction in
    one pass over the batches together: T^l and M^l do not change during the critic updates, and one batch of
    n_critic x n runs faster than n_critic batches of n (benchmarks/bench_train.py). Per sample the same
    translation (AdaIN normalizes per sample), up to float rounding."""
    if not batches:
        return []
    sizes = [len(x[2]) for x in batches]
    with ctx.autocast(), torch.no_grad():
        fake_b = translate_level(nets, "AB", _cat([x[2] for x in batches]), _cat([x[0][level] for x in batches]))
        fake_a = translate_level(nets, "BA", _cat([x[3] for x in batches]), _cat([x[1][level] for x in batches]))
    return list(zip(fake_b.split(sizes), fake_a.split(sizes)))


def critic_step(nets: dict, level: int, a: dict, b: dict, in_ab, in_ba, lambda_gp: float, ctx: TrainContext,
                fakes: tuple | None = None):
    """Update D_B on real e_l(b) vs translated A, and D_A on real e_l(a) vs translated B; ``fakes``: the two
    translations when the caller has them already (:func:`critic_fakes`)."""
    with ctx.autocast():
        if fakes is None:
            with torch.no_grad():
                fakes = (translate_level(nets, "AB", in_ab, a[level]), translate_level(nets, "BA", in_ba, b[level]))
        fake_b, fake_a = fakes
        lb = wgan_critic_loss(nets["D_B"], b[level], fake_b, lambda_gp, scaler=ctx.scalers["D"])
        la = wgan_critic_loss(nets["D_A"], a[level], fake_a, lambda_gp, scaler=ctx.scalers["D"])
        loss = la["loss"] + lb["loss"]
    ctx.optimize("D", loss)
    return {"critic": loss.detach(), "gp": la["gp"] + lb["gp"], "wasserstein": la["wasserstein"] + lb["wasserstein"]}


def generator_losses(nets: dict, level: int, a: dict, b: dict, in_ab, in_ba, c, up=None) -> dict:
    """Adversarial + lambda_rec * teacher-forced reconstruction (+ lambda_up * up-consistency, + lambda_layout *
    layout against the source's level-l features).

    ``up`` maps normalized level-l features to normalized level-(l+1) features through the frozen
    backbone slice; needed only when ``c.lambda_up > 0``.
    """
    ab = translate_level(nets, "AB", in_ab, a[level])
    ba = translate_level(nets, "BA", in_ba, b[level])
    adv = wgan_generator_loss(nets["D_B"], ab) + wgan_generator_loss(nets["D_A"], ba)
    rec = (feature_distance(translate_level(nets, "AB", b[level + 1], b[level]), b[level])
           + feature_distance(translate_level(nets, "BA", a[level + 1], a[level]), a[level]))
    total = adv + c.lambda_rec * rec
    out = {"g_adv": adv, "rec": rec}
    if c.lambda_up > 0:
        consistency = feature_distance(up(ab), in_ab) + feature_distance(up(ba), in_ba)
        total = total + c.lambda_up * consistency
        out["up"] = consistency
    if c.lambda_layout > 0:
        out["layout"] = layout_loss(a[level], b[level], ab, ba)
        total = total + c.lambda_layout * out["layout"]
    out["loss"] = total
    return out


class CascadeStage(Stage):
    """Trains T^l, M^l (both directions) and the level-l critics, deeper levels frozen."""

    def __init__(self, exp: Experiment, level: int):
        if level not in (1, 2, 3, 4):
            raise UserError(f"cascade levels are 4..1, got {level}")
        c = exp.cfg.cascade
        self.exp, self.c, self.level = exp, c, level
        self.name = stage_name("cascade", level)
        self.steps = c.steps
        self.batch_size = per_rank_batch(c.batch_size, exp.cfg.engine.batch_per_rank)
        self.nets = level_nets(exp.backbone, level, exp.cfg.data.image_size, c.critic_width, c.predictor_width)
        self.ema_nets, self.ema_decay = ("T_AB", "M_AB", "T_BA", "M_BA"), c.ema_decay
        self.optimizers = make_optimizers(self.nets, c.lr, generators=self.ema_nets)
        self.compat = {**exp.compat, "level": level}
        self.frozen = exp.models.hierarchy("cascade", level + 1)
        self.levels = list(range(level, 6))
        self._fixed = None
        self._up = None
        if c.lambda_up > 0:
            slice_ = exp.backbone.slice(level)
            norm = exp.normalizer

            def up(x):
                return norm.normalize(slice_(norm.denormalize(x.float(), level)), level + 1)

            self._up = up

    def next_batch(self, generator):
        n, k = self.batch_size, self.c.n_critic + 1
        a = self.exp.domain_a.sample(n * k, generator, levels=self.levels, with_image=False)
        b = self.exp.domain_b.sample(n * k, generator, levels=self.levels, with_image=False)
        split = lambda d: [dict(zip(self.levels, parts)) for parts in zip(*(d[l].split(n) for l in self.levels))]
        return split(a), split(b)

    def _inputs(self, a: dict, b: dict):
        """Frozen cascade's translations down to level l+1 (no gradient)."""
        with torch.no_grad():
            in_ab = self.frozen.translate(a, "AB", self.level + 1)[self.level + 1]
            in_ba = self.frozen.translate(b, "BA", self.level + 1)[self.level + 1]
        return in_ab, in_ba

    def train_step(self, batch, ctx):
        """``batch``: (the n_critic + 1 batches of A, those of B), each ``{level: features}``. The frozen inputs of
        all of them, and the critics' translations, are computed first, each in one pass over the batches
        together (they do not change within the step)."""
        batches_a, batches_b = batch
        sizes = [len(x[self.level]) for x in batches_a]
        cat = lambda parts: {l: _cat([p[l] for p in parts]) for l in self.levels}
        with ctx.autocast():
            in_ab, in_ba = self._inputs(cat(batches_a), cat(batches_b))
        steps = list(zip(batches_a, batches_b, in_ab.split(sizes), in_ba.split(sizes)))
        fakes = critic_fakes(self.nets, self.level, steps[:-1], ctx) + [None]
        steps = [(*s, f) for s, f in zip(steps, fakes)]

        def critic_update(s):
            return critic_step(self.nets, self.level, *s[:4], self.c.lambda_gp, ctx, fakes=s[4])

        def losses(s):
            return generator_losses(self.nets, self.level, *s[:4], self.c, self._up)

        return adversarial_step(steps, critic_update, losses, [self.nets["D_A"], self.nets["D_B"]], ctx)

    @torch.no_grad()
    def sample(self, path):
        """Rows: fixed A then B sources. Columns: source | I(level 5) | ... | I(level l) of the translation."""
        exp = self.exp
        if self._fixed is None:
            self._fixed = (exp.domain_a.fixed(4, levels=self.levels), exp.domain_b.fixed(4, levels=self.levels))
        model = CascadeModel(self.frozen_nets, {**self.frozen_levels, self.level: self.nets}).to(exp.device).eval()
        size = exp.cfg.data.image_size
        cols = {}
        for fixed, d in zip(self._fixed, ("AB", "BA")):
            out = model.translate(fixed, d, self.level)
            cols.setdefault("src", []).append(fixed["image"])
            for l in range(5, self.level - 1, -1):
                inv = exp.models.inversion(l)
                cols.setdefault(l, []).append(to_unit(inv(out[l])) if inv is not None else feature_preview(out[l], size))
        for n in self.nets.values():
            n.train()
        save_grid([torch.cat(v) for v in cols.values()], path)

    @property
    def frozen_nets(self) -> dict:
        return {f"T_{d}": self.frozen.deep[d] for d in ("AB", "BA")}

    @property
    def frozen_levels(self) -> dict:
        return {int(l): dict(nets.items()) for l, nets in self.frozen.levels.items()}
