"""``deepcascade export``: one direction of a run as a single ONNX file that runs without torch.

Writes ``--out`` (default ``<run name>_<direction>.onnx`` here) and ``<out>.json`` beside it (image size,
direction, layout, opset, the run's name and config hash, deepcascade's version, the check's figures). Before
keeping the file, runs it with onnxruntime on a few of the run's test images and compares with the PyTorch
translation; below 40 dB PSNR nothing is written (exit 2) unless ``--force``. Needs ``pip install
'deepcascade[export]'`` (onnx, onnxruntime). docs/deployment.md shows how to use the file.
"""

from __future__ import annotations

from ..domains import DIRECTIONS

HELP = "export a run's translation (one direction) to an ONNX file, checked against PyTorch"


def add_arguments(p):
    p.add_argument("--run", required=True, help="run directory trained by `deepcascade train`")
    p.add_argument("--direction", default="a2b", choices=list(DIRECTIONS), help="translation direction")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="file format")
    p.add_argument("--out", default=None, help="output file (default: <run name>_<direction>.onnx here)")
    p.add_argument("--image-size", type=int, default=None,
                   help="the graph's image size (default: the run's data.image_size)")
    p.add_argument("--force", action="store_true", help="keep the file even below 40 dB PSNR against PyTorch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out and its JSON")


def run(args) -> int:
    from ..inference.onnx_export import MIN_PSNR, export_onnx

    r = export_onnx(args.run, args.direction, args.out, image_size=args.image_size, force=args.force,
                    overwrite=args.overwrite)
    db = "inf dB (identical)" if r["psnr"] == float("inf") else f"{r['psnr']:.1f} dB"
    print(f"checked with onnxruntime on {r['checked_on']}: max abs difference {r['max_abs_diff']}/255, "
          f"PSNR {db} against PyTorch" + ("" if r["psnr"] >= MIN_PSNR else " (below 40 dB, kept by --force)"))
    print(f"wrote {r['out']} ({r['bytes'] / 1e6:.1f} MB) and {r['sidecar']} in {r['seconds']:.1f} s")
    return 0
