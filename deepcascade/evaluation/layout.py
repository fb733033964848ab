"""Layout measure where the data knows its objects: the built-in synthetic domains.

A translation should change the animal's shape and keep where it stands. For each source the generator gives
the true silhouette (``render_with_mask`` of the same domain, index and seed); the translation's silhouette is
estimated from its pixels (``textured_pixels``: the animals are textured, the backgrounds smooth, the same
estimate ``domain_score`` uses). Both are reduced to the same box: the 1st-99th percentile range of the mask's
rows and columns. Reported, as fractions of the image side:

- ``centre_shift``: mean distance between the source's box centre and the translation's;
- ``centre_shift_floor``: the same between the source's true box and the box estimated from the untranslated
  source's own pixels, i.e. the estimator's error, below which no translation can score;
- ``size_ratio``: median sqrt(box area of the translation / of the source);
- ``centre_correlation_x``: correlation of the two centres' x positions over the images (issue 12's behaviour
  test asks > 0.8 when layout is kept);
- ``silhouette_target_share``: share of translations whose estimated aspect ratio (``domain_score``) falls on
  the target's side of ``ASPECT_THRESHOLD``, beside the share for the untranslated sources.

Test files of ``deepcascade prepare synthetic`` are ``{A,B}_test_NNNNNN.png`` with generator index
``test_index_base + NNNNNN`` (training files: ``{A,B}_train_NNNNNN.png``, index NNNNNN); the seed, size and
index base are in ``synthetic.json`` beside the split folders.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
from PIL import Image

from ..data import synthetic

log = logging.getLogger("deepcascade")

_NAME = re.compile(r"^(?P<domain>[AB])_(?P<split>train|test)_(?P<i>\d{6,})$")


def find_meta(folder: str | Path) -> dict | None:
    """The ``synthetic.json`` written by ``prepare synthetic`` for the folder (or its parent), else None."""
    folder = Path(folder)
    for d in (folder, folder.parent):
        f = d / "synthetic.json"
        if f.is_file():
            try:
                meta = json.loads(f.read_text())
            except (OSError, ValueError):
                return None
            if meta.get("generator") == "deepcascade.data.synthetic":
                return meta
    return None


def parse_name(name: str, meta: dict) -> tuple[str, int] | None:
    """``A_test_000003.png`` -> ("A", test_index_base + 3); None for a name the generator did not write."""
    m = _NAME.match(Path(name).stem)
    if not m:
        return None
    i = int(m["i"])
    return m["domain"], (i if m["split"] == "train" else int(meta.get("test_index_base",
                                                                      synthetic.TEST_INDEX_BASE)) + i)


def generator_mask(domain: str, index: int, meta: dict, size: int) -> np.ndarray:
    """The true silhouette at the evaluation size (rendered at the data's size, resized as the image was)."""
    _, mask = synthetic.render_with_mask(domain, index, int(meta["size"]), int(meta["seed"]))
    if mask.shape[0] != size:
        img = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.BOX)
        mask = np.asarray(img) >= 128
    return mask


def silhouette_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(centre y, centre x, height, width) of the 1st-99th percentile box of the mask's pixels, in pixels."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 4:
        return None
    y0, y1 = np.percentile(ys, [1, 99])
    x0, x1 = np.percentile(xs, [1, 99])
    return (y0 + y1) / 2, (x0 + x1) / 2, y1 - y0 + 1, x1 - x0 + 1


def centre_shifts(src_boxes: list, other_boxes: list, size: int) -> np.ndarray:
    """Per-image distance between box centres as a fraction of the side; NaN where a box is missing."""
    out = []
    for a, b in zip(src_boxes, other_boxes):
        out.append(np.nan if a is None or b is None else float(np.hypot(a[0] - b[0], a[1] - b[1])) / size)
    return np.array(out, dtype=np.float64)


def compare(src_boxes: list, fake_boxes: list, size: int) -> dict:
    """``centre_shift`` (mean), ``size_ratio`` (median), ``centre_correlation_x`` of two lists of boxes."""
    shifts = centre_shifts(src_boxes, fake_boxes, size)
    ok = np.isfinite(shifts)
    pairs = [(a, b) for a, b in zip(src_boxes, fake_boxes) if a is not None and b is not None]
    ratios = [np.sqrt(b[2] * b[3] / (a[2] * a[3])) for a, b in pairs]
    xs = np.array([[a[1], b[1]] for a, b in pairs]) if pairs else np.zeros((0, 2))
    corr = None
    if len(xs) >= 3 and xs[:, 0].std() > 0 and xs[:, 1].std() > 0:
        corr = float(np.corrcoef(xs[:, 0], xs[:, 1])[0, 1])
    return {"centre_shift": float(shifts[ok].mean()) if ok.any() else None,
            "size_ratio": float(np.median(ratios)) if ratios else None,
            "centre_correlation_x": corr, "no_silhouette_found": int((~ok).sum())}


def is_target(score: float, target: str) -> bool:
    """``domain_score`` on the target's side of the threshold (B: taller than wide); NaN is never a hit."""
    return bool(score > synthetic.ASPECT_THRESHOLD) if target == "B" else bool(score <= synthetic.ASPECT_THRESHOLD)


def layout_measure(source_names: list[str], source_pixels, fake_pixels, meta: dict, size: int,
                   target: str) -> dict:
    """The layout figures for the translations of the generator's sources ``source_names``.

    ``source_pixels(i)`` and ``fake_pixels(i)`` return the i-th source as the translator saw it and its
    translation (PIL or array, size x size); images are read one at a time.
    """
    true_boxes, src_est, fake_est, fake_hits, src_hits = [], [], [], [], []
    for i, name in enumerate(source_names):
        parsed = parse_name(name, meta)
        if parsed is None:
            continue
        src, fake = source_pixels(i), fake_pixels(i)
        true_boxes.append(silhouette_box(generator_mask(*parsed, meta, size)))
        src_est.append(silhouette_box(synthetic.textured_pixels(src)))
        fake_est.append(silhouette_box(synthetic.textured_pixels(fake)))
        fake_hits.append(is_target(synthetic.domain_score(fake), target))
        src_hits.append(is_target(synthetic.domain_score(src), target))
    if not true_boxes:
        raise ValueError("no source file name was written by the synthetic generator")
    out = compare(true_boxes, fake_est, size)
    floor = compare(true_boxes, src_est, size)
    out.update({"centre_shift_floor": floor["centre_shift"], "size_ratio_floor": floor["size_ratio"],
                "silhouette_target_share": float(np.mean(fake_hits)),
                "silhouette_target_share_sources": float(np.mean(src_hits)),
                "aspect_threshold": synthetic.ASPECT_THRESHOLD, "images": len(true_boxes),
                "skipped_names": len(source_names) - len(true_boxes)})
    return out
