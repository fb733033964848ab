"""Inputs whose shape, kind or place would cost memory, block, or replace files: images of extreme aspect, symbolic
link loops and FIFOs among the inputs, a `translate --out` inside its `--input`, and an existing `features --out`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepcascade.data.images import load_image, scan_images, verify_image
from deepcascade.errors import UserError

SIZE = 32


def _strip(path: Path, w: int, h: int) -> Path:
    Image.fromarray(np.full((h, w, 3), 128, dtype=np.uint8)).save(path)
    return path


def _images(folder: Path, src: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.glob("*.png"))[:n]:
        shutil.copy(p, folder / p.name)
    return folder


# ----------------------------------------------------------------------------------- aspect and memory
def test_extreme_aspect_image_is_refused_before_decoding(tmp_path):
    from deepcascade.data.images import MAX_ASPECT, UnusableImage

    path = _strip(tmp_path / "strip.png", 100_000, 1)  # a few hundred bytes; x256 in a resize: 25.6 Mpx per row
    assert path.stat().st_size < 2000
    with pytest.raises(UnusableImage) as e:
        load_image(path)
    msg = str(e.value)
    assert "100000x1" in msg and f"1:{MAX_ASPECT}" in msg
    reason = verify_image(path)
    assert reason is not None and "aspect" in reason and not reason.startswith("MemoryError")
    # at the limit it is an image like any other
    assert load_image(_strip(tmp_path / "ok.png", MAX_ASPECT * 3, 3)).size == (MAX_ASPECT * 3, 3)


def test_out_of_memory_reason_is_not_empty(tmp_path, monkeypatch):
    from deepcascade.data import images

    path = _strip(tmp_path / "x.png", 20, 20)

    def no_memory(self, *a, **k):
        raise MemoryError()

    monkeypatch.setattr(Image.Image, "load", no_memory)
    reason = images.verify_image(path)
    assert reason is not None and "out of memory" in reason and "20x20" in reason


def test_translate_skips_an_extreme_aspect_image_and_names_why(tiny_run, dc, tmp_path):
    root, cfg, run = tiny_run
    inp = _images(tmp_path / "in", root / "data" / "testA")
    _strip(inp / "strip.png", 5000, 1)
    r = dc("translate", "--run", run, "--input", inp, "--out", tmp_path / "out", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "translated 2 image(s)" in r.stdout and "strip.png" in r.stdout
    assert not (tmp_path / "out" / "strip.png").exists()
    page = (tmp_path / "out" / "index.html").read_text()
    assert "strip.png" in page and "aspect" in page


# ------------------------------------------------------------------------- links, FIFOs, special files
@pytest.fixture
def odd_folder(tmp_path, synthetic_data) -> Path:
    folder = _images(tmp_path / "odd", synthetic_data(n=4, size=SIZE, seed=1, n_test=3) / "testA")
    os.symlink("loop.png", folder / "loop.png")
    os.symlink("missing.png", folder / "gone.png")
    os.mkfifo(folder / "pipe.png")
    return folder


def test_scan_names_link_loops_broken_links_and_fifos(odd_folder):
    rep = scan_images(odd_folder, "test images")
    assert len(rep.good) == 2
    bad = {p.name: why for p, why in rep.bad}
    assert set(bad) == {"loop.png", "gone.png", "pipe.png"}
    assert "loop" in bad["loop.png"] and "missing.png" in bad["gone.png"] and "FIFO" in bad["pipe.png"]


def test_a_fifo_is_never_opened(tmp_path):
    from deepcascade.data.images import UnusableImage

    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(UnusableImage, match="FIFO"):
        load_image(tmp_path / "pipe.png")  # would block in open() if it were read


def test_translate_names_link_loops_and_fifos_without_blocking(tiny_run, odd_folder, tmp_path):
    root, cfg, run = tiny_run
    r = subprocess.run([sys.executable, "-m", "deepcascade", "translate", "--run", str(run), "--input",
                        str(odd_folder), "--out", str(tmp_path / "out"), "--device", "cpu"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "translated 2 image(s)" in r.stdout
    for name in ("loop.png", "gone.png", "pipe.png"):
        assert name in r.stdout, r.stdout
    page = (tmp_path / "out" / "index.html").read_text()
    assert "symbolic link loop" in page and "FIFO" in page


# ------------------------------------------------------------------------------- translate --out overlap
@pytest.mark.parametrize("layout", ["out inside input", "input inside out", "same folder"])
def test_translate_refuses_an_out_that_overlaps_the_input(tiny_run, dc, tmp_path, layout):
    root, cfg, run = tiny_run
    if layout == "input inside out":
        out, inp = tmp_path / "work", tmp_path / "work" / "in"
    else:
        inp = tmp_path / "in"
        out = inp / "translated" if layout == "out inside input" else inp
    _images(inp, root / "data" / "testA")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r = dc("translate", "--run", run, "--input", inp, "--out", out, "--device", "cpu")
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "--out" in r.stderr and "--input" in r.stderr
    assert str(out) in r.stderr and str(inp) in r.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


# -------------------------------------------------------------------------------------- features --out
def test_features_refuses_to_replace_an_existing_out_without_overwrite(tiny_run, dc, tmp_path):
    root, cfg, run = tiny_run
    out = tmp_path / "mine.safetensors"
    out.write_bytes(b"the user's own file")
    args = ["features", "--weights", "random", "--images", root / "data" / "testA", "--levels", "5",
            "--image-size", SIZE, "--out", out, "--device", "cpu"]
    r = dc(*args)
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    assert str(out) in r.stderr and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == b"the user's own file"
    r = dc(*args, "--overwrite")
    assert r.returncode == 0, r.stderr[-2000:]
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert len(list(f.keys())) == 3


def test_list_images_of_a_fifo_is_a_clear_error(tmp_path):
    from deepcascade.data.images import list_images

    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UserError, match="FIFO"):
        list_images(tmp_path / "pipe")
