"""Write synthesized images of one domain, their per-level strips, a grid, an interpolation and an HTML index.

Layout of the output folder: ``sample_0000.png`` ... (one per image), ``grid.png`` (the first
:data:`GRID_SAMPLES` of them), ``_levels/sample_0000.png`` (I_5 | I_4 | I_3 of the same sample) with
``save_levels``, ``interpolation.png`` with ``interpolate`` steps, ``index.html`` (the grid, then the first
:data:`PAGE_SAMPLES` samples), and ``synthesis.json`` (written last), which names every sample: what ``evaluate
--fake`` reads of such a folder (``synthesis_manifest.py``). Every file is written atomically; the same seed
writes the same bytes.

Samples are decoded and written batch by batch, so memory depends on ``batch_size``, not on ``n``: nothing is
kept per sample beyond the bounded grid and page.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..data.transforms import to_pil
from ..errors import UserError
from ..fileio import check_output_location, folder_lock
from ..outputs.grids import save_grid, save_image_atomic
from ..outputs.html import is_our_page, write_index
from .synthesis_manifest import MANIFEST, sample_name, write_manifest
from .synthesizer import Synthesizer

#: rows of the interpolation grid
INTERPOLATION_ROWS = 4
#: at most this many steps per interpolation row (their images are held at once)
MAX_INTERPOLATION_STEPS = 64
#: samples shown in grid.png (the first ones); every sample is written as its own file
GRID_SAMPLES = 64
#: samples with a row of their own on index.html (the first ones)
PAGE_SAMPLES = 64

_SAMPLE = re.compile(r"^sample_(\d{4,})\.png$")


def _grid_columns(images: torch.Tensor) -> list[torch.Tensor]:
    """``images`` as the columns of a near-square grid (blank tiles fill the last row)."""
    per_row = max(1, round(len(images) ** 0.5))
    pad = (-len(images)) % per_row
    tiles = torch.cat([images, torch.ones(pad, *images.shape[1:])]) if pad else images
    return list(tiles.view(-1, per_row, *images.shape[1:]).unbind(1))


def _existing_samples(folder: Path, n: int) -> list[Path]:
    """The files in ``folder`` named like one of samples 0 .. n-1 (one directory listing, not n lookups)."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        m = _SAMPLE.match(name)
        if m and int(m[1]) < n and sample_name(int(m[1])) == name:
            found.append(folder / name)
    return sorted(found)


def synthesize_folder(run_dir, out_dir, domain: str = "a", n: int = 64, seed: int = 0, temperature: float = 1.0,
                      final_level: int | None = None, save_levels: bool = False, interpolate: int = 0,
                      batch_size: int = 16, device: str = "auto", overwrite: bool = False,
                      synthesizer: Synthesizer | None = None, precision: str = "fp32") -> dict:
    """Synthesize ``n`` images of ``domain`` into ``out_dir``; returns {"rows", "written", "grid", ...}, where
    ``rows`` are the samples shown on the page (the first :data:`PAGE_SAMPLES`).

    Never replaces an input or a user's file: an ``out_dir`` overlapping the run directory is refused when an
    output would land on one of its files; outputs that already exist (an earlier call, perhaps with another
    seed) are replaced only with ``overwrite``, else nothing is written and the call is refused, so that one
    folder never mixes two seeds. ``out_dir`` is locked while writing. Samples are streamed to disk
    ``batch_size`` at a time.
    """
    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if interpolate == 1 or interpolate < 0 or interpolate > MAX_INTERPOLATION_STEPS:
        raise UserError(f"--interpolate needs 2 to {MAX_INTERPOLATION_STEPS} steps, got {interpolate}")
    out = Path(out_dir)
    fixed = ([out / "grid.png", out / "index.html", out / MANIFEST]
             + ([out / "interpolation.png"] if interpolate else []))

    def existing_outputs() -> list[Path]:
        # a planned sample can only replace a file that exists, so the existing ones are all that need checking
        samples = _existing_samples(out, n) + (_existing_samples(out / "_levels", n) if save_levels else [])
        return [p for p in fixed if p.exists()] + samples

    check_output_location(out, {"--run": run_dir}, fixed + existing_outputs() + [out / ".lock"])
    with folder_lock(out, "output folder"):
        existing = existing_outputs()
        if existing and not overwrite:
            index = out / "index.html"
            foreign = index.exists() and not is_our_page(index)
            raise UserError(f"{out} already holds {len(existing)} of the files this would write (e.g. "
                            f"{existing[0].name}{'; its index.html is not a deepcascade page' if foreign else ''}); "
                            f"pass --overwrite to replace them, or choose another --out")
        s = synthesizer or Synthesizer.from_run(run_dir, device=device, precision=precision)
        # decode() refuses a final level without an inversion network
        final = s.model(domain).final_level if final_level is None else int(final_level)
        shown, rows, level_names = [], [], []

        def write(image: torch.Tensor, path: Path) -> Path:
            try:
                save_image_atomic(to_pil(image), path)
            except OSError as e:
                raise UserError(f"cannot write {path}: {type(e).__name__}: {e}") from None
            return path

        i = 0
        for codes in s.code_batches(n, domain, seed, temperature, batch_size):
            result = s.decode(codes, domain, final_level, return_levels=save_levels, batch_size=batch_size)
            images, levels = result if save_levels else (result, {})
            for j in range(len(images)):
                name = sample_name(i)
                row = {"name": name, "sample": write(images[j], out / name)}
                if save_levels:
                    strip = torch.cat([levels[l][j] for l in sorted(levels, reverse=True)], dim=2)
                    row["levels"] = write(strip, out / "_levels" / name)
                if i < PAGE_SAMPLES:
                    rows.append(row)
                if i < GRID_SAMPLES:
                    shown.append(images[j].clone())
                i += 1
            level_names = sorted(levels, reverse=True)
        save_grid(_grid_columns(torch.stack(shown)), out / "grid.png")
        grid_name = f"grid of all {n}" if n <= GRID_SAMPLES else f"grid of the first {GRID_SAMPLES} of {n}"
        pages = [{"name": grid_name, "sample": out / "grid.png"}]
        if interpolate:
            walk = s.interpolate(INTERPOLATION_ROWS, interpolate, domain, seed, temperature, final_level)
            save_grid(list(walk.unbind(1)), out / "interpolation.png")
            pages.append({"name": "interpolation (row r: sample 2r -> sample 2r+1)", "sample": out / "interpolation.png"})
        notes = [f"run: {Path(run_dir).resolve()}; domain {domain.upper()}; seed {seed}; temperature {temperature:g}; "
                 f"{n} image(s) from z_5 -> G_5 -> ... -> G_{final} -> I_{final}."]
        if n > PAGE_SAMPLES:
            notes.append(f"This page shows the first {PAGE_SAMPLES}; all {n} are in this folder "
                         f"({sample_name(0)} ... {sample_name(n - 1)}).")
        if save_levels:
            notes.append("levels: " + " | ".join(f"I_{l}(synthesized level {l})" for l in level_names))
        columns = ["sample"] + (["levels"] if save_levels else [])
        write_index(out, f"deepcascade synthesis: domain {domain.upper()}", columns, pages + rows, notes)
        # last: a folder whose manifest exists holds every sample it names
        write_manifest(out, (sample_name(k) for k in range(n)), run=str(Path(run_dir).resolve()), domain=domain,
                       seed=seed, temperature=temperature, final_level=final, n=n)
    return {"rows": rows, "written": n, "grid": out / "grid.png",
            "interpolation": out / "interpolation.png" if interpolate else None, "final_level": final}
