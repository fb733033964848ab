"""Data sets that are folders of whole images (Kaggle PetImages, AFHQ, DRIT, any two folders): every file is
decode-checked, the usable ones are copied byte for byte (no re-encoding), the others are named, counted and
never copied."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError
from ..images import IMAGE_EXTENSIONS, list_images, list_other_files, list_unreadable_entries, verify_image
from .output import PreparedOutput, folder_of
from .split import held_out_keys

log = logging.getLogger("deepcascade")


@dataclass
class Source:
    """One input folder of one domain."""

    domain: str  # "A" or "B"
    label: str  # the class it holds ("cat"), shown in counts and stored in the manifest
    folder: Path
    flag: str  # how the user named it, for messages ("--src afhq/train/cat")
    split: str | None = None  # "train" / "test" where the layout ships a split; None: split by test_fraction
    name_prefix: str = ""  # only files whose name starts with this (Kaggle's train/ mixes cat.N.jpg, dog.N.jpg)


def _progress(total: int, desc: str):
    from ...progress import progress

    return progress(total=total, desc=desc, unit="img", disable=None, leave=False)


def scan(source: Source) -> tuple[list[Path], list[dict]]:
    """Usable images below ``source.folder`` (sorted) and the skipped files ({file, reason})."""
    if not source.folder.is_dir():
        raise UserError(f"{source.flag}: folder not found: {source.folder}")
    def mine(paths):
        return [p for p in paths if p.name.lower().startswith(source.name_prefix)]

    files = mine(list_images(source.folder))
    bad = [{"file": str(p), "reason": "not an image file (extension not one of "
                                      f"{', '.join(sorted(IMAGE_EXTENSIONS))})", "why": "not_an_image"}
           for p in mine(list_other_files(source.folder))]
    bad += [{"file": str(p), "reason": reason, "why": "unreadable"}  # link loops, FIFOs: named, never opened
            for p, reason in list_unreadable_entries(source.folder) if mine([p])]
    good = []
    bar = _progress(len(files), f"checking {source.label}")
    for p in files:
        reason = verify_image(p)
        if reason is None:
            good.append(p)
        else:
            bad.append({"file": str(p), "reason": reason, "why": "unreadable"})
        bar.update(1)
    bar.close()
    for b in bad:
        log.warning("skipped %s: %s", b["file"], b["reason"])
    if not good:
        raise UserError(f"{source.flag}: no usable image in {source.folder} ({len(files)} file(s) with an image "
                        f"extension, {sum(b['why'] == 'unreadable' for b in bad)} unreadable); supported: "
                        f"{', '.join(sorted(IMAGE_EXTENSIONS))}")
    return good, bad


def copy_sources(prep: PreparedOutput, sources: list[Source], test_fraction: float = 0.0, seed: int = 0) -> dict:
    """Check, split and copy every source into ``prep``; then finish it. Returns the completion marker.

    A source without a shipped split is divided by :func:`held_out_keys` over the relative paths of its usable
    images: exactly ``round(test_fraction * n)`` of them go to test, the same ones on every machine and run.
    Sub-folders are kept (``trainA/sub/x.jpg``), so names never collide.
    """
    skipped: dict[str, dict[str, int]] = {}
    skipped_files: list[dict] = []
    domains = {}
    scanned = [(source, *scan(source)) for source in sources]  # every input is checked before any write
    for source, good, bad in scanned:
        domains[source.domain] = source.label
        counts = skipped.setdefault(source.label, {"unreadable": 0, "not_an_image": 0})
        for b in bad:
            counts[b.pop("why")] += 1
        skipped_files += bad
        rel = {p: p.relative_to(source.folder).as_posix() for p in good}
        test = (set() if source.split else held_out_keys(rel.values(), test_fraction, seed))
        bar = _progress(len(good), f"copying {source.label}")
        for p in good:
            split = source.split or ("test" if rel[p] in test else "train")
            prep.copy(p, f"{folder_of(split, source.domain)}/{rel[p]}",
                      {"split": split, "domain": source.domain, "class": source.label, "source": str(p)})
            bar.update(1)
        bar.close()
    return prep.finish(domains, skipped, skipped_files)
