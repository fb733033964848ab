"""Optimizer variants the engine can switch a stage to without touching the stage: fused Adam.

The stages build plain ``torch.optim.Adam`` (the paper's Adam, betas 0.5/0.999). On CPU PyTorch then updates
each parameter tensor in its own Python-level loop iteration; ``fused=True`` does the whole update of a group in
one native kernel per tensor list. The arithmetic is the same Adam, so weights agree to float rounding
(``benchmarks/bench_train.py`` prints the difference beside the speed).
"""

from __future__ import annotations

import torch


def fused_adam(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same Adam (groups, learning rates, betas, eps, weight decay) with ``fused=True``; ``opt`` must not
    have stepped yet (its state is not carried over). Other optimizers and parameters not on a device fused
    Adam supports are returned unchanged."""
    if type(opt) is not torch.optim.Adam or opt.state:
        return opt
    params = [p for g in opt.param_groups for p in g["params"]]
    if not params or any(not p.is_floating_point() or p.device.type not in ("cpu", "cuda") for p in params):
        return opt
    groups = [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in opt.param_groups]
    defaults = {k: v for k, v in opt.defaults.items() if k in ("lr", "betas", "eps", "weight_decay", "amsgrad")}
    return torch.optim.Adam(groups, **defaults, fused=True)
