"""Which stages a ``train --stage`` runs, in which order, and running them on the shared engine."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config, to_commented_yaml
from ..engine import distributed
from ..engine.run import RunDir
from ..device import resolve_device
from ..engine.trainer import stage_seed, train_stage
from ..errors import UserError
from .experiment import seed_everything, setup_experiment
from .registry import ALL, KINDS

log = logging.getLogger("deepcascade")


def plan(cfg: Config, stage: str, level: int | None = None) -> list[tuple[str, int]]:
    """(kind, level) pairs to train, in order."""
    if stage == "all":
        return [step for kind in ALL for step in plan(cfg, kind)]
    if stage not in KINDS:
        raise UserError(f"unknown stage {stage!r}; available: {', '.join(list(KINDS) + ['all'])}")
    levels = KINDS[stage].levels(cfg)
    if level is not None:
        if level not in levels:
            raise UserError(f"--level {level} is not trained by stage '{stage}' with this config "
                            f"(levels: {levels})")
        levels = [level]
    return [(stage, l) for l in levels]


def describe(cfg: Config, steps: list[tuple[str, int]]) -> str:
    lines = [to_commented_yaml(cfg), "# plan:"]
    lines += [f"#   {kind} level {level}" for kind, level in steps] or ["#   statistics and feature cache only"]
    return "\n".join(lines)


def run_training(cfg: Config, run_dir: str | Path, stage: str, level: int | None = None, resume=False,
                 dry_run: bool = False) -> dict[str, str]:
    """Run the planned stages; returns {stage name: 'done' | 'skipped'}.

    ``stage == 'all'`` always resumes: finished stages are skipped, an unfinished one continues.
    """
    steps = plan(cfg, stage, level)
    if dry_run:
        print(describe(cfg, steps))
        return {}
    if stage == "all" and not resume:
        resume = True
    results = {}
    # Join the process group (torchrun) before the run directory opens: RunDir.open lets rank 0 alone create
    # the folders and take the lock, and makes the other ranks wait at a barrier, which needs the group.
    distributed.init_from_env(resolve_device(cfg.engine.device).type)
    with RunDir(run_dir) as run:
        run.adopt_config(cfg, resume=bool(resume))
        exp = setup_experiment(cfg, run)
        for kind, lvl in steps:
            # each stage's initialisation is reproducible on its own (seed key: kind + level, e.g. "deep5")
            seed_everything(stage_seed(cfg.engine.seed, f"{kind}{lvl}"))
            st = KINDS[kind].build(exp, lvl)
            results[st.name] = train_stage(run, st, cfg, exp.device, resume=resume)
        distributed.barrier()
    return results
