"""A built-in pair written as a prepared data set: ``OUT/{trainA,trainB,testA,testB}/*.png`` and ``synthetic.json``.

The folder is a ``prepare`` output like every other kind's (``data/prepare/output.py``: ``prepare.json``
completion marker, ``manifest.jsonl``, atomic files, lock, an interrupted run completed). ``synthetic.json``
says which pair, generator version, seed and size drew the images, so that ``evaluate`` can draw every source
image's object mask again (:func:`source_with_mask`). File ``{A,B}_train_NNNNNN.png`` is generator index
NNNNNN, ``{A,B}_test_NNNNNN.png`` index ``test_index_base + NNNNNN``.

Every image is a pure function of its pair, domain, index, size and seed, so a re-run keeps the images there,
a bigger count extends a smaller set, and anything else (other pair, seed, size, version, or fewer images
than there are) is refused unless ``overwrite``, which removes this generator's files first; a set written
before ``prepare.json`` existed (``synthetic.json`` alone) is completed like an interrupted run. Files the
generator did not write are never removed or replaced: other files in the split folders, and a
``synthetic.json`` it did not write, are refused even with ``overwrite``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import UserError
from ...fileio import kept_existing_note, write_text
from ..prepare.output import FOLDERS, MANIFEST, MARKER, PreparedOutput
from .pairs import DEFAULT_PAIR, get_pair, render
from .scene import DOMAINS, MIN_SIZE, TEST_INDEX_BASE

log = logging.getLogger("deepcascade")

META = "synthetic.json"
GENERATOR = "deepcascade.data.synthetic"
FILE_RE = re.compile(r"^(?P<domain>[AB])_(?P<split>train|test)_(?P<i>\d{6,})\.png$")


def file_name(domain: str, split: str, i: int) -> str:
    """``("A", "test", 3) -> "A_test_000003.png"``."""
    return f"{domain}_{split}_{i:06d}.png"


def parse_file_name(name: str, meta: dict | None = None) -> tuple[str, int] | None:
    """``A_test_000003.png`` -> ``("A", test_index_base + 3)``; None for a name the generator did not write.

    ``meta`` is the data set's ``synthetic.json`` (for its ``test_index_base``); a path's folders are ignored."""
    m = FILE_RE.match(Path(name).name)
    if not m:
        return None
    i = int(m["i"])
    base = int((meta or {}).get("test_index_base", TEST_INDEX_BASE))
    return m["domain"], (i if m["split"] == "train" else base + i)


def read_meta(out_dir) -> dict | None:
    """``synthetic.json`` of a dataset folder, or None when absent or unreadable."""
    try:
        meta = json.loads((Path(out_dir) / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def find_meta(folder) -> dict | None:
    """The ``synthetic.json`` this generator wrote for ``folder`` (a data set or one of its split folders)."""
    for d in (Path(folder), Path(folder).parent):
        meta = read_meta(d)
        if meta is not None:
            return meta if meta.get("generator") == GENERATOR else None
    return None


def source_with_mask(meta: dict, name: str) -> tuple[Image.Image, np.ndarray] | None:
    """The image and boolean object mask of a data set's file ``name`` (at the data set's size), drawn again
    from its ``synthetic.json``; None for a name the generator did not write."""
    parsed = parse_file_name(name, meta)
    if parsed is None:
        return None
    pair = get_pair(meta.get("pair", DEFAULT_PAIR))
    return pair.render_with_mask(parsed[0], parsed[1], int(meta["size"]), int(meta["seed"]))


def _params(seed: int, size: int, pair: str = DEFAULT_PAIR) -> dict:
    return {"generator": GENERATOR, "pair": pair, "version": get_pair(pair).version, "seed": seed, "size": size}


def same_params(meta: dict | None, seed: int, size: int, pair: str = DEFAULT_PAIR) -> bool:
    """True when ``meta`` (a ``synthetic.json``) was written by this generator version with this pair, seed and
    size, i.e. its images are the ones :func:`write_dataset` would draw now."""
    return bool(meta) and all(meta.get(k, DEFAULT_PAIR if k == "pair" else None) == v
                              for k, v in _params(seed, size, pair).items())


def _options(pair: str, seed: int, size: int, n: int, n_test: int) -> dict:
    return {"kind": "synthetic", "pair": pair, "version": get_pair(pair).version, "seed": seed, "size": size,
            "n": n, "n_test": n_test}


def _read_marker(out: Path) -> dict | None:
    try:
        meta = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("options"), dict) else None


def is_complete(out_dir, n: int, size: int, seed: int, n_test: int, pair: str = DEFAULT_PAIR) -> bool:
    """True when ``out_dir`` holds exactly this dataset, finished."""
    marker = _read_marker(Path(out_dir))
    return bool(marker and marker.get("complete") is True and marker["options"] == _options(pair, seed, size, n, n_test)
                and same_params(read_meta(out_dir), seed, size, pair))


def _check_args(n: int, size: int, seed: int, n_test: int) -> None:
    if size < MIN_SIZE:
        raise UserError(f"--size must be >= {MIN_SIZE}, got {size}")
    if n < 0 or n_test < 0:
        raise UserError(f"image counts must be >= 0, got n={n}, n_test={n_test}")
    if n >= TEST_INDEX_BASE or n_test >= TEST_INDEX_BASE:
        raise UserError(f"image counts must be below {TEST_INDEX_BASE}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")


def _ours(out: Path) -> list[Path]:
    """The generator's images in the split folders; refuses a split folder holding anything else."""
    found = []
    for folder in FOLDERS:
        sub = out / folder
        if sub.exists() and not sub.is_dir():
            raise UserError(f"{sub} exists and is not a directory")
        files = [p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")] if sub.is_dir() else []
        foreign = [p for p in files if not FILE_RE.match(p.name)]
        if foreign:
            raise UserError(f"{sub} holds other files ({foreign[0].name}, ...); choose an empty directory")
        found += files
    return found


def _check_folder(out: Path, options: dict, overwrite: bool) -> bool:
    """Refuse what a run must not replace: a foreign ``synthetic.json`` or split file (always), another data set
    of this generator (without ``overwrite``); with ``overwrite``, remove this generator's files. True when the
    folder holds, without ``prepare.json``, a subset of this run's images (written before the marker existed)."""
    meta_file = out / META
    if meta_file.exists() and (read_meta(out) or {}).get("generator") != GENERATOR:
        raise UserError(f"{meta_file} was not written by `deepcascade prepare synthetic`; it is never replaced: "
                        f"move it away or choose another --out")
    ours = _ours(out)
    marker, meta = _read_marker(out), read_meta(out)
    if marker is not None and marker["options"].get("kind") != "synthetic":
        return False  # another kind's output: PreparedOutput refuses it, naming it
    old = marker["options"] if marker else None
    if overwrite:
        for p in ours + [out / MANIFEST, out / MARKER, meta_file]:
            p.unlink(missing_ok=True)
        for folder in FOLDERS:
            if (out / folder).is_dir() and not any((out / folder).iterdir()):
                (out / folder).rmdir()
        return False
    if old is None and (ours or meta is not None):
        same = same_params(meta, options["seed"], options["size"], options["pair"])
        extra = [p for p in ours if not _planned(p.name, options)]
        if same and not extra:
            return True
        why = (f"{len(extra)} beyond the requested counts" if same else
               f"made with other parameters ({_describe({'pair': DEFAULT_PAIR, **meta})})" if meta else
               "of unknown parameters (no synthetic.json)")
        raise UserError(f"{out} holds {len(ours)} synthetic image(s) {why}, without {MARKER}; use --overwrite "
                        f"to replace them, or another --out")
    if old is None or old == options or _extends(options)(old):
        return False
    if any(old.get(k) != options[k] for k in ("pair", "version", "seed", "size")):
        why = f"made with other parameters ({_describe(old)})"
    else:
        extra = sorted(p.name for p in ours if not _planned(p.name, options))
        why = f"{len(extra)} beyond the requested counts, e.g. {extra[0]}" if extra else \
            f"a set of {old.get('n')} + {old.get('n_test')} images per domain"
    raise UserError(f"{out} already holds {len(ours)} synthetic image(s), {why}; use --overwrite to replace "
                    f"them, or another --out")


def _describe(params: dict) -> str:
    return "; ".join(f"{k} {params.get(k)}" for k in ("pair", "seed", "size", "version"))


def _planned(name: str, options: dict) -> bool:
    m = FILE_RE.match(name)
    return bool(m) and int(m["i"]) < (options["n"] if m["split"] == "train" else options["n_test"])


def _extends(options: dict):
    """Old options whose images are a subset of this run's (same pair, version, seed and size; counts not
    larger)."""
    def extends(old: dict) -> bool:
        same = all(old.get(k) == options[k] for k in ("kind", "pair", "version", "seed", "size"))
        return same and all(isinstance(old.get(k), int) and old[k] <= options[k] for k in ("n", "n_test"))
    return extends


def write_dataset(out_dir, n: int, size: int, seed: int, n_test: int | None = None, overwrite: bool = False,
                  progress: bool = True, pair: str = DEFAULT_PAIR) -> dict:
    """Write pair ``pair`` to ``out_dir/{trainA,trainB,testA,testB}/*.png`` and ``out_dir/synthetic.json``;
    return the counts per split folder.

    ``n`` training and ``n_test`` (default ``max(10, n // 5)``) test images per domain; test images use
    indices ``TEST_INDEX_BASE + i``. Re-run semantics: module docstring.
    """
    spec = get_pair(pair)
    n_test = max(10, n // 5) if n_test is None else n_test
    _check_args(n, size, seed, n_test)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file; give a directory")
    options = _options(pair, seed, size, n, n_test)
    counts = {f"{split}{d}": count for split, count in (("train", n), ("test", n_test)) for d in DOMAINS}
    meta = {**_params(seed, size, pair), "counts": counts, "test_index_base": TEST_INDEX_BASE, "complete": True,
            "domains": {"A": spec.domain_a, "B": spec.domain_b}}
    body = {k: v for k, v in options.items() if k != "kind"}
    with PreparedOutput(out, "synthetic", body, {}, extends=_extends(options)) as prep:
        adopt = False
        if out.is_dir():
            if overwrite:
                prep.lock()  # nobody prepares the folder while this run empties it
            adopt = _check_folder(out, options, overwrite)
        if not prep.start(adopt=adopt):
            if read_meta(out) is None:  # deleted by hand: the parameters it held are in prepare.json
                prep.lock()
                write_text(out / META, json.dumps(meta, indent=2) + "\n")
            return counts
        from ...progress import progress as progress_bar

        with progress_bar(total=2 * (n + n_test), unit="img", desc="synthetic", disable=not progress) as bar:
            for split, count in (("train", n), ("test", n_test)):
                base = 0 if split == "train" else TEST_INDEX_BASE
                for d in DOMAINS:
                    folder = f"{split}{d}"
                    for i in range(count):
                        name = file_name(d, split, i)
                        prep.write(f"{folder}/{name}", {"pair": pair, "domain": d, "index": base + i},
                                   lambda tmp, d=d, i=i: render(pair, d, base + i, size, seed).save(
                                       tmp, format="PNG", compress_level=1))
                        bar.update(1)
        prep.lock()
        write_text(out / META, json.dumps(meta, indent=2) + "\n")  # before the marker says complete
        prep.finish({"A": spec.domain_a, "B": spec.domain_b}, {}, [], {"synthetic": META})
    if prep.kept:
        log.warning(kept_existing_note(prep.kept, out, "synthetic image(s) of the same seed and size"))
    return counts
