"""Appearance kept by a translation: the colour of what should stay, the background, in source and translation.

A translation should change the object and keep the scene. The figure needs no masks: the mean RGB colour
(0..1 scale) of the image's outer frame, the outer ``FRAME_FRACTION`` of each side (8 px of a 64 px image;
at least 1 px), is mostly background in object-centred data. ``frame_colour_error`` is the Euclidean distance
between the source's frame colour and its translation's, averaged over the images (0 = same colour; the
largest possible is sqrt(3)).

- ``frame_colour_error_floor``: the same between the source and its untranslated reconstruction
  I_final(e_final(source)) through the same run: what the inversion alone loses.
- ``frame_colour_error_chance``: the same between the source and real target-domain images paired with it at
  random (``chance.py``): a translator that ignores the source's appearance scores about this.

Where the data knows its objects (the built-in synthetic data), ``background_colour_error`` is the same over the
source's true background: every pixel farther than ``BACKGROUND_MARGIN`` of the side from the source's object.
The translated object may cover part of that background (a giraffe's neck rises where the zebra had sky), so
the background's colour is the per-channel median over those pixels, not the mean: an object covering less than
half of them moves it little, where the mean would count the object's colours as a background change.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .chance import CHANCE_PAIRS, mean_or_none, partners, progress

FRAME_FRACTION = 1 / 8
BACKGROUND_MARGIN = 1 / 32


def frame_width(size: int) -> int:
    """Width in pixels of the frame of a ``size`` x ``size`` image."""
    return max(1, round(size * FRAME_FRACTION))


def frame_mask(size: int) -> np.ndarray:
    """(size, size) bool: True on the outer frame."""
    k = frame_width(size)
    m = np.ones((size, size), dtype=bool)
    m[k:size - k, k:size - k] = False
    return m


def as_unit(img) -> np.ndarray:
    """A PIL image or uint8 array (H, W, 3) as float64 in [0, 1]."""
    return np.asarray(img, dtype=np.float64)[..., :3] / 255.0


def frame_colour(img) -> np.ndarray:
    """Mean RGB colour (3,) in [0, 1] of the image's outer frame."""
    a = as_unit(img)
    return a[frame_mask(a.shape[0])].mean(0)


def background_region(mask: np.ndarray) -> np.ndarray:
    """The pixels farther than ``BACKGROUND_MARGIN`` of the side from the object ``mask`` (bool, square)."""
    r = max(1, round(mask.shape[0] * BACKGROUND_MARGIN))
    grown = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * r + 1))
    return np.asarray(grown) < 128


def background_colour(img, region: np.ndarray) -> np.ndarray | None:
    """Per-channel median colour (3,) of ``img`` over ``region``; None for an empty region."""
    if not region.any():
        return None
    return np.median(as_unit(img)[region], axis=0)


def _distance(a, b) -> float | None:
    return None if a is None or b is None else float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def appearance_measure(n: int, source_pixels, fake_pixels, reconstruction_pixels=None, n_targets: int = 0,
                       target_pixels=None, source_mask=None, seed: int = 0) -> dict:
    """The appearance figures of ``n`` (source, translation) pairs, images read one at a time.

    ``source_pixels(i)``, ``fake_pixels(i)``, ``reconstruction_pixels(i)`` (or None: no floor) return the i-th
    source as the translator saw it, its translation and its reconstruction; ``target_pixels(j)`` the j-th of
    ``n_targets`` real target images (the chance level); ``source_mask(i)`` (or None: no masks) the source's
    true object mask at the evaluation size, or None where it is unknown.
    """
    chance_of = partners(n, n_targets, seed)
    targets = [frame_colour(target_pixels(j)) for j in range(n_targets)] if target_pixels else []
    frame = {"value": [], "floor": [], "chance": []}
    back = {"value": [], "floor": [], "chance": []}
    side = None
    for i in range(n):
        src, fake = source_pixels(i), fake_pixels(i)
        side = side or as_unit(src).shape[0]
        rec = reconstruction_pixels(i) if reconstruction_pixels else None
        s = frame_colour(src)
        frame["value"].append(_distance(s, frame_colour(fake)))
        frame["floor"].append(_distance(s, frame_colour(rec)) if rec is not None else None)
        frame["chance"] += [_distance(s, targets[j]) for j in chance_of[i]]
        mask = source_mask(i) if source_mask else None
        if mask is None:
            continue
        region = background_region(mask)
        sb = background_colour(src, region)
        if sb is None:
            continue
        back["value"].append(_distance(sb, background_colour(fake, region)))
        back["floor"].append(_distance(sb, background_colour(rec, region)) if rec is not None else None)
        back["chance"] += [_distance(sb, background_colour(target_pixels(j), region)) for j in chance_of[i]]
    out = {"images": n, "frame_width": frame_width(side) if side else None,
           "frame_fraction": FRAME_FRACTION, "chance_pairs": min(CHANCE_PAIRS, n_targets),
           "background_images": len(back["value"]), "background_margin": BACKGROUND_MARGIN}
    for name, fig in (("frame_colour_error", frame), ("background_colour_error", back)):
        value, floor, chance = (mean_or_none(fig[k]) for k in ("value", "floor", "chance"))
        out.update({name: value, f"{name}_floor": floor, f"{name}_chance": chance,
                    f"{name}_progress": progress(value, floor, chance)})
    return out
