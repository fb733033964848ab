"""``deepcascade evaluate`` on careless input: a broken first file, a tiny first file, too few images for a named
measure, an undefined collapse ratio, a corrupt cached classifier. Each ends in a result or one clear message."""

import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from deepcascade.data.synthetic import write_dataset


@pytest.fixture(scope="module")
def data(module_tmp):
    root = module_tmp("hardening") / "d"
    write_dataset(root, n=4, size=32, seed=2, n_test=3, progress=False)
    return root


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPCASCADE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _copies(data, folder, n=3):
    """The first ``n`` A test images as 'translations' (an identity translator), named as their sources."""
    folder.mkdir()
    for p in sorted((data / "testA").iterdir())[:n]:
        shutil.copy(p, folder / p.name)
    return folder


def _bomb(path):
    """A PNG whose header claims 30000 x 30000 pixels (900 M, past PIL's decompression-bomb limit)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _truncated(path, data):
    good = (data / "testA" / "A_test_000000.png").read_bytes()
    path.write_bytes(good[: len(good) // 2])


@pytest.mark.parametrize("broken", ["empty", "truncated", "bomb"])
def test_a_broken_first_translation_is_skipped_not_a_traceback(data, tmp_path, dc, broken):
    fake = _copies(data, tmp_path / "fake")
    first = fake / "0_first.png"  # sorts before the translations: the file the evaluation size came from
    {"empty": lambda: first.write_bytes(b""), "truncated": lambda: _truncated(first, data),
     "bomb": lambda: _bomb(first)}[broken]()
    out = tmp_path / "out"
    r = dc("evaluate", "--fake", fake, "--real", data / "testB", "--source", data / "testA", "--metrics", "layout",
           "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "0_first.png" in r.stderr  # named among the skipped files
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"]["image_size"] == 32  # from the first file that decodes
    assert m["a2b"]["images"]["fake"] == 3


def test_a_tiny_first_translation_does_not_set_a_tiny_evaluation_size(data, tmp_path, dc):
    fake = _copies(data, tmp_path / "fake")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(fake / "0_tiny.png")
    r = dc("evaluate", "--fake", fake, "--real", data / "testB", "--metrics", "layout", "--out", tmp_path / "out")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "0_tiny.png" in r.stderr and "8 px" in r.stderr and "--image-size" in r.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()
    r = dc("evaluate", "--fake", fake, "--real", data / "testB", "--source", data / "testA", "--metrics", "layout",
           "--image-size", "32", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr[-2000:]  # an explicit size is the way out


def test_a_named_kid_with_one_translation_fails_before_any_work(data, tmp_path, dc):
    fake = _copies(data, tmp_path / "fake", n=1)
    out = tmp_path / "out"
    r = dc("evaluate", "--fake", fake, "--real", data / "testB", "--metrics", "kid", "--out", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--metrics kid" in r.stderr and "at least 2 images" in r.stderr and "got 1 translations" in r.stderr
    assert not (out / "cache").exists() and not (out / "metrics.json").exists()  # nothing extracted, no report


def test_an_undefined_collapse_ratio_says_why(data, tmp_path, dc):
    fake = _copies(data, tmp_path / "fake", n=1)
    out = tmp_path / "out"
    r = dc("evaluate", "--fake", fake, "--real", data / "testB", "--source", data / "testA", "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["a2b"]["collapse_ratio"] is None
    why = [nc for nc in m["not_computed"] if nc["metric"] == "collapse"]
    assert len(why) == 1 and why[0]["direction"] == "a2b" and "at least 2 images" in why[0]["reason"]
    # real target images that do not differ at all: computed, undefined, and said so
    same = tmp_path / "same"
    same.mkdir()
    for i in range(3):
        shutil.copy(data / "testB" / "B_test_000000.png", same / f"B_{i}.png")
    r = dc("evaluate", "--fake", _copies(data, tmp_path / "fake3"), "--real", same, "--metrics", "collapse",
           "--out", tmp_path / "out2")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "out2" / "metrics.json").read_text())
    assert m["a2b"]["collapse_ratio"] is None and m["a2b"]["collapse"]["real_mean_distance"] == 0.0
    assert [nc["metric"] for nc in m["not_computed"]] == ["collapse"]
    assert "do not differ" in m["not_computed"][0]["reason"]


def test_a_corrupt_cached_classifier_is_trained_again(data, tmp_path):
    from deepcascade.evaluation.classifier import DomainClassifier
    from deepcascade.evaluation.images import ImageSet

    a = ImageSet.from_folder(data / "trainA", 32, "A")
    b = ImageSet.from_folder(data / "trainB", 32, "B")
    cache = tmp_path / "cache"
    first = DomainClassifier("cnn", "cpu", 4, cache).fit(a, b)
    (saved,) = cache.glob("cnn-*.pt")
    want = first.prob_b(b)
    for damage in (b"", b"not a checkpoint", saved.read_bytes()[:100]):
        saved.write_bytes(damage)
        again = DomainClassifier("cnn", "cpu", 4, cache).fit(a, b)
        np.testing.assert_array_equal(again.prob_b(b), want)  # the same seed and data: the same judge
        assert saved.stat().st_size > 1000  # and the cache holds a readable model again
    assert DomainClassifier("cnn", "cpu", 4, cache).fit(a, b).prob_b(b).tolist() == want.tolist()
