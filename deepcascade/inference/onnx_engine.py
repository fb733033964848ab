"""Translate with an exported ONNX file and onnxruntime: no torch needed.

``OnnxTranslator.from_file("zebra_a2b.onnx").translate(image)``. The file (written by ``deepcascade export``)
holds the whole translate path of one direction for one image size; beside it, ``<file>.json`` says which
(:func:`sidecar_path`). Input and output are uint8 RGB in NHWC layout, (N, S, S, 3), any batch size N.

This module imports numpy, Pillow and onnxruntime only (never torch), so it also serves machines without torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.transforms import center_crop, resize_shorter
from ..errors import UserError

#: the names of the graph's input and output, and the layout both use
INPUT_NAME, OUTPUT_NAME, LAYOUT = "image", "translated", "NHWC uint8 RGB (0-255)"
EXTRA_HINT = "pip install 'deepcascade[export]'"


def sidecar_path(model: str | Path) -> Path:
    """The JSON written beside an exported file: ``a2b.onnx`` -> ``a2b.onnx.json``."""
    model = Path(model)
    return model.with_name(model.name + ".json")


def import_onnxruntime():
    """onnxruntime, or a UserError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"onnxruntime is not installed: {EXTRA_HINT}") from None
    return onnxruntime


def providers(device: str = "auto") -> list[str]:
    """onnxruntime's execution providers for ``device`` ('auto', 'cpu', 'cuda', 'cuda:N')."""
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    if device in ("auto", "cpu"):
        return (["CUDAExecutionProvider"] if device == "auto" and "CUDAExecutionProvider" in available else []) + [
            "CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise UserError(f"--device {device}: this onnxruntime has no CUDA provider (available: "
                            f"{', '.join(available)}); install onnxruntime-gpu or use --device cpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise UserError(f"--device must be 'auto', 'cpu', 'cuda' or 'cuda:N' with onnxruntime, got {device!r}")


def fit(image: Image.Image, size: int) -> Image.Image:
    """RGB, shorter side scaled to ``size`` and centre-cropped to a square: the run's test transform
    (``deepcascade.data.transforms.center_square``) without its conversion to a tensor."""
    return center_crop(resize_shorter(image.convert("RGB"), size), size)


def read_sidecar(model: Path) -> dict:
    """The JSON beside ``model``; a UserError naming it when it is missing or lacks the image size or direction."""
    side = sidecar_path(model)
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {side} (written beside the model by `deepcascade export`): "
                        f"{type(e).__name__}: {str(e)[:200]}") from None
    missing = [k for k in ("image_size", "direction") if not isinstance(info, dict) or k not in info]
    if missing:
        raise UserError(f"{side} lacks {', '.join(missing)}; export the model again with `deepcascade export`")
    return info


class OnnxTranslator:
    """An exported translate path run by onnxruntime."""

    def __init__(self, session, info: dict, path: Path | None = None):
        self.session = session
        self.info = info
        self.path = path
        self.image_size = int(info["image_size"])
        self.direction = info["direction"]
        self.final_level = int(info.get("final_level", 0)) or None

    @classmethod
    def from_file(cls, model: str | Path, device: str = "auto", threads: int = 0,
                  info: dict | None = None) -> "OnnxTranslator":
        """Open ``model`` (an ``.onnx`` written by ``deepcascade export``) and its JSON (or ``info`` in its place);
        ``threads``: onnxruntime's intra-op threads (0: its default)."""
        ort = import_onnxruntime()
        model = Path(model)
        if not model.is_file():
            raise UserError(f"--model not found: {model}")
        info = read_sidecar(model) if info is None else info
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        chosen = providers(device)
        try:
            session = ort.InferenceSession(str(model), opts, providers=chosen)
        except Exception as e:
            raise UserError(f"onnxruntime cannot load {model}: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
                            ) from None
        return cls(session, info, model)

    def translate_array(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 -> translated (N, S, S, 3) uint8; S is the file's image size."""
        s = self.image_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise ValueError(f"expected uint8 images (N, {s}, {s}, 3), got {images.dtype} {images.shape}")
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images)})[0]

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """A PIL image as the graph's input row: (S, S, 3) uint8, resized and centre-cropped."""
        return np.asarray(fit(image, self.image_size), dtype=np.uint8)

    def translate(self, images, batch_size: int = 8):
        """Translate PIL images (one or a list); returns the same type. The direction is the file's."""
        single = isinstance(images, Image.Image)
        pil = [images] if single else list(images)
        out = []
        for i in range(0, len(pil), batch_size):
            x = np.stack([self.preprocess(im) for im in pil[i: i + batch_size]])
            out += [Image.fromarray(a) for a in self.translate_array(x)]
        return out[0] if single else out
