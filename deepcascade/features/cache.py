"""On-disk cache of frozen-backbone features, one folder per domain and configuration (float16 memory maps).

The folder is ``<cache root>/<domain>-<key>`` (:meth:`FeatureCache.folder`), the key a hash of everything the
features depend on: the file list (paths, sizes, modification times), the backbone and its weights, ReLU, load and
image size, crops, precision, the crop rule and the levels. Runs on other data or settings that share a
``cache.dir`` therefore use folders of their own, and one after the other each finds its own cache again. A
process building or checking a folder holds its lock; another one asking for the same folder waits for it and
then reuses what it built.

Layout of a cache folder::

    meta.json                                     what was computed and with what; "complete": true is written last
    images.npy   uint8   (n, 3, L, L)             the L-square of every image (shorter side -> L, centre crop L:
                                                  the geometry of ``data.transforms.center_square``)
    offsets.npy  int32   (n, K, 2)                the (oy, ox) pixel offsets of each image's K training crops
    level<l>.npy float16 (n, K, 2, C_l, h_l, h_l) backbone features of crop k ([:, k, 0]) and of its mirror
                                                  ([:, k, 1]); h_l = image_size // stride_l - trim_l
                                                  (``BackboneSpec.feature_size``; trim 1 for AlexNet)

Every cached feature is exactly the backbone's output on a real ``image_size`` crop (float16 storage adds a
relative error of about 2e-4): the training crops are fixed per image, K of them (``cache.crops``; crop 0 is the
centre crop, the others are uniformly random offsets, deterministic per image index), each also mirrored. Caching
windows of the features of the whole square instead would be cheaper but is not the same thing: zero padding
inside the backbone makes a window of the features differ from the features of the cropped image near its
border, by up to a third of the norm at level 5 (:func:`~deepcascade.features.extract.crop_consistency`,
docs/measurements.md). Training on those and translating exact features at test time is a train/test mismatch,
so the cache does not do it.
**Mirrored entries**: entry (k, 1) is the crop at offset (oy, ox) of the *mirrored* square, i.e. the mirror of
the window at (oy, L - image_size - ox) of the original (:func:`~deepcascade.features.squares.mirror_window`).
The squares are stored too, so inversion training and uncached levels use exactly the same crops without
decoding any file.

A cache whose meta.json is missing, says ``complete: false`` (an interrupted build) or does not match the
requested configuration (backbone, weights, ReLU, sizes, crops, precision, crop rule, file list, levels) is
rebuilt, and the reason is logged; it is never used silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..version import __version__
from ..fileio import folder_lock, write_text
from ..progress import progress as progress_bar
from ..backbones.specs import LEVELS
from ..errors import UserError
from .extract import FeatureSpec, extract
from .normalization import RunningStats
from .squares import file_list_hash, iter_squares, mirror_window

log = logging.getLogger("deepcascade")

FORMAT_VERSION = 2
CROP_RULE = ("shorter side -> load_size (bicubic, antialiased; JPEG draft decoding above 2x), centre crop "
             "load_size square; K image_size crops per square: crop 0 centred, the others at offsets drawn by "
             "numpy default_rng([image index]); entry 1 = the crop at the same offset of the mirrored square")
_F16_MAX = 65504.0
_CHUNK = 32  # crops per backbone pass while building: bounds the activation memory at large image sizes
#: meta.json keys that must equal the requested configuration for a cache to be reused
_MATCH_KEYS = ("format_version", "backbone", "weights", "relu", "load_size", "image_size", "crops", "precision",
               "crop_rule", "files_hash", "n_images")
_LOCK_POLL_S = 2.0  # how often a process waiting for another one's build tries the lock again
_LOCK_SAY_S = 60.0  # how often it says that it is still waiting


def _pause(seconds: float) -> None:
    time.sleep(seconds)


@contextlib.contextmanager
def _cache_lock(directory: Path):
    """Hold the lock of a cache folder, waiting as long as another process holds it: that process is building
    or checking this very cache, and what it leaves is reused here. A holder that dies releases it (flock)."""
    said = None
    while True:
        lock = folder_lock(directory, "feature cache")
        try:
            lock.__enter__()
            break
        except UserError:
            now = time.monotonic()
            if said is None or now - said >= _LOCK_SAY_S:
                log.info("feature cache %s: another process is building it; waiting for it to finish", directory)
                said = now
            _pause(_LOCK_POLL_S)
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _write_json_atomic(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=1, sort_keys=True))


def crop_offsets(n: int, load_size: int, image_size: int, crops: int) -> np.ndarray:
    """(n, crops, 2) pixel offsets of each image's training crops: crop 0 centred, the others uniformly random
    (numpy ``default_rng([i])`` for image i, so an image's crops do not depend on the other files)."""
    m = load_size - image_size
    out = np.empty((n, crops, 2), dtype=np.int32)
    out[:, 0] = m // 2
    for i in range(n):
        if crops > 1:
            out[i, 1:] = np.random.default_rng([i]).integers(0, m + 1, size=(crops - 1, 2))
    return out


def crop_features(spec: FeatureSpec, squares: np.ndarray, offsets: np.ndarray, levels: Iterable[int]
                   ) -> dict[int, torch.Tensor]:
    """Features of every crop (k) and mirror (f) of uint8 squares (b, 3, L, L) at ``offsets`` (b, K, 2): one
    tensor per level of shape (b * K * 2, C, h, h), ordered image-major, then crop, then mirror."""
    S = spec.image_size
    windows = np.stack([mirror_window(sq, int(oy), int(ox), S, flip)
                        for sq, offs in zip(squares, offsets) for oy, ox in offs for flip in (False, True)])
    parts = [extract(spec.backbone, torch.from_numpy(windows[i:i + _CHUNK]).to(spec.device).float().div_(255.0),
                     levels, spec.precision) for i in range(0, len(windows), _CHUNK)]
    return {l: torch.cat([p[l] for p in parts]) for l in parts[0]}


# ---------------------------------------------------------------------------------------------- the cache
class FeatureCache:
    """A domain's cached features; use :meth:`build_or_open` (or :meth:`open` for a cache known to be valid)."""

    def __init__(self, directory: str | Path, meta: dict):
        self.directory = Path(directory)
        self.meta = meta
        self.levels: list[int] = [int(l) for l in meta["levels"]]
        self.load_size: int = int(meta["load_size"])
        self.image_size: int = int(meta["image_size"])
        self.crops: int = int(meta["crops"])
        self.strides: dict[int, int] = {int(l): int(s) for l, s in meta["strides"].items()}
        self.channels: dict[int, int] = {int(l): int(c) for l, c in meta["channels"].items()}
        #: True when this object's data was computed by the call that returned it
        self.rebuilt = False
        self._arrays = {l: np.load(self.directory / f"level{l}.npy", mmap_mode="r") for l in self.levels}
        self._images = np.load(self.directory / "images.npy", mmap_mode="r")
        #: (n, K, 2) int: the pixel offsets of each image's training crops
        self.offsets = np.load(self.directory / "offsets.npy")

    def __len__(self) -> int:
        return int(self.meta["n_images"])

    def __repr__(self) -> str:
        return (f"FeatureCache({str(self.directory)!r}, n={len(self)}, levels={self.levels}, L={self.load_size}, "
                f"S={self.image_size}, crops={self.crops})")

    # ----------------------------------------------------------------------------------- validity
    @classmethod
    def folder(cls, root: str | Path, domain: str, spec: FeatureSpec, files: Sequence[Path], levels: Iterable[int]
               ) -> Path:
        """``root/<domain>-<key>``: the folder of this domain's cache for exactly this configuration (the key
        hashes the fields a cache must match to be reused, and its levels)."""
        want = cls.expected_meta(spec, files, levels)
        ident = {k: want[k] for k in (*_MATCH_KEYS, "levels")}
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
        return Path(root) / f"{domain}-{key}"

    @staticmethod
    def expected_meta(spec: FeatureSpec, files: Sequence[Path], levels: Iterable[int]) -> dict:
        """The meta.json a cache of this configuration has (without 'complete')."""
        backbone, load_size, image_size = spec.backbone, spec.load_size, spec.image_size
        levels = sorted(set(int(l) for l in levels))
        for l in levels:
            if l not in LEVELS:
                raise ValueError(f"cache level must be in 1..5, got {l}")
        if load_size < image_size:
            raise ValueError(f"load_size ({load_size}) must be >= image_size ({image_size})")
        k = spec.n_crops
        meta = {"format_version": FORMAT_VERSION, **spec.identity(),
                "load_size": int(load_size), "image_size": int(image_size), "crops": k, "precision": spec.precision,
                "crop_rule": CROP_RULE, "levels": levels,
                "channels": {str(l): int(backbone.channels[l]) for l in levels},
                "strides": {str(l): int(backbone.strides[l]) for l in levels},
                "shapes": {str(l): [len(files), k, 2, *backbone.feature_shape(l, image_size)] for l in levels},
                "files_hash": file_list_hash(files), "n_images": len(files),
                "package_version": __version__}
        return meta

    @staticmethod
    def _mismatch(directory: Path, want: dict) -> str | None:
        """Why the cache at ``directory`` cannot serve ``want`` (None when it can)."""
        path = directory / "meta.json"
        if not path.is_file():
            new = not directory.exists() or all(p.name == ".lock" for p in directory.iterdir())
            return "no meta.json (new cache)" if new else "meta.json is missing (the cache was never completed)"
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            return f"meta.json is unreadable ({type(e).__name__})"
        if have.get("complete") is not True:
            return "the previous build did not complete (meta.json has complete != true; interrupted?)"
        diffs = [f"{k}: cached {have.get(k)!r} != requested {want[k]!r}" for k in _MATCH_KEYS
                 if have.get(k) != want[k]]
        if diffs:
            return "configuration changed (" + "; ".join(d[:200] for d in diffs) + ")"
        missing = [l for l in want["levels"] if l not in have.get("levels", [])]
        if missing:
            return f"levels {missing} are not cached (cached: {have.get('levels')})"
        for l in have["levels"]:
            f = directory / f"level{l}.npy"
            try:
                shape = list(np.load(f, mmap_mode="r").shape)
            except (OSError, ValueError) as e:
                return f"{f.name} is unreadable ({type(e).__name__})"
            if shape != have["shapes"][str(l)]:
                return f"{f.name} has shape {shape}, meta.json says {have['shapes'][str(l)]}"
        try:
            shape = list(np.load(directory / "images.npy", mmap_mode="r").shape)
        except (OSError, ValueError) as e:
            return f"images.npy is unreadable ({type(e).__name__})"
        if shape != [want["n_images"], 3, want["load_size"], want["load_size"]]:
            return f"images.npy has shape {shape}"
        try:
            shape = list(np.load(directory / "offsets.npy", mmap_mode="r").shape)
        except (OSError, ValueError) as e:
            return f"offsets.npy is unreadable ({type(e).__name__})"
        if shape != [want["n_images"], want["crops"], 2]:
            return f"offsets.npy has shape {shape}"
        return None

    @classmethod
    def check(cls, directory: str | Path, spec: FeatureSpec, files: Sequence[Path], levels: Iterable[int]
              ) -> str | None:
        """None when the cache at ``directory`` can be reused for this configuration, else the reason."""
        want = cls.expected_meta(spec, files, levels)
        return cls._mismatch(Path(directory), want)

    @classmethod
    def open(cls, directory: str | Path, spec: FeatureSpec, files: Sequence[Path], levels: Iterable[int]
             ) -> "FeatureCache":
        """Open a cache that must already be valid (e.g. built by rank 0); RuntimeError otherwise."""
        directory = Path(directory)
        want = cls.expected_meta(spec, files, levels)
        reason = cls._mismatch(directory, want)
        if reason is not None:
            raise RuntimeError(f"feature cache {directory} is not usable: {reason}")
        return cls(directory, json.loads((directory / "meta.json").read_text(encoding="utf-8")))

    # ----------------------------------------------------------------------------------- build
    @classmethod
    def build_or_open(cls, directory: str | Path, spec: FeatureSpec, files: Sequence[Path], levels: Iterable[int],
                      *, batch_size: int = 16, stats: dict[int, RunningStats] | None = None,
                      progress: bool = True, workers: int = 2) -> "FeatureCache":
        """Reuse the cache at ``directory`` when it matches this configuration, else (re)build it.

        ``stats``: per-level accumulators updated with the fp32 features of both mirror images of every image
        (levels not cached are computed but not stored). They are filled on a rebuild from the building pass
        itself, and on reuse from a pass over the stored squares (no decoding), so they are always complete.
        """
        directory = Path(directory)
        files = [Path(f) for f in files]
        if not files:
            raise UserError(f"feature cache {directory}: no images to cache")
        want = cls.expected_meta(spec, files, levels)
        try:
            with _cache_lock(directory):
                reason = cls._mismatch(directory, want)
                if reason is None:
                    cache = cls(directory, json.loads((directory / "meta.json").read_text(encoding="utf-8")))
                else:
                    log.info("feature cache %s: building, %s", directory, reason)
                    return cls._build(directory, spec, files, want, batch_size=batch_size, stats=stats,
                                      progress=progress, workers=workers)
        except OSError as e:  # read-only folder, disk full, ...: meta.json stays incomplete, so never used
            raise UserError(f"feature cache {directory}: cannot write ({type(e).__name__}: {e}); the cache was "
                            f"not completed and will be rebuilt next time. Set cache.dir to a writable folder or "
                            f"cache.enabled=false") from None
        log.info("feature cache %s: reusing (%d images, levels %s)", directory, len(cache), cache.levels)
        if stats:  # from the stored squares: no lock needed, a complete cache is never rewritten in place
            log.info("feature cache %s: computing normalization statistics from the cached images", directory)
            cache.accumulate_stats(spec, stats, batch_size=batch_size, progress=progress)
        return cache

    @classmethod
    def _build(cls, directory: Path, spec: FeatureSpec, files: list[Path], meta: dict, *, batch_size: int,
               stats: dict[int, RunningStats] | None, progress: bool, workers: int) -> "FeatureCache":
        from numpy.lib.format import open_memmap

        directory.mkdir(parents=True, exist_ok=True)
        # An interrupted build must never look complete: the old meta goes first, the new one is written last.
        (directory / "meta.json").unlink(missing_ok=True)
        for stale in list(directory.glob("level*.npy")) + [directory / "images.npy", directory / "offsets.npy"]:
            stale.unlink(missing_ok=True)
        n, L, levels = len(files), meta["load_size"], meta["levels"]
        nbytes = n * 3 * L * L + sum(2 * math.prod(meta["shapes"][str(l)]) for l in levels)
        free = shutil.disk_usage(directory).free
        if nbytes > free:
            raise UserError(f"feature cache {directory} needs {nbytes / 2**30:.2f} GiB, only {free / 2**30:.2f} GiB "
                            f"free; set cache.dir to a larger disk, cache fewer levels (cache.levels) or disable "
                            f"it (cache.enabled=false)")
        _write_json_atomic(directory / "meta.json", {**meta, "complete": False})
        log.info("feature cache %s: %d images, levels %s, %.2f GiB", directory, n, levels, nbytes / 2**30)

        device = spec.device
        spec.backbone.to(device)
        images = open_memmap(directory / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 3, L, L))
        offsets = crop_offsets(n, L, meta["image_size"], meta["crops"])
        np.save(directory / "offsets.npy", offsets)
        arrays = {l: open_memmap(directory / f"level{l}.npy", mode="w+", dtype=np.float16,
                                 shape=tuple(meta["shapes"][str(l)])) for l in levels}
        compute = sorted(set(levels) | set(stats or {}))
        overflow = 0
        t0 = time.time()
        bar = progress_bar(total=n, desc=f"caching {directory.name}", unit="img", disable=not progress, leave=False)
        try:
            for i0, sq in iter_squares(files, L, batch_size, workers):
                b = sq.shape[0]
                images[i0:i0 + b] = sq.numpy()
                feats = crop_features(spec, sq.numpy(), offsets[i0:i0 + b], compute)
                for l in levels:
                    f = feats[l]
                    if list(f.shape[1:]) != meta["shapes"][str(l)][3:]:
                        raise RuntimeError(f"level {l}: backbone gave {tuple(f.shape[1:])}, expected "
                                           f"{meta['shapes'][str(l)][3:]} for image_size {meta['image_size']}")
                    big = f.abs() > _F16_MAX
                    if bool(big.any()):
                        overflow += int(big.sum())
                        f = f.clamp(-_F16_MAX, _F16_MAX)
                    arrays[l][i0:i0 + b] = f.half().cpu().numpy().reshape(b, *meta["shapes"][str(l)][1:])
                if stats:
                    for l, s in stats.items():
                        s.update(feats[l])
                bar.update(b)
        finally:
            bar.close()
        for a in (images, *arrays.values()):
            a.flush()
        del images, arrays
        if overflow:
            log.warning("feature cache %s: %d feature values beyond the float16 range were clamped to +-%g",
                        directory, overflow, _F16_MAX)
        meta = {**meta, "complete": True, "build_seconds": round(time.time() - t0, 2)}
        _write_json_atomic(directory / "meta.json", meta)
        log.info("feature cache %s: built in %.1f s", directory, time.time() - t0)
        cache = cls(directory, meta)
        cache.rebuilt = True
        return cache

    def accumulate_stats(self, spec: FeatureSpec, stats: dict[int, RunningStats], *, batch_size: int = 16,
                         progress: bool = False) -> None:
        """Update ``stats`` with fp32 backbone features of every cached crop (both mirrors), recomputed from the
        stored squares (the same numbers the building pass gave, including levels that are not stored)."""
        spec.backbone.to(spec.device)
        levels = sorted(stats)
        for i0 in progress_bar(range(0, len(self), batch_size), desc=f"statistics {self.directory.name}",
                       disable=not progress, leave=False):
            feats = crop_features(spec, np.array(self._images[i0:i0 + batch_size]),
                                   self.offsets[i0:i0 + batch_size], levels)
            for l in levels:
                stats[l].update(feats[l])

    # ----------------------------------------------------------------------------------- reading
    def crop_index(self, indices: Sequence[int], offsets: Sequence[tuple[int, int]]) -> np.ndarray:
        """Which cached crop of each image has each (oy, ox) offset; ValueError for an offset that is not cached."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        hit = (self.offsets[idx] == off[:, None, :]).all(-1)  # (B, K)
        if not hit.any(1).all():
            j = int(np.flatnonzero(~hit.any(1))[0])
            raise ValueError(f"offset {tuple(off[j])} is not a cached crop of image {idx[j]} (cached: "
                             f"{self.offsets[idx[j]].tolist()})")
        return hit.argmax(1)

    def read(self, indices: Sequence[int], flips: Sequence[bool | int], offsets: Sequence[tuple[int, int]],
             levels: Iterable[int] | None = None, *, dtype: torch.dtype = torch.float32, image: bool = True) -> dict:
        """Cached training crops, as CPU tensors.

        Returns ``{level: (N, C_l, h_l, h_l)}`` (h_l: ``BackboneSpec.feature_size``) in ``dtype`` (float32 by
        default; pass torch.float16 to move half the bytes and convert on the device) and, when ``image``, ``'image'``:
        float32 (N, 3, image_size, image_size) in [0, 1]. Entry j is image ``indices[j]``, its crop at pixel
        offset ``offsets[j] = (oy, ox)`` (one of :attr:`offsets`) of the square, mirrored when ``flips[j]``.
        """
        S = self.image_size
        levels = self.levels if levels is None else [int(l) for l in levels]
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        flp = np.asarray(flips).astype(bool).reshape(-1)
        off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        B = len(idx)
        if len(flp) != B or len(off) != B:
            raise ValueError(f"indices ({B}), flips ({len(flp)}) and offsets ({len(off)}) must have one entry each")
        if B and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"cache index out of range 0..{len(self) - 1}: {idx.tolist()}")
        crop = self.crop_index(idx, off) if B else np.zeros(0, dtype=np.int64)
        order = np.argsort(idx, kind="stable")  # read the memory maps front to back
        out: dict = {}
        for l in levels:
            if l not in self._arrays:
                raise KeyError(f"level {l} is not cached (cached: {self.levels})")
            arr = self._arrays[l]
            buf = np.empty((B, *arr.shape[3:]), dtype=np.float16)
            for j in order:
                buf[j] = arr[idx[j], crop[j], int(flp[j])]
            # numpy converts single-threaded: torch's thread pool costs milliseconds on small tensors
            out[l] = torch.from_numpy(buf.astype(np.float32)).to(dtype) if dtype != torch.float16 \
                else torch.from_numpy(buf)
        if image:
            buf = np.empty((B, 3, S, S), dtype=np.uint8)
            for j in order:
                buf[j] = mirror_window(self._images[idx[j]], int(off[j, 0]), int(off[j, 1]), S, bool(flp[j]))
            out["image"] = torch.from_numpy(np.divide(buf, np.float32(255.0), dtype=np.float32))
        return out

    def squares(self, indices: Sequence[int]) -> torch.Tensor:
        """The whole uint8 (N, 3, L, L) squares of ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        order = np.argsort(idx, kind="stable")
        buf = np.empty((len(idx), 3, self.load_size, self.load_size), dtype=np.uint8)
        for j in order:
            buf[j] = self._images[idx[j]]
        return torch.from_numpy(buf)
