"""Robust image loading (deepcascade/data/images.py): every usable file loads as RGB, upright; every unusable
file is skipped and named."""

import io
import logging

import numpy as np
import pytest
from PIL import Image

from deepcascade.data.images import list_images, load_image, scan_images
from deepcascade.errors import UserError

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _close(pixel, color, tol=12):
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, color))


@pytest.fixture()
def folder(tmp_path):
    """One file per case; returns (folder, {name: check(np.ndarray) or None for the bad ones})."""
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))

    (d / "zero.jpg").write_bytes(b"")
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    (d / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (d / "text.jpg").write_text("this is not a JPEG\n")
    (d / "notes.txt").write_text("not an image extension\n")
    (d / ".DS_Store").write_bytes(b"\0\0")  # hidden files are ignored, not reported

    Image.new("CMYK", (20, 16), (0, 255, 255, 0)).save(d / "cmyk.jpg", quality=95)  # CMYK red
    gray16 = np.zeros((10, 12), np.uint16)
    gray16[:, :6], gray16[:, 6:] = 65535, 32768
    im16 = Image.fromarray(gray16)
    assert im16.mode == "I;16"
    im16.save(d / "gray16.png")
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 255, 255, 0, 0] + [0] * (256 * 3 - 6))
    pal.paste(1, (4, 0, 8, 8))
    pal.save(d / "sub" / "palette.png", transparency=0)  # index 0 (left half) transparent
    Image.new("L", (9, 7), 100).save(d / "gray.png")
    rgba = Image.new("RGBA", (10, 10), (0, 0, 255, 255))
    rgba.paste((0, 255, 0, 0), (0, 0, 5, 10))  # left half fully transparent
    rgba.save(d / "rgba.png")
    upright = Image.new("RGB", (40, 20), BLUE)
    upright.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: displayed after a 90 degree clockwise turn
    upright.save(d / "exif_rotated.JPG", exif=exif, quality=95)
    photo.save(d / "sub" / "photo.jpeg", quality=90)

    checks = {
        "zero.jpg": None, "truncated.jpg": None, "text.jpg": None, "notes.txt": None,
        "cmyk.jpg": lambda a: a.shape == (16, 20, 3) and _close(a[8, 10], RED),
        "gray16.png": lambda a: _close(a[5, 2], (255, 255, 255), 1) and _close(a[5, 9], (128, 128, 128), 1),
        "sub/palette.png": lambda a: _close(a[4, 1], (255, 255, 255), 0) and _close(a[4, 6], RED, 0),
        "gray.png": lambda a: a.shape == (7, 9, 3) and _close(a[3, 3], (100, 100, 100), 0),
        "rgba.png": lambda a: _close(a[5, 1], (255, 255, 255), 0) and _close(a[5, 8], BLUE, 0),
        # displayed 20 wide, 40 high; the stored left (red) half is on top
        "exif_rotated.JPG": lambda a: a.shape == (40, 20, 3) and _close(a[5, 10], RED) and _close(a[34, 10], BLUE),
        "sub/photo.jpeg": lambda a: a.shape == (48, 64, 3),
    }
    return d, checks


def test_scan_names_bad_files_and_keeps_good_ones(folder, caplog):
    d, checks = folder
    with caplog.at_level(logging.WARNING, logger="deepcascade"):
        rep = scan_images(d, "domain A")
    rel = lambda p: p.relative_to(d).as_posix()  # noqa: E731
    assert sorted(rel(p) for p in rep.good) == sorted(k for k, v in checks.items() if v is not None)
    assert sorted(rel(p) for p, _ in rep.bad) == sorted(k for k, v in checks.items() if v is None)
    reasons = {rel(p): why for p, why in rep.bad}
    assert "empty" in reasons["zero.jpg"] and "truncated" in reasons["truncated.jpg"]
    assert "extension" in reasons["notes.txt"]
    for name in ("zero.jpg", "truncated.jpg", "text.jpg", "notes.txt"):
        assert name in caplog.text
    assert "skipped 4 unreadable" in caplog.text and ".DS_Store" not in caplog.text


@pytest.mark.parametrize("max_side", [None, 8])
def test_good_files_load_as_upright_rgb(folder, max_side):
    d, checks = folder
    for name, check in checks.items():
        if check is None:
            continue
        img = load_image(d / name, max_side=max_side)
        assert img.mode == "RGB", name
        if max_side is None:
            assert check(np.asarray(img)), name
        else:
            assert min(img.size) >= min(max_side, 7), name  # reduced decoding never goes below max_side


def test_bad_files_raise(folder):
    d, checks = folder
    for name in ("zero.jpg", "truncated.jpg", "text.jpg"):
        with pytest.raises((OSError, ValueError)):
            load_image(d / name)


def test_list_and_scan_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        list_images(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"")
    with pytest.raises(UserError, match="no usable image"):
        scan_images(tmp_path / "bad", "domain B")
    assert scan_images(tmp_path / "bad", "domain B", require=False).good == []


def test_large_jpeg_reduced_decoding_and_animation(tmp_path):
    big = Image.new("RGB", (400, 300), RED)
    big.save(tmp_path / "big.jpg", quality=90)
    img = load_image(tmp_path / "big.jpg", max_side=64)
    assert 64 <= min(img.size) <= 128 and abs(img.width / img.height - 4 / 3) < 0.05
    assert _close(np.asarray(img)[10, 10], RED)
    frames = [Image.new("RGB", (6, 6), c) for c in (RED, BLUE)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert _close(np.asarray(load_image(tmp_path / "anim.gif"))[3, 3], RED, 2)  # the first frame
