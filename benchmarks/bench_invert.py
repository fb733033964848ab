"""Benchmark of feature-inversion training (the ``invert`` stage): steps per second by image size, precision and
where the level-l features come from.

    python benchmarks/bench_invert.py                        # default: a few minutes on a 2-core CPU
    python benchmarks/bench_invert.py --sizes 64 --steps 10 --level 4 --threads 1
    python benchmarks/bench_invert.py --device cuda --batch 25 --steps 20

What is timed is exactly what the engine runs per step: ``InvertStage.next_batch`` (data) and
``InvertStage.train_step`` (discriminator update, then I_l update) on a real :class:`Experiment` built by
``setup_experiment`` (feature cache, normalization statistics, batch sources), with the engine's
:class:`TrainContext` for autocast and optimizer steps. Checkpoints, logging and sample grids are left out.

Variants, each printed beside the fp32 "images" baseline of the same size measured in the same run
(ratio = variant steps/s / baseline steps/s, > 1 is faster):

- precision: ``fp32`` or ``bf16`` autocast (``engine.precision``);
- features: ``images`` computes the level-l features of every batch with the frozen backbone from the image
  crops (``cache.levels: []``; the cache supplies decoded images only), ``cache`` reads them from the float16
  feature cache (``cache.levels: [5, 4, 3]``, the default). The perceptual loss still runs the
  backbone on the reconstruction either way.

Uses RANDOM VGG-19 weights (speed does not depend on the weights) and tiny synthetic two-domain data written
to a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcascade.config import build_config  # noqa: E402
from deepcascade.data.synthetic import write_dataset  # noqa: E402
from deepcascade.rundir import RunDir  # noqa: E402
from deepcascade.engine.trainer import TrainContext  # noqa: E402
from deepcascade.stages.experiment import setup_experiment  # noqa: E402

# (precision, features); the first is the baseline every other row is compared with
VARIANTS = [("fp32", "images"), ("fp32", "cache"), ("bf16", "images"), ("bf16", "cache")]


def make_experiment(data: Path, run_dir: Path, size: int, level: int, precision: str, features: str,
                    device: str, sections: dict):
    """A real Experiment (feature cache and statistics in ``run_dir``) for one benchmark variant."""
    cfg = build_config(None, extra={
        "name": "bench",
        "data": {"root": str(data), "image_size": size, "load_size": size, "workers": 0},
        "backbone": {"name": "vgg19", "weights": "random", "seed": 0},
        "cache": {"enabled": True, "levels": [5, 4, 3] if features == "cache" else []},
        "engine": {"device": device, "precision": precision, "seed": 0},
        "invert": {"levels": [level]}, "cascade": {"final_level": level}, **sections})
    with contextlib.redirect_stderr(io.StringIO()):  # no cache-building progress bars between table rows
        return setup_experiment(cfg, RunDir(run_dir))  # RunDir only names the folder: no lock, no log.txt


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(stage, precision: str, device: torch.device, steps: int, warmup: int) -> float:
    """Training steps per second of ``stage`` (next_batch + train_step), after ``warmup`` untimed steps."""
    ctx = TrainContext(device, precision, stage.optimizers)
    for net in stage.nets.values():
        net.to(device)
    g = torch.Generator().manual_seed(0)
    for _ in range(warmup):
        float(stage.train_step(stage.next_batch(g), ctx)["loss"])
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        float(stage.train_step(stage.next_batch(g), ctx)["loss"])  # float(): as the engine logs, a sync point
    sync(device)
    return steps / (time.perf_counter() - t)


def write_data(root: Path, size: int, images: int) -> Path:
    data = root / f"data{size}"
    if not data.exists():
        write_dataset(data, n=images, size=size, seed=0, n_test=0, progress=False)
    return data


def run_table(title: str, build_stage, args, unit: str) -> None:
    """Time every variant at every size; one row each, the ratio to the fp32/images row of its size."""
    from deepcascade.device import resolve_device

    device = resolve_device(args.device)
    print(f"\n== {title}, batch {args.batch}, {args.steps} timed step(s) after {args.warmup} warm-up, {device}, "
          f"{torch.get_num_threads()} torch thread(s) ==")
    print(f"{'size':>5}  {'precision':<9} {'features':<8} {unit + '/s':>11} {'img/s':>8}  {'vs fp32/images':>14}")
    with tempfile.TemporaryDirectory(prefix="deepcascade-bench-") as tmp:
        tmp = Path(tmp)
        for size in args.sizes:
            data = write_data(tmp, size, args.images)
            base = None
            for precision, features in VARIANTS:
                try:
                    stage, per_step_images = build_stage(data, tmp / f"run{size}-{precision}", size, precision,
                                                         features)
                    rate = time_steps(stage, precision, device, args.steps, args.warmup)
                except RuntimeError as e:  # e.g. bf16 autocast unsupported on this device
                    print(f"{size:>5}  {precision:<9} {features:<8} {'n/a':>11}  ({str(e).splitlines()[0][:70]})")
                    continue
                if base is None:
                    base = rate
                note = " (baseline)" if (precision, features) == VARIANTS[0] else ""
                print(f"{size:>5}  {precision:<9} {features:<8} {rate:>11.3f} {rate * per_step_images:>8.2f}  "
                      f"{rate / base:>13.2f}x{note}", flush=True)


def common_arguments(p: argparse.ArgumentParser, batch: int) -> None:
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224], help="image sizes (divisible by 16)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per row before timing")
    p.add_argument("--batch", type=int, default=batch, help="batch size per step")
    p.add_argument("--images", type=int, default=8, help="synthetic training images per domain")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def prepare_run(args) -> None:
    """Threads, quiet logging, and the line saying the weights are random."""
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("deepcascade").setLevel(logging.ERROR)
    print("backbone: VGG-19 with RANDOM weights (seed 0): speed does not depend on the weights")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common_arguments(p, batch=4)
    p.add_argument("--level", type=int, default=3, choices=[1, 2, 3, 4, 5], help="inverted backbone level")
    p.add_argument("--lambda-adv", type=float, default=0.05,
                   help="invert.lambda_adv (0 drops the PatchGAN discriminator and its update)")
    args = p.parse_args(argv)
    prepare_run(args)

    from deepcascade.stages.invert import InvertStage

    def build(data, run_dir, size, precision, features):
        exp = make_experiment(data, run_dir, size, args.level, precision, features, args.device,
                              {"invert": {"levels": [args.level], "batch_size": args.batch,
                                          "lambda_adv": args.lambda_adv}})
        torch.manual_seed(0)
        return InvertStage(exp, args.level), args.batch

    run_table(f"inversion I_{args.level} training (next_batch + train_step, lambda_adv {args.lambda_adv:g})",
              build, args, unit="steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
