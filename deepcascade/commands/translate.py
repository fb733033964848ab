"""``deepcascade translate``: translate an image or a folder with a trained run; writes an HTML page.

Layout of ``--out``: each result under the input's relative name; ``_sources/`` the sources as the network
saw them (resized, centre-cropped); ``_levels/`` per-level strips with ``--save-levels``; ``index.html``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..domains import DIRECTIONS
from ..fileio import OVERWRITE_HELP
from ..precision import OPTIMIZE_HELP, PRECISION_HELP_OPTIMIZE, PRECISIONS

HELP = "translate an image or a folder (recursive) with a trained run; writes index.html"

log = logging.getLogger("deepcascade")


def add_arguments(p):
    p.add_argument("--run", default=None, help="run directory trained by `deepcascade train` (with --engine torch)")
    p.add_argument("--input", required=True, help="image file or folder (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--direction", default=None, choices=list(DIRECTIONS),
                   help="translation direction (default: a2b; with --engine onnxruntime the file's)")
    p.add_argument("--final-level", type=int, default=None, choices=[1, 2, 3, 4, 5],
                   help="shallowest level to translate to (default: the run's cascade.final_level)")
    p.add_argument("--save-levels", action="store_true",
                   help="also write a strip per image: source | I_5(level 5) | I_4(level 4) | ...")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--precision", default=None, choices=PRECISIONS, help=PRECISION_HELP_OPTIMIZE)
    p.add_argument("--optimize", action="store_true", help=OPTIMIZE_HELP)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--engine", default="torch", choices=["torch", "onnxruntime"],
                   help="torch: the run's networks; onnxruntime: a file from `deepcascade export` (--model)")
    p.add_argument("--model", default=None, help="with --engine onnxruntime: the exported .onnx file")


def run(args) -> int:
    from ..errors import UserError
    from ..fileio import kept_existing_note
    from ..inference.translate_folder import translate_folder

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.engine == "torch" and not args.run:
        raise UserError("--run is required (or --engine onnxruntime --model FILE.onnx)")
    if args.engine == "torch" and args.model:
        raise UserError("--model is for --engine onnxruntime; add it, or translate with --run")
    if args.engine == "onnxruntime" and args.run:
        raise UserError("--engine onnxruntime translates with --model, not --run; give one of them")
    if args.engine == "onnxruntime" and args.optimize:
        raise UserError("--optimize needs --engine torch (it compiles the run's networks); onnxruntime optimizes "
                        "an exported file itself: drop --optimize, or translate with --run")
    summary = translate_folder(args.run, args.input, args.out, direction=args.direction,
                               final_level=args.final_level, save_levels=args.save_levels,
                               batch_size=args.batch_size, device=args.device, overwrite=args.overwrite,
                               precision=args.precision, engine=args.engine, model=args.model,
                               optimize=args.optimize)
    print(f"translated {summary['written']} image(s) -> {args.out}")
    if summary["kept"]:
        print(kept_existing_note(len(summary["kept"]), args.out, "translation(s)"))
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable file(s): "
              + ", ".join(str(p) for p, _ in summary["skipped"]))
    print(f"open {Path(args.out) / 'index.html'}")
    return 0
