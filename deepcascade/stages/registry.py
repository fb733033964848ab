"""The stage registry: every kind of training stage, the class that trains it and the levels it trains.

``train --stage KIND [--level L] [--domain D]`` and ``--stage all`` read this table; stage names (``invert5``,
``deep``, ``cascade4``, ``synth_a5``) are built and parsed only by :func:`deepcascade.rundir.stage_name` /
``parse_stage``. Add a stage kind by adding an entry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from ..config import Config


def _always(cfg: Config) -> bool:
    return True


@dataclass(frozen=True)
class StageKind:
    name: str
    target: str | None  # "module:Class" below deepcascade.stages (imported on use), None for 'prepare'
    levels: Callable[[Config], list[int]]  # the levels this kind trains with this config, in training order
    help: str
    per_domain: bool = False  # one stage per domain ('a' then 'b'), named e.g. synth_a5
    in_all: Callable[[Config], bool] = _always  # whether ``--stage all`` trains this kind with this config
    by_level: bool = True  # whether the class takes the level (False: the kind trains one fixed level)

    def build(self, exp, level: int, domain: str | None = None):
        """The stage object training ``level`` (of ``domain``, for per-domain kinds); its networks are
        initialised here, from torch's RNG."""
        module, cls = self.target.split(":")
        factory = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
        args = ([level] if self.by_level else []) + ([] if domain is None else [domain])
        return factory(exp, *args)


KINDS: dict[str, StageKind] = {k.name: k for k in (
    StageKind("prepare", None, lambda cfg: [], "normalization statistics and the feature cache only"),
    StageKind("invert", "invert:InvertStage", lambda cfg: sorted(cfg.invert.levels, reverse=True),
              "feature-inversion networks I_l"),
    StageKind("deep", "deep:DeepStage", lambda cfg: [5], "level-5 translators", by_level=False),
    StageKind("cascade", "cascade:CascadeStage", lambda cfg: list(range(4, cfg.cascade.final_level - 1, -1)),
              "coarse-to-fine cascade levels"),
    StageKind("synth", "synth:synth_stage", lambda cfg: list(range(5, cfg.synth.final_level - 1, -1)),
              "deepVAE synthesis, one per domain (in 'all' when synth.enabled)", per_domain=True,
              in_all=lambda cfg: cfg.synth.enabled),
)}

#: what ``--stage all`` trains, in order (kinds whose ``in_all`` is false for the config are left out)
ALL = ("invert", "deep", "cascade", "synth")
