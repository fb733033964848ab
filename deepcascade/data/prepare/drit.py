"""DRIT's cat2dog faces (the supplementary's non-shape task, section 3, "dataset(1) [20]").

``cat2dog.zip`` (Lee et al., DRIT, ECCV 2018) unpacks to ``cat2dog/trainA`` (cats, birman), ``trainB`` (dogs,
husky and samoyed), ``testA`` and ``testB`` (100 each): 871 cats and 1,364 dogs in all. The shipped split is
kept; files are decode-checked and copied. ``--src`` may be ``cat2dog/`` or the folder holding it.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UserError
from .files import Source, copy_sources
from .output import FOLDERS, PreparedOutput

LABELS = {"A": "cat", "B": "dog"}


def find_sources(src: Path) -> list[Source]:
    if not src.is_dir():
        raise UserError(f"--src {src}: folder not found (give the extracted cat2dog/ folder)")
    root = src if (src / "trainA").is_dir() else src / "cat2dog"
    missing = [f for f in FOLDERS if not (root / f).is_dir()]
    if missing:
        raise UserError(f"--src {src}: DRIT's cat2dog layout needs trainA/ trainB/ testA/ testB/; missing: "
                        f"{', '.join(m + '/' for m in missing)}")
    return [Source(f[-1], LABELS[f[-1]], root / f, f"--src {src} ({f}/)", split=f[:-1]) for f in FOLDERS]


def prepare(src: str | Path, out: str | Path) -> dict:
    src = Path(src)
    sources = find_sources(src)
    with PreparedOutput(out, "drit", {"src": str(src.resolve())}, {"--src": src}) as prep:
        if not prep.start():
            return prep.meta
        return copy_sources(prep, sources)
