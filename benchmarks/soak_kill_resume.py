"""Soak test: SIGKILL ``deepcascade train --stage all`` at 20 random moments, resume each time with the same
command, and check that the final weights are bit-identical to an uninterrupted run (CPU, fixed seed).

    python benchmarks/soak_kill_resume.py                  # 20 kills, seed 0: about 5-10 minutes on 2 cores
    python benchmarks/soak_kill_resume.py --kills 5 --seed 3 --keep /tmp/soak

Too long for the test suite's budget, so it is a script; its result is quoted in the README.

How the moments are chosen. The uninterrupted reference run is recorded as an ordered list of events: every
progress update (each image cached, each statistics batch, each training step of every stage) and every atomic
file write in three phases (``start``: temporary file created; ``before-rename``: data written, not yet
renamed; ``renamed``: in place), for checkpoints, stage snapshots (``models/``), normalization statistics,
cache metadata, sample grids and the config. Kill targets are drawn at random from these events, at least one
from each kind (the feature cache build, which also accumulates the normalization statistics; the steps of
every stage; each phase of checkpoint and of snapshot writes), then sorted. Each target is a moment in the program, not a wall-clock time, so it is reached again
whatever the machine's speed: the child process (this file with ``--child``, running the real CLI in-process)
sends itself SIGKILL when it reaches its target, right away for a write phase, after a random 0-300 ms
(whatever is running then) for a progress event, and after 0-2 s once a cache build has started. A target whose work an earlier kill's run already finished
is replaced by the first later event the resumed run reaches. After the last kill the same command runs to the
end. Then every tensor of every ``models/*.pt`` snapshot, the normalization statistics and each stage's final
checkpoint networks are compared bit for bit with the reference run.

Uses RANDOM VGG-19 weights at 32 px on tiny synthetic data (the property does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ["invert5", "invert4", "deep", "cascade4"]
CONFIG = """name: soak
data: {{root: {data}, image_size: 32, load_size: 32, workers: 0}}
backbone: {{name: vgg19, weights: random}}
engine: {{device: cpu, seed: 0, checkpoint_every: 1, keep_checkpoints: 2, log_every: 1, sample_every: 2}}
invert: {{levels: [5, 4], steps: 4, batch_size: 2}}
deep: {{steps: 4, batch_size: 2, critic_width: 16, gn_groups: 8, n_critic: 2}}
cascade: {{final_level: 4, steps: 4, batch_size: 2, critic_width: 16, predictor_width: 16, n_critic: 2}}
"""


# ------------------------------------------------------------------------------------------------ the child
def child(events_file: str, target: dict | None, order: dict, argv: list[str]) -> int:
    """Run the CLI in this process, logging each event to ``events_file``; SIGKILL at ``target``."""
    import contextlib

    from deepcascade import fileio, progress

    fd = os.open(events_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    run_dir = Path(argv[argv.index("--run-dir") + 1]).resolve()
    seen: dict[tuple, int] = {}
    armed = {"done": False}

    def kill():
        os.kill(os.getpid(), signal.SIGKILL)

    def event(kind: str, detail: str, phase) -> None:
        key = (kind, detail, str(phase))
        seen[key] = seen.get(key, 0) + 1
        ident = [kind, detail, str(phase), seen[key]]
        os.write(fd, (json.dumps(ident) + "\n").encode())  # in the kernel before any kill: survives it
        if target is None or armed["done"]:
            return
        pos = order.get(json.dumps(ident))
        if ident == target["event"] or (pos is not None and pos >= target["position"]):
            armed["done"] = True
            os.write(fd, (json.dumps(["KILL", *ident, target["delay"]]) + "\n").encode())
            if target["delay"] <= 0:
                kill()
            else:
                threading.Timer(target["delay"], kill).start()

    def rel(path) -> str:
        p = Path(path).resolve()
        return str(p.relative_to(run_dir)) if run_dir in p.parents else p.name

    original_atomic = fileio.atomic_path

    @contextlib.contextmanager
    def atomic_path(path):
        event("write", rel(path), "start")
        with original_atomic(path) as tmp:
            yield tmp
            event("write", rel(path), "before-rename")
        event("write", rel(path), "renamed")

    class Ticking:
        def __init__(self, bar, desc):
            self.bar, self.desc = bar, desc

        def update(self, n=1):
            self.bar.update(n)
            event("tick", self.desc, self.bar.n)

        def __iter__(self):
            for item in self.bar:
                yield item
                event("tick", self.desc, self.bar.n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.bar.close()

        def __getattr__(self, name):
            return getattr(self.bar, name)

    original_progress = progress.progress

    def ticking(*args, **kwargs):
        return Ticking(original_progress(*args, **kwargs), kwargs.get("desc", ""))

    fileio.atomic_path = atomic_path  # before any module imports the names
    progress.progress = ticking
    from deepcascade.cli import main

    return main(argv)


# ----------------------------------------------------------------------------------------------- the driver
def category(ev: list) -> str:
    kind, detail, phase = ev[0], ev[1], ev[2]
    if kind == "tick":
        if detail.startswith("caching"):
            return "caching"
        if detail.startswith("statistics"):
            return "statistics"
        return f"training {detail}"
    where = ("checkpoint" if detail.startswith("checkpoints/") else "snapshot" if detail.startswith("models/")
             else "statistics file" if detail.startswith("normalization") else "cache metadata"
             if detail.startswith("cache") else "sample grid" if detail.startswith("samples/") else detail)
    return f"{where} write ({phase})"


def is_cache_start(ev: list) -> bool:
    return ev[0] == "write" and ev[1].startswith("cache/") and ev[2] == "renamed" and ev[3] == 1


def kill_delay(ev: list, rng: random.Random) -> float:
    """0 at a write phase (the exact moment); 0-300 ms after a progress event (whatever runs then); 0-2 s after
    a cache build starts (images decoded, features extracted, statistics accumulated)."""
    if is_cache_start(ev):
        return round(rng.uniform(0.0, 2.0), 3)
    return 0.0 if ev[0] == "write" else round(rng.uniform(0.0, 0.3), 3)


def run_child(events: Path, target, order_file: Path, cmd: list[str], log: Path, timeout: float) -> int:
    args = [sys.executable, str(Path(__file__).resolve()), "--child", str(events), "--order", str(order_file),
            "--target", json.dumps(target), "--", *cmd]
    with open(log, "a") as f:
        return subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT).returncode


def read_events(path: Path) -> list[list]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def choose_targets(events: list[list], kills: int, rng: random.Random) -> list[int]:
    """Positions in the reference event list: one of each required kind, the rest at random, sorted."""
    by_cat: dict[str, list[int]] = {}
    for i, ev in enumerate(events):
        by_cat.setdefault(category(ev), []).append(i)
    # caching (with the statistics computed on the way): after the cache's first meta.json ("complete": false)
    # is in place, with a delay that lands inside the build (see kill_delay)
    by_cat["caching"] = [i for i, ev in enumerate(events) if is_cache_start(ev)]
    required = ["caching", *(f"training {s}" for s in STAGES),
                *(f"{w} write ({p})" for w in ("checkpoint", "snapshot") for p in ("start", "before-rename", "renamed"))]
    chosen = {rng.choice(by_cat[c]) for c in required if c in by_cat}
    candidates = [i for i in range(len(events) - 1) if i not in chosen]
    chosen |= set(rng.sample(candidates, max(0, kills - len(chosen))))
    return sorted(chosen)[:kills]


def compare(ref: Path, soak: Path) -> tuple[int, int, list[str]]:
    """(snapshots compared, tensors compared, differences) between two run directories."""
    import torch

    def tensors(obj, prefix=""):
        if isinstance(obj, torch.Tensor):
            yield prefix, obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from tensors(v, f"{prefix}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                yield from tensors(v, f"{prefix}/{i}")

    diffs, n_files, n_tensors = [], 0, 0
    files = sorted(p.relative_to(ref) for p in (ref / "models").glob("*.pt"))
    for stage in STAGES:  # each stage's final checkpoint: its networks
        last = sorted((ref / "checkpoints").glob(f"{stage}-*.pt"))[-1]
        files.append(last.relative_to(ref))
    for rel in files:
        if not (soak / rel).is_file():
            diffs.append(f"{rel}: missing after the soak")
            continue
        a = torch.load(ref / rel, map_location="cpu", weights_only=True)
        b = torch.load(soak / rel, map_location="cpu", weights_only=True)
        a, b = (x["nets"] if "nets" in x else x for x in (a, b))
        ta, tb = dict(tensors(a)), dict(tensors(b))
        if ta.keys() != tb.keys():
            diffs.append(f"{rel}: different tensors")
        for k in ta.keys() & tb.keys():
            n_tensors += 1
            if ta[k].dtype != tb[k].dtype or ta[k].shape != tb[k].shape or not torch.equal(ta[k], tb[k]):
                diffs.append(f"{rel}{k}: differs")
        n_files += 1
    # the statistics: same tensors and metadata (the file's bytes may differ: safetensors writes the metadata
    # entries in hash order)
    from safetensors import safe_open

    stats = []
    for run in (ref, soak):
        with safe_open(str(run / "normalization.safetensors"), "pt") as f:
            stats.append((f.metadata(), {k: f.get_tensor(k) for k in f.keys()}))
    (ma, ta), (mb, tb) = stats
    if ma != mb or ta.keys() != tb.keys() or not all(torch.equal(ta[k], tb[k]) for k in ta):
        diffs.append("normalization.safetensors differs")
    n_files += 1
    n_tensors += len(ta)
    return n_files, n_tensors, diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temporary one, removed)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds allowed per process")
    args = ap.parse_args()

    from deepcascade.data.synthetic import write_dataset

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="soak_"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    write_dataset(work / "data", n=6, size=32, seed=0, n_test=2, progress=False)
    cfg = work / "soak.yaml"
    cfg.write_text(CONFIG.format(data=work / "data"))
    os.environ["DEEPCASCADE_PROGRESS_EVERY"] = "0"  # no status lines in the logs (they change nothing)
    order_file = work / "order.json"
    order_file.write_text("{}")

    def cmd(run: Path) -> list[str]:
        return ["train", str(cfg), "--stage", "all", "--run-dir", str(run)]

    t0 = time.time()
    rc = run_child(work / "reference.events", None, order_file, cmd(work / "reference"), work / "reference.log",
                   args.timeout)
    t_ref = time.time() - t0
    if rc != 0:
        print(f"the reference run failed (exit {rc}); see {work / 'reference.log'}")
        return 1
    events = read_events(work / "reference.events")
    order = {json.dumps(ev): i for i, ev in enumerate(events)}
    order_file.write_text(json.dumps(order))
    rng = random.Random(args.seed)
    targets = choose_targets(events, args.kills, rng)
    print(f"reference run: {t_ref:.0f} s, {len(events)} events; {len(targets)} kill targets (seed {args.seed})")

    soak = work / "soak"
    rows, kills = [], 0
    t0 = time.time()
    for n, pos in enumerate(targets, 1):
        ev = events[pos]
        delay = kill_delay(ev, rng)
        log = work / "soak.events"
        before = len(read_events(log))
        rc = run_child(log, {"event": ev, "position": pos, "delay": delay}, order_file, cmd(soak),
                       work / "soak.log", args.timeout)
        new = read_events(log)[before:]
        fired = [e for e in new if e[0] == "KILL"]
        last = [e for e in new if e[0] != "KILL"]
        at = last[-1] if last else None
        where = category(at) if at else "(start-up)"
        if rc == -signal.SIGKILL:
            kills += 1
            if any(json.loads(m.read_text()).get("complete") is False for m in soak.glob("cache/*/meta.json")):
                where = "caching (meta.json: complete false)"
        rows.append((n, category(ev), ev, fired[0][1:4] if fired else None, where, rc))
        print(f"kill {n:2d}: target {category(ev):32s} {ev[1]} {ev[2]} | fired at {fired[0][1:3] if fired else '-'} "
              f"+{delay * 1000:.0f} ms | killed during/after: {where} | exit {rc}", flush=True)
        if rc == 0:
            print("  (the run finished before this target)")
            break
    rc = run_child(work / "soak.events", None, order_file, cmd(soak), work / "soak.log", args.timeout)
    t_soak = time.time() - t0
    if rc != 0:
        print(f"the final resume failed (exit {rc}); see {work / 'soak.log'}")
        return 1
    n_files, n_tensors, diffs = compare(work / "reference", soak)
    covered = sorted({r[4] for r in rows if r[5] == -signal.SIGKILL})
    targeted = sorted({r[1] for r in rows if r[5] == -signal.SIGKILL})
    print(f"\n{kills} SIGKILLs, then the same command to the end: {t_soak:.0f} s")
    print(f"kill targets: {', '.join(targeted)}")
    print(f"killed during or right after (the last event before each kill): {', '.join(covered)}")
    if diffs:
        print(f"NOT bit-identical: {len(diffs)} difference(s): " + "; ".join(diffs[:10]))
        return 1
    print(f"bit-identical to the uninterrupted run: {n_tensors} tensors in {n_files} files "
          f"({len(list((work / 'reference' / 'models').glob('*.pt')))} stage snapshots, each stage's final "
          f"checkpoint, the normalization statistics)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sep = sys.argv.index("--")
        events_file = sys.argv[2]
        order = json.loads(Path(sys.argv[sys.argv.index("--order") + 1]).read_text())
        target = json.loads(sys.argv[sys.argv.index("--target") + 1])
        raise SystemExit(child(events_file, target, order, sys.argv[sep + 1:]))
    raise SystemExit(main())
