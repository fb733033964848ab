"""A run directory's layout and its stage names: one experiment, all of its stages.

Layout: ``config.yaml`` (the resolved config), ``log.txt``, ``stats.jsonl`` (one JSON object per logged
step), ``samples/``, ``checkpoints/`` (full training state), ``models/`` (inference snapshots of finished
stages, see :mod:`deepcascade.rundir.snapshots`), ``normalization.safetensors`` and ``cache/``. A lock file
keeps a second training process out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from pathlib import Path

import yaml

from ..config import Config, config_from_file
from ..domains import DOMAINS
from ..engine import distributed
from ..errors import UserError
from ..fileio import folder_lock, write_text

log = logging.getLogger("deepcascade")


#: Stage kinds whose name carries no level: they train one level only.
_UNLEVELLED = {"deep": 5}
#: Stage kinds trained once per domain: their names carry the domain before the level (``synth_a5``).
_PER_DOMAIN = {"synth"}
_STAGE_NAME = re.compile(r"^(?P<kind>[a-z]+?)(?:_(?P<domain>[ab]))?(?P<level>[1-5])?$")


def stage_name(kind: str, level: int, domain: str | None = None) -> str:
    """The name of a stage in files and logs: ``invert5``, ``deep`` (level 5), ``cascade4``, ``synth_a5``
    (the deepVAE level 5 of domain A)."""
    if (domain is not None) != (kind in _PER_DOMAIN):
        raise ValueError(f"stage kind {kind!r} {'needs' if kind in _PER_DOMAIN else 'takes no'} domain, "
                         f"got {domain!r}")
    if domain is not None:
        if domain.lower() not in DOMAINS:
            raise ValueError(f"domain must be 'a' or 'b', got {domain!r}")
        return f"{kind}_{domain.lower()}{level}"
    return kind if kind in _UNLEVELLED else f"{kind}{level}"


def parse_stage(name: str) -> tuple[str, int, str | None]:
    """``synth_a5`` -> ("synth", 5, "a"), ``cascade4`` -> ("cascade", 4, None); the inverse of
    :func:`stage_name`."""
    m = _STAGE_NAME.match(name)
    if (not m or (m["level"] is None) != (m["kind"] in _UNLEVELLED)
            or (m["domain"] is not None) != (m["kind"] in _PER_DOMAIN)):
        raise ValueError(f"not a stage name: {name!r}")
    return m["kind"], int(m["level"]) if m["level"] else _UNLEVELLED[m["kind"]], m["domain"]


def parse_stage_name(name: str) -> tuple[str, int]:
    """``cascade4`` -> ("cascade", 4), ``deep`` -> ("deep", 5), ``synth_b4`` -> ("synth", 4)."""
    kind, level, _ = parse_stage(name)
    return kind, level


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(old: dict, new: dict) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


class RunDir:
    """Paths and bookkeeping of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.models = self.path / "models"
        self.samples = self.path / "samples"
        self.config_file = self.path / "config.yaml"
        self.normalization_file = self.path / "normalization.safetensors"
        self.cache_dir = self.path / "cache"  # unless cache.dir names another folder
        #: ``deepcascade finetune``: the fine-tuned VGG-19 (torchvision key layout) and its lineage
        self.finetuned_weights = self.path / "vgg19-finetuned.pth"
        self.finetune_record = self.path / "finetune.json"
        self._lock_stack: contextlib.ExitStack | None = None
        self._handler = None

    # -- config -------------------------------------------------------------------------------------
    def stored_config(self) -> Config | None:
        if not self.config_file.is_file():
            return None
        return config_from_file(self.config_file)

    def config(self) -> Config:
        """The stored config of a run that must exist: exit 2 naming the folder when it is not a run directory."""
        cfg = self.stored_config()
        if cfg is None:
            raise UserError(f"{self.path} is not a deepcascade run directory (no config.yaml)")
        return cfg

    def write_config(self, cfg: Config) -> None:
        write_text(self.config_file, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    def adopt_config(self, cfg: Config, resume: bool) -> None:
        """Store ``cfg``; a different config than the stored one needs ``--resume`` (and is logged)."""
        stored = self.stored_config()
        if stored is not None:
            diff = config_diff(stored.to_dict(), cfg.to_dict())
            if diff and not resume:
                raise UserError(f"run directory {self.path} holds a different config ({'; '.join(diff[:5])}"
                                f"{' ...' if len(diff) > 5 else ''}); use another --run-dir, or --resume to "
                                f"continue with the new values")
            for line in diff:
                log.warning("config changed on resume: %s", line)
        if distributed.is_main():
            self.write_config(cfg)

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> "RunDir":
        """Create the folders, take the lock (rank 0) and start ``log.txt``."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"run directory {self.path} exists and is not a folder")
        if distributed.is_main():
            for p in (self.path, self.checkpoints, self.models, self.samples):
                p.mkdir(parents=True, exist_ok=True)
            self._lock()
            self._handler = logging.FileHandler(self.path / "log.txt", encoding="utf-8")
            self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logging.getLogger("deepcascade").addHandler(self._handler)
        distributed.barrier()
        self._check_shared()
        return self

    def _check_shared(self) -> None:
        """With several ranks, check that each sees the folder rank 0 created (its lock file, with rank 0's pid).

        Rank 0 alone writes checkpoints, snapshots and statistics, and every rank reads them back (resume,
        skipping finished stages): across nodes the run directory must be on a filesystem they all share, at the
        same path. Without this check a rank on another node would train a stage rank 0 skips and the group
        would hang; with it every rank stops with the same message.
        """
        if distributed.world_size() == 1:
            return
        owner = distributed.from_rank0((distributed.host(), os.getpid()))
        lock = self.path / ".lock"
        try:
            seen = int(lock.read_text(encoding="utf-8").split()[0]) == owner[1]
        except (OSError, ValueError, IndexError):
            seen = False
        missing = distributed.failing_ranks(not seen)
        if missing:
            raise UserError(f"run directory {self.path}: rank(s) {', '.join(map(str, missing))} cannot see the "
                            f"folder rank 0 created on {owner[0]}; with several nodes the run directory must be "
                            f"on a filesystem every node shares, at the same path (README: Multi-node)")

    def _lock(self) -> None:
        self._lock_stack = contextlib.ExitStack()
        self._lock_stack.enter_context(folder_lock(self.path, "run directory"))

    def close(self) -> None:
        if self._handler is not None:
            logging.getLogger("deepcascade").removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        if self._lock_stack is not None:
            self._lock_stack.close()
            self._lock_stack = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    # -- records -------------------------------------------------------------------------------------
    def append_stats(self, record: dict) -> None:
        if distributed.is_main():
            record = {"time": round(time.time(), 3), **record}
            with open(self.path / "stats.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def snapshot_path(self, stage: str) -> Path:
        """``models/<stage>.pt``: the inference snapshot that marks a stage (see :func:`stage_name`) finished."""
        return self.models / f"{stage}.pt"

    def finished(self, stage: str) -> bool:
        return self.snapshot_path(stage).is_file()
