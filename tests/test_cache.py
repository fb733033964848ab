"""Feature cache (features/cache.py), the training batch sources (features/domain_features.py) and the
per-run set-up (stages/run_features.py) on tiny images."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from deepcascade.backbones import build_backbone
from deepcascade.config import build_config
from deepcascade.data.images import load_image
from deepcascade.data import transforms
from deepcascade.errors import UserError
from deepcascade.features.domain_features import DomainFeatures
from deepcascade.features.cache import FeatureCache, crop_offsets
from deepcascade.features.extract import FeatureSpec, crop_consistency, extract
from deepcascade.features.normalization import Normalizer, RunningStats
from deepcascade.stages.run_features import prepare_domains
from deepcascade.features.squares import load_square, mirror_window

L, S = 48, 32  # load_size, image_size: offsets 0 or 16 on the 16-px grid
LEVELS = [5, 4, 3]


def _write_images(folder, n, seed=0, sizes=((60, 48), (48, 70), (52, 52), (80, 56), (48, 48), (66, 49))):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        arr = np.asarray(coarse).astype(np.int16) + rng.integers(-20, 21, (h, w, 3))
        p = folder / f"img{i:02d}.png"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("vgg19", "random", seed=0)


@pytest.fixture()
def files(tmp_path):
    return _write_images(tmp_path / "imgs", 5)


def _build(directory, backbone, files, **kw):
    kw.setdefault("batch_size", 2)
    spec = FeatureSpec(backbone, kw.pop("load_size", L), S, "cpu", kw.pop("precision", "fp32"),
                       crops=kw.pop("crops", 4))
    return FeatureCache.build_or_open(directory, spec, files, kw.pop("levels", LEVELS), progress=False, **kw)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_cache_holds_the_exact_features_of_each_crop(tmp_path, backbone, files):
    cache = _build(tmp_path / "cache", backbone, files, crops=3)
    assert cache.rebuilt and len(cache) == 5 and cache.levels == sorted(LEVELS) and cache.crops == 3
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["complete"] is True and meta["n_images"] == 5 and meta["load_size"] == L and meta["crops"] == 3
    assert np.load(tmp_path / "cache" / "level5.npy", mmap_mode="r").dtype == np.float16
    offs = cache.offsets
    assert offs.shape == (5, 3, 2) and (offs[:, 0] == (L - S) // 2).all() and 0 <= offs.min() <= offs.max() <= L - S
    assert len({tuple(o) for o in offs[:, 1:].reshape(-1, 2)}) > 2  # random crops, not all on one grid point
    cases = [(1, False, 0), (3, True, 1), (2, True, 2), (4, False, 2)]
    idx = [i for i, _, _ in cases]
    flips = [f for _, f, _ in cases]
    chosen = [tuple(offs[i, k]) for i, _, k in cases]
    out = cache.read(idx, flips, chosen)
    for j, (i, flip, k) in enumerate(cases):
        oy, ox = chosen[j]
        square = transforms.center_square(load_image(files[i], max_side=L), L)  # the documented geometry
        mirrored = square.flip(-1) if flip else square
        crop = mirrored[:, oy:oy + S, ox:ox + S]
        torch.testing.assert_close(out["image"][j], crop, rtol=0, atol=1e-6)
        feats = extract(backbone, crop[None], LEVELS)  # the features of the crop itself
        for l in LEVELS:
            assert out[l].dtype == torch.float32 and out[l].shape[1:] == feats[l].shape[1:]
            assert _rel(out[l][j], feats[l][0]) < 2e-3, (i, flip, l)  # float16 storage only
    # the mirrored entry is the mirror image of the original's window at (oy, L - S - ox)
    oy, ox = offs[3, 1]
    a = cache.read([3], [True], [(oy, ox)])["image"][0]
    b = mirror_window(np.asarray(cache.squares([3])[0]), int(oy), int(L - S - ox), S, False)
    torch.testing.assert_close(a, torch.from_numpy(b[..., ::-1].copy()).float() / 255)
    with pytest.raises(ValueError, match="not a cached crop"):
        cache.read([0], [False], [(1, 2) if tuple(offs[0, 1]) != (1, 2) else (2, 1)])


def test_unchanged_config_is_reused_without_recomputation(tmp_path, backbone, files, monkeypatch):
    d = tmp_path / "cache"
    _build(d, backbone, files)
    stamp = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    calls = []
    monkeypatch.setattr(backbone, "forward", lambda *a, **k: calls.append(1) or pytest.fail("recomputed"))
    cache = _build(d, backbone, files, levels=[5, 4])  # a subset of the cached levels is served too
    assert not cache.rebuilt and calls == []
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == stamp


@pytest.mark.parametrize("change", ["load_size", "crops", "relu", "seed", "files", "levels"])
def test_changed_config_invalidates(tmp_path, backbone, files, caplog, change):
    d = tmp_path / "cache"
    _build(d, backbone, files)
    kw, bb, fl = {}, backbone, files
    if change == "load_size":
        kw["load_size"] = 64
    elif change == "crops":
        kw["crops"] = 2
    elif change == "relu":
        bb = build_backbone("vgg19", "random", relu=True, seed=0)
    elif change == "seed":
        bb = build_backbone("vgg19", "random", seed=1)
    elif change == "files":
        fl = files[:4]
    elif change == "levels":
        kw["levels"] = [5, 2]
    with caplog.at_level(logging.INFO, logger="deepcascade"):
        cache = _build(d, bb, fl, **kw)
    assert cache.rebuilt
    msgs = " ".join(r.getMessage() for r in caplog.records if "building" in r.getMessage())
    expected = {"load_size": "load_size", "crops": "crops", "relu": "relu", "seed": "weights", "files": "files_hash",
                "levels": "not cached"}[change]
    assert expected in msgs, msgs
    assert len(cache) == len(fl)


def test_touched_file_invalidates(tmp_path, backbone, files, caplog):
    d = tmp_path / "cache"
    _build(d, backbone, files)
    _write_images(tmp_path / "imgs", 5, seed=1)  # same names, new contents and mtimes
    with caplog.at_level(logging.INFO, logger="deepcascade"):
        assert _build(d, backbone, files).rebuilt
    assert "files_hash" in caplog.text


def test_interrupted_build_is_rebuilt(tmp_path, backbone, files, monkeypatch, caplog):
    d = tmp_path / "cache"
    real = backbone.forward
    calls = []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    monkeypatch.setattr(backbone, "forward", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _build(d, backbone, files)
    monkeypatch.setattr(backbone, "forward", real)
    assert json.loads((d / "meta.json").read_text())["complete"] is False
    with caplog.at_level(logging.INFO, logger="deepcascade"):
        cache = _build(d, backbone, files)
    assert cache.rebuilt and "did not complete" in caplog.text
    # a complete flag flipped by hand (or a meta.json that vanished) also forces a rebuild
    meta = json.loads((d / "meta.json").read_text())
    (d / "meta.json").write_text(json.dumps({**meta, "complete": False}))
    assert _build(d, backbone, files).rebuilt
    (d / "meta.json").unlink()
    assert _build(d, backbone, files).rebuilt
    assert not _build(d, backbone, files).rebuilt


def _direct_stats(backbone, files, levels, crops=4):
    """Statistics over every cached crop of every file, both mirrors, computed from the files directly."""
    stats = {l: RunningStats(backbone.channels[l]) for l in levels}
    offsets = crop_offsets(len(files), L, S, crops)
    for f, offs in zip(files, offsets):
        x = torch.from_numpy(load_square(f, L)).float()[None] / 255.0
        for oy, ox in offs:
            c = x[..., oy:oy + S, ox:ox + S]
            m = x.flip(-1)[..., oy:oy + S, ox:ox + S]
            feats = extract(backbone, torch.cat([c, m]), levels)
            for l in levels:
                stats[l].update(feats[l])
    return stats


def test_stats_from_cache_pass_equal_direct_stats(tmp_path, backbone, files):
    levels = [5, 4, 3, 2]  # level 2 is not cached: computed for the statistics, not stored
    stats = {l: RunningStats(backbone.channels[l]) for l in levels}
    cache = _build(tmp_path / "cache", backbone, files, stats=stats)
    assert cache.rebuilt and not (tmp_path / "cache" / "level2.npy").exists()
    ref = _direct_stats(backbone, files, levels)
    reused = {l: RunningStats(backbone.channels[l]) for l in levels}
    assert not _build(tmp_path / "cache", backbone, files, stats=reused).rebuilt  # from the stored squares
    for got in (stats, reused):
        for l in levels:
            assert got[l].count == ref[l].count == 5 * 4 * 2 * (S // backbone.strides[l]) ** 2
            torch.testing.assert_close(got[l].mean, ref[l].mean, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got[l].std, ref[l].std, rtol=1e-5, atol=1e-5)


def test_progress_false_prints_nothing(tmp_path, backbone, files, monkeypatch, capsys):
    """progress=False silences the build's and the statistics pass's status lines; progress=True prints them."""
    monkeypatch.setenv("DEEPCASCADE_PROGRESS_EVERY", "1e-9")  # a status line on every update when not a terminal
    stats = lambda: {5: RunningStats(backbone.channels[5])}
    _build(tmp_path / "quiet", backbone, files, stats=stats())
    _build(tmp_path / "quiet", backbone, files, stats=stats())  # reuse: the statistics pass
    assert capsys.readouterr().err == ""
    spec = FeatureSpec(backbone, L, S, "cpu", "fp32", crops=4)
    FeatureCache.build_or_open(tmp_path / "loud", spec, files, LEVELS, batch_size=2, progress=True)
    FeatureCache.build_or_open(tmp_path / "loud", spec, files, LEVELS, batch_size=2, progress=True, stats=stats())
    err = capsys.readouterr().err
    assert "caching loud: 5/5 img" in err and "statistics loud:" in err


def test_crop_consistency(backbone):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=(64, 64), mode="bicubic")
    x = x.clamp(0, 1)
    whole = crop_consistency(backbone, x, image_size=64)  # the window is the whole image: identical
    assert all(v == 0.0 for v in whole.values())
    offsets = [(0, 16), (16, 0)]
    err = crop_consistency(backbone, x, image_size=48, offsets=offsets)
    inner = crop_consistency(backbone, x, image_size=48, offsets=offsets, margin=1)
    assert inner[1] < 1e-6  # conv_1_1 sees one pixel of padding only
    assert 0 < err[5] < 1 and all(inner[l] <= err[l] + 1e-9 for l in err)
    assert err[1] < err[3] < err[5]  # deeper levels see the border from further away


# ------------------------------------------------------------------------------------------ DomainFeatures
def test_domain_features_sampling(tmp_path, backbone, files):
    cache = _build(tmp_path / "cache", backbone, files)
    norm = Normalizer.from_stats(_direct_stats(backbone, files, [5, 4, 3, 2]))
    levels = [5, 4, 3, 2]
    src = DomainFeatures(files, FeatureSpec(backbone, L, S), norm, levels, cache)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    a = src.sample(4, g)
    g.set_state(state)
    b = src.sample(4, g)
    assert set(a) == {2, 3, 4, 5, "image"}
    for k in a:
        torch.testing.assert_close(a[k], b[k])  # the generator alone decides the batch
    for l in levels:
        assert a[l].shape == (4, backbone.channels[l], S // backbone.strides[l], S // backbone.strides[l])
        assert a[l].abs().max() <= 1.0
    g.set_state(state)
    idx, flips, offs = src.draw(4, g)
    cache.crop_index(idx, offs)  # every drawn offset is one of the image's cached crops
    # level 2 (not cached) is computed from the crop; cached levels are the cache's exact crop features
    raw = src.batch(idx, flips, offs, normalized=False)
    torch.testing.assert_close(raw[2], extract(backbone, raw["image"], [2])[2])
    torch.testing.assert_close(raw[5], cache.read(idx, flips, offs, [5], image=False)[5])
    torch.testing.assert_close(raw[5], extract(backbone, raw["image"], [5])[5], rtol=2e-3, atol=2e-3)
    # without a cache the same (file, flip, offset) gives the same crop and the same features
    plain = DomainFeatures(files, FeatureSpec(backbone, L, S), norm, levels, None)
    same = plain.batch(idx, flips, offs, normalized=False)
    torch.testing.assert_close(same["image"], raw["image"])
    torch.testing.assert_close(same[5], raw[5], rtol=2e-3, atol=2e-3)
    g2 = torch.Generator().manual_seed(1)
    assert len({tuple(o) for o in plain.draw(64, g2)[2]}) > 5  # any offset without a cache


def test_domain_features_sharding_and_fixed(tmp_path, backbone, files):
    shards = [DomainFeatures(files, FeatureSpec(backbone, L, S), None, [5], None, rank=r, world_size=2) for r in (0, 1)]
    g = torch.Generator().manual_seed(0)
    assert set(shards[0].draw(50, g)[0]) <= {0, 2, 4} and set(shards[1].draw(50, g)[0]) <= {1, 3}
    fx = shards[1].fixed(3)
    ref = torch.stack([transforms.center_square(load_image(f), S) for f in files[:3]])
    torch.testing.assert_close(fx["image"], ref)
    torch.testing.assert_close(fx[5], extract(backbone, ref, [5])[5])
    assert len(shards[0]) == 5
    with pytest.raises(UserError):
        DomainFeatures(files[:1], FeatureSpec(backbone, L, S), None, [5], None, rank=1, world_size=2)


def _cfg(tmp_path, **extra):
    sets = [f"data.domain_a={tmp_path / 'A'}", f"data.domain_b={tmp_path / 'B'}", f"data.load_size={L}",
            f"data.image_size={S}", "backbone.weights=random", "cache.levels=[5,4]", "invert.levels=[5,4,3]",
            "data.workers=1"] + [f"{k}={v}" for k, v in extra.items()]
    return build_config(overrides=sets)


def test_prepare_domains(tmp_path, backbone, caplog):
    fa = _write_images(tmp_path / "A", 2, seed=1)
    fb = _write_images(tmp_path / "B", 3, seed=2)
    (tmp_path / "B" / "broken.png").write_bytes(b"\x89PNG not really")
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="deepcascade"):
        norm, a, b = prepare_domains(_cfg(tmp_path), run, backbone, "cpu", levels=[5, 4, 3])
    assert "broken.png" in caplog.text and "clamped" in caplog.text
    assert len(a) == 2 and len(b) == 3 and a.cached_levels == [4, 5] and a.computed_levels == [3]
    assert a.cache.directory.parent == run / "cache" and a.cache.directory.name.startswith("A-")
    assert (a.cache.directory / "meta.json").is_file() and (run / "normalization.safetensors").is_file()
    ref = _direct_stats(backbone, fa, [5, 4, 3])  # statistics over both domains' crops, both mirrors
    for l, st in _direct_stats(backbone, fb, [5, 4, 3]).items():
        ref[l].merge(st)
    for l in (5, 4, 3):
        torch.testing.assert_close(getattr(norm, f"mean_{l}"), ref[l].mean.float(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(getattr(norm, f"std_{l}"), ref[l].std.float(), rtol=1e-5, atol=1e-5)
    batch = a.sample(2, torch.Generator().manual_seed(0))
    assert set(batch) == {3, 4, 5, "image"}
    # second call: statistics and caches reused
    stamp = (run / "normalization.safetensors").stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deepcascade"):
        norm2, _, _ = prepare_domains(_cfg(tmp_path), run, backbone, "cpu", levels=[5, 4, 3])
    assert (run / "normalization.safetensors").stat().st_mtime_ns == stamp
    assert "reusing" in caplog.text and "building" not in caplog.text
    torch.testing.assert_close(norm2.std_3, norm.std_3)
    # a shared cache folder that is rebuilt (new load size) recomputes the statistics too
    norm3, a3, b3 = prepare_domains(_cfg(tmp_path, **{"data.load_size": 64}), run, backbone, "cpu", levels=[5, 4, 3])
    assert a3.cache.rebuilt and (run / "normalization.safetensors").stat().st_mtime_ns != stamp
    # the run's own cache folder keeps the caches of its current settings only
    assert sorted(p.name for p in (run / "cache").iterdir()) == sorted([a3.cache.directory.name,
                                                                       b3.cache.directory.name])
    # no cache: statistics from the files, batches computed on the fly
    norm4, a4, _ = prepare_domains(_cfg(tmp_path, **{"cache.enabled": "false"}), tmp_path / "run2", backbone, "cpu",
                                   levels=[5, 4, 3])
    assert a4.cache is None
    torch.testing.assert_close(norm4.std_5, norm.std_5, rtol=1e-5, atol=1e-5)


def test_a_shared_cache_dir_keeps_one_cache_per_data_set(tmp_path, backbone, caplog):
    """Two runs on different data with one cache.dir: each has its own folders, and each finds its cache again
    after the other ran (the folders used to be named by the domain letter only, so each run rebuilt the other's
    cache, and two at once read each other's half-written arrays)."""
    shared = tmp_path / "shared"
    cfgs = []
    for name, n in (("one", 2), ("two", 3)):
        _write_images(tmp_path / name / "A", n, seed=n)
        _write_images(tmp_path / name / "B", n, seed=n + 10)
        cfgs.append(build_config(overrides=[f"data.domain_a={tmp_path / name / 'A'}",
                                            f"data.domain_b={tmp_path / name / 'B'}", f"data.load_size={L}",
                                            f"data.image_size={S}", "backbone.weights=random", "cache.levels=[5]",
                                            f"cache.dir={shared}", "data.workers=1"]))
    first = [prepare_domains(c, tmp_path / f"run{i}", backbone, "cpu", levels=[5], progress=False)[1]
             for i, c in enumerate(cfgs)]
    assert [len(a) for a in first] == [2, 3] and all(a.cache.rebuilt for a in first)
    assert first[0].cache.directory != first[1].cache.directory
    assert len(list(shared.glob("A-*"))) == 2 and len(list(shared.glob("B-*"))) == 2  # a shared folder: none pruned
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deepcascade"):
        again = [prepare_domains(c, tmp_path / f"run{i}", backbone, "cpu", levels=[5], progress=False)[1]
                 for i, c in enumerate(cfgs)]
    assert not any(a.cache.rebuilt for a in again) and "building" not in caplog.text
    for a in again:
        meta = json.loads((a.cache.directory / "meta.json").read_text())
        assert meta["n_images"] == len(a) == np.load(a.cache.directory / "images.npy", mmap_mode="r").shape[0]


def test_a_cache_being_built_by_another_process_is_waited_for(tmp_path, backbone, files, monkeypatch):
    """While another process holds a cache folder's lock, build_or_open waits (instead of writing the same files
    or failing) and then uses what is there."""
    from deepcascade.features import cache as cache_module
    from deepcascade.fileio import folder_lock

    spec = FeatureSpec(backbone, L, S, "cpu", "fp32", crops=2)
    folder = FeatureCache.folder(tmp_path / "shared", "A", spec, files, [5])
    assert folder.parent == tmp_path / "shared" and folder.name.startswith("A-")
    held = folder_lock(folder, "feature cache")
    held.__enter__()
    waits = []

    def pause(seconds):  # the other process finishes while this one waits
        waits.append(seconds)
        held.__exit__(None, None, None)

    monkeypatch.setattr(cache_module, "_pause", pause)
    cache = FeatureCache.build_or_open(folder, spec, files, [5], batch_size=2, progress=False)
    assert len(waits) == 1 and cache.rebuilt and len(cache) == len(files)
    assert not (folder / ".lock").exists()  # released


def test_prepare_domains_errors(tmp_path, backbone):
    _write_images(tmp_path / "A", 2)
    with pytest.raises(UserError, match="data.domain_b"):
        prepare_domains(_cfg(tmp_path), tmp_path / "run", backbone, "cpu")
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "x.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="data.domain_b.*no usable image"):
        prepare_domains(_cfg(tmp_path), tmp_path / "run", backbone, "cpu")


def test_an_interrupted_prepare_output_is_not_trained_on(tmp_path, backbone):
    _write_images(tmp_path / "A", 2, seed=1)
    _write_images(tmp_path / "B", 2, seed=2)
    (tmp_path / "prepare.json").write_text(json.dumps({"complete": False}))  # `prepare` writes it like this
    with pytest.raises(UserError, match="not completely prepared"):
        prepare_domains(_cfg(tmp_path), tmp_path / "run", backbone, "cpu")
    (tmp_path / "prepare.json").write_text(json.dumps({"complete": True}))
    prepare_domains(_cfg(tmp_path), tmp_path / "run", backbone, "cpu")
