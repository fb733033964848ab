"""Feature-inversion stage: train I_l to turn normalized level-l features back into images.

docs/method.md section 2. Losses (following Dosovitskiy & Brox, the paper's reference 5): L1 pixel + perceptual
(distance between the normalized level-l features of the output and of the input, i.e. the backbone
itself is the comparator) + LSGAN against a PatchGAN discriminator. Trained on real images of both domains:
every batch is half A, half B.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..rundir import stage_name
from ..engine.trainer import Stage, per_rank_batch
from ..losses import gradient_l1, lsgan_d_loss, lsgan_g_loss
from ..models import inversion_nets
from ..outputs.grids import save_grid, to_unit
from .experiment import Experiment


def mixed_batch(exp: Experiment, batch_size: int, generator: torch.Generator, levels: list[int]) -> dict:
    """Half of the batch from domain A, half from B, concatenated key by key."""
    n_a = (batch_size + 1) // 2
    a = exp.domain_a.sample(n_a, generator, levels=levels)
    if batch_size - n_a == 0:
        return a
    b = exp.domain_b.sample(batch_size - n_a, generator, levels=levels)
    return {k: torch.cat([a[k], b[k]]) for k in a if k in b}


class InvertStage(Stage):
    """Trains I_level (and its PatchGAN discriminator when ``invert.lambda_adv`` > 0 applies to the level, see
    ``invert.adv_levels``)."""

    def __init__(self, exp: Experiment, level: int):
        c = exp.cfg.invert
        self.exp, self.level, self.c = exp, level, c
        self.name = stage_name("invert", level)
        final = exp.cfg.cascade.final_level
        self.steps = c.final_steps if c.final_steps and level == final else c.steps
        # the discriminator costs about 1.5x the rest of a step on a CPU; ``adv_levels: final`` spends it only
        # where the output is seen as the translation (docs/measurements.md)
        self.lambda_adv = c.lambda_adv if c.adv_levels == "all" or level == final else 0.0
        self.batch_size = per_rank_batch(c.batch_size, exp.cfg.engine.batch_per_rank)
        self.nets = inversion_nets(exp.backbone.channels[level], exp.backbone.strides[level], self.lambda_adv > 0,
                                   trim=exp.backbone.spec.levels[level].trim, width=c.width,
                                   disc_width=c.disc_width)
        self.optimizers = {k: torch.optim.Adam(v.parameters(), lr=c.lr, betas=(0.5, 0.999))
                           for k, v in self.nets.items()}
        self.compat = {**exp.compat, "level": level}
        self._fixed = None

    def next_batch(self, generator):
        return mixed_batch(self.exp, self.batch_size, generator, [self.level])

    def train_step(self, batch, ctx):
        x, target = batch[self.level], batch["image"] * 2 - 1
        inv, out = self.nets["I"], {}
        with ctx.autocast():
            y = inv(x)  # one forward serves the discriminator's update (detached) and I_l's
        if "D" in self.nets:
            with ctx.autocast():
                d_loss = lsgan_d_loss(self.nets["D"](target), self.nets["D"](y.detach()))
            ctx.optimize("D", d_loss)
            out["d_lsgan"] = d_loss.detach()
        disc = self.nets.get("D")
        if disc is not None:  # I_l's backward runs through D but needs no gradient of D's weights (D's own
            disc.requires_grad_(False)  # update zeroes them first anyway): that part of the backward is skipped
        try:
            with ctx.autocast():
                pixel = F.l1_loss(y.float(), target)
                feats = self.exp.backbone(to_unit(y), [self.level])[self.level]
                perceptual = F.mse_loss(self.exp.normalizer.normalize(feats.float(), self.level), x.float())
                loss = self.c.lambda_pixel * pixel + self.c.lambda_perceptual * perceptual
                if self.c.lambda_gradient:
                    grad = gradient_l1(y.float(), target)
                    loss = loss + self.c.lambda_gradient * grad
                    out["gradient"] = grad.detach()
                if disc is not None:
                    adv = lsgan_g_loss(disc(y))
                    loss = loss + self.lambda_adv * adv
                    out["g_lsgan"] = adv.detach()
            ctx.optimize("I", loss)
        finally:
            if disc is not None:
                disc.requires_grad_(True)
        out.update(loss=loss.detach(), l1=pixel.detach(), perceptual=perceptual.detach())
        return out

    @torch.no_grad()
    def sample(self, path):
        """Rows: fixed test images of A then B; columns: input | I_l(features of the input)."""
        if self._fixed is None:
            a, b = (d.fixed(4, levels=[self.level]) for d in (self.exp.domain_a, self.exp.domain_b))
            self._fixed = {k: torch.cat([a[k], b[k]]) for k in (self.level, "image")}
        inv = self.nets["I"]
        was_training = inv.training
        inv.eval()
        rec = to_unit(inv(self._fixed[self.level]))
        inv.train(was_training)
        save_grid([self._fixed["image"], rec], path)
