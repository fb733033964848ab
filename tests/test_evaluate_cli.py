"""``deepcascade evaluate`` end to end on tiny synthetic folders: missing weights, the report, the page."""

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock
from urllib.parse import unquote

import pytest
import torch
from PIL import Image

from deepcascade.data.synthetic import write_dataset

INCEPTION = "weights-inception-2015-12-05-6726825d.pth"
ALEXNET = "alexnet-owt-7be5be79.pth"


@pytest.fixture(scope="module")
def data(module_tmp):
    """Synthetic data (8 training, 5 test images per domain, 64 px) and 'translations' that are copies of the
    A test images under CycleGAN's output names (an identity translator)."""
    root = module_tmp("evaldata")
    write_dataset(root / "d", n=8, size=64, seed=3, n_test=5, progress=False)
    fake = root / "fake"
    fake.mkdir()
    for p in sorted((root / "d" / "testA").iterdir()):
        shutil.copy(p, fake / f"{p.stem}_fake_B.png")
    torch.manual_seed(0)
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    sd = {}
    for s, i in {1: 0, 2: 3, 3: 6, 4: 8, 5: 10}.items():
        conv = getattr(ref.net, f"slice{s}")._modules[str(i)]
        sd[f"features.{i}.weight"], sd[f"features.{i}.bias"] = conv.weight.detach(), conv.bias.detach()
    torch.save(sd, root / ALEXNET)  # a random AlexNet in torchvision's format (the real one cannot be had)
    return root


def _env(tmp_path):
    return {**os.environ, "DEEPCASCADE_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")}


def _cli(args, tmp_path, env=None):
    return subprocess.run([sys.executable, "-m", "deepcascade", "evaluate", *args], capture_output=True, text=True,
                          env=env or _env(tmp_path), timeout=900)


def _folder_args(data, out):
    d = data / "d"
    return ["--fake", str(data / "fake"), "--real", str(d / "testB"), "--source", str(d / "testA"),
            "--train-a", str(d / "trainA"), "--train-b", str(d / "trainB"), "--out", str(out)]


def _main(args, capsys):
    from deepcascade.cli import main

    code = main(["evaluate", *args])
    return code, capsys.readouterr()


def test_missing_weights_asked_for_is_exit_2(data, tmp_path, monkeypatch, capsys):
    r = _cli(_folder_args(data, tmp_path / "out") + ["--metrics", "kid"], tmp_path)  # a real process: no traceback
    assert r.returncode == 2, r.stderr[-2000:]
    assert INCEPTION in r.stderr
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in r.stderr  # the folder to put it in
    assert "--inception-weights" in r.stderr
    assert "Traceback" not in r.stderr
    monkeypatch.setenv("DEEPCASCADE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, cap = _main(_folder_args(data, tmp_path / "out") + ["--metrics", "nn,collapse"], capsys)
    assert code == 2 and ALEXNET in cap.err and "--alexnet-weights" in cap.err
    code, cap = _main(_folder_args(data, tmp_path / "out") + ["--metrics", "kid,bogus"], capsys)
    assert code == 2 and "bogus" in cap.err
    assert not (tmp_path / "out" / "metrics.json").exists()  # refused before any work


def test_report_lists_missing_metrics_and_computes_the_rest(data, tmp_path):
    out = tmp_path / "out"
    r = _cli(_folder_args(data, out) + ["--alexnet-weights", str(data / ALEXNET)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["b2a"] is None  # folders: one direction
    a2b = m["a2b"]
    missing = {nc["metric"]: nc for nc in m["not_computed"]}
    # no run, so no reconstruction: the appearance figures have no floor (and say why)
    assert set(missing) == {"kid", "fid", "appearance.frame_colour_error_floor"}
    assert "--run" in missing["appearance.frame_colour_error_floor"]["reason"]
    assert missing["kid"]["missing_file"] == INCEPTION
    assert missing["kid"]["folder"] == str(tmp_path / "torch" / "hub" / "checkpoints")
    assert a2b["kid"] is None and a2b["fid"] is None
    # the identity 'translator': its outputs are A images, so they are not B to the classifier nor by silhouette
    assert a2b["real_accuracy"] >= 0.9 and a2b["classifier"]["trustworthy"]
    assert a2b["target_share"] == 0.0
    assert a2b["silhouette_target_share"] == 0.0
    assert m["protocol"]["classifier"]["kind"] == "efficientnet_lite0"  # unknown method: the packaged probe
    # layout: a translation identical to its source shifts the silhouette by the estimator's error only
    lay = a2b["layout"]
    assert a2b["centre_shift"] == pytest.approx(lay["centre_shift_floor"])
    assert lay["ground_shift"] == pytest.approx(lay["ground_shift_floor"])
    assert a2b["centre_shift"] < 0.06
    # ... far from a random B image's place: the translations are all the way from chance to the floor
    for k in ("centre_shift", "ground_shift"):
        assert lay[f"{k}_chance"] > 2 * lay[k]
        assert lay[f"{k}_progress"] == pytest.approx(1.0)
    assert lay["chance_pairs"] == 5  # every real B image (fewer than CHANCE_PAIRS)
    assert lay["pair"] == "animals" and lay["aspect_threshold"] == 1.0  # the judge: box height / width
    # appearance: copies keep every colour exactly; random B images do not
    app = a2b["appearance"]
    assert app["frame_colour_error"] == 0.0 and app["background_colour_error"] == 0.0
    assert app["frame_colour_error_chance"] > 0.02 and app["background_colour_error_chance"] > 0.02
    assert app["frame_colour_error_floor"] is None and app["frame_colour_error_progress"] is None
    assert app["frame_width"] == 8 and app["images"] == 5 and app["background_images"] == 5
    assert a2b["collapse_ratio"] > 0
    nn = a2b["nearest_neighbours"]
    assert [n["translation"] for n in nn] == [f"A_test_{i:06d}_fake_B.png" for i in range(5)]
    assert [n["source"] for n in nn] == [f"A_test_{i:06d}.png" for i in range(5)]  # paired by name
    for n in nn:
        d = [x["distance"] for x in n["neighbours"]]
        assert len(d) == 3 and d == sorted(d) and all(x["file"].startswith("B_train_") for x in n["neighbours"])
    assert m["protocol"]["perceptual_distance"]["alexnet_weights_sha256"]
    assert m["protocol"]["image_size"] == 64
    # printed figures and the page
    assert "target_share=0%" in r.stdout and "collapse_ratio=" in r.stdout and "not computed: kid" in r.stdout
    assert "frame_colour_error=0 (floor not computed, chance " in r.stdout
    page = (out / "index.html").read_text()
    assert INCEPTION in page and "NN1" in page
    assert "From chance to the floor" in page and "ground shift" in page and "frame colour error" in page
    refs = [unquote(h) for h in re.findall(r"src='([^']+)'", page)]
    assert len(refs) == 5
    for ref in refs:
        assert Image.open(out / ref).size == (5 * 64 + 4 * 2, 64)  # source | translation | NN1 | NN2 | NN3


def _random_inception_file(path):
    """torch-fidelity's Inception-v3 with random weights, saved as the file it loads (tests only)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        torch.manual_seed(0)
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)


@pytest.mark.slow
def test_kid_fid_with_weights_from_the_hub_cache(data, tmp_path, monkeypatch, capsys):
    """The real path: Inception resolved from the torch hub cache, torch-fidelity's extractor, the protocol."""
    _random_inception_file(tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION)
    monkeypatch.setenv("DEEPCASCADE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = tmp_path / "out"
    code, cap = _main(_folder_args(data, out) + ["--metrics", "kid,fid", "--fid-bootstrap", "2"], capsys)
    assert code == 0, cap.err[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    kid, fid = m["a2b"]["kid"], m["a2b"]["fid"]
    assert kid["n_fake"] == 5 and kid["n_real"] == 5 and kid["subset_size"] == 5 and kid["subsets"] == 100
    assert kid["scale"] == "raw (not x100)" and fid["value"] > 0 and fid["std"] is not None
    p = m["protocol"]["inception"]
    assert p["extractor"] == "inception-v3-compat" and len(p["weights_sha256"]) == 64
    assert p["reference_weights"] is False  # random weights are not the TTUR-exact file
    assert m["protocol"]["libraries"]["torch-fidelity"]
    assert m["not_computed"] == [] and m["a2b"]["target_share"] is None  # only what was asked
    assert "kid=" in cap.out and "fid=" in cap.out


def test_bad_invocations_are_exit_2(data, tmp_path, capsys):
    code, cap = _main(["--fake", str(data / "fake")], capsys)
    assert code == 2 and "--real" in cap.err
    code, cap = _main(["--run", str(tmp_path / "nope")], capsys)
    assert code == 2 and "nope" in cap.err
    run = tmp_path / "notarun"
    run.mkdir()
    code, cap = _main(["--run", str(run)], capsys)
    assert code == 2 and "config.yaml" in cap.err
    code, cap = _main(["--run", str(run), "--fake", str(data / "fake")], capsys)
    assert code == 2 and "either" in cap.err


def test_evaluate_arguments_do_not_import_torch():
    code = ("import sys, argparse, deepcascade.commands.evaluate as e; e.add_arguments(argparse.ArgumentParser()); "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.stdout.strip() == "False", r.stderr
