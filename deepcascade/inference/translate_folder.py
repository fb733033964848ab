"""Translate every image below a path and write results, strips and an HTML index."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from ..progress import progress

from ..data.images import (IMAGE_EXTENSIONS, failure_reason, list_images, list_other_files, list_unreadable_entries,
                           load_image)
from ..data.transforms import center_square, to_pil
from ..errors import UserError
from ..fileio import check_output_location, folder_lock
from ..outputs.html import is_our_page, write_index
from ..outputs.grids import save_image_atomic
from .translator import Translator

log = logging.getLogger("deepcascade")

# PIL writes these under the same extension; anything else is written as PNG beside the original name.
_WRITABLE = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def output_name(rel: Path) -> Path:
    """Same relative name; formats PIL cannot write as RGB (e.g. GIF) get '.png' appended."""
    return rel if rel.suffix.lower() in _WRITABLE else rel.with_name(rel.name + ".png")


def png_name(rel: Path) -> Path:
    """``rel`` as a PNG name for the side folders (``_sources``, ``_levels``)."""
    return rel if rel.suffix.lower() == ".png" else rel.with_name(rel.name + ".png")


SIDE_FOLDERS = ("_sources", "_levels")  # copies of the inputs and per-level strips, beside the translations


def translation_files(folder: str | Path) -> list[Path] | None:
    """The translations in a ``translate`` output folder (one with a page of ours), without its side folders;
    None for any other folder."""
    folder = Path(folder)
    if not is_our_page(folder / "index.html"):
        return None
    return [p for p in list_images(folder) if p.relative_to(folder).parts[0] not in SIDE_FOLDERS]


def translate_folder(run_dir, input_path, out_dir, direction=None, final_level=None, save_levels=False,
                     batch_size=8, device="auto", translator: Translator | None = None,
                     overwrite: bool = False, precision: str | None = None, engine: str = "torch",
                     model=None, optimize: bool = False) -> dict:
    """Translate all images under ``input_path`` into ``out_dir``; unreadable inputs are skipped and named.

    Never writes into the input: an ``out_dir`` that is, lies inside or contains ``input_path`` is refused
    (:func:`~deepcascade.fileio.check_output_location`): translations, ``_sources`` and ``_levels`` written into
    a data set would be read back as data by training, ``evaluate`` and the next ``translate``. An image whose
    output files already exist is kept as it is (counted in ``kept``) unless ``overwrite``. ``out_dir`` is
    locked for the run, so a second process writing into it is refused. ``precision`` and ``optimize`` (the
    compiled fast path): see :meth:`Translator.from_run` (ignored when ``translator`` is given).

    ``engine="onnxruntime"`` translates with ``model``, a file written by ``deepcascade export`` (no ``run_dir``;
    its direction and final level are the file's, and it has no per-level strips). ``direction`` defaults to
    a2b (the file's with onnxruntime).
    """
    if engine == "onnxruntime" and translator is None:
        if optimize:
            raise UserError("--optimize needs --engine torch (it compiles the run's networks); onnxruntime "
                            "optimizes an exported file itself")
        translator = OnnxEngine.open(model, device, direction, final_level, save_levels, precision)
    elif engine != "torch" and translator is None:
        raise UserError(f"--engine must be 'torch' or 'onnxruntime', got {engine!r}")
    direction = direction or getattr(translator, "direction", None) or "a2b"
    input_path, out_dir = Path(input_path), Path(out_dir)
    if not input_path.exists():
        raise UserError(f"--input not found: {input_path}")
    files = list_images(input_path)
    if not files:
        raise UserError(f"no image files in {input_path} (supported: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    root = input_path if input_path.is_dir() else input_path.parent

    def outputs_of(p: Path) -> dict:
        rel = p.relative_to(root)
        paths = {"result": out_dir / output_name(rel), "source": out_dir / "_sources" / png_name(rel)}
        if save_levels:
            paths["levels"] = out_dir / "_levels" / png_name(rel)
        return paths

    planned = {p: outputs_of(p) for p in files}
    check_output_location(out_dir, {"--input": input_path}, None)
    with folder_lock(out_dir, "output folder"):
        index = out_dir / "index.html"
        if index.exists() and not overwrite and not is_our_page(index):
            raise UserError(f"{index} exists and was not written by deepcascade; pass --overwrite to replace it, "
                            f"or choose another --out")
        kept = [] if overwrite else [p for p in files if any(f.exists() for f in planned[p].values())]
        return _translate(run_dir, input_path, files, planned, kept, root, out_dir, direction, final_level,
                          save_levels, batch_size, device, translator, precision, optimize)


def _translate(run_dir, input_path, files, planned, kept, root, out_dir, direction, final_level, save_levels,
               batch_size, device, translator, precision=None, optimize=False) -> dict:
    t = translator or Translator.from_run(run_dir, device=device, final_level=final_level, precision=precision,
                                          optimize=optimize)
    final = final_level or t.final_level
    skipped = [(p, "not an image file") for p in list_other_files(input_path)] + list_unreadable_entries(input_path)
    kept_set = set(kept)
    rows = [{"name": str(p.relative_to(root)), **{k: (f if f.exists() else None) for k, f in planned[p].items()}}
            for p in kept]
    files = [p for p in files if p not in kept_set]
    written = 0
    bar = progress(total=len(files), desc=f"translate {direction}", unit="img", dynamic_ncols=True)
    for i in range(0, len(files), batch_size):
        batch, names = [], []
        for p in files[i: i + batch_size]:
            try:
                img = load_image(p, max_side=4 * t.image_size)
                if min(img.size) < t.image_size // 2:
                    log.warning("%s is %dx%d, much smaller than the %d px the run works at: upscaled",
                                p, img.width, img.height, t.image_size)
                batch.append(t.preprocess(img))
                names.append(p)
            except Exception as e:  # unreadable input: name it, go on
                reason = failure_reason(e, p)
                log.warning("skipped unreadable image %s: %s", p, reason)
                skipped.append((p, reason))
        bar.update(len(files[i: i + batch_size]))
        if not batch:
            continue
        x = torch.stack(batch)
        if save_levels:
            result, levels = t.translate_tensor(x, direction, final, return_levels=True)
        else:
            result, levels = t.translate_tensor(x, direction, final), {}
        for j, p in enumerate(names):
            row = {"name": str(p.relative_to(root)), **planned[p]}
            images = {"result": result[j], "source": x[j]}
            if save_levels:
                images["levels"] = torch.cat([x[j]] + [levels[l][j] for l in sorted(levels, reverse=True)], dim=2)
            for key, img in images.items():
                try:  # temporary file + rename: a failed write leaves any previous file intact
                    save_image_atomic(to_pil(img), row[key])
                except OSError as e:
                    raise UserError(f"cannot write {row[key]}: {type(e).__name__}: {e}; {written} image(s) were "
                                    f"written before this one") from None
            rows.append(row)
            written += 1
    bar.close()
    columns = ["source", "result"] + (["levels"] if save_levels else [])
    origin = getattr(t, "origin", None) or f"run: {Path(run_dir).resolve() if run_dir else ''}"
    notes = [f"{origin}; direction {direction}; final level {final}; "
             f"{written} translated, {len(kept)} kept from before, {len(skipped)} skipped."]
    if save_levels:
        notes.append("levels: source | " + " | ".join(f"I_{l}(translated level {l})"
                                                      for l in sorted(t.inversions, reverse=True) if l >= final))
    if skipped:
        notes.append("skipped: " + "; ".join(f"{p} ({r})" for p, r in skipped))
    rows.sort(key=lambda r: r["name"])
    write_index(out_dir, f"deepcascade translation {direction}", columns, rows, notes)
    return {"written": written, "skipped": skipped, "kept": kept, "rows": rows}


class OnnxEngine:
    """A file from ``deepcascade export`` run by onnxruntime, behind the part of :class:`Translator`'s interface
    the folder loop uses (float [0, 1] NCHW tensors in and out; the file itself works in uint8)."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.image_size, self.direction = onnx.image_size, onnx.direction
        self.final_level = onnx.final_level
        self.inversions = {self.final_level: None}
        self.origin = f"model: {Path(onnx.path).resolve()}"

    @classmethod
    def open(cls, model, device="auto", direction=None, final_level=None, save_levels=False, precision=None):
        """Open ``model``, refusing options the file cannot honour (named, with what to do instead)."""
        from .onnx_engine import OnnxTranslator

        if not model:
            raise UserError("--engine onnxruntime needs --model FILE.onnx (written by `deepcascade export`)")
        if save_levels:
            raise UserError("--save-levels needs --engine torch: an exported file holds the final translation only")
        if precision not in (None, "fp32"):
            raise UserError(f"--precision {precision} needs --engine torch: an exported file computes in float32")
        engine = cls(OnnxTranslator.from_file(model, device=device))
        if direction and direction != engine.direction:
            raise UserError(f"--direction {direction}: {model} translates {engine.direction}; export the other "
                            f"direction with `deepcascade export --direction {direction}`")
        if final_level and final_level != engine.final_level:
            raise UserError(f"--final-level {final_level}: {model} translates to level {engine.final_level}")
        return engine

    def preprocess(self, image) -> torch.Tensor:
        return center_square(image, self.image_size)

    def translate_tensor(self, x: torch.Tensor, direction: str, final_level=None, return_levels=False):
        pixels = (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        out = torch.from_numpy(self.onnx.translate_array(pixels)).permute(0, 3, 1, 2).float() / 255.0
        return (out, {}) if return_levels else out
