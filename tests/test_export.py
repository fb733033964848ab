"""`deepcascade export` to ONNX, the torch-free lines of docs/deployment.md, and `translate --engine onnxruntime`.

A tiny run down to cascade level 4 (the demo's backbone, EfficientNet-Lite0 cut at stride 16, with random
weights, 32 px: a 10 MB file) is exported once; onnxruntime's translations are compared with `Translator`'s, and
the documented lines run in a Python where `import torch` fails. The suite's VGG-19 tiny run is exported too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnx", reason="needs the export extra: pip install 'deepcascade[export]'")
pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'deepcascade[export]'")

import torch  # noqa: E402

from deepcascade.inference import onnx_export  # noqa: E402
from deepcascade.inference.onnx_engine import OnnxTranslator, fit, sidecar_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def level4_run(module_tmp, tiny_config, synthetic_data):
    """A tiny run trained down to cascade level 4 (so the graph holds a cascade level and its AdaIN predictor)."""
    root = module_tmp("export_run")
    (root / "data").symlink_to(synthetic_data(n=4, size=32, seed=1, n_test=3))
    cfg = tiny_config(root / "cfg.yaml", root / "data", name="tinyx", engine={"checkpoint_every": 1},
                      backbone={"name": "efficientnet_lite0_s16", "weights": "random"},
                      invert={"levels": [5, 4], "steps": 1, "batch_size": 2, "lambda_adv": 0},
                      deep={"steps": 1, "batch_size": 2, "critic_width": 16, "gn_groups": 8},
                      cascade={"final_level": 4, "steps": 1, "batch_size": 2, "critic_width": 16,
                               "predictor_width": 32})
    r = subprocess.run([sys.executable, "-m", "deepcascade", "train", str(cfg), "--stage", "all", "--run-dir",
                        str(root / "run")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, root / "run"


@pytest.fixture(scope="module")
def exported(level4_run, module_tmp):
    """`deepcascade export` of direction a2b into a fresh folder: (run, model file, the command's stdout)."""
    from conftest import cli_inprocess

    _, run = level4_run
    out = module_tmp("export_out") / "m" / "tiny_a2b.onnx"
    r = cli_inprocess("export", "--run", run, "--direction", "a2b", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    return run, out, r.stdout


def _test_images(root: Path, domain: str = "A") -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted((root / "data" / f"test{domain}").glob("*.png"))]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 6, 8])
def test_fixed_adaptive_pool_matches_torch(size):
    x = torch.randn(2, 3, size, size + 1)
    want = torch.nn.AdaptiveAvgPool2d(4)(x)
    assert torch.allclose(onnx_export.FixedAdaptivePool(4)(x), want, atol=1e-6)


def test_fit_is_the_runs_test_transform():
    from deepcascade.data.transforms import center_square, to_pil

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(fit(img, 32)), np.asarray(to_pil(center_square(img, 32))))


def test_export_round_trip_matches_translator(level4_run, exported):
    from deepcascade import Translator

    root, _ = level4_run
    run, model, stdout = exported
    assert re.search(r"max abs difference \d+/255, PSNR (inf|\d+\.\d) dB", stdout), stdout
    info = json.loads(sidecar_path(model).read_text())
    assert info["image_size"] == 32 and info["direction"] == "a2b" and info["final_level"] == 4
    assert info["input"]["layout"].startswith("NHWC uint8") and info["opset"] == onnx_export.OPSET
    assert info["run"]["name"] == "tinyx" and len(info["run"]["config_sha256"]) == 64
    assert info["deepcascade_version"]

    images = _test_images(root)
    onnx = OnnxTranslator.from_file(model, device="cpu")
    got = np.stack([np.asarray(im) for im in onnx.translate(images)])
    want = np.stack([np.asarray(im) for im in Translator.from_run(run, device="cpu").translate(images)])
    assert got.shape == (3, 32, 32, 3)
    assert _psnr(got, want) >= 40.0
    # the batch dimension is dynamic: one image alone gives its row of the batch (within a grey level: other
    # kernels may be picked for another batch size)
    one = onnx.translate_array(np.asarray(fit(images[1], 32))[None])
    assert np.abs(one[0].astype(int) - got[1].astype(int)).max() <= 1


def test_export_round_trip_on_the_vgg19_tiny_run(tiny_run, tmp_path):
    from deepcascade import Translator

    root, _, run = tiny_run
    report = onnx_export.export_onnx(run, "b2a", tmp_path / "vgg.onnx")
    assert report["psnr"] >= 40.0 and report["out"].is_file()
    images = _test_images(root, "B")
    got = np.stack([np.asarray(im) for im in OnnxTranslator.from_file(report["out"]).translate(images)])
    want = np.stack([np.asarray(im) for im in Translator.from_run(run, device="cpu").translate(images, "b2a")])
    assert _psnr(got, want) >= 40.0


def test_export_refuses_below_40_db_and_leaves_nothing(level4_run, tmp_path, dc, monkeypatch):
    _, run = level4_run
    forward = onnx_export.TranslatePath.forward
    monkeypatch.setattr(onnx_export.TranslatePath, "forward", lambda self, x: 255 - forward(self, x))
    r = dc("export", "--run", run, "--out", tmp_path / "out" / "x.onnx")
    assert r.returncode == 2 and "PSNR" in r.stderr and "--force" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    r = dc("export", "--run", run, "--out", tmp_path / "out" / "x.onnx", "--force")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "kept by --force" in r.stdout
    assert json.loads((tmp_path / "out" / "x.onnx.json").read_text())["verification"]["psnr_db"] < 40


def test_export_keeps_an_existing_file_without_overwrite(exported, dc):
    run, model, _ = exported
    before = model.stat().st_mtime_ns
    r = dc("export", "--run", run, "--out", model)
    assert r.returncode == 2 and "--overwrite" in r.stderr and str(model) in r.stderr
    assert model.stat().st_mtime_ns == before


def test_export_names_the_missing_extra(level4_run, tmp_path, dc, monkeypatch):
    _, run = level4_run
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    r = dc("export", "--run", run, "--out", tmp_path / "x.onnx")
    assert r.returncode == 2 and "pip install 'deepcascade[export]'" in r.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_export_refuses_a_missing_run_and_a_bad_size(level4_run, tmp_path, dc):
    _, run = level4_run
    r = dc("export", "--run", tmp_path / "nope", "--out", tmp_path / "x.onnx")
    assert r.returncode == 2 and "nope" in r.stderr
    r = dc("export", "--run", run, "--out", tmp_path / "x.onnx", "--image-size", "40")
    assert r.returncode == 2 and "--image-size" in r.stderr and "multiple of 16" in r.stderr


def _documented_lines() -> list[str]:
    """The Python blocks of docs/deployment.md's torch-free section: the onnxruntime lines, then OnnxTranslator's."""
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = text.split("## Translate an image without torch", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_documented_lines_translate_without_torch(level4_run, exported, tmp_path):
    from deepcascade import Translator

    root, _ = level4_run
    run, model, _ = exported
    code, api = _documented_lines()
    assert len(code.strip().splitlines()) <= 7 and "torch" not in code.replace("onnxruntime", "")
    work = tmp_path / "work"
    work.mkdir()
    for src, name in ((model, "demo_a2b.onnx"), (sidecar_path(model), "demo_a2b.onnx.json")):
        (work / name).symlink_to(src)
    source = _test_images(root)[0]
    source.save(work / "photo.jpg", quality=95)
    shim = tmp_path / "shim"
    shim.mkdir()  # sitecustomize runs at start-up: torch is then unimportable
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = {**os.environ, "PYTHONPATH": str(shim)}
    check = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert check.returncode != 0 and "import of torch halted" in check.stderr
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys; assert 'torch' not in sys.modules or "
                        "sys.modules['torch'] is None\n"], cwd=work, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.asarray(Image.open(work / "translated.png"))
    want = np.asarray(Translator.from_run(run, device="cpu").translate(Image.open(work / "photo.jpg")))
    assert got.shape == (32, 32, 3) and _psnr(got, want) >= 40.0
    # deepcascade's own OnnxTranslator, also without torch
    (work / "translated.png").unlink()
    r = subprocess.run([sys.executable, "-c", api], cwd=work, env={**env, "PYTHONPATH": f"{shim}:{ROOT}"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _psnr(np.asarray(Image.open(work / "translated.png")), want) >= 40.0


def _photos(root: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i, img in enumerate(_test_images(root)):
        img.save(folder / f"p{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return folder


def test_translate_with_onnxruntime_writes_the_usual_pages(level4_run, exported, tmp_path, dc):
    root, _ = level4_run
    run, model, _ = exported
    photos = _photos(root, tmp_path / "photos")
    r = dc("translate", "--engine", "onnxruntime", "--model", model, "--input", photos, "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "translated 3 image(s)" in r.stdout and "skipped 1 unreadable file(s)" in r.stdout
    page = (tmp_path / "o" / "index.html").read_text()
    assert "model: " in page and "p0.png" in page and "broken.png" in page
    assert all((tmp_path / "o" / "_sources" / f"p{i}.png").is_file() for i in range(3))
    t = dc("translate", "--run", run, "--input", photos, "--out", tmp_path / "t")
    assert t.returncode == 0, t.stderr[-2000:]
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "o" / f"p{i}.png")).astype(int)
        b = np.asarray(Image.open(tmp_path / "t" / f"p{i}.png")).astype(int)
        assert _psnr(a, b) >= 40.0
    again = dc("translate", "--engine", "onnxruntime", "--model", model, "--input", photos, "--out", tmp_path / "o")
    assert again.returncode == 0 and "kept 3 existing" in again.stdout


def test_translate_folder_python_api_with_onnxruntime(level4_run, exported, tmp_path):
    from deepcascade.inference.translate_folder import translate_folder

    root, _ = level4_run
    _, model, _ = exported
    photos = _photos(root, tmp_path / "photos")
    summary = translate_folder(None, photos, tmp_path / "o", engine="onnxruntime", model=model)
    assert summary["written"] == 3 and [p.name for p, _ in summary["skipped"]] == ["broken.png"]


@pytest.mark.parametrize("extra, words", [
    (["--direction", "b2a"], ["translates a2b", "--direction b2a"]),
    (["--save-levels"], ["--save-levels", "--engine torch"]),
    (["--precision", "bf16"], ["--precision bf16"]),
    (["--run", "somewhere"], ["--model, not --run"]),
])
def test_translate_with_onnxruntime_refuses_what_the_file_cannot_do(exported, tmp_path, dc, extra, words):
    _, model, _ = exported
    (tmp_path / "in").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "in" / "x.png")
    r = dc("translate", "--engine", "onnxruntime", "--model", model, "--input", tmp_path / "in", "--out",
           tmp_path / "o", *extra)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()
