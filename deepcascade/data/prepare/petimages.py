"""Kaggle Dogs vs Cats (cat <-> dog on whole photos, the paper's "Kaggle cat to dog", supplementary figs. 9-12).

Two layouts of the same 25,000 photos are recognised under ``--src``:

- Microsoft's ``kagglecatsanddogs_*.zip``: ``PetImages/Cat/*.jpg`` and ``PetImages/Dog/*.jpg``, 12,500 each
  (``--src`` may be ``PetImages/`` or the folder holding it). It is known to contain zero-byte and corrupt JPEGs
  (e.g. ``Cat/666.jpg``, ``Dog/11702.jpg``) and a ``Thumbs.db`` per folder.
- The Kaggle competition's ``train.zip``: one folder ``train/`` of ``cat.N.jpg`` and ``dog.N.jpg``.

Cats are domain A, dogs domain B. No split ships with either, so each class is split deterministically
(``--test-fraction``, ``--seed``; see ``split.held_out_keys``). Unreadable files are named and counted, never
copied.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UserError
from .files import Source, copy_sources
from .output import PreparedOutput


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name``, whatever its case."""
    if not folder.is_dir():
        return None
    for p in folder.iterdir():
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def find_sources(src: Path) -> list[Source]:
    if not src.is_dir():
        raise UserError(f"--src {src}: folder not found (give the extracted PetImages/ folder)")
    for root in (src, _child(src, "PetImages")):
        cat, dog = (_child(root, "Cat"), _child(root, "Dog")) if root else (None, None)
        if cat and dog:
            return [Source("A", "cat", cat, f"--src {src} ({cat.name}/)"),
                    Source("B", "dog", dog, f"--src {src} ({dog.name}/)")]
    for root in (src, _child(src, "train")):
        if root and any(root.glob("cat.*")) and any(root.glob("dog.*")):
            return [Source("A", "cat", root, f"--src {src} (cat.*)", name_prefix="cat."),
                    Source("B", "dog", root, f"--src {src} (dog.*)", name_prefix="dog.")]
    raise UserError(f"--src {src}: found neither the PetImages layout (Cat/ and Dog/) nor Kaggle's train/ "
                    f"layout (cat.N.jpg and dog.N.jpg)")


def prepare(src: str | Path, out: str | Path, test_fraction: float = 0.1, seed: int = 0) -> dict:
    src = Path(src)
    sources = find_sources(src)
    options = {"src": str(src.resolve()), "test_fraction": test_fraction, "seed": seed}
    with PreparedOutput(out, "cats-dogs", options, {"--src": src}) as prep:
        if not prep.start():
            return prep.meta
        return copy_sources(prep, sources, test_fraction, seed)
