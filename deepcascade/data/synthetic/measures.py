"""Silhouette measures: the shape figures that tell a pair's domains apart, from a mask or from the image alone.

From a boolean mask: :func:`mask_aspect` (bounding-box height / width), :func:`mask_fill` and
:func:`mask_spikiness` (the share of the bounding box the silhouette covers, or leaves empty),
:func:`mask_centre_cover` (how much of the silhouette's middle it covers). From an image (translations have no
mask) the silhouette is estimated first: :func:`textured_pixels` for an object textured against a smooth
background (the animals; :func:`domain_score` is its aspect ratio), :func:`object_pixels` for an object in a
frame of background (the object pairs; ``object_*`` apply the mask measures to it). Each pair in ``pairs.py``
says which of these is its judge.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

ASPECT_THRESHOLD = 1.0  # animals: bbox height / width, A (zebra-like) below, B (giraffe-like) above


def as_array(img: Image.Image | np.ndarray) -> np.ndarray:
    """An RGB image as a float64 (H, W, 3) array on a 0..255 scale."""
    return np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img, dtype=np.float64)


def mask_aspect(mask: np.ndarray) -> float:
    """Bounding-box height / width of a silhouette mask: < ``ASPECT_THRESHOLD`` for A, above for B."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return float("nan")
    return float(ys.max() - ys.min() + 1) / float(xs.max() - xs.min() + 1)


def mask_fill(mask: np.ndarray) -> float:
    """Share of the silhouette's bounding box that the silhouette covers (1 for a square, pi/4 for a disc,
    about 0.3-0.45 for a five-pointed star); NaN for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return float("nan")
    return float(len(ys)) / float((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float array (edges replicated)."""
    r = max(1, int(round(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (0, 1):
        p = np.pad(a, [(r, r) if ax == axis else (0, 0) for ax in (0, 1)], mode="edge")
        n = a.shape[axis]
        a = sum(w * (p[i:i + n] if axis == 0 else p[:, i:i + n]) for i, w in enumerate(k))
    return a


def textured_pixels(img: Image.Image | np.ndarray) -> np.ndarray:
    """Boolean mask of the strongly textured pixels: the animal's estimated silhouette in these scenes.

    Local contrast energy (luminance minus its blur, squared, blurred) above a fifth of its 99.5th percentile;
    the backgrounds are smooth, the coats are striped or patched. Used by :func:`domain_score` and by the
    layout measure of ``deepcascade evaluate``.
    """
    arr = as_array(img)
    lum = arr[..., :3] @ np.array([0.299, 0.587, 0.114])
    h = lum.shape[0]
    energy = blur((lum - blur(lum, max(0.8, h / 128))) ** 2, max(1.0, h / 64))
    return energy > 0.2 * float(np.percentile(energy, 99.5))


def domain_score(img: Image.Image | np.ndarray) -> float:
    """Estimated silhouette aspect (height / width) from the image alone; compare with ``ASPECT_THRESHOLD``.

    The animals are the only strongly textured things in these scenes (stripes, patch borders) while the
    backgrounds are smooth, so the bounding box of the pixels with high local contrast approximates the
    silhouette's. Meant for rendered and translated images of the animal pair, not for photos.
    """
    ys, xs = np.nonzero(textured_pixels(img))
    if len(ys) < 4:
        return float("nan")
    y0, y1 = np.percentile(ys, [1, 99])
    x0, x1 = np.percentile(xs, [1, 99])
    return float(y1 - y0 + 1) / float(x1 - x0 + 1)


FRAME = 0.125  # the outer frame (fraction of the side) that object pairs keep free of the object


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of a 1-D sample: the cut maximising the between-class variance."""
    hist, edges = np.histogram(values, bins=64)
    p = hist / max(hist.sum(), 1)
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * mids)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 - m0) ** 2 / (w0 * (1 - w0))
    return float(edges[1:][int(np.nanargmax(np.where(np.isfinite(between), between, -1)))])


def object_pixels(img: Image.Image | np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels unlike the background: the object's estimated silhouette in scenes whose outer
    ``FRAME`` is background (the object pairs).

    Each pixel's RGB distance from the frame's mean colour; Otsu's threshold splits background from object, and
    the cut is set half-way between the two classes' medians (where an antialiased edge pixel is half covered,
    as the true mask is cut), never below the frame's own 99th percentile distance (what the background's
    texture reaches)."""
    arr = as_array(img)
    h, w = arr.shape[:2]
    k = max(1, int(round(FRAME * h)))
    frame = np.ones((h, w), bool)
    frame[k:h - k, k:w - k] = False
    dist = np.linalg.norm(arr - arr[frame].mean(0), axis=-1)
    split = _otsu(dist)
    above = dist[dist > split]
    cut = (float(np.median(dist[dist <= split])) + float(np.median(above))) / 2 if len(above) else split
    return dist > max(cut, float(np.percentile(dist[frame], 99)))


def robust_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(y0, y1, x0, x1) of the 1st-99th percentile range of the mask's rows and columns; None when empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 4:
        return None
    (y0, y1), (x0, x1) = np.percentile(ys, [1, 99]), np.percentile(xs, [1, 99])
    return y0, y1, x0, x1


def object_aspect(img: Image.Image | np.ndarray) -> float:
    """Bounding-box height / width of :func:`object_pixels`, from the image alone."""
    box = robust_box(object_pixels(img))
    return float("nan") if box is None else float(box[1] - box[0] + 1) / float(box[3] - box[2] + 1)


def mask_spikiness(mask: np.ndarray) -> float:
    """The share of the silhouette's bounding box (its robust box: 1st-99th percentile of rows and columns) that
    the silhouette leaves empty: a disc about 0.2, a star of 5-8 points 0.45-0.65; NaN for an empty mask."""
    box = robust_box(mask)
    if box is None:
        return float("nan")
    y0, y1, x0, x1 = (int(round(v)) for v in box)
    return 1.0 - float(mask[y0:y1 + 1, x0:x1 + 1].mean())


def object_spikiness(img: Image.Image | np.ndarray) -> float:
    """:func:`mask_spikiness` of :func:`object_pixels`, from the image alone."""
    return mask_spikiness(object_pixels(img))


def mask_centre_cover(mask: np.ndarray) -> float:
    """Share of the disc around the robust box's centre (radius 0.15 of the box's shorter side) that the
    silhouette covers: a ring (its hole) 0, a cross (where its bars cross) about 1; NaN for an empty mask."""
    box = robust_box(mask)
    if box is None:
        return float("nan")
    y0, y1, x0, x1 = box
    r = max(0.15 * min(y1 - y0 + 1, x1 - x0 + 1), 1.0)
    ys, xs = np.mgrid[0:mask.shape[0], 0:mask.shape[1]] + 0.5
    centre = np.hypot(ys - (y0 + y1 + 1) / 2, xs - (x0 + x1 + 1) / 2) <= r
    return float(mask[centre].mean())


def object_centre_cover(img: Image.Image | np.ndarray) -> float:
    """:func:`mask_centre_cover` of :func:`object_pixels`, from the image alone."""
    return mask_centre_cover(object_pixels(img))
