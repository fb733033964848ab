"""Write synthesized images of one domain, their per-level strips, a grid, an interpolation and an HTML index.

Layout of the output folder: ``sample_0000.png`` ... (one per image), ``grid.png`` (all of them),
``_levels/sample_0000.png`` (I_5 | I_4 | I_3 of the same sample) with ``save_levels``, ``interpolation.png``
with ``interpolate`` steps, ``index.html``, and ``synthesis.json`` (written last), which names the samples: what
``evaluate --fake`` reads of such a folder (``synthesis_manifest.py``). Every file is written atomically; the
same seed writes the same bytes.
"""

from __future__ import annotations

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


def _grid_columns(images: torch.Tensor) -> list[torch.Tensor]:
    """``images`` as the columns of a near-square grid (blank tiles fill the last row)."""
    per_row = max(1, round(len(images) ** 0.5))
    pad = (-len(images)) % per_row
    tiles = torch.cat([images, torch.ones(pad, *images.shape[1:])]) if pad else images
    return list(tiles.view(-1, per_row, *images.shape[1:]).unbind(1))


def synthesize_folder(run_dir, out_dir, domain: str = "a", n: int = 64, seed: int = 0, temperature: float = 1.0,
                      final_level: int | None = None, save_levels: bool = False, interpolate: int = 0,
                      batch_size: int = 16, device: str = "auto", overwrite: bool = False,
                      synthesizer: Synthesizer | None = None, precision: str = "fp32") -> dict:
    """Synthesize ``n`` images of ``domain`` into ``out_dir``; returns {"rows", "written", "grid", ...}.

    Never replaces an input or a user's file: an ``out_dir`` overlapping the run directory is refused when an
    output would land on one of its files; outputs that already exist (an earlier call, perhaps with another
    seed) are replaced only with ``overwrite``, else nothing is written and the call is refused, so that one
    folder never mixes two seeds. ``out_dir`` is locked while writing.
    """
    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if interpolate == 1 or interpolate < 0:
        raise UserError(f"--interpolate needs at least 2 steps, got {interpolate}")
    out = Path(out_dir)
    names = [sample_name(i) for i in range(n)]
    planned = ([out / name for name in names] + ([out / "_levels" / name for name in names] if save_levels else [])
               + [out / "grid.png", out / "index.html", out / MANIFEST]
               + ([out / "interpolation.png"] if interpolate else []))
    check_output_location(out, {"--run": run_dir}, planned + [out / ".lock"])
    with folder_lock(out, "output folder"):
        existing = [p for p in planned if p.exists()]
        if existing and not overwrite:
            index = out / "index.html"
            foreign = index.exists() and not is_our_page(index)
            raise UserError(f"{out} already holds {len(existing)} of the files this would write (e.g. "
                            f"{existing[0].name}{'; its index.html is not a deepcascade page' if foreign else ''}); "
                            f"pass --overwrite to replace them, or choose another --out")
        s = synthesizer or Synthesizer.from_run(run_dir, device=device, precision=precision)
        images, levels = s.sample(n, domain, seed, temperature, final_level, return_levels=True, as_tensor=True,
                                  batch_size=batch_size)
        rows = []

        def write(image: torch.Tensor, path: Path) -> Path:
            try:
                save_image_atomic(to_pil(image), path)
            except OSError as e:
                raise UserError(f"cannot write {path}: {type(e).__name__}: {e}") from None
            return path

        for i, name in enumerate(names):
            row = {"name": name, "sample": write(images[i], out / name)}
            if save_levels:
                strip = torch.cat([levels[l][i] for l in sorted(levels, reverse=True)], dim=2)
                row["levels"] = write(strip, out / "_levels" / name)
            rows.append(row)
        save_grid(_grid_columns(images), out / "grid.png")
        pages = [{"name": f"grid of all {n}", "sample": out / "grid.png"}]
        if interpolate:
            walk = s.interpolate(INTERPOLATION_ROWS, interpolate, domain, seed, temperature, final_level)
            save_grid(list(walk.unbind(1)), out / "interpolation.png")
            pages.append({"name": "interpolation (row r: sample 2r -> sample 2r+1)", "sample": out / "interpolation.png"})
        final = min(levels)  # the final level always has an inversion network (Synthesizer.decode checks it)
        notes = [f"run: {Path(run_dir).resolve()}; domain {domain.upper()}; seed {seed}; temperature {temperature:g}; "
                 f"{n} image(s) from z_5 -> G_5 -> ... -> G_{final} -> I_{final}."]
        if save_levels:
            notes.append("levels: " + " | ".join(f"I_{l}(synthesized level {l})" for l in sorted(levels, reverse=True)))
        columns = ["sample"] + (["levels"] if save_levels else [])
        write_index(out, f"deepcascade synthesis: domain {domain.upper()}", columns, pages + rows, notes)
        # last: a folder whose manifest exists holds every sample it names
        write_manifest(out, names, run=str(Path(run_dir).resolve()), domain=domain, seed=seed,
                       temperature=temperature, final_level=final, n=n)
    return {"rows": rows, "written": n, "grid": out / "grid.png",
            "interpolation": out / "interpolation.png" if interpolate else None, "final_level": final}
