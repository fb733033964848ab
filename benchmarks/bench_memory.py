"""Peak memory (RSS) of training, stage by stage; of ``translate`` on 100 against 1000 images and on a folder
with a 1 x 100000 PNG; of ``synthesize --n`` 100 against 10000.

    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py                  # 32 px, every stage, every command row
    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py --size 64 --counts 100 1000 3000
    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py --skip-train --counts 100 1000
    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py --skip-train --parts synth strip --synth-counts 100 2000

Each measurement is one real command in its own process (``python -m deepcascade train CONFIG --stage S
--level L`` into one run directory, stage after stage, then ``python -m deepcascade translate`` of that run);
its peak resident set size is the kernel's ``ru_maxrss`` of that child alone (``os.wait4``), so stages do
not mask each other. The first row (``prepare``) builds the feature cache and the normalization statistics,
which every later row only opens. A flat ``translate`` column from 100 to 1000 images means the images are
streamed (read, translated and written batch by batch); a column growing with the count would mean
something is kept per image.

Training uses RANDOM VGG-19 weights, tiny synthetic data (8 images per domain) and 2 steps per stage: the peak
is the networks, optimizer states, activations of one step and the cache's memory maps, which do not depend
on the number of steps. ``translate`` inputs are synthetic images of the run's size.

Shape and count, not file size, used to set the memory of two commands. ``strip``: ``translate`` of 8 images
with and without a 1 x 100000 PNG of a few hundred bytes beside them; resizing its shorter side to the run's size would make a
bitmap of 32 x 3.2 million pixels at 32 px (256 x 25.6 million, 1.8 GB, at 256 px), so it is refused from its
header (aspect beyond 1:20) and the two rows match. ``synth``: ``synthesize --n`` 100 against 10000 (samples are
decoded and written ``--synth-batch`` at a time; the grid and the page show the first 64), so the peak RSS stays
flat while the count grows 100-fold.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = [("prepare", None, None), ("invert", 5, None), ("invert", 4, None), ("invert", 3, None),
          ("deep", None, None), ("cascade", 4, None), ("cascade", 3, None), ("synth", 5, "a"), ("synth", 4, "a"),
          ("synth", 3, "a")]


def child(argv: list[str], env: dict) -> tuple[int, float, float, str]:
    """Run ``python -m deepcascade ARGV``; (exit code, peak RSS in MiB of that process alone, seconds, stderr)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "deepcascade", *argv], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - t, err.read()[-1500:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=int, default=32, help="image size of the run (divisible by 16)")
    p.add_argument("--batch", type=int, default=4, help="training batch of every stage")
    p.add_argument("--counts", type=int, nargs="+", default=[100, 1000], help="images given to translate")
    p.add_argument("--translate-batch", type=int, default=8, help="translate --batch-size")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="engine.precision")
    p.add_argument("--skip-train", action="store_true", help="train every stage in one process, unmeasured")
    p.add_argument("--parts", nargs="+", default=["translate", "strip", "synth"],
                   choices=["translate", "strip", "synth"], help="command rows to measure after training")
    p.add_argument("--synth-counts", type=int, nargs="+", default=[100, 10000], help="synthesize --n")
    p.add_argument("--synth-batch", type=int, default=16, help="synthesize --batch-size")
    args = p.parse_args(argv)

    from deepcascade.data.synthetic import write_dataset

    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEEPCASCADE_PROGRESS_EVERY": "0"}
    env.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="deepcascade-bench-memory-") as tmp:
        tmp = Path(tmp)
        write_dataset(tmp / "data", n=8, size=args.size, seed=0, n_test=1, progress=False)
        cfg = {"name": "bench-memory",
               "data": {"root": str(tmp / "data"), "image_size": args.size, "load_size": args.size, "workers": 0},
               "backbone": {"name": "vgg19", "weights": "random"},
               "engine": {"device": "cpu", "precision": args.precision, "checkpoint_every": 100,
                          "sample_every": 100, "log_every": 1},
               "invert": {"levels": [5, 4, 3], "steps": 2, "batch_size": args.batch},
               "deep": {"steps": 2, "batch_size": args.batch, "critic_width": 128},
               "cascade": {"final_level": 3, "steps": 2, "batch_size": args.batch, "critic_width": 128},
               "synth": {"enabled": True, "final_level": 3, "steps": 2, "batch_size": args.batch}}
        (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        run = tmp / "run"
        print(f"{args.size} px, batch {args.batch}, {args.precision}, {env['OMP_NUM_THREADS']} thread(s); "
              f"VGG-19 with RANDOM weights; one process per row")
        if args.skip_train:
            rc, _, _, err = child(["train", str(tmp / "cfg.yaml"), "--stage", "all", "--run-dir", str(run)], env)
            if rc:
                raise SystemExit(f"training failed:\n{err}")
        else:
            print(f"{'training stage':<26} {'peak RSS MiB':>12} {'seconds':>8}")
            for kind, level, domain in STAGES:
                cmd = ["train", str(tmp / "cfg.yaml"), "--stage", kind, "--run-dir", str(run)]
                cmd += ["--level", str(level)] if level else []
                cmd += ["--domain", domain] if domain else []
                rc, rss, sec, err = child(cmd, env)
                label = kind + (f" --level {level}" if level else "") + (f" --domain {domain}" if domain else "")
                if rc:
                    raise SystemExit(f"{label} failed ({rc}):\n{err}")
                print(f"{label:<26} {rss:>12.0f} {sec:>8.1f}", flush=True)

        inputs = tmp / "inputs"
        n_inputs = max((args.counts if "translate" in args.parts else []) + [8])
        write_dataset(inputs, n=n_inputs, size=args.size, seed=1, n_test=0, progress=False)
        pool = sorted((inputs / "trainA").iterdir())
        if "translate" in args.parts:
            translate_counts(args, env, tmp, run, pool)
        if "strip" in args.parts:
            translate_strip(args, env, tmp, run, pool)
        if "synth" in args.parts:
            synthesize_counts(args, env, tmp, run)
    return 0


def translate_counts(args, env: dict, tmp: Path, run: Path, pool: list[Path]) -> None:
    """translate of args.counts images: the peak RSS should not grow with the count."""
    print(f"\n{'translate images':<26} {'peak RSS MiB':>12} {'seconds':>8} {'img/s':>7}")
    first = None
    for n in args.counts:
        folder = tmp / f"in{n}"
        folder.mkdir()
        for f in pool[:n]:
            os.symlink(f, folder / f.name)
        rc, rss, sec, err = child(["translate", "--run", str(run), "--input", str(folder), "--out",
                                   str(tmp / f"out{n}"), "--device", "cpu",
                                   "--batch-size", str(args.translate_batch)], env)
        if rc:
            raise SystemExit(f"translate of {n} images failed ({rc}):\n{err}")
        first = first or (n, rss)
        print(f"{n:<26} {rss:>12.0f} {sec:>8.1f} {n / sec:>7.1f}   x{rss / first[1]:.2f} the RSS at "
              f"{first[0]}", flush=True)


def translate_strip(args, env: dict, tmp: Path, run: Path, pool: list[Path]) -> None:
    """translate of 8 images, then of the same 8 beside a 1 x 100000 PNG: the same peak RSS."""
    import numpy as np
    from PIL import Image

    print(f"\n{'translate folder':<34} {'peak RSS MiB':>12} {'seconds':>8}  skipped")
    first = None
    for label, strip in (("8 images", False), ("8 images + 1x100000 PNG", True)):
        folder = tmp / ("strip" if strip else "nostrip")
        folder.mkdir()
        for f in pool[:8]:
            os.symlink(f, folder / f.name)
        if strip:
            Image.fromarray(np.full((1, 100_000, 3), 128, dtype=np.uint8)).save(folder / "strip.png")
            label += f" ({(folder / 'strip.png').stat().st_size} B)"
        rc, rss, sec, err = child(["translate", "--run", str(run), "--input", str(folder), "--out",
                                   str(tmp / f"{folder.name}-out"), "--device", "cpu"], env)
        if rc:
            raise SystemExit(f"translate of {folder} failed ({rc}):\n{err}")
        first = first or rss
        why = [line.split("strip.png: ", 1)[-1][:60] for line in err.splitlines() if "strip.png" in line]
        print(f"{label:<34} {rss:>12.0f} {sec:>8.1f}  x{rss / first:.2f}  {why[0] if why else '-'}", flush=True)


def synthesize_counts(args, env: dict, tmp: Path, run: Path) -> None:
    """synthesize --n for each of args.synth_counts: the peak RSS should not grow with --n."""
    print(f"\n{'synthesize --n':<26} {'peak RSS MiB':>12} {'seconds':>8} {'img/s':>7}   (--batch-size "
          f"{args.synth_batch})")
    first = None
    for n in args.synth_counts:
        out = tmp / f"synth{n}"
        rc, rss, sec, err = child(["synthesize", "--run", str(run), "--domain", "a", "--n", str(n), "--out",
                                   str(out), "--device", "cpu", "--batch-size", str(args.synth_batch)], env)
        if rc:
            raise SystemExit(f"synthesize --n {n} failed ({rc}):\n{err}")
        written = len(list(out.glob("sample_*.png")))
        if written != n:
            raise SystemExit(f"synthesize --n {n} wrote {written} samples")
        first = first or (n, rss)
        print(f"{n:<26} {rss:>12.0f} {sec:>8.1f} {n / sec:>7.1f}   x{rss / first[1]:.2f} the RSS at "
              f"{first[0]}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
