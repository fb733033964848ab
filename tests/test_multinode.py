"""``torchrun --nnodes 2`` (2 nodes x 1 process, gloo) runs ``deepcascade train`` and the ranks end identical.

Two torchrun launchers are started on localhost as two nodes would be (``--node_rank 0/1 --master_addr``), each
running ``deepcascade train CFG --stage all`` through the real command line (``deepcascade.cli.main``; this
file is the script, so that each rank can also save what it holds when training ends). The config puts the
feature cache on node-local disk (``cache.dir: $DC_TEST_NODE_DIR/cache``, a different folder per launcher): each
node must then build its own cache while the run directory, shared, holds rank 0's checkpoints. Stages:
I_5 and the level-5 translators (WGAN-GP with the gradient penalty), two steps each.

Asserted: both ranks joined one group of 2; every parameter and buffer of every stage is bitwise identical on
both ranks and equal to rank 0's snapshot; the weights moved from their initialisation; both nodes built a
cache in their own folder. Separately, in a plain 2-process group: a run directory a rank cannot see
stops every rank with the same error (no hang).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2


def rank_main(out: str, *argv: str) -> int:
    """One rank: ``deepcascade ARGV``, recording each trained stage's networks before and after training."""
    import torch.distributed as dist

    from deepcascade import cli
    from deepcascade.stages import pipeline

    torch.set_num_threads(1)
    record = {"init": {}, "final": {}}
    train_stage = pipeline.train_stage

    def spy(run, stage, *a, **k):
        record["init"][stage.name] = {f"{n}.{p}": t.detach().clone() for n, net in stage.nets.items()
                                      for p, t in net.state_dict().items()}
        result = train_stage(run, stage, *a, **k)
        record["final"][stage.name] = {f"{n}.{p}": t.detach().cpu().clone() for n, net in stage.nets.items()
                                       for p, t in net.state_dict().items()}
        return result

    pipeline.train_stage = spy
    rc = cli.main(list(argv))
    rank = dist.get_rank() if dist.is_initialized() else 0
    record.update(rank=rank, world_size=dist.get_world_size() if dist.is_initialized() else 1, rc=rc)
    torch.save(record, Path(out) / f"rank{rank}.pt")
    return rc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_nodes(tmp: Path, cfg: Path, run_dirs: list[Path], out: Path) -> list[subprocess.CompletedProcess]:
    """Start node 0 and node 1 (one process each) and wait for both; ``run_dirs[i]``: node i's --run-dir."""
    port = _free_port()
    procs = []
    for node in (0, 1):
        node_dir = tmp / f"node{node}"
        node_dir.mkdir(exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "DC_TEST_NODE_DIR": str(node_dir)}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", str(port),
               str(Path(__file__).resolve()), str(out), "train", str(cfg), "--stage", "all",
               "--run-dir", str(run_dirs[node])]
        procs.append(subprocess.Popen(cmd, env=env, cwd=node_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return results


@pytest.fixture(scope="module")
def two_nodes(module_tmp, synthetic_data, tiny_config):
    tmp = module_tmp("multinode")
    cfg = tiny_config(tmp / "cfg.yaml", synthetic_data(n=8, size=32, seed=0, n_test=2), name="multinode",
                      cache={"dir": "$DC_TEST_NODE_DIR/cache"}, engine={"checkpoint_every": 100},
                      invert={"levels": [5], "steps": STEPS, "batch_size": 4, "lambda_adv": 0},
                      deep={"steps": STEPS, "batch_size": 4, "critic_width": 16, "gn_groups": 8},
                      cascade={"final_level": 5})
    out = tmp / "out"
    out.mkdir()
    procs = launch_two_nodes(tmp, cfg, [tmp / "run"] * 2, out)
    for p in procs:
        assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-6000:]}"
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return tmp, ranks


@pytest.mark.slow  # the shared launch: 4 interpreters importing torch, ~35-45 s on 2 busy cores
def test_two_nodes_joined_one_group(two_nodes):
    tmp, ranks = two_nodes
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["rc"] == 0 for r in ranks)
    assert all(set(r["final"]) == {"invert5", "deep"} for r in ranks)
    assert "batch 2 per rank x 2 rank(s)" in (tmp / "run" / "log.txt").read_text()


@pytest.mark.slow  # the shared launch: 4 interpreters importing torch, ~35-45 s on 2 busy cores
def test_ranks_end_with_identical_weights(two_nodes):
    tmp, (r0, r1) = two_nodes
    n = 0
    for stage, final in r0["final"].items():
        snapshot = torch.load(tmp / "run" / "models" / f"{stage}.pt", weights_only=True)["nets"]
        moved = 0
        for name, t in final.items():
            assert torch.equal(t, r1["final"][stage][name]), f"{stage} {name} differs between the nodes"
            net, key = name.split(".", 1)
            assert torch.equal(t, snapshot[net][key]), f"{stage} {name}: rank 0's snapshot differs"
            moved += t.is_floating_point() and not torch.equal(t, r0["init"][stage][name])
            n += 1
        assert moved > len(final) // 2, f"{stage}: only {moved} of {len(final)} tensors moved"
    assert n > 50


@pytest.mark.slow  # the shared launch: 4 interpreters importing torch, ~35-45 s on 2 busy cores
def test_each_node_built_its_own_cache(two_nodes):
    tmp, _ = two_nodes
    for node in (0, 1):
        for domain in ("A", "B"):
            caches = list((tmp / f"node{node}" / "cache").glob(f"{domain}-*/meta.json"))  # one per configuration
            assert len(caches) == 1, f"node {node} {domain}: {caches}"
    assert not (tmp / "run" / "cache").exists()


def _open_own_run_dir(rank: int, port: int, tmp: str) -> None:
    """A rank of a 2-process gloo group opening its own run directory (as a node without the shared one)."""
    import datetime

    import torch.distributed as dist

    from deepcascade.rundir import RunDir
    from deepcascade.errors import UserError

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
    try:
        with RunDir(Path(tmp) / f"run{rank}"):
            message = "opened"
    except UserError as e:
        message = str(e)
    (Path(tmp) / f"rank{rank}.txt").write_text(message)
    dist.destroy_process_group()


def test_run_directory_not_shared_stops_every_rank(tmp_path):
    """Each rank given its own run directory (nodes without a shared filesystem): every rank gets the same
    UserError (exit 2 from the CLI) instead of training on and hanging."""
    import torch.multiprocessing as mp

    mp.start_processes(_open_own_run_dir, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    for m in messages:  # rank 1 sees no lock of rank 0 in its folder; both stop with the same diagnosis
        assert "rank(s) 1 cannot see the folder rank 0 created" in m and "filesystem every node shares" in m


if __name__ == "__main__":  # a rank, launched by torchrun from launch_two_nodes
    sys.exit(rank_main(sys.argv[1], *sys.argv[2:]))
