"""Collapse ratio, layout measure and the domain classifier, each against what it must give on known input."""

import numpy as np
import pytest
import torch
from PIL import Image

from deepcascade.data import synthetic
from deepcascade.data.synthetic import animals
from deepcascade.evaluation import classifier as clf
from deepcascade.evaluation.diversity import collapse_ratio, mean_pairwise_distance
from deepcascade.evaluation import appearance as app
from deepcascade.evaluation.chance import partners, progress
from deepcascade.evaluation.layout import (chance_shifts, compare, generator_mask, ground_point,
                                           layout_measure, parse_name, silhouette_box)

# ---- collapse -------------------------------------------------------------------------------------------------


def test_mean_pairwise_distance_equals_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    e = rng.normal(size=(9, 40)).astype(np.float32) + 5.0  # offset: the streaming sums must not lose precision
    monkeypatch.setattr("deepcascade.evaluation.lpips_nn.CHUNK_BYTES", 4 * 40 * 2)  # chunks of 2 rows
    d = ((e[:, None].astype(np.float64) - e[None]) ** 2).sum(-1)
    want = d.sum() / (9 * 8)
    assert mean_pairwise_distance(e) == pytest.approx(want, rel=1e-10)


def test_collapse_ratio_identical_translations_is_zero():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(12, 30)).astype(np.float32)
    fake = np.repeat(rng.normal(size=(1, 30)).astype(np.float32), 10, axis=0)  # one output for every input
    c = collapse_ratio(fake, real)
    assert c["value"] == 0.0
    assert c["real_mean_distance"] > 0


def test_collapse_ratio_real_against_itself_is_one():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(40, 30)).astype(np.float32)
    assert collapse_ratio(real, real)["value"] == pytest.approx(1.0, rel=1e-12)
    # two halves of the same distribution: about 1
    assert collapse_ratio(real[:20], real[20:])["value"] == pytest.approx(1.0, abs=0.15)
    # translations that vary half as much (in distance): below 1
    assert collapse_ratio(real[:20] * np.sqrt(0.5), real[20:])["value"] == pytest.approx(0.5, abs=0.1)


def test_collapse_ratio_of_rendered_images_through_a_perceptual_embedding():
    """Real images of one domain, in two halves, through the fallback perceptual embedding: about 1; the same
    image repeated: 0."""
    from deepcascade.backbones import build_backbone
    from deepcascade.evaluation.perceptual import BackboneEmbedding

    emb = BackboneEmbedding(build_backbone("efficientnet_lite0", "imagenet"), "efficientnet_lite0")
    x = torch.stack([torch.from_numpy(np.array(animals.render("B", i, 64, 0))).permute(2, 0, 1)
                     for i in range(16)]).float() / 255
    with torch.no_grad():
        e = emb(x).numpy()
    assert collapse_ratio(e[:8], e[8:])["value"] == pytest.approx(1.0, abs=0.25)
    assert collapse_ratio(np.repeat(e[:1], 8, 0), e[8:])["value"] == 0.0


# ---- layout ---------------------------------------------------------------------------------------------------

def _masks(domain, n, size=64, seed=0):
    return [animals.render_with_mask(domain, synthetic.TEST_INDEX_BASE + i, size, seed)[1] for i in range(n)]


def test_layout_of_sources_against_themselves_is_zero():
    boxes = [silhouette_box(m) for m in _masks("A", 6) + _masks("B", 6)]
    out = compare(boxes, boxes, 64)
    assert out["centre_shift"] == 0.0
    assert out["size_ratio"] == 1.0
    assert out["centre_correlation_x"] == pytest.approx(1.0)


def test_layout_of_a_shifted_copy_equals_the_shift():
    size, (dy, dx) = 64, (3, -5)
    src, shifted = [], []
    for m in _masks("A", 8, size) + _masks("B", 8, size):
        ys, xs = np.nonzero(m)
        if ys.min() < 4 or ys.max() >= size - 4 or xs.min() < 6 or xs.max() >= size - 6:
            continue  # the shifted animal must stay in the frame
        src.append(silhouette_box(m))
        shifted.append(silhouette_box(np.roll(m, (dy, dx), axis=(0, 1))))
    assert len(src) >= 4
    out = compare(src, shifted, size)
    assert out["centre_shift"] == pytest.approx(np.hypot(dy, dx) / size, rel=1e-9)


def _textured(mask, seed):
    """A smooth background with a high-contrast texture exactly on ``mask``: what the estimator must find."""
    rng = np.random.default_rng(seed)
    h = mask.shape[0]
    yy, xx = np.mgrid[0:h, 0:h]
    bg = 120 + 40 * yy / h
    tex = np.where(((yy // 2 + xx // 2) % 2) == 0, 230.0, 30.0) + rng.normal(0, 3, mask.shape)
    lum = np.where(mask, tex, bg)
    return Image.fromarray(np.repeat(lum[..., None], 3, 2).clip(0, 255).astype(np.uint8))


def test_layout_measure_end_to_end_follows_a_shift(tmp_path):
    """Through file names, the generator's masks and the pixel estimator: translations whose textured region
    is the source's silhouette shifted by (dy, dx) give that shift, within a pixel."""
    size, (dy, dx) = 64, (0, 6)
    meta = {"generator": "deepcascade.data.synthetic", "version": animals.VERSION, "seed": 0, "size": size,
            "test_index_base": synthetic.TEST_INDEX_BASE}
    names, sources, fakes, same = [], [], [], []
    for i in range(12):
        img, m = animals.render_with_mask("A", synthetic.TEST_INDEX_BASE + i, size, 0)
        xs = np.nonzero(m)[1]
        if xs.max() >= size - dx - 2:
            continue
        names.append(f"A_test_{i:06d}.png")
        sources.append(img)
        fakes.append(_textured(np.roll(m, (dy, dx), axis=(0, 1)), i))
        same.append(_textured(m, i))
    assert len(names) >= 4
    out = layout_measure(names, lambda j: sources[j], lambda j: fakes[j], meta, size, "B")
    assert out["centre_shift"] == pytest.approx(dx / size, abs=1.0 / size)
    assert out["centre_correlation_x"] > 0.9
    assert out["images"] == len(names) and out["skipped_names"] == 0
    unshifted = layout_measure(names, lambda j: sources[j], lambda j: same[j], meta, size, "B")
    assert unshifted["centre_shift"] < 1.0 / size
    # the estimator's own error on the real sources is small (the floor reported beside the figure)
    assert out["centre_shift_floor"] < 0.06
    assert out["silhouette_target_share_sources"] == 0.0  # zebra-like sources are not giraffe-like


def test_file_names_map_to_generator_indices(tmp_path):
    counts = synthetic.write_dataset(tmp_path / "d", n=2, size=32, seed=5, n_test=2, progress=False)
    assert counts["testA"] == 2
    meta = synthetic.find_meta(tmp_path / "d" / "testA")
    assert meta["seed"] == 5 and meta["size"] == 32
    domain, index = parse_name("A_test_000001.png", meta)
    assert (domain, index) == ("A", synthetic.TEST_INDEX_BASE + 1)
    assert parse_name("B_train_000001.png", meta) == ("B", 1)
    assert parse_name("photo.jpg", meta) is None
    img = Image.open(tmp_path / "d" / "testA" / "A_test_000001.png")
    want = animals.render("A", synthetic.TEST_INDEX_BASE + 1, 32, 5)
    assert np.array_equal(np.asarray(img), np.asarray(want))  # the mapping names the very image
    assert np.array_equal(generator_mask(domain, index, meta, 32), animals.silhouette_mask("A", index, 32, 5))


def test_ground_shift_keeps_a_standing_object_that_grows_upward():
    """A giraffe on the zebra's ground line: its box grows upward, the centre rises, the ground point stays."""
    size = 64
    low = np.zeros((size, size), bool)
    low[40:50, 20:40] = True  # wide and low, standing on row 49
    tall = np.zeros((size, size), bool)
    tall[10:50, 25:35] = True  # tall and narrow, same ground line and horizontal centre
    a, b = silhouette_box(low), silhouette_box(tall)
    assert ground_point(a) == pytest.approx((49.0 - 0.09, 29.5), abs=0.2)  # 99th percentile row, centre
    out = compare([a], [b], size)
    assert out["ground_shift"] == pytest.approx(0.0, abs=0.3 / size)
    assert out["centre_shift"] > 10 / size  # the box centre rose by 15 px
    moved = np.roll(tall, (0, 6), axis=(0, 1))
    assert compare([a], [silhouette_box(moved)], size)["ground_shift"] == pytest.approx(6 / size, abs=0.3 / size)


def test_chance_shifts_average_every_random_partner():
    size = 10
    true = [(5.0, 5.0, 3.0, 3.0), (2.0, 2.0, 3.0, 3.0)]  # ground points (6, 5) and (3, 2)
    targets = [(5.0, 8.0, 3.0, 3.0), (5.0, 5.0, 3.0, 3.0)]  # ground points (6, 8) and (6, 5)
    out = chance_shifts(true, targets, [np.array([0, 1]), np.array([1])], size)
    centre = (3.0 + 0.0 + np.hypot(3, 3)) / 3 / size
    assert out["centre_shift"] == pytest.approx(centre)
    assert out["ground_shift"] == pytest.approx(centre)  # same-sized boxes: ground and centre shifts agree


def test_partners_are_seeded_distinct_draws():
    first = partners(20, 30, seed=4)
    assert all(len(p) == 8 and len(set(p.tolist())) == 8 and p.max() < 30 for p in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, partners(20, 30, seed=4)))
    assert not all(np.array_equal(a, b) for a, b in zip(first, partners(20, 30, seed=5)))
    assert [sorted(p.tolist()) for p in partners(3, 5, seed=0)] == [[0, 1, 2, 3, 4]] * 3  # all, when fewer
    assert partners(2, 0, seed=0)[0].size == 0


def test_progress_from_chance_to_floor():
    assert progress(0.2, 0.0, 0.4) == pytest.approx(0.5)
    assert progress(0.05, 0.05, 0.45) == pytest.approx(1.0) and progress(0.45, 0.05, 0.45) == 0.0
    assert progress(0.6, 0.0, 0.4) == pytest.approx(-0.5)  # worse than chance
    assert progress(0.1, 0.3, 0.3) is None and progress(0.1, None, 0.3) is None


# ---- appearance -----------------------------------------------------------------------------------------------

def _scene(size, frame, inside, mask=None, obj=None):
    """uint8 image: ``frame`` colour on the outer frame, ``inside`` elsewhere, ``obj`` on ``mask``."""
    img = np.empty((size, size, 3), np.float64)
    img[:] = inside
    img[app.frame_mask(size)] = frame
    if mask is not None:
        img[mask] = obj
    return (img * 255).round().astype(np.uint8)


def test_frame_is_the_outer_eighth():
    assert [app.frame_width(s) for s in (64, 32, 96, 16, 4)] == [8, 4, 12, 2, 1]
    m = app.frame_mask(64)
    assert m[7, 32] and not m[8, 32] and m[32, 56] and not m[32, 55] and m.sum() == 64 * 64 - 48 * 48
    img = _scene(64, (0.2, 0.4, 0.6), (1.0, 0.0, 0.0))
    assert app.frame_colour(img) == pytest.approx(np.array([51, 102, 153]) / 255)


def test_appearance_against_floor_and_chance():
    """Frame colours moved by known amounts: the error, its floor, chance level and progress are those amounts."""
    size, base = 32, np.array([0.4, 0.4, 0.4])
    src = [_scene(size, base, (0.9, 0.1, 0.1)) for _ in range(3)]
    fake = [_scene(size, base + [0.2, 0, 0], (0.1, 0.9, 0.1)) for _ in range(3)]  # object changed, frame off by .2
    rec = [_scene(size, base + [0, 0.04, 0], (0.9, 0.1, 0.1)) for _ in range(3)]
    tgt = [_scene(size, base + [0, 0, 0.4], (0.1, 0.9, 0.1)) for _ in range(5)]
    out = app.appearance_measure(3, src.__getitem__, fake.__getitem__, rec.__getitem__, 5, tgt.__getitem__)
    q = 1 / 255  # 8-bit rounding of each colour
    assert out["frame_colour_error"] == pytest.approx(0.2, abs=q)
    assert out["frame_colour_error_floor"] == pytest.approx(0.04, abs=q)
    assert out["frame_colour_error_chance"] == pytest.approx(0.4, abs=q)
    assert out["frame_colour_error_progress"] == pytest.approx((0.4 - 0.2) / (0.4 - 0.04), abs=0.01)
    assert out["background_colour_error"] is None and out["background_images"] == 0  # no masks given
    assert out["frame_width"] == 4 and out["chance_pairs"] == 5
    same = app.appearance_measure(3, src.__getitem__, src.__getitem__)
    assert same["frame_colour_error"] == 0.0 and same["frame_colour_error_floor"] is None


def test_background_ignores_a_translated_object_that_covers_part_of_it():
    """The translation's object covers a third of the source's background (a taller animal): the background's
    colour (a median) is unchanged, where its mean would not be; a changed background is measured exactly."""
    size = 64
    m = np.zeros((size, size), bool)
    m[40:52, 16:48] = True  # the source's wide object
    grown = np.zeros((size, size), bool)
    grown[8:52, 24:40] = True  # the translation's tall object, over the source's background above it
    bg, obj = (0.3, 0.5, 0.7), (0.9, 0.9, 0.1)
    src = _scene(size, bg, bg, m, obj)
    fake = _scene(size, bg, bg, grown, (0.1, 0.1, 0.1))
    region = app.background_region(m)
    assert not region[m].any() and not region[39, 30] and region[30, 5]  # the object and a margin around it
    assert 0.1 < grown[region].mean() < 0.5
    recoloured = _scene(size, (0.3, 0.6, 0.7), (0.3, 0.6, 0.7), grown, (0.1, 0.1, 0.1))
    tgt = [_scene(size, (0.3, 0.5, 0.2), (0.3, 0.5, 0.2))]
    out = app.appearance_measure(2, [src, src].__getitem__, [fake, recoloured].__getitem__, None, 1,
                                 tgt.__getitem__, lambda i: m)
    assert out["background_images"] == 2
    assert out["background_colour_error"] == pytest.approx((0.0 + 0.1) / 2, abs=1 / 255)
    assert out["background_colour_error_chance"] == pytest.approx(0.5, abs=1 / 255)


@pytest.mark.parametrize("pair", ["mugs-bottles", "discs-stars", "rings-crosses"])
def test_layout_and_background_on_a_held_out_pair(pair, tmp_path):
    """Each pair's own masks and silhouette estimate: untranslated copies sit exactly at the floor of every
    figure, and far from a random target image."""
    import shutil

    from deepcascade.evaluation.entry_points import evaluate_folders
    from deepcascade.evaluation.plan import Options

    d = tmp_path / "d"
    synthetic.write_dataset(d, n=2, size=64, seed=1, n_test=6, progress=False, pair=pair)
    fake = tmp_path / "fake"
    shutil.copytree(d / "testA", fake)
    m = evaluate_folders(str(fake), str(d / "testB"), tmp_path / "out", str(d / "testA"),
                         opts=Options(metrics=("layout", "appearance"), device="cpu", cache=False))
    lay, app_ = m["a2b"]["layout"], m["a2b"]["appearance"]
    assert lay["pair"] == pair and lay["images"] == 6
    assert lay["ground_shift"] == lay["ground_shift_floor"] and lay["centre_shift"] == lay["centre_shift_floor"]
    assert lay["ground_shift_chance"] > lay["ground_shift_floor"] and lay["ground_shift_progress"] == 1.0
    assert lay["silhouette_target_share"] == lay["silhouette_target_share_sources"] < 0.5  # still domain A
    assert app_["background_images"] == 6 and app_["background_colour_error"] == 0.0
    assert app_["background_colour_error_chance"] > 0.05  # random colours: another image's background differs


# ---- classifier -----------------------------------------------------------------------------------------------

def test_classifier_choice_is_independent_of_the_run_backbone():
    kind, why, independent = clf.choose("auto", "vgg19", alexnet_available=False)
    assert kind == "efficientnet_lite0" and independent
    assert clf.choose("auto", None, False)[0] == "efficientnet_lite0"
    assert clf.choose("auto", "efficientnet_lite0", True)[0] == "alexnet"
    kind, why, independent = clf.choose("auto", "efficientnet_lite0", False)
    assert kind == "cnn" and independent and "missing" in why
    kind, why, independent = clf.choose("efficientnet_lite0", "efficientnet_lite0", True)
    assert not independent and why.startswith("NOT independent")
    assert clf.choose("auto", "alexnet", True)[:1] == ("efficientnet_lite0",)
    assert clf.choose("alexnet", "alexnet", True)[2] is False
    # the stride-16 cut of EfficientNet-Lite0 is the same network: never judged by a probe on it
    assert clf.choose("auto", "efficientnet_lite0_s16", False)[:3:2] == ("cnn", True)
    assert clf.choose("efficientnet_lite0", "efficientnet_lite0_s16", True)[2] is False


def test_logistic_probe_separates_and_does_not_memorize():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 20))
    y = (x[:, 3] + 0.5 * x[:, 7] > 0).astype(float)
    predict = clf.fit_logistic(x[:300], y[:300])
    assert np.mean((predict(x[300:]) > 0.5) == y[300:]) > 0.9  # held out
    noise = rng.integers(0, 2, 500).astype(float)  # labels unrelated to the features
    predict = clf.fit_logistic(x[:300], noise[:300])
    assert np.mean((predict(x[300:]) > 0.5) == noise[300:]) < 0.65


def _stripes(n, vertical, seed, size=32):
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 3, size, size), np.uint8)
    for i in range(n):
        period, phase = rng.uniform(4, 8), rng.uniform(0, 8)
        coord = np.arange(size)[None, :] if vertical else np.arange(size)[:, None]
        wave = np.broadcast_to(((coord + phase) % period) < period / 2, (size, size))
        col = rng.uniform(60, 200, 3)
        img = np.where(wave[None], col[:, None, None] + 50, col[:, None, None] - 50) + rng.normal(0, 10, (3, size, size))
        out[i] = img.clip(0, 255).astype(np.uint8)
    return out


def test_cnn_from_scratch_learns_a_texture_difference():
    a, b = _stripes(24, False, 0), _stripes(24, True, 1)
    net = clf.train_cnn(a, b, "cpu", seed=0)
    ta, tb = _stripes(20, False, 2), _stripes(20, True, 3)
    with torch.no_grad():
        pa = torch.sigmoid(net(torch.from_numpy(ta).float() / 255)).numpy()
        pb = torch.sigmoid(net(torch.from_numpy(tb).float() / 255)).numpy()
    acc = (np.mean(pa <= 0.5) + np.mean(pb > 0.5)) / 2
    assert acc >= 0.9


def test_cnn_judge_is_the_same_for_the_same_data_and_seed():
    """Its dropout draws from a seeded RNG of its own: what ran before in the process does not change the judge,
    and the caller's RNG is left as it was."""
    a, b = _stripes(8, False, 0), _stripes(8, True, 1)
    first = clf.train_cnn(a, b, "cpu", seed=0).state_dict()
    torch.rand(7)  # other work consumed the global RNG in between
    state = torch.get_rng_state()
    second = clf.train_cnn(a, b, "cpu", seed=0).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = clf.train_cnn(a, b, "cpu", seed=1).state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_accuracy_counts_the_true_domain():
    assert clf.accuracy(np.array([0.9, 0.2, 0.7]), is_b=True) == pytest.approx(2 / 3)
    assert clf.accuracy(np.array([0.9, 0.2, 0.7]), is_b=False) == pytest.approx(1 / 3)
    assert clf.accuracy(np.zeros(0), True) is None
