"""Where training stages get their batches: normalized backbone features of random crops of one domain.

:meth:`DomainFeatures.sample` draws files, mirror flags and crops from the generator it is given and nothing
else, so a resumed run that restores the generator's state draws the same batches. Crops: every image is first
brought to its ``load_size`` square (shorter side -> load_size, centre crop), then an ``image_size`` crop is taken
and mirrored at random: one of the image's cached crops (``features/cache.py``) or, without a cache, any offset.
Every level of a batch is the backbone's output on the crop itself (from the cache or computed), so training
sees exactly the features that translation will see at test time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..backbones.specs import LEVELS
from ..data.images import load_image
from ..data.transforms import center_square
from ..errors import UserError
from .cache import FeatureCache
from .extract import FeatureSpec
from .normalization import Normalizer
from .squares import load_square, mirror_window


class DomainFeatures:
    """Batches of one domain: ``{level: features (N, C, h, w), 'image': (N, 3, S, S) in [0, 1]}`` on ``device``.

    Features are normalized with ``normalizer`` (raw when it is None, i.e. before statistics exist). Files are
    sharded over ranks: this rank samples the indices i with ``i % world_size == rank``. With a cache, crops are
    drawn among each image's cached crops, the levels it holds are read from it and the others are computed
    from the crop; without one, any crop offset is drawn and every level is computed. Either way every feature
    is the backbone's output on the crop itself.
    """

    def __init__(self, files: Sequence[Path], spec: FeatureSpec, normalizer: Normalizer | None,
                 levels: Iterable[int], cache: FeatureCache | None = None, rank: int = 0, world_size: int = 1, *,
                 workers: int = 2, name: str = ""):
        self.files = [Path(f) for f in files]
        self.spec = spec
        self.normalizer = normalizer
        self.levels = sorted(set(int(l) for l in levels))
        self.load_size, self.image_size, self.device = spec.load_size, spec.image_size, spec.device
        self.cache = cache
        self.rank, self.world_size = int(rank), int(world_size)
        self.workers = max(1, int(workers))
        self.name = name
        if not self.files:
            raise UserError(f"domain {name or '?'}: no images")
        for l in self.levels:
            if l not in LEVELS:
                raise ValueError(f"level must be in 1..5, got {l}")
        self.shard = np.arange(self.rank, len(self.files), self.world_size)
        if len(self.shard) == 0:
            raise UserError(f"domain {name or '?'} has {len(self.files)} image(s), fewer than the {self.world_size} "
                            f"ranks; every rank needs at least one")
        if cache is not None:
            if (len(cache), cache.load_size, cache.image_size) != (len(self.files), self.load_size, self.image_size):
                raise ValueError(f"cache {cache} does not hold these {len(self.files)} files at load_size "
                                 f"{self.load_size}, image_size {self.image_size}")
            self.cached_levels = [l for l in self.levels if l in cache.levels]
        else:
            self.cached_levels = []
        self.computed_levels = [l for l in self.levels if l not in self.cached_levels]
        self._fixed: dict[int, torch.Tensor] = {}
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return (f"DomainFeatures({self.name!r}, n={len(self)}, levels={self.levels}, cached={self.cached_levels}, "
                f"rank={self.rank}/{self.world_size})")

    # ----------------------------------------------------------------------------------- sampling
    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Random (file indices, mirror flags, (oy, ox) pixel offsets), all from ``generator`` (a CPU one).

        With a cache the offsets are those of one of the image's cached crops, else any offset in the square.
        """
        idx = self.shard[torch.randint(len(self.shard), (batch_size,), generator=generator).numpy()]
        flips = torch.randint(2, (batch_size,), generator=generator).numpy().astype(bool)
        if self.cache is not None:
            crop = torch.randint(self.cache.crops, (batch_size,), generator=generator).numpy()
            offsets = self.cache.offsets[idx, crop].astype(np.int64)
        else:
            offsets = torch.randint(self.load_size - self.image_size + 1, (batch_size, 2),
                                    generator=generator).numpy()
        return idx, flips, offsets

    def sample(self, batch_size: int, generator: torch.Generator, normalized: bool = True,
               levels: Iterable[int] | None = None, with_image: bool = True) -> dict:
        """A random batch: {level: features, 'image': crops in [0, 1]} on the device.

        ``levels`` restricts the batch to some of this source's levels (default: all); ``with_image=False``
        leaves the image crops out when no level has to be computed from them (e.g. level 5 from the cache).
        """
        return self.batch(*self.draw(batch_size, generator), normalized=normalized, levels=levels,
                          with_image=with_image)

    def _wanted(self, levels: Iterable[int] | None) -> list[int]:
        if levels is None:
            return self.levels
        want = sorted(set(int(l) for l in levels))
        missing = [l for l in want if l not in self.levels]
        if missing:
            raise ValueError(f"levels {missing} were not prepared for domain {self.name!r} (has {self.levels})")
        return want

    def batch(self, indices: Sequence[int], flips: Sequence[bool], offsets: Sequence[tuple[int, int]],
              normalized: bool = True, levels: Iterable[int] | None = None, with_image: bool = True) -> dict:
        """The batch of given files, mirror flags and crop offsets (see :meth:`draw`)."""
        want = self._wanted(levels)
        cached = [l for l in self.cached_levels if l in want]
        computed = [l for l in self.computed_levels if l in want]
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        flp = np.asarray(flips).astype(bool).reshape(-1)
        off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        cuda = self.device.type == "cuda"
        if self.cache is not None:
            raw = self.cache.read(idx, flp, off, cached, dtype=torch.float16 if cuda else torch.float32,
                                  image=with_image or bool(computed))
            out = {k: v.to(self.device, non_blocking=True).float() for k, v in raw.items()}
        else:
            squares = self._decode([self.files[i] for i in idx])
            S = self.image_size
            crops = np.stack([mirror_window(sq, int(o[0]), int(o[1]), S, bool(f))
                              for sq, f, o in zip(squares, flp, off)])
            out = {"image": torch.from_numpy(np.divide(crops, np.float32(255.0), dtype=np.float32)).to(self.device)}
        if computed:
            out.update(self.spec.extract(out["image"], computed))
        if not with_image:
            out.pop("image", None)
        if normalized and self.normalizer is not None:
            out = self.normalizer.normalize_all(out)
        return out

    def _decode(self, files: list[Path]) -> list[np.ndarray]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers)
        return list(self._pool.map(lambda f: load_square(f, self.load_size), files))

    def fixed(self, n: int, normalized: bool = True, levels: Iterable[int] | None = None) -> dict:
        """The first ``n`` files as centre squares (resize shorter side to image_size, centre crop), no
        randomness: the same structure as :meth:`sample`, for fixed sample grids."""
        n = max(1, min(int(n), len(self.files)))
        if n not in self._fixed:
            imgs = []
            for f in self.files[:n]:
                try:
                    imgs.append(center_square(load_image(f), self.image_size))
                except Exception as e:
                    raise UserError(f"cannot read image {f}: {type(e).__name__}: {e}") from None
            self._fixed[n] = torch.stack(imgs)
        images = self._fixed[n].to(self.device)
        out = {"image": images, **self.spec.extract(images, self._wanted(levels))}
        if normalized and self.normalizer is not None:
            out = self.normalizer.normalize_all(out)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
