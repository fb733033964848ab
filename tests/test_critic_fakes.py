"""The critics' fake samples of one step, computed in one batched pass (``critic_fakes`` of the deep, cascade and
synth stages), are the per-batch translations: the generators normalize per sample (GroupNorm, AdaIN) and do not
change during the critic updates. A whole step with them matches a step that translates batch by batch, the
gradient penalty included (same random draws, same fakes)."""

from __future__ import annotations

import copy
import types

import pytest
import torch

from deepcascade.engine.trainer import TrainContext
from deepcascade.models import build, deep_nets, level_nets
from deepcascade.stages import cascade as cascade_stage
from deepcascade.stages import deep as deep_stage
from deepcascade.stages import synth as synth_stage
from deepcascade.stages.adversarial import make_optimizers

N_CRITIC, BATCH = 3, 4
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_close(x: torch.Tensor, y: torch.Tensor) -> None:
    torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def unbatched(module, monkeypatch):
    """``module.critic_fakes`` replaced by 'none given': critic_step translates each batch itself, as before."""
    monkeypatch.setattr(module, "critic_fakes", lambda nets, *args: [None] * len(args[-2]))


def same_steps(run, nets: dict, monkeypatch, module) -> None:
    """Two steps of ``run(nets, ctx)`` batched and unbatched, from the same weights and random draws: the same
    losses and (up to float rounding, which Adam scales to at most a few learning rates) the same weights."""
    results = []
    for batched in (True, False):
        copies = copy.deepcopy(nets)
        ctx = TrainContext(CPU, "fp32", make_optimizers(copies, 1e-4, generators=[k for k in copies if k[0] != "D"],
                                                        critics=[k for k in copies if k[0] == "D"]))
        with monkeypatch.context() as m:
            if not batched:
                unbatched(module, m)
            torch.manual_seed(7)
            stats = [run(copies, ctx) for _ in range(2)]
        results.append((stats, copies))
    (s1, n1), (s2, n2) = results
    for a, b in zip(s1, s2):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    for k in n1:
        for (name, p), q in zip(n1[k].named_parameters(), n2[k].parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-3, msg=f"{k}.{name}")


def test_deep_fakes_are_the_per_batch_translations(monkeypatch):
    torch.manual_seed(0)
    nets = deep_nets(16, 4, gn_groups=4, critic_width=16)
    g = torch.Generator().manual_seed(1)
    a = [torch.randn(BATCH, 16, 4, 4, generator=g).tanh() for _ in range(N_CRITIC + 1)]
    b = [torch.randn(BATCH, 16, 4, 4, generator=g).tanh() for _ in range(N_CRITIC + 1)]
    ctx = TrainContext(CPU, "fp32", make_optimizers(nets, 1e-4))
    fakes = deep_stage.critic_fakes(nets, a[:-1], b[:-1], ctx)
    assert len(fakes) == N_CRITIC
    with torch.no_grad():
        for (fb, fa), x, y in zip(fakes, a, b):
            assert_close(fb, nets["T_AB"](x))
            assert_close(fa, nets["T_BA"](y))
    assert deep_stage.critic_fakes(nets, [], [], ctx) == []

    c = types.SimpleNamespace(lambda_gp=10.0, lambda_cycle=100.0, lambda_identity=100.0, lambda_layout=0.0,
                              norm="l1", n_critic=N_CRITIC)
    same_steps(lambda n, ctx: deep_stage.train_step(n, a, b, c, ctx), nets, monkeypatch, deep_stage)


def test_synth_fakes_are_the_per_batch_outputs(monkeypatch):
    torch.manual_seed(0)
    nets = {"G": build("SynthGenerator", in_channels=16, out_channels=8, nz=4, width=16),
            "D": build("FeatureCritic", in_channels=24, in_size=8, width=16)}
    g = torch.Generator().manual_seed(1)
    batches = [{5: torch.randn(BATCH, 16, 4, 4, generator=g).tanh(), 4: torch.randn(BATCH, 8, 8, 8, generator=g).tanh(),
                "z": torch.randn(BATCH, 4, generator=g)} for _ in range(N_CRITIC + 1)]
    ctx = TrainContext(CPU, "fp32", make_optimizers(nets, 1e-4, generators=("G",), critics=("D",)))
    fakes = synth_stage.critic_fakes(nets, 4, batches[:-1], ctx)
    assert len(fakes) == N_CRITIC
    with torch.no_grad():
        for f, batch in zip(fakes, batches):
            assert_close(f, nets["G"](batch[5], batch["z"]))

    c = types.SimpleNamespace(lambda_gp=10.0, conditional_critic=True)
    same_steps(lambda n, ctx: synth_stage.train_step(n, 4, batches, c, ctx), nets, monkeypatch, synth_stage)


def test_cascade_fakes_and_the_critic_update_they_feed():
    torch.manual_seed(0)
    backbone = types.SimpleNamespace(channels={4: 8, 5: 16}, strides={4: 8, 5: 16})
    nets = level_nets(backbone, 4, 64, critic_width=16, predictor_width=16)
    g = torch.Generator().manual_seed(1)
    feats = lambda: {5: torch.randn(BATCH, 16, 4, 4, generator=g).tanh(),
                     4: torch.randn(BATCH, 8, 8, 8, generator=g).tanh()}
    steps = [(a, b, torch.randn(BATCH, 16, 4, 4, generator=g).tanh(), torch.randn(BATCH, 16, 4, 4, generator=g).tanh())
             for a, b in ((feats(), feats()) for _ in range(N_CRITIC))]
    ctx = TrainContext(CPU, "fp32", make_optimizers(nets, 1e-4, generators=("T_AB", "M_AB", "T_BA", "M_BA")))
    fakes = cascade_stage.critic_fakes(nets, 4, steps, ctx)
    assert len(fakes) == N_CRITIC
    with torch.no_grad():
        for (fb, fa), (a, b, in_ab, in_ba) in zip(fakes, steps):
            assert_close(fb, cascade_stage.translate_level(nets, "AB", in_ab, a[4]))
            assert_close(fa, cascade_stage.translate_level(nets, "BA", in_ba, b[4]))

    # one critic update with the batched fakes equals one that translates itself (the penalty's draws included)
    outs = []
    for given in (fakes[0], None):
        copies = copy.deepcopy(nets)
        c_ctx = TrainContext(CPU, "fp32", make_optimizers(copies, 1e-4, generators=("T_AB", "M_AB", "T_BA", "M_BA")))
        torch.manual_seed(3)
        outs.append((cascade_stage.critic_step(copies, 4, *steps[0], 10.0, c_ctx, fakes=given), copies))
    (s1, n1), (s2, n2) = outs
    for k in s1:
        torch.testing.assert_close(s1[k], s2[k], rtol=1e-5, atol=1e-6, msg=k)
    for k in ("D_A", "D_B"):
        for p, q in zip(n1[k].parameters(), n2[k].parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-3)
