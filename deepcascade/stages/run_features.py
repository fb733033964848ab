"""Setting up a run's features: scan both domains, build or open their caches and the normalization
statistics (one pass over the images of both domains, on rank 0), and return a :class:`DomainFeatures` per
domain."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..data.images import scan_images
from ..engine import distributed
from ..errors import UserError
from ..features.domain_features import DomainFeatures
from ..features.cache import FeatureCache, crop_features, crop_offsets
from ..features.extract import FeatureSpec
from ..features.normalization import Normalizer, RunningStats
from ..features.squares import file_list_hash, iter_squares
from ..precision import resolve_precision
from ..rundir import RunDir

log = logging.getLogger("deepcascade")


def pipeline_levels(cfg, levels: Iterable[int] | None = None) -> list[int]:
    """Levels the run needs: ``levels`` if given, else invert.levels + the cascade's and the deepVAE's levels
    (final_level..5); plus cache.levels."""
    if levels is None:
        levels = set(cfg.invert.levels) | set(range(cfg.cascade.final_level, 6)) | set(range(cfg.synth.final_level, 6))
    return sorted(set(int(l) for l in levels) | set(int(l) for l in cfg.cache.levels))


def _json_field(path: Path, key: str):
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _scan_domain(folder: str, field: str) -> list[Path]:
    if not folder:
        raise UserError(f"config field '{field}' is empty: set it to a folder of images (or set data.root to a "
                        f"folder with trainA/ and trainB/)")
    if not Path(folder).exists():
        raise UserError(f"config field '{field}': folder not found: {folder}")
    for marker in (Path(folder) / "prepare.json", Path(folder).parent / "prepare.json"):
        # `deepcascade prepare` marks its output complete last: an interrupted one must not be trained on
        if marker.is_file() and _json_field(marker, "complete") is False:
            raise UserError(f"config field '{field}': {marker} says the data set was not completely prepared "
                            f"(interrupted?); run the same `deepcascade prepare` command again to finish it")
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


def _stats_from_files(spec: FeatureSpec, files: list[Path], stats: dict[int, RunningStats], batch_size: int,
                      workers: int) -> None:
    """Accumulate statistics over the training crops (both mirrors) of one domain's files, the crops a cache
    would hold (used when the cache is disabled, so that the statistics do not depend on it)."""
    from ..progress import progress

    levels = sorted(stats)
    offsets = crop_offsets(len(files), spec.load_size, spec.image_size, spec.n_crops)
    with progress(total=len(files), desc="statistics", unit="img", leave=False) as bar:
        for i0, sq in iter_squares(files, spec.load_size, batch_size, workers):
            feats = crop_features(spec, sq.numpy(), offsets[i0:i0 + sq.shape[0]], levels)
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


def cache_folder(cfg, run: RunDir) -> Path:
    """``cache.dir`` with ``~`` and environment variables expanded (``$TMPDIR/dc-cache``: a per-node folder on
    a multi-node run), or ``RUN/cache`` when empty."""
    if not cfg.cache.dir:
        return run.cache_dir
    path = os.path.expandvars(os.path.expanduser(cfg.cache.dir))
    if "$" in path:
        raise UserError(f"cache.dir {cfg.cache.dir!r}: an environment variable in it is not set on this machine "
                        f"({path!r}); set it or give a plain folder")
    return Path(path)


def _prune_run_cache(cache_root: Path, keep: dict[str, Path]) -> None:
    """Remove the caches of a run's earlier settings from its own cache folder (``RUN/cache``, which no other
    run uses), so that changing a setting does not leave gigabytes behind. A shared ``cache.dir`` is left alone."""
    for p in cache_root.iterdir():
        if p.is_dir() and p not in keep.values() and p.name.split("-")[0] in keep and (p / "meta.json").exists():
            log.info("feature cache %s: removed (this run's cache for earlier settings)", p)
            shutil.rmtree(p, ignore_errors=True)


def prepare_domains(cfg, run, backbone, device: str | torch.device, rank: int = 0, world_size: int = 1,
                    levels: Iterable[int] | None = None, *, batch_size: int = 16, progress: bool = True,
                    precision: str | None = None) -> tuple[Normalizer, DomainFeatures, DomainFeatures]:
    """Scan both domains, build/open their caches and the normalization statistics, return the batch sources.

    ``levels``: every level the whole pipeline will use (default :func:`pipeline_levels`); ``cache.levels`` are
    added. Statistics cover the training images of both domains (both mirrors), come from the cache-building
    pass, and are stored in the run directory (``run``: a RunDir or its path); an existing file for the same
    backbone, data and levels is reused, unless a cache has to be rebuilt. Only rank 0 computes; other ranks wait at a
    ``torch.distributed`` barrier (when initialized) and then open what rank 0 wrote. ``precision``: the
    backbone's, ``engine.precision`` with 'auto' resolved (None: resolved here).
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    d = cfg.data
    levels = pipeline_levels(cfg, levels)
    files = {"A": _scan_domain(d.domain_a, "data.domain_a"), "B": _scan_domain(d.domain_b, "data.domain_b")}
    if precision is None:
        precision = resolve_precision(cfg.engine.precision, torch.device(device))
    spec = FeatureSpec(backbone.to(device), d.load_size, d.image_size, device, precision,
                       cfg.engine.channels_last, cfg.cache.crops)
    cache_levels = sorted(set(int(l) for l in cfg.cache.levels))
    cache_root = cache_folder(cfg, run)
    folders = {k: FeatureCache.folder(cache_root, k, spec, files[k], cache_levels) for k in files} \
        if cfg.cache.enabled else {}
    norm_path = run.normalization_file
    want = {**spec.identity(), "levels": levels, "load_size": d.load_size, "precision": spec.precision,
            "data_hash": hashlib.sha256((file_list_hash(files["A"]) + file_list_hash(files["B"])).encode()
                                        ).hexdigest()}
    workers = max(1, d.workers)
    caches: dict[str, FeatureCache | None] = {"A": None, "B": None}
    normalizer: Normalizer | None = None

    if rank == 0:
        run.path.mkdir(parents=True, exist_ok=True)
        reason = _normalizer_mismatch(norm_path, want)
        if reason is None and cfg.cache.enabled:
            stale = [k for k in files if FeatureCache.check(folders[k], spec, files[k], cache_levels)]
            if stale:
                reason = f"the feature cache of domain(s) {', '.join(stale)} is rebuilt"
        stats = {l: RunningStats(backbone.channels[l]) for l in levels} if reason else None
        if reason:
            log.info("normalization statistics: computing over both domains (%s)", reason)
        if cfg.cache.enabled:
            for k in files:
                caches[k] = FeatureCache.build_or_open(folders[k], spec, files[k], cache_levels,
                                                       batch_size=batch_size, stats=stats, progress=progress,
                                                       workers=workers)
            if not cfg.cache.dir:
                _prune_run_cache(cache_root, folders)
        elif stats:
            for k in files:
                _stats_from_files(spec, files[k], stats, batch_size, workers)
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

    group = world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
    if group:
        torch.distributed.barrier()  # rank 0 has written the caches and the statistics
        if cfg.cache.enabled:
            # A node that cannot see rank 0's cache (cache.dir on node-local disk) builds its own copy, once, on
            # its first process; the features are the same backbone's on the same files. Statistics stay rank 0's.
            if rank != 0 and distributed.local_rank() == 0:
                for k in files:
                    if FeatureCache.check(folders[k], spec, files[k], cache_levels) is not None:
                        FeatureCache.build_or_open(folders[k], spec, files[k], cache_levels,
                                                   batch_size=batch_size, progress=progress, workers=workers)
            torch.distributed.barrier()

    if rank != 0:
        if cfg.cache.enabled:
            for k in files:
                caches[k] = FeatureCache.open(folders[k], spec, files[k], cache_levels)
        normalizer = Normalizer.load(norm_path).with_scheme(cfg.normalization.scheme, cfg.normalization.k)

    normalizer = normalizer.to(spec.device)
    sources = [DomainFeatures(files[k], spec, normalizer, levels, caches[k], rank, world_size, workers=workers,
                              name=k)
               for k in ("A", "B")]
    if rank == 0:
        log_clamped_fraction(normalizer, sources)
    return normalizer, sources[0], sources[1]
