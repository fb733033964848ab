"""KID and FID through torch-fidelity, with its TTUR-exact Inception-v3 (the paper's quantitative comparison,
supplementary section 5).

The features come from torch-fidelity's own feature extractor (``inception-v3-compat``: the 2015-12-05
TensorFlow Inception graph converted to PyTorch, TF1-compatible bilinear resize to 299 x 299, pool3 features,
2048 dims) and the numbers from torch-fidelity's own formulas (``kid_features_to_metric``: unbiased MMD^2 with
the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 over random subsets; ``fid_statistics_to_metric``:
Frechet distance of the two Gaussians), so they are what ``fidelity --kid --fid`` gives on the same images.
We only stream the extraction ourselves (uint8 batches of the evaluation size, any torch device) and cache the
features under the output folder.

KID is reported raw (not x100). Its spread is torch-fidelity's standard deviation over the subsets; FID's is
the standard deviation over bootstrap resamples of both feature sets (the value itself uses all images).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..backbones.weights import load_state_dict_file, resolve_pretrained, sha256_of
from ..errors import UserError
from .cache import cached_rows
from .images import ImageSet

log = logging.getLogger("deepcascade")

EXTRACTOR = "inception-v3-compat"
FEATURE = "2048"
KNOWN_DIMS = {EXTRACTOR: 2048}  # other extractors (tests' stand-ins) are probed with one dummy image
ENV_VAR = "DEEPCASCADE_INCEPTION_WEIGHTS"
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000  # torch-fidelity's default; lowered to the smaller set's size when that is smaller
FID_BOOTSTRAP = 10
SEED = 2020  # torch-fidelity's default rng_seed


def inception_url() -> str:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def reference_sha256_prefix() -> str:
    """The hash prefix torch-fidelity's file name carries (``...-6726825d.pth``): the TTUR-exact weights."""
    return inception_url().rsplit("-", 1)[-1].split(".")[0]


def resolve_inception_weights(path: str | None = None) -> Path:
    """``--inception-weights PATH`` -> ``$DEEPCASCADE_INCEPTION_WEIGHTS`` -> torch hub cache -> download;
    else :class:`~deepcascade.backbones.weights.MissingWeights` naming the file, the folder and the option."""
    if path:
        if not Path(path).is_file():
            raise UserError(f"--inception-weights {path} does not exist")
        return Path(path)
    filename = inception_url().rsplit("/", 1)[-1]
    return resolve_pretrained(inception_url(), ENV_VAR, "Inception-v3 (KID/FID through torch-fidelity)",
                              option=f"pass --inception-weights /path/to/{filename}")


class FidelityFeatures:
    """One of torch-fidelity's registered feature extractors, on any device, with its weights recorded."""

    def __init__(self, device, name: str = EXTRACTOR, weights: str | Path | None = None):
        import torch_fidelity  # noqa: F401  (fills the feature-extractor registry)
        from torch_fidelity.utils import create_feature_extractor

        kwargs = {}
        self.weights_file, self.weights_sha256 = None, None
        if weights is not None:
            # torch-fidelity reads the file with weights_only=False; refuse a pickle carrying code before it does.
            load_state_dict_file(weights)
            kwargs["feature_extractor_weights_path"] = str(weights)
            self.weights_file, self.weights_sha256 = str(weights), sha256_of(weights)
        self.name, self.device = name, torch.device(device)
        self.net = create_feature_extractor(name, [FEATURE], cuda=False, verbose=False, **kwargs).to(self.device)

    def protocol(self) -> dict:
        out = {"extractor": self.name, "feature": FEATURE, "weights_file": self.weights_file,
               "weights_sha256": self.weights_sha256}
        if self.name == EXTRACTOR:
            out["input"] = "uint8 RGB, torch-fidelity's TF1-compatible bilinear resize to 299 x 299"
            out["reference_weights"] = bool(self.weights_sha256 and
                                            self.weights_sha256.startswith(reference_sha256_prefix()))
        return out

    @torch.no_grad()
    def features(self, images: ImageSet, batch_size: int, cache_dir: Path | None) -> np.ndarray:
        """(N, 2048) float32 features of ``images`` (cached)."""
        def fill(arr):
            for start, batch in images.batches(batch_size, f"{self.name} {images.what}"):
                feats = self.net(batch.to(self.device))
                feats = self.net.convert_features_tuple_to_dict(feats)[FEATURE]
                arr[start: start + len(batch)] = feats.float().cpu().numpy()

        dim = KNOWN_DIMS.get(self.name) or int(
            self.net(torch.zeros(1, 3, images.size, images.size, dtype=torch.uint8, device=self.device))[0].shape[1])
        key = {"images": images.fingerprint(), "extractor": self.name, "weights": self.weights_sha256}
        return cached_rows(cache_dir, "fidelity", key, (len(images), dim), np.float32, fill,
                           images.slot(self.name))


def kid(fake: np.ndarray, real: np.ndarray, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = SEED) -> dict:
    """KID of fake vs real features by torch-fidelity; raw value (not x100) and its std over the subsets."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = min(subset_size, len(fake), len(real))
    if size < 2:
        raise ValueError(f"KID needs at least 2 fake and 2 real images, got {len(fake)} and {len(real)}")
    m = kid_features_to_metric(torch.from_numpy(np.array(fake)), torch.from_numpy(np.array(real)),
                               kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False)
    return {"value": m[KEY_METRIC_KID_MEAN], "std": m[KEY_METRIC_KID_STD], "scale": "raw (not x100)",
            "n_fake": len(fake), "n_real": len(real), "subset_size": size, "subsets": subsets,
            "kernel": "polynomial (x.y/d + 1)^3", "estimator": "unbiased MMD^2"}


def fid(fake: np.ndarray, real: np.ndarray, bootstrap: int = FID_BOOTSTRAP, seed: int = SEED) -> dict:
    """FID of fake vs real features by torch-fidelity; std over ``bootstrap`` resamples of both sets."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    if len(fake) < 2 or len(real) < 2:
        raise ValueError(f"FID needs at least 2 fake and 2 real images, got {len(fake)} and {len(real)}")
    fake, real = np.array(fake), np.array(real)  # in memory (memory maps are read-only): N x 2048 floats
    value = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(fake)),
                                     fid_features_to_statistics(torch.from_numpy(real)), False)[KEY_METRIC_FID]
    rng = np.random.default_rng(seed)
    boots = [frechet_distance(fake[rng.integers(0, len(fake), len(fake))],
                              real[rng.integers(0, len(real), len(real))]) for _ in range(bootstrap)]
    return {"value": float(value), "std": float(np.std(boots)) if boots else None,
            "spread": f"std over {bootstrap} bootstrap resamples of both sets" if boots else None,
            "n_fake": len(fake), "n_real": len(real)}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Frechet distance of the Gaussians fitted to feature rows ``a`` and ``b`` (float64).

    Same value as torch-fidelity's, computed in the cheaper of two exact ways: tr sqrt(S_a S_b) is the sum of
    the singular values of A B^T / sqrt((n_a - 1)(n_b - 1)) for centred rows A, B (an n_a x n_b problem
    instead of d x d), which is what makes the bootstrap affordable on small test sets.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    A, B = a - a.mean(0), b - b.mean(0)
    na, nb, d = len(a), len(b), a.shape[1]
    diff = a.mean(0) - b.mean(0)
    tr_a = float((A * A).sum()) / (na - 1)
    tr_b = float((B * B).sum()) / (nb - 1)
    if min(na, nb) <= d:
        tr_sqrt = float(np.linalg.svd(A @ B.T, compute_uv=False).sum()) / np.sqrt((na - 1) * (nb - 1))
    else:
        sa, sb = A.T @ A / (na - 1), B.T @ B / (nb - 1)
        tr_sqrt = float(np.sqrt(np.linalg.eigvals(sa @ sb).astype(np.complex128)).real.sum())
    return float(diff @ diff + tr_a + tr_b - 2.0 * tr_sqrt)
