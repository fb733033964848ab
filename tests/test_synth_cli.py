"""deepVAE end to end through the real commands on tiny data (random VGG-19, 32 px, CPU): ``train --stage synth``,
``synthesize`` and ``Synthesizer``; the same seed writes the same files; a killed and resumed synth stage ends
with the same weights as an uninterrupted one."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_tiny_config

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
#: small deepVAE widths; the backbone's channels (512 at levels 4-5) stay
SYNTH = {"steps": 3, "batch_size": 4, "n_critic": 1, "nz": 32, "nz_level": 8, "mapping_width": 32,
         "critic_width": 32}


def main_inprocess(*argv: str) -> tuple[int, str, str]:
    """``deepcascade.cli.main(argv)`` in this process with one torch thread: (exit code, stdout, stderr)."""
    from deepcascade.cli import main

    def drop():
        logger = logging.getLogger("deepcascade")
        for h in [h for h in logger.handlers if getattr(h, "_deepcascade", False)]:
            logger.removeHandler(h)

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    drop()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    finally:
        drop()
        torch.set_num_threads(threads)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def data(synthetic_data) -> Path:
    return synthetic_data(n=8, size=SIZE, seed=0, n_test=2)


@pytest.fixture(scope="module")
def trained(data, module_tmp) -> Path:
    """I_5, I_4, I_3 (2 steps each, no discriminator) and domain A's deepVAE (4 VAE steps, 3 at levels 4, 3)."""
    tmp = module_tmp("synth")
    cfg = write_tiny_config(tmp / "cfg.yaml", data, invert={"levels": [5, 4, 3], "steps": 2, "lambda_adv": 0.0},
                            synth={**SYNTH, "vae_steps": 4}, engine={"checkpoint_every": 1000})
    run = tmp / "run"
    for args in (["--stage", "invert"], ["--stage", "synth", "--domain", "a"]):
        rc, out, err = main_inprocess("train", str(cfg), *args, "--run-dir", str(run))
        assert rc == 0, err[-3000:]
    assert "synth_a5: done" in out and "synth_a3: done" in out and "synth_b5" not in out
    return run


def test_synth_stages_write_snapshots_samples_and_logs(trained):
    for level, steps in ((5, 4), (4, 3), (3, 3)):  # synth.vae_steps at level 5, synth.steps below
        name = f"synth_a{level}"
        assert (trained / "models" / f"{name}.pt").is_file()
        assert (trained / "samples" / f"{name}-{steps:07d}.png").is_file()
    assert not list((trained / "models").glob("synth_b*"))
    snap = torch.load(trained / "models" / "synth_a5.pt", map_location="cpu", weights_only=True)
    assert set(snap["nets"]) == {"E", "G"}
    assert snap["arch"]["G"] == {"kind": "VAEDecoder", "args": {"nz": 32, "channels": 512, "size": 2, "gn_groups": 32}}
    stats = [json.loads(line) for line in (trained / "stats.jsonl").read_text().splitlines()]
    vae = [s for s in stats if s["stage"] == "synth_a5"]
    assert len(vae) == 4 and all({"rec", "kl", "mse", "loss"} <= set(s) for s in vae)  # equation 1's two terms
    adv = [s for s in stats if s["stage"] == "synth_a4"]
    assert adv and all({"wasserstein", "gp", "g_adv"} <= set(s) for s in adv)


def test_synthesize_same_seed_writes_identical_files(trained, tmp_path):
    outs = {}
    for name, seed in (("first", 0), ("again", 0), ("other", 1)):
        out = tmp_path / name
        rc, stdout, err = main_inprocess("synthesize", "--run", str(trained), "--domain", "a", "--n", "5",
                                         "--out", str(out), "--seed", str(seed), "--save-levels", "--interpolate",
                                         "3", "--device", "cpu")
        assert rc == 0, err[-3000:]
        assert "synthesized 5 image(s) of domain A" in stdout
        outs[name] = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    first = outs["first"]
    expected = ({f"sample_{i:04d}.png" for i in range(5)} | {f"_levels/sample_{i:04d}.png" for i in range(5)}
                | {"grid.png", "interpolation.png", "index.html", "synthesis.json"})
    assert set(first) == expected
    assert outs["again"] == first
    assert all(outs["other"][f"sample_{i:04d}.png"] != first[f"sample_{i:04d}.png"] for i in range(5))

    out = tmp_path / "first"
    assert Image.open(out / "sample_0000.png").size == (SIZE, SIZE)
    assert Image.open(out / "_levels" / "sample_0000.png").size == (3 * SIZE, SIZE)  # I_5 | I_4 | I_3
    grid = Image.open(out / "interpolation.png").size  # 4 rows of 3 steps, 2 px padding
    assert grid == (3 * (SIZE + 2) + 2, 4 * (SIZE + 2) + 2)
    page = (out / "index.html").read_text()
    assert "sample_0004.png" in page and "_levels/sample_0000.png" in page and "interpolation.png" in page


def test_synthesizer_api(trained):
    from deepcascade import Synthesizer
    from deepcascade.data.transforms import to_pil
    from deepcascade.errors import UserError

    s = Synthesizer.from_run(trained, device="cpu")
    images = s.sample(3, domain="a", seed=7)
    assert len(images) == 3 and all(isinstance(im, Image.Image) and im.size == (SIZE, SIZE) for im in images)
    x = s.sample(3, domain="a", seed=7, as_tensor=True)
    assert x.shape == (3, 3, SIZE, SIZE) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, s.sample(3, domain="a", seed=7, as_tensor=True))
    assert np.array_equal(np.asarray(images[0]), np.asarray(to_pil(x[0])))  # the PIL images are the tensors
    assert not torch.equal(x, s.sample(3, domain="a", seed=8, as_tensor=True))
    # sample i's codes do not depend on n; the images through another batch size agree within float rounding
    # (oneDNN may pick other kernels for another batch shape, so bit-equality is not promised there)
    two, three = s.codes(2, domain="a", seed=7), s.codes(3, domain="a", seed=7)
    assert all(torch.equal(two[l], three[l][:2]) for l in three)
    result, levels = s.sample(2, domain="a", seed=7, return_levels=True, as_tensor=True)
    assert (result - x[:2]).abs().max() < 1e-4
    assert sorted(levels) == [3, 4, 5] and torch.equal(levels[3], result)
    # a code's level-5 part fixes I_5's image: stopping at level 5 shows what the deeper levels start from
    five = s.sample(2, domain="a", seed=7, final_level=5, as_tensor=True)
    assert torch.equal(five, levels[5])
    walk = s.interpolate(rows=2, steps=4, domain="a", seed=7)
    ends = s.sample(4, domain="a", seed=7, as_tensor=True)
    assert walk.shape == (2, 4, 3, SIZE, SIZE)
    assert (walk[:, 0] - ends[0::2]).abs().max() < 1e-4 and (walk[:, -1] - ends[1::2]).abs().max() < 1e-4
    with pytest.raises(UserError, match=r"stage 'synth_b5' has not finished.*--stage synth --domain b"):
        s.sample(1, domain="b")
    with pytest.raises(UserError, match="domain must be 'a' or 'b'"):
        s.sample(1, domain="c")
    with pytest.raises(UserError, match="temperature"):
        s.sample(1, temperature=0)


def test_synthesize_bf16_close_to_fp32(trained, tmp_path):
    """--precision bf16 (CLI) and precision='bf16' (API) give images within 30 dB PSNR of fp32's."""
    from deepcascade import Synthesizer

    ref = Synthesizer.from_run(trained, device="cpu").sample(2, domain="a", seed=3, as_tensor=True)
    s16 = Synthesizer.from_run(trained, device="cpu", precision="bf16")
    assert s16.precision == "bf16"
    x = s16.sample(2, domain="a", seed=3, as_tensor=True)
    assert x.dtype == torch.float32 and not torch.equal(x, ref)

    def psnr(a, b):
        return 10 * np.log10(1 / max(float(((a.double() - b.double()) ** 2).mean()), 1e-20))

    assert psnr(x, ref) >= 30, psnr(x, ref)
    rc, _, err = main_inprocess("synthesize", "--run", str(trained), "--domain", "a", "--n", "2", "--seed", "3",
                                "--out", str(tmp_path / "o"), "--device", "cpu", "--precision", "bf16")
    assert rc == 0, err[-2000:]
    img = torch.from_numpy(np.asarray(Image.open(tmp_path / "o" / "sample_0001.png"), dtype=np.float32) / 255)
    assert psnr(img.permute(2, 0, 1), ref[1]) >= 30


def test_synthesize_errors_are_one_line(trained, tmp_path):
    rc, _, err = main_inprocess("synthesize", "--run", str(trained), "--domain", "b", "--out", str(tmp_path / "o"))
    assert rc == 2 and "synth_b5" in err and "Traceback" not in err
    rc, _, err = main_inprocess("synthesize", "--run", str(tmp_path), "--domain", "a", "--out", str(tmp_path / "o"))
    assert rc == 2 and "not a deepcascade run directory" in err
    rc, _, err = main_inprocess("synthesize", "--run", str(trained), "--domain", "a", "--n", "0",
                                "--out", str(tmp_path / "o"))
    assert rc == 2 and "--n must be >= 1" in err


def test_synthesize_never_mixes_or_replaces_files_without_overwrite(trained, tmp_path):
    out = tmp_path / "out"
    args = ["synthesize", "--run", str(trained), "--domain", "a", "--n", "2", "--out", str(out), "--device", "cpu"]
    assert main_inprocess(*args)[0] == 0
    before = (out / "sample_0000.png").read_bytes()
    rc, _, err = main_inprocess(*args, "--seed", "1")
    assert rc == 2 and "already holds 5 of the files" in err and "--overwrite" in err
    assert (out / "sample_0000.png").read_bytes() == before
    rc, _, err = main_inprocess(*args, "--seed", "1", "--overwrite")
    assert rc == 0, err
    assert (out / "sample_0000.png").read_bytes() != before


def test_evaluate_reads_only_the_samples_of_a_synthesize_folder(trained, data, tmp_path):
    """`evaluate --fake` on synthesize's folder scores its samples alone: not grid.png, interpolation.png or the
    _levels/ strips (read as samples, the grid once also set the evaluation size to its own 982 px)."""
    from deepcascade.inference.synthesis_manifest import synthesis_samples

    out = tmp_path / "syn"
    rc, _, err = main_inprocess("synthesize", "--run", str(trained), "--domain", "a", "--n", "3", "--out", str(out),
                                "--save-levels", "--interpolate", "2", "--device", "cpu")
    assert rc == 0, err[-2000:]
    assert len([p for p in out.rglob("*.png")]) == 3 + 3 + 2  # samples, strips, grid and interpolation
    manifest = json.loads((out / "synthesis.json").read_text())
    assert manifest["samples"] == [f"sample_{i:04d}.png" for i in range(3)] and manifest["domain"] == "a"
    assert synthesis_samples(out) == [out / f"sample_{i:04d}.png" for i in range(3)]

    def fakes_scored(folder: Path, name: str) -> tuple[int, int]:
        rc, _, err = main_inprocess("evaluate", "--fake", str(folder), "--real", str(data / "testA"),
                                    "--train-a", str(data / "trainA"), "--train-b", str(data / "trainB"),
                                    "--direction", "b2a", "--metrics", "collapse", "--device", "cpu",
                                    "--out", str(tmp_path / name))
        assert rc == 0, err[-2000:]
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        return metrics["b2a"]["images"]["fake"], metrics["protocol"]["image_size"]

    assert fakes_scored(out, "ev") == (3, SIZE)
    # a folder written before the manifest existed is recognised by its layout
    (out / "synthesis.json").unlink()
    assert synthesis_samples(out) == [out / f"sample_{i:04d}.png" for i in range(3)]
    assert fakes_scored(out, "ev_legacy") == (3, SIZE)
    # any other folder is still read whole (a user's grid.png beside translations stays an image)
    (out / "index.html").unlink()
    assert synthesis_samples(out) is None


# ----------------------------------------------------------------------------------------- kill and resume
def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1"}


def _train(cfg: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "deepcascade", "train", str(cfg), "--stage", "synth", "--domain", "a",
            "--run-dir", str(run), *extra]


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen(cmd, env=_env(), stdout=f, stderr=subprocess.STDOUT)


def test_killed_and_resumed_synth_stage_ends_with_the_same_weights(data, tmp_path):
    # level 5 (the VAE: reparameterization noise from torch's RNG) then level 4 (noise codes from the data
    # generator, gradient-penalty mixing from torch's RNG); killed in level 4, after its first checkpoint
    steps = 6
    cfg = write_tiny_config(tmp_path / "cfg.yaml", data, engine={"checkpoint_every": 3},
                            synth={**SYNTH, "steps": steps, "final_level": 4})
    ckpt = re.compile(r"^synth_a4-(\d{7})\.pt$")
    ref = _start(_train(cfg, tmp_path / "ref"), tmp_path / "ref.log")
    try:
        run = tmp_path / "killed"
        proc = _start(_train(cfg, run), tmp_path / "killed.log")
        end = time.monotonic() + 300
        while not any(ckpt.match(p.name) for p in (run / "checkpoints").glob("synth_a4-*")):
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < end, "timed out waiting for a checkpoint of synth_a4"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert not (run / "models" / "synth_a4.pt").exists()  # killed before the level finished
        res = subprocess.run(_train(cfg, run, "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        assert ref.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()[-3000:]
    finally:
        if ref.poll() is None:
            ref.kill()
            ref.wait()
    m = re.search(rf"stage synth_a4: resumed from \S+synth_a4-(\d{{7}})\.pt \(step (\d+) of {steps}\)", res.stderr)
    assert m and 3 <= int(m[2]) < steps, res.stderr[-2000:]
    assert "stage synth_a5: already finished" in res.stderr

    def load(path):
        return torch.load(path, map_location="cpu", weights_only=True)

    for stage in ("synth_a5", "synth_a4"):
        a, b = load(tmp_path / "ref" / "models" / f"{stage}.pt"), load(run / "models" / f"{stage}.pt")
        assert a["nets"].keys() == b["nets"].keys()
        for net in a["nets"]:
            for key, value in a["nets"][net].items():
                assert torch.equal(value, b["nets"][net][key]), f"{stage}.{net}.{key} differs"
    final = f"synth_a4-{steps:07d}.pt"
    a, b = load(tmp_path / "ref" / "checkpoints" / final), load(run / "checkpoints" / final)
    for opt in ("G", "D"):
        for i, state in a["optimizers"][opt]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, b["optimizers"][opt]["state"][i][key]), f"optimizer {opt} {i} {key}"
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and torch.equal(a["rng"]["generator"], b["rng"]["generator"])


def test_stage_all_trains_the_deepvae_when_enabled(data, tmp_path):
    for enabled, present in ((True, True), (False, False)):
        cfg = write_tiny_config(tmp_path / f"cfg{enabled}.yaml", data, synth={"enabled": enabled})
        rc, out, err = main_inprocess("train", str(cfg), "--stage", "all", "--dry-run", "--run-dir", str(tmp_path / "r"))
        assert rc == 0, err
        assert ("#   synth level 5 domain A" in out and "#   synth level 3 domain B" in out) == present


def test_evaluate_reads_only_the_translations_of_a_translate_folder(data, tmp_path):
    """`evaluate --fake` on a `translate` output folder (recognised by its page) skips the _sources/ copies and
    the _levels/ strips written beside the translations; a folder without our page is read whole."""
    from PIL import Image

    from deepcascade.outputs.html import write_index

    out = tmp_path / "tr"
    for sub, names in (("", ["A_test_000000.png", "A_test_000001.png"]), ("_sources", ["A_test_000000.png"]),
                       ("_levels", ["A_test_000000.png", "A_test_000001.png"])):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.open(data / "testB" / sorted(os.listdir(data / "testB"))[0]).save(out / sub / name)
    write_index(out, "deepcascade translation a2b", ["result"], [], [])

    def fakes_scored(name: str) -> int:
        rc, _, err = main_inprocess("evaluate", "--fake", str(out), "--real", str(data / "testB"),
                                    "--direction", "a2b", "--metrics", "collapse", "--device", "cpu",
                                    "--out", str(tmp_path / name))
        assert rc == 0, err[-2000:]
        return json.loads((tmp_path / name / "metrics.json").read_text())["a2b"]["images"]["fake"]

    assert fakes_scored("ev") == 2
    (out / "index.html").unlink()
    assert fakes_scored("ev_plain") == 5


# ----------------------------------------------------------------------------------------------- streaming
def test_synthesize_streams_samples_in_batches_with_a_bounded_grid_and_page(trained, tmp_path, monkeypatch):
    """Memory depends on --batch-size, not --n: codes are drawn and decoded one batch at a time, and the grid and
    the page show a bounded number of samples; the manifest still names every sample."""
    from deepcascade.inference import synthesize_folder as sf
    from deepcascade.inference.synthesizer import Synthesizer

    monkeypatch.setattr(sf, "GRID_SAMPLES", 4)
    monkeypatch.setattr(sf, "PAGE_SAMPLES", 5)
    decoded = []
    decode = Synthesizer.decode

    def counting_decode(self, codes, *a, **k):
        decoded.append(next(iter(codes.values())).shape[0])
        return decode(self, codes, *a, **k)

    monkeypatch.setattr(Synthesizer, "decode", counting_decode)
    n = 7
    outs = {}
    for batch in (3, n):
        out = tmp_path / f"b{batch}"
        decoded.clear()
        rc, stdout, err = main_inprocess("synthesize", "--run", str(trained), "--domain", "a", "--n", str(n),
                                         "--out", str(out), "--batch-size", str(batch), "--save-levels",
                                         "--device", "cpu")
        assert rc == 0, err[-3000:]
        assert decoded == ([3, 3, 1] if batch == 3 else [n])
        outs[batch] = out
    out = outs[3]
    assert sorted(p.name for p in out.glob("sample_*.png")) == [f"sample_{i:04d}.png" for i in range(n)]
    assert len(list((out / "_levels").glob("*.png"))) == n
    assert json.loads((out / "synthesis.json").read_text())["samples"] == [f"sample_{i:04d}.png" for i in range(n)]
    assert Image.open(out / "grid.png").size == (2 * (SIZE + 2) + 2, 2 * (SIZE + 2) + 2)  # 4 samples, 2 x 2
    page = (out / "index.html").read_text()
    assert "sample_0004.png" in page and "sample_0005.png" not in page and f"all {n} are in this folder" in page
    # sample i's codes are the i-th draw whatever the batching: the same images up to rounding
    for i in range(n):
        a, b = (np.asarray(Image.open(o / f"sample_{i:04d}.png"), dtype=np.int16) for o in (outs[3], outs[n]))
        assert np.abs(a - b).max() <= 2, i


def test_synthesizer_code_batches_are_the_codes_in_order(trained):
    from deepcascade import Synthesizer

    s = Synthesizer.from_run(trained, device="cpu")
    whole = s.codes(5, "a", seed=3)
    parts = list(s.code_batches(5, "a", seed=3, batch_size=2))
    assert [next(iter(p.values())).shape[0] for p in parts] == [2, 2, 1]
    for level, z in whole.items():
        assert torch.equal(torch.cat([p[level] for p in parts]), z)
