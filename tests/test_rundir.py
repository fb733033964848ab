"""The run-directory format (deepcascade/rundir/): snapshots whose stored architecture is damaged or hostile are
refused with exit 2 naming the file, before any network is allocated; a damaged config.yaml names the file."""

from __future__ import annotations

import shutil

import pytest
import torch

from deepcascade.engine.checkpoint import FORMAT_VERSION, atomic_save, load_file
from deepcascade.errors import UserError
from deepcascade.models import deep_nets
from deepcascade.rundir import load_snapshot

COMPAT = {"backbone": "vgg19", "image_size": 32}


def _snapshot(path, nets):
    atomic_save({"format": FORMAT_VERSION, "stage": "deep", "compat": COMPAT, "nets": {k: v.state_dict() for k, v in nets.items()},
                 "arch": {k: v.arch for k, v in nets.items()}}, path)


@pytest.mark.parametrize("change, said", [
    ({"channels": 100000}, "channels=100000 is not a number in 0..65536"),
    ({"channels": "16"}, "channels=16 is not a number"),
    ({"channels": 4096}, "does not match its weights"),  # in bounds, but not what the file holds: 4096x4096 convs
    ({"downsamplings": 10 ** 9}, "downsamplings=1000000000 is not a number in 0..16"),
    ({"colour": 3}, "do not fit DeepTranslator"),
    ({"channels": 16.5}, "do not build a DeepTranslator"),
], ids=["huge", "text", "other-shape", "layer-count", "unknown-argument", "fraction"])
def test_a_snapshot_is_checked_before_building(tmp_path, change, said):
    nets = deep_nets(16, 4, gn_groups=8, critic_width=16)
    good = tmp_path / "deep.pt"
    _snapshot(good, nets)
    loaded = load_snapshot(good, "deep", COMPAT)
    want = nets["T_AB"].state_dict()
    assert all(torch.equal(v, want[k]) for k, v in loaded["T_AB"].state_dict().items())  # the sound file loads
    bad = tmp_path / "bad.pt"
    nets["T_AB"].arch = {"kind": "DeepTranslator", "args": {**nets["T_AB"].arch["args"], **change}}
    _snapshot(bad, nets)
    with pytest.raises(UserError) as e:
        load_snapshot(bad, "deep", COMPAT)
    assert str(bad) in str(e.value) and "'T_AB'" in str(e.value) and said in str(e.value), str(e.value)


def test_translate_refuses_a_hostile_snapshot_and_a_damaged_config(tiny_run, tmp_path, dc):
    root, _, run = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("cache", "checkpoints", "samples"))
    snap = load_file(copy / "models" / "deep.pt")
    snap["arch"]["T_AB"]["args"]["channels"] = 100000  # would allocate hundreds of GB
    atomic_save(snap, copy / "models" / "deep.pt")
    r = dc("translate", "--run", copy, "--input", root / "data" / "testA", "--out", tmp_path / "out")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert str(copy / "models" / "deep.pt") in r.stderr and "channels=100000" in r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))
    (copy / "config.yaml").write_bytes(b"data: [\x80\n")
    r = dc("translate", "--run", copy, "--input", root / "data" / "testA", "--out", tmp_path / "out2")
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(copy / "config.yaml") in r.stderr, r.stderr
