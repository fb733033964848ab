"""Benchmark of the frozen-backbone feature path: extraction speed per precision/memory format, cache reads,
and the crop-consistency of cached features.

    python benchmarks/bench_features.py                 # default: about 1-3 minutes on a 2-core CPU
    python benchmarks/bench_features.py --iters 10 --batch 16 --cache-images 200 --device cuda

Every variant is printed beside the plain fp32 baseline measured in the same run (ratio = variant / fp32 in
images per second, > 1 is faster). Uses RANDOM VGG-19 weights unless --weights is given: speed does not depend
on the weights, the crop-consistency figures do (a little).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcascade.backbones import build_backbone  # noqa: E402
from deepcascade.features.cache import FeatureCache  # noqa: E402
from deepcascade.features.extract import crop_consistency  # noqa: E402
from deepcascade.features.extract import FeatureSpec, extract  # noqa: E402

LEVELS = [1, 2, 3, 4, 5]


def synthetic_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random colour fields plus mild texture, (n, 3, size, size) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    t = F.interpolate(torch.rand(n, 3, max(size // 4, 1), max(size // 4, 1), generator=g), size=(size, size),
                      mode="bilinear", align_corners=False)
    return (x + 0.1 * (t - 0.5)).clamp(0, 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_extraction(backbone, images: torch.Tensor, precision: str, channels_last: bool, iters: int) -> float:
    """Images per second of ``extract`` (all five levels) after one warm-up call."""
    extract(backbone, images, LEVELS, precision, channels_last)
    sync(images.device)
    t = time.perf_counter()
    for _ in range(iters):
        extract(backbone, images, LEVELS, precision, channels_last)
    sync(images.device)
    return images.shape[0] * iters / (time.perf_counter() - t)


def bench_extraction(backbone, device, sizes, batch, iters) -> dict[int, float]:
    cl_backbone = copy.deepcopy(backbone).to(memory_format=torch.channels_last)
    variants = [("bf16 autocast", backbone, "bf16", False), ("channels_last", cl_backbone, "fp32", True),
                ("bf16+channels_last", cl_backbone, "bf16", True)]
    print(f"\n== feature extraction, levels 1-5, batch {batch}, {iters} timed call(s) per row, {device} ==")
    print(f"{'size':>5}  {'variant':<20} {'img/s':>9}  {'vs fp32':>8}")
    base = {}
    for size in sizes:
        x = synthetic_images(batch, size).to(device)
        base[size] = time_extraction(backbone, x, "fp32", False, iters)
        print(f"{size:>5}  {'fp32 (baseline)':<20} {base[size]:>9.2f}  {1.0:>7.2f}x")
        for name, bb, prec, cl in variants:
            try:
                r = time_extraction(bb, x, prec, cl, iters)
                print(f"{size:>5}  {name:<20} {r:>9.2f}  {r / base[size]:>7.2f}x")
            except RuntimeError as e:  # e.g. bf16 unsupported on this device
                print(f"{size:>5}  {name:<20} {'n/a':>9}  ({str(e).splitlines()[0][:60]})")
    return base


def bench_cache(backbone, device, n_images, load_size, image_size, levels, reads, batch, base_ips) -> None:
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = []
        for i, img in enumerate(synthetic_images(n_images, load_size, seed=1)):
            p = tmp / f"img{i:04d}.png"
            Image.fromarray((img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(p)
            files.append(p)
        t = time.perf_counter()
        spec = FeatureSpec(backbone, load_size, image_size, device)
        cache = FeatureCache.build_or_open(tmp / "cache", spec, files, levels, batch_size=8, progress=False)
        build_s = time.perf_counter() - t
        print(f"\n== feature cache: {n_images} images, load {load_size} px, crops {image_size} px, levels {levels} ==")
        print(f"build: {build_s:.1f} s ({n_images / build_s:.2f} img/s incl. decoding, both mirrors)")
        step = max(backbone.strides[l] for l in levels)
        n_off = (load_size - image_size) // step + 1
        rng = np.random.default_rng(0)
        head = f"read (batch {batch})"
        print(f"{head:<34} {'reads/s':>9} {'img/s':>10}  {'ms/batch':>9}  vs fp32 extraction at {image_size} px")
        rows = [("level 5", [5], False, torch.float32), ("level 5 + image", [5], True, torch.float32),
                (f"levels {levels} + image", levels, True, torch.float32),
                (f"levels {levels} + image, fp16", levels, True, torch.float16)]  # fp16: what goes to a GPU
        for what, lv, img, dtype in rows[:2] + rows[2:] * (levels != [5]):
            args = [(rng.integers(0, n_images, batch), rng.integers(0, 2, batch),
                     rng.integers(0, n_off, (batch, 2)) * step) for _ in range(reads)]
            cache.read(*args[0], lv, image=img, dtype=dtype)
            t = time.perf_counter()
            for a in args:
                cache.read(*a, lv, image=img, dtype=dtype)
            dt = (time.perf_counter() - t) / reads
            ips = batch / dt
            print(f"{what:<34} {1 / dt:>9.0f} {ips:>10.0f}  {dt * 1e3:>9.3f}  {ips / base_ips:>8.0f}x")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="64,128,224", help="image sizes for extraction")
    p.add_argument("--batch", type=int, default=4, help="extraction batch size")
    p.add_argument("--iters", type=int, default=2, help="timed calls per extraction row")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--weights", default="random", help="backbone weights ('random', 'imagenet', a path)")
    p.add_argument("--cache-images", type=int, default=16, help="images in the cache-read benchmark")
    p.add_argument("--reads", type=int, default=200, help="timed cache reads per row")
    p.add_argument("--read-batch", type=int, default=10, help="batch size of a cache read (the paper's 10)")
    p.add_argument("--consistency-images", type=int, default=2, help="images for the crop-consistency measure")
    p.add_argument("--skip", default="", help="comma list of parts to skip: extraction,cache,consistency")
    args = p.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    skip = set(filter(None, args.skip.split(",")))
    sizes = [int(s) for s in args.sizes.split(",")]
    backbone = build_backbone("vgg19", args.weights).to(device)
    what = "RANDOM weights, speed only" if args.weights == "random" else args.weights
    print(f"deepcascade feature benchmark: VGG-19 ({what}), device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU thread(s)")
    t0 = time.perf_counter()
    base = bench_extraction(backbone, device, sizes, args.batch, args.iters) if "extraction" not in skip else {}
    if "cache" not in skip:
        for load, size, levels in ((256, 224, [5, 4, 3]), (80, 64, [5])):
            if size not in base:
                base[size] = time_extraction(backbone, synthetic_images(args.batch, size).to(device), "fp32", False,
                                             args.iters)
            bench_cache(backbone, device, args.cache_images, load, size, levels, args.reads, args.read_batch,
                        base[size])
    if "consistency" not in skip:
        print("\n== crop of the features vs features of the crop: relative L2 error per level (fp32) ==")
        for load, size in ((256, 224), (128, 96), (80, 64)):
            imgs = synthetic_images(args.consistency_images, load, seed=2).to(device)
            for margin in (0, 1):
                e = crop_consistency(backbone, imgs, LEVELS, image_size=size, margin=margin)
                print(f"load {load:>3} crop {size:>3} margin {margin}: "
                      + "  ".join(f"L{l} {v:.3f}" for l, v in e.items()))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
