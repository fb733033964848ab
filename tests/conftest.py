"""Shared fixtures: tiny synthetic data and tiny run configs (random VGG-19, 32 px, CPU, a few steps)."""

from __future__ import annotations

import copy
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


@pytest.fixture(scope="session")
def tiny_config():
    """:func:`write_tiny_config`, as a fixture."""
    return write_tiny_config


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
