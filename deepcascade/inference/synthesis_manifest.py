"""``synthesis.json``: what a ``deepcascade synthesize`` folder holds, so that its samples are known by name.

A synthesize folder mixes the samples with pictures made *of* them (``grid.png``, ``interpolation.png``, the
strips in ``_levels/``). Anything that reads the folder as a set of samples, ``evaluate --fake`` first of all,
must read the samples alone: a grid read as one more sample (at its own, much larger size) once turned a
measured 80 % into 1 %. ``synthesize`` therefore writes this manifest, and :func:`synthesis_samples` returns the
files it names. Folders written before the manifest existed are recognised by their layout (a deepcascade
``index.html``, ``grid.png`` and ``sample_0000.png`` side by side).

No torch here: ``evaluate`` and ``synthesize`` both import it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ..errors import UserError
from ..fileio import atomic_path
from ..outputs.html import is_our_page

#: the manifest's file name inside a synthesize output folder
MANIFEST = "synthesis.json"
#: its "kind" field: tells it from any other JSON file a user may keep there
KIND = "deepcascade synthesize"


def sample_name(i: int) -> str:
    return f"sample_{i:04d}.png"


def write_manifest(folder: str | Path, samples: Iterable[str], **info) -> Path:
    """Write ``folder/synthesis.json`` listing ``samples`` (file names in ``folder``) and ``info`` (plain
    values: run, domain, seed, ...), atomically. ``samples`` may be an iterator: the list is written name by
    name (the bytes of ``json.dumps(..., indent=1)``), never held whole in memory."""
    path = Path(folder) / MANIFEST
    head = json.dumps({"kind": KIND, **info}, indent=1)[:-2]  # without the closing "\n}"
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(head + ',\n "samples": [')
        empty = True
        for name in samples:
            f.write(("\n  " if empty else ",\n  ") + json.dumps(name))
            empty = False
        f.write("]\n}\n" if empty else "\n ]\n}\n")
    return path


def synthesis_samples(folder: str | Path) -> list[Path] | None:
    """The sample files of a synthesize output folder, in order; None when ``folder`` is not one.

    With a manifest: exactly the files it lists (a listed file that is missing is an error naming it, so a
    half-deleted folder is never scored as if complete). Without one, a folder laid out by synthesize (its
    ``index.html``, ``grid.png`` and ``sample_0000.png``): its top-level ``sample_*.png`` files.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{manifest}: cannot read it as synthesize's manifest ({type(e).__name__}: {e}); "
                            f"delete it to read every image of {folder}") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            return None  # a user's own file of that name
        samples = data.get("samples")
        if not isinstance(samples, list) or not all(isinstance(s, str) and "/" not in s for s in samples):
            raise UserError(f"{manifest}: 'samples' must be a list of file names in {folder}")
        files = [folder / s for s in samples]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise UserError(f"{manifest} lists {len(missing)} sample(s) that are not in {folder} "
                            f"(e.g. {missing[0].name}); synthesize the folder again")
        return files
    if ((folder / "grid.png").is_file() and (folder / sample_name(0)).is_file()
            and is_our_page(folder / "index.html")):
        return sorted(folder.glob("sample_*.png"))
    return None
