"""fp16 works for long runs (issue 17, item 4): the WGAN-GP penalty stays finite at every GradScaler scale.

PyTorch's AMP gradient-penalty recipe (the gradient of ``scaler.scale(scores)`` under fp16 autocast) overflows
fp16 once the scale reaches 2^16, the GradScaler's initial value and where it regrows every 2000 clean steps:
NaN penalty, and the run stops on a non-finite loss. deepcascade computes the penalty in float32 instead.
"""

import math

import pytest
import torch

from deepcascade.engine.trainer import TrainContext
from deepcascade.losses import gradient_penalty, wgan_critic_loss
from deepcascade.models import deep_nets
from deepcascade.stages import deep as deep_stage
from deepcascade.stages.adversarial import make_optimizers
from test_deep_stage import C, S, Domains, batches, deep_config


def critic_and_batch(seed=0):
    torch.manual_seed(seed)
    critic = deep_nets(C, S, gn_groups=8, critic_width=16)["D_A"]
    real, fake = torch.randn(4, C, S, S).tanh(), torch.randn(4, C, S, S).tanh()
    return critic, real, fake


def amp_recipe_penalty(critic, real, fake, scaler, generator):
    """The recipe deepcascade used before (and PyTorch's AMP docs show), for comparison."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(scaler.scale(critic(x_hat).sum()), x_hat, create_graph=True)
    norm = (grad.float() / scaler.get_scale()).flatten(1).norm(2, dim=1)
    return ((norm - 1) ** 2).mean()


def test_the_amp_recipe_overflows_at_2_16_on_this_critic():
    """The failure this file guards against, reproduced on the critic the tests below use."""
    critic, real, fake = critic_and_batch()
    with torch.autocast("cpu", dtype=torch.float16):
        low = amp_recipe_penalty(critic, real, fake, torch.amp.GradScaler("cpu", init_scale=2.0**14),
                                 torch.Generator().manual_seed(0))
        high = amp_recipe_penalty(critic, real, fake, torch.amp.GradScaler("cpu", init_scale=2.0**16),
                                  torch.Generator().manual_seed(0))
    assert math.isfinite(low.item()) and not math.isfinite(high.item())


@pytest.mark.parametrize("log2_scale", range(10, 25))
def test_penalty_is_finite_and_exact_at_every_scale(log2_scale):
    critic, real, fake = critic_and_batch()
    reference = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))  # fp32
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**log2_scale)
    with torch.autocast("cpu", dtype=torch.float16):
        gp = gradient_penalty(critic, real, fake, scaler, generator=torch.Generator().manual_seed(0))
        assert critic(real).dtype == torch.float16  # the rest of the critic does run in fp16
    assert gp.dtype == torch.float32 and math.isfinite(gp.item())
    assert gp.item() == pytest.approx(reference.item(), rel=1e-5)
    scaler.scale(gp).backward()  # the scaled double backward stays finite too
    assert all(torch.isfinite(p.grad).all() for p in critic.parameters() if p.grad is not None)


def test_critic_loss_under_fp16_is_finite_at_2_24():
    critic, real, fake = critic_and_batch()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
    with torch.autocast("cpu", dtype=torch.float16):
        out = wgan_critic_loss(critic, real, fake, 10.0, scaler=scaler)
    assert all(math.isfinite(v.item()) for v in out.values())


class RecordingScaler(torch.amp.GradScaler):
    """A GradScaler that records the scale each update was taken at."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used = []

    def update(self, new_scale=None):
        self.used.append(self.get_scale())
        super().update(new_scale)


def test_deep_stage_survives_scaler_growth_past_2_16():
    """The level-5 stage's own step under fp16 with GradScalers that start at 2^20 and regrow after every clean
    step (growth interval 1 instead of 2000). The critic's plain fp16 gradients overflow above 2^16 on CPU, so
    the scaler backs off (skipping those steps, as designed) and regrows, again and again: every loss stays
    finite throughout, where the AMP recipe's penalty was NaN at every one of those scales."""
    torch.manual_seed(0)
    domains = Domains(1)
    nets = deep_nets(C, S, gn_groups=8, critic_width=16)
    ctx = TrainContext(torch.device("cpu"), "fp16", make_optimizers(nets, 1e-4))
    ctx.scalers = {k: RecordingScaler("cpu", init_scale=2.0**20, growth_interval=1) for k in ctx.scalers}
    g = torch.Generator().manual_seed(0)
    for step in range(8):
        stats = deep_stage.train_step(nets, *batches(domains, g, 1, 2), deep_config(n_critic=1), ctx)
        assert all(math.isfinite(v.item()) for v in stats.values()), (step, stats, ctx.scalers["D"].used)
    used = ctx.scalers["D"].used
    assert [s for s in used if s > 2.0**16] == [2.0**20, 2.0**19, 2.0**18, 2.0**17], used
    grew = [b for a, b in zip(used, used[1:]) if b > a]
    assert grew and max(grew) == 2.0**16, used  # regrown to 2^16 after backing off
    assert all(torch.isfinite(p).all() for net in nets.values() for p in net.parameters())
