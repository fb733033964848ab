"""The translation fast path (``Translator(..., optimize=True)``, ``--optimize``): a :class:`Translator`'s
computation compiled into one optimized graph per shape.

What is compiled is exactly :meth:`Translator.translate_tensor`'s computation, built by :func:`_graph`: the
backbone to conv_5_1 (one pass for levels final..5), the per-level normalization, ``cascade.translate`` and the
inversion of the final level (of every inverted level with ``return_levels``), under the translator's autocast.

Which backend (the rule, also in docs/inference.md):

- CPU: ``torch.compile`` with inductor's ``freezing`` (weights become constants: prepacked for oneDNN, bias and
  activations fused into the convolutions), and the 3x3 convolutions with 256 or more input and output
  channels on maps of at most 28x28 (at 224 px: VGG-19's conv4/conv5, T_5, T_4) computed by Winograd's
  F(2x2, 3x3) on copies of the networks (:mod:`deepcascade.networks.winograd`; 0.44x their multiply-adds,
  1.05-1.12x the whole path's throughput, docs/benchmarks.md), all in channels_last. Needs a C++ compiler at
  run time (the one inductor searches, ``torch._inductor.config.cpp.cxx``, usually ``g++``).
- CUDA: ``torch.compile`` (inductor, freezing, triton kernels). Needs ``triton``.
- Any other device, a missing compiler, or a compilation that raises: eager, exactly
  ``translate_tensor``'s plain result, with ONE warning line in the log (logger ``deepcascade``) saying why and
  what to install. Compilation errors are not retried: the rest of the process runs eager.

Shapes are static: one graph per (direction, final level, batch size, image size, precision, levels or not),
kept in :attr:`FastPath.graphs` on the translator, so only the first batch of each waits for the compiler.
The batch size is ``FastPath.batch_size`` when set (``serve`` sets it), else the first call's for that key;
larger calls are split into batches of it and a short last batch is padded with zeros up to it. Inductor's
cache lives in the run, ``RUN/cache/compiled/`` (unless ``TORCHINDUCTOR_CACHE_DIR`` is set), so a later process
compiles the same graphs faster.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..domains import DIRECTIONS
from ..networks.winograd import winograd_convs
from ..outputs.grids import to_unit
from ..precision import inference_autocast

log = logging.getLogger("deepcascade")

#: graphs one process may compile for the fast path (torch's default recompile limit, 8, counts every
#: Translator's graphs together, since they share one forward); past it translations run eager, logged once
GRAPH_LIMIT = 32


class TranslateGraph(nn.Module):
    """:meth:`Translator.translate_tensor` for one direction and final level as one module: images (N, 3, H, W)
    in [0, 1] -> a tuple of float32 images in [0, 1], I_l(translated level l) for each of ``levels``.

    ``nets``: (backbone, cascade, {level: inversion}) to compute with, by default the translator's own (shared,
    not copied: a change that replaces submodules must be made on a copy, as :func:`cpu_copy` does).
    ``channels_last``: the images enter the graph in channels_last (the networks should be in it too)."""

    def __init__(self, translator, direction: str, final_level: int, levels: tuple[int, ...], nets=None,
                 channels_last: bool = False):
        super().__init__()
        backbone, cascade, inversions = nets or (translator.trained.backbone, translator.cascade,
                                                 translator.inversions)
        self.backbone, self.normalizer, self.cascade = backbone, translator.trained.normalizer, cascade
        self.inversions = nn.ModuleDict({str(l): inversions[l] for l in levels})
        self.direction, self.final_level, self.levels = direction, final_level, tuple(levels)
        self.device, self.precision, self.channels_last = translator.device, translator.precision, channels_last

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with inference_autocast(self.device, self.precision):
            raw = self.backbone(x, range(self.final_level, 6))
            feats = {l: self.normalizer.normalize(f, l) for l, f in raw.items()}
            out = self.cascade.translate(feats, self.direction, self.final_level)
            return tuple(to_unit(self.inversions[str(l)](out[l]).float()).clamp(0, 1) for l in self.levels)


def cpu_copy(module: nn.Module) -> tuple[nn.Module, int]:
    """What the CPU graphs compute with: a copy of ``module`` in channels_last whose wide 3x3 convolutions compute
    by Winograd's F(2x2, 3x3) (:mod:`deepcascade.networks.winograd`: 0.44x their multiply-adds), and how many
    were swapped. ``module`` itself (what the eager path runs) is left as it is."""
    module = copy.deepcopy(module)
    count = winograd_convs(module)
    return module.to(memory_format=torch.channels_last), count


def _graph(translator, direction: str, final_level: int, return_levels: bool = False, nets=None,
           channels_last: bool = False) -> nn.Module:
    """The module that gets compiled for ``direction`` down to ``final_level``: its outputs are I_final's images,
    or with ``return_levels`` those of every translated level that has an inversion network (final first)."""
    levels = [final_level] + ([l for l in range(5, final_level, -1) if l in translator.inversions]
                              if return_levels else [])
    return TranslateGraph(translator, direction, final_level, tuple(levels), nets, channels_last).eval()


def compile_graph(module: nn.Module) -> nn.Module:
    """``torch.compile`` as the fast path uses it: static shapes, inductor with freezing (compiles at the first
    call)."""
    return torch.compile(module, dynamic=False, options={"freezing": True})


def cpu_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU (first of ``torch._inductor.config.cpp.cxx`` on the PATH),
    or None."""
    import torch._inductor.config as inductor

    names = inductor.cpp.cxx if isinstance(inductor.cpp.cxx, (list, tuple)) else (inductor.cpp.cxx,)
    return next((path for name in names if name and (path := shutil.which(name))), None)


def unavailable(device: torch.device) -> str | None:
    """Why the fast path cannot compile on ``device`` (and what to install), or None when it can."""
    if device.type == "cpu":
        if cpu_compiler() is None:
            return ("torch.compile on the CPU needs a C++ compiler (g++ or clang++ on the PATH; e.g. "
                    "`apt-get install g++`)")
        return None
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs triton (`pip install triton`, matching your torch)"
        return None
    return f"no compiled backend for device {device.type} (the fast path covers cpu and cuda)"


def _user_cache_dir() -> str | None:
    """TORCHINDUCTOR_CACHE_DIR when the user chose it (importing torch._dynamo sets it to the default itself)."""
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:
        return chosen
    return chosen if chosen and os.path.abspath(chosen) != os.path.abspath(default_cache_dir()) else None


def cache_folder(translator) -> Path | None:
    """Inductor's cache for this run: ``RUN/cache/compiled`` (None when the user set TORCHINDUCTOR_CACHE_DIR, or
    the run directory is not writable: inductor's own cache then)."""
    if _user_cache_dir():
        return None
    folder = translator.trained.run.cache_dir / "compiled"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.debug("fast path: cannot create %s (%s): inductor's default cache is used", folder, e)
        return None
    return folder


@contextmanager
def _inductor_cache(folder: Path | None):
    """Inductor's on-disk caches in ``folder`` while compiling (it reads TORCHINDUCTOR_CACHE_DIR on each use)."""
    if folder is None:
        yield
        return
    try:
        from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir
    except ImportError:  # another torch: the environment variable alone
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
        yield
        return
    with temporary_cache_dir(str(folder)):
        yield


@contextmanager
def _graph_limit():
    """Let this process hold :data:`GRAPH_LIMIT` graphs, and make running past it an error instead of dynamo's
    silent eager fallback."""
    import torch._dynamo.config as dynamo

    limits = {k: v for k, v in (("recompile_limit", GRAPH_LIMIT), ("accumulated_recompile_limit", 4 * GRAPH_LIMIT),
                                ("fail_on_recompile_limit_hit", True)) if hasattr(dynamo, k)}
    limits = {k: max(v, getattr(dynamo, k)) if isinstance(v, int) and not isinstance(v, bool) else v
              for k, v in limits.items()}
    with dynamo.patch(**limits):
        yield


class FastPath:
    """The compiled graphs of one :class:`Translator` (its ``fast`` attribute when ``optimize=True``)."""

    def __init__(self, translator, batch_size: int | None = None):
        self.translator = translator
        #: images per compiled call; None: the first call's, per direction and final level
        self.batch_size = batch_size
        #: (direction, final level, batch size, height, width, precision, return_levels) -> compiled module
        self.graphs: dict[tuple, nn.Module] = {}
        self.disabled: str | None = unavailable(translator.device)  # why everything runs eager
        #: compute with a :func:`cpu_copy` of the networks (Winograd, channels_last; the rule: on the CPU; on CUDA
        #: cuDNN chooses its own algorithms, and bf16/fp16 networks are channels_last already)
        self.winograd = translator.device.type == "cpu"
        self._nets = None
        self._warned = False
        self._lock = threading.Lock()
        if self.disabled:
            self._warn(self.disabled)

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("fast path off, translating eager (same results, slower): %s", why)

    def _batch_for(self, n: int, rest: tuple) -> int:
        if self.batch_size:
            return self.batch_size
        sizes = [k[2] for k in self.graphs if (k[:2], k[3:]) == rest]
        return sizes[0] if sizes else n

    def translate(self, x: torch.Tensor, direction: str, final: int, return_levels: bool):
        """``translate_tensor``'s result for ``x`` (already on the device, in its memory format), or None when this
        call runs eager (the caller then computes it)."""
        t = self.translator
        if self.disabled or direction not in DIRECTIONS or final < t.cascade.final_level:
            return None  # eager: also raises the usual errors for a bad direction or level
        n, (h, w) = x.shape[0], x.shape[-2:]
        rest = ((direction, final), (int(h), int(w), t.precision, return_levels))
        b = self._batch_for(n, rest)
        key = (direction, final, b, int(h), int(w), t.precision, return_levels)
        outs = []
        for i in range(0, n, b):
            chunk = x[i: i + b]
            k = chunk.shape[0]
            if k < b:
                # Padding is exact: at inference nothing mixes samples (GroupNorm and AdaIN take per-sample
                # statistics, the backbone has no batch norm), so the padded rows change no real row.
                chunk = torch.cat([chunk, chunk.new_zeros((b - k, *chunk.shape[1:]))])
                chunk = chunk.contiguous(memory_format=torch.channels_last) if t.channels_last else chunk
            ys = self._run(key, chunk)
            if ys is None:
                return None
            outs.append([y[:k] for y in ys])
        images = [torch.cat(parts).cpu().contiguous() for parts in zip(*outs)]
        if not return_levels:
            return images[0]
        levels = [final] + [l for l in range(5, final, -1) if l in t.inversions]
        return images[0], {l: images[levels.index(l)] for l in sorted(levels, reverse=True)}

    def _run(self, key: tuple, x: torch.Tensor):
        graph = self.graphs.get(key)
        if graph is not None:
            with _graph_limit():
                return graph(x)
        with self._lock:  # one compilation at a time (serve computes requests in threads)
            if self.disabled:
                return None
            if key in self.graphs:
                with _graph_limit():
                    return self.graphs[key](x)
            return self._compile(key, x)

    def _networks(self):
        """The networks the graphs compute with: with :attr:`winograd`, one :func:`cpu_copy` shared by all graphs
        (built at the first compilation); else None, the translator's own."""
        if self.winograd and self._nets is None:
            t = self.translator
            nets, count = cpu_copy(nn.ModuleList([t.trained.backbone, t.cascade,
                                                  nn.ModuleDict({str(l): m for l, m in t.inversions.items()})]))
            self._nets = (nets[0], nets[1], {int(l): m for l, m in nets[2].items()})
            log.info("fast path: %d wide 3x3 convolutions computed by Winograd F(2x2, 3x3)", count)
        return self._nets if self.winograd else None

    def _compile(self, key: tuple, x: torch.Tensor):
        t = self.translator
        direction, final, b, h, w, precision, return_levels = key
        folder = cache_folder(t)
        start = time.perf_counter()
        try:
            compiled = compile_graph(_graph(t, direction, final, return_levels, self._networks(), self.winograd))
            with _inductor_cache(folder), _graph_limit():
                ys = compiled(x)  # torch.compile compiles at the first call
        except Exception as e:  # noqa: BLE001 - any compiler failure: eager, said once
            name = type(e).__name__
            if "RecompileLimit" in name or "CacheLimit" in name:
                why = (f"this process reached its limit of {GRAPH_LIMIT} compiled graphs ({name}); "
                       f"use fewer batch sizes, image sizes or directions per process")
            else:
                first = (str(e).strip().splitlines() or [""])[0][:300]
                why = (f"torch.compile failed ({name}: {first}); check the C++ compiler (CPU) or triton (CUDA) "
                       f"install, or run without --optimize")
            self.disabled = why
            self._warn(why)
            return None
        self.graphs[key] = compiled
        log.info("fast path: compiled %s to level %d for batch %d at %dx%d, %s%s in %.1f s (cache %s)", direction,
                 final, b, h, w, precision, ", with levels" if return_levels else "", time.perf_counter() - start,
                 folder or os.environ.get("TORCHINDUCTOR_CACHE_DIR", "inductor's default"))
        return ys
