"""Per-level feature normalization (docs/method.md section 1).

The paper says every level is normalized but not how; our default: per-channel mean mu and standard deviation
sigma over the training images of both domains together (both mirror images of each), then

    n = clamp((f - mu) / (k * sigma), -1, 1)        (scheme 'clamp', k = 3)
    n = tanh((f - mu) / (k * sigma))                (scheme 'tanh')

All networks read and write normalized features; :meth:`Normalizer.denormalize` is the exact inverse wherever
nothing was clamped. :class:`RunningStats` accumulates the statistics in one streaming pass (the cache build)
and can be merged across processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..fileio import atomic_path
from ..errors import UserError

FORMAT_VERSION = 1
SCHEMES = ("clamp", "tanh")
#: sigma below this is treated as this (dead channels, e.g. always-zero post-ReLU maps)
SIGMA_EPS = 1e-5


class RunningStats:
    """Streaming per-channel mean and (population) variance over the N, H, W axes, in float64.

    Each update is reduced exactly in float64 and merged with Chan et al.'s parallel algorithm
    ("Updating formulae and a pairwise algorithm for computing sample variances", 1979), which stays
    accurate for any number of updates and any magnitude of the mean. ``merge`` combines two accumulators
    (e.g. one per DDP rank) with the same formula.
    """

    #: images per float64 chunk inside one update; bounds the float64 temporaries (level 1 is large)
    chunk_elements = 1 << 24

    def __init__(self, channels: int):
        self.channels = int(channels)
        self.count = 0
        self._mean = torch.zeros(self.channels, dtype=torch.float64)
        self._m2 = torch.zeros(self.channels, dtype=torch.float64)

    def _merge_moments(self, n_b: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        if n_b == 0:
            return
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + delta * delta * (n_a * n_b / n)
        self.count = n

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add a batch of features ``x`` of shape (N, C, H, W) (any device, any float dtype)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"RunningStats({self.channels}) expects (N, {self.channels}, H, W), got {tuple(x.shape)}")
        per_image = x[0].numel() if x.shape[0] else 1
        step = max(1, self.chunk_elements // max(per_image, 1))
        for i in range(0, x.shape[0], step):
            c = x[i:i + step].to(torch.float64)
            n_b = c.shape[0] * c.shape[2] * c.shape[3]
            if n_b == 0:
                continue
            mean_b = c.mean(dim=(0, 2, 3))
            m2_b = ((c - mean_b.view(1, -1, 1, 1)) ** 2).sum(dim=(0, 2, 3))
            self._merge_moments(n_b, mean_b.cpu(), m2_b.cpu())

    def merge(self, other: "RunningStats") -> "RunningStats":
        """Fold ``other`` into this accumulator (in place) and return self."""
        if other.channels != self.channels:
            raise ValueError(f"cannot merge RunningStats of {other.channels} channels into {self.channels}")
        self._merge_moments(other.count, other._mean.clone(), other._m2.clone())
        return self

    @property
    def mean(self) -> torch.Tensor:
        """Per-channel mean, float64 (C,)."""
        return self._mean.clone()

    @property
    def var(self) -> torch.Tensor:
        """Per-channel population variance (divided by count), float64 (C,)."""
        if self.count == 0:
            return torch.zeros_like(self._m2)
        return self._m2 / self.count

    @property
    def std(self) -> torch.Tensor:
        """Per-channel population standard deviation, float64 (C,)."""
        return self.var.sqrt()

    def state_dict(self) -> dict:
        """Plain tensors (for all-gather between ranks or saving)."""
        return {"count": torch.tensor(self.count, dtype=torch.float64), "mean": self._mean.clone(),
                "m2": self._m2.clone()}

    @classmethod
    def from_state_dict(cls, d: dict) -> "RunningStats":
        s = cls(d["mean"].numel())
        s.count, s._mean, s._m2 = int(d["count"].item()), d["mean"].double().clone(), d["m2"].double().clone()
        return s

    def __repr__(self) -> str:
        return f"RunningStats(channels={self.channels}, count={self.count})"


class Normalizer(nn.Module):
    """Maps raw level-l features to [-1, 1] and back (docs/method.md section 1).

    An ``nn.Module`` whose buffers ``mean_<l>``/``std_<l>`` (float32, shape (C,)) move with ``.to(device)``.
    Arithmetic is done in at least float32 (bf16/fp16 inputs from autocast are promoted), so it is safe
    inside an autocast region; the result is float32 (float64 for float64 input).
    """

    def __init__(self, mean: dict[int, torch.Tensor], std: dict[int, torch.Tensor], scheme: str = "clamp",
                 k: float = 3.0, meta: dict | None = None):
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"normalization scheme must be one of {SCHEMES}, got {scheme!r}")
        if float(k) <= 0:
            raise ValueError(f"normalization k must be > 0, got {k}")
        if set(mean) != set(std):
            raise ValueError(f"mean and std levels differ: {sorted(mean)} vs {sorted(std)}")
        self.scheme, self.k = scheme, float(k)
        self.levels = sorted(int(l) for l in mean)
        #: free-form provenance (backbone identity, data hash, ...) saved with the statistics
        self.meta = dict(meta or {})
        for l in self.levels:
            m = torch.as_tensor(mean[l]).detach().to(torch.float32).flatten()
            s = torch.as_tensor(std[l]).detach().to(torch.float32).flatten()
            if m.shape != s.shape:
                raise ValueError(f"level {l}: mean {tuple(m.shape)} and std {tuple(s.shape)} differ in shape")
            self.register_buffer(f"mean_{l}", m.clone())
            self.register_buffer(f"std_{l}", s.clamp_min(SIGMA_EPS))  # guard sigma = 0

    @classmethod
    def from_stats(cls, stats: dict[int, RunningStats], scheme: str = "clamp", k: float = 3.0,
                   meta: dict | None = None) -> "Normalizer":
        for l, s in stats.items():
            if s.count == 0:
                raise ValueError(f"level {l}: no statistics were accumulated")
        return cls({l: s.mean for l, s in stats.items()}, {l: s.std for l, s in stats.items()}, scheme, k, meta)

    def with_scheme(self, scheme: str, k: float) -> "Normalizer":
        """The same statistics under another scheme / k."""
        return type(self)({l: getattr(self, f"mean_{l}") for l in self.levels},
                          {l: getattr(self, f"std_{l}") for l in self.levels}, scheme, k, meta=self.meta)

    # ------------------------------------------------------------------ maths
    def _params(self, level: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
        if level not in self.levels:
            raise KeyError(f"no normalization statistics for level {level} (have {self.levels})")
        dtype = torch.promote_types(ref.dtype, torch.float32)
        shape = (1, -1) + (1,) * (ref.dim() - 2) if ref.dim() >= 2 else (-1,)
        mu = getattr(self, f"mean_{level}").to(ref.device, dtype).view(shape)
        sigma = getattr(self, f"std_{level}").to(ref.device, dtype).view(shape)
        return mu, sigma, dtype

    def standardize(self, f: torch.Tensor, level: int) -> torch.Tensor:
        """z = (f - mu) / (k * sigma), before clamping/tanh."""
        mu, sigma, dtype = self._params(level, f)
        return (f.to(dtype) - mu) / (self.k * sigma)

    def normalize(self, f: torch.Tensor, level: int) -> torch.Tensor:
        """Raw level-``level`` features (N, C, H, W) -> normalized features in [-1, 1]."""
        z = self.standardize(f, level)
        return z.clamp(-1.0, 1.0) if self.scheme == "clamp" else torch.tanh(z)

    def denormalize(self, n: torch.Tensor, level: int) -> torch.Tensor:
        """Inverse of :meth:`normalize` (exact where nothing was clamped).

        For 'tanh', ``n`` is clamped just inside (-1, 1) first so that atanh stays finite: a network output of
        exactly +-1 maps to about mu +- 7.6 k sigma (float32) instead of infinity.
        """
        mu, sigma, dtype = self._params(level, n)
        n = n.to(dtype)
        if self.scheme == "tanh":
            lim = 1.0 - 4 * torch.finfo(dtype).eps
            n = torch.atanh(n.clamp(-lim, lim))
        return n * (self.k * sigma) + mu

    def clamped_fraction(self, f: torch.Tensor, level: int) -> float:
        """Fraction of elements of raw features ``f`` with |z| > 1 (clamped, or squashed hard by tanh)."""
        z = self.standardize(f, level)
        return float((z.abs() > 1.0).float().mean().item()) if z.numel() else 0.0

    def normalize_all(self, feats: dict, levels=None) -> dict:
        """Normalize every integer-keyed level of ``feats`` (other keys, e.g. 'image', pass through)."""
        return {key: (self.normalize(v, key) if isinstance(key, int) and (levels is None or key in levels) else v)
                for key, v in feats.items()}

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """Plain types: {'scheme', 'k', 'mean': {level: [..]}, 'std': {level: [..]}, 'meta': {...}}."""
        return {"scheme": self.scheme, "k": self.k, "meta": dict(self.meta),
                "mean": {l: getattr(self, f"mean_{l}").cpu().tolist() for l in self.levels},
                "std": {l: getattr(self, f"std_{l}").cpu().tolist() for l in self.levels}}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        mean = {int(l): torch.tensor(v) for l, v in d["mean"].items()}
        std = {int(l): torch.tensor(v) for l, v in d["std"].items()}
        return cls(mean, std, d.get("scheme", "clamp"), d.get("k", 3.0), d.get("meta"))

    def save(self, path: str | Path) -> None:
        """Write a .safetensors file (tensors mean_<l>, std_<l>; metadata scheme, k, meta JSON), atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for l in self.levels:
            tensors[f"mean_{l}"] = getattr(self, f"mean_{l}").detach().cpu().contiguous()
            tensors[f"std_{l}"] = getattr(self, f"std_{l}").detach().cpu().contiguous()
        metadata = {"format": "deepcascade.normalization", "format_version": str(FORMAT_VERSION),
                    "scheme": self.scheme, "k": repr(self.k), "levels": json.dumps(self.levels),
                    "meta": json.dumps(self.meta, sort_keys=True)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> "Normalizer":
        """Read a file written by :meth:`save`; a damaged or foreign file is a :class:`UserError`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise UserError(f"normalization statistics not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                md = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            if md.get("format") != "deepcascade.normalization":
                raise ValueError("not a deepcascade normalization file")
            levels = json.loads(md["levels"])
            mean = {int(l): tensors[f"mean_{l}"] for l in levels}
            std = {int(l): tensors[f"std_{l}"] for l in levels}
            return cls(mean, std, md["scheme"], float(md["k"]), json.loads(md.get("meta", "{}")))
        except Exception as e:  # safetensors raises its own error type for a damaged file
            raise UserError(f"cannot read normalization statistics {path}: {type(e).__name__}: {e}") from None

    def extra_repr(self) -> str:
        return f"scheme={self.scheme}, k={self.k}, levels={self.levels}"
