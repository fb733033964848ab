"""Synthetic zebra-like (A) / giraffe-like (B) domains: determinism, layout, and separation by shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deepcascade.cli import main
from deepcascade.data import synthetic as syn
from deepcascade.data.synthetic import animals
from deepcascade.errors import UserError

N_SEP = 50  # samples per domain for the separation tests
SIZE_SEP = 64


@pytest.fixture(scope="module")
def samples():
    """{domain: [(image, mask)]} for the separation tests (seed 7, not the seed the docs quote)."""
    return {d: [animals.render_with_mask(d, i, SIZE_SEP, 7) for i in range(N_SEP)] for d in syn.DOMAINS}


def _best_threshold_accuracy(a, b) -> float:
    """Accuracy of the best single threshold (either direction) separating the values ``a`` from ``b``."""
    v, lab = np.r_[a, b], np.r_[np.zeros(len(a)), np.ones(len(b))]
    return max(max(((v > t) == lab).mean(), ((v <= t) == lab).mean()) for t in np.unique(v))


def test_deterministic_for_a_seed():
    for d in syn.DOMAINS:
        a, b = animals.render(d, 3, 64, seed=11), animals.render(d, 3, 64, seed=11)
        assert a.tobytes() == b.tobytes()
        assert animals.render(d, 3, 64, seed=12).tobytes() != a.tobytes()
        assert animals.render(d, 4, 64, seed=11).tobytes() != a.tobytes()
        assert np.array_equal(animals.silhouette_mask(d, 3, 64, 11), animals.silhouette_mask(d, 3, 64, 11))
    assert animals.render("A", 3, 64, 11).tobytes() != animals.render("B", 3, 64, 11).tobytes()


def test_does_not_touch_the_global_rngs():
    import random

    np.random.seed(0)
    random.seed(0)
    before = (np.random.random(), random.random())
    np.random.seed(0)
    random.seed(0)
    animals.render("B", 0, 48, 0)
    assert (np.random.random(), random.random()) == before


@pytest.mark.parametrize("size", [32, 100, 200])
def test_sizes_and_masks(size):
    for d in syn.DOMAINS:
        img, mask = animals.render_with_mask(d, 1, size, 0)
        assert img.mode == "RGB" and img.size == (size, size)
        assert mask.dtype == bool and mask.shape == (size, size)
        assert 0.01 < mask.mean() < 0.5  # an animal, not the whole frame
        assert np.array_equal(mask, animals.silhouette_mask(d, 1, size, 0))
    with pytest.raises(ValueError):
        animals.render("A", 0, 31, 0)
    with pytest.raises(ValueError):
        animals.render("C", 0, 64, 0)


def test_mask_marks_the_animal(samples):
    """Inside the mask the image is textured (stripes/patches), outside it is smooth background."""
    for d in syn.DOMAINS:
        for img, mask in samples[d][:10]:
            lum = np.asarray(img, np.float64) @ [0.299, 0.587, 0.114]
            grad = np.abs(np.diff(lum, axis=1))
            inside, outside = mask[:, 1:] & mask[:, :-1], ~mask[:, 1:] & ~mask[:, :-1]
            assert grad[inside].mean() > 2 * grad[outside].mean()
            ys, xs = np.nonzero(mask)  # wholly inside the frame
            assert ys.min() > 0 and xs.min() > 0 and ys.max() < SIZE_SEP - 1 and xs.max() < SIZE_SEP - 1


def test_domains_differ_in_silhouette_shape(samples):
    aspect = {d: np.array([syn.mask_aspect(m) for _, m in samples[d]]) for d in syn.DOMAINS}
    assert aspect["A"].mean() < 0.85 and aspect["B"].mean() > 1.4
    assert aspect["B"].mean() > 1.8 * aspect["A"].mean()
    correct = (aspect["A"] < syn.ASPECT_THRESHOLD).sum() + (aspect["B"] > syn.ASPECT_THRESHOLD).sum()
    assert correct / (2 * N_SEP) >= 0.95


def _box_centre(mask):
    ys, xs = np.nonzero(mask)
    return (xs.min() + xs.max() + 1) / 2 / mask.shape[1], (ys.min() + ys.max() + 1) / 2 / mask.shape[0]


def test_place_is_no_domain_cue(samples):
    """The animal's box centre is drawn from the same ranges in both domains: neither its x nor its y tells them
    apart, and both spread alike (version 1 fitted each animal into the frame instead: the wide zebras' x spread
    0.089 against the giraffes' 0.149, the tall giraffes' y 0.070 against the zebras' 0.124)."""
    centre = {d: np.array([_box_centre(m) for _, m in samples[d]]) for d in syn.DOMAINS}
    for k, (lo, hi) in enumerate((animals.CENTRE_X, animals.CENTRE_Y)):
        a, b = centre["A"][:, k], centre["B"][:, k]
        assert _best_threshold_accuracy(a, b) < 0.7, k
        assert 0.8 < a.std() / b.std() < 1.25, (k, a.std(), b.std())
        for v in (a, b):  # the drawn ranges, up to the pixel grid
            assert lo - 0.02 < v.min() and v.max() < hi + 0.02, (k, v.min(), v.max())


def test_whole_image_colour_does_not_separate_them(samples):
    """Both domains share the backgrounds: no whole-image mean colour statistic tells them apart."""
    mean_rgb = {d: np.array([np.asarray(im, np.float64).reshape(-1, 3).mean(0) for im, _ in samples[d]])
                for d in syn.DOMAINS}
    stats = {
        "R": lambda c: c[:, 0], "G": lambda c: c[:, 1], "B": lambda c: c[:, 2],
        "luminance": lambda c: c @ [0.299, 0.587, 0.114], "warmth R-B": lambda c: c[:, 0] - c[:, 2],
    }
    for name, f in stats.items():
        acc = _best_threshold_accuracy(f(mean_rgb["A"]), f(mean_rgb["B"]))
        assert acc < 0.8, (name, acc)  # the mask aspect above reaches >= 0.95 with a fixed threshold


def test_domain_score_from_the_image_alone(samples):
    score = {d: np.array([syn.domain_score(im) for im, _ in samples[d]]) for d in syn.DOMAINS}
    correct = (score["A"] < syn.ASPECT_THRESHOLD).sum() + (score["B"] > syn.ASPECT_THRESHOLD).sum()
    assert correct / (2 * N_SEP) >= 0.9
    # and it tracks the true silhouette aspect
    true = np.r_[[syn.mask_aspect(m) for _, m in samples["A"] + samples["B"]]]
    assert np.corrcoef(true, np.r_[score["A"], score["B"]])[0, 1] > 0.8


def test_write_dataset_layout_and_subset_consistency(tmp_path):
    counts = syn.write_dataset(tmp_path / "ds", n=4, size=48, seed=5, n_test=2, progress=False)
    assert counts == {"trainA": 4, "trainB": 4, "testA": 2, "testB": 2}
    for folder, count in counts.items():
        files = sorted((tmp_path / "ds" / folder).glob("*.png"))
        assert len(files) == count
        for f in files:
            with Image.open(f) as im:
                assert im.size == (48, 48) and im.mode == "RGB"
    # file i of trainA is render("A", i); test files use disjoint indices
    with Image.open(tmp_path / "ds" / "trainA" / "A_train_000002.png") as im:
        assert im.tobytes() == animals.render("A", 2, 48, 5).tobytes()
    with Image.open(tmp_path / "ds" / "testB" / "B_test_000001.png") as im:
        test_img = im.tobytes()
    assert test_img == animals.render("B", syn.TEST_INDEX_BASE + 1, 48, 5).tobytes()
    train_imgs = [Image.open(f).tobytes() for f in sorted((tmp_path / "ds" / "trainB").glob("*.png"))]
    assert test_img not in train_imgs
    meta = json.loads((tmp_path / "ds" / "synthetic.json").read_text())
    assert meta["seed"] == 5 and meta["size"] == 48 and meta["counts"] == counts
    # default test count
    counts = syn.write_dataset(tmp_path / "ds2", n=3, size=32, seed=0, progress=False)
    assert counts["testA"] == counts["testB"] == 10 and counts["trainA"] == 3


def test_write_dataset_refuses_to_mix_datasets(tmp_path):
    syn.write_dataset(tmp_path, n=2, size=32, seed=0, n_test=1, progress=False)
    with pytest.raises(UserError, match="--overwrite"):
        syn.write_dataset(tmp_path, n=1, size=32, seed=1, n_test=1, progress=False)
    counts = syn.write_dataset(tmp_path, n=1, size=32, seed=1, n_test=1, overwrite=True, progress=False)
    assert len(list((tmp_path / "trainA").glob("*.png"))) == counts["trainA"] == 1  # old files removed
    (tmp_path / "trainB" / "mine.jpg").write_bytes(b"not ours")
    with pytest.raises(UserError, match="other files"):
        syn.write_dataset(tmp_path, n=1, size=32, seed=1, n_test=1, overwrite=True, progress=False)
    assert (tmp_path / "trainB" / "mine.jpg").exists()
    with pytest.raises(UserError, match="--size"):
        syn.write_dataset(tmp_path / "x", n=1, size=16, seed=0)


def test_cli_prepare_synthetic(tmp_path, capsys):
    out = tmp_path / "data"
    rc = main(["prepare", "synthetic", "--out", str(out), "--n", "3", "--size", "40", "--seed", "2",
               "--n-test", "2"])
    assert rc == 0
    printed = capsys.readouterr().out
    for folder, count in (("trainA", 3), ("trainB", 3), ("testA", 2), ("testB", 2)):
        assert len(list((out / folder).glob("*.png"))) == count
        assert str(out / folder) in printed
    with Image.open(out / "testA" / "A_test_000000.png") as im:
        assert im.size == (40, 40)
    # user errors: exit 2 with one message, no traceback
    assert main(["prepare", "synthetic", "--out", str(out), "--n", "3", "--size", "40"]) == 2  # not empty
    assert main(["prepare", "synthetic", "--out", str(tmp_path / "d2"), "--size", "16"]) == 2
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["prepare", "synthetic", "--out", str(f), "--n", "1"]) == 2
    assert "existing file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["prepare", "coco", "--out", str(tmp_path / "c")])  # not a kind (yet)
    assert e.value.code == 2


def test_prepare_never_replaces_a_synthetic_json_it_did_not_write(tmp_path, capsys):
    """A ``synthetic.json`` the generator did not write is refused (exit 2, named), with or without --overwrite,
    before anything is written; so is one put in place of the generator's own after a run."""
    out = tmp_path / "data"
    out.mkdir()
    mine = out / "synthetic.json"
    mine.write_text('{"my": "notes"}')
    for extra in ([], ["--overwrite"]):
        assert main(["prepare", "synthetic", "--out", str(out), "--n", "1", "--n-test", "1", "--size", "32",
                     *extra]) == 2
        err = capsys.readouterr().err
        assert str(mine) in err and "not written by" in err and len(err.strip().splitlines()) == 1
        assert mine.read_text() == '{"my": "notes"}' and sorted(p.name for p in out.iterdir()) == ["synthetic.json"]
    done = tmp_path / "done"
    assert main(["prepare", "synthetic", "--out", str(done), "--n", "1", "--n-test", "1", "--size", "32"]) == 0
    (done / "synthetic.json").write_text("not json")
    assert main(["prepare", "synthetic", "--out", str(done), "--n", "1", "--n-test", "1", "--size", "32",
                 "--overwrite"]) == 2
    assert (done / "synthetic.json").read_text() == "not json"
