"""The stage registry: every kind of training stage, the class that trains it and the levels it trains.

``train --stage KIND [--level L]`` and ``--stage all`` read this table; stage names (``invert5``, ``deep``,
``cascade4``) are built and parsed only by :func:`deepcascade.engine.run.stage_name` / ``parse_stage_name``.
Add a stage kind by adding an entry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from ..config import Config


@dataclass(frozen=True)
class StageKind:
    name: str
    target: str | None  # "module:Class" below deepcascade.stages (imported on use), None for 'prepare'
    levels: Callable[[Config], list[int]]  # the levels this kind trains with this config, in training order
    help: str

    def build(self, exp, level: int):
        """The stage object training ``level`` (its networks are initialised here, from torch's RNG)."""
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), cls)(exp, level)


KINDS: dict[str, StageKind] = {k.name: k for k in (
    StageKind("prepare", None, lambda cfg: [], "normalization statistics and the feature cache only"),
    StageKind("invert", "invert:InvertStage", lambda cfg: sorted(cfg.invert.levels, reverse=True),
              "feature-inversion networks I_l"),
    StageKind("deep", "deep:DeepStage", lambda cfg: [5], "level-5 translators"),
    StageKind("cascade", "cascade:CascadeStage", lambda cfg: list(range(4, cfg.cascade.final_level - 1, -1)),
              "coarse-to-fine cascade levels"),
)}

#: what ``--stage all`` trains, in order
ALL = ("invert", "deep", "cascade")
