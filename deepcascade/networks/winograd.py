"""3x3 convolutions by Winograd's minimal filtering F(m x m, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016): the inference fast path's way of doing less arithmetic.

A 3x3, stride-1, padding-1 convolution computes each m x m block of outputs from an (m+2) x (m+2) tile of
inputs. The tile and the kernel are taken to a transformed space (``V = B^T d B``, ``U = G g G^T``), multiplied
there element by element, which over channels is (m+2)^2 matrix products ``M[ab] = V[ab] @ U[ab]``, and brought
back (``Y = A^T M A``). The products do (m+2)^2 / (9 m^2) of the direct convolution's multiply-adds: 0.44 for
F(2x2, 3x3), 0.25 for F(4x4, 3x3). The result equals the direct convolution up to float rounding, which grows
with m (the transforms of F(4x4) have coefficients up to 8).

What it costs: the transformed input and output are (m+2)^2 / m^2 times the input and output (4x for m = 2,
2.25x for m = 4), read and written once each, so it pays where the channel counts are large enough for the
products to dominate and the maps small (``MIN_CHANNELS``, ``MAX_SIDE``); VGG-19's narrow, high-resolution first
layers stay direct. The kernel
transform is done once, when the module is built from a trained ``nn.Conv2d`` (:func:`winograd_convs`);
under ``torch.compile`` the input and output transforms become a few fused loops and the products batched GEMMs.
"""

from __future__ import annotations

from fractions import Fraction as Fr

import torch
from torch import nn
from torch.nn import functional as F

#: convolutions with fewer input or output channels stay direct, and so do those on feature maps larger than
#: MAX_SIDE on a side (measured in benchmarks/bench_translate.py: there the transforms cost more than they save)
MIN_CHANNELS = 256
MAX_SIDE = 28
#: output tile side m (2 or 4)
TILE = 2

# (B^T, G, A^T) of F(m x m, 3x3), Lavin & Gray's matrices; exact fractions, turned to floats when used
_MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [Fr(1, 2), Fr(1, 2), Fr(1, 2)], [Fr(1, 2), Fr(-1, 2), Fr(1, 2)], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[Fr(1, 4), 0, 0], [Fr(-1, 6), Fr(-1, 6), Fr(-1, 6)], [Fr(-1, 6), Fr(1, 6), Fr(-1, 6)],
         [Fr(1, 24), Fr(1, 12), Fr(1, 6)], [Fr(1, 24), Fr(-1, 12), Fr(1, 6)], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def _floats(matrix: list) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in matrix)


def _combine(parts: list[torch.Tensor], row: list) -> torch.Tensor:
    """sum_i row[i] * parts[i], skipping zero coefficients and multiplying only where the coefficient is not +-1."""
    out = None
    for coef, t in zip(row, parts):
        if coef == 0:
            continue
        term = t if abs(coef) == 1 else t * float(abs(coef))
        out = (term if coef > 0 else -term) if out is None else (out + term if coef > 0 else out - term)
    return out


class WinogradConv2d(nn.Module):
    """A trained 3x3 stride-1 padding-1 ``nn.Conv2d`` (groups 1, dilation 1, zero padding), computed by
    F(m x m, 3x3) on inputs of at most ``max_side`` pixels on a side, by ``conv`` itself on larger ones (None:
    always Winograd). Inference only: the transformed kernel is a buffer, not a parameter."""

    def __init__(self, conv: nn.Conv2d, tile: int = TILE, max_side: int | None = None):
        super().__init__()
        if not eligible(conv):
            raise ValueError(f"WinogradConv2d takes a 3x3 stride-1 padding-1 zero-padded conv, got {conv}")
        if tile not in _MATRICES:
            raise ValueError(f"tile must be one of {sorted(_MATRICES)}, got {tile}")
        self.tile, self.in_channels, self.out_channels = tile, conv.in_channels, conv.out_channels
        bt, g, at = _MATRICES[tile]
        self.bt, self.at = _floats(bt), _floats(at)  # tuples of floats: constants to torch.compile
        w = conv.weight.detach().double()  # (K, C, 3, 3); the transform in float64, stored in float32
        g = torch.tensor([[float(v) for v in r] for r in g], dtype=torch.float64, device=w.device)
        u = torch.einsum("ai,kcij,bj->abck", g, w, g)  # (a, a, C, K): the products are (tiles, C) @ (C, K)
        self.register_buffer("u", u.reshape(-1, conv.in_channels, conv.out_channels).float().contiguous())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.max_side, self.direct = max_side, conv if max_side is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.direct is not None and max(h, w) > self.max_side:  # static under torch.compile: one branch traced
            return self.direct(x)
        m, a = self.tile, self.tile + 2
        th, tw = -(-h // m), -(-w // m)
        # channels last: the channel axis is the products' inner dimension, so the tiles stack without a copy
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, m * tw + 1 - w, 1, m * th + 1 - h))  # (N, m th+2, m tw+2, C)
        rows = [xp[:, i: i + m * th: m] for i in range(a)]  # d[i] of every tile, as (N, th, m tw + 2, C)
        v = []
        for r in (_combine(rows, bt) for bt in self.bt):  # B^T d, then (B^T d) B
            cols = [r[:, :, j: j + m * tw: m] for j in range(a)]
            v += [_combine(cols, bt) for bt in self.bt]
        v = torch.stack(v).reshape(a * a, n * th * tw, c)
        prod = torch.bmm(v, self.u.to(v.dtype)).reshape(a, a, n, th, tw, self.out_channels)  # autocast: both cast
        rows = [_combine(list(prod), at) for at in self.at]  # A^T M, then (A^T M) A
        y = torch.stack([torch.stack([_combine(list(r), at) for at in self.at], 3) for r in rows], 2)
        y = y.reshape(n, m * th, m * tw, self.out_channels)[:, :h, :w].permute(0, 3, 1, 2)
        return y if self.bias is None else y + self.bias.to(y.dtype)[:, None, None]


def eligible(conv: nn.Module, min_channels: int = 0) -> bool:
    """Whether ``conv`` is a plain 3x3 stride-1 padding-1 conv with at least ``min_channels`` in and out."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros"
            and min(conv.in_channels, conv.out_channels) >= min_channels)


def winograd_convs(module: nn.Module, min_channels: int = MIN_CHANNELS, tile: int = TILE,
                   max_side: int | None = MAX_SIDE) -> int:
    """Replace, in place, every eligible ``nn.Conv2d`` below ``module`` with at least ``min_channels`` in and out
    by a :class:`WinogradConv2d` of the same weights (direct on maps larger than ``max_side``); returns how many
    were replaced."""
    count = 0
    for name, child in list(module.named_children()):
        if eligible(child, min_channels):
            setattr(module, name, WinogradConv2d(child, tile, max_side))
            count += 1
        else:
            count += winograd_convs(child, min_channels, tile, max_side)
    return count
