"""Two gloo processes on CPU: the explicit gradient all-reduce keeps ranks identical (engine/distributed.py).

The stages do not wrap networks in DDP (the WGAN-GP penalty needs double backward); ``TrainContext.optimize``
averages gradients with ``distributed.all_reduce_grads`` between backward and the optimizer step instead. Here
two ranks start from different random initialisations, ``broadcast_module`` makes them equal, and each rank
then trains the level-5 networks on its own data: critic updates with the gradient penalty
(``stages.deep.critic_step``) and full steps (``stages.deep.train_step``). With the all-reduce every parameter
must end bit-identical on both ranks; the same run with ``all_reduce_grads`` patched to a no-op must end with
different parameters, which shows that the comparison can fail. ``sync_buffers`` is checked on the
BatchNorm buffers of a PatchDiscriminator fed different images per rank.

Everything runs in one pair of spawned processes (about 10 s, most of it starting them).
"""

from __future__ import annotations

import datetime
import os
import socket
import traceback
import types
from pathlib import Path

import pytest
import torch

WORLD = 2
TIMEOUT_S = 180
C, S = 16, 4  # small level-5-like features


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(nets: dict) -> dict:
    return {f"{k}.{n}": t.detach().clone() for k, net in nets.items() for n, t in net.state_dict().items()}


def _train(rank: int, all_reduce: bool) -> dict:
    """Different init per rank -> broadcast -> critic_step x3 and train_step x2 on this rank's own data."""
    from deepcascade.engine import distributed
    from deepcascade.engine.trainer import TrainContext
    from deepcascade.models import deep_nets
    from deepcascade.stages import deep as deep_stage
    from deepcascade.stages.adversarial import make_optimizers

    torch.manual_seed(100 + rank)  # different initialisation and gradient-penalty draws on each rank
    nets = deep_nets(C, S, gn_groups=4, critic_width=16)
    before_broadcast = _state(nets)
    for net in nets.values():
        distributed.broadcast_module(net)
    initial = _state(nets)
    ctx = TrainContext(torch.device("cpu"), "fp32", make_optimizers(nets, 1e-3))
    data = torch.Generator().manual_seed(1000 + rank)  # different data on each rank
    draw = lambda: torch.tanh(torch.randn(4, C, S, S, generator=data) + (0.5 if rank else -0.5))
    c = types.SimpleNamespace(lambda_gp=10.0, lambda_cycle=100.0, lambda_identity=100.0, lambda_layout=0.0, norm="l1",
                              n_critic=1)
    original = distributed.all_reduce_grads
    if not all_reduce:
        distributed.all_reduce_grads = lambda params: None
    try:
        stats = [deep_stage.critic_step(nets, draw(), draw(), c.lambda_gp, ctx) for _ in range(3)]
        stats += [deep_stage.train_step(nets, [draw(), draw()], [draw(), draw()], c, ctx) for _ in range(2)]
    finally:
        distributed.all_reduce_grads = original
    return {"before_broadcast": before_broadcast, "initial": initial, "final": _state(nets),
            "stats": [{k: float(v) for k, v in s.items()} for s in stats]}


def _batchnorm(rank: int) -> dict:
    from deepcascade.engine import distributed
    from deepcascade.networks import PatchDiscriminator

    torch.manual_seed(0)
    disc = PatchDiscriminator(3, width=8)
    distributed.broadcast_module(disc)
    g = torch.Generator().manual_seed(2000 + rank)
    with torch.no_grad():
        for _ in range(rank + 2):  # also a different number of batches: num_batches_tracked differs
            disc(torch.rand(4, 3, 32, 32, generator=g) * (1 + rank))
    before = {k: v.clone() for k, v in disc.state_dict().items() if "running" in k or "num_batches" in k}
    distributed.sync_buffers(disc)
    after = {k: v.clone() for k, v in disc.state_dict().items() if k in before}
    return {"before": before, "after": after}


def _all_reduce_unit(rank: int) -> dict:
    from deepcascade.engine import distributed

    p = torch.nn.Parameter(torch.zeros(2, 3))
    q = torch.nn.Parameter(torch.zeros(4))
    r = torch.nn.Parameter(torch.zeros(1))  # no gradient: must be skipped, not crash
    p.grad = torch.full((2, 3), float(rank + 1))
    q.grad = torch.arange(4.0) * (rank + 1)
    distributed.all_reduce_grads([p, r, q])
    return {"p": p.grad.clone(), "q": q.grad.clone(), "r": r.grad}


def _worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    from deepcascade.engine import distributed

    out = Path(out_dir)
    try:
        torch.set_num_threads(1)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
        assert distributed.world_size() == WORLD and distributed.rank() == rank
        result = {"unit": _all_reduce_unit(rank), "synced": _train(rank, True), "unsynced": _train(rank, False),
                  "batchnorm": _batchnorm(rank)}
        torch.save(result, out / f"rank{rank}.pt")
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        (out / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


@pytest.fixture(scope="module")
def ranks(module_tmp):
    import torch.multiprocessing as mp

    out = module_tmp("ranks")
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, str(out))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT_S)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    errors = "\n".join(f.read_text() for f in sorted(out.glob("*.err")))
    assert all(p.exitcode == 0 for p in procs), f"exit codes {[p.exitcode for p in procs]}\n{errors}"
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def max_diff(x: dict, y: dict) -> dict:
    """Per network: the largest absolute difference of any of its parameters or buffers."""
    out = {}
    for k in x:
        net = k.split(".")[0]
        d = (x[k].double() - y[k].double()).abs().max().item() if x[k].numel() else 0.0
        out[net] = max(out.get(net, 0.0), d)
    return out


NETS = ("T_AB", "T_BA", "D_A", "D_B")


def test_all_reduce_grads_averages(ranks):
    for res in ranks:
        assert torch.equal(res["unit"]["p"], torch.full((2, 3), 1.5))
        assert torch.equal(res["unit"]["q"], torch.arange(4.0) * 1.5)
        assert res["unit"]["r"] is None


def test_broadcast_module_starts_ranks_equal(ranks):
    r0, r1 = ranks[0]["synced"], ranks[1]["synced"]
    # different seeds: before broadcast every network differs; after it, every tensor is rank 0's
    assert all(d > 0 for d in max_diff(r0["before_broadcast"], r1["before_broadcast"]).values())
    assert all(d == 0 for d in max_diff(r0["initial"], r1["initial"]).values())
    assert all(d == 0 for d in max_diff(r0["initial"], r0["before_broadcast"]).values())


def test_ranks_stay_identical_with_the_all_reduce(ranks):
    r0, r1 = ranks[0]["synced"], ranks[1]["synced"]
    # each rank saw its own data: its losses differ from the other rank's
    assert r0["stats"][0]["critic"] != r1["stats"][0]["critic"]
    assert r0["stats"][-1]["cycle"] != r1["stats"][-1]["cycle"]
    final = max_diff(r0["final"], r1["final"])
    assert set(final) == set(NETS)
    assert all(d == 0 for d in final.values()), final  # bit-identical
    moved = max_diff(r0["final"], r0["initial"])
    assert all(d > 1e-4 for d in moved.values()), moved  # and they did train


def test_ranks_diverge_without_the_all_reduce(ranks):
    """The same run with all_reduce_grads a no-op: proves the identity above is the all-reduce's doing."""
    u0, u1 = ranks[0]["unsynced"], ranks[1]["unsynced"]
    assert all(d == 0 for d in max_diff(u0["initial"], u1["initial"]).values())
    diverged = max_diff(u0["final"], u1["final"])
    assert all(d > 1e-4 for d in diverged.values()), diverged
    # and without the all-reduce rank 0 trains exactly as with it up to its first update: same start
    assert all(d == 0 for d in max_diff(u0["initial"], ranks[0]["synced"]["initial"]).values())


def test_sync_buffers_makes_batchnorm_statistics_identical(ranks):
    b0, b1 = ranks[0]["batchnorm"], ranks[1]["batchnorm"]
    running = [k for k in b0["before"] if "running" in k]
    assert len(running) == 6  # three BatchNorm layers, mean and var each
    for k in running:
        assert not torch.equal(b0["before"][k], b1["before"][k]), k  # ranks saw different images
        assert torch.equal(b0["after"][k], b1["after"][k]), k
        assert torch.allclose(b0["after"][k], (b0["before"][k] + b1["before"][k]) / 2, rtol=1e-6, atol=1e-7), k
    for k in (k for k in b0["before"] if "num_batches" in k):
        assert b0["before"][k].item() == 2 and b1["before"][k].item() == 3
        assert b0["after"][k].item() == b1["after"][k].item() == 2  # integer buffers: rank 0's value
