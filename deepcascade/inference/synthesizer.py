"""The Python API of deepVAE synthesis: ``Synthesizer.from_run("runs/x").sample(n, domain="a", seed=0)``.

New images of one domain, drawn from the prior and decoded through the feature hierarchy (Fig. 19 b of the
supplementary): z_5 -> G_5 -> G_4(., z_4) -> G_3(., z_3) -> I_3. Sample i's codes are the i-th draw of a
``torch.Generator`` seeded with ``seed`` (one vector per sample holding z_5, z_4, ... in that order, drawn on
the CPU), so a seed gives the same codes for any ``n`` and device, and the same images on every call (across
batch sizes and devices, equal within float rounding).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch
from ..data.transforms import to_pil
from ..domains import parse_domain
from ..errors import UserError
from ..rundir import TrainedRun, open_run
from ..networks import SynthesisModel
from ..outputs.grids import to_unit
from ..precision import inference_autocast, resolve_precision, use_channels_last

def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between codes (rows of ``a`` and ``b``): Gaussian codes live near a sphere, and a
    straight line between two of them passes through codes of unusually small norm."""
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((an * bn).sum(1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


class Synthesizer:
    """A trained run, ready to synthesize images of either domain with its deepVAEs."""

    def __init__(self, trained: TrainedRun, precision: str = "fp32"):
        self.trained = trained
        #: 'fp32', 'bf16' or 'fp16' ('auto' resolved for the device, see deepcascade.precision)
        self.precision = resolve_precision(precision, trained.device)
        self.channels_last = use_channels_last(trained.device, self.precision)
        self.image_size = trained.cfg.data.image_size
        self._models: dict[str, SynthesisModel] = {}
        self._inversions: dict[int, torch.nn.Module] = {}

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto", precision: str = "fp32") -> "Synthesizer":
        """Open a run directory whose ``synth`` stages were trained by ``deepcascade train --stage synth``
        (each domain's deepVAE is loaded on first use). ``precision`` as in ``Translator.from_run``: 'fp32'
        (default), 'bf16', 'fp16' or 'auto'."""
        trained = open_run(run_dir, device)
        return cls(trained, precision)

    @property
    def device(self) -> torch.device:
        return self.trained.device

    # ------------------------------------------------------------------------------------------ models
    def model(self, domain: str) -> SynthesisModel:
        """The deepVAE of ``domain`` ('a' or 'b'), as deep as it has been trained down to ``synth.final_level``."""
        domain = parse_domain(domain)
        if domain not in self._models:
            model = self.trained.models.hierarchy("synth", self.trained.synthesis_level(domain), domain)
            self._models[domain] = model.to(memory_format=torch.channels_last) if self.channels_last else model
        return self._models[domain]

    def inversion(self, level: int):
        """I_level, or None when it was not trained."""
        if level not in self._inversions:
            net = self.trained.models.inversion(level)
            if net is not None and self.channels_last:
                net.to(memory_format=torch.channels_last)
            self._inversions[level] = net
        return self._inversions[level]

    # ------------------------------------------------------------------------------------------ codes
    def codes(self, n: int, domain: str = "a", seed: int = 0, temperature: float = 1.0) -> dict[int, torch.Tensor]:
        """{level: (n, nz_level)} prior codes on the device: sample i's codes are the i-th draw of the seeded
        generator, times ``temperature`` (< 1 trades variety for typical samples)."""
        return next(self.code_batches(n, domain, seed, temperature, batch_size=n))

    def code_batches(self, n: int, domain: str = "a", seed: int = 0, temperature: float = 1.0,
                     batch_size: int = 16) -> Iterator[dict[int, torch.Tensor]]:
        """The codes of :meth:`codes` (the same values) in consecutive batches of at most ``batch_size``
        samples, drawn as they are asked for: memory holds one batch, whatever ``n``."""
        if n < 1:
            raise UserError(f"the number of samples must be >= 1, got {n}")
        if not (temperature > 0 and math.isfinite(temperature)):
            raise UserError(f"temperature must be a positive number, got {temperature}")
        sizes = self.model(domain).code_sizes
        g = torch.Generator().manual_seed(int(seed))
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            flat = torch.stack([torch.randn(sum(sizes.values()), generator=g) for _ in range(count)]) * temperature
            parts = flat.split(list(sizes.values()), dim=1)
            yield {level: part.to(self.device) for level, part in zip(sizes, parts)}

    # ------------------------------------------------------------------------------------------ decoding
    @torch.no_grad()
    def decode(self, codes: dict[int, torch.Tensor], domain: str = "a", final_level: int | None = None,
               return_levels: bool = False, batch_size: int = 16):
        """Images (N, 3, S, S) in [0, 1] (on the CPU) from prior codes; with ``return_levels`` also
        {level: I_level(synthesized level)} for every level with an inversion network."""
        model = self.model(domain)
        final = model.final_level if final_level is None else int(final_level)
        if final < model.final_level or final > 5:
            raise UserError(f"final level {final} is not trained for domain {domain.upper()} (its deepVAE reaches "
                            f"level {model.final_level}); train it with --stage synth --domain {domain}")
        if self.inversion(final) is None:
            raise UserError(f"the inversion network of level {final} is not trained in {self.trained.run.path}; "
                            f"run `deepcascade train CONFIG --stage invert`")
        n = next(iter(codes.values())).shape[0]
        results, levels = [], {}
        for i in range(0, n, batch_size):
            with inference_autocast(self.device, self.precision):
                out = model({l: z[i: i + batch_size] for l, z in codes.items()}, final)
                results.append(self._image(final, out[final]))
                if return_levels:
                    for l in sorted(out, reverse=True):
                        if self.inversion(l) is not None:
                            levels.setdefault(l, []).append(self._image(l, out[l]))
        result = torch.cat(results)
        return (result, {l: torch.cat(v) for l, v in levels.items()}) if return_levels else result

    def _image(self, level: int, features: torch.Tensor) -> torch.Tensor:
        return to_unit(self.inversion(level)(features).float()).clamp(0, 1).cpu().contiguous()

    def sample(self, n: int, domain: str = "a", seed: int = 0, temperature: float = 1.0,
               final_level: int | None = None, return_levels: bool = False, as_tensor: bool = False,
               batch_size: int = 16):
        """``n`` new images of ``domain``: a list of PIL images, or with ``as_tensor`` a tensor (n, 3, S, S) in
        [0, 1]. With ``return_levels`` returns ``(images, {level: images})``, the per-level views I_5 | I_4 | I_3
        of Fig. 19. The same seed gives the same images."""
        codes = self.codes(n, domain, seed, temperature)
        res = self.decode(codes, domain, final_level, return_levels, batch_size)
        result, levels = res if return_levels else (res, {})
        if not as_tensor:
            result = [to_pil(t) for t in result]
            levels = {l: [to_pil(t) for t in v] for l, v in levels.items()}
        return (result, levels) if return_levels else result

    def interpolate(self, rows: int = 4, steps: int = 8, domain: str = "a", seed: int = 0,
                    temperature: float = 1.0, final_level: int | None = None) -> torch.Tensor:
        """Images (rows, steps, 3, S, S) in [0, 1]: row r walks from sample 2r to sample 2r+1 of the same seed
        (every level's code interpolated spherically)."""
        if rows < 1 or steps < 2:
            raise UserError(f"interpolation needs rows >= 1 and steps >= 2, got {rows} and {steps}")
        codes = self.codes(2 * rows, domain, seed, temperature)
        ts = torch.linspace(0, 1, steps).tolist()
        walk = {l: torch.stack([slerp(z[0::2], z[1::2], t) for t in ts], dim=1).flatten(0, 1)
                for l, z in codes.items()}
        images = self.decode(walk, domain, final_level)
        return images.view(rows, steps, *images.shape[1:])

