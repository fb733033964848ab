"""``deepcascade features``: raw backbone features of a folder of images, written to one .safetensors file.

Each image is resized (shorter side -> --image-size, bicubic) and centre-cropped to a square (the test
transform; an N x N input passes through unchanged), then the backbone gives its levels, raw (not normalized),
before the ReLU unless --relu. One tensor of shape (C, H, W) per image and level, named
``<path relative to --images, with '/'>/level<l>`` (e.g. ``cats/001.png/level5``; for VGG-19, level l is
conv_l_1, listed in the metadata field ``layers``). The file is streamed to disk (memory stays bounded for any
number of images) and renamed into place when complete; an existing file is replaced only with --overwrite.
Unreadable files are skipped and named.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError

HELP = "extract raw backbone features (levels 1..5) of a folder of images into a .safetensors file"


def _backbone_choices() -> list[str]:
    from ..backbones.specs import SPECS

    return list(SPECS)


def add_arguments(p):  # imports nothing heavy: the CLI builds every subcommand's parser
    p.add_argument("--backbone", default="vgg19", choices=_backbone_choices(), help="feature extractor")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (torch hub cache or download), 'random' (tests only) or a state-dict path")
    p.add_argument("--seed", type=int, default=0, help="seed of --weights random")
    p.add_argument("--images", required=True, help="folder of images (searched recursively) or one image file")
    p.add_argument("--levels", default="1,2,3,4,5", help="comma-separated levels (1 = conv_1_1 ... 5 = conv_5_1)")
    p.add_argument("--image-size", type=int, default=224, help="resize the shorter side to N, centre-crop N x N")
    p.add_argument("--out", required=True, help="output .safetensors file (an existing one is kept unless --overwrite)")
    p.add_argument("--relu", action="store_true", help="take each level after its ReLU")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--device", default="auto", help="'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def parse_levels(text: str) -> list[int]:
    try:
        levels = sorted(set(int(t) for t in text.replace(" ", "").split(",") if t))
    except ValueError:
        raise UserError(f"--levels must be comma-separated integers from 1 to 5, got {text!r}") from None
    if not levels or not all(1 <= l <= 5 for l in levels):
        raise UserError(f"--levels must be comma-separated integers from 1 to 5, got {text!r}")
    return levels


def run(args) -> int:
    from ..backbones import build_backbone, get_spec
    from ..device import resolve_device
    from ..features.export import export_features

    levels = parse_levels(args.levels)
    problem = get_spec(args.backbone).size_problem(args.image_size, "--image-size")
    if problem:
        raise UserError(problem)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out must end with .safetensors, got {out}")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder")
    if (out.exists() or out.is_symlink()) and not args.overwrite:
        raise UserError(f"--out {out} exists; pass --overwrite to replace it, or choose another --out")
    device = resolve_device(args.device)
    backbone = build_backbone(args.backbone, args.weights, args.relu, args.seed).to(device)
    res = export_features(Path(args.images), out, backbone, levels, args.image_size, args.batch_size, device,
                          args.weights)
    print(f"features: {res['images']} image(s) x levels {levels} ({', '.join(res['names'].values())}, "
          f"{'post' if args.relu else 'pre'}-ReLU, {args.image_size} px) -> {out} "
          f"({res['bytes'] / 2**20:.1f} MiB)")
    if res["skipped"]:
        print(f"features: skipped {len(res['skipped'])} unreadable file(s): "
              + ", ".join(f"{p} ({why})" for p, why in res["skipped"]), file=sys.stderr)
    return 0
