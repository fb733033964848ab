"""Layout measure where the data knows its objects: the built-in synthetic pairs.

A translation should change the object's shape and keep where it stands. For each source the generator gives
the true silhouette (the pair's ``render_with_mask`` of the same domain, index and seed, named by the data set's
``synthetic.json``); the translation's silhouette is estimated from its pixels (the pair's ``estimate_mask``:
the animals are textured on smooth backgrounds, the object pairs keep the image's outer frame free of the object).
Both are reduced to the same box: the 1st-99th percentile range of the mask's rows and columns. Reported, as
fractions of the image side:

- ``ground_shift``: mean distance between the boxes' ground points (horizontal centre, bottom line). A standing
  object's place is where it stands: a giraffe on the zebra's ground line grows upward, so its box centre rises
  while its place is kept;
- ``centre_shift``: mean distance between the box centres (the place of an object that does not stand);
- ``*_floor``: the same between the source's true box and the box estimated from the untranslated source's own
  pixels, i.e. the estimator's error, below which no translation can score;
- ``*_chance``: the same between the source's true box and the boxes estimated on real target-domain images
  paired with it at random (``chance.py``): a translator that ignores the source's place scores about this;
  ``*_progress``: how far the figure goes from chance (0) to the floor (1);
- ``size_ratio``: median sqrt(box area of the translation / of the source);
- ``centre_correlation_x``: correlation of the two centres' x positions over the images (about 1 when the
  layout is kept, about 0 when every translation stands in the same place);
- ``silhouette_target_share``: share of translations the pair's shape judge (``Pair.judge_image``: for the
  animals, the box's aspect against ``ASPECT_THRESHOLD``) puts in the target domain, beside the same share for
  the untranslated sources.

File names map to generator indices as ``deepcascade.data.synthetic.parse_file_name`` says
(``A_test_000003.png`` is index ``test_index_base + 3``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..data import synthetic
from .chance import CHANCE_PAIRS, partners, progress


def parse_name(name: str, meta: dict) -> tuple[str, int] | None:
    """``A_test_000003.png`` -> ("A", test_index_base + 3); None for a name the generator did not write."""
    return synthetic.parse_file_name(name, meta)


def pair_of(meta: dict) -> synthetic.Pair:
    """The built-in pair a data set was drawn from (its synthetic.json's ``pair``)."""
    return synthetic.get_pair(meta.get("pair", synthetic.DEFAULT_PAIR))


def generator_mask(domain: str, index: int, meta: dict, size: int) -> np.ndarray:
    """The true silhouette at the evaluation size (rendered at the data's size, resized as the image was)."""
    _, mask = pair_of(meta).render_with_mask(domain, index, int(meta["size"]), int(meta["seed"]))
    if mask.shape[0] != size:
        img = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.BOX)
        mask = np.asarray(img) >= 128
    return mask


def synthetic_problem(meta: dict) -> str | None:
    """Why the objects of the data set ``meta`` (its synthetic.json) are not known here, or None."""
    name = meta.get("pair", synthetic.DEFAULT_PAIR)
    if name not in synthetic.PAIRS:
        return f"the synthetic data's pair {name!r} is not one this deepcascade renders: regenerate it"
    version = synthetic.get_pair(name).version
    if int(meta.get("version", -1)) != version:
        return (f"the synthetic data was written by generator version {meta.get('version')}, this deepcascade "
                f"renders version {version}: regenerate it")
    return None


def silhouette_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(centre y, centre x, height, width) of the 1st-99th percentile box of the mask's pixels, in pixels."""
    box = synthetic.measures.robust_box(mask)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    return (y0 + y1) / 2, (x0 + x1) / 2, y1 - y0 + 1, x1 - x0 + 1


def ground_point(box: tuple) -> tuple[float, float]:
    """(y, x) of a box's ground point: its bottom line (the 99th percentile row) at its horizontal centre."""
    return box[0] + (box[2] - 1) / 2, box[1]


def _centre(box: tuple) -> tuple[float, float]:
    return box[0], box[1]


def point_shifts(src_boxes: list, other_boxes: list, size: int, point=_centre) -> np.ndarray:
    """Per-image distance between the boxes' ``point`` (centre by default) as a fraction of the side; NaN where
    a box is missing."""
    out = []
    for a, b in zip(src_boxes, other_boxes):
        if a is None or b is None:
            out.append(np.nan)
            continue
        (ya, xa), (yb, xb) = point(a), point(b)
        out.append(float(np.hypot(ya - yb, xa - xb)) / size)
    return np.array(out, dtype=np.float64)


def centre_shifts(src_boxes: list, other_boxes: list, size: int) -> np.ndarray:
    """Per-image distance between box centres as a fraction of the side; NaN where a box is missing."""
    return point_shifts(src_boxes, other_boxes, size)


def _mean(shifts: np.ndarray) -> float | None:
    ok = np.isfinite(shifts)
    return float(shifts[ok].mean()) if ok.any() else None


def compare(src_boxes: list, fake_boxes: list, size: int) -> dict:
    """``centre_shift``, ``ground_shift`` (means), ``size_ratio`` (median), ``centre_correlation_x`` of two
    lists of boxes."""
    shifts = centre_shifts(src_boxes, fake_boxes, size)
    pairs = [(a, b) for a, b in zip(src_boxes, fake_boxes) if a is not None and b is not None]
    ratios = [np.sqrt(b[2] * b[3] / (a[2] * a[3])) for a, b in pairs]
    xs = np.array([[a[1], b[1]] for a, b in pairs]) if pairs else np.zeros((0, 2))
    corr = None
    if len(xs) >= 3 and xs[:, 0].std() > 0 and xs[:, 1].std() > 0:
        corr = float(np.corrcoef(xs[:, 0], xs[:, 1])[0, 1])
    return {"centre_shift": _mean(shifts),
            "ground_shift": _mean(point_shifts(src_boxes, fake_boxes, size, ground_point)),
            "size_ratio": float(np.median(ratios)) if ratios else None,
            "centre_correlation_x": corr, "no_silhouette_found": int((~np.isfinite(shifts)).sum())}


def chance_shifts(true_boxes: list, target_boxes: list, chance_of: list, size: int) -> dict:
    """``centre_shift`` and ``ground_shift`` between each source's true box and the boxes of its randomly
    paired target images (``chance_of[i]``: indices into ``target_boxes``)."""
    src = [a for a, js in zip(true_boxes, chance_of) for _ in js]
    other = [target_boxes[j] for js in chance_of for j in js]
    return {"centre_shift": _mean(point_shifts(src, other, size)),
            "ground_shift": _mean(point_shifts(src, other, size, ground_point))}


def layout_measure(source_names: list[str], source_pixels, fake_pixels, meta: dict, size: int,
                   target: str, n_targets: int = 0, target_pixels=None, seed: int = 0) -> dict:
    """The layout figures for the translations of the generator's sources ``source_names``.

    ``source_pixels(i)`` and ``fake_pixels(i)`` return the i-th source as the translator saw it and its
    translation (PIL or array, size x size); ``target_pixels(j)`` the j-th of ``n_targets`` real target images
    (the chance level; none without them). Images are read one at a time.
    """
    pair = pair_of(meta)

    def box(img):
        return silhouette_box(pair.estimate_mask(img))

    true_boxes, src_est, fake_est, fake_hits, src_hits = [], [], [], [], []
    for i, name in enumerate(source_names):
        parsed = parse_name(name, meta)
        if parsed is None:
            continue
        src, fake = source_pixels(i), fake_pixels(i)
        true_boxes.append(silhouette_box(generator_mask(*parsed, meta, size)))
        src_est.append(box(src))
        fake_est.append(box(fake))
        fake_hits.append(pair.judge_image(fake) == target)
        src_hits.append(pair.judge_image(src) == target)
    if not true_boxes:
        raise ValueError("no source file name was written by the synthetic generator")
    out = compare(true_boxes, fake_est, size)
    floor = compare(true_boxes, src_est, size)
    target_boxes = [box(target_pixels(j)) for j in range(n_targets)] if target_pixels else []
    chance = chance_shifts(true_boxes, target_boxes, partners(len(true_boxes), len(target_boxes), seed), size)
    for k in ("centre_shift", "ground_shift"):
        out.update({f"{k}_floor": floor[k], f"{k}_chance": chance[k],
                    f"{k}_progress": progress(out[k], floor[k], chance[k])})
    out.update({"size_ratio_floor": floor["size_ratio"],
                "silhouette_target_share": float(np.mean(fake_hits)),
                "silhouette_target_share_sources": float(np.mean(src_hits)),
                "pair": pair.name, "shape_measure": pair.measure, "shape_threshold": pair.threshold,
                "aspect_threshold": pair.threshold if pair.mask_measure is synthetic.mask_aspect else None,
                "images": len(true_boxes),
                "skipped_names": len(source_names) - len(true_boxes),
                "chance_pairs": min(CHANCE_PAIRS, len(target_boxes))})
    return out
