"""Where a run loses the source's layout and the target's shape, level by level (built-in synthetic data only).

    python benchmarks/layout_by_level.py --run demo_out/run --data demo_out/data

For each direction it prints the silhouette centre shift (mean, and its |dx| and |dy| parts, fractions of the
image side), the slopes of the silhouette centres' x and y on the sources' true ones (1: the positions keep
their spread; below 1: pulled towards the middle of the frame) and the silhouette target share
(``deepcascade.evaluation.layout``) of:

- ``sources``: the test sources' own pixels: the silhouette estimator's error (evaluate's
  ``centre_shift_floor``);
- ``quantile transport``: no network: each source's true centre moved, x and y each on its own, to the same
  quantile of the target domain's training positions. A translator whose outputs are placed like the target
  domain's real images (what the adversarial loss asks for) cannot keep the centres closer than this where the
  two domains' positions are spread differently (on version 1 of the synthetic domains the frame confined the
  wide zebras horizontally and the tall giraffes vertically: 0.092 / 0.076; version 2 places both alike: 0.015);
- ``I_l(e_l(target))``: the target domain's test images through the inversion of level l, untranslated: how
  far the inversion alone moves the silhouettes of the kind of image the translation must produce, a floor
  for the translations inverted from that level;
- ``T cut at l``: the translation stopped at level l and inverted there (``final_level=l``): level 5 is the
  deepest translator alone, each further row adds a cascade level.

``evaluate`` reports only the last row (the run's final level). A translation row far above its inversion
floor points at the translator of that level; a floor close to the target points at the inversion.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcascade.data import synthetic  # noqa: E402
from deepcascade.data.transforms import to_pil, to_tensor  # noqa: E402
from deepcascade.evaluation import layout  # noqa: E402
from deepcascade.inference.translator import Translator  # noqa: E402


def slope(true: np.ndarray, est: np.ndarray) -> float:
    """Least-squares slope of the estimated centres on the true ones: 1 keeps the spread of the positions,
    below 1 pulls the silhouettes towards the middle of the frame."""
    return float(np.polyfit(true, est, 1)[0]) if len(true) > 2 and true.std() > 0 else float("nan")


def true_centre(f: Path, meta: dict) -> tuple[float, float] | None:
    """(y, x) of the generator's silhouette box of file ``f``, fractions of the side."""
    size, parsed = int(meta["size"]), layout.parse_name(f.name, meta)
    box = None if parsed is None else layout.silhouette_box(layout.generator_mask(*parsed, meta, size))
    return None if box is None else (box[0] / size, box[1] / size)


def row(true_yx: np.ndarray, est_yx: np.ndarray, hits: str) -> str:
    """shift, |dx|, |dy|, the x and y slopes of the estimated centres on the true ones, and ``hits``."""
    dy, dx = np.abs(est_yx - true_yx).T
    return (f"{np.hypot(dx, dy).mean():6.3f} {dx.mean():6.3f} {dy.mean():6.3f} "
            f"{slope(true_yx[:, 1], est_yx[:, 1]):6.2f} {slope(true_yx[:, 0], est_yx[:, 0]):6.2f} {hits}")


def measure(files: list[Path], images: list[Image.Image], meta: dict, target: str) -> str:
    """One row for ``images`` (made from ``files``): their silhouettes against the generator's true boxes of
    ``files``, and the target share."""
    size = int(meta["size"])
    true_yx, est_yx, hits = [], [], []
    for f, im in zip(files, images):
        true = true_centre(f, meta)
        est = layout.silhouette_box(synthetic.textured_pixels(im))
        hits.append(layout.pair_of(meta).judge_image(im) == target)
        if true is not None and est is not None:
            true_yx.append(true)
            est_yx.append((est[0] / size, est[1] / size))
    return row(np.array(true_yx).reshape(-1, 2), np.array(est_yx).reshape(-1, 2),
               f"{np.mean(hits):7.0%}  ({len(true_yx)} of {len(files)} with a silhouette)")


def quantile_transport(src_files: list[Path], train: dict, src: str, tgt: str, meta: dict) -> str:
    """The row of a translator that moves each source's true centre, x and y each on its own, to the same
    quantile of the target domain's training positions: the optimum of matching the target's distribution of
    positions, which differs from the source's where the two domains place their objects differently."""
    true_yx = np.array([c for f in src_files if (c := true_centre(f, meta)) is not None])
    moved = np.empty_like(true_yx)
    for k in range(2):
        q = np.searchsorted(np.sort(train[src][:, k]), true_yx[:, k]) / len(train[src])
        moved[:, k] = np.quantile(train[tgt][:, k], np.clip(q, 0.0, 1.0))
    return row(true_yx, moved, "      -  (true centres, no image)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a trained run folder (cascade trained to its final level)")
    ap.add_argument("--data", required=True, help="the `prepare synthetic` folder (testA/, testB/, synthetic.json)")
    ap.add_argument("--n", type=int, default=40, help="test images per domain (default 40)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    data = Path(args.data)
    meta = synthetic.find_meta(data / "testA")
    if meta is None:
        sys.exit(f"error: {data}/synthetic.json not found: this measure needs `deepcascade prepare synthetic` data")
    t = Translator.from_run(args.run, device=args.device)
    size = int(meta["size"])
    if t.image_size != size:
        sys.exit(f"error: the run translates {t.image_size} px images, the data is {size} px")
    files = {d: sorted((data / f"test{d}").glob("*.png"))[: args.n] for d in "AB"}
    pixels = {d: [Image.open(f).convert("RGB") for f in fs] for d, fs in files.items()}
    tensors = {d: torch.stack([to_tensor(im) for im in ims]) for d, ims in pixels.items()}
    train = {d: np.array([c for f in sorted((data / f"train{d}").glob("*.png"))
                          if (c := true_centre(f, meta)) is not None]) for d in "AB"}
    final = t.cascade.final_level
    print(f"{'direction / row':28s} {'shift':>6s} {'|dx|':>6s} {'|dy|':>6s} {'x slope':>6s} {'y slope':>6s} "
          f"{'target':>7s}")
    for src, tgt, direction in (("A", "B", "a2b"), ("B", "A", "b2a")):
        print(f"{direction + ': sources':28s}", measure(files[src], pixels[src], meta, tgt))
        print(f"{direction + ': quantile transport':28s}", quantile_transport(files[src], train, src, tgt, meta))
        for level in range(5, final - 1, -1):
            rec = [to_pil(x) for x in t.reconstruct_tensor(tensors[tgt], level=level)]
            print(f"{f'{direction}: I_{level}(e_{level}(target))':28s}", measure(files[tgt], rec, meta, tgt))
        for level in range(5, final - 1, -1):
            out = [to_pil(x) for x in t.translate_tensor(tensors[src], direction, final_level=level)]
            print(f"{f'{direction}: T cut at {level}':28s}", measure(files[src], out, meta, tgt))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
