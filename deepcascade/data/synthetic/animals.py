"""The built-in pair ``animals``: two domains that differ in *shape*, in the spirit of zebra <-> giraffe.

The paper's point is translation between domains whose shapes differ (docs/method.md section 0). These domains
let the whole pipeline be run and measured without downloading anything:

- **Domain A, "zebra-like"**: a wide, low body (ellipse about 2-2.6x wider than tall), short legs, a short thick
  neck at 25-55 degrees and a long head; white/cream coat with dark stripes (bands across the body, i.e.
  repeating horizontally along it; bands across the neck and head; horizontal rings on the legs), a dark mane.
- **Domain B, "giraffe-like"**: a small body sloping down to the rump, legs about twice as long, a long neck
  at 50-82 degrees, a small head with ossicones; cream coat with a reticulated pattern of brown polygonal
  patches (Worley cells), pale lower legs.

Both domains share one background distribution (sky gradient with soft clouds, hazy distant hills and bushes,
ground of grass / savanna / dirt with multi-scale value noise, horizon at 35-68% of the height and above the
animal's feet, a soft shadow), and vary position, scale (by bounding-box area, so size is no cue), pose (neck and
head angle, independent leg swing, tail) and facing (left/right). The animal is always wholly inside the frame.
Position is no cue either: the centre of the animal's bounding box is uniform in ``CENTRE_X`` x ``CENTRE_Y`` in
both domains, and an animal too large for the frame around its centre is shrunk, so that wide and tall animals
spread alike (a translator that places its outputs like the target's real images then need not move them:
docs/measurements.md). Rendering uses PIL
ImageDraw at 2-4x supersampling, then a box-filter downsample (antialiasing); the smooth background is drawn at the
output size and upsampled (rendering speed: docs/measurements.md).

Every image is a pure function of ``(domain, index, size, seed)`` (a ``numpy.random.Generator`` seeded with
``SeedSequence([seed, domain, index])``; no global RNG), so any count or subset is consistent: the first 100
images of a 500-image set are the 100-image set. Test images use indices ``TEST_INDEX_BASE + i``, disjoint from
the training indices. The same seed and index at another size give the same scene at another resolution.

Measurement that separates the domains by shape (``measures.py``): the silhouette's bounding-box aspect ratio
``mask_aspect(mask) = height / width`` (mask from :func:`silhouette_mask`), below ``ASPECT_THRESHOLD = 1.0``
for A and above it for B at 32-256 px. Colour does not tell them apart at the image level, because both
domains share the backgrounds (the coats do differ, as texture should). For images without a mask, e.g.
translations, ``measures.domain_score`` estimates the same aspect ratio from the image alone (the bounding box of the
strongly textured pixels: the animal against a smooth background). The figures are in docs/measurements.md;
tests/test_synthetic.py checks these claims on fresh samples.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scene import DOMAINS, TEST_INDEX_BASE, check_size, image_rng, mix as _mix, supersampling as _supersampling
from .scene import value_noise as _value_noise

VERSION = 2  # bump when the rendering changes, so that a dataset records which generator made it
# the centre of the animal's bounding box, as fractions of the side, uniform in these ranges in both domains
CENTRE_X, CENTRE_Y = (0.32, 0.68), (0.38, 0.62)
__all__ = ["DOMAINS", "TEST_INDEX_BASE", "VERSION", "CENTRE_X", "CENTRE_Y", "render", "render_with_mask",
           "silhouette_mask"]


# ----------------------------------------------------------------------------------------------------------
# geometry helpers (local animal frame: units of body length, y up, facing +x)

def _ellipse(cx, cy, a, b, angle=0.0, n=32):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _capsule(p0, p1, w0, w1, n=8):
    """Tapered limb from p0 (width w0) to p1 (width w1) with round caps."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    ang = math.atan2(d[1], d[0])
    t1 = np.linspace(-np.pi / 2, np.pi / 2, n) + ang  # cap around p1
    t0 = np.linspace(np.pi / 2, 3 * np.pi / 2, n) + ang  # cap around p0
    cap1 = p1 + (w1 / 2) * np.stack([np.cos(t1), np.sin(t1)], 1)
    cap0 = p0 + (w0 / 2) * np.stack([np.cos(t0), np.sin(t0)], 1)
    return np.concatenate([cap1, cap0])


def _polar(p, length, angle):
    return (p[0] + length * math.cos(angle), p[1] + length * math.sin(angle))


class _Part:
    """One polygon of the animal with its texture: ``kind`` in body/neck/head/leg/dark/plain."""

    def __init__(self, poly, kind, axis=0.0, shade=1.0):
        self.poly, self.kind, self.axis, self.shade = np.asarray(poly, float), kind, axis, shade


def _legs(rng, hips, hip_y, ground_y, w_top, w_bottom, swing, spread):
    """Four legs (far pair first, darker, offset by ``spread``) as thigh + shank capsules and hooves."""
    parts = []
    for hx, shade in ((hips[0] + spread, 0.78), (hips[1] + spread, 0.78), (hips[0], 1.0), (hips[1], 1.0)):
        top = (hx, hip_y)
        length = hip_y - ground_y
        foot = (hx + length * math.tan(rng.uniform(-swing, swing)), ground_y)
        knee = ((top[0] + foot[0]) / 2 + rng.uniform(-0.02, 0.03), hip_y - 0.5 * length)
        wk = 0.55 * w_top + 0.45 * w_bottom
        parts.append(_Part(_capsule(top, knee, w_top, wk), "leg", shade=shade))
        parts.append(_Part(_capsule(knee, foot, wk, w_bottom), "leg", shade=shade))
        hoof = _capsule((foot[0], foot[1] + 0.035), foot, w_bottom * 1.05, w_bottom * 1.1, n=5)
        parts.append(_Part(hoof, "dark", shade=shade))
    return parts


def _zebra(rng):
    """Domain A: wide low body, short legs, short thick neck, long head, striped."""
    a, b = 0.5, rng.uniform(0.19, 0.24)
    tilt = rng.uniform(-0.04, 0.04)
    ground = -(b + rng.uniform(0.28, 0.40))
    parts = _legs(rng, (0.31, -0.31), -0.3 * b, ground, 0.105, 0.05, swing=0.32,
                  spread=rng.uniform(0.06, 0.11))
    far_legs, near_legs = parts[:6], parts[6:]
    tail_root = (-0.47, 0.35 * b)
    tail_end = _polar(tail_root, rng.uniform(0.28, 0.36), -np.pi / 2 - rng.uniform(0.1, 0.6))
    tail = [_Part(_capsule(tail_root, tail_end, 0.035, 0.025), "dark")]
    body = [_Part(_ellipse(0, 0, a, b, tilt), "body"),
            _Part(_ellipse(0.3, 0.02, 0.22, b * 0.97, tilt), "body"),
            _Part(_ellipse(-0.3, 0.03, 0.23, b * 1.0, tilt), "body")]
    phi = rng.uniform(np.radians(25), np.radians(55))
    n0 = (0.36, 0.25 * b)
    n1 = _polar(n0, rng.uniform(0.30, 0.40), phi)
    neck = [_Part(_capsule(n0, n1, 0.24, 0.15), "neck", axis=phi)]
    mane = [_Part(_capsule(_polar(n0, 0.1, phi + 1.2), _polar(n1, 0.06, phi + 1.4), 0.06, 0.05), "dark")]
    psi = phi - rng.uniform(np.radians(85), np.radians(125))
    h1 = _polar(n1, rng.uniform(0.28, 0.34), psi)
    head = [_Part(_capsule(n1, h1, 0.16, 0.10), "head", axis=psi),
            _Part(_capsule(h1, _polar(h1, 0.02, psi), 0.10, 0.09, n=5), "dark")]  # muzzle
    ears = [_Part(_capsule(_polar(n1, 0.03, psi + np.pi), _polar(n1, 0.12, psi + np.pi - 0.7 * s), 0.045, 0.02,
                           n=4), "head", axis=psi) for s in (0.9, 1.3)]
    return far_legs + tail + body + near_legs + mane + neck + ears + head, ground


def _giraffe(rng):
    """Domain B: small sloping body, long legs, long slanted neck, small head with ossicones, spotted."""
    a, b = 0.4, rng.uniform(0.19, 0.24)
    slope = rng.uniform(0.10, 0.24)  # the back slopes down to the rump
    ground = -(b + rng.uniform(0.78, 1.0))
    parts = _legs(rng, (0.25, -0.25), -0.3 * b, ground, 0.10, 0.045, swing=0.22,
                  spread=rng.uniform(0.05, 0.09))
    far_legs, near_legs = parts[:6], parts[6:]
    tail_root = (-0.38, 0.1 * b - 0.38 * math.sin(slope))
    tail_end = _polar(tail_root, rng.uniform(0.4, 0.5), -np.pi / 2 - rng.uniform(0.05, 0.35))
    tail = [_Part(_capsule(tail_root, tail_end, 0.03, 0.02), "plain"),
            _Part(_capsule(tail_end, _polar(tail_end, 0.09, -np.pi / 2), 0.05, 0.035, n=5), "dark")]
    body = [_Part(_ellipse(0, 0, a, b, slope), "body"),
            _Part(_ellipse(0.22, 0.07, 0.2, b * 1.05, slope), "body")]
    phi = rng.uniform(np.radians(50), np.radians(82))
    n0 = (0.27, 0.12 + 0.27 * math.sin(slope))
    n1 = _polar(n0, rng.uniform(0.9, 1.25), phi)
    neck = [_Part(_capsule(n0, n1, 0.20, 0.085), "neck", axis=phi)]
    mane = [_Part(_capsule(_polar(n0, 0.08, phi + 1.2), _polar(n1, 0.03, phi + 1.5), 0.035, 0.025), "dark")]
    psi = phi - rng.uniform(np.radians(70), np.radians(115))
    h1 = _polar(n1, rng.uniform(0.19, 0.24), psi)
    head = [_Part(_capsule(n1, h1, 0.10, 0.065), "head", axis=psi)]
    ossicones = []
    for k in (0.0, 0.25):
        base = _polar(n1, 0.02, psi + np.pi / 2)
        tip = _polar(base, 0.085, psi + np.pi / 2 + 0.35 + k)
        ossicones += [_Part(_capsule(base, tip, 0.022, 0.018, n=4), "plain"),
                      _Part(_ellipse(*tip, 0.016, 0.016, n=8), "dark")]
    ears = [_Part(_capsule(n1, _polar(n1, 0.08, psi + np.pi - 0.9), 0.035, 0.015, n=4), "head", axis=psi)]
    return far_legs + tail + body + near_legs + mane + neck + ossicones + ears + head, ground


# ----------------------------------------------------------------------------------------------------------
# textures

def _worley(rng, ys, xs, cell):
    """(F2 - F1) of a jittered-grid Worley pattern and the id of the nearest cell, at points (ys, xs)."""
    gy, gx = np.floor(ys / cell).astype(np.int64), np.floor(xs / cell).astype(np.int64)
    oy, ox = gy.min() - 1, gx.min() - 1
    ny, nx = gy.max() - oy + 2, gx.max() - ox + 2
    jit = rng.uniform(0.15, 0.85, size=(ny, nx, 2))
    f1 = np.full(ys.shape, np.inf)
    f2 = np.full(ys.shape, np.inf)
    best = np.zeros(ys.shape, np.int64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cy, cx = gy + dy - oy, gx + dx - ox
            py = (cy + oy + jit[cy, cx, 0]) * cell
            px = (cx + ox + jit[cy, cx, 1]) * cell
            d = np.hypot(ys - py, xs - px)
            closer = d < f1
            f2 = np.where(closer, f1, np.minimum(f2, d))
            best = np.where(closer, cy * nx + cx, best)
            f1 = np.where(closer, d, f1)
    return f2 - f1, best


class _Coat:
    """Per-animal colours and pattern parameters; ``paint`` returns the RGB texture of one part."""

    def __init__(self, domain, rng, scale):
        self.domain, self.scale = domain, scale  # pixels per body length
        if domain == "A":
            self.base = np.array([rng.uniform(228, 250), rng.uniform(224, 246), rng.uniform(212, 240)])
            dark = rng.uniform(12, 45)
            self.dark = np.array([dark + rng.uniform(0, 25), dark + rng.uniform(0, 12), dark])
            self.period = rng.uniform(0.07, 0.10) * scale
            self.duty = rng.uniform(0.4, 0.55)
            self.wobble = rng.uniform(0.01, 0.025) * scale
            self.phase = rng.uniform(0, 1)
        else:
            self.base = np.array([rng.uniform(215, 240), rng.uniform(185, 215), rng.uniform(130, 170)])
            self.spot = np.array([rng.uniform(140, 190), rng.uniform(70, 110), rng.uniform(25, 55)])
            self.dark = np.array([rng.uniform(50, 80), rng.uniform(30, 45), rng.uniform(20, 35)])
            self.cell = rng.uniform(0.11, 0.14) * scale
            self.gap = rng.uniform(0.12, 0.2) * self.cell
            self.spot_rng_seed = int(rng.integers(1 << 31))

    def paint(self, part, ys, xs, rel_y):
        """RGB float texture at pixel centres (ys, xs; image rows down, mirrored with the animal).

        ``rel_y`` in [0, 1] runs from the top to the bottom of the part (of the whole leg for legs).
        """
        shade = part.shade * (1.0 - 0.22 * np.clip(rel_y, 0, 1) ** 1.5)  # light from above: belly darker
        if part.kind == "dark":
            return (self.dark[None] * part.shade) * np.ones_like(ys)[..., None]
        if part.kind == "plain":
            return self.base[None] * shade[..., None]
        if self.domain == "A":
            if part.kind == "leg":  # rings round the legs
                u, per = ys, self.period * 0.7
            elif part.kind == "body":  # bands across the body, repeating along it
                u = xs + self.wobble * np.sin(ys / (0.9 * self.period) + 3 * self.phase)
                per = self.period
            else:  # neck, head: bands across the part's axis (axis in the local frame, y up)
                c, s = math.cos(part.axis), math.sin(part.axis)
                u = xs * c - ys * s
                u = u + self.wobble * np.sin((xs * s + ys * c) / (0.9 * self.period) + 3 * self.phase)
                per = self.period * (0.75 if part.kind == "head" else 1.0)
            stripe = ((u / per + self.phase) % 1.0) < self.duty
            return np.where(stripe[..., None], self.dark[None], self.base[None]) * shade[..., None]
        # domain B: reticulated patches, smaller on the head and legs; pale lower legs
        small = part.kind in ("leg", "head")
        rng = np.random.default_rng(self.spot_rng_seed + int(small))
        edge, cid = _worley(rng, ys, xs, self.cell * (0.75 if small else 1.0))
        tint = 0.85 + 0.3 * ((cid * 2654435761 % 1000) / 1000.0)
        spot = np.clip(self.spot[None] * tint[..., None], 0, 255)
        col = np.where((edge > self.gap)[..., None], spot, self.base[None])
        if part.kind == "leg":
            col = np.where((rel_y > 0.45)[..., None], self.base[None], col)
        return col * shade[..., None]


# ----------------------------------------------------------------------------------------------------------
# background

SKIES = [  # (top, horizon)
    ((70, 130, 205), (185, 210, 235)),
    ((95, 150, 215), (205, 220, 235)),
    ((130, 150, 175), (200, 205, 210)),  # overcast
    ((80, 100, 160), (235, 195, 150)),  # evening
    ((55, 115, 190), (170, 205, 230)),
]
GROUNDS = [  # (far, near)
    ((175, 165, 115), (160, 135, 80)),  # dry savanna
    ((140, 150, 95), (105, 125, 60)),  # grass
    ((165, 150, 120), (140, 115, 85)),  # dirt
    ((120, 140, 90), (80, 105, 50)),  # green
    ((190, 175, 130), (175, 150, 100)),  # pale sand
]


def _background(rng, S, below):
    """Sky gradient with soft clouds, hazy hills, noisy ground (an RGB image, S x S). The horizon is at 35-68 % of
    the height, and not lower than row ``below`` (where the animal's feet allow)."""
    horizon = int(max(0.2 * S, min(S * rng.uniform(0.35, 0.68), below)))
    jitter = lambda c: np.clip(np.asarray(c, float) + rng.uniform(-12, 12, 3), 0, 255)  # noqa: E731
    top, hor = (jitter(c) for c in SKIES[rng.integers(len(SKIES))])
    far, near = (jitter(c) for c in GROUNDS[rng.integers(len(GROUNDS))])
    rows = np.arange(S, dtype=np.float32)[:, None]
    t_sky = np.clip(rows / max(horizon, 1), 0, 1) ** 1.3
    sky = _mix(top, hor, t_sky[..., None])  # (S, 1, 3)
    t_gnd = np.clip((rows - horizon) / max(S - horizon, 1), 0, 1) ** 0.8
    ground = _mix(far, near, t_gnd[..., None])
    # distant hills: a wavy line above the horizon, hazy colour between sky and ground
    cols = np.arange(S, dtype=np.float32)
    hill = horizon - S * (0.02 + 0.05 * rng.random()) * (
        1 + np.sin(cols / S * rng.uniform(3, 9) + rng.uniform(0, 6)) * 0.6
        + 0.4 * np.sin(cols / S * rng.uniform(10, 20) + rng.uniform(0, 6)))
    hill_col = _mix(hor, far, rng.uniform(0.35, 0.6)) * rng.uniform(0.85, 1.0)
    soft = max(1.0, S * 0.01)
    in_hill = np.clip((rows - hill[None, :]) / soft + 0.5, 0, 1)[..., None]  # (S, S, 1)
    in_ground = np.clip((rows - horizon) / (soft * 2) + 0.5, 0, 1)[..., None]
    img = sky * (1 - in_hill) + hill_col * in_hill
    img = img * (1 - in_ground) + ground * in_ground
    # texture: multi-scale value noise (stronger on the ground), fine grain
    noise = sum(w * _value_noise(rng, S, S, c) for w, c in ((1.0, 4), (0.6, 9), (0.35, 20)))
    amp = np.where(rows > horizon, 14.0, 4.0) * (0.7 + 0.6 * rng.random())
    lum = np.array([1.0, 0.95, 0.8])
    img = img + (noise * amp)[..., None] * lum
    streaks = _value_noise(rng, S, S, 48) * np.where(rows > horizon, 5.0, 0.0)
    img = img + streaks[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    out = Image.fromarray(img, mode="RGB")
    # soft clouds and distant bushes, blurred so that they stay background
    layer = Image.new("L", (S, S), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.integers(0, 4)):
        cx, cy = rng.uniform(0, S), rng.uniform(0, horizon * 0.7)
        for _ in range(4):
            rx, ry = S * rng.uniform(0.04, 0.1), S * rng.uniform(0.015, 0.035)
            ox, oy = rng.uniform(-1.5, 1.5) * rx, rng.uniform(-0.5, 0.5) * ry
            draw.ellipse([cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry], fill=int(rng.uniform(90, 170)))
    layer = layer.filter(ImageFilter.GaussianBlur(max(1.0, S * 0.025)))
    out = Image.composite(Image.new("RGB", (S, S), (245, 245, 248)), out, layer)
    bush = Image.new("L", (S, S), 0)
    draw = ImageDraw.Draw(bush)
    for _ in range(rng.integers(0, 4)):
        cx, cy = rng.uniform(0, S), horizon + rng.uniform(-0.01, 0.03) * S
        r = S * rng.uniform(0.015, 0.04)
        draw.ellipse([cx - 1.6 * r, cy - r, cx + 1.6 * r, cy + 0.4 * r], fill=int(rng.uniform(120, 200)))
    bush = bush.filter(ImageFilter.GaussianBlur(max(1.0, S * 0.012)))
    bush_col = tuple(int(v) for v in _mix(far, (40, 60, 30), 0.6))
    out = Image.composite(Image.new("RGB", (S, S), bush_col), out, bush)
    return out


# ----------------------------------------------------------------------------------------------------------
# rendering

def render_with_mask(domain: str, index: int, size: int, seed: int) -> tuple[Image.Image, np.ndarray]:
    """The image and the animal's boolean silhouette mask (size x size) of one sample."""
    check_size(size)
    rng = image_rng(domain, index, seed)
    ss = _supersampling(size)
    S = size * ss
    parts, ground = (_zebra if domain == "A" else _giraffe)(rng)
    leg_top = max(p.poly[:, 1].max() for p in parts if p.kind == "leg")
    facing = 1.0 if rng.random() < 0.5 else -1.0
    allpts = np.concatenate([p.poly for p in parts])
    x0, x1 = allpts[:, 0].min(), allpts[:, 0].max()
    y0, y1 = allpts[:, 1].min(), allpts[:, 1].max()
    bw, bh = x1 - x0, y1 - y0
    # where the animal stands is drawn the same way in both domains (the centre of its bounding box), so that
    # place is no domain cue: a translator can keep the source's place and still look like the target's images.
    # Scale by area (so that size is no cue either), then shrink until the box fits the frame around its centre.
    cx, cy = rng.uniform(*CENTRE_X) * S, rng.uniform(*CENTRE_Y) * S
    scale = rng.uniform(0.42, 0.72) * S / math.sqrt(bw * bh)
    scale = float(min(scale, 2 * min(cx - 0.02 * S, 0.98 * S - cx) / bw, 2 * min(cy - 0.02 * S, 0.985 * S - cy) / bh))
    left = cx - bw * scale / 2
    feet = cy + ((y1 + y0) / 2 - ground) * scale  # local y = ground, in image rows
    # the background is smooth: render it at the output size and upsample; the horizon lies above the feet
    bg = _background(rng, size, below=(feet / S - 0.03) * size)
    img = bg.resize((S, S), Image.Resampling.BICUBIC)

    def to_px(poly):
        lx = poly[:, 0] if facing > 0 else (x1 + x0) - poly[:, 0]
        return np.stack([left + (lx - x0) * scale, feet - (poly[:, 1] - ground) * scale], 1)

    # soft shadow on the ground under the body
    shadow = Image.new("L", (S, S), 0)
    sx, sy = to_px(np.array([[0.0, ground]]))[0]
    rx, ry = 0.55 * scale, 0.05 * scale
    ImageDraw.Draw(shadow).ellipse([sx - rx, sy - ry, sx + rx, sy + ry], fill=int(rng.uniform(50, 90)))
    shadow = shadow.filter(ImageFilter.GaussianBlur(float(max(1.0, 0.03 * scale))))
    img = Image.composite(Image.new("RGB", (S, S), (40, 40, 30)), img, shadow)

    coat = _Coat(domain, rng, scale)
    mask = Image.new("L", (S, S), 0)
    mask_draw = ImageDraw.Draw(mask)
    for part in parts:
        pts = to_px(part.poly)
        bx0, by0 = max(0, int(np.floor(pts[:, 0].min()))), max(0, int(np.floor(pts[:, 1].min())))
        bx1, by1 = min(S, int(np.ceil(pts[:, 0].max())) + 1), min(S, int(np.ceil(pts[:, 1].max())) + 1)
        if bx1 <= bx0 or by1 <= by0:
            continue
        part_mask = Image.new("L", (bx1 - bx0, by1 - by0), 0)
        ImageDraw.Draw(part_mask).polygon([(float(x - bx0), float(y - by0)) for x, y in pts], fill=255)
        mask_draw.polygon([(float(x), float(y)) for x, y in pts], fill=255)
        ys, xs = np.mgrid[by0:by1, bx0:bx1].astype(np.float64) + 0.5
        top = pts[:, 1].min()
        if part.kind == "leg":  # position along the whole leg, hip to hoof
            top = to_px(np.array([[0.0, leg_top]]))[0, 1]
        rel_y = (ys - top) / max(1.0, (feet if part.kind == "leg" else by1) - top)
        # pattern coordinates mirror with the animal, so that stripes and patches follow its frame
        tex = coat.paint(part, ys, xs * facing, rel_y)
        img.paste(Image.fromarray(np.clip(tex, 0, 255).astype(np.uint8), mode="RGB"), (bx0, by0), part_mask)

    img = img.resize((size, size), Image.Resampling.BOX)
    small = np.asarray(mask.resize((size, size), Image.Resampling.BOX))
    return img, small >= 128


def render(domain: str, index: int, size: int, seed: int) -> Image.Image:
    """One RGB image (size x size) of domain 'A' (zebra-like) or 'B' (giraffe-like); a pure function."""
    return render_with_mask(domain, index, size, seed)[0]


def silhouette_mask(domain: str, index: int, size: int, seed: int) -> np.ndarray:
    """The animal's boolean mask (size x size) in the image ``render(domain, index, size, seed)``."""
    return render_with_mask(domain, index, size, seed)[1]
