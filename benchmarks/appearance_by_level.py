"""Where a run loses the source's appearance, level by level.

    python benchmarks/appearance_by_level.py --run demo_out/run --data demo_out/data

For each direction it prints the frame colour error (the distance between the mean RGB colours, 0..1, of the
image's outer frame in the source and in another image; ``deepcascade evaluate`` reports the final level's) of:

- ``chance``: the source against randomly paired real target-domain test images;
- ``I_l(e_l(source))``: the source's own features of level l inverted, untranslated: the floor of a translation
  inverted from that level (what the inversion alone loses);
- ``T cut at l``: the translation stopped at level l and inverted there: level 5 is the deepest translator
  alone, each further row adds a cascade level.

A translation row far above its level's floor points at the translator of that level.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcascade.data.transforms import to_tensor  # noqa: E402
from deepcascade.inference.translator import Translator  # noqa: E402

FRAME = 1 / 8  # the outer eighth of each side


def frame_colour(x: torch.Tensor) -> torch.Tensor:
    """Mean RGB colour (N, 3) of the outer frame of images (N, 3, S, S) in [0, 1]."""
    s = x.shape[-1]
    k = max(1, round(s * FRAME))
    mask = torch.ones(s, s, dtype=torch.bool)
    mask[k:-k, k:-k] = False
    return x[:, :, mask].mean(-1)


def error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((frame_colour(a) - frame_colour(b)).norm(dim=1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a trained run folder (cascade trained to its final level)")
    ap.add_argument("--data", required=True, help="a folder with testA/ and testB/")
    ap.add_argument("--n", type=int, default=40, help="test images per domain (default 40)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    data = Path(args.data)
    t = Translator.from_run(args.run, device=args.device)
    x = {d: torch.stack([t.preprocess(Image.open(f).convert("RGB"))
                         for f in sorted((data / f"test{d}").glob("*.png"))[: args.n]]) for d in "AB"}
    final = t.cascade.final_level
    perm = np.random.default_rng(0)
    for src, tgt, direction in (("A", "B", "a2b"), ("B", "A", "b2a")):
        s = x[src]
        chance = x[tgt][torch.as_tensor(perm.integers(0, len(x[tgt]), len(s)))]
        print(f"{direction}: chance {error(s, chance):.3f}")
        for level in range(5, final - 1, -1):
            rec = t.reconstruct_tensor(s, level=level)
            out = t.translate_tensor(s, direction, final_level=level)
            print(f"{direction}: level {level}: floor I_l(e_l(source)) {error(s, rec):.3f}  "
                  f"T cut at {level} {error(s, out):.3f}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
