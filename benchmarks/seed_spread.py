"""How much of a quality figure is the training seed: variants of `demo --long` trained with several seeds.

    python benchmarks/seed_spread.py OUT --device cuda --parallel 16 \\
        --variant shipped --variant 'no_average=deep.ema_decay=0;cascade.ema_decay=0' --seeds 0 1 2 3

The synthetic data and the inversion networks I_5..I_3 are trained once (``OUT/base``) with the demo's long
plan and settings (``deepcascade.apps.demo``); then, for every (variant, seed), a copy of that run trains level 5
and the cascade with the variant's config overrides (``--set`` items, separated by ``;``) and ``engine.seed`` =
seed, and ``evaluate`` measures it (independent classifier, collapse, layout: the issue's quality measures).
Each (variant, seed) is its own process, ``--parallel`` at a time; one JSON line per finished job goes to
``OUT/results.jsonl``, and a table of means and standard deviations is printed at the end
(docs/measurements.md, "Seed spread of the quality setting", was measured with it on a lent GPU: one CPU
`demo --long` is 45 minutes, which is why the CPU ablations are single-seed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEYS = ("target_share", "silhouette_target_share", "collapse_ratio", "centre_shift")


def config(data: Path, device: str, plan: str, sets: str = ""):
    """The demo's config for ``plan`` with ``sets`` ("section.key=value;...", the CLI's ``--set`` items) on top."""
    from deepcascade.apps.demo import demo_config
    from deepcascade.config import build_config

    return build_config(overrides=[s for s in sets.split(";") if s],
                        extra=demo_config(plan, data, device).to_dict())


def job(out: Path, device: str, plan: str, name: str, sets: str, seed: int) -> None:
    """Level 5 and the cascade of one (variant, seed) in a copy of the shared run, then ``evaluate``."""
    from deepcascade.evaluation.entry_points import evaluate_run
    from deepcascade.evaluation.plan import Options
    from deepcascade.stages.pipeline import run_training

    run = out / f"{name}_s{seed}"
    if not run.exists():
        shutil.copytree(out / "base", run)
    t0 = time.time()
    run_training(config(out / "data", device, plan, f"{sets};engine.seed={seed}"), run, "all")
    m = evaluate_run(run, run / "eval", opts=Options(device=device, metrics=("classifier", "collapse", "layout")))
    rec = {"name": name, "seed": seed, "train_seconds": round(time.time() - t0),
           **{d: {k: m[d].get(k) for k in KEYS} for d in ("a2b", "b2a")}}
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def table(out: Path) -> None:
    if not (out / "results.jsonl").exists():
        sys.exit(f"no job finished: see the logs {out}/*_s*.log")
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    print(f"{'variant':12} {'seeds':>5} " + " ".join(f"{d}:{k[:12]:>12}" for d in ("a2b", "b2a") for k in KEYS))
    for name in dict.fromkeys(r["name"] for r in rows):
        group = [r for r in rows if r["name"] == name]
        cells = []
        for d in ("a2b", "b2a"):
            for k in KEYS:
                v = [r[d][k] for r in group]
                sd = statistics.stdev(v) if len(v) > 1 else float("nan")
                cells.append(f"{statistics.mean(v):.3f}+-{sd:.3f}".rjust(16))
        print(f"{name:12} {len(group):>5} " + " ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--plan", default="long", help="a demo plan: quick, demo or long")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME or NAME=section.key=value;section.key=value... (config overrides, as --set)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--job", nargs=3, metavar=("NAME", "SETS", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        import torch

        torch.set_num_threads(args.threads)
        return job(args.out, args.device, args.plan, args.job[0], args.job[1], int(args.job[2]))

    from deepcascade.apps.demo import MODES
    from deepcascade.data.synthetic import is_complete, write_dataset
    from deepcascade.stages.pipeline import run_training

    if not args.variant:
        ap.error("give at least one --variant")
    variants = [v.partition("=")[::2] for v in args.variant]
    p, data = MODES[args.plan], args.out / "data"
    for _, sets in variants:
        config(data, args.device, args.plan, sets)  # a bad field fails here, not in a job
    size = config(data, args.device, args.plan).data.image_size
    if not is_complete(data, n=p.n_train, size=size, seed=0, n_test=p.n_test):
        write_dataset(data, n=p.n_train, size=size, seed=0, n_test=p.n_test, progress=False)
    run_training(config(data, args.device, args.plan), args.out / "base", "invert")
    pending = [(n, o, s) for s in args.seeds for n, o in variants]
    running: list[subprocess.Popen] = []
    while pending or running:
        running = [r for r in running if r.poll() is None]
        while pending and len(running) < args.parallel:
            name, sets, seed = pending.pop(0)
            cmd = [sys.executable, __file__, str(args.out), "--device", args.device, "--plan", args.plan,
                   "--threads", str(args.threads), "--job", name, sets, str(seed)]
            with open(args.out / f"{name}_s{seed}.log", "w") as log:
                running.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ))
        time.sleep(1)
    table(args.out)


if __name__ == "__main__":
    main()
