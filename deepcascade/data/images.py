"""Robust image-file loading shared by training data, ``features`` and ``translate``.

Any PIL mode becomes RGB (L, LA, P with transparency, RGBA, CMYK, I;16, ...), EXIF orientation is applied,
and unusable files (zero-byte, truncated, corrupt, not an image) are skipped and reported by name.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ..errors import UserError

log = logging.getLogger("deepcascade")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}

# Refuse decompression bombs far beyond any photo, but allow large photos (e.g. 6000x4000).
Image.MAX_IMAGE_PIXELS = 200_000_000
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey image


def list_images(folder: str | Path) -> list[Path]:
    """All image files below ``folder`` (recursive, by extension), sorted for a stable order."""
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"image folder not found: {folder}")
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def list_other_files(folder: str | Path) -> list[Path]:
    """Files below ``folder`` that are not images by extension (hidden files aside), to be named, not lost."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS and not p.name.startswith("."))


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo if hi > lo else 1.0) * 255.0
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(path: str | Path, max_side: int | None = None) -> Image.Image:
    """Open ``path`` as an RGB PIL image (EXIF orientation applied, first frame of an animation).

    ``max_side`` bounds memory for huge inputs: JPEGs are decoded at reduced scale (``draft``) and the
    image is shrunk so that its shorter side is not far above ``max_side``. Raises ``OSError``/``ValueError``
    for an unusable file.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            if max_side is not None and img.format == "JPEG":
                img.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4, 1/8 scale when possible
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            img = to_rgb(img)
    if max_side is not None and min(img.size) > 2 * max_side:
        scale = 2 * max_side / min(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BICUBIC)
    return img


@dataclass
class ScanReport:
    """Result of checking a list of image files: the usable ones and the skipped ones with reasons."""

    good: list[Path] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)

    def check(self, files: list[Path]) -> "ScanReport":
        """Decode-check ``files``: each goes to ``good`` or, with the reason, to ``bad``."""
        for p in files:
            reason = verify_image(p)
            if reason is None:
                self.good.append(p)
            else:
                self.bad.append((p, reason))
        return self

    def log_skipped(self, what: str) -> None:
        for path, reason in self.bad:
            log.warning("skipped unreadable image %s: %s", path, reason)
        if self.bad:
            log.warning("%s: skipped %d unreadable file(s), using %d image(s)", what, len(self.bad), len(self.good))


def verify_image(path: Path) -> str | None:
    """None when ``path`` decodes as an image, else the reason it does not."""
    try:
        load_image(path, max_side=64)
        return None
    except Exception as e:  # PIL raises many types for corrupt input
        return f"{type(e).__name__}: {e}".splitlines()[0][:200]


def scan_images(folder: str | Path, what: str, require: bool = True) -> ScanReport:
    """List and decode-check every image under ``folder``; bad ones are named in the log."""
    files = list_images(folder)
    rep = ScanReport(bad=[(p, "not an image file (unsupported extension)") for p in list_other_files(folder)])
    rep.check(files)
    rep.log_skipped(f"{what} ({folder})")
    if require and not rep.good:
        raise UserError(f"{what}: no usable image in {folder} "
                        f"({len(files)} file(s) with an image extension, {len(rep.bad)} unreadable); "
                        f"supported: {', '.join(sorted(IMAGE_EXTENSIONS))}")
    return rep
