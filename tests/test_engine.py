"""The shared training engine, exercised through the real ``deepcascade train`` on tiny synthetic data.

Every test trains the real inversion stage (I_3 and its PatchGAN, random VGG-19 weights, 32 px images, batch
4) for a few steps, either as a subprocess (signals, kills, the run-directory lock) or in this process through
``deepcascade.cli.main`` (where a function has to be replaced to provoke a failure). Subprocesses run with
``OMP_NUM_THREADS=1`` and in-process runs with ``torch.set_num_threads(1)``: on a small, shared CPU more
threads make these tiny convolutions several times slower, and the bitwise comparisons below need the same
thread count on both sides.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from conftest import write_tiny_config as write_config

ROOT = Path(__file__).resolve().parents[1]
STAGE = "invert3"
CKPT_RE = re.compile(rf"^{STAGE}-(\d{{7}})\.pt$")


# ------------------------------------------------------------------------------------------------ helpers
def child_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1"}


def train_cmd(cfg: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "deepcascade", "train", str(cfg), "--stage", "invert", "--run-dir", str(run),
            *extra]


def run_cli(cfg: Path, run: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(cfg, run, *extra), env=child_env(), capture_output=True, text=True,
                          timeout=timeout)


def start_cli(cfg: Path, run: Path, *extra: str, log: Path) -> subprocess.Popen:
    """A training subprocess whose stdout+stderr go to ``log`` (a file: a pipe nobody reads could fill up)."""
    f = open(log, "w")
    p = subprocess.Popen(train_cmd(cfg, run, *extra), env=child_env(), stdout=f, stderr=subprocess.STDOUT)
    f.close()
    return p


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120, what: str = ""):
    """Poll ``predicate`` every 10 ms until it is truthy; fail if ``proc`` exits first or time runs out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"training process exited with {proc.returncode} before {what}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def checkpoints(run: Path) -> dict[int, Path]:
    """{step: path} of the stage's checkpoints."""
    folder = run / "checkpoints"
    if not folder.is_dir():
        return {}
    return {int(m[1]): p for p in folder.iterdir() if (m := CKPT_RE.match(p.name))}


def stats(run: Path) -> list[dict]:
    path = run / "stats.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _drop_cli_handlers() -> None:
    logger = logging.getLogger("deepcascade")
    for h in [h for h in logger.handlers if getattr(h, "_deepcascade", False)]:
        logger.removeHandler(h)


def main_inprocess(*argv: str) -> tuple[int, str, str]:
    """``deepcascade.cli.main(argv)`` in this process, one torch thread; returns (exit code, stdout, stderr).

    The CLI's log handler is bound to the stderr it finds, so it is removed before (to bind it to ours) and
    after (so that later tests do not write into a closed buffer).
    """
    from deepcascade.cli import main

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _drop_cli_handlers()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    finally:
        _drop_cli_handlers()
        torch.set_num_threads(threads)
    return rc, out.getvalue(), err.getvalue()


def assert_same(a, b, where: str = "") -> None:
    """Exact equality of nested checkpoint contents (torch.equal for tensors)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where} differs"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_plain(obj, where: str = "checkpoint") -> None:
    """Only plain python values, lists, dicts and tensors (no pickled classes)."""
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, str)):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, (str, int)), f"{where}: key {k!r} of type {type(k).__name__}"
            assert_plain(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            assert_plain(v, f"{where}[{i}]")
    else:
        pytest.fail(f"{where} holds a {type(obj).__module__}.{type(obj).__name__}")


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data(synthetic_data) -> Path:
    return synthetic_data(n=8, size=32, seed=0, n_test=2)


@pytest.fixture(scope="module")
def basic_run(data, module_tmp):
    """6 steps with a checkpoint every step, the newest 2 kept, a sample grid every 3 steps.

    ``atomic_save`` is spied on, to know which checkpoints were written (and then rotated away).
    """
    from deepcascade.engine import checkpoint as ckpt_io

    tmp = module_tmp("basic")
    cfg = write_config(tmp / "cfg.yaml", data, engine={"checkpoint_every": 1, "keep_checkpoints": 2,
                                                        "sample_every": 3})
    written = []
    real = ckpt_io.atomic_save

    def spy(obj, path):
        written.append(Path(path))
        return real(obj, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ckpt_io, "atomic_save", spy)
        rc, out, err = main_inprocess("train", str(cfg), "--stage", "invert", "--run-dir", str(tmp / "run"))
    assert rc == 0, err
    return {"cfg": cfg, "run": tmp / "run", "written": written, "stdout": out, "stderr": err}


# -------------------------------------------------------------------------------- run directory and files
def test_run_directory_layout(basic_run):
    from deepcascade.config import build_config

    run = basic_run["run"]
    for name in ("config.yaml", "log.txt", "stats.jsonl", "samples", "checkpoints", "models"):
        assert (run / name).exists(), name
    # config.yaml is the resolved config
    assert yaml.safe_load((run / "config.yaml").read_text()) == build_config(basic_run["cfg"]).to_dict()
    # one status line per logged step: step, losses, images/s, data-wait share
    log = (run / "log.txt").read_text()
    for step in range(1, 7):
        assert re.search(rf"{STAGE} step {step}/6  .*l1=[\d.e-]+ .*perceptual=[\d.e-]+ .* [\d.]+ img/s  "
                         rf"data-wait \d+%", log), f"no status line for step {step}"
    assert f"stage {STAGE}: finished" in log
    # stats.jsonl: one JSON object per logged step with the loss keys
    records = stats(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for r in records:
        assert r["stage"] == STAGE
        for k in ("loss", "l1", "perceptual", "d_lsgan", "g_lsgan", "images_per_s", "data_wait"):
            assert math.isfinite(r[k]), (k, r)
        assert r["images_per_s"] > 0 and 0 <= r["data_wait"] <= 1
    # sample grids at steps 3 and 6: 8 fixed test images (4 per domain), input | reconstruction
    assert sorted(p.name for p in (run / "samples").iterdir()) == [f"{STAGE}-0000003.png", f"{STAGE}-0000006.png"]
    with Image.open(run / "samples" / f"{STAGE}-0000006.png") as im:
        im.load()
        assert im.width > 32 and im.height > 32
    # the inference snapshot: networks only
    snap = load(run / "models" / f"{STAGE}.pt")
    assert set(snap["nets"]) == {"I", "D"} and "optimizers" not in snap
    assert f"{STAGE}: done" in basic_run["stdout"]


def test_checkpoint_rotation_keeps_the_newest(basic_run):
    run, written = basic_run["run"], basic_run["written"]
    ckpts = [p for p in written if p.parent.name == "checkpoints"]
    assert [p.name for p in ckpts] == [f"{STAGE}-{s:07d}.pt" for s in range(1, 7)]  # one per step was written
    assert sorted(checkpoints(run)) == [5, 6]  # engine.keep_checkpoints: 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"{STAGE}-0000005.pt", f"{STAGE}-0000006.pt"]


def test_checkpoint_holds_full_state_as_plain_types(basic_run):
    import deepcascade
    from deepcascade.networks.inversion import InversionNet, PatchDiscriminator

    run = basic_run["run"]
    ckpt = load(checkpoints(run)[6])  # weights_only=True: plain types and tensors only
    assert_plain(ckpt)
    for key in ("nets", "optimizers", "scalers", "step", "rng", "config", "version", "stage", "compat"):
        assert key in ckpt, key
    assert ckpt["step"] == 6 and ckpt["stage"] == STAGE and ckpt["version"] == deepcascade.__version__
    assert ckpt["config"] == yaml.safe_load((run / "config.yaml").read_text())
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch", "generator"}
    assert isinstance(ckpt["rng"]["generator"], torch.Tensor) and isinstance(ckpt["rng"]["torch"], torch.Tensor)
    assert set(ckpt["nets"]) == set(ckpt["optimizers"]) == set(ckpt["scalers"]) == {"I", "D"}
    # the optimizers carry their moments (Adam state for every parameter, 6 steps taken)
    for name, n_params in (("I", len(list(InversionNet(256, 4).parameters()))),
                           ("D", len(list(PatchDiscriminator().parameters())))):
        state = ckpt["optimizers"][name]["state"]
        assert len(state) == n_params
        assert all(float(s["step"]) == 6 and "exp_avg_sq" in s for s in state.values())
    # the networks load strictly into fresh modules
    InversionNet(256, 4).load_state_dict(ckpt["nets"]["I"])
    PatchDiscriminator().load_state_dict(ckpt["nets"]["D"])


def test_checkpoint_writes_are_atomic(data, tmp_path, monkeypatch):
    """torch.save failing half-way: the previous checkpoint stays intact and no partial file remains."""
    from deepcascade.engine.checkpoint import atomic_save

    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] < fail_at:
            return real_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])  # half of the bytes reach the disk...
        raise OSError(28, "No space left on device (simulated)")  # ...then the write fails

    # a training run whose second checkpoint write fails
    fail_at = 2
    cfg = write_config(tmp_path / "cfg.yaml", data)
    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", failing_save)
    code, _, err = main_inprocess("train", str(cfg), "--stage", "invert", "--run-dir", str(run))
    assert code == 1 and "cannot write checkpoint" in err and "simulated" in err
    assert f"{STAGE}-0000004.pt" in err and f"intact: {run / 'checkpoints' / STAGE}-0000002.pt" in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"{STAGE}-0000002.pt"]
    assert load(run / "checkpoints" / f"{STAGE}-0000002.pt")["step"] == 2
    assert not (run / "models" / f"{STAGE}.pt").exists()

    # overwriting an existing file: the old content survives a failed write
    target = tmp_path / "x" / f"{STAGE}-0000001.pt"
    calls["n"], fail_at = 0, 2
    atomic_save({"a": torch.arange(3)}, target)
    with pytest.raises(OSError, match="simulated"):
        atomic_save({"a": torch.arange(1000)}, target)
    assert torch.equal(load(target)["a"], torch.arange(3))
    assert [p.name for p in target.parent.iterdir()] == [target.name]


# ------------------------------------------------------------------------------------- refusals, dry run
def test_existing_checkpoints_need_resume(basic_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(basic_run["run"], run)
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    rc, _, err = main_inprocess("train", str(basic_run["cfg"]), "--stage", "invert", "--run-dir", str(run))
    assert rc == 2
    assert f"stage '{STAGE}' already has checkpoints" in err and "--resume" in err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before


def test_different_config_in_same_run_dir_needs_resume(basic_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(basic_run["run"], run)
    stored = (run / "config.yaml").read_text()
    rc, _, err = main_inprocess("train", str(basic_run["cfg"]), "--stage", "invert", "--run-dir", str(run),
                                "--set", "invert.lr=0.001")
    assert rc == 2
    assert "holds a different config" in err and "invert.lr: 0.0001 -> 0.001" in err and "--resume" in err
    assert "Traceback" not in err
    assert (run / "config.yaml").read_text() == stored


def test_dry_run_prints_config_and_trains_nothing(data, tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", data)
    run = tmp_path / "run"
    rc, out, err = main_inprocess("train", str(cfg), "--stage", "invert", "--run-dir", str(run), "--dry-run",
                                  "--set", "invert.lr=0.0003")
    assert rc == 0, err
    resolved = yaml.safe_load(out)  # the printed config is YAML (the plan is in comments)
    assert resolved["invert"]["lr"] == 0.0003 and resolved["invert"]["steps"] == 6
    assert resolved["engine"]["checkpoint_every"] == 2 and resolved["data"]["domain_a"].endswith("trainA")
    assert "#   invert level 3" in out
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())
    assert not (run / "models").exists() or not any((run / "models").iterdir())


# ------------------------------------------------------------------------------ failures and interruption
def test_non_finite_loss_stops_and_keeps_last_checkpoint(data, tmp_path, monkeypatch):
    """The generator's LSGAN loss turns NaN at step 5 (checkpoints every 2 steps)."""
    from deepcascade.stages import invert

    bad_step, real = 5, invert.lsgan_g_loss
    calls = {"n": 0}

    def g_loss(scores):  # called once per step, in the I update
        calls["n"] += 1
        out = real(scores)
        return out * float("nan") if calls["n"] == bad_step else out

    monkeypatch.setattr(invert, "lsgan_g_loss", g_loss)
    cfg = write_config(tmp_path / "cfg.yaml", data, engine={"keep_checkpoints": 10}, invert={"steps": 8})
    run = tmp_path / "run"
    rc, _, err = main_inprocess("train", str(cfg), "--stage", "invert", "--run-dir", str(run))
    assert rc == 1
    assert f"stage '{STAGE}' step {bad_step}: non-finite loss" in err
    assert "g_lsgan=nan" in err and "loss=nan" in err
    last = run / "checkpoints" / f"{STAGE}-0000004.pt"
    assert f"last good checkpoint: {last}" in err
    assert "Traceback" not in err
    assert sorted(checkpoints(run)) == [2, 4]  # nothing at or after the bad step
    ckpt = load(last)
    assert ckpt["step"] == 4
    assert all(torch.isfinite(t).all() for sd in ckpt["nets"].values() for t in sd.values() if t.is_floating_point())
    assert not (run / "models" / f"{STAGE}.pt").exists()
    assert [r["step"] for r in stats(run)] == [1, 2, 3, 4]


def test_sigkill_then_resume_equals_uninterrupted_run(data, tmp_path):
    steps = 10
    cfg = write_config(tmp_path / "cfg.yaml", data, invert={"steps": steps})
    final = f"{STAGE}-{steps:07d}.pt"

    # the uninterrupted reference runs alongside (one thread each: the results do not depend on timing)
    ref = start_cli(cfg, tmp_path / "ref", log=tmp_path / "ref.log")
    try:
        run = tmp_path / "killed"
        proc = start_cli(cfg, run, log=tmp_path / "killed.log")
        wait_for(lambda: checkpoints(run), proc, what="the first checkpoint")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        # killed mid-run: neither the final checkpoint nor the snapshot had been written
        assert not (run / "checkpoints" / final).exists() and not (run / "models" / f"{STAGE}.pt").exists()
        assert sorted(checkpoints(run))[-1] < steps

        res = run_cli(cfg, run, "--resume")
        assert res.returncode == 0, res.stderr[-3000:]
        assert ref.wait(timeout=180) == 0, (tmp_path / "ref.log").read_text()[-3000:]
    finally:
        if ref.poll() is None:
            ref.kill()
            ref.wait()
    m = re.search(rf"resumed from (\S+{STAGE}-(\d{{7}})\.pt) \(step (\d+) of {steps}\)", res.stderr)
    assert m and 2 <= int(m[3]) < steps, res.stderr[-2000:]

    # bitwise the same networks, optimizers, scalers, RNG states and step as the uninterrupted run
    assert_same(load(tmp_path / "ref" / "models" / f"{STAGE}.pt")["nets"], load(run / "models" / f"{STAGE}.pt")["nets"],
                "snapshot")
    a, b = load(tmp_path / "ref" / "checkpoints" / final), load(run / "checkpoints" / final)
    for key in ("nets", "optimizers", "scalers", "rng", "step", "config"):
        assert_same(a[key], b[key], key)


def test_sigint_writes_checkpoint_and_resume_finishes(data, tmp_path):
    steps = 16
    cfg = write_config(tmp_path / "cfg.yaml", data, engine={"checkpoint_every": 1000}, invert={"steps": steps})
    run = tmp_path / "run"
    log = tmp_path / "interrupted.log"
    proc = start_cli(cfg, run, log=log)
    records = run / "stats.jsonl"  # appears with the first logged step, i.e. inside the training loop
    wait_for(lambda: records.is_file() and records.stat().st_size > 0, proc, what="the first logged step")
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=60)
    out = log.read_text()
    assert rc == 130, out[-3000:]
    assert "Traceback" not in out
    ckpts = checkpoints(run)
    assert len(ckpts) == 1  # the only one: written because of the signal (checkpoint_every is 1000)
    (step, path), = ckpts.items()
    assert 1 <= step < steps
    assert f"SIGINT: stage '{STAGE}' stopped at step {step}; checkpoint {path}; continue with --resume" in out
    ckpt = load(path)
    assert ckpt["step"] == step and set(ckpt["nets"]) == {"I", "D"}
    assert not (run / "models" / f"{STAGE}.pt").exists()

    res = run_cli(cfg, run, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed from {path} (step {step} of {steps})" in res.stderr
    assert f"resumed from {path} (step {step} of {steps})" in (run / "log.txt").read_text()
    assert [r["step"] for r in stats(run)] == list(range(1, steps + 1))  # continued, not restarted
    assert load(checkpoints(run)[steps])["step"] == steps
    assert (run / "models" / f"{STAGE}.pt").is_file()


def test_second_process_on_same_run_dir_is_refused(data, tmp_path):
    from deepcascade.rundir import RunDir

    cfg = write_config(tmp_path / "cfg.yaml", data, engine={"checkpoint_every": 1000}, invert={"steps": 1000})
    run = tmp_path / "run"
    first = start_cli(cfg, run, log=tmp_path / "first.log")
    try:
        lock = run / ".lock"
        wait_for(lambda: lock.is_file() and lock.read_text().strip() == str(first.pid), first,
                 what="the first process to take the lock")
        second = run_cli(cfg, run, "--resume")
        assert first.poll() is None, "the first process must still be running"
        assert second.returncode == 2
        assert "is in use by another deepcascade process" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    # the lock dies with its holder
    RunDir(run).open().close()


# ------------------------------------------------------------------------------------------ precision
def _cpu_fp16_unsupported() -> str | None:
    """Why fp16 autocast + GradScaler cannot run on this CPU build, or None when they can."""
    try:
        conv = torch.nn.Conv2d(3, 4, 3)
        scaler = torch.amp.GradScaler("cpu")
        opt = torch.optim.SGD(conv.parameters(), lr=0.1)
        with torch.autocast("cpu", dtype=torch.float16):
            y = conv(torch.randn(1, 3, 8, 8))
        if y.dtype != torch.float16:
            return f"CPU autocast does not produce float16 convolutions (got {y.dtype})"
        scaler.scale(y.float().mean()).backward()
        scaler.step(opt)
        scaler.update()
    except Exception as e:  # noqa: BLE001 - any failure means unsupported
        return f"CPU float16 autocast/GradScaler unsupported by torch {torch.__version__}: {e}"
    return None


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cpu(precision, data, tmp_path, monkeypatch):
    """Two steps under autocast. fp16 runs at 16 px: this torch's CPU float16 convolution backward takes a slow
    non-oneDNN path (about 100x fp32: ~9 s per step at 32 px), fine for a smoke test, not for training."""
    if precision == "fp16" and (why := _cpu_fp16_unsupported()):
        pytest.skip(why)
    from deepcascade.networks.inversion import InversionNet

    seen = set()
    real = InversionNet.forward

    def spy(self, x):
        y = real(self, x)
        seen.add(y.dtype)
        return y

    monkeypatch.setattr(InversionNet, "forward", spy)
    size = 16 if precision == "fp16" else 32
    cfg = write_config(tmp_path / "cfg.yaml", data, engine={"precision": precision},
                       data={"image_size": size, "load_size": size}, invert={"steps": 2})
    run = tmp_path / "run"
    rc, _, err = main_inprocess("train", str(cfg), "--stage", "invert", "--run-dir", str(run))
    assert rc == 0, err
    assert f"cpu, {precision}" in err
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert dtype in seen  # the networks really ran under autocast
    records = stats(run)
    assert [r["step"] for r in records] == [1, 2]
    assert all(math.isfinite(r[k]) for r in records for k in ("loss", "l1", "perceptual", "d_lsgan", "g_lsgan"))
    ckpt = load(checkpoints(run)[2])
    # parameters stay float32; only fp16 uses (and checkpoints) a grad scaler
    assert all(t.dtype == torch.float32 for t in ckpt["nets"]["I"].values())
    if precision == "fp16":
        assert all(ckpt["scalers"][k]["scale"] > 0 for k in ("I", "D"))
    else:
        assert ckpt["scalers"] == {"I": {}, "D": {}}
