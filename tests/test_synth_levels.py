"""The deepVAE's levels learn on synthetic features (docs/method.md section 6).

Synthetic two-level features of one domain, normalized, in (-1, 1); level 5 has 32 channels at 4x4, level 4 has
16 channels at 8x8 (a stand-in backbone with strides 16 and 8 at 64 px images):

    e5 = tanh(L + W z + 0.05 n),                  z ~ N(0, I_4): per-sample content
    e4 = tanh(M up2(e5) + V u + 0.05 n),          u ~ N(0, I_2): per-sample per-channel "style"

``L`` is the domain's spatial layout, ``M`` a fixed random 1x1 conv and ``up2`` nearest upsampling. Level 4 is
a function of level 5 plus a style the deeper level does not determine: a conditional generator G_4 that
renders e4 from e5 has to take that variation from its noise z_4.

Level 5 is trained as :meth:`SynthVAEStage.train_step` does it (:func:`deepcascade.stages.synth.vae_step`,
equation 1 with the maximum-likelihood decoder sigma, lr 1e-3, 100 steps, batch 16; ~7 s on one CPU core).
Measured with seed 0: held-out reconstruction error 0.46 -> 0.06 per element (the data's variance: 0.17), KL
19 nats; prior samples' mean distance to their nearest held-out feature map 12.8 (untrained) -> 5.2, against
3.7 between real held-out maps. With a fixed decoder sigma of 0.71 (sum of squared errors): 0.08 and 4.5,
KL 8. Level 4 is trained as :meth:`SynthLevelStage.train_step` does it (:func:`deepcascade.stages.synth.
train_step`: n_critic = 4 critic updates on fresh batches, then one generator update, WGAN-GP lambda_gp = 10,
conditional critic of width 64; lr 2e-3, 80 steps, batch 16; ~12 s idle). Measured over seeds 0-2 (80 steps):
the spread that z_4 causes for the same e5 rose from 0.06 (untrained) to 0.28-0.38, against 0.28-0.43 for
the real style u; the critic's real/fake gap fell from a peak of 15-17 (10-step means, around step 20) to
3.6-4.9; the distance to the noise-free conditional mean fell from 0.39-0.44 to 0.26-0.35 (real features:
0.20-0.30). With lr 1e-3 the same happens over ~150 steps.
"""

from __future__ import annotations

import math
import types

import pytest
import torch

from deepcascade.engine.trainer import TrainContext
from deepcascade.models import build
from deepcascade.stages import synth as synth_stage
from deepcascade.stages.adversarial import make_optimizers

C5, C4, S5, K, K_STYLE = 32, 16, 4, 4, 2
NZ5, NZ4 = 16, 8
HELD_OUT = 256


def up2(x: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class Domain:
    """The synthetic two-level features of the module docstring."""

    def __init__(self, seed: int):
        g = torch.Generator().manual_seed(seed)

        def zero_mean(x):
            return x - x.mean(dim=(-2, -1), keepdim=True)

        self.layout = 0.7 * zero_mean(torch.randn(1, S5, S5, generator=g)) * torch.randn(C5, 1, 1, generator=g)
        self.w = zero_mean(torch.randn(K, C5, S5, S5, generator=g)) * 0.6 / math.sqrt(K)
        self.m = torch.randn(C4, C5, generator=g) / math.sqrt(C5)
        self.v = torch.randn(K_STYLE, C4, 1, 1, generator=g) * 0.5 / math.sqrt(K_STYLE)

    def level5(self, n: int, g: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, K, generator=g)
        noise = 0.05 * torch.randn(n, C5, S5, S5, generator=g)
        return torch.tanh(self.layout + torch.einsum("nk,kchw->nchw", z, self.w) + noise)

    def mean4(self, e5: torch.Tensor) -> torch.Tensor:
        """Level 4 before the style: M up2(e5) (pre-tanh)."""
        return torch.einsum("dc,nchw->ndhw", self.m, up2(e5))

    def level4(self, e5: torch.Tensor, u: torch.Tensor, noise: torch.Tensor | float = 0.0) -> torch.Tensor:
        return torch.tanh(self.mean4(e5) + torch.einsum("nk,kdij->ndij", u, self.v) + noise)

    def batch(self, n: int, g: torch.Generator) -> dict:
        e5 = self.level5(n, g)
        e4 = self.level4(e5, torch.randn(n, K_STYLE, generator=g), 0.05 * torch.randn(n, C4, 2 * S5, 2 * S5, generator=g))
        return {5: e5, 4: e4, "z": torch.randn(n, NZ4, generator=g)}


def nearest_distance(x: torch.Tensor, refs: torch.Tensor) -> float:
    """Mean over the rows of ``x`` of the Euclidean distance to the nearest row of ``refs``."""
    return torch.cdist(x.flatten(1), refs.flatten(1)).min(1).values.mean().item()


pytestmark = pytest.mark.usefixtures("one_thread")


def test_vae_reconstruction_falls_and_prior_samples_look_like_the_data():
    seed, steps, batch = 0, 100, 16
    domain = Domain(seed)
    torch.manual_seed(seed)
    nets = {"E": build("VAEEncoder", channels=C5, size=S5, nz=NZ5, gn_groups=8),
            "G": build("VAEDecoder", nz=NZ5, channels=C5, size=S5, gn_groups=8)}
    opt = {"G": torch.optim.Adam([p for n in "EG" for p in nets[n].parameters()], lr=1e-3, betas=(0.5, 0.999))}
    ctx = TrainContext(torch.device("cpu"), "fp32", opt)
    held = domain.level5(HELD_OUT, torch.Generator().manual_seed(999))
    prior = torch.randn(HELD_OUT, NZ5, generator=torch.Generator().manual_seed(3))

    @torch.no_grad()
    def measure():
        for n in nets.values():
            n.eval()
        rec = (nets["G"](nets["E"](held)[0]) - held).pow(2).mean().item()
        samples = nets["G"](prior)
        for n in nets.values():
            n.train()
        return rec, samples

    rec0, samples0 = measure()
    g = torch.Generator().manual_seed(100 + seed)
    logged = [synth_stage.vae_step(nets, domain.level5(batch, g), 1.0, ctx) for _ in range(steps)]
    rec1, samples1 = measure()

    assert set(logged[-1]) == {"loss", "rec", "mse", "sigma", "kl"}  # what the stage logs
    first, last = logged[:10], logged[-10:]
    assert sum(s["mse"] for s in last) < 0.6 * sum(s["mse"] for s in first)
    assert all(s["kl"] >= 0 for s in logged)
    variance = held.var(0).mean().item()  # what predicting the mean would leave
    assert rec1 < 0.3 * rec0 and rec1 < 0.7 * variance, (rec0, rec1, variance)
    # samples from the prior: the right shape and range, and near the data (as near as real held-out features
    # are to each other, give or take 50%), where the untrained decoder's are far off
    assert samples1.shape == (HELD_OUT, C5, S5, S5) and samples1.abs().max() <= 1.0
    real = nearest_distance(held[: HELD_OUT // 2], held[HELD_OUT // 2:])
    near0, near1 = nearest_distance(samples0, held), nearest_distance(samples1, held)
    assert near1 < 1.5 * real and near1 < 0.5 * near0, (real, near0, near1)


def test_conditional_level_uses_its_noise_and_the_critic_gap_narrows():
    seed, steps, batch, n_critic = 0, 80, 16, 4
    domain = Domain(seed)
    torch.manual_seed(seed)
    nets = {"G": build("SynthGenerator", in_channels=C5, out_channels=C4, nz=NZ4, width=64),
            "D": build("FeatureCritic", in_channels=C4 + C5, in_size=2 * S5, width=64)}
    ctx = TrainContext(torch.device("cpu"), "fp32", make_optimizers(nets, 2e-3, generators=("G",), critics=("D",)))
    c = types.SimpleNamespace(lambda_gp=10.0, conditional_critic=True)

    held = domain.level5(HELD_OUT, torch.Generator().manual_seed(999))
    z1 = torch.randn(HELD_OUT, NZ4, generator=torch.Generator().manual_seed(5))
    u1 = torch.randn(HELD_OUT, K_STYLE, generator=torch.Generator().manual_seed(6))
    # the spread real level-4 features have for the same level 5: two styles per sample
    real_spread = (domain.level4(held, u1) - domain.level4(held, u1.roll(1, 0))).abs().mean().item()
    target = torch.tanh(domain.mean4(held))

    @torch.no_grad()
    def measure():
        a, b = nets["G"](held, z1), nets["G"](held, z1.roll(1, 0))  # same e5, different z_4
        return (a - b).abs().mean().item(), (a - target).abs().mean().item()

    spread0, dist0 = measure()
    g = torch.Generator().manual_seed(100 + seed)
    gaps = []
    for _ in range(steps):
        out = synth_stage.train_step(nets, 4, [domain.batch(batch, g) for _ in range(n_critic + 1)], c, ctx)
        gaps.append(out["wasserstein"].item())
    spread1, dist1 = measure()

    assert set(out) == {"critic", "gp", "wasserstein", "loss", "g_adv"}
    # different z_4 give different level-4 features, about as different as real styles make them
    assert spread1 > 0.5 * real_spread and spread1 > 3 * spread0, (spread0, spread1, real_spread)
    # the samples moved toward the real conditional distribution
    assert dist1 < 0.85 * dist0, (dist0, dist1)
    # the critic's estimate of E[D(real)] - E[D(fake)] rose while it learned, then narrowed
    means = [sum(gaps[i: i + 10]) / 10 for i in range(steps - 9)]
    assert means[-1] < 0.6 * max(means), (max(means), means[-1])
