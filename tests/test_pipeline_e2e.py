"""End to end on tiny synthetic data with a random backbone: train --stage all, resume-as-no-op, translate,
per-level strips, index.html, and the Python API giving the CLI's pixels."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepcascade import Translator
from deepcascade.cli import main
from deepcascade.data.synthetic import write_dataset

SIZE = 32
STAGES = ["invert5", "invert4", "invert3", "deep", "cascade4", "cascade3"]


@pytest.fixture(scope="module")
def trained(module_tmp, tiny_config):
    root = module_tmp("e2e")
    write_dataset(root / "data", n=6, size=SIZE, seed=0, n_test=5, progress=False)
    cfg = tiny_config(root / "cfg.yaml", root / "data", name="e2e", data={"image_size": SIZE, "load_size": SIZE},
                      engine={"checkpoint_every": 2, "sample_every": 2},
                      invert={"levels": [5, 4, 3], "steps": 2, "batch_size": 2},
                      deep={"steps": 2, "batch_size": 2, "critic_width": 32, "gn_groups": 8},
                      cascade={"final_level": 3, "steps": 2, "batch_size": 2, "critic_width": 32})
    run = root / "run"
    r = subprocess.run([sys.executable, "-m", "deepcascade", "train", str(cfg), "--stage", "all", "--run-dir", str(run)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, cfg, run, r


def test_train_all_writes_every_stage(trained):
    root, cfg, run, r = trained
    for stage in STAGES:
        assert (run / "models" / f"{stage}.pt").is_file(), stage
        assert (run / "checkpoints" / f"{stage}-0000002.pt").is_file(), stage
        assert (run / "samples" / f"{stage}-0000002.png").is_file(), stage
        assert f"{stage}: done" in r.stdout
    assert (run / "normalization.safetensors").is_file()
    assert (run / "config.yaml").is_file() and (run / "stats.jsonl").is_file()


def test_train_all_again_does_no_work(trained):
    root, cfg, run, _ = trained
    before = {p: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    r = subprocess.run([sys.executable, "-m", "deepcascade", "train", str(cfg), "--stage", "all", "--run-dir", str(run)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    for stage in STAGES:
        assert f"{stage}: skipped" in r.stdout
    after = {p: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    assert before == after


@pytest.fixture(scope="module")
def translated(trained):
    root, cfg, run, _ = trained
    inp = root / "input"
    (inp / "sub").mkdir(parents=True)
    tests = sorted((root / "data" / "testA").glob("*.png"))
    for i, p in enumerate(tests):
        dest = inp / ("sub" if i % 2 else "") / p.name
        Image.open(p).save(dest.with_suffix(".jpg") if i == 0 else dest)
    (inp / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = root / "out"
    r = subprocess.run([sys.executable, "-m", "deepcascade", "translate", "--run", str(run), "--input", str(inp),
                        "--out", str(out), "--save-levels", "--batch-size", "2"], capture_output=True, text=True)
    return inp, out, r


def test_translate_folder(translated):
    inp, out, r = translated
    assert r.returncode == 0, r.stderr[-2000:]
    assert "corrupt.png" in r.stderr + r.stdout
    inputs = [p.relative_to(inp) for p in inp.rglob("*") if p.is_file() and p.name != "corrupt.png"]
    assert len(inputs) == 5
    for rel in inputs:
        res = out / rel
        assert res.is_file(), rel
        assert Image.open(res).size == (SIZE, SIZE)
    assert not (out / "corrupt.png").exists()


def test_strips_have_one_panel_per_level(translated):
    inp, out, _ = translated
    strips = list((out / "_levels").rglob("*.png"))
    assert len(strips) == 5
    for s in strips:
        assert Image.open(s).size == (SIZE * 4, SIZE)  # source | level 5 | level 4 | level 3


def test_index_references_every_output(translated):
    inp, out, _ = translated
    html = (out / "index.html").read_text()
    refs = set(re.findall(r"src='([^']+)'", html))
    from urllib.parse import unquote

    targets = {unquote(h) for h in refs}
    for p in out.rglob("*"):
        if p.is_file() and p.suffix in (".png", ".jpg") :
            assert str(p.relative_to(out)) in targets, p
    for t in targets:
        assert (out / t).is_file()
    assert "http" not in html  # no external asset


def test_python_api_matches_cli(trained, translated):
    root, cfg, run, _ = trained
    inp, out, _ = translated
    t = Translator.from_run(run, device="cpu")
    names = sorted(p for p in inp.rglob("*.png") if p.name != "corrupt.png")
    images = [Image.open(p).convert("RGB") for p in names]
    results = t.translate(images, direction="a2b")
    assert all(isinstance(x, Image.Image) for x in results)
    for p, res in zip(names, results):
        # the CLI ran in batches of 2, the API in one batch: equal up to one 8-bit step of rounding
        cli = np.asarray(Image.open(out / p.relative_to(inp)).convert("RGB")).astype(int)
        assert np.abs(np.asarray(res).astype(int) - cli).max() <= 1, p
    # tensors in, tensors out; per-level images on request
    x = torch.rand(2, 3, SIZE, SIZE)
    y, levels = t.translate(x, direction="b2a", return_levels=True)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape
    assert sorted(levels) == [3, 4, 5] and all(v.shape == x.shape for v in levels.values())
    torch.testing.assert_close(levels[3], y)


def test_translate_errors(trained, tmp_path):
    root, cfg, run, _ = trained
    (tmp_path / "empty").mkdir()
    assert main(["translate", "--run", str(run), "--input", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert main(["translate", "--run", str(tmp_path), "--input", str(root / "data" / "testA"),
                 "--out", str(tmp_path / "o")]) == 2
