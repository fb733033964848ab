"""The registry of built-in synthetic pairs: what each pair's domains are and the shape measure that judges them.

A pair renders ``(image, boolean object mask)`` as a pure function of ``(domain, index, size, seed)`` and
defines one shape measure, computed from a mask (the truth) or estimated from an image alone (translations
have no mask), with a threshold: domain A below it, domain B above. Colour is never what separates a pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from ...errors import UserError
from . import animals, measures, objects

DEFAULT_PAIR = "animals"


@dataclass(frozen=True)
class Pair:
    """One built-in pair of domains (A, B) and its judge."""

    name: str
    version: int  # bumped when the pair's rendering changes; recorded in the data set's synthetic.json
    domain_a: str
    domain_b: str
    differs: str  # what tells the domains apart, in words
    render_with_mask: Callable[[str, int, int, int], tuple[Image.Image, np.ndarray]]
    mask_measure: Callable[[np.ndarray], float]
    image_measure: Callable[[Image.Image | np.ndarray], float]
    estimate_mask: Callable[[Image.Image | np.ndarray], np.ndarray]  # the object's pixels, from the image alone
    threshold: float  # domain A below, B above
    measure: str  # the measure's name, as shown to users

    def judge(self, score: float) -> str | None:
        """The domain a shape measure puts an image in; None for NaN (no object found)."""
        if not np.isfinite(score):
            return None
        return "B" if score > self.threshold else "A"

    def judge_mask(self, mask: np.ndarray) -> str | None:
        """The domain of a silhouette mask."""
        return self.judge(self.mask_measure(mask))

    def judge_image(self, img: Image.Image | np.ndarray) -> str | None:
        """The domain of an image, from its estimated silhouette (for translations, which have no mask)."""
        return self.judge(self.image_measure(img))


PAIRS: dict[str, Pair] = {}


def _register(pair: Pair) -> None:
    PAIRS[pair.name] = pair


def _object_pair(name: str, **fields) -> Pair:
    """A pair drawn by the object renderer (``objects.py``) under ``name``."""
    return Pair(name=name, version=objects.VERSION,
                render_with_mask=lambda d, i, size, seed: objects.render_with_mask(name, d, i, size, seed), **fields)


_register(Pair(
    name="animals", version=animals.VERSION,
    domain_a="zebra-like: wide low striped body, short legs and neck",
    domain_b="giraffe-like: small body, long legs, long slanted neck, patches",
    differs="silhouette aspect: A wider than tall, B taller than wide (and coat texture)",
    render_with_mask=animals.render_with_mask, mask_measure=measures.mask_aspect,
    image_measure=measures.domain_score, estimate_mask=measures.textured_pixels, threshold=measures.ASPECT_THRESHOLD,
    measure="bounding-box height / width"))

_register(_object_pair(
    "discs-stars",
    domain_a="a round disc or blob (slightly oval, wobbly outline)",
    domain_b="a star of 5-7 points",
    differs="silhouette outline: A fills most of its bounding box, B leaves it half empty between its points",
    mask_measure=measures.mask_spikiness, image_measure=measures.object_spikiness, estimate_mask=measures.object_pixels,
    threshold=0.31,
    measure="share of the bounding box left empty"))
_register(_object_pair(
    "mugs-bottles",
    domain_a="a mug (squat body, ring handle on one side)",
    domain_b="a bottle (tall body, shoulders, neck and cap)",
    differs="silhouette aspect: A wider than tall, B two to three times taller than wide",
    mask_measure=measures.mask_aspect, image_measure=measures.object_aspect, estimate_mask=measures.object_pixels,
    threshold=1.3,
    measure="bounding-box height / width"))

_register(_object_pair(
    "rings-crosses",
    domain_a="a ring (a round object with a hole)",
    domain_b="a cross (two bars crossing, no hole)",
    differs="the middle of the silhouette: A has a hole there, B is solid where its bars cross",
    mask_measure=measures.mask_centre_cover, image_measure=measures.object_centre_cover,
    estimate_mask=measures.object_pixels,
    threshold=0.5, measure="share of the silhouette's middle that it covers"))


def get_pair(name: str) -> Pair:
    """The pair called ``name``; a UserError naming the known pairs otherwise."""
    try:
        return PAIRS[name]
    except KeyError:
        raise UserError(f"unknown synthetic pair {name!r}; known pairs: {', '.join(PAIRS)} "
                        f"(see `deepcascade prepare synthetic --list-pairs`)") from None


def render_with_mask(pair: str, domain: str, index: int, size: int, seed: int) -> tuple[Image.Image, np.ndarray]:
    """Image (RGB, size x size) and boolean object mask of one sample of a pair; a pure function."""
    return get_pair(pair).render_with_mask(domain, index, size, seed)


def render(pair: str, domain: str, index: int, size: int, seed: int) -> Image.Image:
    """The image of :func:`render_with_mask`."""
    return render_with_mask(pair, domain, index, size, seed)[0]
