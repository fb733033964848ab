"""A cascade level (level 4) learns to translate on synthetic features; reconstruction term; CascadeModel.

Synthetic two-level features per domain D (normalized, in (-1, 1)); level 5 has 64 channels at 4x4, level 4
has 32 channels at 8x8, as a stand-in backbone with strides 16 and 8 at 64 px images would give:

    e5 = tanh(L_D + W z + 0.05 n),               z ~ N(0, I_4): per-sample content, shared W
    e4 = tanh(G_D(up2(e5)) + V u + 0.05 n),      u ~ N(0, I_2): per-sample per-channel "style", shared V

``L_D`` is the domain's spatial layout at level 5 (the "shape"), ``G_D`` a fixed random 1x1 conv (different for
A and B) and ``up2`` nearest upsampling: each domain's level 4 is a learnable function of its level 5, and the
two functions differ. The data follow the method's premise: the domains differ in the deep level's layout,
which the cascade must render at level 4, while the per-channel statistics of level 4 (``V u``; layouts and
content have zero spatial mean per channel) are shared by the domains. That matters because T^l takes its
AdaIN parameters from the *source's* level-l features: per-channel offsets specific to A at level 4 would be
copied into the translation by the teacher-forced reconstruction, and only the adversarial term could undo
that (in our runs with such offsets, and narrower critics, the translations drifted away from B instead).

The frozen deeper cascade is the exact level-5 translation known from the construction (no parameters):
``T5_AB(e5) = tanh(atanh(e5) - L_A + L_B)`` keeps the content z and moves the layout to B's. This makes the
test about level 4 alone, and gives a per-sample ground truth: the level-4 features B has for the translated
content and the source's style, ``tanh(G_B(up2(T5_AB(e5(a)))) + V u_a)``.

The level is trained as :meth:`deepcascade.stages.cascade.CascadeStage.train_step` does it (n_critic = 4
critic updates on fresh batches, then one generator update through ``ctx.optimize('G', ...)`` with the critics
frozen), with the stage's losses and the config defaults: WGAN-GP lambda_gp = 10, teacher-forced
reconstruction lambda_rec = 100, critic width 256, Adam(1e-4, (0.5, 0.999)), batch 16, 40 steps (about 28 s on
2 idle CPU cores, 50 s on one: a step costs ~1.2 s of CPU, 0.4 s of it the generator update of the two
13M-parameter AdaIN predictors).
With narrower critics (32, 128) the generator outran the critic (it scored translations above real features)
and the translations moved *away* from B after ~30 steps; width 256 (the default) trains steadily. With 2x2
level-5 maps (32 px) the run was cheaper but diverged (ratio > 1 in a direction) for all 4 seeds tried.
"""

from __future__ import annotations

import math
import types

import pytest
import torch
from torch import nn

from deepcascade.engine.trainer import TrainContext
from deepcascade.losses import layout_loss
from deepcascade.models import level_nets as build_level_nets
from deepcascade.networks import CascadeModel
from deepcascade.networks.deep import DeepTranslator
from deepcascade.stages import cascade as cascade_stage
from deepcascade.stages.adversarial import adversarial_step, make_optimizers

C5, C4, S5, K, K_STYLE = 64, 32, 4, 4, 2
IMAGE_SIZE = 64
BACKBONE = types.SimpleNamespace(channels={4: C4, 5: C5}, strides={4: 8, 5: 16})
SEED = 0
STEPS, BATCH, N_CRITIC, LR, CRITIC_WIDTH = 40, 16, 4, 1e-4, 256
HELD_OUT = 256


def up2(x: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class Domains:
    """The synthetic two-level domains of the module docstring."""

    def __init__(self, seed: int):
        g = torch.Generator().manual_seed(seed)

        def zero_mean(x):  # no per-channel spatial mean: only the layout differs, not the channel statistics
            return x - x.mean(dim=(-2, -1), keepdim=True)

        def layout():
            return 0.7 * zero_mean(torch.randn(1, S5, S5, generator=g)) * torch.randn(C5, 1, 1, generator=g)

        self.o5 = {d: layout() for d in "ab"}
        self.g = {d: torch.randn(C4, C5, generator=g) / math.sqrt(C5) for d in "ab"}
        self.w = zero_mean(torch.randn(K, C5, S5, S5, generator=g)) * 0.4 / math.sqrt(K)
        self.v = torch.randn(K_STYLE, C4, 1, 1, generator=g) * 0.5 / math.sqrt(K_STYLE)

    def level4(self, d: str, e5: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | float = 0.0):
        """Domain d's level 4 for level-5 features e5 and per-sample style (noise-free unless given)."""
        return torch.tanh(torch.einsum("oc,nchw->nohw", self.g[d], up2(e5)) + style + noise)

    def sample(self, d: str, n: int, g: torch.Generator) -> dict:
        z, u = torch.randn(n, K, generator=g), torch.randn(n, K_STYLE, generator=g)
        e5 = torch.tanh(self.o5[d] + torch.einsum("nk,kchw->nchw", z, self.w)
                        + 0.05 * torch.randn(n, C5, S5, S5, generator=g))
        style = torch.einsum("nk,kchw->nchw", u, self.v)
        e4 = self.level4(d, e5, style, 0.05 * torch.randn(n, C4, 2 * S5, 2 * S5, generator=g))
        return {5: e5, 4: e4, "style": style}


class ExactDeep(nn.Module):
    """The level-5 translation known from the construction: swap the domain layouts, keep the content."""

    def __init__(self, domains: Domains, src: str, dst: str):
        super().__init__()
        self.register_buffer("shift", domains.o5[dst] - domains.o5[src])

    def forward(self, e5: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.atanh(e5.clamp(-0.999999, 0.999999)) + self.shift)


def cascade_config(**overrides):
    return types.SimpleNamespace(**{"lambda_gp": 10.0, "lambda_rec": 100.0, "lambda_up": 0.0, "lambda_layout": 0.0,
                                    "n_critic": N_CRITIC,
                                    **overrides})


def level_train_step(nets, deep, batches_a, batches_b, c, ctx) -> dict:
    """CascadeStage.train_step with the frozen cascade replaced by ``deep`` (level-5 translators)."""
    def inputs(a, b):
        with torch.no_grad():
            return deep["AB"](a[5]), deep["BA"](b[5])

    return adversarial_step(list(zip(batches_a, batches_b)),
                            lambda ab: cascade_stage.critic_step(nets, 4, *ab, *inputs(*ab), c.lambda_gp, ctx),
                            lambda ab: cascade_stage.generator_losses(nets, 4, *ab, *inputs(*ab), c),
                            [nets["D_A"], nets["D_B"]], ctx)


def mean_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """L2 distance between the mean feature maps of two sets of samples."""
    return (x.mean(0) - y.mean(0)).norm().item()


@torch.no_grad()
def measure(nets, deep, domains, a: dict, b: dict) -> dict:
    in_ab, in_ba = deep["AB"](a[5]), deep["BA"](b[5])
    ab = cascade_stage.translate_level(nets, "AB", in_ab, a[4])
    ba = cascade_stage.translate_level(nets, "BA", in_ba, b[4])
    truth_ab, truth_ba = domains.level4("b", in_ab, a["style"]), domains.level4("a", in_ba, b["style"])
    return {
        "ab_to_b": mean_distance(ab, b[4]), "ba_to_a": mean_distance(ba, a[4]),
        "ab_truth_l1": (ab - truth_ab).abs().mean().item(), "ba_truth_l1": (ba - truth_ba).abs().mean().item(),
    }


def train_level(seed: int = SEED, steps: int = STEPS, lr: float = LR, **config) -> dict:
    """Train level 4 on the synthetic domains; held-out measurements before and after, and the stats."""
    torch.manual_seed(seed)
    domains = Domains(seed + 1)
    held = torch.Generator().manual_seed(seed + 2)
    a_test, b_test = domains.sample("a", HELD_OUT, held), domains.sample("b", HELD_OUT, held)
    deep = {"AB": ExactDeep(domains, "a", "b"), "BA": ExactDeep(domains, "b", "a")}
    nets = build_level_nets(BACKBONE, 4, IMAGE_SIZE, critic_width=CRITIC_WIDTH)
    ctx = TrainContext(torch.device("cpu"), "fp32",
                       make_optimizers(nets, lr, generators=("T_AB", "M_AB", "T_BA", "M_BA")))
    c = cascade_config(**config)
    before = measure(nets, deep, domains, a_test, b_test)
    g = torch.Generator().manual_seed(seed + 3)
    history = []
    for _ in range(steps):
        ba = [domains.sample("a", BATCH, g) for _ in range(c.n_critic + 1)]
        bb = [domains.sample("b", BATCH, g) for _ in range(c.n_critic + 1)]
        history.append(level_train_step(nets, deep, ba, bb, c, ctx))
    in_ab, in_ba = deep["AB"](a_test[5]), deep["BA"](b_test[5])
    return {
        "before": before, "after": measure(nets, deep, domains, a_test, b_test), "history": history,
        "a_to_b": mean_distance(a_test[4], b_test[4]),
        # untranslated source level 4 against the ground truth of the translated content
        "a_truth_l1": (a_test[4] - domains.level4("b", in_ab, a_test["style"])).abs().mean().item(),
        "b_truth_l1": (b_test[4] - domains.level4("a", in_ba, b_test["style"])).abs().mean().item(),
    }


@pytest.fixture(scope="module")
def trained():
    return train_level()


def test_level_translation_moves_towards_the_target_domain(trained):
    """Distance of mean level-4 features to the target domain, relative to the untranslated source's.

    Seeds 0-5 after 40 steps: 0.35-0.57 (seed 0: 0.44 A->B, 0.46 B->A); the untranslated source is 1 by
    definition and the untrained level nets give 0.78-1.09.
    """
    base, after, before = trained["a_to_b"], trained["after"], trained["before"]
    for k in ("ab_to_b", "ba_to_a"):
        assert after[k] < 0.65 * base, (k, after[k], base)
        assert after[k] < 0.7 * before[k], (k, after[k], before[k])


def test_level_translation_matches_the_ground_truth_per_sample(trained):
    """Mean |translation - ground truth| per sample (the ground truth of the module docstring).

    Seeds 0-5 after 40 steps: 0.27-0.40, i.e. 0.60-0.89 of the untranslated source level 4's (0.39-0.46) and
    0.53-0.76 of the untrained level nets' (0.47-0.54); seed 0: 0.30 / 0.33 vs 0.39 and 0.51.
    """
    after, before = trained["after"], trained["before"]
    for k, src in (("ab_truth_l1", trained["a_truth_l1"]), ("ba_truth_l1", trained["b_truth_l1"])):
        assert after[k] < 0.95 * src, (k, after[k], src)
        assert after[k] < 0.8 * before[k], (k, after[k], before[k])


def test_stats_and_reconstruction_falls(trained):
    history = trained["history"]
    for stats in history:
        for k in ("critic", "gp", "wasserstein", "g_adv", "rec", "loss"):
            assert stats[k].dim() == 0 and math.isfinite(stats[k].item()), (k, stats)
        assert "up" not in stats  # lambda_up = 0
    # teacher-forced reconstruction, mean of the first and last 5 steps: ~1.0 -> 0.56-0.67 over seeds 0-5
    first = sum(s["rec"].item() for s in history[:5]) / 5
    final = sum(s["rec"].item() for s in history[-5:]) / 5
    assert final < 0.7 * first, (first, final)


class RelationTranslator(nn.Module):
    """Stand-in T^4 that applies one domain's exact level-5 -> level-4 relation (no style, no noise)."""

    def __init__(self, domains: Domains, domain: str, n_params: int):
        super().__init__()
        self.domains, self.domain, self.n_params = domains, domain, n_params

    def forward(self, deeper: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        assert params.shape == (deeper.shape[0], self.n_params)
        return self.domains.level4(self.domain, deeper, 0.0)


def noise_free(domains: Domains, d: str, n: int, g: torch.Generator) -> dict:
    """Samples whose level 4 is exactly the domain's relation applied to their level 5."""
    x = domains.sample(d, n, g)
    return {5: x[5], 4: domains.level4(d, x[5], 0.0)}


def test_reconstruction_is_zero_for_translators_that_reproduce_the_target_level():
    """T^l_AB fed (e5(b), M(e4(b))) must give e4(b): with the exact B relation the term is 0 up to rounding.

    Pairing it with the wrong domain's features (or the wrong relation) gives a large value, which the
    second half checks, so a mix-up of a/b in ``generator_losses`` would fail here.
    """
    domains = Domains(1)
    g = torch.Generator().manual_seed(0)
    a, b = noise_free(domains, "a", 8, g), noise_free(domains, "b", 8, g)
    nets = build_level_nets(BACKBONE, 4, IMAGE_SIZE)  # M_AB, M_BA real predictors (zero output at init)
    n_params = nets["T_AB"].n_adain_params
    nets["D_A"] = nets["D_B"] = lambda x: x.flatten(1).mean(1)  # a critic with a known value
    nets["T_AB"], nets["T_BA"] = RelationTranslator(domains, "b", n_params), RelationTranslator(domains, "a", n_params)
    in_ab, in_ba = ExactDeep(domains, "a", "b")(a[5]), ExactDeep(domains, "b", "a")(b[5])
    c = cascade_config(lambda_up=0.0)
    out = cascade_stage.generator_losses(nets, 4, a, b, in_ab, in_ba, c)
    assert out["rec"].item() < 1e-6
    assert "up" not in out
    expected_adv = -(domains.level4("b", in_ab, 0.0).mean() + domains.level4("a", in_ba, 0.0).mean())
    assert out["g_adv"].item() == pytest.approx(expected_adv.item(), abs=1e-5)
    assert out["loss"].item() == pytest.approx(out["g_adv"].item() + 100 * out["rec"].item(), abs=1e-4)

    # swapped relations: T_AB reproduces A's level 4 instead of B's -> large reconstruction error
    nets["T_AB"], nets["T_BA"] = nets["T_BA"], nets["T_AB"]
    swapped = cascade_stage.generator_losses(nets, 4, a, b, in_ab, in_ba, c)["rec"].item()
    assert swapped > 0.2, swapped

    # the up-consistency term compares up(translation) with the translated deeper input
    nets["T_AB"], nets["T_BA"] = nets["T_BA"], nets["T_AB"]
    down = lambda x: torch.nn.functional.avg_pool2d(x, 2).repeat(1, C5 // C4, 1, 1)
    out = cascade_stage.generator_losses(nets, 4, a, b, in_ab, in_ba, cascade_config(lambda_up=3.0), up=down)
    ab, ba = domains.level4("b", in_ab, 0.0), domains.level4("a", in_ba, 0.0)
    expected_up = (down(ab) - in_ab).abs().mean() + (down(ba) - in_ba).abs().mean()
    assert out["up"].item() == pytest.approx(expected_up.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["g_adv"].item() + 100 * out["rec"].item() + 3 * out["up"].item(),
                                               rel=1e-5, abs=1e-4)

    # the layout term compares the translations' saliency centres with the sources' level-4 ones
    out = cascade_stage.generator_losses(nets, 4, a, b, in_ab, in_ba, cascade_config(lambda_layout=7.0))
    assert out["layout"].item() == pytest.approx(layout_loss(a[4], b[4], ab, ba).item(), rel=1e-5)
    assert out["layout"].item() > 0
    assert out["loss"].item() == pytest.approx(out["g_adv"].item() + 100 * out["rec"].item()
                                               + 7 * out["layout"].item(), rel=1e-5, abs=1e-4)


def small_cascade(seed: int = 0) -> tuple[CascadeModel, dict, dict]:
    torch.manual_seed(seed)
    deep = {f"T_{d}": DeepTranslator(C5, gn_groups=8) for d in ("AB", "BA")}
    level4 = build_level_nets(BACKBONE, 4, IMAGE_SIZE, critic_width=16)  # critics are left out of the model
    for k in ("M_AB", "M_BA"):  # non-zero AdaIN parameters, so that the predictors' inputs matter
        nn.init.normal_(level4[k].head[-1].weight, std=0.01)
    return CascadeModel(deep, {4: level4}).eval(), deep, level4


def test_cascade_model_translates_both_directions_with_the_right_networks():
    model, deep, level4 = small_cascade()
    assert model.final_level == 4
    assert not any(k.startswith("D_") for k in model.levels["4"])
    g = torch.Generator().manual_seed(0)
    domains = Domains(1)
    feats = {"a2b": domains.sample("a", 3, g), "b2a": domains.sample("b", 3, g)}
    outs = {}
    for direction, d in (("a2b", "AB"), ("b2a", "BA")):
        f = feats[direction]
        out = model.translate(f, direction)
        assert sorted(out) == [4, 5]
        assert out[5].shape == (3, C5, S5, S5) and out[4].shape == (3, C4, 2 * S5, 2 * S5)
        with torch.no_grad():
            e5 = deep[f"T_{d}"](f[5])
            e4 = level4[f"T_{d}"](e5, level4[f"M_{d}"](f[4]))
        assert torch.equal(out[5], e5) and torch.allclose(out[4], e4, atol=1e-6)
        assert out[4].abs().max() < 1  # tanh range
        assert sorted(model.translate(f, direction, final_level=5)) == [5]
        assert torch.equal(model.translate(f, d)[4], out[4])  # 'AB'/'BA' are accepted too
        outs[direction] = out
    # the two directions use different networks: same input, different outputs
    same = model.translate(feats["a2b"], "b2a")
    assert not torch.allclose(same[4], outs["a2b"][4])
    # level 4 depends on the source's own level-4 features through M^4
    changed = {**feats["a2b"], 4: feats["b2a"][4]}
    assert torch.equal(model.translate(changed, "a2b")[5], outs["a2b"][5])
    assert not torch.allclose(model.translate(changed, "a2b")[4], outs["a2b"][4])


def test_cascade_model_rejects_untrained_levels_and_unknown_directions():
    model, _, _ = small_cascade()
    f = Domains(1).sample("a", 2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="final level 3 is not trained"):
        model.translate(f, "a2b", final_level=3)
    with pytest.raises(ValueError, match="direction"):
        model.translate(f, "a2c")
    deep_only = CascadeModel({f"T_{d}": DeepTranslator(C5, gn_groups=8) for d in ("AB", "BA")}, {})
    assert deep_only.final_level == 5
    assert sorted(deep_only.translate(f, "b2a")) == [5]
    with pytest.raises(ValueError, match="not trained"):
        deep_only.translate(f, "b2a", final_level=4)
