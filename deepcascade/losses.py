"""Loss functions of every stage, as pure functions of networks and tensors (no module state).

WGAN-GP for the translators and deepVAE generators (supplementary 1.1 and equation 2), LSGAN for the
inversion networks only ("For the adversarial metric, only here, we have used LS-GAN"), the cycle /
identity / reconstruction distances of docs/method.md sections 3-4, and the deepVAE's equation 1. Adversarial scores are reduced in float32
so the losses are safe under fp16/bf16 autocast.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

NORMS = ("l1", "l2")


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    scaler: torch.amp.GradScaler | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``mean_i (||grad_x D(x_hat_i)||_2 - 1)^2`` at random interpolates of real and fake.

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U(0, 1)`` per sample (drawn from ``generator``
    if given). The gradient is taken with ``create_graph=True`` so the penalty can be backpropagated into the
    critic. The critic must treat samples independently (no batch norm), since the gradient of the summed
    scores is used as each sample's gradient.

    With an enabled ``GradScaler`` (fp16 AMP) the critic is evaluated on the interpolates in float32, outside
    autocast, and the scale is not used. PyTorch's AMP "gradient penalty" recipe (the gradient of
    ``scaler.scale(scores)`` under fp16 autocast, divided by the scale afterwards) protects small gradients from
    underflow but lets large ones overflow: once the scaler reaches 2^16 (its initial value, and where it
    regrows every 2000 clean steps) the scaled per-sample gradient passes fp16's largest value (65504) and the
    penalty is NaN, which ends a long run. In float32 neither happens at any scale; the penalty's double
    backward then runs in float32 too (the rest of the critic loss stays fp16). With bf16 (no scaler) the
    penalty runs under the caller's autocast, bf16 having float32's range. The norm is always computed in
    float32. Returns a scalar tensor (lambda not applied).
    """
    real, fake = real.detach(), fake.detach()
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    if generator is not None:
        eps = torch.rand(shape, generator=generator, device=generator.device).to(real.device, real.dtype)
    else:
        eps = torch.rand(shape, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    if scaler is not None and scaler.is_enabled():  # fp16: float32, outside autocast (see above)
        with torch.autocast(x_hat.device.type, enabled=False):
            x32 = x_hat.float()
            (grad,) = torch.autograd.grad(critic(x32).float().sum(), x_hat, create_graph=True)
    else:
        (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norm = grad.float().flatten(1).norm(2, dim=1)
    return ((norm - 1) ** 2).mean()


def wgan_critic_loss(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    lambda_gp: float,
    scaler: torch.amp.GradScaler | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Critic loss ``E[D(fake)] - E[D(real)] + lambda_gp * GP`` (equation 2 of the supplementary).

    ``fake`` is detached here, so no gradient reaches the generator. Returns a dict:
    ``loss`` (the total, with graph), ``wasserstein`` (``E[D(real)] - E[D(fake)]``, the critic's estimate of
    the Wasserstein distance, detached float32) and ``gp`` (``lambda_gp`` times the penalty, detached).
    """
    d_real = critic(real).float().mean()
    d_fake = critic(fake.detach()).float().mean()
    gp = lambda_gp * gradient_penalty(critic, real, fake, scaler=scaler, generator=generator)
    return {
        "loss": d_fake - d_real + gp,
        "wasserstein": (d_real - d_fake).detach(),
        "gp": gp.detach(),
    }


def wgan_generator_loss(critic: Callable[[torch.Tensor], torch.Tensor], fake: torch.Tensor) -> torch.Tensor:
    """Generator loss ``-E[D(fake)]``; gradients flow through ``fake`` into the generator."""
    return -critic(fake).float().mean()


def feature_distance(x: torch.Tensor, y: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    """Mean absolute (``'l1'``) or mean squared (``'l2'``) difference over all elements."""
    if norm == "l1":
        return (x - y).abs().mean()
    if norm == "l2":
        return (x - y).pow(2).mean()
    raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")


def cycle_loss(a: torch.Tensor, b: torch.Tensor, aba: torch.Tensor, bab: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    """Cycle consistency ``d(T_BA(T_AB(a)), a) + d(T_AB(T_BA(b)), b)`` over precomputed translations.

    Takes tensors, not networks, so the caller computes ``T_AB(a)`` once and reuses it for the adversarial
    term: pass ``aba = T_BA(T_AB(a))`` and ``bab = T_AB(T_BA(b))``. Weighted by lambda_cyc = 100 in the paper.
    """
    return feature_distance(aba, a, norm) + feature_distance(bab, b, norm)


def identity_loss(
    a: torch.Tensor, b: torch.Tensor, a_idt: torch.Tensor, b_idt: torch.Tensor, norm: str = "l1"
) -> torch.Tensor:
    """Identity ``d(T_BA(a), a) + d(T_AB(b), b)`` over precomputed translations.

    ``a_idt = T_BA(a)`` (an A sample fed to the translator *into* A) and ``b_idt = T_AB(b)``; a translator
    should leave samples already in its target domain unchanged. Weighted by lambda_idty = 100 in the paper.
    """
    return feature_distance(a_idt, a, norm) + feature_distance(b_idt, b, norm)


def saliency_centre(features: torch.Tensor, power: float = 4.0) -> torch.Tensor:
    """(N, 2) centre (y, x), in fractions of the side, of the map ``mean_c(features^2) ** power``.

    The normalized features are zero-mean per channel over the data, so their energy is highest where the
    image departs most from the average, on the animal; the power sharpens the map so that the background does
    not pull the centre to the middle. On the demo's level-5 features of real test images, the x and y of this
    centre correlate 0.69-0.98 with the true silhouette centres.
    """
    e = features.float().pow(2).mean(1).pow(power)
    e = e / e.sum((1, 2), keepdim=True).clamp_min(1e-12)
    h, w = e.shape[-2:]
    ys = (torch.arange(h, device=e.device, dtype=e.dtype) + 0.5) / h
    xs = (torch.arange(w, device=e.device, dtype=e.dtype) + 0.5) / w
    return torch.stack([(e.sum(2) * ys).sum(1), (e.sum(1) * xs).sum(1)], 1)


def layout_loss(a: torch.Tensor, b: torch.Tensor, ab: torch.Tensor, ba: torch.Tensor) -> torch.Tensor:
    """Mean |saliency centre of the translation - of its source| over both directions [ours].

    The adversarial loss asks translations to stand where the target domain's animals stand; where the two
    domains place them differently (e.g. wide animals confined horizontally by the frame and tall ones
    vertically) the translators move the animals accordingly. This term keeps the centre of the feature energy
    where the source's is (docs/method.md section 3).
    """
    return ((saliency_centre(ab) - saliency_centre(a)).abs().mean()
            + (saliency_centre(ba) - saliency_centre(b)).abs().mean())


def gradient_l1(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between the horizontal and vertical finite differences of two image batches (N, C, H, W).

    Plain L1 on pixels lets a thin structure (a leg a few pixels wide) fade into a blur that costs little; its
    edges are where this term looks.
    """
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return F.l1_loss(dx(y), dx(target)) + F.l1_loss(dy(y), dy(target))


def lsgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator loss ``0.5 * mean((d_real - 1)^2) + 0.5 * mean(d_fake^2)`` (real = 1, fake = 0).

    The factor 0.5 follows Mao et al. and pix2pix/CycleGAN, which halve the discriminator objective so it
    learns at a comparable rate to the generator; ``lsgan_g_loss`` is not halved (same convention).
    """
    return 0.5 * ((d_real.float() - 1) ** 2).mean() + 0.5 * (d_fake.float() ** 2).mean()


def lsgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN generator loss ``mean((d_fake - 1)^2)``: the generator wants its patches scored as real."""
    return ((d_fake.float() - 1) ** 2).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent dimensions, averaged over the batch (nats).

    The KL term of equation 1 of the supplementary, in closed form: 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar).
    Computed in float32.
    """
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()


def vae_loss(x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             kl_weight: float = 1.0, sigma: float = 0.0) -> dict[str, torch.Tensor]:
    """The negative of equation 1: -log p(x|z) of a Gaussian decoder + ``kl_weight`` * KL, per sample, averaged
    over the batch (nats).

    The paper's "l2 loss" is the log-likelihood of a Gaussian decoder N(recon, sigma^2 I), which is
    ``D/2 log(2 pi sigma^2) + ||x - recon||^2 / (2 sigma^2)`` for D elements per sample; sigma sets how many nats
    of KL a unit of squared error is worth. ``sigma > 0`` fixes it; ``sigma == 0`` uses its maximum-likelihood
    value, the root of the batch's mean squared error, computed here without gradient (the optimal-sigma VAE of
    Rybkin et al. 2021; at the optimum the loss's derivative in sigma is zero, so nothing is lost by not
    differentiating through it): the balance then follows the features' scale instead of a guess.
    Returns ``loss`` (with graph), and detached ``rec`` (that -log p per sample), ``mse`` (per element),
    ``sigma`` and ``kl``.
    """
    sq = (recon.float() - x.float()).pow(2)
    mse = sq.mean()
    var = mse.detach().clamp_min(1e-6) if sigma <= 0 else torch.tensor(float(sigma) ** 2, device=x.device)
    dims = sq[0].numel()
    rec = (sq.flatten(1).sum(1) / (2 * var)).mean() + 0.5 * dims * torch.log(2 * torch.pi * var)
    kl = gaussian_kl(mu, logvar)
    return {"loss": rec + kl_weight * kl, "rec": rec.detach(), "mse": mse.detach(), "sigma": var.sqrt(),
            "kl": kl.detach()}
