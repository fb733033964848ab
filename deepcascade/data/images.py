"""Robust image-file loading shared by training data, ``features`` and ``translate``.

Any PIL mode becomes RGB (L, LA, P with transparency, RGBA, CMYK, I;16, ...), EXIF orientation is applied,
and unusable files (zero-byte, truncated, corrupt, not an image) are skipped and reported by name, with the
entries that are no files at all (symbolic link loops, broken links, FIFOs, sockets, devices), which are never
opened: opening a FIFO would wait for a writer forever.

Memory is bounded by the image's shape, not only by its file size: every use resizes the *shorter* side to the
working size, so a 1 x 100000 strip (a few hundred bytes) would become a 256 x 25.6 million bitmap. Images whose
long side exceeds :data:`MAX_ASPECT` times the short side are refused from their header, before decoding.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
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

#: the longest side may be at most this many times the shortest (1:20 holds any panorama); resizing the shorter
#: side to S px then makes at most 20 S^2 pixels, whatever the file
MAX_ASPECT = 20


class UnusableImage(ValueError):
    """A file that is not decoded, for a reason its message states in full (the reason shown in skip lists)."""


def _special_kind(mode: int) -> str | None:
    """'a FIFO', 'a socket', 'a device' for those file types, else None."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return None


def entry_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (a symbolic link loop, a broken link, a FIFO, a socket, a device),
    found with ``stat`` alone; None for a regular file or a folder (or a link to one)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (following it never reaches a file); not read"
        if os.path.islink(path):
            return f"broken symbolic link (its target {os.readlink(path)} does not exist); not read"
        return f"cannot stat it: {e.strerror}"
    kind = _special_kind(mode)
    return None if kind is None else f"not a regular file: {kind}; not read"


def list_images(folder: str | Path) -> list[Path]:
    """All image files below ``folder`` (recursive, by extension), sorted for a stable order."""
    folder = Path(folder)
    if not folder.exists():
        problem = entry_problem(folder) if folder.is_symlink() else None
        raise UserError(f"image folder not found: {folder}" + (f" ({problem})" if problem else ""))
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise UserError(f"{folder} is {_special_kind(folder.stat().st_mode) or 'not a file'}, not an image file "
                        f"or a folder of images")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def list_other_files(folder: str | Path) -> list[Path]:
    """Files below ``folder`` that are not images by extension (hidden files aside), to be named, not lost."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS and not p.name.startswith("."))


def list_unreadable_entries(folder: str | Path) -> list[tuple[Path, str]]:
    """Entries below ``folder`` that are no readable file (link loops, broken links, FIFOs, sockets, devices;
    hidden names aside) with the reason (:func:`entry_problem`): :func:`list_images` leaves them out, and a
    skip list must name them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.rglob("*"):
        if p.name.startswith(".") or p.is_file() or p.is_dir():
            continue
        problem = entry_problem(p)
        if problem:
            found.append((p, problem))
    return sorted(found)


def failure_reason(e: BaseException, path: Path | None = None) -> str:
    """One line saying why an image could not be used: the message of :class:`UnusableImage`, the size of an
    image that ran out of memory (MemoryError carries no message), else ``Type: message``, cut at 200 chars."""
    if isinstance(e, UnusableImage):
        return str(e).splitlines()[0][:300]
    if isinstance(e, MemoryError):
        size = ""
        if path is not None:
            try:
                with Image.open(path) as img:
                    size = f" of a {img.width}x{img.height} image"
            except Exception:  # the reason stays useful without the size
                pass
        return f"out of memory while decoding or resizing it{size}; free memory, or shrink the image"
    return f"{type(e).__name__}: {e}".splitlines()[0][:200]


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
    image is shrunk so that its shorter side is not far above ``max_side``. Raises :class:`UnusableImage` for
    an entry that is no regular file and for an image beyond the :data:`MAX_ASPECT` ratio (before decoding
    it), ``OSError``/``ValueError`` for any other unusable file.
    """
    path = Path(path)
    problem = entry_problem(path)  # before open(): a FIFO would block it
    if problem:
        raise UnusableImage(problem)
    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            w, h = img.size  # from the header: nothing is decoded yet
            if max(w, h) > MAX_ASPECT * max(1, min(w, h)):
                raise UnusableImage(f"{w}x{h} pixels: aspect ratio beyond 1:{MAX_ASPECT}; resizing its shorter "
                                    f"side to the working size would make it {max(w, h) // max(1, min(w, h))} "
                                    f"times as long; crop it to 1:{MAX_ASPECT} or squarer")
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
    except Exception as e:  # PIL raises many types for corrupt input; MemoryError too
        return failure_reason(e, path)


def scan_images(folder: str | Path, what: str, require: bool = True) -> ScanReport:
    """List and decode-check every image under ``folder``; bad ones are named in the log."""
    files = list_images(folder)
    rep = ScanReport(bad=[(p, "not an image file (unsupported extension)") for p in list_other_files(folder)]
                     + list_unreadable_entries(folder))
    rep.check(files)
    rep.log_skipped(f"{what} ({folder})")
    if require and not rep.good:
        raise UserError(f"{what}: no usable image in {folder} "
                        f"({len(files)} file(s) with an image extension, {len(rep.bad)} unreadable); "
                        f"supported: {', '.join(sorted(IMAGE_EXTENSIONS))}")
    return rep
