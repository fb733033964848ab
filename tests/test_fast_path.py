"""The translation fast path (deepcascade.inference.fast, ``optimize=True``, ``--optimize``): the compiled graph
gives eager's images (a short last batch padded), a missing compiler or a failing compilation falls back to
eager with one warning, the CLI writes the same files, and ``auto`` precision says why it chose what it chose.

Compiling is the slow part (about a minute a graph on one thread): two graphs are compiled, fp32 and bf16; the
CLI test asks for the fp32 graph's shapes, which inductor's cache in the run serves, and the serve test checks
its wiring on uncompiled graphs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

import deepcascade.inference.fast as fast
import deepcascade.precision as precision
from deepcascade import Translator
from deepcascade.data.images import list_images
from deepcascade.inference.translate_folder import translation_files
from deepcascade.networks.winograd import WinogradConv2d


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def run(tiny_run, module_tmp):
    """The tiny run seen through a folder of links, without its ``cache/``: the compiled cache this module writes
    (``RUN/cache/compiled``) stays out of the session's shared run."""
    _, _, src = tiny_run
    view = module_tmp("fast_run") / "run"
    view.mkdir()
    for entry in src.iterdir():
        if entry.name != "cache":
            (view / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return view


@pytest.fixture(scope="module")
def images(tiny_run):
    root, _, _ = tiny_run
    files = list_images(root / "data" / "testA")[:3]
    assert len(files) == 3
    return files


@pytest.fixture(scope="module")
def x(run, images):
    t = Translator.from_run(run, device="cpu")
    return torch.stack([t.preprocess(Image.open(p).convert("RGB")) for p in images])


@pytest.fixture(scope="module")
def eager(run):
    return Translator.from_run(run, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def compiled(run):
    """One compiled fp32 translator for the module, batches of 2 (so that 3 images need padding)."""
    if fast.unavailable(torch.device("cpu")):
        pytest.skip(f"no compiler here: {fast.unavailable(torch.device('cpu'))}")
    t = Translator.from_run(run, device="cpu", precision="fp32", optimize=True)
    t.fast.batch_size = 2
    return t


def test_compiled_equals_eager_with_a_padded_batch(compiled, eager, x, run):
    ref = eager.translate_tensor(x, "a2b")
    out = compiled.translate_tensor(x, "a2b")  # batches of 2: the second holds one image and one of padding
    assert not compiled.fast.disabled, compiled.fast.disabled
    assert list(compiled.fast.graphs) == [("a2b", 5, 2, 32, 32, "fp32", False)]
    assert out.dtype == torch.float32 and out.shape == ref.shape and out.is_contiguous() and out.device.type == "cpu"
    assert psnr(out, ref) >= 40.0, psnr(out, ref)
    one = compiled.translate_tensor(x[2:], "a2b")  # alone in its padded batch: the padding changed nothing
    assert psnr(one, ref[2:]) >= 40.0
    assert len(compiled.fast.graphs) == 1  # the second call reused the graph
    assert any((run / "cache" / "compiled").iterdir())  # inductor's cache lives in the run
    # the graphs computed VGG-19's 512-channel 3x3 convs by Winograd, on copies: the eager networks are untouched
    assert compiled.fast.winograd and any(isinstance(m, WinogradConv2d) for m in compiled.fast._nets[0].modules())
    assert not any(isinstance(m, WinogradConv2d) for m in compiled.trained.backbone.modules())


def test_bf16_compiled_close_to_fp32(run, eager, x):
    t = Translator.from_run(run, device="cpu", precision="bf16", optimize=True)
    t.fast.batch_size = 2
    out, ref = t.translate_tensor(x, "a2b"), eager.translate_tensor(x, "a2b")
    assert not t.fast.disabled and t.fast.graphs
    assert not torch.equal(out, ref)  # it really ran in bf16
    assert psnr(out, ref) >= 30.0, psnr(out, ref)


def _warnings(caplog):
    return [r for r in caplog.records if r.name == "deepcascade" and r.levelno >= logging.WARNING
            and "fast path" in r.getMessage()]


def test_no_compiler_falls_back_to_eager_with_one_warning(run, eager, x, monkeypatch, caplog):
    monkeypatch.setattr(fast, "cpu_compiler", lambda: None)
    with caplog.at_level(logging.INFO, logger="deepcascade"):
        t = Translator.from_run(run, device="cpu", precision="fp32", optimize=True)
        out = t.translate_tensor(x, "a2b")
        again = t.translate_tensor(x[:1], "a2b")
    warned = _warnings(caplog)
    assert len(warned) == 1 and "C++ compiler" in warned[0].getMessage() and "g++" in warned[0].getMessage()
    assert not t.fast.graphs
    assert torch.equal(out, eager.translate_tensor(x, "a2b"))
    assert torch.equal(again, eager.translate_tensor(x[:1], "a2b"))  # same batch size: the same computation


def test_failing_compilation_falls_back_to_eager_with_one_warning(run, eager, x, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler today\nsecond line")

    monkeypatch.setattr(torch, "compile", broken)
    with caplog.at_level(logging.INFO, logger="deepcascade"):
        t = Translator.from_run(run, device="cpu", precision="fp32", optimize=True)
        out = t.translate_tensor(x, "a2b")
        levels = t.translate_tensor(x, "b2a", return_levels=True)
    warned = _warnings(caplog)
    assert len(warned) == 1, [w.getMessage() for w in warned]
    assert "RuntimeError: no compiler today" in warned[0].getMessage() and "\n" not in warned[0].getMessage()
    assert torch.equal(out, eager.translate_tensor(x, "a2b"))
    ref = eager.translate_tensor(x, "b2a", return_levels=True)
    assert torch.equal(levels[0], ref[0]) and torch.equal(levels[1][5], ref[1][5])


def test_translate_cli_optimize_writes_the_same_files(compiled, run, images, tmp_path, dc):
    outs = {}
    for name, extra in (("eager", []), ("optimized", ["--optimize", "--precision", "fp32"])):
        r = dc("translate", "--run", run, "--input", images[0].parent, "--out", tmp_path / name, "--device", "cpu",
               "--batch-size", "2", *extra)  # the compiled fixture's shapes: the run's inductor cache serves them
        assert r.returncode == 0, r.stderr[-3000:]
        outs[name] = {p.name: np.asarray(Image.open(p), dtype=np.float32) / 255
                      for p in translation_files(tmp_path / name)}
    assert "fast path: compiled a2b" in r.stderr and "precision fp32 (given)" in r.stderr
    assert sorted(outs["eager"]) == sorted(outs["optimized"]) == sorted(p.name for p in images)
    for name, ref in outs["eager"].items():
        assert psnr(torch.from_numpy(outs["optimized"][name]), torch.from_numpy(ref)) >= 40.0


def test_optimize_refused_with_onnxruntime_and_with_fake(run, tmp_path, dc):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "in" / "x.png")
    r = dc("translate", "--engine", "onnxruntime", "--model", tmp_path / "m.onnx", "--input", tmp_path / "in",
           "--out", tmp_path / "o", "--optimize")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--optimize needs --engine torch" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()
    r = dc("evaluate", "--fake", tmp_path / "in", "--real", tmp_path / "in", "--out", tmp_path / "e", "--optimize")
    assert r.returncode == 2 and "--optimize is for --run" in r.stderr, r.stderr


@pytest.mark.parametrize("native, expected", [
    (False, "precision fp32 (auto, the default with --optimize: bf16 would be emulated on this AVX2 CPU)"),
    (True, "precision bf16 (auto, the default with --optimize: this CPU computes bf16 natively: AVX512-BF16)"),
])
def test_auto_precision_says_why(native, expected, monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "_cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "_cpu_bf16_features", lambda: ["AVX512-BF16"] if native else [])
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert precision.precision_reason(None, cpu, optimize=True) == expected
    assert precision.precision_reason("auto", cpu) == expected.replace("auto, the default with --optimize", "auto")
    assert precision.resolve_precision(None, cpu, optimize=True) == ("bf16" if native else "fp32")
    assert precision.resolve_precision(None, cpu) == "fp32"  # not given, no --optimize: fp32 as before
    assert precision.precision_reason(None, cpu) == "precision fp32 (the default without --optimize)"
    assert precision.precision_reason("fp16", cpu, optimize=True) == "precision fp16 (given)"


def test_translator_logs_the_chosen_precision(run, monkeypatch, caplog):
    monkeypatch.setattr(precision, "_cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(fast, "cpu_compiler", lambda: None)  # nothing to compile here
    with caplog.at_level(logging.INFO, logger="deepcascade"):
        t = Translator.from_run(run, device="cpu", optimize=True)
    assert t.precision == "fp32"
    assert any(r.getMessage() == "precision fp32 (auto, the default with --optimize: bf16 would be emulated on "
                                 "this AVX2 CPU)" for r in caplog.records)


def test_serve_builds_both_directions_graphs_before_serving(run, eager, images, monkeypatch):
    """``serve --optimize``: both directions' graphs (one image per call, with levels) exist before the first
    request, and a request's translation and levels are eager's. The graphs run uncompiled here (Winograd copies,
    channels_last, the graph's outputs): inductor's own correctness is the first test's, and each compilation
    costs a minute of CI."""
    from deepcascade.apps.web import ServeSession

    if fast.unavailable(torch.device("cpu")):
        pytest.skip("no compiler here")
    built = []
    monkeypatch.setattr(fast, "compile_graph", lambda module: built.append(module) or module)
    t = ServeSession(run, device="cpu", precision="fp32", optimize=True).translator
    assert sorted(t.fast.graphs) == [("a2b", 5, 1, 32, 32, "fp32", True), ("b2a", 5, 1, 32, 32, "fp32", True)]
    assert len(built) == 2 and not t.fast.disabled
    img = Image.open(images[0]).convert("RGB")
    got, levels = t.translate(img, "b2a", return_levels=True)
    want, ref_levels = eager.translate(img, "b2a", return_levels=True)
    to_tensor = lambda im: torch.from_numpy(np.asarray(im, dtype=np.float32) / 255)
    assert psnr(to_tensor(got), to_tensor(want)) >= 40.0
    assert sorted(levels) == sorted(ref_levels) == [5]
    assert psnr(to_tensor(levels[5]), to_tensor(ref_levels[5])) >= 40.0
    assert len(t.fast.graphs) == 2 and len(built) == 2  # the request ran on a graph built before it
