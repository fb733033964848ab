"""Built-in pairs of simple objects on backgrounds of any colour, held out from tuning: they differ by shape only.

- ``discs-stars``: A a round disc or blob (slightly oval, wobbly outline); B a star of 5-7 points.
- ``mugs-bottles``: A a mug (squat body, handle on one side); B a bottle (tall body, shoulders, neck, cap).
- ``rings-crosses``: A a ring (a round object with a hole); B a cross (two bars crossing, no hole).

One scene serves every object pair, drawn the same way in both domains so that only the silhouette tells them
apart: a background of a random colour (hue uniform, any saturation and brightness), plain, shaded or textured
(smooth blotches, stripes or checks of two close tones at a random angle); an object of another random colour,
at least ``MIN_CONTRAST`` away from the background's, plain, shaded, striped or dotted; the object's bounding
box centred uniformly in ``CENTRE`` x ``CENTRE``, its size (square root of the box area) uniform in ``AREA``,
rotated a little, mirrored at random, and shrunk until it lies inside the frame's ``MARGIN`` (so the outer
eighth of the image is background only). The object is drawn at 4x (2x above 96 px) and box-filtered, the
scene at the output size; the mask is the object's coverage >= 1/2.

Every image is a pure function of ``(pair, domain, index, size, seed)``: the generator is seeded with
``SeedSequence([seed, domain, index, stream])``, ``stream`` one number per pair.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

from .scene import check_size, image_rng, value_noise

VERSION = 1  # bump when the rendering changes, so that a dataset records which generator made it
CENTRE = (0.36, 0.64)  # bounding-box centre, fraction of the side, both axes, both domains
AREA = (0.32, 0.52)  # sqrt(bounding-box area) / side before shrinking to fit
MARGIN = 0.13  # the object stays this far (fraction of the side) from every edge
MIN_CONTRAST = 130.0  # RGB distance (0..255 scale) between the object's and the background's base colours
TEXTURE = 30.0  # largest colour swing of a background or object texture around its base colour


# ----------------------------------------------------------------------------------------------------------
# silhouettes, in local units (x right, y down), each a list of (polygon, fill 255 or 0) drawn in order

def _rotate(poly: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return poly @ np.array([[c, s], [-s, c]])


def _disc(rng) -> list:
    """A round blob: an ellipse (axes ratio 0.72-1) with a gently wobbling radius."""
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    r = 1 + sum(rng.uniform(0, amp) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
                for k, amp in ((2, 0.05), (3, 0.05), (5, 0.025)))
    poly = np.stack([r * np.cos(t), rng.uniform(0.72, 1.0) * r * np.sin(t)], 1)
    return [(_rotate(poly, rng.uniform(0, np.pi)), 255)]


def _star(rng) -> list:
    """A star of 5-7 points, inner radius 0.36-0.5 of the outer, tips jittered a little."""
    n = int(rng.integers(5, 8))
    inner = rng.uniform(0.36, 0.5)
    t = np.arange(2 * n) * np.pi / n
    r = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner) * rng.uniform(0.93, 1.07, 2 * n)
    poly = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    return [(_rotate(poly, rng.uniform(0, 2 * np.pi / n)), 255)]


def _ellipse(cx, cy, rx, ry, n=40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _rounded_box(x0, y0, x1, y1, r_top, r_bottom, n=6) -> np.ndarray:
    """Outline of a box with rounded corners (radii at the top and at the bottom), corner by corner from the top
    right (y down)."""
    pts = []
    corners = ((x1 - r_top, y0 + r_top, r_top, -np.pi / 2), (x1 - r_bottom, y1 - r_bottom, r_bottom, 0),
               (x0 + r_bottom, y1 - r_bottom, r_bottom, np.pi / 2), (x0 + r_top, y0 + r_top, r_top, np.pi))
    for cx, cy, r, a0 in corners:
        a = a0 + np.linspace(0, np.pi / 2, n)
        pts.append(np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1))
    return np.concatenate(pts)


def _mug(rng) -> list:
    """A mug: a body about as tall as wide (slightly narrower at the foot) and a ring handle on its side."""
    h = rng.uniform(0.8, 1.1)
    foot = rng.uniform(0.82, 1.0)
    body = _rounded_box(-0.5, -h / 2, 0.5, h / 2, 0.03, 0.12)
    body[:, 0] *= np.where(body[:, 1] > 0, 1 - (1 - foot) * body[:, 1] / (h / 2), 1.0)  # taper to the foot
    hx, hy, hr = 0.5 - 0.02, rng.uniform(-0.08, 0.04) * h, rng.uniform(0.26, 0.34)
    outer = _ellipse(hx, hy, hr, hr * h * rng.uniform(1.0, 1.2))
    hole = _ellipse(hx, hy, hr * 0.55, hr * h * 0.62)
    return [(outer, 255), (hole, 0), (body, 255)]


def _bottle(rng) -> list:
    """A bottle: a tall body, rounded shoulders narrowing to a neck, a cap."""
    hb, sh = rng.uniform(1.3, 1.9), rng.uniform(0.3, 0.5)
    wn, ln = rng.uniform(0.3, 0.45), rng.uniform(0.4, 0.75)
    # right half of the outline from the foot up, mirrored for the left half
    s = np.linspace(0, 1, 10)
    shoulder = np.stack([wn / 2 + (0.5 - wn / 2) * (0.5 + 0.5 * np.cos(np.pi * s)), -hb - sh * s], 1)
    top = -hb - sh - ln
    right = np.concatenate([[[0.5 - 0.06, 0.0], [0.5, -0.06]], shoulder, [[wn / 2, top]]])
    body = np.concatenate([right, right[::-1] * [-1, 1]])
    cw, ch = wn * rng.uniform(1.1, 1.25), rng.uniform(0.12, 0.2)
    cap = _rounded_box(-cw / 2, top - ch, cw / 2, top + 0.02, 0.02, 0.0, n=3)
    return [(body, 255), (cap, 255)]


def _ring(rng) -> list:
    """A ring: a slightly oval annulus, the hole 0.45-0.65 of the outer radius."""
    squash, hole = rng.uniform(0.8, 1.0), rng.uniform(0.45, 0.65)
    angle = rng.uniform(0, np.pi)
    return [(_rotate(_ellipse(0, 0, 1, squash, 64), angle), 255),
            (_rotate(_ellipse(0, 0, hole, hole * squash, 48), angle), 0)]


def _cross(rng) -> list:
    """A cross: two bars 0.3-0.45 of their length wide, crossing at their middles, at any angle."""
    w = rng.uniform(0.3, 0.45) / 2
    arm = np.array([[w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1], [-w, w], [-1, w], [-1, -w],
                    [-w, -w], [-w, -1]], float)
    arm[:, 0] *= rng.uniform(0.85, 1.0)  # one bar a little shorter
    return [(_rotate(arm, rng.uniform(0, np.pi / 2)), 255)]


SHAPES = {"discs-stars": (_disc, _star), "mugs-bottles": (_mug, _bottle), "rings-crosses": (_ring, _cross)}
STREAMS = {"discs-stars": 1, "mugs-bottles": 2, "rings-crosses": 3}  # keeps the pairs' random draws apart


# ----------------------------------------------------------------------------------------------------------
# colours and textures (at the output size)

def _hsv(h, s, v) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _colours(rng) -> tuple[np.ndarray, np.ndarray]:
    """The background's and the object's base colours: any hue, saturation and brightness, far apart."""
    bg = _hsv(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.2, 0.95))
    for _ in range(64):
        obj = _hsv(rng.random(), rng.uniform(0.0, 1.0), rng.uniform(0.15, 1.0))
        if np.linalg.norm(obj - bg) >= MIN_CONTRAST:
            return bg, obj
    return bg, np.where(bg > 127, bg - 150, bg + 150).clip(0, 255)  # no draw was far enough: the opposite


def _pattern(rng, size: int, kind: str) -> np.ndarray:
    """A texture in [-1, 1] at (size, size): flat, a linear shade, smooth blotches, stripes, checks or dots."""
    if kind == "plain":
        return np.zeros((size, size))
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    a = rng.uniform(0, np.pi)
    u, v = xx * math.cos(a) + yy * math.sin(a), -xx * math.sin(a) + yy * math.cos(a)
    if kind == "shade":
        return 2 * (u - u.min()) / max(u.max() - u.min(), 1e-6) - 1
    if kind == "blotches":
        n = value_noise(rng, size, size, int(rng.integers(3, 7))) + 0.5 * value_noise(rng, size, size, 12)
        return np.clip(n / max(np.abs(n).max(), 1e-6), -1, 1)
    period = rng.uniform(0.06, 0.16)
    soft = 4.0 / (period * size)  # about one pixel of antialiasing at the edges of the bands
    if kind == "stripes":
        return np.clip(np.sin(2 * np.pi * u / period + rng.uniform(0, 6.3)) / soft, -1, 1)
    if kind == "checks":
        return np.clip(np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period) / soft ** 2, -1, 1)
    # dots: a grid of round spots
    du, dv = (u / period) % 1 - 0.5, (v / period) % 1 - 0.5
    return np.clip((0.3 - np.hypot(du, dv)) * period * size, -1, 1)


BACKGROUNDS = ("plain", "shade", "blotches", "stripes", "checks")
COATS = ("plain", "plain", "shade", "shade", "stripes", "dots")


def _texture(rng, size: int, base: np.ndarray, kinds: tuple) -> np.ndarray:
    """``base`` colour swinging along a pattern towards a nearby second colour (at most ``TEXTURE`` away)."""
    pattern = _pattern(rng, size, kinds[int(rng.integers(len(kinds)))])
    swing = rng.normal(size=3)
    swing *= rng.uniform(0.4, 1.0) * TEXTURE / max(np.linalg.norm(swing), 1e-6)
    return base[None, None] + pattern[..., None] * swing[None, None]


# ----------------------------------------------------------------------------------------------------------
# rendering

def render_with_mask(pair: str, domain: str, index: int, size: int, seed: int) -> tuple[Image.Image, np.ndarray]:
    """The image and the object's boolean mask (size x size) of one sample of an object pair."""
    check_size(size)
    rng = image_rng(domain, index, seed, STREAMS[pair])
    parts = SHAPES[pair][0 if domain == "A" else 1](rng)
    bg_colour, obj_colour = _colours(rng)
    background = _texture(rng, size, bg_colour, BACKGROUNDS)
    coat = _texture(rng, size, obj_colour, COATS)
    # pose: a small tilt and a mirror, then scale and place the bounding box as both domains do
    tilt, mirror = rng.uniform(-0.2, 0.2), rng.random() < 0.5
    parts = [(_rotate(p * [(-1 if mirror else 1), 1], tilt), fill) for p, fill in parts]
    pts = np.concatenate([p for p, fill in parts if fill])
    lo, hi = pts.min(0), pts.max(0)
    w, h = hi - lo
    cx, cy = rng.uniform(*CENTRE, 2) * size
    scale = rng.uniform(*AREA) * size / math.sqrt(w * h)
    room = [2 * min(c - MARGIN * size, (1 - MARGIN) * size - c) for c in (cx, cy)]
    scale = min(scale, room[0] / w, room[1] / h)
    ss = 4 if size <= 96 else 2
    cover = Image.new("L", (size * ss, size * ss), 0)
    draw = ImageDraw.Draw(cover)
    for poly, fill in parts:
        xy = ((poly - (lo + hi) / 2) * scale + [cx, cy]) * ss
        draw.polygon([(float(x), float(y)) for x, y in xy], fill=fill)
    alpha = np.asarray(cover.resize((size, size), Image.Resampling.BOX), dtype=np.float64) / 255.0
    img = background * (1 - alpha[..., None]) + coat * alpha[..., None]
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), mode="RGB"), alpha >= 0.5
