"""Export a run's translate path to one ONNX file, checked against :class:`Translator` before it is kept.

The graph: uint8 RGB pixels (N, S, S, 3) -> [0, 1] NCHW -> backbone -> per-level normalization -> cascade
(level 5 down to the final level) -> inversion I_final -> uint8 RGB (N, S, S, 3), rounded as
``deepcascade.data.transforms.to_pil`` rounds. The batch dimension is dynamic; the image size is fixed (the
run's, or ``image_size``). Beside the file, ``<file>.json`` (:func:`~.onnx_engine.sidecar_path`) describes it.
Resizing and cropping to S stay outside the graph: every image library does them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..version import __version__
from ..data.images import list_images, load_image
from ..domains import DIRECTIONS
from ..errors import UserError
from ..fileio import atomic_path, check_output_location, write_text
from .onnx_engine import EXTRA_HINT, INPUT_NAME, LAYOUT, OUTPUT_NAME, OnnxTranslator, sidecar_path
from .translator import Translator

log = logging.getLogger("deepcascade")

OPSET = 17
MIN_PSNR = 40.0  # dB against Translator; below it the file is not kept (unless forced)
VERIFY_IMAGES = 4


class FixedAdaptivePool(nn.Module):
    """``AdaptiveAvgPool2d`` as two matrix products, for an input size known when the graph is traced.

    ONNX has no adaptive pooling whose output size does not divide the input's (the cascade's predictors pool to
    4x4 whatever they get, e.g. 2x2 maps at 64 px); the pooling matrices hold torch's windows, rows
    [floor(i H / out), ceil((i + 1) H / out)), averaged."""

    def __init__(self, output_size):
        super().__init__()
        self.out = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def matrix(n_out: int, n_in: int) -> torch.Tensor:
        m = torch.zeros(n_out, n_in)
        for i in range(n_out):
            lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
            m[i, lo:hi] = 1.0 / (hi - lo)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])  # constants in the traced graph: the image size is fixed
        return self.matrix(self.out[0], h).to(x) @ x @ self.matrix(self.out[1], w).to(x).t()


def traceable(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose adaptive average pools are :class:`FixedAdaptivePool` (same results)."""
    module = copy.deepcopy(module)
    for name, child in list(module.named_modules()):
        for key, sub in list(child.named_children()):
            if isinstance(sub, nn.AdaptiveAvgPool2d):
                setattr(child, key, FixedAdaptivePool(sub.output_size))
    return module


class TranslatePath(nn.Module):
    """One direction of a :class:`Translator` as a single module: uint8 NHWC in, uint8 NHWC out."""

    def __init__(self, translator: Translator, direction: str, final_level: int):
        super().__init__()
        t = translator.trained
        self.backbone, self.normalizer = t.backbone, t.normalizer
        self.cascade = traceable(translator.cascade)
        self.inversion = translator.inversions[final_level]
        self.direction, self.final_level = direction, final_level

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() / 255.0
        final = self.final_level
        raw = self.backbone(x, range(final, 6))
        feats = {l: self.normalizer.normalize(f, l) for l, f in raw.items()}
        out = self.cascade.translate(feats, self.direction, final)[final]
        y = ((self.inversion(out) + 1.0) / 2.0).clamp(0, 1)  # network images are in [-1, 1]
        return torch.floor(y * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)


def import_onnx():
    try:
        import onnx
    except ImportError:
        raise UserError(f"onnx is not installed: {EXTRA_HINT}") from None
    return onnx


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays (peak 255); inf when they are equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def verification_images(translator: Translator, direction: str, n: int = VERIFY_IMAGES) -> tuple[np.ndarray, str]:
    """Up to ``n`` of the run's test images of the source domain as (n, S, S, 3) uint8, and where they came from.

    Falls back to the training images, then to seeded noise when the run's data folders are gone."""
    d = translator.trained.cfg.data
    folders = [d.test_a, d.domain_a] if direction == "a2b" else [d.test_b, d.domain_b]
    s = translator.image_size
    for folder in folders:
        if not folder or not Path(folder).is_dir():
            continue
        rows = []
        for p in list_images(folder):
            try:
                rows.append(translator.preprocess(load_image(p, max_side=4 * s)))
            except (OSError, ValueError):
                continue
            if len(rows) == n:
                break
        if rows:
            x = torch.stack(rows)
            return (x * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy(), f"{len(rows)} image(s) of {folder}"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, s, s, 3), dtype=np.uint8), f"{n} noise image(s) (the run's data is gone)"


def default_out(translator: Translator, direction: str) -> Path:
    """``<run name>_<direction>.onnx`` in the current folder."""
    return Path(f"{translator.trained.cfg.name or translator.trained.run.path.name}_{direction}.onnx")


def export_onnx(run_dir: str | Path, direction: str = "a2b", out: str | Path | None = None,
                image_size: int | None = None, force: bool = False, overwrite: bool = False) -> dict:
    """Export ``run_dir``'s ``direction`` to ONNX at ``out``, check it with onnxruntime against
    :class:`Translator` on a few of the run's images, and keep it only at ``MIN_PSNR`` dB or more (or ``force``).

    Returns a report: ``out``, ``sidecar``, ``seconds`` (export and check), ``bytes``, ``max_abs_diff`` (8-bit
    grey levels), ``psnr`` (dB) and ``checked_on``. A refusal raises UserError and leaves no file behind.
    """
    import_onnx()
    from .onnx_engine import import_onnxruntime
    import_onnxruntime()
    if direction not in DIRECTIONS:
        raise UserError(f"--direction must be a2b or b2a, got {direction!r}")
    start = time.perf_counter()
    t = Translator.from_run(run_dir, device="cpu")
    spec = t.trained.backbone.spec
    size = image_size or t.image_size
    if (problem := spec.size_problem(size, "--image-size")) is not None:
        raise UserError(problem)
    t.image_size = size
    out = Path(out) if out else default_out(t, direction)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--out {out} should end in .onnx")
    side = sidecar_path(out)
    for f in (out, side):
        if f.exists() and not overwrite:
            raise UserError(f"{f} exists; pass --overwrite to replace it, or choose another --out")
        if f.is_dir():
            raise UserError(f"--out {f} is a folder; give a file name ending in .onnx")
    check_output_location(out.parent, {"--run": run_dir}, [out, side])

    final = t.cascade.final_level
    module = TranslatePath(t, direction, final).eval()
    x, source = verification_images(t, direction)
    with torch.no_grad():
        reference = (t.translate_tensor(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0, direction)
                     * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    info = {"format": "onnx", "opset": OPSET, "image_size": size, "direction": direction, "final_level": final,
            "input": {"name": INPUT_NAME, "layout": LAYOUT, "shape": ["N", size, size, 3]},
            "output": {"name": OUTPUT_NAME, "layout": LAYOUT, "shape": ["N", size, size, 3]},
            "preprocess": "RGB; shorter side resized to image_size (bicubic), centre crop to a square",
            "run": {"name": t.trained.cfg.name, "path": str(Path(run_dir).resolve()),
                    "config_sha256": hashlib.sha256(t.trained.run.config_file.read_bytes()).hexdigest()},
            "backbone": t.trained.backbone.name, "deepcascade_version": __version__}
    with atomic_path(out) as tmp:
        try:
            with torch.no_grad(), _quiet_exporter():
                torch.onnx.export(module, (torch.from_numpy(x[:1]),), str(tmp), dynamo=False, opset_version=OPSET,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}})
        except Exception as e:  # an operation ONNX cannot express: say which, keep nothing
            raise UserError(f"torch could not export the translate path of {run_dir} (backbone "
                            f"{t.trained.backbone.name}) to ONNX opset {OPSET}: {type(e).__name__}: "
                            f"{str(e).splitlines()[0][:300]}; nothing written") from None
        got = OnnxTranslator.from_file(tmp, device="cpu", info=info).translate_array(x)
        diff = int(np.abs(got.astype(np.int16) - reference.astype(np.int16)).max())
        db = psnr(got, reference)
        report = {"out": out, "sidecar": side, "bytes": tmp.stat().st_size, "max_abs_diff": diff, "psnr": db,
                  "checked_on": source, "batch": len(x)}
        if db < MIN_PSNR and not force:
            raise UserError(f"the exported graph differs from the PyTorch translation: PSNR {db:.1f} dB < "
                            f"{MIN_PSNR:.0f} dB (max abs difference {diff}/255 on {source}); nothing written. "
                            f"Pass --force to keep it anyway")
        info["verification"] = {"psnr_db": None if math.isinf(db) else round(db, 2), "max_abs_diff": diff,
                                "images": source, "against": "deepcascade.Translator (PyTorch, fp32, CPU)"}
        write_text(side, json.dumps(info, indent=2) + "\n")
    report["seconds"] = time.perf_counter() - start
    return report


class _quiet_exporter:
    """Silence the exporter's own warnings (tracer notes on Python-side shape checks, which are constants for a
    fixed image size); errors still raise."""

    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
