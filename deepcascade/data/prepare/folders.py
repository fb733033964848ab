"""Any two folders of images (``--a``, ``--b``, searched recursively) -> the layout, split deterministically.

Each folder is split on its own: exactly ``round(test_fraction * n)`` of its usable images go to test, chosen
by :func:`split.held_out_keys` over their relative paths and ``--seed``. Sub-folders are kept.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UserError
from .files import Source, copy_sources
from .output import PreparedOutput


def prepare(a: str | Path, b: str | Path, out: str | Path, test_fraction: float = 0.1, seed: int = 0) -> dict:
    a, b = Path(a), Path(b)
    ra, rb = a.resolve(), b.resolve()
    if ra == rb or ra.is_relative_to(rb) or rb.is_relative_to(ra):
        raise UserError(f"--a {a} and --b {b} overlap (one is or contains the other); give two separate folders")
    label_a, label_b = a.resolve().name or "A", b.resolve().name or "B"
    if label_a == label_b:
        label_a, label_b = f"{label_a} (A)", f"{label_b} (B)"
    sources = [Source("A", label_a, a, f"--a {a}"), Source("B", label_b, b, f"--b {b}")]
    options = {"a": str(a.resolve()), "b": str(b.resolve()), "test_fraction": test_fraction, "seed": seed}
    with PreparedOutput(out, "folders", options, {"--a": a, "--b": b}) as prep:
        if not prep.start():
            return prep.meta
        return copy_sources(prep, sources, test_fraction, seed)
