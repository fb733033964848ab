"""``deepcascade prepare KIND``: write a dataset in the ``trainA/ trainB/ testA/ testB`` layout.

Each kind is one entry of ``KINDS``: a function adding its own flags and a function doing the work, so that
more kinds are added without touching the others. The work lives in ``deepcascade/data/prepare/`` (one module
per source layout) and is imported inside the run functions, so building the parser imports no torch.
Every kind writes its output through ``data/prepare/output.py`` and can be re-run over it (``prepare.json``,
written last; see docs/datasets.md); ``synthetic`` adds ``synthetic.json``, which names the pair, seed and size
its images and masks are drawn again from. No kind writes over an input
(:func:`deepcascade.fileio.check_output_location`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UserError

log = logging.getLogger("deepcascade")

HELP = ("write a two-domain dataset (trainA/trainB/testA/testB); kinds: synthetic, coco, cats-dogs, afhq, drit, "
        "folders")


def _synthetic_arguments(p) -> None:
    p.add_argument("--out", help="output directory (created; must not be an existing file); required unless "
                                  "--list-pairs")
    p.add_argument("--pair", default="animals",
                   help="which built-in pair of domains to draw: animals, discs-stars, mugs-bottles, rings-crosses "
                        "(--list-pairs says what each draws)")
    p.add_argument("--list-pairs", action="store_true", help="list the built-in pairs and exit")
    p.add_argument("--n", type=int, default=500, help="training images per domain")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (>= 32)")
    p.add_argument("--seed", type=int, default=0, help="generator seed; every image depends only on it, "
                                                        "its domain and its index")
    p.add_argument("--n-test", type=int, default=None, help="test images per domain; None means max(10, n // 5)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a synthetic set of another pair, seed, size or count in --out (a run without it "
                        "keeps the images there and extends a smaller set); only files this command wrote are "
                        "removed, anything else there is refused")


def _synthetic_run(args) -> int:
    from ..data import synthetic

    if args.list_pairs:
        for pair in synthetic.PAIRS.values():
            print(f"{pair.name}: A = {pair.domain_a}; B = {pair.domain_b}; differ by {pair.differs}")
        return 0
    if not args.out:
        raise UserError("prepare synthetic needs --out DIR (or --list-pairs)")
    pair = synthetic.get_pair(args.pair)
    out = Path(args.out)
    counts = synthetic.write_dataset(out, n=args.n, size=args.size, seed=args.seed, n_test=args.n_test,
                                     overwrite=args.overwrite, pair=pair.name)
    print(f"synthetic pair {pair.name}, {args.size}x{args.size} px, seed {args.seed}: A = {pair.domain_a}; "
          f"B = {pair.domain_b}")
    for folder, count in counts.items():
        print(f"  {count:6d} images -> {out / folder}")
    print(f"  parameters -> {out / 'synthetic.json'}")
    return 0


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _fraction(value: str) -> float:
    import argparse

    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value!r}") from None
    if not 0.0 <= f < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value!r}")
    return f


def _out_argument(p) -> None:
    p.add_argument("--out", required=True,
                   help="output folder: new, empty, or an earlier output of the same command (a finished one is "
                        "left as is, an interrupted one is completed); never an input folder or one around it")


def _split_arguments(p, what: str) -> None:
    p.add_argument("--test-fraction", type=_fraction, default=0.1,
                   help=f"share of each {what} held out as test (exactly round(fraction * n), chosen by a hash "
                        f"of the relative path)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split")


def _coco_arguments(p) -> None:
    p.add_argument("--annotations", required=True, help="instances_train2017.json (COCO annotations)")
    p.add_argument("--images", required=True, help="the train2017/ image folder")
    p.add_argument("--val-annotations", default=None,
                   help="instances_val2017.json: val2017 becomes the test split (with --val-images)")
    p.add_argument("--val-images", default=None, help="the val2017/ image folder")
    p.add_argument("--categories", required=True, type=_names,
                   help="two COCO category names, domain A first: zebra,giraffe or zebra,elephant")
    p.add_argument("--test-fraction", type=_fraction, default=None,
                   help="without --val-*: share of train2017's images (by image id) held out as test; "
                        "None means 0.1")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    p.add_argument("--min-box", type=float, default=64.0,
                   help="skip instances whose box's shorter side is below this many pixels")
    p.add_argument("--crop-scale", type=float, default=1.2,
                   help="side of the square crop as a multiple of the box's longer side")
    p.add_argument("--pad", default="constant", choices=["constant", "edge", "reflect"],
                   help="how a crop reaching past the image border is filled (constant = black)")
    p.add_argument("--size", type=int, default=256,
                   help="crops are resized to SIZE x SIZE (Lanczos); 0 keeps the source resolution")
    p.add_argument("--format", default="png", choices=["png", "jpg"],
                   help="file format of the crops (png is lossless; jpg uses quality 95)")
    _out_argument(p)


def _coco_run(args) -> int:
    from ..data.prepare import coco

    if args.min_box <= 0 or args.crop_scale < 1.0 or (args.size and args.size < 16):
        raise UserError("--min-box must be > 0, --crop-scale >= 1 (the crop holds the whole box), "
                        "--size 0 or >= 16")
    coco.prepare(args.annotations, args.images, args.out, args.categories, args.val_annotations, args.val_images,
                 args.test_fraction, args.seed,
                 coco.Rules(args.min_box, args.crop_scale, args.pad, args.size, args.format))
    return 0


def _cats_dogs_arguments(p) -> None:
    p.add_argument("--src", required=True,
                   help="the extracted PetImages/ folder (Cat/ and Dog/), or Kaggle's train/ (cat.N.jpg, dog.N.jpg)")
    _split_arguments(p, "class")
    _out_argument(p)


def _cats_dogs_run(args) -> int:
    from ..data.prepare import petimages

    petimages.prepare(args.src, args.out, args.test_fraction, args.seed)
    return 0


def _afhq_arguments(p) -> None:
    p.add_argument("--src", required=True, help="the extracted afhq/ folder (train/<class>/, val/<class>/ or "
                                                "test/<class>/)")
    p.add_argument("--domains", type=_names, default="cat,dog", help="two classes, domain A first")
    _out_argument(p)


def _afhq_run(args) -> int:
    from ..data.prepare import afhq

    afhq.prepare(args.src, args.out, args.domains)
    return 0


def _drit_arguments(p) -> None:
    p.add_argument("--src", required=True, help="the extracted cat2dog/ folder (trainA/ trainB/ testA/ testB/)")
    _out_argument(p)


def _drit_run(args) -> int:
    from ..data.prepare import drit

    drit.prepare(args.src, args.out)
    return 0


def _folders_arguments(p) -> None:
    p.add_argument("--a", required=True, help="folder of domain A images (searched recursively)")
    p.add_argument("--b", required=True, help="folder of domain B images (searched recursively)")
    _split_arguments(p, "folder")
    _out_argument(p)


def _folders_run(args) -> int:
    from ..data.prepare import folders

    folders.prepare(args.a, args.b, args.out, args.test_fraction, args.seed)
    return 0


# kind -> (help, add_arguments, run)
KINDS = {
    "synthetic": ("built-in pairs of domains that differ in shape (default: zebra-like vs giraffe-like animals; "
                  "--list-pairs), with their object masks; no download",
                  _synthetic_arguments, _synthetic_run),
    "coco": ("MSCOCO object crops of two categories (zebra,giraffe; zebra,elephant) from the instances "
             "annotations, one square crop per usable instance, with a manifest",
             _coco_arguments, _coco_run),
    "cats-dogs": ("Kaggle Dogs vs Cats photos (PetImages/Cat, PetImages/Dog): cat = A, dog = B; unreadable "
                  "files named and skipped; deterministic train/test split", _cats_dogs_arguments, _cats_dogs_run),
    "afhq": ("AFHQ / AFHQ-v2 animal faces (train/<class>, val/<class>): two classes, the shipped split kept",
             _afhq_arguments, _afhq_run),
    "drit": ("DRIT's cat2dog faces (trainA/ trainB/ testA/ testB): checked and copied, split kept",
             _drit_arguments, _drit_run),
    "folders": ("any two image folders -> the layout, with a deterministic train/test split",
                _folders_arguments, _folders_run),
}


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="kind", metavar="KIND", required=True, parser_class=type(p))
    for kind, (help_, add, run_) in KINDS.items():
        kp = sub.add_parser(kind, help=help_, description=help_, formatter_class=p.formatter_class)
        add(kp)
        kp.set_defaults(_prepare=run_)


def run(args) -> int:
    return int(args._prepare(args) or 0)
