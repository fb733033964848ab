"""``deepcascade features``: raw backbone features of a folder of images, written to one .safetensors file.

Each image is resized (shorter side -> --image-size, bicubic) and centre-cropped to a square (the test
transform; an N x N input passes through unchanged), then the backbone gives its levels, raw (not normalized),
before the ReLU unless --relu. One tensor of shape (C, H, W) per image and level, named
``<path relative to --images, with '/'>/level<l>`` (e.g. ``cats/001.png/level5``; for VGG-19, level l is
conv_l_1, listed in the metadata field ``layers``). The file is streamed to disk (memory stays bounded for any
number of images) and renamed into place when complete. Unreadable files are skipped and named.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import __version__
from ..fileio import atomic_path
from ..errors import UserError

HELP = "extract raw backbone features (levels 1..5) of a folder of images into a .safetensors file"


def _backbone_choices() -> list[str]:
    import dataclasses

    from ..config import BackboneConfig

    return next(f.metadata["choices"] for f in dataclasses.fields(BackboneConfig) if f.name == "name")


def add_arguments(p):  # imports nothing heavy: the CLI builds every subcommand's parser
    p.add_argument("--backbone", default="vgg19", choices=_backbone_choices(), help="feature extractor")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (torch hub cache or download), 'random' (tests only) or a state-dict path")
    p.add_argument("--seed", type=int, default=0, help="seed of --weights random")
    p.add_argument("--images", required=True, help="folder of images (searched recursively) or one image file")
    p.add_argument("--levels", default="1,2,3,4,5", help="comma-separated levels (1 = conv_1_1 ... 5 = conv_5_1)")
    p.add_argument("--image-size", type=int, default=224, help="resize the shorter side to N, centre-crop N x N")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--relu", action="store_true", help="take each level after its ReLU")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--device", default="auto", help="'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'")


def parse_levels(text: str) -> list[int]:
    try:
        levels = sorted(set(int(t) for t in text.replace(" ", "").split(",") if t))
    except ValueError:
        raise UserError(f"--levels must be comma-separated integers from 1 to 5, got {text!r}") from None
    if not levels or not all(1 <= l <= 5 for l in levels):
        raise UserError(f"--levels must be comma-separated integers from 1 to 5, got {text!r}")
    return levels


class SafetensorsStreamWriter:
    """Write a safetensors file whose tensor names, dtypes and shapes are known up front, tensor by tensor.

    The header (8-byte little-endian length, JSON with data offsets, space-padded to 8 bytes) is written
    first; arrays must then be written in the declared order.
    """

    _DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8")}

    def __init__(self, path: Path, entries: list[tuple[str, str, tuple[int, ...]]], metadata: dict):
        header: dict = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
        offset = 0
        self._order = []
        for name, dtype, shape in entries:
            nbytes = int(np.prod(shape)) * self._DTYPES[dtype].itemsize
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._order.append((name, dtype, tuple(shape), nbytes))
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._f = open(path, "wb")
        self._f.write(struct.pack("<Q", len(raw)))
        self._f.write(raw)
        self._next = 0
        self.total_bytes = 8 + len(raw) + offset

    def write(self, name: str, array: np.ndarray) -> None:
        want_name, dtype, shape, nbytes = self._order[self._next]
        if name != want_name or tuple(array.shape) != shape:
            raise RuntimeError(f"expected {want_name} {shape}, got {name} {tuple(array.shape)}")
        self._f.write(np.ascontiguousarray(array, dtype=self._DTYPES[dtype]).tobytes())
        self._next += 1

    def close(self) -> None:
        if self._next != len(self._order):
            self._f.close()
            raise RuntimeError(f"only {self._next} of {len(self._order)} tensors were written")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()


def _load(path: Path, size: int):
    from ..data.images import load_image
    from ..data.transforms import test_transform

    try:
        return test_transform(load_image(path), size)
    except Exception as e:  # changed since it was scanned
        raise UserError(f"cannot read image {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None


def run(args) -> int:
    import torch

    from ..backbones import build_backbone
    from ..data.images import scan_images
    from ..features.cache import backbone_identity, extract

    levels = parse_levels(args.levels)
    if args.image_size < 16:
        raise UserError(f"--image-size must be >= 16 (the stride of level 5), got {args.image_size}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out must end with .safetensors, got {out}")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder")
    images_dir = Path(args.images)
    from ..device import resolve_device

    device = resolve_device(args.device)
    report = scan_images(images_dir, "--images")  # names every skipped file in the log
    backbone = build_backbone(args.backbone, args.weights, args.relu, args.seed).to(device)
    ident = backbone_identity(backbone)
    root = images_dir if images_dir.is_dir() else images_dir.parent

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    names = {l: (f"conv_{l}_1" if backbone.name == "vgg19" else f"level{l}") for l in levels}
    # shapes from a real forward pass: exact for any backbone's padding/rounding rules
    probe = extract(backbone, torch.zeros(1, 3, args.image_size, args.image_size, device=device), levels)
    shapes = {l: tuple(probe[l].shape[1:]) for l in levels}
    entries = [(f"{rel(p)}/level{l}", "F32", shapes[l]) for p in report.good for l in levels]
    metadata = {
        "format": "deepcascade.features", "package_version": __version__, "backbone": backbone.name,
        "weights": args.weights, "weights_sha256": backbone.weights_sha256 or ident["weights"],
        "relu": json.dumps(bool(args.relu)), "image_size": str(args.image_size), "levels": json.dumps(levels),
        "layers": json.dumps({str(l): names[l] for l in levels}),
        "key_format": "<relative path>/level<l>",
        "transform": "shorter side -> image_size (bicubic, antialiased), centre crop image_size; RGB in [0,1]; "
                     "ImageNet mean/std applied inside the backbone",
        "n_images": str(len(report.good)), "skipped": json.dumps([rel(p) for p, _ in report.bad]),
    }
    from tqdm import tqdm

    with atomic_path(out) as tmp:  # streamed to a temporary file, renamed into place when complete
        writer = SafetensorsStreamWriter(tmp, entries, metadata)
        try:
            with ThreadPoolExecutor(2) as pool, tqdm(total=len(report.good), unit="img", leave=False,
                                                     desc="features") as bar:
                files = report.good
                for i0 in range(0, len(files), args.batch_size):
                    chunk = files[i0:i0 + args.batch_size]
                    x = torch.stack(list(pool.map(lambda p: _load(p, args.image_size), chunk))).to(device)
                    feats = {l: f.cpu().numpy() for l, f in extract(backbone, x, levels).items()}
                    for j, p in enumerate(chunk):
                        for l in levels:
                            writer.write(f"{rel(p)}/level{l}", feats[l][j])
                    bar.update(len(chunk))
            writer.close()
        except BaseException:
            writer.abort()
            raise
    print(f"features: {len(report.good)} image(s) x levels {levels} ({', '.join(names.values())}, "
          f"{'post' if args.relu else 'pre'}-ReLU, {args.image_size} px) -> {out} "
          f"({writer.total_bytes / 2**20:.1f} MiB)")
    if report.bad:
        print(f"features: skipped {len(report.bad)} unreadable file(s): "
              + ", ".join(f"{rel(p)} ({why})" for p, why in report.bad), file=sys.stderr)
    return 0
