"""What every stage of one run shares: config, run directory, device, backbone, normalizer, both domains."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..backbones import Backbone, backbone_from_config
from ..config import Config
from ..engine import distributed
from ..rundir import RunDir, RunModels, run_compat
from ..device import resolve_device
from ..precision import precision_reason, resolve_precision

log = logging.getLogger("deepcascade")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class Experiment:
    cfg: Config
    run: RunDir
    device: torch.device
    backbone: Backbone
    normalizer: object  # deepcascade.features.normalization.Normalizer
    domain_a: object  # deepcascade.features.domain_features.DomainFeatures
    domain_b: object
    #: engine.precision with 'auto' resolved (:func:`deepcascade.precision.resolve_precision`)
    precision: str

    @property
    def compat(self) -> dict:
        """What every checkpoint of this run must match to be resumed or used."""
        return run_compat(self.cfg, self.backbone)

    @property
    def models(self) -> RunModels:
        """The frozen networks of the stages that have finished (inversion nets, deeper cascade levels)."""
        return RunModels(self.run, self.compat, self.device)


def setup_experiment(cfg: Config, run: RunDir) -> Experiment:
    """Device, backbone, normalization statistics and feature caches (built on first use)."""
    from .run_features import prepare_domains

    device = resolve_device(cfg.engine.device)
    distributed.init_from_env(device.type)
    seed_everything(cfg.engine.seed)
    # engine.precision 'auto' is decided here, once, before the feature caches (keyed on the precision) open
    precision = resolve_precision(cfg.engine.precision, device)
    log.info("training %s", precision_reason(cfg.engine.precision, device))
    backbone = backbone_from_config(cfg).to(device)
    if cfg.engine.channels_last:
        backbone.to(memory_format=torch.channels_last)
    normalizer, a, b = prepare_domains(cfg, run, backbone, device, rank=distributed.rank(),
                                       world_size=distributed.world_size(), precision=precision)
    return Experiment(cfg, run, device, backbone, normalizer, a, b, precision)
