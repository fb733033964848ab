"""``deepcascade prepare KIND``: write a dataset in the ``trainA/ trainB/ testA/ testB`` layout.

Each kind is one entry of ``KINDS``: a function adding its own flags and a function doing the work, so that
more kinds (COCO object crops, cats-vs-dogs) are added without touching the others.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UserError

log = logging.getLogger("deepcascade")

HELP = "write a two-domain dataset (trainA/trainB/testA/testB); kinds: synthetic"


def _synthetic_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output directory (created; must not be an existing file)")
    p.add_argument("--n", type=int, default=500, help="training images per domain")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (>= 32)")
    p.add_argument("--seed", type=int, default=0, help="generator seed; every image depends only on it, "
                                                        "its domain and its index")
    p.add_argument("--n-test", type=int, default=None, help="test images per domain; None means max(10, n // 5)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace synthetic images already in --out (other files are never touched)")


def _synthetic_run(args) -> int:
    from ..data import synthetic

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file; give a directory")
    counts = synthetic.write_dataset(out, n=args.n, size=args.size, seed=args.seed, n_test=args.n_test,
                                     overwrite=args.overwrite)
    print(f"synthetic zebra-like (A) / giraffe-like (B) domains, {args.size}x{args.size} px, seed {args.seed}:")
    for folder, count in counts.items():
        print(f"  {count:6d} images -> {out / folder}")
    print(f"  parameters -> {out / 'synthetic.json'}")
    return 0


# kind -> (help, add_arguments, run)
KINDS = {
    "synthetic": ("built-in zebra-like (A) vs giraffe-like (B) images that differ in shape; no download",
                  _synthetic_arguments, _synthetic_run),
}


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="kind", metavar="KIND", required=True, parser_class=type(p))
    for kind, (help_, add, run_) in KINDS.items():
        kp = sub.add_parser(kind, help=help_, description=help_, formatter_class=p.formatter_class)
        add(kp)
        kp.set_defaults(_prepare=run_)


def run(args) -> int:
    return int(args._prepare(args) or 0)
