"""The generators' weight averages (deepcascade/engine/ema.py): the warm-up rule by hand, what the snapshot and
the checkpoints hold, and a resume that continues the same average."""

import os
import subprocess
import sys

import pytest
import torch

from deepcascade.engine import ema

SIZE = 32


def test_warm_average_by_hand():
    net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    nets = {"G": net}
    averages = ema.averaged_copies(nets, ["G"], decay=0.99)
    seen = []
    for w, mean in ((0.0, 5.0), (1.0, 6.0), (2.0, 7.0)):
        with torch.no_grad():
            net[0].weight.fill_(w)
            net[1].running_mean.fill_(mean)
        ema.update(averages, nets)
        seen.append(float(averages["G"].module[0].weight.detach()))
    # n = 0 copies; then decay min(0.99, (1 + n) / (10 + n)): 2/11 after one update, 3/12 after two
    first = 0.0
    second = first + (1 - 2 / 11) * (1.0 - first)
    third = second + (1 - 3 / 12) * (2.0 - second)
    assert seen == pytest.approx([first, second, third], abs=1e-6)
    assert float(averages["G"].module[1].running_mean) == 7.0  # buffers are taken, not averaged
    assert float(net[0].weight.detach()) == 2.0  # the trained network is left alone
    assert ema.averaged_copies(nets, ["G"], decay=0.0) == {}


def _train(cfg, run, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "deepcascade", "train", str(cfg), "--stage", "all", "--run-dir",
                        str(run), *extra], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_snapshot_holds_the_average_and_resume_continues_it(tmp_path, synthetic_data, tiny_config):
    data = synthetic_data(n=4, size=SIZE, seed=1, n_test=2)
    cfg = tiny_config(tmp_path / "cfg.yaml", data, name="ema",
                      data={"image_size": SIZE, "load_size": SIZE},
                      engine={"checkpoint_every": 2, "keep_checkpoints": 5},
                      invert={"levels": [5], "steps": 1, "batch_size": 2, "lambda_adv": 0},
                      deep={"steps": 4, "batch_size": 2, "critic_width": 16, "gn_groups": 8, "ema_decay": 0.5},
                      cascade={"final_level": 5})
    _train(cfg, tmp_path / "full")
    snap = _load(tmp_path / "full" / "models" / "deep.pt")["nets"]
    last = _load(tmp_path / "full" / "checkpoints" / "deep-0000004.pt")
    assert set(last["ema"]) == {"T_AB", "T_BA"}
    for k in ("T_AB", "T_BA"):
        averaged = {n[len("module."):]: v for n, v in last["ema"][k].items() if n.startswith("module.")}
        assert averaged.keys() == snap[k].keys()
        assert all(torch.equal(snap[k][n], averaged[n]) for n in averaged)
        assert not all(torch.equal(snap[k][n], last["nets"][k][n]) for n in averaged)  # not the last iterate
    assert all(torch.equal(snap["D_B"][n], v) for n, v in last["nets"]["D_B"].items())  # critics: as trained

    # two steps, then a resume to four: the same average as the uninterrupted run, bit for bit
    _train(cfg, tmp_path / "split", "--set", "deep.steps=2")
    r = _train(cfg, tmp_path / "split", "--resume")
    assert "resumed from" in r.stderr
    resumed = _load(tmp_path / "split" / "models" / "deep.pt")["nets"]
    for k in ("T_AB", "T_BA"):
        assert all(torch.equal(resumed[k][n], snap[k][n]) for n in snap[k])
