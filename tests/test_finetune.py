"""``deepcascade finetune`` (supplementary section 1.3, docs/method.md section 1): VGG-19 fine-tuned as a
classifier of the two domains writes a torchvision-layout weights file that ``backbone.weights`` loads, changes
only conv_5_1..conv_5_4 and the fully connected layers, learns a separable toy set, and records its lineage."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import VGG, vgg19
from torchvision.models.vgg import cfgs, make_layers

from deepcascade.backbones import backbone_from_config
from deepcascade.backbones.vgg19 import VGG19Classifier
from deepcascade.cli import main
from deepcascade.config import build_config

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = 256  # fc6/fc7 width of the toy base (4096 in torchvision's file; read from the file either way)
TRAINED = ("features.28.", "features.30.", "features.32.", "features.34.", "classifier.")  # conv_5_1..5_4, FCs
EPOCHS, BATCH, N_TRAIN, N_TEST = 6, 8, 8, 4


def _toy_domains(root: Path) -> Path:
    """Noise images, A red-dominant, B blue-dominant (48 px): separable by colour, in CycleGAN's layout."""
    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for domain, channel in (("A", 0), ("B", 2)):
            folder = root / f"{split}{domain}"
            folder.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 120, (48, 48, 3)).astype(np.uint8)
                a[..., channel] += 120
                Image.fromarray(a).save(folder / f"{i}.png")
    return root


def _toy_base(path: Path) -> Path:
    """A VGG-19 in torchvision's key layout with random weights. The convs are identity (dirac) plus noise:
    the deep features of a VGG-19 with random (Kaiming) convs are nearly constant at 32 px (std 0.02, class
    difference 0.006 on this toy set), where a pretrained network's carry the image; these carry its colours
    to conv_5 and the classifier. FCs: PyTorch's default initialisation."""
    torch.manual_seed(0)
    net = VGG19Classifier((HIDDEN, HIDDEN), 1000)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.dirac_(m.weight)
            m.weight.data += 0.01 * torch.randn_like(m.weight)
        elif isinstance(m, nn.Linear):
            m.reset_parameters()
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def finetuned(module_tmp, tiny_config):
    root = module_tmp("finetune")
    data = _toy_domains(root / "data")
    base = _toy_base(root / "vgg19-base.pth")
    cfg = tiny_config(root / "cfg.yaml", data, name="ft", backbone={"name": "vgg19", "weights": str(base)},
                      data={"image_size": 32, "load_size": 48},
                      engine={"checkpoint_every": 1000, "log_every": 2, "sample_every": 2 * N_TRAIN // BATCH},
                      finetune={"epochs": EPOCHS, "batch_size": BATCH})
    run = root / "run"
    r = subprocess.run([sys.executable, "-m", "deepcascade", "finetune", str(cfg), "--run-dir", str(run)],
                       capture_output=True, text=True, cwd=ROOT, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, cfg, base, run, r


def test_weights_change_only_conv5_and_the_classifier_and_load_as_backbone_weights(finetuned):
    root, cfg, base_file, run, _ = finetuned
    base = torch.load(base_file, weights_only=True)
    out = torch.load(run / "vgg19-finetuned.pth", weights_only=True)
    assert set(out) == set(base)
    assert out["classifier.6.weight"].shape == (2, HIDDEN) and out["classifier.6.bias"].shape == (2,)
    for k, v in base.items():
        if k.startswith(TRAINED):
            assert v.shape != out[k].shape or not torch.equal(v, out[k]), f"{k} was not trained"
        else:
            assert torch.equal(v, out[k]), f"{k} changed but is frozen"
    # the file is what backbone.weights takes; level 5 (conv_5_1) is the fine-tuned layer
    def backbone(weights):
        return backbone_from_config(build_config(extra={"backbone": {"name": "vgg19", "weights": str(weights)},
                                                        "data": {"image_size": 32, "load_size": 32}}))

    bb, ref = backbone(run / "vgg19-finetuned.pth"), backbone(base_file)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f, g = bb(x), ref(x)
    assert all(torch.equal(f[l], g[l]) for l in (1, 2, 3, 4)) and not torch.equal(f[5], g[5])
    assert torch.equal(bb.features[28].weight, out["features.28.weight"])


def test_accuracy_rises_above_chance_and_the_lineage_is_recorded(finetuned):
    root, cfg, base_file, run, r = finetuned
    rec = json.loads((run / "finetune.json").read_text())
    assert rec["base"]["sha256"] == hashlib.sha256(base_file.read_bytes()).hexdigest()
    assert rec["weights_sha256"] == hashlib.sha256((run / "vgg19-finetuned.pth").read_bytes()).hexdigest()
    assert {k: v["images"] for k, v in rec["data"].items()} == {"A": N_TRAIN, "B": N_TRAIN, "test_A": N_TEST,
                                                                 "test_B": N_TEST}
    assert rec["epochs"] == EPOCHS and rec["steps"] == EPOCHS * 2 * N_TRAIN // BATCH and rec["lr"] == 0.01
    assert rec["trained"] == ["features.28", "features.30", "features.32", "features.34", "classifier.0",
                              "classifier.3", "classifier.6"]
    acc = rec["held_out_accuracy"]
    assert acc["n"] == 2 * N_TEST and acc["accuracy"] >= 0.75, acc  # chance: 0.5
    # logged while training (each sample) and at the end, in log.txt and stats.jsonl
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    accs = [s["test_accuracy"] for s in stats if "test_accuracy" in s]
    assert len(accs) >= EPOCHS // 2 and accs[-1] == acc["accuracy"]
    assert "held-out accuracy" in (run / "log.txt").read_text() and "held-out accuracy" in r.stdout
    assert (run / "samples" / f"finetune-{rec['steps']:07d}.png").is_file()


def test_finished_run_is_refused_without_resume_and_kept_with_it(finetuned):
    root, cfg, base_file, run, _ = finetuned
    before = (run / "vgg19-finetuned.pth").read_bytes()
    r = subprocess.run([sys.executable, "-m", "deepcascade", "finetune", str(cfg), "--run-dir", str(run)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "deepcascade", "finetune", str(cfg), "--run-dir", str(run),
                        "--resume"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "finetune: skipped" in r.stdout and (run / "vgg19-finetuned.pth").read_bytes() == before


def test_bad_base_or_backbone_is_a_one_line_error(tmp_path, tiny_config, capsys):
    data = _toy_domains(tmp_path / "data")
    feats_only = tmp_path / "features.pth"
    torch.save({k: v for k, v in VGG19Classifier((8, 8), 10).state_dict().items() if k.startswith("features.")},
               feats_only)
    cfg = tiny_config(tmp_path / "cfg.yaml", data, backbone={"name": "vgg19", "weights": str(feats_only)})
    assert main(["finetune", str(cfg), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "not a whole torchvision VGG-19" in err and "classifier.0/3/6" in err
    cfg = tiny_config(tmp_path / "cfg2.yaml", data, backbone={"name": "alexnet", "weights": "random"})
    assert main(["finetune", str(cfg), "--run-dir", str(tmp_path / "run2")]) == 2
    assert "backbone.name" in capsys.readouterr().err


def test_classifier_has_torchvisions_layout_and_forward():
    """VGG19Classifier is torchvision's VGG-19: the same state-dict keys and shapes (4096-wide FCs), and the
    same outputs as torchvision's VGG with the same (narrow) classifier and weights."""
    with torch.device("meta"):
        tv, ours = vgg19(), VGG19Classifier()
    assert {k: v.shape for k, v in tv.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    torch.manual_seed(0)
    small = VGG19Classifier((16, 8), 3).eval()
    with torch.device("meta"):
        ref = VGG(make_layers(cfgs["E"]), num_classes=3, init_weights=False)
        ref.classifier = nn.Sequential(nn.Linear(25088, 16), nn.ReLU(True), nn.Dropout(), nn.Linear(16, 8),
                                       nn.ReLU(True), nn.Dropout(), nn.Linear(8, 3))
    ref = ref.to_empty(device="cpu")
    ref.load_state_dict(small.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ref.eval()(x), small(x), atol=1e-6)
