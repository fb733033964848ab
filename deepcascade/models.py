"""The network factory: every stage's networks built in one place, from widths and the backbone's shapes.

Training builds networks here from the config and the backbone (the only place that reads network widths from
the config). Each network remembers its constructor arguments (``net.arch``); the inference snapshot stores them
beside the weights, and :mod:`deepcascade.rundir.snapshots` rebuilds the network from them.
"""

from __future__ import annotations

from torch import nn

from .domains import FOLDER_DOMAINS, NETWORK_DIRECTIONS
from .networks.deep import bottleneck_downsamplings
from .networks import (AdaINPredictor, CascadeTranslator, DeepTranslator, FeatureCritic, InversionNet,
                       PatchDiscriminator, SynthGenerator, VAEDecoder, VAEEncoder, predictor_convs)

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
# The stages call these with widths from their config sections; loading a snapshot never does.
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
            for d in NETWORK_DIRECTIONS.values()}
    nets.update({f"D_{d}": build("FeatureCritic", in_channels=channels, in_size=size, width=critic_width)
                 for d in FOLDER_DOMAINS})
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
    for d in NETWORK_DIRECTIONS.values():
        t = nets[f"T_{d}"] = build("CascadeTranslator", in_channels=c_in, out_channels=c_out, **resize)
        nets[f"M_{d}"] = build("AdaINPredictor", in_channels=c_out, n_params=t.n_adain_params,
                               n_convs=predictor_convs(level, stride), width=predictor_width)
    if critic_width is not None:
        nets.update({f"D_{d}": build("FeatureCritic", in_channels=c_out, in_size=s_out,
                                     width=critic_width) for d in FOLDER_DOMAINS})
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
