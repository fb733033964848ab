"""The built-in synthetic pairs' figures of docs/datasets.md ("Built-in synthetic pairs"), reproduced.

    python benchmarks/synthetic_pairs.py [--n 200] [--seed 3]

For every pair, on ``--n`` fresh samples per domain (indices from 10000, so no data set's images):

- the judge's accuracy from the true mask and from the image alone at 32, 64 and 128 px, and the range of the
  shape measure per domain at 64 px;
- the judge from the image alone on damaged real images at 64 px (Gaussian blur of 1 and 2 px, pixel noise of
  sigma 12, smooth colour blotches of +-40 over the whole image): how far it can be trusted on translations;
- the best single threshold's accuracy on the box size (sqrt of the mask's bounding-box area): 0.5 is no cue;
- milliseconds per 64 px image (this machine, this load).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcascade.data import synthetic  # noqa: E402
from deepcascade.data.synthetic.scene import value_noise  # noqa: E402

SIZES = (32, 64, 128)
DAMAGE = ("blur 1 px", "blur 2 px", "noise 12", "blotches 40")


def best_threshold_accuracy(a: np.ndarray, b: np.ndarray) -> float:
    v, lab = np.r_[a, b], np.r_[np.zeros(len(a)), np.ones(len(b))]
    return max(max(((v > t) == lab).mean(), ((v <= t) == lab).mean()) for t in np.unique(v))


def damage(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    if kind.startswith("blur"):
        return img.filter(ImageFilter.GaussianBlur(float(kind.split()[1])))
    a = np.asarray(img, np.float64)
    if kind.startswith("noise"):
        a = a + rng.normal(0, 12, a.shape)
    else:
        a = a + np.stack([value_noise(rng, a.shape[0], a.shape[1], 4) for _ in range(3)], -1) * 40
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


def measure(name: str, n: int, seed: int) -> None:
    pair = synthetic.get_pair(name)
    rng = np.random.default_rng(0)
    print(f"{name}: A = {pair.domain_a}; B = {pair.domain_b}; measure: {pair.measure}, threshold {pair.threshold}")
    for size in SIZES:
        t = time.perf_counter()
        samples = {d: [pair.render_with_mask(d, 10_000 + i, size, seed) for i in range(n)] for d in "AB"}
        ms = (time.perf_counter() - t) / (2 * n) * 1000
        from_mask = np.mean([pair.judge_mask(m) == d for d in "AB" for _, m in samples[d]])
        from_image = np.mean([pair.judge_image(im) == d for d in "AB" for im, _ in samples[d]])
        line = f"  {size:3d} px: judge from mask {from_mask:.3f}, from image {from_image:.3f}, {ms:.1f} ms/image"
        if size == 64:
            ranges = {d: np.array([pair.mask_measure(m) for _, m in samples[d]]) for d in "AB"}
            line += "; measure A {:.2f}-{:.2f}, B {:.2f}-{:.2f}".format(
                np.nanmin(ranges["A"]), np.nanmax(ranges["A"]), np.nanmin(ranges["B"]), np.nanmax(ranges["B"]))
            boxes = {d: np.array([np.sqrt((np.ptp(np.nonzero(m)[0]) + 1) * (np.ptp(np.nonzero(m)[1]) + 1))
                                  for _, m in samples[d]]) for d in "AB"}
            hurt = {k: np.mean([pair.judge_image(damage(im, k, rng)) == d for d in "AB" for im, _ in samples[d]])
                    for k in DAMAGE}
        print(line)
    print("  64 px, damaged images judged right: " + ", ".join(f"{k} {v:.2f}" for k, v in hurt.items()))
    print(f"  box size as a domain cue (best threshold): {best_threshold_accuracy(boxes['A'], boxes['B']):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="samples per domain")
    ap.add_argument("--seed", type=int, default=3, help="generator seed")
    ap.add_argument("--pair", action="append", help="a pair (repeatable); default every pair")
    args = ap.parse_args()
    for name in args.pair or list(synthetic.PAIRS):
        measure(name, args.n, args.seed)


if __name__ == "__main__":
    main()
