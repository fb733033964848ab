"""Losses against hand-computed values and analytic gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepcascade.losses import (
    cycle_loss,
    feature_distance,
    gradient_l1,
    gradient_penalty,
    identity_loss,
    layout_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    saliency_centre,
    wgan_critic_loss,
    wgan_generator_loss,
)

SHAPE = (4, 3, 5, 5)


def linear_critic(weight_norm: float, seed: int = 0) -> nn.Module:
    """D(x) = <w, flatten(x)> + b with ||w|| = weight_norm: its gradient is w everywhere."""
    torch.manual_seed(seed)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE[1:]), 1))
    with torch.no_grad():
        critic[1].weight.mul_(weight_norm / critic[1].weight.norm())
    return critic


class HalfSquaredNorm(nn.Module):
    """D(x) = 0.5 * ||x||^2 per sample: the gradient at x is x itself."""

    def forward(self, x):
        return 0.5 * x.flatten(1).pow(2).sum(1)


def test_gradient_penalty_of_linear_critic_is_exact():
    real, fake = torch.randn(SHAPE), torch.randn(SHAPE)
    for norm in (1.0, 0.3, 2.5):
        critic = linear_critic(norm)
        gp = gradient_penalty(critic, real, fake)
        assert gp.item() == pytest.approx((norm - 1) ** 2, rel=1e-5, abs=1e-7)
        out = wgan_critic_loss(critic, real, fake, lambda_gp=10.0)
        assert out["gp"].item() == pytest.approx(10 * (norm - 1) ** 2, rel=1e-5, abs=1e-6)


def test_gradient_penalty_backpropagates_into_the_critic():
    critic = linear_critic(2.0)
    gradient_penalty(critic, torch.randn(SHAPE), torch.randn(SHAPE)).backward()
    w = critic[1].weight.detach()
    expected = 2 * (w.norm() - 1) * w / w.norm()  # d/dw (||w|| - 1)^2
    assert torch.allclose(critic[1].weight.grad, expected, atol=1e-5)


def test_gradient_penalty_of_quadratic_critic():
    # real == fake, so every interpolate is x itself and the gradient norm of sample i is ||x_i||.
    x = torch.randn(SHAPE) * torch.tensor([0.1, 0.5, 1.0, 2.0]).view(4, 1, 1, 1)
    expected = ((x.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert gradient_penalty(HalfSquaredNorm(), x, x.clone()).item() == pytest.approx(expected.item(), rel=1e-5)
    # real != fake: the interpolates depend on eps, drawn reproducibly from the given generator.
    real, fake = torch.randn(SHAPE), torch.randn(SHAPE)
    a = gradient_penalty(HalfSquaredNorm(), real, fake, generator=torch.Generator().manual_seed(3))
    b = gradient_penalty(HalfSquaredNorm(), real, fake, generator=torch.Generator().manual_seed(3))
    eps = torch.rand(SHAPE[0], 1, 1, 1, generator=torch.Generator().manual_seed(3))
    x_hat = eps * real + (1 - eps) * fake
    assert a.item() == b.item()
    assert a.item() == pytest.approx(((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean().item(), rel=1e-5)


def test_gradient_penalty_with_grad_scaler_is_unscaled():
    real, fake = torch.randn(SHAPE), torch.randn(SHAPE)
    critic = linear_critic(1.7)
    plain = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
    off = torch.amp.GradScaler("cpu", enabled=False)
    assert gradient_penalty(critic, real, fake, off, generator=torch.Generator().manual_seed(1)).item() == plain.item()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    assert scaler.is_enabled()
    scaled = gradient_penalty(HalfSquaredNorm(), real, fake, scaler, generator=torch.Generator().manual_seed(1))
    unscaled = gradient_penalty(HalfSquaredNorm(), real, fake, generator=torch.Generator().manual_seed(1))
    assert scaled.item() == pytest.approx(unscaled.item(), rel=1e-6)
    assert gradient_penalty(critic, real, fake, scaler).item() == pytest.approx(plain.item(), rel=1e-5)



class FakeScaler:
    """An enabled scaler that would scale by ``factor`` and report ``reported``: the penalty uses neither."""

    def __init__(self, factor, reported):
        self.factor, self.reported, self.calls = factor, reported, 0

    def is_enabled(self):
        return True

    def scale(self, t):
        self.calls += 1
        return t * self.factor

    def get_scale(self):
        return self.reported


def test_gradient_penalty_with_a_scaler_does_not_depend_on_the_scale():
    """fp16: the penalty is taken in float32 without the scale (tests/test_fp16.py says why), so a scaler
    whose scale and reported scale disagree changes nothing."""
    critic = linear_critic(2.0)  # gradient norm 2 everywhere
    real, fake = torch.randn(SHAPE), torch.randn(SHAPE)
    for scaler in (FakeScaler(8.0, 8.0), FakeScaler(8.0, 4.0), FakeScaler(2.0**30, 1.0)):
        assert gradient_penalty(critic, real, fake, scaler).item() == pytest.approx(1.0, rel=1e-5)
        assert scaler.calls == 0


def test_gradient_penalty_under_autocast_is_float32():
    critic = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(100, 1))
    real, fake = torch.randn(SHAPE), torch.randn(SHAPE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gp = gradient_penalty(critic, real, fake)
    assert gp.dtype == torch.float32 and torch.isfinite(gp)
    gp.backward()
    assert critic[0].weight.grad is not None

def test_wgan_critic_loss_terms_and_detached_fake():
    critic = linear_critic(1.0)
    real, fake = torch.randn(SHAPE), torch.randn(SHAPE, requires_grad=True)
    out = wgan_critic_loss(critic, real, fake, lambda_gp=10.0)
    w = critic[1].weight.detach().flatten()
    expected_w = (w @ real.flatten(1).T).mean() - (w @ fake.detach().flatten(1).T).mean()
    assert out["wasserstein"].item() == pytest.approx(expected_w.item(), rel=1e-5, abs=1e-6)
    assert out["loss"].item() == pytest.approx(-expected_w.item() + out["gp"].item(), rel=1e-5, abs=1e-6)
    assert not out["wasserstein"].requires_grad and not out["gp"].requires_grad
    assert out["wasserstein"].dtype == torch.float32
    out["loss"].backward()
    assert fake.grad is None  # no gradient reaches the generator
    assert critic[1].weight.grad is not None


def test_wgan_generator_loss():
    critic = linear_critic(1.0)
    fake = torch.randn(SHAPE, requires_grad=True)
    loss = wgan_generator_loss(critic, fake)
    assert loss.item() == pytest.approx(-critic(fake).mean().item(), rel=1e-6)
    loss.backward()
    # d/dfake_i of -mean_i <w, fake_i> = -w / N
    expected = -critic[1].weight.detach().view(SHAPE[1:]) / SHAPE[0]
    assert torch.allclose(fake.grad, expected.expand(SHAPE), atol=1e-7)


def test_feature_distance_values_and_bad_norm():
    x, y = torch.zeros(2, 3), torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]])
    assert feature_distance(x, y, "l1").item() == pytest.approx(6 / 6)
    assert feature_distance(x, y, "l2").item() == pytest.approx(14 / 6)
    with pytest.raises(ValueError):
        feature_distance(x, y, "l3")
    with pytest.raises(ValueError):
        cycle_loss(x, x, x, x, norm="huber")


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_cycle_and_identity_vanish_for_identity_translators(norm):
    t_ab, t_ba = nn.Identity(), nn.Identity()
    a, b = torch.randn(SHAPE), torch.randn(SHAPE)
    assert cycle_loss(a, b, t_ba(t_ab(a)), t_ab(t_ba(b)), norm).item() == 0
    assert identity_loss(a, b, t_ba(a), t_ab(b), norm).item() == 0


class Shift(nn.Module):
    """T(x) = x + c with a per-channel shift c."""

    def __init__(self, c):
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c).view(-1, 1, 1))

    def forward(self, x):
        return x + self.c


def test_cycle_and_identity_gradients_are_analytic():
    a, b = torch.randn(SHAPE), torch.randn(SHAPE)
    c_ab, c_ba = torch.tensor([0.5, -0.2, 0.1]), torch.tensor([0.3, -0.4, -0.3])
    n_channels = SHAPE[1]
    s = c_ab + c_ba  # both cycles shift by c_ab + c_ba
    # L1 cycle = 2 * mean_k |s_k|; L2 cycle = 2 * mean_k s_k^2 (mean over channels = mean over all elements).
    # L1 identity = mean_k |c_ab_k| + mean_k |c_ba_k|; L2 identity = mean_k c_ab_k^2 + mean_k c_ba_k^2.
    cases = {
        ("cycle", "l1"): (2 * s.abs().mean(), 2 * s.sign() / n_channels, 2 * s.sign() / n_channels),
        ("cycle", "l2"): (2 * s.pow(2).mean(), 4 * s / n_channels, 4 * s / n_channels),
        ("identity", "l1"): (c_ab.abs().mean() + c_ba.abs().mean(), c_ab.sign() / n_channels, c_ba.sign() / n_channels),
        ("identity", "l2"): (c_ab.pow(2).mean() + c_ba.pow(2).mean(), 2 * c_ab / n_channels, 2 * c_ba / n_channels),
    }
    for (kind, norm), (value, grad_ab, grad_ba) in cases.items():
        t_ab, t_ba = Shift(c_ab.tolist()), Shift(c_ba.tolist())
        if kind == "cycle":
            loss = cycle_loss(a, b, t_ba(t_ab(a)), t_ab(t_ba(b)), norm)
        else:
            loss = identity_loss(a, b, t_ba(a), t_ab(b), norm)
        loss.backward()
        assert loss.item() == pytest.approx(value.item(), rel=1e-5), (kind, norm)
        assert torch.allclose(t_ab.c.grad.flatten(), grad_ab, atol=1e-6), (kind, norm)
        assert torch.allclose(t_ba.c.grad.flatten(), grad_ba, atol=1e-6), (kind, norm)


def test_identity_loss_pairs_each_input_with_its_own_translation():
    a, b = torch.zeros(2, 2), torch.ones(2, 2)
    # a_idt = T_BA(a) must be compared with a and b_idt = T_AB(b) with b: swapping them costs 2 * 1.
    assert identity_loss(a, b, a.clone(), b.clone()).item() == 0
    assert identity_loss(a, b, b.clone(), a.clone()).item() == pytest.approx(2.0)


def test_lsgan_losses():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert lsgan_d_loss(ones, zeros).item() == 0  # optimum of the discriminator
    assert lsgan_g_loss(ones).item() == 0  # optimum of the generator
    assert lsgan_d_loss(zeros, ones).item() == pytest.approx(0.5 * 1 + 0.5 * 1)
    assert lsgan_g_loss(zeros).item() == pytest.approx(1.0)
    half = torch.full((3, 1, 2, 2), 0.5)
    assert lsgan_d_loss(half, half).item() == pytest.approx(0.5 * 0.25 + 0.5 * 0.25)
    assert lsgan_g_loss(torch.tensor([3.0, -1.0])).item() == pytest.approx((4 + 4) / 2)
    assert lsgan_d_loss(half.half(), half.half()).dtype == torch.float32


def test_gradient_l1_sees_edges_not_levels():
    img = torch.zeros(1, 3, 8, 8)
    img[..., 2:6, 3] = 1.0  # a thin vertical bar 4 pixels tall (a leg)
    assert gradient_l1(img, img).item() == 0
    assert gradient_l1(img + 0.3, img).item() == pytest.approx(0.0, abs=1e-7)  # a level shift has no edges
    # the bar moved one column right: per row and channel the horizontal differences differ by 1, 2, 1 (4 rows),
    # the vertical ones by 1 at the bar's two ends in each of the two columns; 3 x 8 x 7 differences each way
    moved = torch.roll(img, 1, dims=-1)
    assert gradient_l1(moved, img).item() == pytest.approx((3 * 4 * 4 + 3 * 4) / (3 * 8 * 7))


def test_saliency_centre_finds_the_energetic_cell_and_the_power_resists_the_background():
    g = torch.Generator().manual_seed(0)
    f = 0.3 * torch.randn(2, 8, 4, 4, generator=g)  # background: weaker features everywhere
    f[0, :, 1, 2] += 1.0  # sample 0: the animal in row 1, column 2
    f[1, :, 3, 0] -= 1.0  # sample 1: row 3, column 0 (the sign does not matter)
    want = torch.tensor([[1.5 / 4, 2.5 / 4], [3.5 / 4, 0.5 / 4]])
    sharp, flat = saliency_centre(f), saliency_centre(f, power=1.0)
    assert (sharp - want).abs().max() < 0.03
    assert (flat - want).abs().max() > 0.05  # without the power the background drags the centre to the middle


def test_layout_loss_is_zero_for_kept_centres_and_grows_with_the_move():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 8, 4, 4, generator=g), torch.randn(3, 8, 4, 4, generator=g)
    assert layout_loss(a, b, a, b).item() == 0.0
    assert layout_loss(a, b, 2 * a, -b).item() < 1e-6  # another scale or sign, the same place

    def animal_at(col):
        f = 0.2 * torch.randn(3, 8, 4, 4, generator=torch.Generator().manual_seed(2))
        f[:, :, 2, col] += 1.0
        return f

    source = animal_at(0)
    one, two = (layout_loss(source, b, animal_at(col), b).item() for col in (1, 2))
    # the mean over (y, x) of |the move|: a cell is a quarter of the side, and y does not move
    assert abs(one - 0.25 / 2) < 0.01 and abs(two - 0.5 / 2) < 0.02
