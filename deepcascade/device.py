"""Which torch device a command runs on (training, translation, evaluation alike)."""

from __future__ import annotations

import os

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available (the local rank's GPU under torchrun), else cpu."""
    if not (name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise UserError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} was asked for but no CUDA device is available; use 'cpu' or 'auto'")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return torch.device(name)
