"""Full-state checkpoints: plain types and tensors only, written atomically, loaded with weights_only=True.

A training checkpoint ``checkpoints/<stage>-<step>.pt`` holds every network, the generators' weight averages
(engine/ema.py, where the stage keeps them), every optimizer and grad scaler, the step, the python/numpy/torch
RNG states, the data generator state, the config, the package version and a ``compat`` record (backbone,
weights hash, image size, level...) that a resume must match. The inference snapshot ``models/<stage>.pt``
holds the networks only (the averaged generators, where there are averages) and marks the stage as finished.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import numpy as np
import torch

from ..version import __version__
from ..fileio import atomic_path, safe_torch_load
from ..errors import UserError

log = logging.getLogger("deepcascade")

FORMAT_VERSION = 1
_NAME = re.compile(r"^(?P<stage>[a-z0-9_]+)-(?P<step>\d{7,})\.pt$")


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` through :func:`deepcascade.fileio.atomic_path`: a crash or a failing write leaves the
    previous file intact and no partial file under ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Every RNG the training loop touches, as plain types and tensors."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def load_file(path: str | Path) -> dict:
    """Load a checkpoint or snapshot safely; a truncated or foreign file raises UserError naming it."""
    path = Path(path)
    ckpt = safe_torch_load(path, "checkpoint", "truncated, corrupt, or not a deepcascade checkpoint")
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise UserError(f"{path} is not a deepcascade checkpoint")
    if ckpt["format"] > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer deepcascade (checkpoint format {ckpt['format']}, "
                        f"version {ckpt.get('version')}); this is {__version__} (format {FORMAT_VERSION}): "
                        f"upgrade deepcascade")
    return ckpt


def check_compatible(ckpt: dict, path: Path, stage: str, compat: dict) -> None:
    """Refuse a checkpoint of another stage, backbone, image size, ... saying what does not match."""
    if ckpt.get("stage") != stage:
        raise UserError(f"{path} is a checkpoint of stage '{ckpt.get('stage')}', not '{stage}'")
    stored = ckpt.get("compat", {})
    diffs = [f"{k}: checkpoint has {stored.get(k)!r}, this run has {v!r}"
             for k, v in compat.items() if stored.get(k) != v]
    if diffs:
        raise UserError(f"{path} does not match this configuration: " + "; ".join(diffs))


def load_state(module, state: dict, path: Path, name: str) -> None:
    """``module.load_state_dict`` that answers a shape or key mismatch with a UserError naming the file."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"{path}: '{name}' does not fit this configuration (a network width or level changed?): "
                        f"{str(e).splitlines()[0][:300]}") from None


def list_checkpoints(directory: Path, stage: str) -> list[tuple[int, Path]]:
    """(step, path) of a stage's checkpoints, oldest first."""
    out = []
    if directory.is_dir():
        for p in directory.iterdir():
            m = _NAME.match(p.name)
            if m and m["stage"] == stage:
                out.append((int(m["step"]), p))
    return sorted(out)


def checkpoint_path(directory: Path, stage: str, step: int) -> Path:
    return directory / f"{stage}-{step:07d}.pt"


def latest_loadable(directory: Path, stage: str) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads; unreadable newer ones are skipped, saying so."""
    for step, path in reversed(list_checkpoints(directory, stage)):
        try:
            return path, load_file(path)
        except UserError as e:
            log.warning("skipping checkpoint %s: %s; trying the previous one", path, e)
    return None


def rotate(directory: Path, stage: str, keep: int) -> None:
    for _, path in list_checkpoints(directory, stage)[:-keep]:
        path.unlink(missing_ok=True)


def base_record(stage: str, compat: dict, config: dict) -> dict:
    return {"format": FORMAT_VERSION, "version": __version__, "stage": stage, "compat": compat,
            "config": config}
