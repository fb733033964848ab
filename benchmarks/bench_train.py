"""Training throughput per stage (images/s) in fp32 and bf16, and what the engine's speed options change.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py                      # 64 px, every stage, default rows
    OMP_NUM_THREADS=1 python benchmarks/bench_train.py --stages deep --rows fp32:base fp32:fused --steps 6
    python benchmarks/bench_train.py --device cuda --size 224 --batch 10 --rows fp32:base bf16:base bf16:cl

What is timed is what the engine runs per step, ``Stage.next_batch`` + ``Stage.train_step`` with the engine's
``TrainContext``, reading every loss and updating the weight averages (``engine/ema.py``), for the stages ``invert3`` (I_3 with its PatchGAN), ``deep`` (level-5 WGAN-GP, 4 critic
updates per generator update), ``cascade4`` (level 4 on the frozen level 5) and ``synth_a5`` (the deepVAE of
domain A), on a real :class:`Experiment` (feature cache, normalization statistics) over synthetic data.

Rows are ``PRECISION:VARIANT``; every row of a stage is a separate copy of the stage, initialised identically,
and the rows run *interleaved*, one step each in turn, on the same batches and the same random draws: a loaded
machine slows them alike, and at the end their weights can be compared. Variants:

- ``base``: the stage as the engine builds it;
- ``fused``: its Adam optimizers rebuilt with ``fused=True`` (``engine.fused_optimizer``;
  :func:`deepcascade.engine.optim.fused_adam`);
- ``cl``: networks in channels_last (``engine.channels_last``);
- ``compile``: every network's forward through ``torch.compile`` (default inductor backend). The WGAN-GP
  stages need double backward through the critic, which compiled graphs do not support: that row then reports
  the error instead of a rate.

Printed per row: images/s (the source images one step consumes: invert and synth_a5 the batch, deep and
cascade 2 domains x (n_critic + 1) x batch), the ratio to the stage's ``fp32:base`` row, and the largest weight
difference after the timed steps against the same precision's ``base`` row, relative to the largest weight
(``bf16:base`` against ``fp32:base``). RANDOM VGG-19 weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcascade.config import build_config  # noqa: E402
from deepcascade.data.synthetic import write_dataset  # noqa: E402
from deepcascade.engine import ema  # noqa: E402
from deepcascade.engine.optim import fused_adam  # noqa: E402
from deepcascade.rundir import RunDir  # noqa: E402
from deepcascade.engine.trainer import TrainContext  # noqa: E402
from deepcascade.stages.experiment import setup_experiment  # noqa: E402

STAGES = ("invert3", "deep", "cascade4", "synth_a5")
ROWS = ("fp32:base", "fp32:fused", "fp32:cl", "fp32:compile", "bf16:base")


def config(data: Path, args) -> object:
    return build_config(None, extra={
        "name": "bench-train",
        "data": {"root": str(data), "image_size": args.size, "load_size": args.size, "workers": 0},
        "backbone": {"name": "vgg19", "weights": "random", "seed": 0},
        "engine": {"device": args.device, "seed": 0},
        "invert": {"levels": [4, 3], "batch_size": args.batch},
        "deep": {"batch_size": args.batch, "critic_width": args.critic_width},
        "cascade": {"final_level": 4, "batch_size": args.batch, "critic_width": args.critic_width},
        "synth": {"batch_size": args.batch}})


def build_stage(exp, name: str):
    """A fresh stage ``name`` (same initialisation every call) and the images one of its steps consumes."""
    from deepcascade.stages.cascade import CascadeStage
    from deepcascade.stages.deep import DeepStage
    from deepcascade.stages.invert import InvertStage
    from deepcascade.stages.synth import synth_stage

    torch.manual_seed(0)
    cfg = exp.cfg
    if name == "invert3":
        return InvertStage(exp, 3), cfg.invert.batch_size
    if name == "deep":
        return DeepStage(exp), 2 * (cfg.deep.n_critic + 1) * cfg.deep.batch_size
    if name == "cascade4":
        return CascadeStage(exp, 4), 2 * (cfg.cascade.n_critic + 1) * cfg.cascade.batch_size
    if name == "synth_a5":
        return synth_stage(exp, 5, "a"), cfg.synth.batch_size
    raise SystemExit(f"unknown stage {name!r}; choose from {', '.join(STAGES)}")


def apply_variant(stage, variant: str, device) -> None:
    for net in stage.nets.values():
        net.to(device)
    if variant == "fused":
        for k, opt in list(stage.optimizers.items()):
            stage.optimizers[k] = fused_adam(opt)
    elif variant == "cl":
        for net in stage.nets.values():
            net.to(memory_format=torch.channels_last)
    elif variant == "compile":
        for net in stage.nets.values():
            net.compile()
    elif variant != "base":
        raise SystemExit(f"unknown variant {variant!r}: base, fused, cl, compile")


def write_deep_snapshot(exp) -> None:
    """cascade4 trains on a frozen level 5: give the run an (untrained) level-5 snapshot, as 'deep' would."""
    from deepcascade.engine import checkpoint as ckpt_io
    from deepcascade.engine.trainer import _snapshot

    stage, _ = build_stage(exp, "deep")
    ckpt_io.atomic_save(_snapshot(stage, exp.cfg.to_dict(), {}), exp.run.snapshot_path("deep"))


def weights(stage) -> list[torch.Tensor]:
    return [t.detach().float().cpu() for net in stage.nets.values() for t in net.state_dict().values()
            if t.is_floating_point()]


def rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    scale = max(float(t.abs().max()) for t in a if t.numel())
    return max(float((x - y).abs().max()) for x, y in zip(a, b) if x.numel()) / scale


def run_stage(exp, name: str, rows: list[str], args, device) -> None:
    live = {}
    for row in rows:
        precision, variant = row.split(":")
        stage, images = build_stage(exp, name)
        apply_variant(stage, variant, device)
        live[row] = {"stage": stage, "ctx": TrainContext(device, precision, stage.optimizers),
                     "averages": ema.averaged_copies(stage.nets, stage.ema_nets, stage.ema_decay),
                     "gen": torch.Generator().manual_seed(1), "time": 0.0, "error": None}
    for step in range(args.warmup + args.steps):
        for row, r in live.items():
            if r["error"]:
                continue
            torch.manual_seed(1000 + step)  # the same critic/penalty/noise draws in every row
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            try:
                out = r["stage"].train_step(r["stage"].next_batch(r["gen"]), r["ctx"])
                {k: float(v) for k, v in out.items()}  # the engine reads every loss each step
                ema.update(r["averages"], r["stage"].nets)  # and updates the weight averages
            except Exception as e:  # e.g. double backward through a compiled critic
                r["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"
                continue
            if step >= args.warmup:
                r["time"] += time.perf_counter() - t
    base = live.get("fp32:base")
    for row, r in live.items():
        precision = row.split(":")[0]
        if r["error"]:
            print(f"{name:<9} {row:<13} {'failed':>8}  {r['error']}", flush=True)
            continue
        rate = args.steps * images / r["time"]
        ratio = f"{rate / (args.steps * images / base['time']):.2f}x" if base and not base["error"] else "-"
        ref = live.get(f"{precision}:base") if row != f"{precision}:base" else live.get("fp32:base")
        diff = (f"{rel_diff(weights(ref['stage']), weights(r['stage'])):.1e}"
                if ref is not None and ref is not r and not ref["error"] else "(reference)")
        print(f"{name:<9} {row:<13} {rate:>8.2f}  {ratio:>7}  {diff:>11}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--rows", nargs="+", default=list(ROWS), help="PRECISION:VARIANT (fp32|bf16|fp16 : "
                   "base|fused|cl|compile)")
    p.add_argument("--size", type=int, default=64, help="image size (divisible by 16)")
    p.add_argument("--batch", type=int, default=4, help="batch size of every stage")
    p.add_argument("--critic-width", type=int, default=128, help="deep/cascade critic_width")
    p.add_argument("--steps", type=int, default=3, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per row first (compilation happens here)")
    p.add_argument("--images", type=int, default=8, help="synthetic training images per domain")
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'auto'")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("deepcascade").setLevel(logging.ERROR)
    from deepcascade.device import resolve_device

    device = resolve_device(args.device)
    print(f"training throughput, {args.size} px, batch {args.batch}, {args.steps} timed step(s) after "
          f"{args.warmup} warm-up, rows interleaved step by step, {device}, {torch.get_num_threads()} thread(s); "
          f"VGG-19 with RANDOM weights")
    print(f"{'stage':<9} {'row':<13} {'img/s':>8}  {'vs fp32':>7}  {'weights Δ':>11}")
    with tempfile.TemporaryDirectory(prefix="deepcascade-bench-train-") as tmp:
        data = Path(tmp) / "data"
        write_dataset(data, n=args.images, size=args.size, seed=0, n_test=0, progress=False)
        with contextlib.redirect_stderr(io.StringIO()):
            exp = setup_experiment(config(data, args), RunDir(Path(tmp) / "run"))
        if "cascade4" in args.stages:
            write_deep_snapshot(exp)
        for name in args.stages:
            run_stage(exp, name, args.rows, args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
