"""Which stages a ``train --stage`` runs, in which order, and running them on the shared engine."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config, to_commented_yaml
from ..engine import distributed
from ..domains import DOMAINS
from ..rundir import RunDir, stage_name
from ..device import resolve_device
from ..engine.trainer import stage_seed, train_stage
from ..errors import UserError
from .experiment import seed_everything, setup_experiment
from .registry import ALL, KINDS

log = logging.getLogger("deepcascade")


def plan(cfg: Config, stage: str, level: int | None = None, domain: str | None = None
         ) -> list[tuple[str, int, str | None]]:
    """(kind, level, domain) triples to train, in order; domain is None except for per-domain kinds."""
    if stage == "all":
        if level is not None or domain is not None:
            raise UserError("--level and --domain select within one stage; give --stage too, not 'all'")
        return [step for kind in ALL if KINDS[kind].in_all(cfg) for step in plan(cfg, kind)]
    if stage not in KINDS:
        raise UserError(f"unknown stage {stage!r}; available: {', '.join(list(KINDS) + ['all'])}")
    kind = KINDS[stage]
    levels = kind.levels(cfg)
    if level is not None:
        if level not in levels:
            raise UserError(f"--level {level} is not trained by stage '{stage}' with this config "
                            f"(levels: {levels})")
        levels = [level]
    if not kind.per_domain:
        if domain is not None:
            per_domain = ", ".join(k.name for k in KINDS.values() if k.per_domain)
            raise UserError(f"--domain applies to the per-domain stages ({per_domain}), not to '{stage}'")
        return [(stage, l, None) for l in levels]
    if domain is not None and domain not in DOMAINS:
        raise UserError(f"--domain must be 'a' or 'b', got {domain!r}")
    return [(stage, l, d) for d in ([domain] if domain else DOMAINS) for l in levels]


def describe(cfg: Config, steps: list[tuple[str, int, str | None]]) -> str:
    lines = [to_commented_yaml(cfg), "# plan:"]
    lines += [f"#   {kind} level {level}" + (f" domain {domain.upper()}" if domain else "")
              for kind, level, domain in steps] or ["#   statistics and feature cache only"]
    return "\n".join(lines)


def _seed_key(kind: str, level: int, domain: str | None) -> str:
    """Each stage's initialisation seed key: kind + level (e.g. "deep5"), the stage name for per-domain ones."""
    return f"{kind}{level}" if domain is None else stage_name(kind, level, domain)


def run_training(cfg: Config, run_dir: str | Path, stage: str, level: int | None = None, resume=False,
                 dry_run: bool = False, domain: str | None = None) -> dict[str, str]:
    """Run the planned stages; returns {stage name: 'done' | 'skipped'}.

    ``stage == 'all'`` always resumes: finished stages are skipped, an unfinished one continues.
    """
    steps = plan(cfg, stage, level, domain)
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
        for kind, lvl, dom in steps:
            # each stage's initialisation is reproducible on its own
            seed_everything(stage_seed(cfg.engine.seed, _seed_key(kind, lvl, dom)))
            st = KINDS[kind].build(exp, lvl, dom)
            results[st.name] = train_stage(run, st, cfg, exp.device, resume=resume)
        distributed.barrier()
    return results
