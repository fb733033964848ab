"""The Python API: ``Translator.from_run("runs/x").translate(images, direction="a2b")``.

Images go through the frozen backbone (normalized features of levels final..5), the trained cascade
(level 5 first, then each shallower level conditioned on the deeper translation and on the source's own
features through AdaIN) and the inversion network of the final level.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image

from ..data.transforms import center_square, to_pil
from ..precision import inference_autocast, precision_reason, resolve_precision, use_channels_last
from ..errors import UserError
from ..rundir import TrainedRun, open_run
from ..outputs.grids import to_unit

log = logging.getLogger("deepcascade")


class Translator:
    """A trained run, ready to translate images between its two domains."""

    def __init__(self, trained: TrainedRun, cascade, inversions: dict, precision: str | None = None,
                 optimize: bool = False):
        self.trained = trained
        self.cascade = cascade.eval()
        self.inversions = inversions  # level -> InversionNet (the levels whose I_l was trained)
        self.image_size = trained.cfg.data.image_size
        self.size_multiple = trained.backbone.spec.size_multiple
        #: 'fp32', 'bf16' or 'fp16' ('auto' resolved for the device, see deepcascade.precision.resolve_precision;
        #: not given: fp32, or auto with ``optimize``)
        self.precision = resolve_precision(precision, trained.device, optimize)
        if optimize or precision == "auto":  # which precision, and why
            log.info("%s", precision_reason(precision, trained.device, optimize))
        self.channels_last = use_channels_last(trained.device, self.precision)
        if self.channels_last:
            for net in (trained.backbone, self.cascade, *inversions.values()):
                net.to(memory_format=torch.channels_last)
        #: the compiled graphs (deepcascade.inference.fast) with ``optimize``, else None: plain eager
        self.fast = None
        if optimize:
            from .fast import FastPath

            self.fast = FastPath(self)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto", final_level: int | None = None,
                 precision: str | None = None, optimize: bool = False) -> "Translator":
        """Load a run directory trained by ``deepcascade train`` (down to ``final_level``, default: as far as
        the config's ``cascade.final_level`` or the deepest level trained).

        ``precision``: 'fp32', 'bf16' or 'fp16' autocast, or 'auto' (bf16 where the device computes it natively,
        else fp32); not given: 'fp32', or 'auto' with ``optimize``. bf16 roughly doubles throughput on such
        hardware; its images differ from fp32's by well under one 8-bit grey level on average
        (docs/benchmarks.md).

        ``optimize``: translate through the fast path (:mod:`deepcascade.inference.fast`: torch.compile, one
        graph per batch shape, compiled at its first batch and cached in ``RUN/cache/compiled``); eager with one
        logged warning where compiling is not possible."""
        trained = open_run(run_dir, device)
        resolve_precision(precision, trained.device, optimize)  # a bad value fails before any network loads
        if final_level is None:
            final_level = trained.deepest_trained_level()
        cascade = trained.models.hierarchy("cascade", final_level)
        inversions = {l: inv for l in range(final_level, 6) if (inv := trained.models.inversion(l)) is not None}
        if final_level not in inversions:
            raise UserError(f"the inversion network of level {final_level} is not trained in {run_dir}; "
                            f"run `deepcascade train CONFIG --stage invert`")
        return cls(trained, cascade, inversions, precision, optimize)

    @property
    def device(self) -> torch.device:
        return self.trained.device

    @property
    def final_level(self) -> int:
        """The shallowest level this translator reaches (its translations are I_final of that level)."""
        return self.cascade.final_level

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The run's centre square: shorter side to ``image_size``, centre crop; (3, S, S) in [0, 1]."""
        return center_square(image, self.image_size)

    @torch.no_grad()
    def translate_tensor(self, x: torch.Tensor, direction: str = "a2b", final_level: int | None = None,
                         return_levels: bool = False):
        """(N, 3, H, W) in [0, 1], H and W multiples of the backbone's deepest stride (``spec.size_problem``)
        -> translated, same shape.

        With ``return_levels`` also a dict {level: images} inverting every translated level that has an
        inversion network (the per-level strip of the supplementary's figures 15-16).
        """
        m, spec = self.size_multiple, self.trained.backbone.spec
        if x.dim() != 4 or x.shape[1] != 3 or any(spec.size_problem(int(n), "") for n in x.shape[-2:]):
            raise ValueError(f"expected images (N, 3, H, W) with H, W multiples of {m} of at least "
                             f"{spec.min_size} (backbone {self.trained.backbone.name}), got {tuple(x.shape)}")
        final = self.cascade.final_level if final_level is None else final_level
        if final not in self.inversions:
            raise UserError(f"no inversion network for level {final}; available: {sorted(self.inversions)}")
        t = self.trained
        x = self._input(x)
        if self.fast is not None:  # the compiled graphs; None: this call runs eager
            res = self.fast.translate(x, direction, final, return_levels)
            if res is not None:
                return res
        with inference_autocast(self.device, self.precision):
            raw = t.backbone(x, range(final, 6))  # one backbone pass gives every level the cascade reads
            feats = {l: t.normalizer.normalize(f, l) for l, f in raw.items()}
            out = self.cascade.translate(feats, direction, final)
            result = self._image(final, out[final])
            if not return_levels:
                return result
            levels = {l: self._image(l, out[l]) for l in sorted(out, reverse=True) if l in self.inversions}
        return result, levels

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _image(self, level: int, features: torch.Tensor) -> torch.Tensor:
        """I_level(features) as float32 NCHW images in [0, 1] on the CPU."""
        return to_unit(self.inversions[level](features).float()).clamp(0, 1).cpu().contiguous()

    @torch.no_grad()
    def reconstruct_tensor(self, x: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """I_level(normalized backbone features of ``x``): the untranslated baseline, with the same inversion
        artefacts as a translation. (N, 3, H, W) in [0, 1] -> same."""
        level = self.cascade.final_level if level is None else level
        if level not in self.inversions:
            raise UserError(f"no inversion network for level {level}; available: {sorted(self.inversions)}")
        x = self._input(x)
        with inference_autocast(self.device, self.precision):
            f = self.trained.normalizer.normalize(self.trained.backbone(x, [level])[level], level)
            return self._image(level, f)

    def translate(self, images, direction: str = "a2b", final_level: int | None = None,
                  return_levels: bool = False, batch_size: int = 8):
        """Translate PIL images (one or a list) or a tensor; returns the same type.

        PIL images are resized (shorter side) and centre-cropped to the run's image size. With
        ``return_levels=True`` returns ``(result, levels)`` where ``levels`` maps level -> images of the
        same type as the input.
        """
        if isinstance(images, torch.Tensor):
            single = images.dim() == 3
            x = images.unsqueeze(0) if single else images
            res = self.translate_tensor(x, direction, final_level, return_levels)
            if not return_levels:
                return res[0] if single else res
            r, lv = res
            return (r[0], {l: v[0] for l, v in lv.items()}) if single else (r, lv)
        single = isinstance(images, Image.Image)
        pil = [images] if single else list(images)
        results, levels = [], {}
        for i in range(0, len(pil), batch_size):
            x = torch.stack([self.preprocess(im) for im in pil[i: i + batch_size]])
            res = self.translate_tensor(x, direction, final_level, return_levels)
            r, lv = res if return_levels else (res, {})
            results += [to_pil(t) for t in r]
            for l, v in lv.items():
                levels.setdefault(l, []).extend(to_pil(t) for t in v)
        if single:
            results, levels = results[0], {l: v[0] for l, v in levels.items()}
        return (results, levels) if return_levels else results
