"""Raw backbone features of a folder of images, streamed to one .safetensors file (``deepcascade features``).

Each image is resized (shorter side -> image_size, bicubic) and centre-cropped
(``data.transforms.center_square``), then the backbone gives its levels, raw (not normalized). One tensor
(C, H, W) per image and level, named ``<path relative to the folder, with '/'>/level<l>``; the metadata field
``layers`` names each level in the network (``conv_5_1``). Written tensor by tensor, so memory stays bounded
for any number of images (safetensors' own ``save_file`` needs every tensor in memory at once), and renamed
into place when complete.
"""

from __future__ import annotations

import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..version import __version__
from ..errors import UserError
from ..fileio import atomic_path


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
    from ..data.transforms import center_square

    try:
        return center_square(load_image(path), size)
    except Exception as e:  # changed since it was scanned
        raise UserError(f"cannot read image {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None


def export_features(images_dir: Path, out: Path, backbone, levels: list[int], image_size: int, batch_size: int,
                    device: torch.device, weights: str) -> dict:
    """Write the features of every readable image below ``images_dir`` to ``out``; returns a summary."""
    from ..progress import progress

    from ..data.images import scan_images
    from .extract import backbone_identity, extract

    report = scan_images(images_dir, "--images")  # names every skipped file in the log
    ident = backbone_identity(backbone)
    root = images_dir if images_dir.is_dir() else images_dir.parent

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    names = {l: backbone.level_names[l] for l in levels}
    # shapes from a real forward pass: exact for any backbone's padding/rounding rules
    probe = extract(backbone, torch.zeros(1, 3, image_size, image_size, device=device), levels)
    shapes = {l: tuple(probe[l].shape[1:]) for l in levels}
    entries = [(f"{rel(p)}/level{l}", "F32", shapes[l]) for p in report.good for l in levels]
    metadata = {
        "format": "deepcascade.features", "package_version": __version__, "backbone": backbone.name,
        "weights": weights, "weights_sha256": backbone.weights_sha256 or ident["weights"],
        "relu": json.dumps(bool(backbone.relu)), "image_size": str(image_size), "levels": json.dumps(levels),
        "layers": json.dumps({str(l): names[l] for l in levels}),
        "key_format": "<relative path>/level<l>",
        "transform": "shorter side -> image_size (bicubic, antialiased), centre crop image_size; RGB in [0,1]; "
                     "ImageNet mean/std applied inside the backbone",
        "n_images": str(len(report.good)), "skipped": json.dumps([rel(p) for p, _ in report.bad]),
    }
    with atomic_path(out) as tmp:  # streamed to a temporary file, renamed into place when complete
        writer = SafetensorsStreamWriter(tmp, entries, metadata)
        try:
            with ThreadPoolExecutor(2) as pool, progress(total=len(report.good), unit="img", leave=False,
                                                     desc="features") as bar:
                files = report.good
                for i0 in range(0, len(files), batch_size):
                    chunk = files[i0:i0 + batch_size]
                    x = torch.stack(list(pool.map(lambda p: _load(p, image_size), chunk))).to(device)
                    feats = {l: f.cpu().numpy() for l, f in extract(backbone, x, levels).items()}
                    for j, p in enumerate(chunk):
                        for l in levels:
                            writer.write(f"{rel(p)}/level{l}", feats[l][j])
                    bar.update(len(chunk))
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return {"images": len(report.good), "names": names, "bytes": writer.total_bytes,
            "skipped": [(rel(p), why) for p, why in report.bad]}
