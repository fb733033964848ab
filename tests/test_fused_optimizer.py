"""engine.fused_optimizer: the stages' Adam rebuilt with fused=True (deepcascade/engine/optim.py) is the same
Adam to float rounding, and the engine trains with it (and without it when switched off)."""

from __future__ import annotations

import torch

from deepcascade.engine.optim import fused_adam


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3))


def _train(net, opt, steps=5, scaler=None):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = net(torch.randn(2, 3, 9, 9, generator=g)).square().mean()
        opt.zero_grad()
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    return [p.detach().clone() for p in net.parameters()]


def test_fused_adam_is_the_same_adam():
    plain_net, fused_net = _net(), _net()
    plain = torch.optim.Adam(plain_net.parameters(), lr=1e-2, betas=(0.5, 0.999))
    fused = fused_adam(torch.optim.Adam(fused_net.parameters(), lr=1e-2, betas=(0.5, 0.999)))
    assert fused.param_groups[0]["fused"] and fused.param_groups[0]["betas"] == (0.5, 0.999)
    a, b = _train(plain_net, plain), _train(fused_net, fused)
    assert max((x - y).abs().max().item() for x, y in zip(a, b)) < 1e-6
    assert max((x - p).abs().max().item() for x, p in zip(a, _net().parameters())) > 1e-3  # it trained


def test_fused_adam_under_a_grad_scaler_on_cpu():
    """engine.precision fp16 steps through GradScaler, which hands fused optimizers the scale itself."""
    plain_net, fused_net = _net(), _net()
    plain = torch.optim.Adam(plain_net.parameters(), lr=1e-2)
    fused = fused_adam(torch.optim.Adam(fused_net.parameters(), lr=1e-2))
    a = _train(plain_net, plain, scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))
    b = _train(fused_net, fused, scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))
    assert max((x - y).abs().max().item() for x, y in zip(a, b)) < 1e-6


def test_left_alone_when_it_cannot_be_fused():
    net = _net()
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    assert fused_adam(sgd) is sgd
    stepped = torch.optim.Adam(net.parameters())
    _train(net, stepped, steps=1)
    assert fused_adam(stepped) is stepped  # has state: rebuilding would lose it


def test_engine_trains_with_fused_adam_unless_switched_off(tmp_path, dc, synthetic_data, tiny_config):
    data = synthetic_data(n=4, size=32, seed=0, n_test=1)
    kinds = {}
    for fused in (True, False):
        cfg = tiny_config(tmp_path / f"cfg{fused}.yaml", data, engine={"fused_optimizer": fused},
                          invert={"levels": [5], "steps": 1, "batch_size": 2, "lambda_adv": 0},
                          cascade={"final_level": 5})
        r = dc("train", cfg, "--stage", "invert", "--run-dir", tmp_path / f"run{fused}")
        assert r.returncode == 0, r.stderr[-2000:]
        ckpt = torch.load(next((tmp_path / f"run{fused}" / "checkpoints").glob("invert5-*.pt")), weights_only=True)
        kinds[fused] = ckpt["optimizers"]["I"]["param_groups"][0].get("fused")
    assert kinds == {True: True, False: None}
