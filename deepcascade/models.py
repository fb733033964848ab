"""Trained models: every stage's networks built in one place, and loaded back from a run's snapshots.

Training builds networks here from the config and the backbone (the only place that reads network widths from
the config). Each network remembers its constructor arguments (``net.arch``); the inference snapshot
``models/<stage>.pt`` stores them beside the weights, so loading rebuilds a network from the snapshot alone,
without re-reading the config. Inference and evaluation use :func:`open_run` and :class:`RunModels` and never
import the training stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .backbones import Backbone, backbone_from_config
from .config import Config
from .device import resolve_device
from .engine.checkpoint import check_compatible, load_file, load_state
from .engine.run import RunDir, parse_stage_name, stage_name
from .errors import UserError
from .features.normalization import Normalizer
from .networks.deep import bottleneck_downsamplings
from .networks import (AdaINPredictor, CascadeModel, CascadeTranslator, DeepTranslator, FeatureCritic,
                       InversionNet, PatchDiscriminator, SynthesisModel, SynthGenerator, VAEDecoder, VAEEncoder,
                       predictor_convs)

#: every network class a snapshot may name
NETWORKS = {cls.__name__: cls for cls in (InversionNet, PatchDiscriminator, DeepTranslator, FeatureCritic,
                                          CascadeTranslator, AdaINPredictor, VAEEncoder, VAEDecoder,
                                          SynthGenerator)}


def build(kind: str, **args) -> nn.Module:
    """``NETWORKS[kind](**args)``, remembering ``{"kind", "args"}`` as ``net.arch`` for the snapshot."""
    net = NETWORKS[kind](**args)
    net.arch = {"kind": kind, "args": dict(args)}
    return net


# ---------------------------------------------------------------------------------------------- for training
# The stages call these with widths from their config sections; loading never does (see load_snapshot).
def inversion_nets(channels: int, stride: int, adversarial: bool = True, trim: int = 0, width: int = 0,
                   disc_width: int = 64) -> dict[str, nn.Module]:
    """I_l for a level of ``channels`` at ``stride`` (``trim``: its side is image/stride - trim; ``width``: the
    floor of its first convs' width), plus its PatchGAN discriminator (``disc_width`` wide) when ``adversarial``."""
    nets = {"I": build("InversionNet", in_channels=channels, stride=stride, trim=trim, width=width)}
    if adversarial:
        nets["D"] = build("PatchDiscriminator", width=disc_width)
    return nets


def deep_nets(channels: int, size: int, gn_groups: int = 32, critic_width: int = 512, min_bottleneck: int = 4
              ) -> dict[str, nn.Module]:
    """T_AB, T_BA (Table 1, with as many down-samplings as keep a ``min_bottleneck`` wide bottleneck) and the
    critics D_A, D_B on (channels, size, size) level-5 features."""
    down = bottleneck_downsamplings(size, min_bottleneck)
    nets = {f"T_{d}": build("DeepTranslator", channels=channels, gn_groups=gn_groups, downsamplings=down)
            for d in ("AB", "BA")}
    nets.update({f"D_{d}": build("FeatureCritic", in_channels=channels, in_size=size, width=critic_width)
                 for d in ("A", "B")})
    return nets


def level_side(backbone, level: int, image_size: int) -> int:
    """Side of ``level`` for ``image_size`` images: the backbone spec's rule (AlexNet's levels are
    image/stride - 1), or image/stride for an object that only states strides."""
    spec = getattr(backbone, "spec", None)
    return spec.feature_size(level, image_size) if spec is not None else image_size // backbone.strides[level]


def upsampling(backbone, level: int, image_size: int) -> dict[str, int]:
    """How a translator from level ``level + 1`` to ``level`` resizes (CascadeTranslator's ``scale`` and
    ``output_padding``): the ratio of the two strides (1 where they share a resolution, as AlexNet's conv3..conv5
    do; docs/method.md section 4), plus whatever else the level's side needs (AlexNet: 2s + 1)."""
    stride, deeper = backbone.strides[level], backbone.strides[level + 1]
    s_in, s_out = level_side(backbone, level + 1, image_size), level_side(backbone, level, image_size)
    scale = deeper // stride
    extra = s_out - scale * s_in
    if scale not in (1, 2) or deeper % stride or not 0 <= extra < scale:
        raise ValueError(f"no cascade translator maps level {level + 1} ({s_in} px, stride {deeper}) to level "
                         f"{level} ({s_out} px, stride {stride})")
    return {"scale": scale, "output_padding": extra}


def level_nets(backbone, level: int, image_size: int, critic_width: int | None = None,
               predictor_width: int = 512) -> dict[str, nn.Module]:
    """T^l and M^l for both directions (Tables 2-3), and the critics D_A, D_B when ``critic_width`` is given.

    ``backbone`` is anything with ``channels`` and ``strides`` per level (and a ``spec`` where sides are not
    image/stride); ``predictor_width`` is the channels of M^l's convs (512 in Table 2). T^l resizes as
    :func:`upsampling` says.
    """
    c_in, c_out, stride = backbone.channels[level + 1], backbone.channels[level], backbone.strides[level]
    resize, s_out = upsampling(backbone, level, image_size), level_side(backbone, level, image_size)
    nets = {}
    for d in ("AB", "BA"):
        t = nets[f"T_{d}"] = build("CascadeTranslator", in_channels=c_in, out_channels=c_out, **resize)
        nets[f"M_{d}"] = build("AdaINPredictor", in_channels=c_out, n_params=t.n_adain_params,
                               n_convs=predictor_convs(level, stride), width=predictor_width)
    if critic_width is not None:
        nets.update({f"D_{d}": build("FeatureCritic", in_channels=c_out, in_size=s_out,
                                     width=critic_width) for d in ("A", "B")})
    return nets


def synth_nets(backbone, level: int, image_size: int, nz: int = 512, gn_groups: int = 32, nz_level: int = 64,
               mapping_width: int = 256, critic_width: int = 256, conditional_critic: bool = True
               ) -> dict[str, nn.Module]:
    """The deepVAE networks of one domain and level (docs/method.md section 6).

    Level 5: the encoder E_5 and decoder G_5 (Tables 4-5) on (C_5, s_5, s_5) features. Level l < 5: the
    conditional generator G_l (C_{l+1} -> C_l channels, noise of ``nz_level``) and its critic D on level-l
    features (plus the upsampled level-(l+1) features when ``conditional_critic``).
    """
    channels, size = backbone.channels[level], level_side(backbone, level, image_size)
    if level == 5:
        return {"E": build("VAEEncoder", channels=channels, size=size, nz=nz, gn_groups=gn_groups),
                "G": build("VAEDecoder", nz=nz, channels=channels, size=size, gn_groups=gn_groups)}
    deeper = backbone.channels[level + 1]
    return {"G": build("SynthGenerator", in_channels=deeper, out_channels=channels, nz=nz_level,
                       width=mapping_width, **upsampling(backbone, level, image_size)),
            "D": build("FeatureCritic", in_channels=channels + (deeper if conditional_critic else 0), in_size=size,
                       width=critic_width)}


def run_compat(cfg: Config, backbone: Backbone) -> dict:
    """What every checkpoint and snapshot of a run must match to be resumed or used."""
    return {"backbone": backbone.name, "weights": backbone.weights_sha256 or f"random:{cfg.backbone.seed}",
            "relu": backbone.relu, "image_size": cfg.data.image_size,
            "normalization": f"{cfg.normalization.scheme}:{cfg.normalization.k}"}


# ---------------------------------------------------------------------------------------------- from snapshots
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
        if not arch or arch.get("kind") not in NETWORKS:
            raise UserError(f"{path}: network '{name}' has no stored architecture (written by an older deepcascade);"
                            f" retrain the stage '{stage}'")
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

    def cascade(self, final_level: int) -> CascadeModel:
        """The trained cascade from level 5 down to ``final_level``."""
        levels = {}
        for level in range(5, final_level - 1, -1):
            name = stage_name("deep" if level == 5 else "cascade", level)
            nets = self.stage(name, level, names=("T_AB", "M_AB", "T_BA", "M_BA"))
            if nets is None:
                raise UserError(f"stage '{name}' has not finished in {self.run.path} (no "
                                f"{self.run.snapshot_path(name)}); train it first (deepcascade train CONFIG "
                                f"--stage {parse_stage_name(name)[0]})")
            levels[level] = nets
        deep = levels.pop(5)
        return CascadeModel(deep, levels).to(self.device).eval()

    def synthesis(self, domain: str, final_level: int) -> SynthesisModel:
        """The trained deepVAE of ``domain`` ('a' or 'b') from level 5 down to ``final_level``."""
        generators = {}
        for level in range(5, final_level - 1, -1):
            name = stage_name("synth", level, domain)
            nets = self.stage(name, level, names=("G",))
            if nets is None:
                raise UserError(f"stage '{name}' has not finished in {self.run.path} (no "
                                f"{self.run.snapshot_path(name)}); train it first (deepcascade train CONFIG "
                                f"--stage synth --domain {domain})")
            generators[level] = nets["G"]
        decoder = generators.pop(5)
        return SynthesisModel(decoder, generators).to(self.device).eval()


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
    cfg = run.stored_config()
    if cfg is None:
        raise UserError(f"{run_dir} is not a deepcascade run directory (no config.yaml)")
    if not run.normalization_file.is_file():
        raise UserError(f"{run_dir} has no normalization statistics ({run.normalization_file}); train it first")
    dev = resolve_device(device)
    backbone = backbone_from_config(cfg).to(dev)
    normalizer = Normalizer.load(run.normalization_file).to(dev)
    return TrainedRun(cfg, run, dev, backbone, normalizer, RunModels(run, run_compat(cfg, backbone), dev))
