"""deepVAE stages: unconditional synthesis of one domain, one stage per domain and level (docs/method.md section 6).

Level 5 (``synth_a5``, ``synth_b5``): the VAE E_5 / G_5 on the domain's normalized conv_5_1 features, trained
with equation 1 of the supplementary (l2 reconstruction + KL to the Gaussian prior). Levels l < 5
(``synth_a4``, ``synth_a3``, ...): G_l(conv_{l+1}_1, z_l) trained with WGAN-GP (equation 2, lambda_gp = 10) on
the shared adversarial step (n_critic critic updates on fresh batches, then one generator update). As in
equation 2, G_l is fed the *real* level-(l+1) features of training crops [paper]; at inference it is fed
G_{l+1}'s output. The losses are functions of the networks and a batch, shared by the stages and the tests.
"""

from __future__ import annotations

import torch

from ..domains import DOMAINS
from ..rundir import stage_name
from ..engine.trainer import Stage, TrainContext, per_rank_batch
from ..errors import UserError
from ..losses import vae_loss, wgan_critic_loss, wgan_generator_loss
from ..models import synth_nets
from ..networks import critic_input, reparameterize
from ..outputs.grids import feature_preview, save_grid, to_unit
from .adversarial import adversarial_step, make_optimizers
from .experiment import Experiment

#: fixed seed of the codes in the training sample grids
SAMPLE_SEED = 0


# ------------------------------------------------------------------------------------------------ level 5
def vae_step(nets: dict, x: torch.Tensor, kl_weight: float, ctx: TrainContext, sigma: float = 0.0) -> dict:
    """One optimizer step of E_5 and G_5 on equation 1 (the reparameterization noise comes from torch's RNG);
    ``sigma``: the decoder's standard deviation, 0 = its maximum-likelihood value (see ``losses.vae_loss``)."""
    with ctx.autocast():
        mu, logvar = nets["E"](x)
        recon = nets["G"](reparameterize(mu, logvar))
        losses = vae_loss(x, recon, mu, logvar, kl_weight, sigma)
    ctx.optimize("G", losses["loss"])
    return {k: v.detach() for k, v in losses.items()}


# ------------------------------------------------------------------------------------------------ levels < 5
def critic_fakes(nets: dict, level: int, batches: list[dict], ctx: TrainContext) -> list[torch.Tensor]:
    """G_l(level-(l+1) features, z) of every critic batch, detached, in one pass over the batches together: G_l
    does not change during the critic updates, and one batch of n_critic x n runs faster than n_critic batches
    of n (benchmarks/bench_train.py). Per sample the same output (G_l normalizes per sample), up to float
    rounding."""
    if not batches:
        return []
    cat = lambda key: torch.cat([b[key] for b in batches]) if len(batches) > 1 else batches[0][key]
    with ctx.autocast(), torch.no_grad():
        fake = nets["G"](cat(level + 1), cat("z"))
    return list(fake.split([len(b["z"]) for b in batches]))


def critic_step(nets: dict, level: int, batch: dict, lambda_gp: float, conditional: bool, ctx: TrainContext,
                fake: torch.Tensor | None = None) -> dict:
    """One critic update: real level-l features vs G_l(real level-(l+1) features, z_l), equation 2; ``fake``:
    that output when the caller has it already (:func:`critic_fakes`)."""
    deeper = batch[level + 1]
    cond = deeper if conditional else None
    with ctx.autocast():
        if fake is None:
            with torch.no_grad():
                fake = nets["G"](deeper, batch["z"])
        d = wgan_critic_loss(nets["D"], critic_input(batch[level], cond), critic_input(fake, cond), lambda_gp,
                             scaler=ctx.scalers["D"])
    ctx.optimize("D", d["loss"])
    return {"critic": d["loss"].detach(), "gp": d["gp"], "wasserstein": d["wasserstein"]}


def generator_losses(nets: dict, level: int, batch: dict, conditional: bool) -> dict:
    """The generator's side of equation 2: -E[D(G_l(x, z))]."""
    deeper = batch[level + 1]
    fake = nets["G"](deeper, batch["z"])
    adv = wgan_generator_loss(nets["D"], critic_input(fake, deeper if conditional else None))
    return {"loss": adv, "g_adv": adv}


def train_step(nets: dict, level: int, batches: list[dict], c, ctx: TrainContext) -> dict:
    """``len(batches) - 1`` critic updates on fresh batches, then one generator update on the last one.

    ``c`` is the ``synth`` config section (or anything with its ``lambda_gp`` and ``conditional_critic``).
    """
    fakes = critic_fakes(nets, level, batches[:-1], ctx) + [None]
    return adversarial_step(list(zip(batches, fakes)),
                            lambda bf: critic_step(nets, level, bf[0], c.lambda_gp, c.conditional_critic, ctx,
                                                   fake=bf[1]),
                            lambda bf: generator_losses(nets, level, bf[0], c.conditional_critic), [nets["D"]], ctx)


# ------------------------------------------------------------------------------------------------ stages
class _SynthStage(Stage):
    """What both deepVAE stages share: the domain's batches and the preview of features as images."""

    def __init__(self, exp: Experiment, level: int, domain: str):
        if domain not in DOMAINS:
            raise UserError(f"--domain must be 'a' or 'b', got {domain!r}")
        c = exp.cfg.synth
        self.exp, self.c, self.level, self.domain = exp, c, level, domain
        self.name = stage_name("synth", level, domain)
        self.steps = (c.vae_steps or c.steps) if level == 5 else c.steps
        self.batch_size = per_rank_batch(c.batch_size, exp.cfg.engine.batch_per_rank)
        self.source = exp.domain_a if domain == "a" else exp.domain_b
        self.nets = synth_nets(exp.backbone, level, exp.cfg.data.image_size, c.nz, c.gn_groups, c.nz_level,
                               c.mapping_width, c.critic_width, c.conditional_critic)
        self.compat = {**exp.compat, "level": level}
        self._fixed = None

    def _show(self, level: int):
        """Normalized level features -> images in [0, 1]: I_level when trained, else channel means."""
        inv = self.exp.models.inversion(level)
        size = self.exp.cfg.data.image_size
        return (lambda f: to_unit(inv(f)).clamp(0, 1)) if inv is not None else (lambda f: feature_preview(f, size))

    def _codes(self, n: int, size: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(SAMPLE_SEED)
        return torch.randn(n, size, generator=g).to(self.exp.device)


class SynthVAEStage(_SynthStage):
    """Trains E_5 and G_5 of one domain (equation 1)."""

    def __init__(self, exp: Experiment, domain: str):
        super().__init__(exp, 5, domain)
        params = [p for n in ("E", "G") for p in self.nets[n].parameters()]
        self.optimizers = {"G": torch.optim.Adam(params, lr=self.c.lr, betas=(0.5, 0.999))}

    def next_batch(self, generator):
        return self.source.sample(self.batch_size, generator, levels=[5], with_image=False)[5]

    def train_step(self, batch, ctx):
        return vae_step(self.nets, batch, self.c.kl_weight, ctx, self.c.decoder_sigma)

    @torch.no_grad()
    def sample(self, path):
        """Rows: fixed images of the domain. Columns: image | I_5(e_5) | I_5(G_5(mu)), the reconstruction |
        I_5(G_5(z)) for a fixed prior sample z."""
        if self._fixed is None:
            self._fixed = self.source.fixed(4, levels=[5])
        enc, dec = self.nets["E"].eval(), self.nets["G"].eval()
        show = self._show(5)
        x = self._fixed[5]
        cols = [self._fixed["image"], show(x), show(dec(enc(x)[0])), show(dec(self._codes(len(x), dec.nz)))]
        enc.train()
        dec.train()
        save_grid(cols, path)


class SynthLevelStage(_SynthStage):
    """Trains G_l and its critic of one domain (equation 2), l < 5."""

    def __init__(self, exp: Experiment, level: int, domain: str):
        super().__init__(exp, level, domain)
        self.optimizers = make_optimizers(self.nets, self.c.lr, generators=("G",), critics=("D",))
        self.levels = [level, level + 1]

    def next_batch(self, generator):
        n, k = self.batch_size, self.c.n_critic + 1
        feats = self.source.sample(n * k, generator, levels=self.levels, with_image=False)
        z = torch.randn(n * k, self.nets["G"].nz, generator=generator).to(self.exp.device)
        parts = {**{l: feats[l].split(n) for l in self.levels}, "z": z.split(n)}
        return [{key: parts[key][i] for key in parts} for i in range(k)]

    def train_step(self, batch, ctx):
        return train_step(self.nets, self.level, batch, self.c, ctx)

    @torch.no_grad()
    def sample(self, path):
        """Rows: fixed images of the domain. Columns: image | I_{l+1}(e_{l+1}) | I_l(G_l(e_{l+1}, z)) for three
        fixed z: what the level adds, and how much z_l changes it."""
        l = self.level
        if self._fixed is None:
            self._fixed = self.source.fixed(4, levels=self.levels)
        gen = self.nets["G"].eval()
        deeper = self._fixed[l + 1]
        n = deeper.shape[0]
        codes = self._codes(3 * n, gen.nz).split(n)
        show = self._show(l)
        cols = [self._fixed["image"], self._show(l + 1)(deeper)] + [show(gen(deeper, z)) for z in codes]
        gen.train()
        save_grid(cols, path)


def synth_stage(exp: Experiment, level: int, domain: str) -> _SynthStage:
    """The deepVAE stage of ``domain`` at ``level``: the VAE at level 5, a conditional generator below."""
    return SynthVAEStage(exp, domain) if level == 5 else SynthLevelStage(exp, level, domain)
