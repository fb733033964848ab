"""Where training stages get their batches: normalized backbone features of random crops of one domain.

:func:`prepare_domains` scans both domains, builds or opens their feature caches and the normalization
statistics (one pass over the images of both domains, on rank 0), and returns a :class:`DomainFeatures` per
domain. :meth:`DomainFeatures.sample` draws files, mirror flags and crop offsets from the generator it is given
and nothing else, so a resumed run that restores the generator's state draws the same batches.

Crops: every image is first brought to its ``load_size`` square (shorter side -> load_size, centre crop), then an
``image_size`` window is taken at a random offset and mirrored at random. With a cache, offsets are multiples
of 16 (the stride of level 5) so that every cached level has an aligned window; without one any offset is used.
Cached levels are crops of the features of the whole square; other levels are computed from the image window
(see ``features/cache.py`` for how much the two differ near the window border).
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..backbones.specs import LEVELS
from ..data.images import load_image, scan_images
from ..data.transforms import test_transform
from ..errors import UserError
from .cache import FeatureCache, mirror_window, backbone_identity, extract, file_list_hash, iter_squares, load_square
from .normalization import Normalizer, RunningStats

log = logging.getLogger("deepcascade")

NORMALIZATION_FILE = "normalization.safetensors"


class DomainFeatures:
    """Batches of one domain: ``{level: features (N, C, h, w), 'image': (N, 3, S, S) in [0, 1]}`` on ``device``.

    Features are normalized with ``normalizer`` (raw when it is None, i.e. before statistics exist). Files are
    sharded over ranks: this rank samples the indices i with ``i % world_size == rank``. With a cache, levels it
    holds are read from it (crops of the features of the whole square) unless ``cached_features`` is False, and
    the others are computed from the image window.
    """

    def __init__(self, files: Sequence[Path], backbone, normalizer: Normalizer | None, levels: Iterable[int],
                 load_size: int, image_size: int, cache: FeatureCache | None = None,
                 device: str | torch.device = "cpu", rank: int = 0, world_size: int = 1, *,
                 precision: str = "fp32", channels_last: bool = False, workers: int = 2, name: str = "",
                 cached_features: bool = True):
        self.files = [Path(f) for f in files]
        self.backbone = backbone
        self.normalizer = normalizer
        self.levels = sorted(set(int(l) for l in levels))
        self.load_size, self.image_size = int(load_size), int(image_size)
        self.cache = cache
        self.device = torch.device(device)
        self.rank, self.world_size = int(rank), int(world_size)
        self.precision, self.channels_last, self.workers = precision, channels_last, max(1, int(workers))
        self.name = name
        if not self.files:
            raise UserError(f"domain {name or '?'}: no images")
        if self.image_size > self.load_size:
            raise UserError(f"image_size ({self.image_size}) must be <= load_size ({self.load_size})")
        for l in self.levels:
            if l not in LEVELS:
                raise ValueError(f"level must be in 1..5, got {l}")
        self.shard = np.arange(self.rank, len(self.files), self.world_size)
        if len(self.shard) == 0:
            raise UserError(f"domain {name or '?'} has {len(self.files)} image(s), fewer than the {self.world_size} "
                            f"ranks; every rank needs at least one")
        if cache is not None:
            if len(cache) != len(self.files) or cache.load_size != self.load_size:
                raise ValueError(f"cache {cache} does not hold these {len(self.files)} files at load_size "
                                 f"{self.load_size}")
            # cached_features=False: the cache only supplies image windows (no decoding) and every level is
            # computed from the window, i.e. exactly the features of the crop (see features/cache.py)
            self.cached_levels = [l for l in self.levels if l in cache.levels] if cached_features else []
            #: crop offsets are multiples of this (16 for VGG-19: every level's window stays aligned)
            self.offset_step = max(backbone.strides.values())
        else:
            self.cached_levels = []
            self.offset_step = 1
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
        """Random (file indices, mirror flags, (oy, ox) pixel offsets), all from ``generator`` (a CPU one)."""
        pos = torch.randint(len(self.shard), (batch_size,), generator=generator).numpy()
        flips = torch.randint(2, (batch_size,), generator=generator).numpy().astype(bool)
        n_off = (self.load_size - self.image_size) // self.offset_step + 1
        offsets = torch.randint(n_off, (batch_size, 2), generator=generator).numpy() * self.offset_step
        return self.shard[pos], flips, offsets

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
            raw = self.cache.read(idx, flp, off, cached, image_size=self.image_size,
                                  dtype=torch.float16 if cuda else torch.float32,
                                  image=with_image or bool(computed))
            out = {k: v.to(self.device, non_blocking=True).float() for k, v in raw.items()}
        else:
            squares = self._decode([self.files[i] for i in idx])
            S = self.image_size
            crops = np.stack([mirror_window(sq, int(o[0]), int(o[1]), S, bool(f))
                              for sq, f, o in zip(squares, flp, off)])
            out = {"image": torch.from_numpy(np.divide(crops, np.float32(255.0), dtype=np.float32)).to(self.device)}
        if computed:
            out.update(extract(self.backbone, out["image"], computed, self.precision, self.channels_last))
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
        """The first ``n`` files with the test transform (resize shorter side to image_size, centre crop), no
        randomness: the same structure as :meth:`sample`, for fixed sample grids."""
        n = max(1, min(int(n), len(self.files)))
        if n not in self._fixed:
            imgs = []
            for f in self.files[:n]:
                try:
                    imgs.append(test_transform(load_image(f), self.image_size))
                except Exception as e:
                    raise UserError(f"cannot read image {f}: {type(e).__name__}: {e}") from None
            self._fixed[n] = torch.stack(imgs)
        images = self._fixed[n].to(self.device)
        out = {"image": images, **extract(self.backbone, images, self._wanted(levels), self.precision,
                                          self.channels_last)}
        if normalized and self.normalizer is not None:
            out = self.normalizer.normalize_all(out)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


# ---------------------------------------------------------------------------------------------- set-up
def pipeline_levels(cfg, levels: Iterable[int] | None = None) -> list[int]:
    """Levels the run needs: ``levels`` if given, else invert.levels + the cascade's levels + 5; plus cache.levels."""
    if levels is None:
        levels = set(cfg.invert.levels) | set(range(cfg.cascade.final_level, 6))
    return sorted(set(int(l) for l in levels) | set(int(l) for l in cfg.cache.levels))


def _scan_domain(folder: str, field: str) -> list[Path]:
    if not folder:
        raise UserError(f"config field '{field}' is empty: set it to a folder of images (or set data.root to a "
                        f"folder with trainA/ and trainB/)")
    if not Path(folder).exists():
        raise UserError(f"config field '{field}': folder not found: {folder}")
    return scan_images(folder, f"config field '{field}'").good


def _normalizer_mismatch(path: Path, want: dict) -> str | None:
    """None when the statistics at ``path`` fit ``want`` (backbone, data, levels), else why not."""
    if not path.is_file():
        return f"no {path.name} yet"
    try:
        have = Normalizer.load(path)
    except UserError as e:
        return str(e)
    diffs = [k for k, v in want.items() if k != "levels" and have.meta.get(k) != v]
    if diffs:
        return f"{path.name} was computed with a different {', '.join(diffs)}"
    missing = sorted(set(want["levels"]) - set(have.levels))
    if missing:
        return f"{path.name} lacks levels {missing}"
    return None


def _stats_from_files(backbone, files: list[Path], stats: dict[int, RunningStats], load_size: int, device,
                      batch_size: int, precision: str, workers: int) -> None:
    """Accumulate statistics over both mirrors of every file's square (used when the cache is disabled)."""
    from tqdm import tqdm

    levels = sorted(stats)
    with tqdm(total=len(files), desc="statistics", unit="img", leave=False) as bar:
        for _, sq in iter_squares(files, load_size, batch_size, workers):
            x = sq.to(device).float().div_(255.0)
            feats = extract(backbone, torch.cat([x, x.flip(-1)]), levels, precision)
            for l in levels:
                stats[l].update(feats[l])
            bar.update(sq.shape[0])


def log_clamped_fraction(normalizer: Normalizer, domains: Sequence[DomainFeatures], batch_size: int = 8,
                         seed: int = 0) -> dict[int, float]:
    """Log (and return) the fraction of |z| > 1 per level on a fixed-seed batch of training crops per domain."""
    g = torch.Generator().manual_seed(seed)
    frac: dict[int, list[float]] = {}
    for d in domains:
        raw = d.sample(min(batch_size, len(d)), g, normalized=False)
        for l in d.levels:
            frac.setdefault(l, []).append(normalizer.clamped_fraction(raw[l], l))
    result = {l: float(np.mean(v)) for l, v in sorted(frac.items(), reverse=True)}
    what = "clamped" if normalizer.scheme == "clamp" else "beyond +-1 before tanh"
    log.info("normalization (%s, k=%g): fraction %s on training crops: %s", normalizer.scheme, normalizer.k, what,
             ", ".join(f"level {l} {100 * v:.2f}%" for l, v in result.items()))
    return result


def prepare_domains(cfg, run_dir: str | Path, backbone, device: str | torch.device, rank: int = 0,
                    world_size: int = 1, levels: Iterable[int] | None = None, *, batch_size: int = 16,
                    progress: bool = True) -> tuple[Normalizer, DomainFeatures, DomainFeatures]:
    """Scan both domains, build/open their caches and the normalization statistics, return the batch sources.

    ``levels``: every level the whole pipeline will use (default :func:`pipeline_levels`); ``cache.levels`` are
    added. Statistics cover the training images of both domains (both mirrors), come from the cache-building
    pass, and are stored at ``run_dir/normalization.safetensors``; an existing file for the same backbone, data
    and levels is reused, unless a cache has to be rebuilt. Only rank 0 computes; other ranks wait at a
    ``torch.distributed`` barrier (when initialized) and then open what rank 0 wrote.
    """
    run_dir = Path(run_dir)
    d = cfg.data
    levels = pipeline_levels(cfg, levels)
    files = {"A": _scan_domain(d.domain_a, "data.domain_a"), "B": _scan_domain(d.domain_b, "data.domain_b")}
    device = torch.device(device)
    backbone.to(device)
    precision = cfg.engine.precision
    cache_levels = sorted(set(int(l) for l in cfg.cache.levels))
    cache_root = Path(cfg.cache.dir) if cfg.cache.dir else run_dir / "cache"
    norm_path = run_dir / NORMALIZATION_FILE
    ident = backbone_identity(backbone)
    want = {**ident, "levels": levels, "load_size": d.load_size, "precision": precision,
            "data_hash": hashlib.sha256((file_list_hash(files["A"]) + file_list_hash(files["B"])).encode()
                                        ).hexdigest()}
    workers = max(1, d.workers)
    caches: dict[str, FeatureCache | None] = {"A": None, "B": None}
    normalizer: Normalizer | None = None

    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        reason = _normalizer_mismatch(norm_path, want)
        if reason is None and cfg.cache.enabled:
            stale = [k for k in files if FeatureCache.check(cache_root / k, backbone, files[k], cache_levels,
                                                            d.load_size, d.image_size, precision=precision)]
            if stale:
                reason = f"the feature cache of domain(s) {', '.join(stale)} is rebuilt"
        stats = {l: RunningStats(backbone.channels[l]) for l in levels} if reason else None
        if reason:
            log.info("normalization statistics: computing over both domains (%s)", reason)
        if cfg.cache.enabled:
            for k in files:
                caches[k] = FeatureCache.build_or_open(
                    cache_root / k, backbone, files[k], cache_levels, d.load_size, d.image_size, device=device,
                    batch_size=batch_size, precision=precision, stats=stats, progress=progress, workers=workers)
        elif stats:
            _stats_from_files(backbone, files["A"] + files["B"], stats, d.load_size, device, batch_size, precision,
                              workers)
        if stats:
            normalizer = Normalizer.from_stats(stats, cfg.normalization.scheme, cfg.normalization.k, meta=want)
            normalizer.save(norm_path)
            log.info("normalization statistics: written to %s", norm_path)
        else:
            normalizer = Normalizer.load(norm_path)
            log.info("normalization statistics: reusing %s", norm_path)
            if (normalizer.scheme, normalizer.k) != (cfg.normalization.scheme, cfg.normalization.k):
                log.info("normalization: scheme/k changed to %s/%g (statistics reused)", cfg.normalization.scheme,
                         cfg.normalization.k)
                normalizer = normalizer.with_scheme(cfg.normalization.scheme, cfg.normalization.k)
                normalizer.save(norm_path)

    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # rank 0 has written the caches and the statistics

    if rank != 0:
        if cfg.cache.enabled:
            for k in files:
                caches[k] = FeatureCache.open(cache_root / k, backbone, files[k], cache_levels, d.load_size,
                                              d.image_size, precision=precision)
        normalizer = Normalizer.load(norm_path).with_scheme(cfg.normalization.scheme, cfg.normalization.k)

    normalizer = normalizer.to(device)
    sources = [DomainFeatures(files[k], backbone, normalizer, levels, d.load_size, d.image_size, caches[k], device,
                              rank, world_size, precision=precision, channels_last=cfg.engine.channels_last,
                              workers=workers, name=k, cached_features=cfg.cache.window_features)
               for k in ("A", "B")]
    if rank == 0:
        log_clamped_fraction(normalizer, sources)
    return normalizer, sources[0], sources[1]
