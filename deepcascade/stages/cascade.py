"""Coarse-to-fine conditional translation of level l = 4, 3, ... (docs/method.md section 4).

Level l is trained with the deeper levels frozen. In direction A->B the input is the frozen cascade's
translation of the source down to level l+1, and the AdaIN parameters come from the source's own level-l
features: ``ẽ_l = T^l_AB(ẽ_{l+1}; M^l_AB(e_l(a)))``. Losses [ours; the paper only says WGAN-GP]:
  * WGAN-GP on level-l features, one critic per direction (real = target-domain features);
  * teacher-forced reconstruction ``||T^l_AB(e_{l+1}(b); M^l_AB(e_l(b))) - e_l(b)||_1`` and symmetric,
    weight ``cascade.lambda_rec``: fed the target domain's own deeper features, T^l must reproduce its level;
  * optional source-domain reconstruction (``cascade.lambda_rec_source``): the same with the source's own
    features, ``||T^l_AB(e_{l+1}(a); M^l_AB(e_l(a))) - e_l(a)||_1``, so that M^l_AB learns to encode the
    appearance of the domain it reads at test time;
  * ``cascade.recolour``: the reconstructions read the level-l features of a hue-rotated copy of the image
    through M^l and must reproduce them, while the deeper input stays the original's: the deeper level carries
    shape, M^l must carry colour (at test time the deeper input is a translation whose colours are not the
    source's);
  * ``cascade.predictor_adversarial: false`` keeps the adversarial gradient out of M^l: the predictor is then
    trained by the reconstructions alone, and the critic cannot make it map every source to a few target colours;
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


def translate_level(nets: dict, d: str, deeper: torch.Tensor, source_l: torch.Tensor,
                    train_predictor: bool = True) -> torch.Tensor:
    """T^l_d(deeper; M^l_d(source level-l features)); with ``train_predictor`` false no gradient reaches M^l_d."""
    params = nets[f"M_{d}"](source_l)
    return nets[f"T_{d}"](deeper, params if train_predictor else params.detach())


def hue_rotation(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) in [0, 1] with their colours rotated about the grey axis by ``angles`` (N,) radians
    (Rodrigues' formula), clamped to [0, 1]: hue changes, grey levels and shapes stay."""
    k = torch.full((3,), 3 ** -0.5, device=images.device)
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], device=images.device) * 3 ** -0.5
    cos, sin = angles.cos()[:, None, None], angles.sin()[:, None, None]
    rot = cos * torch.eye(3, device=images.device) + sin * cross + (1 - cos) * torch.outer(k, k)
    return torch.einsum("nij,njhw->nihw", rot, images).clamp(0, 1)


def critic_step(nets: dict, level: int, a: dict, b: dict, in_ab, in_ba, lambda_gp: float, ctx: TrainContext):
    """Update D_B on real e_l(b) vs translated A, and D_A on real e_l(a) vs translated B."""
    with ctx.autocast():
        with torch.no_grad():
            fake_b = translate_level(nets, "AB", in_ab, a[level])
            fake_a = translate_level(nets, "BA", in_ba, b[level])
        lb = wgan_critic_loss(nets["D_B"], b[level], fake_b, lambda_gp, scaler=ctx.scalers["D"])
        la = wgan_critic_loss(nets["D_A"], a[level], fake_a, lambda_gp, scaler=ctx.scalers["D"])
        loss = la["loss"] + lb["loss"]
    ctx.optimize("D", loss)
    return {"critic": loss.detach(), "gp": la["gp"] + lb["gp"], "wasserstein": la["wasserstein"] + lb["wasserstein"]}


def generator_losses(nets: dict, level: int, a: dict, b: dict, in_ab, in_ba, c, up=None) -> dict:
    """Adversarial + lambda_rec * teacher-forced reconstruction (+ lambda_up * up-consistency, + lambda_layout *
    layout against the source's level-l features).

    ``up`` maps normalized level-l features to normalized level-(l+1) features through the frozen
    backbone slice; needed only when ``c.lambda_up > 0``. With ``cascade.recolour`` the batches also hold
    ``"recoloured"``: the level-l features of the same crops with their hues rotated, which the reconstructions
    read through M^l and must reproduce, while the deeper input stays the original's.
    """
    ab = translate_level(nets, "AB", in_ab, a[level], c.predictor_adversarial)
    ba = translate_level(nets, "BA", in_ba, b[level], c.predictor_adversarial)
    adv = wgan_generator_loss(nets["D_B"], ab) + wgan_generator_loss(nets["D_A"], ba)
    a_l, b_l = a.get("recoloured", a[level]), b.get("recoloured", b[level])

    def rec_term(d: str, x: dict, x_l: torch.Tensor) -> torch.Tensor:
        return feature_distance(translate_level(nets, d, x[level + 1], x_l), x_l)

    rec = rec_term("AB", b, b_l) + rec_term("BA", a, a_l)
    total = adv + c.lambda_rec * rec
    out = {"g_adv": adv, "rec": rec}
    if c.lambda_rec_source > 0:
        # the same reconstruction in the source's domain: the predictor meets the images it reads at test time
        out["rec_source"] = rec_term("AB", a, a_l) + rec_term("BA", b, b_l)
        total = total + c.lambda_rec_source * out["rec_source"]
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
        recolour = self.c.recolour
        a = self.exp.domain_a.sample(n * k, generator, levels=self.levels, with_image=recolour)
        b = self.exp.domain_b.sample(n * k, generator, levels=self.levels, with_image=recolour)
        angles = torch.rand(2, n, generator=generator) * (2 * torch.pi) if recolour else None
        split = lambda d: [dict(zip(self.levels, parts)) for parts in zip(*(d[l].split(n) for l in self.levels))]
        parts = split(a), split(b)
        if recolour:  # only the generator's batch (the last) is reconstructed
            for part, d, angle in zip(parts, (a, b), angles):
                part[-1]["recoloured"] = self._features(hue_rotation(d["image"][-n:], angle.to(d["image"].device)))
        return parts

    @torch.no_grad()
    def _features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized level-l backbone features of ``images`` (N, 3, S, S) in [0, 1]."""
        exp = self.exp
        return exp.normalizer.normalize(exp.backbone(images, [self.level])[self.level], self.level)

    def _inputs(self, a: dict, b: dict):
        """Frozen cascade's translations down to level l+1 (no gradient)."""
        with torch.no_grad():
            in_ab = self.frozen.translate(a, "AB", self.level + 1)[self.level + 1]
            in_ba = self.frozen.translate(b, "BA", self.level + 1)[self.level + 1]
        return in_ab, in_ba

    def train_step(self, batch, ctx):
        def critic_update(ab):
            with ctx.autocast():
                in_ab, in_ba = self._inputs(*ab)
            return critic_step(self.nets, self.level, *ab, in_ab, in_ba, self.c.lambda_gp, ctx)

        def losses(ab):
            return generator_losses(self.nets, self.level, *ab, *self._inputs(*ab), self.c, self._up)

        return adversarial_step(list(zip(*batch)), critic_update, losses, [self.nets["D_A"], self.nets["D_B"]], ctx)

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
