"""A run's trained networks, loaded back from its inference snapshots ``models/<stage>.pt``.

Each snapshot stores, beside the weights, every network's constructor arguments (``net.arch``, see
:func:`deepcascade.models.build`), so loading rebuilds a network from the snapshot alone, without re-reading the
config. The stored arguments are checked before anything is allocated: they must name the class's parameters,
stay within numeric bounds and describe exactly the tensors the snapshot holds. Inference and evaluation
use :func:`open_run` and :class:`RunModels` and never import the training stages.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..backbones import Backbone, backbone_from_config
from ..config import Config
from ..device import resolve_device
from ..domains import NETWORK_DIRECTIONS
from ..engine.checkpoint import check_compatible, load_file, load_state
from ..errors import UserError
from ..features.normalization import Normalizer
from ..models import NETWORKS
from ..networks import CascadeModel, InversionNet, SynthesisModel
from .layout import RunDir, parse_stage, stage_name

#: the largest value a stored constructor argument may take: counts of layers and resizing factors are small,
#: widths, channels and sizes are far above any backbone's (VGG-19: 512 channels) yet far below what would
#: exhaust memory before the weights are compared
_ARG_MAX = {"n_convs": 16, "downsamplings": 16, "scale": 16, "output_padding": 16, "trim": 16, "stride": 1024}
_DEFAULT_MAX = 65536


def run_compat(cfg: Config, backbone: Backbone) -> dict:
    """What every checkpoint and snapshot of a run must match to be resumed or used."""
    return {"backbone": backbone.name, "weights": backbone.weights_sha256 or f"random:{cfg.backbone.seed}",
            "relu": backbone.relu, "image_size": cfg.data.image_size,
            "normalization": f"{cfg.normalization.scheme}:{cfg.normalization.k}"}


def _check_arch(path: Path, stage: str, name: str, arch, state) -> None:
    """UserError (naming the file and the network) unless ``arch`` is a known class with arguments it takes,
    each a number within bounds, that builds exactly the tensor shapes of ``state``; built on the meta device,
    so nothing is allocated."""
    where = f"{path}: network '{name}'"
    if not isinstance(arch, dict) or arch.get("kind") not in NETWORKS:
        raise UserError(f"{where} has no stored architecture (written by an older deepcascade); retrain the "
                        f"stage '{stage}'")
    cls, args = NETWORKS[arch["kind"]], arch.get("args")
    try:
        inspect.signature(cls).bind(**args)
    except TypeError as e:
        raise UserError(f"{where}: its stored arguments do not fit {arch['kind']} ({e}); the file is damaged or "
                        f"not written by deepcascade: retrain the stage '{stage}'") from None
    for key, value in args.items():
        bound = _ARG_MAX.get(key, _DEFAULT_MAX)
        if not isinstance(value, (int, float)) or not 0 <= value <= bound:  # NaN fails the comparison too
            raise UserError(f"{where}: stored argument {key}={str(value)[:40]} is not a number in 0..{bound}; "
                            f"the file is damaged or not written by deepcascade: retrain the stage '{stage}'")
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in cls(**args).state_dict().items()}
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as e:
        raise UserError(f"{where}: its stored arguments do not build a {arch['kind']} ({str(e)[:200]}); retrain "
                        f"the stage '{stage}'") from None
    stored = {k: tuple(v.shape) for k, v in state.items()} if isinstance(state, dict) else None
    if stored != shapes:
        raise UserError(f"{where}: its stored architecture does not match its weights; the file is damaged or "
                        f"not written by deepcascade: retrain the stage '{stage}'")


def load_snapshot(path: Path, stage: str, compat: dict, names=None) -> dict[str, nn.Module]:
    """The networks of a finished stage (those in ``names``, default all), rebuilt from the arguments stored in
    its snapshot, in the snapshot's order (network construction draws from torch's global RNG, and training a
    later stage after loading must draw the same numbers on every run)."""
    snap = load_file(path)
    check_compatible(snap, path, stage, compat)
    nets = {}
    for name, state in snap["nets"].items():
        if names is not None and name not in names:
            continue
        arch = snap.get("arch", {}).get(name)
        _check_arch(path, stage, name, arch, state)
        net = NETWORKS[arch["kind"]](**arch["args"])
        load_state(net, state, path, name)
        nets[name] = net
    return nets


class RunModels:
    """The frozen networks of a run's finished stages, loaded from their snapshots onto ``device``."""

    def __init__(self, run: RunDir, compat: dict, device: torch.device):
        self.run, self.compat, self.device = run, compat, device

    def stage(self, name: str, level: int, names=None) -> dict[str, nn.Module] | None:
        """The networks of stage ``name`` (see :func:`load_snapshot`), or None when it has not finished."""
        path = self.run.snapshot_path(name)
        if not path.is_file():
            return None
        nets = load_snapshot(path, name, {**self.compat, "level": level}, names)
        return {k: v.to(self.device).eval().requires_grad_(False) for k, v in nets.items()}

    def inversion(self, level: int) -> InversionNet | None:
        """I_level, or None when that stage has not finished."""
        nets = self.stage(stage_name("invert", level), level, names=("I",))
        return None if nets is None else nets["I"]

    def hierarchy(self, kind: str, final_level: int, domain: str | None = None) -> CascadeModel | SynthesisModel:
        """A trained chain of levels from 5 down to ``final_level``: ``kind`` 'cascade' gives the translation
        cascade (the ``deep`` stage, then ``cascade4``, ...), 'synth' the deepVAE of ``domain`` ('a' or 'b').
        UserError naming the first stage that has not finished."""
        if kind not in ("cascade", "synth"):
            raise ValueError(f"kind must be 'cascade' or 'synth', got {kind!r}")
        levels = {}
        for level in range(5, final_level - 1, -1):
            if kind == "synth":
                name, names = stage_name("synth", level, domain), ("G",)
            else:
                name = stage_name("deep" if level == 5 else "cascade", level)
                names = tuple(f"{n}_{d}" for d in NETWORK_DIRECTIONS.values() for n in ("T", "M"))
            nets = self.stage(name, level, names=names)
            if nets is None:
                flags = f"--stage {parse_stage(name)[0]}" + (f" --domain {domain}" if domain else "")
                raise UserError(f"stage '{name}' has not finished in {self.run.path} (no "
                                f"{self.run.snapshot_path(name)}); train it first (deepcascade train CONFIG {flags})")
            levels[level] = nets["G"] if kind == "synth" else nets
        top = levels.pop(5)
        model = SynthesisModel(top, levels) if kind == "synth" else CascadeModel(top, levels)
        return model.to(self.device).eval()


@dataclass
class TrainedRun:
    """A run directory opened for inference: its config, frozen backbone, normalizer and trained networks."""

    cfg: Config
    run: RunDir
    device: torch.device
    backbone: Backbone
    normalizer: Normalizer
    models: RunModels

    def synthesis_level(self, domain: str) -> int:
        """The config's ``synth.final_level``, or the shallowest deepVAE level of ``domain`` finished above it."""
        level = self.cfg.synth.final_level
        while level < 5 and not self.run.finished(stage_name("synth", level, domain)):
            level += 1
        return level

    def deepest_trained_level(self) -> int:
        """The config's ``cascade.final_level``, or the shallowest cascade level that has finished above it."""
        level = self.cfg.cascade.final_level
        while level < 5 and not self.run.finished(stage_name("cascade", level)):
            level += 1
        return level


def open_run(run_dir: str | Path, device: str = "auto") -> TrainedRun:
    """Open a run directory trained by ``deepcascade train`` for inference."""
    run = RunDir(run_dir)
    cfg = run.config()
    if not run.normalization_file.is_file():
        raise UserError(f"{run_dir} has no normalization statistics ({run.normalization_file}); train it first")
    dev = resolve_device(device)
    backbone = backbone_from_config(cfg).to(dev)
    normalizer = Normalizer.load(run.normalization_file).to(dev)
    return TrainedRun(cfg, run, dev, backbone, normalizer, RunModels(run, run_compat(cfg, backbone), dev))
