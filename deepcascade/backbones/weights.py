"""The one place that resolves pretrained weights.

Order: explicit path -> environment variable -> torch hub cache -> download when online -> a clear error
naming the missing file, where to put it, and the ``backbone.weights: PATH`` alternative.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import torch

from ..errors import UserError
from ..fileio import safe_torch_load


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``, where torchvision keeps downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


class MissingWeights(UserError):
    """Pretrained weights that are neither given, in the hub cache, nor downloadable (exit 2 with what to do).

    Evaluation catches it to list a metric as not computed; the attributes say which file and how to provide it.
    """

    def __init__(self, message: str, filename: str, folder: Path, env_var: str, option: str, url: str):
        super().__init__(message)
        self.filename, self.folder, self.env_var, self.option, self.url = filename, folder, env_var, option, url

    def how(self) -> str:
        return (f"put {self.filename} (from {self.url}) into {self.folder}/, or set {self.env_var}="
                f"/path/to/{self.filename}, or {self.option}")


def resolve_pretrained(url: str, env_var: str, backbone: str, option: str | None = None) -> Path:
    """Find the file of ``url`` (torchvision's weights URL) offline, or download it; else MissingWeights.

    ``option`` is the third way to provide the file named in the error (default: the config's
    ``backbone.weights``).
    """
    filename = url.rsplit("/", 1)[-1]
    env = os.environ.get(env_var)
    if env:
        if not Path(env).is_file():
            raise UserError(f"{env_var}={env} does not exist; point it at {filename} or unset it")
        return Path(env)
    cached = hub_checkpoint_dir() / filename
    if cached.is_file():
        return cached
    if os.environ.get("DEEPCASCADE_OFFLINE", "") not in ("", "0"):
        reason = "DEEPCASCADE_OFFLINE is set"
    else:
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=True)
            return cached
        except Exception as e:  # no network, DNS failure, HTTP error, read-only cache...
            reason = f"download failed: {type(e).__name__}: {e}".splitlines()[0][:200]
        finally:
            socket.setdefaulttimeout(old)
    option = option or (f"use 'backbone.weights: /path/to/{filename}' in the config "
                        f"(--set backbone.weights=PATH)")
    raise MissingWeights(
        f"ImageNet weights for {backbone} are not available offline ({reason}). Put {filename} "
        f"(from {url}) into {cached.parent}/, or set {env_var}=/path/to/{filename}, or {option}.",
        filename, cached.parent, env_var, option, url)


def load_state_dict_file(path: str | Path) -> dict:
    """Load a weights file safely (``weights_only=True``); refuse anything but a tensor dict."""
    sd = safe_torch_load(path, "weights file", "only plain tensor state dicts are accepted")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"weights file {path} does not hold a state dict of tensors")
    return sd


def load_torchvision_features(features: torch.nn.Module, state_dict: dict, source: str, what: str) -> None:
    """Load the ``features`` part of a torchvision classifier's state dict into ``features``.

    Keys may be full-model ones (``features.N.weight``, as in torchvision's files and ``deepcascade finetune``'s
    output) or bare ``N.weight``; the classifier and pooling keys are ignored, and layers beyond the ones
    ``features`` holds (e.g. VGG-19's conv_5_2..conv_5_4 when the pyramid stops at conv_5_1) too. Raises
    KeyError naming ``what`` when a layer is missing, RuntimeError when a shape does not fit.
    """
    n_layers = len(features)
    feats = {}
    for k, v in state_dict.items():
        if k.startswith(("classifier.", "avgpool")):
            continue
        key = k[len("features."):] if k.startswith("features.") else k
        idx = key.split(".")[0]
        if idx.isdigit() and int(idx) < n_layers:
            feats[key] = v
    expected = set(features.state_dict().keys())
    missing = expected - set(feats)
    if missing:
        raise KeyError(f"{source}: not a {what} state dict; missing {sorted(missing)[:4]} "
                       f"(expected torchvision keys 'features.N.weight' or 'N.weight')")
    features.load_state_dict({k: feats[k] for k in expected}, strict=True)
