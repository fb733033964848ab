"""Perceptual distances as embeddings: LPIPS (the ``lpips`` package, AlexNet, v0.1, default settings, as in the
paper's nearest-neighbour check, supplementary section 5) and, where AlexNet's weights cannot be had, the same
formula on EfficientNet-Lite0 features for the collapse measure.

LPIPS (Zhang et al. 2018) is d(x, y) = sum_l mean_hw sum_c w_lc (n_l(x) - n_l(y))_c^2, where n_l are the
channel-unit-normalized AlexNet activations of layer l and w_lc >= 0 its learned linear weights. Scaling each
normalized activation by sqrt(w_lc / (H_l W_l)) turns this into a squared Euclidean distance between flat
embeddings, d(x, y) = ||e(x) - e(y)||^2, exactly. So embeddings are computed once per image and cached, nearest
neighbours are an exhaustive search over them, and the mean pairwise distance of a set is a streaming sum.
Channels whose weight is 0 (several in the released weights) are dropped from the embedding.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..backbones.weights import load_state_dict_file, resolve_pretrained, sha256_of
from ..errors import UserError
from .cache import cached_rows
from .images import ImageSet, to_float

log = logging.getLogger("deepcascade")

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"  # torchvision IMAGENET1K_V1
ALEXNET_ENV = "DEEPCASCADE_ALEXNET_WEIGHTS"
# torchvision AlexNet ``features`` indices in each of lpips' five slices (relu1 .. relu5)
_SLICES = {1: (0, 1), 2: (2, 3, 4), 3: (5, 6, 7), 4: (8, 9), 5: (10, 11)}
_CONVS = (0, 3, 6, 8, 10)


def resolve_alexnet_weights(path: str | None = None) -> Path:
    """``--alexnet-weights PATH`` -> ``$DEEPCASCADE_ALEXNET_WEIGHTS`` -> torch hub cache -> download; else
    :class:`~deepcascade.backbones.weights.MissingWeights`. (LPIPS's own linear weights ship in its package.)"""
    if path:
        if not Path(path).is_file():
            raise UserError(f"--alexnet-weights {path} does not exist")
        return Path(path)
    filename = ALEXNET_URL.rsplit("/", 1)[-1]
    return resolve_pretrained(ALEXNET_URL, ALEXNET_ENV, "AlexNet (LPIPS)",
                              option=f"pass --alexnet-weights /path/to/{filename}")


def load_alexnet_trunk(net: nn.Module, path: str | Path) -> None:
    """Load torchvision AlexNet weights (``features.N.weight`` or ``N.weight`` keys) into lpips' trunk."""
    sd = load_state_dict_file(path)
    own = net.state_dict()
    new = {}
    for slice_no, idxs in _SLICES.items():
        for i in idxs:
            if i not in _CONVS:
                continue
            for p in ("weight", "bias"):
                src = next((k for k in (f"features.{i}.{p}", f"{i}.{p}") if k in sd), None)
                dst = f"slice{slice_no}.{i}.{p}"
                if src is None or tuple(sd[src].shape) != tuple(own[dst].shape):
                    raise UserError(f"{path} is not a torchvision AlexNet state dict (features.{i}.{p} missing "
                                    f"or of another shape)")
                new[dst] = sd[src].float()
    net.load_state_dict(new, strict=True)


def build_lpips(alexnet_weights: str | Path | None):
    """``lpips.LPIPS(net='alex')`` with its packaged v0.1 linear weights and the given AlexNet trunk weights
    (None: lpips' random trunk, for tests only)."""
    import warnings

    import lpips

    with warnings.catch_warnings():  # lpips calls torchvision's deprecated alexnet(pretrained=False)
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if alexnet_weights is not None:
        load_alexnet_trunk(model.net, alexnet_weights)
    return model.eval()


class Embedding(nn.Module):
    """Images in [0, 1] -> flat embeddings whose squared Euclidean distance is the perceptual distance."""

    name = ""

    def protocol(self) -> dict:
        return {"distance": self.name}

    def dim(self, size: int) -> int:
        with torch.no_grad():
            return int(self(torch.zeros(1, 3, size, size, device=self.device_)).shape[1])

    @property
    def device_(self):
        return next(self.buffers()).device

    @torch.no_grad()
    def embed(self, images: ImageSet, batch_size: int, cache_dir: Path | None) -> np.ndarray:
        """(N, D) float32 embeddings of ``images``, cached (a memory map when cached)."""
        def fill(arr):
            for start, batch in images.batches(batch_size, f"{self.name} {images.what}"):
                arr[start: start + len(batch)] = self(to_float(batch, self.device_)).cpu().numpy()

        key = {"images": images.fingerprint(), **self.protocol()}
        return cached_rows(cache_dir, "embed", key, (len(images), self.dim(images.size)), np.float32, fill,
                           images.slot(self.name))


class LpipsEmbedding(Embedding):
    """LPIPS-AlexNet v0.1 (default settings) as an embedding: ``||e(x) - e(y)||^2 == lpips(x, y)``."""

    name = "lpips-alex-v0.1"

    def __init__(self, alexnet_weights: str | Path | None):
        super().__init__()
        import lpips

        model = build_lpips(alexnet_weights)
        self.scaling, self.net = model.scaling_layer, model.net
        self.scales = []
        for l, lin in enumerate(model.lins):
            w = lin.model[-1].weight.detach().reshape(-1)
            if (w < 0).any():
                raise UserError("LPIPS linear weights with negative entries cannot be written as an embedding")
            keep = torch.nonzero(w > 0).reshape(-1)
            self.register_buffer(f"keep{l}", keep, persistent=False)
            self.register_buffer(f"scale{l}", w[keep].sqrt().view(1, -1, 1, 1), persistent=False)
        self._normalize = lpips.normalize_tensor
        lin_file = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
        self.info = {"distance": self.name, "package": f"lpips {_version('lpips')}", "net": "alex",
                     "version": "0.1", "linear_weights_sha256": sha256_of(lin_file),
                     "alexnet_weights_file": str(alexnet_weights) if alexnet_weights else None,
                     "alexnet_weights_sha256": sha256_of(alexnet_weights) if alexnet_weights else None}

    def protocol(self) -> dict:
        return dict(self.info)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = self.net(self.scaling(2 * x - 1))  # lpips' normalize=True: [0, 1] -> [-1, 1]
        parts = []
        for l, f in enumerate(outs):
            f = self._normalize(f)
            f = f.index_select(1, getattr(self, f"keep{l}")) * getattr(self, f"scale{l}")
            parts.append(f.flatten(1) / math.sqrt(f.shape[2] * f.shape[3]))
        return torch.cat(parts, 1)


class BackboneEmbedding(Embedding):
    """The LPIPS formula with uniform weights ("baseline" in Zhang et al.) on a deepcascade backbone's five
    levels: the perceptual distance of the collapse measure when AlexNet's weights are not available."""

    def __init__(self, backbone: nn.Module, backbone_name: str):
        super().__init__()
        self.backbone = backbone
        self.name = f"{backbone_name}-unit-normalized-uniform"
        self.register_buffer("_anchor", torch.zeros(1), persistent=False)
        self.info = {"distance": self.name, "backbone": backbone_name,
                     "weights_sha256": getattr(backbone, "weights_sha256", None),
                     "formula": "sum over levels 1-5 of the spatial mean of ||n(x) - n(y)||^2, n = channel-unit "
                                "normalized activations (LPIPS without its learned weights)"}

    def protocol(self) -> dict:
        return dict(self.info)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        parts = []
        for l in sorted(feats):
            f = feats[l].float()
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            parts.append(f.flatten(1) / math.sqrt(f.shape[2] * f.shape[3]))
        return torch.cat(parts, 1)


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "unknown"
