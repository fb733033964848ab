"""The fault matrix: bad checkpoints, untrusted pickles, failing writes and awkward inputs to `translate`.

Each case must end in a clear message (exit code 2, no traceback) and lose nothing. Config faults are in
tests/test_config_cli.py, checkpoint write failures and the run-directory lock in tests/test_engine.py, and
interrupted cache builds in tests/test_cache.py.
"""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepcascade.cli import main
from deepcascade.data.images import load_image
from deepcascade.data.synthetic import write_dataset

SIZE = 32


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "deepcascade", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def assert_user_error(r, *words):
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)


@pytest.fixture(scope="module")
def run(module_tmp, synthetic_data, tiny_config):
    """A tiny finished run: I_5 and the level-5 translators only (cascade.final_level 5)."""
    root = module_tmp("faults")
    data = synthetic_data(n=4, size=SIZE, seed=1, n_test=2)
    (root / "data").symlink_to(data, target_is_directory=True)  # the tests below read root / "data"
    cfg = tiny_config(root / "cfg.yaml", root / "data", name="faults",
                      data={"image_size": SIZE, "load_size": SIZE},
                      engine={"checkpoint_every": 1, "keep_checkpoints": 5},
                      invert={"levels": [5], "steps": 1, "batch_size": 2, "lambda_adv": 0},
                      deep={"steps": 2, "batch_size": 2, "critic_width": 16, "gn_groups": 8},
                      cascade={"final_level": 5})
    r = cli("train", cfg, "--stage", "all", "--run-dir", root / "run")
    assert r.returncode == 0, r.stderr[-3000:]
    return root, cfg, root / "run"


# ------------------------------------------------------------------------------------------- checkpoints
def test_truncated_checkpoint_is_refused(run, tmp_path):
    root, cfg, rd = run
    bad = tmp_path / "deep-0000002.pt"
    data = (rd / "checkpoints" / "deep-0000002.pt").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    r = cli("train", cfg, "--stage", "deep", "--run-dir", rd, "--resume", bad)
    assert_user_error(r, str(bad), "truncated")


def test_checkpoint_of_another_stage_is_refused(run):
    root, cfg, rd = run
    other = rd / "checkpoints" / "invert5-0000001.pt"
    r = cli("train", cfg, "--stage", "deep", "--run-dir", rd, "--resume", other)
    assert_user_error(r, "stage 'invert5', not 'deep'")


@pytest.mark.parametrize("key, value, words", [
    ("compat.backbone", "efficientnet_lite0", ["backbone", "efficientnet_lite0", "vgg19"]),
    ("compat.image_size", 224, ["image_size", "224", str(SIZE)]),
    ("format", 99, ["newer deepcascade", "upgrade"]),
])
def test_mismatching_checkpoint_is_refused(run, tmp_path, key, value, words):
    root, cfg, rd = run
    ck = torch.load(rd / "checkpoints" / "deep-0000002.pt", weights_only=True)
    node = ck
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    path = tmp_path / "deep-0000002.pt"
    torch.save(ck, path)
    r = cli("train", cfg, "--stage", "deep", "--run-dir", rd, "--resume", path)
    assert_user_error(r, *words)


def test_resume_skips_truncated_latest(run, tmp_path):
    root, cfg, rd = run
    import shutil

    rd2 = tmp_path / "run"
    shutil.copytree(rd, rd2)
    (rd2 / "models" / "deep.pt").unlink()  # deep is unfinished again
    latest = rd2 / "checkpoints" / "deep-0000002.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    r = cli("train", cfg, "--stage", "deep", "--run-dir", rd2, "--resume", "--set", "deep.steps=3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipping checkpoint" in r.stderr and "deep-0000002.pt" in r.stderr
    assert "resumed from" in r.stderr and "deep-0000001.pt" in r.stderr
    assert torch.load(rd2 / "checkpoints" / "deep-0000003.pt", weights_only=True)["step"] == 3


# ---------------------------------------------------------------------------------------- untrusted files
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("fmt", ["torch", "raw-pickle"])
def test_pickle_with_code_is_refused_without_running_it(run, tmp_path, fmt):
    root, cfg, rd = run
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    payload = {"format": 1, "stage": "deep", "nets": _Evil(marker)}
    if fmt == "torch":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    r = cli("train", cfg, "--stage", "deep", "--run-dir", rd, "--resume", evil)
    assert_user_error(r, str(evil))
    r = cli("features", "--backbone", "vgg19", "--weights", evil, "--images", root / "data" / "testA",
            "--levels", "5", "--image-size", SIZE, "--out", tmp_path / "f.safetensors")
    assert_user_error(r, str(evil))
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------- writes
def test_failed_output_write_keeps_previous_file(run, tmp_path, monkeypatch, capsys):
    root, cfg, rd = run
    inp = tmp_path / "in"
    inp.mkdir()
    src = sorted((root / "data" / "testA").glob("*.png"))[0]
    (inp / "x.png").write_bytes(src.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.png").write_bytes(b"previous result")

    def failing_save(self, fp, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    assert main(["translate", "--run", str(rd), "--input", str(inp), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "No space left" in err
    assert (out / "x.png").read_bytes() == b"previous result"
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_failed_cache_write_is_reported_and_never_complete(tmp_path, monkeypatch, capsys):
    import json

    import numpy.lib.format as fmt

    write_dataset(tmp_path / "data", n=2, size=SIZE, seed=0, n_test=1, progress=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{root: {tmp_path / 'data'}, image_size: {SIZE}, load_size: {SIZE}, workers: 0}}\n"
                   "backbone: {weights: random}\ninvert: {levels: [5]}\ncascade: {final_level: 5}\n")

    def failing(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(fmt, "open_memmap", failing)
    assert main(["train", str(cfg), "--stage", "prepare", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "feature cache" in err and "Read-only file system" in err and str(tmp_path / "run") in err
    meta = json.loads(next((tmp_path / "run" / "cache").glob("A-*/meta.json")).read_text())
    assert meta["complete"] is False


# ---------------------------------------------------------------------------------------- translate inputs
@pytest.fixture(scope="module")
def awkward_inputs(module_tmp):
    d = module_tmp("inputs") / "ünïcode dir"
    d.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (4000, 6000, 3), dtype=np.uint8)).save(d / "large photo.jpg", quality=80)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(d / "tiny.png")
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return d


def test_large_image_decodes_at_reduced_scale(awkward_inputs):
    img = load_image(awkward_inputs / "large photo.jpg", max_side=SIZE * 4)
    assert min(img.size) <= 2 * SIZE * 4  # never the full 24-megapixel bitmap beyond the decode step
    assert img.size[0] > img.size[1]  # aspect kept


def test_awkward_inputs_translate(run, awkward_inputs, tmp_path):
    root, cfg, rd = run
    out = tmp_path / "out put é"
    r = cli("translate", "--run", rd, "--input", awkward_inputs, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert Image.open(out / "large photo.jpg").size == (SIZE, SIZE)
    assert Image.open(out / "tiny.png").size == (SIZE, SIZE)
    assert "tiny.png is 8x8" in r.stderr and "upscaled" in r.stderr
    assert Image.open(out / "anim.gif.png").size == (SIZE, SIZE)
    first = np.asarray(Image.open(out / "_sources" / "anim.gif.png").convert("RGB")).reshape(-1, 3).mean(0)
    assert first[0] > 200 and first[2] < 50  # the first (red) frame, not the blue one
    assert (out / "index.html").is_file()


def test_empty_input_folder_is_a_clear_error(run, tmp_path):
    root, cfg, rd = run
    (tmp_path / "empty").mkdir()
    r = cli("translate", "--run", rd, "--input", tmp_path / "empty", "--out", tmp_path / "o")
    assert_user_error(r, "no image files", str(tmp_path / "empty"))
