"""An independent domain classifier: does a translation look like its target domain to a judge that shares
nothing with the translator?

Trained on the training images of both domains, checked on real held-out images of both (its balanced
accuracy is reported with every share; below 90 % the shares are flagged untrustworthy), then applied to the
translations. Which judge, by the run's backbone:

- translating in VGG-19 or AlexNet features (or an unknown method's outputs): a linear probe (L2-regularized logistic
  regression) on EfficientNet-Lite0's ImageNet features, globally average-pooled at its five levels (512 dims).
  A different network with different weights, and always available (its weights ship in a pip package).
- translating in EfficientNet-Lite0 features: a probe on that network would judge in the very feature space the
  translator was trained to move, so it could be fooled by feature-space changes a person would not see.
  Then a linear probe on AlexNet's ImageNet features (LPIPS's trunk, relu1-relu5 pooled, 1152 dims) when its
  weights are available, else a small CNN trained from scratch on the two domains' training images (a
  judge with no ImageNet prior at all, so nothing in common with the translator; its held-out accuracy says
  whether the training images sufficed).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from ..progress import progress

from ..errors import UserError
from ..fileio import atomic_path, safe_torch_load
from .cache import cached_rows, key_hash
from .images import ImageSet, to_float

log = logging.getLogger("deepcascade")

KINDS = ("efficientnet_lite0", "alexnet", "cnn")
TRUST_ACCURACY = 0.90
PROBE_L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)  # L2 weights tried by cross-validation (standardized features)
CNN_MAX_SIZE = 64  # the from-scratch CNN sees images at most this large (a CPU-affordable judge)
CNN_VERSION = 2  # bump when the CNN or its training changes (invalidates cached models)


def choose(requested: str, run_backbone: str | None, alexnet_available: bool) -> tuple[str, str, bool]:
    """(kind, why, independent) for ``--classifier requested`` and the translator's backbone (None: unknown)."""
    if requested not in ("auto",) + KINDS:
        raise ValueError(requested)
    # efficientnet_lite0_s16 is the same network (and weights) cut earlier: the same judge rules apply
    network = "efficientnet_lite0" if run_backbone == "efficientnet_lite0_s16" else run_backbone
    if requested == "auto":
        if network != "efficientnet_lite0":
            kind = "efficientnet_lite0"
        else:  # (a run translating in AlexNet features gets the EfficientNet-Lite0 probe above)
            kind = "alexnet" if alexnet_available else "cnn"
    else:
        kind = requested
    independent = kind != network  # a probe on the translator's own network is not independent
    translator = f"the translator works in {run_backbone} features" if run_backbone else "the method is unknown"
    why = {
        "efficientnet_lite0": f"{translator}; a linear probe on EfficientNet-Lite0's ImageNet features (packaged "
                              f"weights) is another network",
        "alexnet": f"{translator}; a linear probe on AlexNet's ImageNet features (LPIPS's trunk) is another "
                   f"network",
        "cnn": f"{translator}; a small CNN trained from scratch on the two domains' training images shares no "
               f"weights or features with it" + ("" if alexnet_available else
                                                  " (AlexNet's ImageNet weights, the other option, are missing)"),
    }[kind]
    if not independent:
        why = f"NOT independent: {translator} and the probe reads the same features"
    return kind, why, independent


# ------------------------------------------------------------------------------------------------------------
# linear probe on frozen ImageNet features

class PooledFeatures(nn.Module):
    """A frozen feature pyramid, globally average-pooled per level and concatenated."""

    def __init__(self, kind: str, alexnet_weights: str | Path | None = None):
        super().__init__()
        self.kind = kind
        if kind == "efficientnet_lite0":
            from ..backbones import build_backbone

            self.net = build_backbone("efficientnet_lite0", "imagenet")
            self.sha256 = self.net.weights_sha256
        else:
            from .perceptual import build_lpips
            from ..backbones.weights import sha256_of

            model = build_lpips(alexnet_weights)
            self.net, self.scaling = model.net, model.scaling_layer
            self.sha256 = sha256_of(alexnet_weights) if alexnet_weights else "random"
        self.net.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "efficientnet_lite0":
            levels = self.net(x)
            feats = [levels[l] for l in sorted(levels)]
        else:
            feats = list(self.net(self.scaling(2 * x - 1)))
        return torch.cat([f.float().mean((2, 3)) for f in feats], 1)

    @torch.no_grad()
    def features(self, images: ImageSet, batch_size: int, device, cache_dir) -> np.ndarray:
        def fill(arr):
            for start, batch in images.batches(batch_size, f"{self.kind} features {images.what}"):
                arr[start: start + len(batch)] = self(to_float(batch, device)).cpu().numpy()

        with torch.no_grad():
            dim = self(torch.zeros(1, 3, images.size, images.size, device=device)).shape[1]
        key = {"images": images.fingerprint(), "probe": self.kind, "weights": self.sha256}
        return np.asarray(cached_rows(cache_dir, "probe", key, (len(images), dim), np.float32, fill,
                                      images.slot(self.kind)))


def _fit(z: torch.Tensor, t: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-regularized logistic regression on standardized features by L-BFGS (full batch, deterministic)."""
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=100, tolerance_grad=1e-7, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w + b, t) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit_logistic(x: np.ndarray, y: np.ndarray, l2_grid=PROBE_L2_GRID, folds: int = 3, seed: int = 0):
    """Standardize, choose the L2 weight by ``folds``-fold cross-validated accuracy on the training features
    (ties: the stronger regularization), refit on all of them. Returns ``predict(features) -> P(domain B)``;
    ``predict.l2`` is the weight chosen."""
    x = torch.from_numpy(np.asarray(x, np.float64))
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sd
    t = torch.from_numpy(np.asarray(y, np.float64))
    order = np.random.default_rng(seed).permutation(len(z))
    best, best_acc = l2_grid[-1], -1.0
    if len(z) >= 2 * folds:
        for l2 in sorted(l2_grid, reverse=True):
            hits = 0
            for f in range(folds):
                val = torch.from_numpy(order[f::folds])
                train = torch.from_numpy(np.setdiff1d(order, order[f::folds]))
                w, b = _fit(z[train], t[train], l2)
                hits += int((((z[val] @ w + b) > 0).double() == t[val]).sum())
            if hits / len(z) > best_acc:
                best, best_acc = l2, hits / len(z)
    w, b = _fit(z, t, best)

    def predict(f: np.ndarray) -> np.ndarray:
        zf = (torch.from_numpy(np.asarray(f, np.float64)) - mu) / sd
        return torch.sigmoid(zf @ w + b).numpy()

    predict.l2 = best
    return predict


# ------------------------------------------------------------------------------------------------------------
# small CNN from scratch

class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-maxpool blocks (16, 32, 64, 64 channels), global average pool, linear."""

    def __init__(self):
        super().__init__()
        layers, c_in = [], 3
        for c in (16, 32, 64, 64):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(c_in, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(2 * x - 1).mean((2, 3))).squeeze(1)


def _cnn_size(size: int) -> int:
    return min(size, CNN_MAX_SIZE)


def _pixels(images: ImageSet, size: int, batch_size: int, cache_dir) -> np.ndarray:
    """uint8 (N, 3, s, s) pixels at the CNN's size, cached: training reads them many times."""
    def fill(arr):
        for start, batch in images.batches(batch_size, f"pixels {images.what}"):
            x = batch.float()
            if x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            arr[start: start + len(batch)] = x.round().clamp(0, 255).to(torch.uint8).numpy()

    key = {"images": images.fingerprint(), "size": size}
    return cached_rows(cache_dir, "pixels", key, (len(images), 3, size, size), np.uint8, fill,
                       images.slot(f"pixels{size}"))


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 1/8 of the side (reflect padding)."""
    n, _, s, _ = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    p = max(1, s // 8)
    x = F.pad(x, (p, p, p, p), mode="reflect")
    dx, dy = torch.randint(0, 2 * p + 1, (2,), generator=gen).tolist()
    return x[:, :, dy: dy + s, dx: dx + s]


def train_cnn(pix_a: np.ndarray, pix_b: np.ndarray, device, seed: int = 0, batch_size: int = 32) -> SmallCNN:
    """Adam with a one-cycle schedule, 10 epochs bounded to 20..2000 steps, balanced batches (half A, half B)."""
    n = len(pix_a) + len(pix_b)
    steps = int(np.clip(10 * n // batch_size, 20, 2000))
    gen = torch.Generator().manual_seed(seed)
    # The whole fit runs on its own seeded global RNG (the init and the dropout mask draw from it), so the same
    # data and seed give the same judge whatever ran before in the process, and the caller's RNG is untouched.
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        return _fit_cnn(SmallCNN().to(device), pix_a, pix_b, device, gen, steps, batch_size)


def _fit_cnn(net: SmallCNN, pix_a, pix_b, device, gen: torch.Generator, steps: int, batch_size: int) -> SmallCNN:
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    half = max(1, batch_size // 2)
    net.train()
    for _ in progress(range(steps), desc="domain classifier (CNN from scratch)", unit="step", leave=False,
                  dynamic_ncols=True):
        ia = torch.randint(0, len(pix_a), (half,), generator=gen).sort().values.numpy()
        ib = torch.randint(0, len(pix_b), (half,), generator=gen).sort().values.numpy()
        x = torch.from_numpy(np.concatenate([pix_a[ia], pix_b[ib]])).to(device).float().div_(255.0)
        y = torch.cat([torch.zeros(half), torch.ones(half)]).to(device)
        x = _augment(x, gen)
        loss = F.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


# ------------------------------------------------------------------------------------------------------------

class DomainClassifier:
    """Fit on ``train_a`` (label 0) and ``train_b`` (label 1); ``prob_b(images)`` -> P(domain B) per image."""

    def __init__(self, kind: str, device, batch_size: int, cache_dir: Path | None,
                 alexnet_weights: str | Path | None = None, seed: int = 0):
        self.kind, self.device, self.batch_size, self.cache_dir = kind, torch.device(device), batch_size, cache_dir
        self.alexnet_weights, self.seed = alexnet_weights, seed
        self._predict = None
        self.extractor = PooledFeatures(kind, alexnet_weights).to(self.device) if kind != "cnn" else None
        self.net: SmallCNN | None = None
        self.size = None

    def fit(self, train_a: ImageSet, train_b: ImageSet) -> "DomainClassifier":
        if self.kind != "cnn":
            fa = self.extractor.features(train_a, self.batch_size, self.device, self.cache_dir)
            fb = self.extractor.features(train_b, self.batch_size, self.device, self.cache_dir)
            self._predict = fit_logistic(np.concatenate([fa, fb]), np.r_[np.zeros(len(fa)), np.ones(len(fb))],
                                         seed=self.seed)
            return self
        self.size = _cnn_size(train_a.size)
        key = {"a": train_a.fingerprint(), "b": train_b.fingerprint(), "size": self.size, "seed": self.seed,
               "version": CNN_VERSION, "batch": 32}
        path = Path(self.cache_dir) / f"cnn-{key_hash(key)}.pt" if self.cache_dir else None
        self.net = SmallCNN().to(self.device)
        if path is not None and path.is_file():
            try:
                self.net.load_state_dict(safe_torch_load(path, "cached domain classifier"))
                self.net.eval()
                return self
            except (UserError, RuntimeError) as e:  # unreadable, or not this network's weights: a cache, so redo
                log.warning("%s; training the classifier again", str(e).splitlines()[0][:300])
        pa = _pixels(train_a, self.size, self.batch_size, self.cache_dir)
        pb = _pixels(train_b, self.size, self.batch_size, self.cache_dir)
        self.net = train_cnn(pa, pb, self.device, self.seed)
        if path is not None:
            with atomic_path(path) as tmp:
                torch.save({k: v.cpu() for k, v in self.net.state_dict().items()}, tmp)
        return self

    @torch.no_grad()
    def prob_b(self, images: ImageSet) -> np.ndarray:
        if len(images) == 0:
            return np.zeros(0)
        if self.kind != "cnn":
            return self._predict(self.extractor.features(images, self.batch_size, self.device, self.cache_dir))
        out = []
        for _, batch in images.batches(self.batch_size, f"classify {images.what}"):
            x = to_float(batch, self.device)
            if x.shape[-1] != self.size:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                                  align_corners=False)
            out.append(torch.sigmoid(self.net(x)).cpu().numpy())
        return np.concatenate(out)

    def protocol(self) -> dict:
        if self.kind == "cnn":
            return {"kind": "cnn", "model": "small CNN from scratch (4 conv blocks 16-32-64-64, GAP, linear)",
                    "input_size": self.size, "training": "Adam 2e-3 one-cycle, 10 epochs within 20-2000 steps, "
                                                         "balanced batches of 32, flips and shifts", "seed": self.seed}
        return {"kind": self.kind, "model": f"linear probe (logistic regression on standardized features, L2 weight "
                                            f"{getattr(self._predict, 'l2', None)} chosen by 3-fold CV) on "
                                            f"{self.kind} ImageNet features pooled per level",
                "weights_sha256": self.extractor.sha256}


def accuracy(prob_b: np.ndarray, is_b: bool) -> float | None:
    """Share of images classified as their true domain (threshold 0.5)."""
    if len(prob_b) == 0:
        return None
    hit = prob_b > 0.5 if is_b else prob_b <= 0.5
    return float(np.mean(hit))
