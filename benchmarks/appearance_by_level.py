"""Where a run loses the source's appearance, level by level.

    python benchmarks/appearance_by_level.py --run demo_out/run --data demo_out/data

For each direction it prints the frame colour error (the distance between the mean RGB colours, 0..1, of the
image's outer frame in the source and in another image; ``deepcascade evaluate`` reports the final level's) of:

- ``chance``: the source against randomly paired real target-domain test images;
- ``I_l(e_l(source))``: the source's own features of level l inverted, untranslated: the floor of a translation
  inverted from that level (what the inversion alone loses);
- ``T cut at l``: the translation stopped at level l and inverted there: level 5 is the deepest translator
  alone, each further row adds a cascade level;
- ``no AdaIN``: the same with every predictor M^l's output replaced by zeros (plain instance normalization):
  the share of the source's appearance that reaches the translation through the AdaIN parameters at all.

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

from deepcascade.evaluation.appearance import frame_colour  # noqa: E402
from deepcascade.inference.translator import Translator  # noqa: E402


def error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean frame colour error between image batches (N, 3, S, S) in [0, 1] (evaluate's measure)."""
    def colours(x):
        return np.stack([frame_colour(im.permute(1, 2, 0).numpy() * 255.0) for im in x])
    return float(np.linalg.norm(colours(a) - colours(b), axis=1).mean())


class ZeroParams(torch.nn.Module):
    """Stands in for a predictor M^l: all-zero AdaIN parameters (gamma 1, beta 0) whatever the source."""

    def __init__(self, predictor: torch.nn.Module):
        super().__init__()
        self.predictor = predictor

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(self.predictor(features))


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
            levels = t.cascade.levels
            saved = {l: dict(nets.items()) for l, nets in levels.items()}
            for nets in levels.values():
                for k in [k for k in nets if k.startswith("M_")]:
                    nets[k] = ZeroParams(nets[k])
            plain = t.translate_tensor(s, direction, final_level=level)
            for l, nets in saved.items():
                levels[l].update(nets)
            print(f"{direction}: level {level}: floor I_l(e_l(source)) {error(s, rec):.3f}  "
                  f"T cut at {level} {error(s, out):.3f}  no AdaIN {error(s, plain):.3f}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
