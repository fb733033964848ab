"""LPIPS from cached embeddings equals ``lpips.LPIPS(net='alex')``; nearest neighbours equal a brute-force search.

AlexNet's ImageNet weights cannot be downloaded here: the reference model gets lpips' random trunk
(``pnet_rand=True``), which is saved in torchvision's format and loaded by our code as a user's file would be.
The linear layers are lpips' real packaged v0.1 weights in both.
"""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from deepcascade.errors import UserError
from deepcascade.evaluation.images import ImageSet
from deepcascade.evaluation.lpips_nn import nearest_neighbours
from deepcascade.evaluation.perceptual import LpipsEmbedding, load_alexnet_trunk

CONVS = {1: 0, 2: 3, 3: 6, 4: 8, 5: 10}


def reference_lpips(seed=0):
    import lpips

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()


def save_trunk(model, path):
    """The reference's AlexNet trunk as a torchvision state dict (``features.N.weight``)."""
    sd = {}
    for s, i in CONVS.items():
        conv = getattr(model.net, f"slice{s}")._modules[str(i)]
        sd[f"features.{i}.weight"], sd[f"features.{i}.bias"] = conv.weight.detach(), conv.bias.detach()
    sd["classifier.1.weight"] = torch.zeros(4, 9216)  # a full torchvision file has these too; ignored
    torch.save(sd, path)
    return path


def _images(folder, n, seed, size=48):
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(n):
        base = rng.uniform(0, 255, (3, 3, 3))
        img = np.kron(base, np.ones((size // 3, size // 3, 1))) + rng.normal(0, 25, (size, size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img_{i:02d}.png")
    return ImageSet.from_folder(folder, size, folder.name)


def test_embedding_distances_equal_lpips(tmp_path):
    ref = reference_lpips()
    emb = LpipsEmbedding(save_trunk(ref, tmp_path / "alexnet.pth"))
    a = _images(tmp_path / "a", 6, 1)
    b = _images(tmp_path / "b", 6, 2)
    ea = emb.embed(a, 4, tmp_path / "cache")  # cached memory maps, as the evaluation reads them
    eb = emb.embed(b, 4, tmp_path / "cache")
    xa = torch.stack([a[i] for i in range(len(a))]).float() / 255
    xb = torch.stack([b[i] for i in range(len(b))]).float() / 255
    with torch.no_grad():
        want = ref(xa, xb, normalize=True).reshape(-1).double().numpy()
    got = ((np.asarray(ea, np.float64) - np.asarray(eb, np.float64)) ** 2).sum(1)
    assert want.min() > 1e-3  # distinct images: a real comparison
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_nearest_neighbours_equal_brute_force(tmp_path, monkeypatch):
    ref = reference_lpips(seed=1)
    emb = LpipsEmbedding(save_trunk(ref, tmp_path / "alexnet.pth"))
    queries = _images(tmp_path / "q", 5, 3)
    train = _images(tmp_path / "train", 23, 4)
    eq = emb.embed(queries, 8, tmp_path / "cache")
    et = emb.embed(train, 8, tmp_path / "cache")
    monkeypatch.setattr("deepcascade.evaluation.lpips_nn.CHUNK_BYTES", 4 * et.shape[1] * 7)  # several chunks
    idx, dist = nearest_neighbours(eq, et, k=3)
    # brute force: the reference lpips model on every (query, training image) pair
    xt = torch.stack([train[j] for j in range(len(train))]).float() / 255
    for i in range(len(queries)):
        xq = (queries[i].float() / 255)[None].expand(len(train), -1, -1, -1)
        with torch.no_grad():
            d = ref(xq, xt, normalize=True).reshape(-1).double().numpy()
        order = np.argsort(d, kind="stable")[:3]
        assert list(idx[i]) == list(order)
        np.testing.assert_allclose(dist[i], d[order], atol=1e-5, rtol=0)


def test_nearest_neighbour_of_a_copy_is_itself(tmp_path):
    ref = reference_lpips()
    emb = LpipsEmbedding(save_trunk(ref, tmp_path / "alexnet.pth"))
    train = _images(tmp_path / "train", 10, 5)
    et = np.asarray(emb.embed(train, 4, None))
    idx, dist = nearest_neighbours(et[[7, 2]], et, k=3)
    assert list(idx[:, 0]) == [7, 2]
    assert np.all(dist[:, 0] == 0) and np.all(dist[:, 1] > 0)


def test_wrong_alexnet_file_is_a_user_error(tmp_path):
    ref = reference_lpips()
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="not a torchvision AlexNet state dict"):
        load_alexnet_trunk(ref.net, tmp_path / "bad.pth")
