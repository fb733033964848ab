"""Shared fixtures: tiny synthetic data and tiny run configs (random VGG-19, 32 px, CPU, a few steps)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

#: the smallest config that trains every stage: override sections with ``tiny_config(..., deep={...})``
TINY = {"name": "tiny",
        "data": {"image_size": 32, "load_size": 32, "workers": 0},
        "backbone": {"name": "vgg19", "weights": "random"},
        "engine": {"device": "cpu", "checkpoint_every": 2, "log_every": 1, "sample_every": 100},
        "invert": {"levels": [3], "steps": 6, "batch_size": 4},
        "cascade": {"final_level": 3}}


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in, section by section (nested dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_tiny_config(path: Path, data_root: Path, **sections) -> Path:
    """Write ``TINY`` with ``data.root = data_root`` and ``sections`` merged in, as YAML at ``path``."""
    cfg = merge(merge(TINY, {"data": {"root": str(data_root)}}), sections)
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Path(path)


@pytest.fixture
def one_thread():
    """torch on one thread for the test (tests that compare step results bit for bit)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_config():
    """:func:`write_tiny_config`, as a fixture."""
    return write_tiny_config


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """``module_tmp(name)``: ``tmp_path_factory.mktemp(name)`` for a module's shared fixtures, whose folders are
    removed once the module's tests are done if none of them failed (kept for a look otherwise).

    A run's checkpoints are 100-250 MB each at VGG-19's widths; left to the session's end, the suite held ~10 GB
    (pyproject's ``tmp_path_retention_policy = "failed"`` does the same for ``tmp_path``).
    """
    made: list[Path] = []
    failed_before = request.session.testsfailed

    def mktemp(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    if request.session.testsfailed == failed_before:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """``synthetic_data(n, size, seed=0, n_test=2)``: a CycleGAN-layout folder of the built-in synthetic domains,
    written once per session for each argument set."""
    from deepcascade.data.synthetic import write_dataset

    made: dict[tuple, Path] = {}

    def make(n: int = 8, size: int = 32, seed: int = 0, n_test: int = 2) -> Path:
        key = (n, size, seed, n_test)
        if key not in made:
            root = tmp_path_factory.mktemp(f"synthetic_n{n}_s{size}_seed{seed}")
            write_dataset(root, n=n, size=size, seed=seed, n_test=n_test, progress=False)
            made[key] = root
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config, synthetic_data):
    """A tiny finished run (random VGG-19, 32 px): I_5 and the level-5 translators (cascade.final_level 5).

    Returns (root, config file, run directory); ``root/data`` holds the synthetic data it was trained on.
    """
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("tiny_run")
    (root / "data").symlink_to(synthetic_data(n=4, size=32, seed=1, n_test=3))
    cfg = tiny_config(root / "cfg.yaml", root / "data", engine={"checkpoint_every": 1},
                      invert={"levels": [5], "steps": 1, "batch_size": 2, "lambda_adv": 0},
                      deep={"steps": 1, "batch_size": 2, "critic_width": 16, "gn_groups": 8},
                      cascade={"final_level": 5})
    r = subprocess.run([sys.executable, "-m", "deepcascade", "train", str(cfg), "--stage", "all", "--run-dir",
                        str(root / "run")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, cfg, root / "run"


def _drop_cli_handlers() -> None:
    import logging

    logger = logging.getLogger("deepcascade")
    for h in [h for h in logger.handlers if getattr(h, "_deepcascade", False)]:
        logger.removeHandler(h)


def cli_inprocess(*argv):
    """``deepcascade ARGV`` through ``deepcascade.cli.main`` in this process (no interpreter start-up: seconds
    faster per call); stdout and stderr captured, returned like ``subprocess.run``'s result. An exception that
    escapes ``main`` is printed as the traceback a subprocess would show."""
    import contextlib
    import io
    import subprocess
    import traceback

    from deepcascade.cli import main

    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    _drop_cli_handlers()  # the CLI's log handler binds the stderr it finds: ours, then none
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:  # argparse errors
                rc = e.code if isinstance(e.code, int) else 1
            except Exception:
                traceback.print_exc(file=err)
                rc = 1
    finally:
        _drop_cli_handlers()
    return subprocess.CompletedProcess(["deepcascade", *argv], rc, out.getvalue(), err.getvalue())


@pytest.fixture
def dc():
    """Run the CLI in this process: ``dc("translate", "--run", ...)`` -> CompletedProcess."""
    return cli_inprocess


def save_torchvision_weights(net, folder: Path, name: str) -> tuple[Path, Path]:
    """Save a torchvision model's state dict twice, as torchvision's files are (full-model keys
    ``features.N.weight``) and as features-only keys (``N.weight``); returns both paths."""
    import torch

    full, feats = folder / f"{name}_full.pth", folder / f"{name}_features.pth"
    torch.save(net.state_dict(), full)
    torch.save(net.features.state_dict(), feats)
    return full, feats


def torchvision_levels(net, x, conv_index: dict[int, int], relu: bool) -> dict:
    """The reference levels: ``net.features`` up to each level's conv (or its ReLU) on ImageNet-standardized x."""
    import torch

    from deepcascade.backbones.base import IMAGENET_MEAN, IMAGENET_STD

    z = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return {l: net.features[: i + (2 if relu else 1)](z) for l, i in conv_index.items()}
