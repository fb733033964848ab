"""The cascade of trained translators, deepest level first (METHOD.md section 5).

``ẽ_5 = T5(e_5)``, then ``ẽ_l = T^l(ẽ_{l+1}; M^l(e_l))`` for l = 4, 3, ... down to the final level. Used
frozen while training a shallower level, and by :class:`deepcascade.Translator`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..networks.cascade import AdaINPredictor, CascadeTranslator, predictor_convs

DIRECTIONS = {"a2b": "AB", "b2a": "BA"}


def build_level_nets(backbone, level: int, image_size: int, critic_width: int | None = None,
                     predictor_width: int = 512) -> dict:
    """T^l and M^l for both directions (and the critics D_A, D_B when ``critic_width`` is given).

    ``predictor_width``: channels of M^l's convs (512 in Table 2)."""
    from ..networks.deep import FeatureCritic

    c_in, c_out = backbone.channels[level + 1], backbone.channels[level]
    nets = {}
    for d in ("AB", "BA"):
        t = CascadeTranslator(c_in, c_out)
        nets[f"T_{d}"] = t
        nets[f"M_{d}"] = AdaINPredictor(c_out, t.n_adain_params, predictor_convs(level, backbone.strides[level]),
                                        width=predictor_width)
    if critic_width is not None:
        size = image_size // backbone.strides[level]
        nets["D_A"] = FeatureCritic(c_out, size, critic_width)
        nets["D_B"] = FeatureCritic(c_out, size, critic_width)
    return nets


class CascadeModel(nn.Module):
    """Level-5 translators plus the (T^l, M^l) pairs of the levels trained so far, both directions."""

    def __init__(self, deep: dict, levels: dict[int, dict]):
        super().__init__()
        self.deep = nn.ModuleDict({d: deep[f"T_{d}"] for d in ("AB", "BA")})
        self.levels = nn.ModuleDict({
            str(l): nn.ModuleDict({k: v for k, v in nets.items() if k[0] in "TM"}) for l, nets in levels.items()})

    @property
    def final_level(self) -> int:
        """Shallowest level this cascade can produce."""
        return min([5] + [int(l) for l in self.levels])

    @torch.no_grad()
    def translate(self, features: dict[int, torch.Tensor], direction: str, final_level: int | None = None
                  ) -> dict[int, torch.Tensor]:
        """Translated normalized features of every level from 5 down to ``final_level``.

        ``features`` holds the source's normalized features of levels final_level..5.
        """
        d = DIRECTIONS.get(direction, direction)
        if d not in ("AB", "BA"):
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        final = self.final_level if final_level is None else final_level
        if final < self.final_level:
            raise ValueError(f"final level {final} is not trained (this run reaches level {self.final_level})")
        out = {5: self.deep[d](features[5])}
        for level in range(4, final - 1, -1):
            nets = self.levels[str(level)]
            out[level] = nets[f"T_{d}"](out[level + 1], nets[f"M_{d}"](features[level]))
        return out
