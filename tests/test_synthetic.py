"""The built-in synthetic pairs: determinism, masks, separation by shape and not by colour, the data set writer."""

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


# ---- the held-out object pairs -------------------------------------------------------------------------------
OBJECT_PAIRS = [name for name in syn.PAIRS if name != "animals"]


@pytest.fixture(scope="module")
def pair_samples():
    """{pair: {domain: [(image, mask)]}}, fresh indices and seed 7 at 64 px."""
    return {name: {d: [syn.render_with_mask(name, d, 5000 + i, SIZE_SEP, 7) for i in range(N_SEP)]
                   for d in syn.DOMAINS} for name in OBJECT_PAIRS}


def test_registry_and_pair_errors():
    assert syn.DEFAULT_PAIR == "animals" and len(OBJECT_PAIRS) >= 2
    with pytest.raises(UserError, match="unknown synthetic pair 'cats'.*discs-stars"):
        syn.get_pair("cats")
    # the default pair is the animal renderer, image for image
    img, mask = syn.render_with_mask("animals", "B", 3, 48, 2)
    ref, ref_mask = animals.render_with_mask("B", 3, 48, 2)
    assert img.tobytes() == ref.tobytes() and np.array_equal(mask, ref_mask)


@pytest.mark.parametrize("name", OBJECT_PAIRS)
def test_object_pairs_are_pure_functions(name):
    import random

    a = syn.render_with_mask(name, "A", 3, 64, 11)
    np.random.seed(0)
    random.seed(0)
    before = (np.random.random(), random.random())
    np.random.seed(0)
    random.seed(0)
    b = syn.render_with_mask(name, "A", 3, 64, 11)
    assert (np.random.random(), random.random()) == before  # no global RNG touched
    assert a[0].tobytes() == b[0].tobytes() and np.array_equal(a[1], b[1])
    others = [syn.render(name, "A", 3, 64, 12), syn.render(name, "A", 4, 64, 11), syn.render(name, "B", 3, 64, 11)]
    assert all(o.tobytes() != a[0].tobytes() for o in others)
    # another pair's image of the same numbers is another image
    assert syn.render("animals", "A", 3, 64, 11).tobytes() != a[0].tobytes()
    for size in (32, 100, 200):
        img, mask = syn.render_with_mask(name, "B", 1, size, 0)
        assert img.mode == "RGB" and img.size == (size, size) and mask.dtype == bool and mask.shape == (size, size)
    with pytest.raises(ValueError):
        syn.render(name, "A", 0, 31, 0)


def _grow(mask):
    """The mask and its 4-neighbours."""
    return mask | np.roll(mask, 1, 0) | np.roll(mask, -1, 0) | np.roll(mask, 1, 1) | np.roll(mask, -1, 1)


@pytest.mark.parametrize("name", OBJECT_PAIRS)
def test_object_masks_match_the_images(name, pair_samples):
    """Inside the mask the pixels are far from the background's colour, outside (two pixels away from the edge)
    close to it; the object never reaches the outer eighth of the image, which is background only."""
    for d in syn.DOMAINS:
        for img, mask in pair_samples[name][d]:
            arr = np.asarray(img, np.float64)
            k = SIZE_SEP // 8
            frame = np.ones(mask.shape, bool)
            frame[k:-k, k:-k] = False
            assert not (mask & frame).any() and 0.02 < mask.mean() < 0.4
            dist = np.linalg.norm(arr - arr[frame].mean(0), axis=-1)
            # a star's tip thinner than a pixel is antialiased up to two pixels beyond the mask
            grown, inner = _grow(_grow(mask)), ~_grow(~mask)
            assert dist[inner].min() > 60 > 45 > dist[~grown].max()
            # the estimate from the image alone is the mask, up to its antialiased edge
            est = syn.get_pair(name).estimate_mask(img)
            assert (est != mask).mean() < 0.02


@pytest.mark.parametrize("name", OBJECT_PAIRS)
def test_object_pairs_separate_by_shape(name, pair_samples):
    """The pair's judge puts >= 95 % of fresh real samples in their own domain, from the mask and from the image
    alone; the two measures agree."""
    pair = syn.get_pair(name)
    for judge, take in ((pair.judge_mask, 1), (pair.judge_image, 0)):
        right = [judge(sample[take]) == d for d in syn.DOMAINS for sample in pair_samples[name][d]]
        assert np.mean(right) >= 0.95, (judge.__name__, np.mean(right))
    both = [(pair.mask_measure(m), pair.image_measure(im)) for d in syn.DOMAINS for im, m in pair_samples[name][d]]
    assert np.corrcoef(np.array(both).T)[0, 1] > 0.9


@pytest.mark.parametrize("name", OBJECT_PAIRS)
def test_object_pairs_colour_place_and_size_are_no_cue(name, pair_samples):
    """Colours of the whole image, of the background and of the object, the box centre and the box size: no
    single threshold on any of them tells the domains apart (the shape measure does, above)."""
    def stats(img, mask):
        arr = np.asarray(img, np.float64)
        ys, xs = np.nonzero(mask)
        whole, back, obj = arr.reshape(-1, 3).mean(0), arr[~mask].mean(0), arr[mask].mean(0)
        hsv = np.asarray(img.convert("HSV"), np.float64)[mask].mean(0)
        return [*whole, whole @ [0.299, 0.587, 0.114], *back, *obj, *hsv,
                (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2,
                np.sqrt((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))]
    a = np.array([stats(*s) for s in pair_samples[name]["A"]])
    b = np.array([stats(*s) for s in pair_samples[name]["B"]])
    for k in range(a.shape[1] - 1):
        assert _best_threshold_accuracy(a[:, k], b[:, k]) < 0.75, k
    assert _best_threshold_accuracy(a[:, -1], b[:, -1]) < 0.8  # box size: tall bottles shrink to fit a bit more


@pytest.mark.parametrize("name", OBJECT_PAIRS)
def test_pair_data_set_names_its_pair_and_gives_back_every_mask(name, tmp_path):
    out = tmp_path / "d"
    assert main(["prepare", "synthetic", "--out", str(out), "--pair", name, "--n", "2", "--n-test", "2",
                 "--size", "40", "--seed", "3"]) == 0
    meta = syn.find_meta(out / "testB")
    assert meta["pair"] == name and meta["version"] == syn.get_pair(name).version and meta["size"] == 40
    assert json.loads((out / "prepare.json").read_text())["complete"] is True
    for f in sorted(out.glob("*/*.png")):
        domain, index = syn.parse_file_name(f.name, meta)
        assert f.name[0] == domain and (index >= syn.TEST_INDEX_BASE) == (f.parent.name.startswith("test"))
        img, mask = syn.source_with_mask(meta, f.name)
        with Image.open(f) as im:
            assert im.tobytes() == img.tobytes()
        assert np.array_equal(mask, syn.render_with_mask(name, domain, index, 40, 3)[1])
    assert syn.parse_file_name("photo.png", meta) is None and syn.source_with_mask(meta, "x.png") is None


def test_a_bigger_set_extends_a_smaller_one(tmp_path, capsys, caplog):
    """The first n images of a bigger set are the smaller set: a re-run with larger counts keeps them."""
    args = ["prepare", "synthetic", "--out", str(tmp_path), "--pair", "discs-stars", "--size", "32"]
    assert main([*args, "--n", "2", "--n-test", "1"]) == 0
    small = {p.name: p.read_bytes() for p in tmp_path.glob("*/*.png")}
    assert main([*args, "--n", "3", "--n-test", "2"]) == 0
    big = {p.name: p.read_bytes() for p in tmp_path.glob("*/*.png")}
    assert len(big) == 10 and all(big[k] == v for k, v in small.items())
    assert "kept 6 existing synthetic image(s)" in caplog.text
    fresh = tmp_path / "fresh"
    syn.write_dataset(fresh, n=3, size=32, seed=0, n_test=2, pair="discs-stars", progress=False)
    assert {p.name: p.read_bytes() for p in fresh.glob("*/*.png")} == big
    assert main([*args, "--n", "2", "--n-test", "2"]) == 2  # fewer: refused
    assert "beyond the requested counts" in capsys.readouterr().err


def test_cli_lists_the_pairs(capsys):
    assert main(["prepare", "synthetic", "--list-pairs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == list(syn.PAIRS)
    for line, pair in zip(lines, syn.PAIRS.values()):
        assert pair.domain_a in line and pair.domain_b in line and pair.differs in line
    assert main(["prepare", "synthetic", "--out", "x", "--pair", "cats"]) == 2
    assert "unknown synthetic pair 'cats'" in capsys.readouterr().err
    assert main(["prepare", "synthetic"]) == 2
    assert "needs --out" in capsys.readouterr().err


def test_a_set_written_without_prepare_json_is_completed_not_rewritten(tmp_path, caplog):
    """A set from before ``prepare.json`` (``synthetic.json`` alone): the same parameters keep its images and
    complete it; other parameters are refused, naming them."""
    syn.write_dataset(tmp_path / "d", n=2, size=32, seed=4, n_test=1, progress=False)
    for name in ("prepare.json", "manifest.jsonl"):
        (tmp_path / "d" / name).unlink()
    meta = json.loads((tmp_path / "d" / "synthetic.json").read_text())
    del meta["pair"]  # as the animal-only generator wrote it
    (tmp_path / "d" / "synthetic.json").write_text(json.dumps(meta))
    before = {p: p.read_bytes() for p in (tmp_path / "d").glob("*/*.png")}
    with pytest.raises(UserError, match=r"made with other parameters \(pair animals; seed 4; size 32"):
        syn.write_dataset(tmp_path / "d", n=2, size=32, seed=5, n_test=1, progress=False)
    with pytest.raises(UserError, match="2 beyond the requested counts"):
        syn.write_dataset(tmp_path / "d", n=1, size=32, seed=4, n_test=1, progress=False)
    syn.write_dataset(tmp_path / "d", n=3, size=32, seed=4, n_test=1, progress=False)
    assert "kept 6 existing" in caplog.text
    assert all(p.read_bytes() == b for p, b in before.items()) and len(list((tmp_path / "d").glob("*/*.png"))) == 8
    assert syn.is_complete(tmp_path / "d", n=3, size=32, seed=4, n_test=1)
