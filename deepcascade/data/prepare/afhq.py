"""AFHQ, Animal Faces-HQ (StarGAN v2): about 5,000 training and 500 test faces per class at 512x512.

Layout under ``--src``: ``train/<class>/`` and ``val/<class>/`` (AFHQ) or ``test/<class>/`` (AFHQ-v2, the same
set re-resized with Lanczos); classes ``cat``, ``dog``, ``wild``. ``--domains A,B`` picks two classes: the
shipped train split becomes ``trainA/trainB``, the shipped val/test split ``testA/testB``, unchanged, so that
numbers stay comparable with others reported on AFHQ.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UserError
from .files import Source, copy_sources
from .output import PreparedOutput

TEST_FOLDERS = ("val", "test")  # AFHQ, AFHQ-v2


def find_sources(src: Path, domains: list[str]) -> list[Source]:
    if not src.is_dir():
        raise UserError(f"--src {src}: folder not found (give the extracted afhq/ folder with train/ and val/)")
    train = src / "train"
    test = next((src / t for t in TEST_FOLDERS if (src / t).is_dir()), None)
    if not train.is_dir() or test is None:
        raise UserError(f"--src {src}: expected AFHQ's train/ and val/ (or test/) folders; found "
                        f"{sorted(p.name + '/' for p in src.iterdir() if p.is_dir()) or 'no folders'}")
    available = sorted(p.name for p in train.iterdir() if p.is_dir())
    if len(domains) != 2 or domains[0] == domains[1]:
        raise UserError(f"--domains needs two different classes separated by a comma (e.g. cat,dog), got "
                        f"{','.join(domains)!r}; available: {', '.join(available)}")
    sources = []
    for domain, name in zip("AB", domains):
        if name not in available:
            raise UserError(f"--domains: unknown class {name!r} in {train}; available: {', '.join(available)}")
        sources.append(Source(domain, name, train / name, f"--src {src} (train/{name})", split="train"))
        sources.append(Source(domain, name, test / name, f"--src {src} ({test.name}/{name})", split="test"))
    return sources


def prepare(src: str | Path, out: str | Path, domains: list[str]) -> dict:
    src = Path(src)
    sources = find_sources(src, domains)
    with PreparedOutput(out, "afhq", {"src": str(src.resolve()), "domains": list(domains)}, {"--src": src}) as prep:
        if not prep.start():
            return prep.meta
        return copy_sources(prep, sources)
