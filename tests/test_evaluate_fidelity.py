"""KID and FID through torch-fidelity equal an independent numpy implementation of the formulas.

torch-fidelity's Inception weights cannot be downloaded here, so a stand-in feature extractor is registered in
torch-fidelity's own registry; everything after the features (torch-fidelity's KID and FID code, our streaming,
caching and bootstrap) is the real path.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from deepcascade.evaluation.fidelity import FidelityFeatures, fid, frechet_distance, kid
from deepcascade.evaluation.images import ImageSet

STANDIN = "deepcascade-test-standin"


def _register_standin():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    class StandIn(FeatureExtractorBase):
        """A fixed random projection of 8x8-pooled pixels, tanh: 24 features under torch-fidelity's '2048' name."""

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            g = torch.Generator().manual_seed(0)
            self.register_buffer("proj", torch.randn(3 * 8 * 8, 24, generator=g) / 8)

        @staticmethod
        def get_provided_features_list():
            return ("2048",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "2048"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return None

        def forward(self, x):
            assert x.dtype == torch.uint8  # what torch-fidelity feeds its extractors
            x = F.adaptive_avg_pool2d(x.float() / 255.0, 8).flatten(1)
            return (torch.tanh((x - 0.5) @ self.proj * 4),)

    if STANDIN not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(STANDIN, StandIn)


def _folder(path, n, seed, tint):
    rng = np.random.default_rng(seed)
    path.mkdir()
    for i in range(n):
        base = rng.uniform(0, 255, (4, 4, 3))
        img = np.kron(base, np.ones((8, 8, 1))) * 0.6 + rng.uniform(0, 100, (32, 32, 3)) + tint
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path / f"{i:03d}.png")
    return path


# ---- an independent implementation of the formulas -------------------------------------------------------

def numpy_fid(a, b):
    """Frechet distance of Gaussians: |mu_a - mu_b|^2 + tr(Sa + Sb - 2 (Sa^1/2 Sb Sa^1/2)^1/2), via eigh."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root_a @ sb @ root_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    d = a.mean(0) - b.mean(0)
    return float(d @ d + np.trace(sa) + np.trace(sb) - 2 * tr_sqrt)


def numpy_kid(a, b):
    """Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = a.shape[1]
    k = lambda x, y: (x @ y.T / d + 1.0) ** 3  # noqa: E731
    m, n = len(a), len(b)
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


@pytest.fixture(scope="module")
def folders(module_tmp):
    root = module_tmp("fidelity")
    return _folder(root / "fake", 12, 1, 20.0), _folder(root / "real", 12, 2, 0.0)


def test_kid_fid_match_independent_numpy(folders, tmp_path):
    _register_standin()
    fake_dir, real_dir = folders
    ext = FidelityFeatures("cpu", STANDIN)
    fake = ext.features(ImageSet.from_folder(fake_dir, 32, "fake"), 5, tmp_path / "cache")
    real = ext.features(ImageSet.from_folder(real_dir, 32, "real"), 5, tmp_path / "cache")
    assert fake.shape == (12, 24)

    k = kid(fake, real, subsets=10, subset_size=12)  # subsets of the whole sets: every subset is the full set
    f = fid(fake, real, bootstrap=5)
    ref_k, ref_f = numpy_kid(fake, real), numpy_fid(fake, real)
    assert ref_f > 0.1 and abs(ref_k) > 1e-3  # the two sets differ, so the comparison means something
    assert k["value"] == pytest.approx(ref_k, rel=1e-4)
    assert f["value"] == pytest.approx(ref_f, rel=1e-4)
    assert k["subset_size"] == 12 and k["n_fake"] == 12 and k["scale"].startswith("raw")
    assert k["std"] < 1e-4 * abs(k["value"])  # identical subsets up to float32 summation order
    assert f["std"] is not None and f["std"] > 0  # bootstrap spread

    # same set against itself: FID 0, KID near 0
    assert fid(real, real, bootstrap=0)["value"] == pytest.approx(0.0, abs=1e-4)

    # the top-level torch-fidelity call on the folders gives the same numbers (our streaming is the same input)
    import torch_fidelity

    m = torch_fidelity.calculate_metrics(input1=str(fake_dir), input2=str(real_dir), feature_extractor=STANDIN,
                                         kid=True, fid=True, kid_subset_size=12, kid_subsets=10, cuda=False,
                                         cache=False, verbose=False, save_cpu_ram=True)
    assert m["kernel_inception_distance_mean"] == pytest.approx(k["value"], rel=1e-6)
    assert m["frechet_inception_distance"] == pytest.approx(f["value"], rel=1e-6)


def test_kid_subsets_smaller_than_sets(folders):
    _register_standin()
    fake_dir, real_dir = folders
    ext = FidelityFeatures("cpu", STANDIN)
    fake = ext.features(ImageSet.from_folder(fake_dir, 32, "fake"), 4, None)
    real = ext.features(ImageSet.from_folder(real_dir, 32, "real"), 4, None)
    k = kid(fake, real, subsets=50, subset_size=6)
    # each subset's value is the numpy MMD^2 of the same subsets drawn as torch-fidelity draws them
    rng = np.random.RandomState(2020)
    vals = []
    for _ in range(50):
        a = fake[rng.choice(12, 6, replace=False)]
        b = real[rng.choice(12, 6, replace=False)]
        vals.append(numpy_kid(a, b))
    assert k["value"] == pytest.approx(np.mean(vals), rel=1e-4)
    assert k["std"] == pytest.approx(np.std(vals), rel=1e-4)


def test_fast_frechet_equals_torch_fidelity_formula():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(0)
    for n_a, n_b, d in ((20, 30, 64), (80, 70, 16)):  # fewer rows than dims (SVD path) and more (eigvals path)
        a = rng.normal(size=(n_a, d)).astype(np.float32)
        b = (rng.normal(size=(n_b, d)) * 1.3 + 0.2).astype(np.float32)
        ref = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(a)),
                                       fid_features_to_statistics(torch.from_numpy(b)), False)
        assert frechet_distance(a, b) == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)


def test_features_are_cached(folders, tmp_path):
    _register_standin()
    fake_dir, _ = folders
    ext = FidelityFeatures("cpu", STANDIN)
    images = ImageSet.from_folder(fake_dir, 32, "fake")
    first = np.array(ext.features(images, 5, tmp_path))
    calls = []
    ext.net.forward = lambda x: calls.append(1) or (torch.zeros(len(x), 24),)  # would be wrong if called
    again = ext.features(images, 5, tmp_path)
    assert np.array_equal(first, np.asarray(again))
    assert len(calls) <= 1  # at most the shape probe ran, not the extraction
    assert len(list(tmp_path.glob("fidelity-*.npy"))) == 1
