"""Two-process data-parallel training of the real inversion stage on CPU (gloo), launched by torchrun.

The test runs this file as the training script under ``python -m torch.distributed.run --standalone
--nproc_per_node 2``; each rank runs the real pipeline (:func:`deepcascade.stages.pipeline.run_training`, i.e.
run directory, experiment set-up, InvertStage and the shared engine) and then writes what it ended with to
``OUT/rank{r}.pt``: every network's state dict (parameters and BatchNorm buffers), the state at construction,
its data shard and the file indices it drew. Only rank 0 writes checkpoints, so this is the only way to see
what rank 1 holds.

Asserted: every parameter and buffer is bitwise identical across ranks after training; every parameter moved
away from its initialisation; the ranks drew from disjoint shards (so the all-reduce really averaged different
data); rank 0's final checkpoint and snapshot hold the same weights as both ranks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4
BATCH = 8  # global: 4 per rank (engine.batch_per_rank false)


def worker(cfg_path: str, run_dir: str, out: str) -> None:
    """One rank: the real pipeline, instrumented to record initial weights and drawn indices."""
    torch.set_num_threads(1)
    import torch.distributed as dist

    from deepcascade.cli import setup_logging
    from deepcascade.config import build_config
    from deepcascade.features.domain_features import DomainFeatures
    from deepcascade.stages import invert
    from deepcascade.stages.pipeline import run_training

    setup_logging()
    record = {"stages": [], "drawn": [], "shards": {}}
    init = invert.InvertStage.__init__

    def spy_init(self, exp, level):
        init(self, exp, level)
        record["stages"].append(self)
        record["init"] = {k: {n: t.clone() for n, t in v.state_dict().items()} for k, v in self.nets.items()}
        record["shards"] = {"A": exp.domain_a.shard.tolist(), "B": exp.domain_b.shard.tolist()}

    draw = DomainFeatures.draw

    def spy_draw(self, batch_size, generator):
        idx, flips, offsets = draw(self, batch_size, generator)
        record["drawn"].append((self.name, [int(i) for i in idx]))
        return idx, flips, offsets

    invert.InvertStage.__init__ = spy_init
    DomainFeatures.draw = spy_draw
    results = run_training(build_config(cfg_path), run_dir, "invert")
    stage = record["stages"][-1]
    rank = dist.get_rank() if dist.is_initialized() else 0
    torch.save({"rank": rank, "world_size": dist.get_world_size() if dist.is_initialized() else 1,
                "results": results, "init": record["init"], "shards": record["shards"], "drawn": record["drawn"],
                "nets": {k: {n: t.detach().cpu().clone() for n, t in v.state_dict().items()}
                         for k, v in stage.nets.items()}},
               Path(out) / f"rank{rank}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_run(module_tmp, synthetic_data, tiny_config):
    tmp = module_tmp("ddp")
    tiny_config(tmp / "cfg.yaml", synthetic_data(n=8, size=32, seed=0, n_test=2), name="ddp",
                engine={"checkpoint_every": 100}, invert={"levels": [3], "steps": STEPS, "batch_size": BATCH})
    out = tmp / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), str(tmp / "cfg.yaml"), str(tmp / "run"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return tmp / "run", ranks, proc


def test_ranks_joined_one_group(ddp_run):
    run, ranks, proc = ddp_run
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 for r in ranks)
    assert all(r["results"] == {"invert3": "done"} for r in ranks)
    log = (run / "log.txt").read_text()
    assert "batch 4 per rank x 2 rank(s)" in log
    assert f"invert3 step {STEPS}/{STEPS}" in log


def test_parameters_and_buffers_identical_across_ranks(ddp_run):
    _, (r0, r1), _ = ddp_run
    assert set(r0["nets"]) == set(r1["nets"]) == {"I", "D"}
    n_buffers = 0
    for net in r0["nets"]:
        a, b = r0["nets"][net], r1["nets"][net]
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), f"{net}.{name} differs between ranks"
            n_buffers += "running_" in name
    assert n_buffers == 6  # the PatchGAN's three BatchNorms: running mean and var each


def test_parameters_moved_and_ranks_saw_different_data(ddp_run):
    _, (r0, r1), _ = ddp_run
    # every parameter and BatchNorm running statistic moved away from its (shared) initialisation
    for net, final in r0["nets"].items():
        for name, t in final.items():
            if t.is_floating_point():
                assert not torch.equal(t, r0["init"][net][name]), f"{net}.{name} did not change"
    # both ranks started from the same weights (same seed before construction; rank 0 broadcasts anyway)
    for net in r0["init"]:
        for name in r0["init"][net]:
            assert torch.equal(r0["init"][net][name], r1["init"][net][name])
    # disjoint shards of each domain, and every index a rank drew is from its own shard
    for d in ("A", "B"):
        s0, s1 = set(r0["shards"][d]), set(r1["shards"][d])
        assert s0 and s1 and not (s0 & s1) and s0 | s1 == set(range(8))
    for r in (r0, r1):
        drawn = [(d, i) for d, idx in r["drawn"] for i in idx]
        assert drawn and all(i in r["shards"][d] for d, i in drawn)
    assert [x for x in r0["drawn"]] != [x for x in r1["drawn"]]


def test_rank0_checkpoint_and_snapshot_hold_the_shared_weights(ddp_run):
    run, (r0, _), _ = ddp_run
    ckpt = torch.load(run / "checkpoints" / f"invert3-{STEPS:07d}.pt", weights_only=True)
    snap = torch.load(run / "models" / "invert3.pt", weights_only=True)
    assert ckpt["step"] == STEPS
    for net, sd in r0["nets"].items():
        for name, t in sd.items():
            assert torch.equal(ckpt["nets"][net][name], t)
            assert torch.equal(snap["nets"][net][name], t)


if __name__ == "__main__":  # a rank, launched by torchrun from the fixture above
    worker(*sys.argv[1:4])
