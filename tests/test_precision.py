"""Inference precision (``--precision`` / ``precision=``): bf16 images stay close to fp32's, fp32 is unchanged by
the autocast wrapper, 'auto' follows the hardware, and a bad value is a one-line exit 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deepcascade import Translator
from deepcascade.data.images import list_images
from deepcascade.errors import UserError
from deepcascade.precision import PRECISIONS, native_bf16, resolve_precision


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def images(tiny_run):
    root, _, _ = tiny_run
    files = list_images(root / "data" / "testA")[:3]
    assert files
    return files


def test_bf16_translation_close_to_fp32_and_fp32_unchanged(tiny_run, images):
    _, _, run = tiny_run
    t32 = Translator.from_run(run, device="cpu", precision="fp32")
    x = torch.stack([t32.preprocess(Image.open(p).convert("RGB")) for p in images])
    ref = t32.translate_tensor(x, "a2b")
    plain = t32.trained  # the same networks called with no autocast at all: fp32 must be exactly this
    feats = {l: plain.normalizer.normalize(f, l) for l, f in plain.backbone(x, [5]).items()}
    with torch.no_grad():
        direct = (t32.inversions[5](t32.cascade.translate(feats, "a2b", 5)[5]) + 1) / 2
    assert torch.equal(ref, direct.clamp(0, 1))

    t16 = Translator.from_run(run, device="cpu", precision="bf16")
    assert t16.precision == "bf16"
    out = t16.translate_tensor(x, "a2b")
    assert out.dtype == torch.float32 and out.shape == ref.shape and out.is_contiguous()
    assert not torch.equal(out, ref)  # it really ran in bf16
    assert psnr(out, ref) >= 30.0, psnr(out, ref)
    rec16, rec32 = t16.reconstruct_tensor(x), t32.reconstruct_tensor(x)
    assert psnr(rec16, rec32) >= 30.0


def test_translate_cli_bf16_close_to_fp32(tiny_run, images, tmp_path, dc):
    root, _, run = tiny_run
    outs = {}
    for precision in ("fp32", "bf16"):
        r = dc("translate", "--run", run, "--input", images[0], "--out", tmp_path / precision, "--device", "cpu",
               "--precision", precision)
        assert r.returncode == 0, r.stderr[-2000:]
        outs[precision] = torch.from_numpy(np.asarray(Image.open(tmp_path / precision / images[0].name),
                                                      dtype=np.float32) / 255)
    assert psnr(outs["bf16"], outs["fp32"]) >= 30.0


def test_unknown_precision_is_exit_2_one_line(tiny_run, tmp_path, dc):
    _, _, run = tiny_run
    for command in (["translate", "--input", tmp_path], ["synthesize", "--domain", "a"], ["evaluate"]):
        r = dc(*command, "--run", run, "--out", tmp_path / "o", "--precision", "fp8")
        assert r.returncode == 2
        errors = [line for line in r.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and "--precision" in errors[0] and "fp8" in errors[0], r.stderr
    with pytest.raises(UserError, match="precision must be one of"):
        Translator.from_run(run, device="cpu", precision="half")


def test_auto_follows_native_bf16():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    for p in PRECISIONS[:3]:
        assert resolve_precision(p, cpu) == p
