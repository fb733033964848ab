"""Where a run loses the source's appearance, level by level.

    python benchmarks/appearance_by_level.py --run demo_out/run --data demo_out/data

For each direction it prints the frame colour error (the distance between the mean RGB colours, 0..1, of the
image's outer frame in the source and in another image; ``deepcascade evaluate`` reports the final level's) of:

- ``chance``: the source against randomly paired real target-domain test images (evaluate's pairing), and
  each translation's progress from chance (0) to its level's floor (1);
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
import contextlib
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcascade.evaluation.appearance import appearance_measure  # noqa: E402
from deepcascade.inference.translator import Translator  # noqa: E402


class ZeroParams(torch.nn.Module):
    """Stands in for a predictor M^l: all-zero AdaIN parameters (gamma 1, beta 0) whatever the source."""

    def __init__(self, predictor: torch.nn.Module):
        super().__init__()
        self.predictor = predictor

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(self.predictor(features))


@contextlib.contextmanager
def predictors_zeroed(cascade):
    """Every cascade level's M^l replaced by :class:`ZeroParams` inside the block, restored after it."""
    saved = {l: dict(nets.items()) for l, nets in cascade.levels.items()}
    for nets in cascade.levels.values():
        for k in [k for k in nets if k.startswith("M_")]:
            nets[k] = ZeroParams(nets[k])
    try:
        yield
    finally:
        for l, nets in saved.items():
            cascade.levels[l].update(nets)


def frame_error(sources: torch.Tensor, images: torch.Tensor, floor: torch.Tensor, targets: torch.Tensor) -> dict:
    """evaluate's appearance figures (frame colour error, its floor, chance level and progress) of ``images``
    against ``sources``, all (N, 3, S, S) in [0, 1]."""
    pixels = lambda x: (lambda i: x[i].permute(1, 2, 0).numpy() * 255.0)
    return appearance_measure(len(sources), pixels(sources), pixels(images), pixels(floor), len(targets),
                              pixels(targets))


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
    levels = range(5, t.cascade.final_level - 1, -1)
    for src, tgt, direction in (("A", "B", "a2b"), ("B", "A", "b2a")):
        s = x[src]
        out = {l: t.translate_tensor(s, direction, final_level=l) for l in levels}
        with predictors_zeroed(t.cascade):
            plain = {l: t.translate_tensor(s, direction, final_level=l) for l in levels}
        for l in levels:
            rec = t.reconstruct_tensor(s, level=l)
            m, z = frame_error(s, out[l], rec, x[tgt]), frame_error(s, plain[l], rec, x[tgt])
            print(f"{direction}: level {l}: chance {m['frame_colour_error_chance']:.3f}  floor I_l(e_l(source)) "
                  f"{m['frame_colour_error_floor']:.3f}  T cut at {l} {m['frame_colour_error']:.3f} "
                  f"(progress {m['frame_colour_error_progress']:.2f})  no AdaIN {z['frame_colour_error']:.3f}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
