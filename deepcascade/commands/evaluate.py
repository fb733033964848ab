"""``deepcascade evaluate``: score a run's test-split translations, or any method's outputs, in one report.

Writes ``OUT/metrics.json`` (the contract scripts read; see the README) and ``OUT/index.html``, and prints every
figure that could be computed. Measures whose weights are missing are listed as not computed; naming them in
``--metrics`` makes that an error (exit 2).

``--out`` never lies in, is, or holds an input (the run's models, statistics and feature cache, its data folders,
--fake/--real/--source/--train-*; exit 2 naming both): the report's pictures would otherwise become images of a
later evaluation. The report's own files are
rewritten on every evaluation; a ``metrics.json`` or ``index.html`` that deepcascade did not write is replaced
only with ``--overwrite``. One process at a time writes an output folder (``OUT/.lock``).
"""

from __future__ import annotations

from pathlib import Path

from ..domains import DIRECTIONS
from ..precision import OPTIMIZE_HELP, PRECISION_HELP_OPTIMIZE, PRECISIONS

HELP = ("score translations: KID/FID, independent domain classifier, LPIPS nearest neighbours, collapse, layout, "
        "appearance")

METRIC_NAMES = "kid, fid, classifier, nn, collapse, layout, appearance"


def add_arguments(p):
    src = p.add_argument_group("what to score (either --run, or --fake with --real)")
    src.add_argument("--run", help="run directory: translates its test split (data.test_a / data.test_b)")
    src.add_argument("--fake", help="folder of translations by any method (one direction, see --direction)")
    src.add_argument("--real", help="with --fake: real images of the target domain (the KID/FID reference)")
    src.add_argument("--source", help="with --fake: the sources, paired by file name (CycleGAN's _fake_B / "
                                      "_real_A suffixes are ignored)")
    src.add_argument("--train-a", help="with --fake: training images of domain A (classifier; NN for b2a)")
    src.add_argument("--train-b", help="with --fake: training images of domain B (classifier; NN for a2b)")
    src.add_argument("--image-size", type=int, default=None,
                     help="with --fake: evaluation size (default: the first translation's shorter side)")
    p.add_argument("--direction", default=None, choices=[*DIRECTIONS, "both"],
                   help="with --run: which directions (default both); with --fake: which one it is (default a2b)")
    p.add_argument("--out", default=None, help="output folder (default RUN/eval with --run, else eval_out)")
    p.add_argument("--metrics", default=None,
                   help=f"comma-separated subset of: {METRIC_NAMES} (default: all that can be computed; a "
                        f"named one that cannot is an error)")
    p.add_argument("--reference", default="test", choices=["test", "train"],
                   help="with --run: which real target images KID/FID and the collapse ratio compare against")
    p.add_argument("--classifier", default="auto", choices=["auto", "efficientnet_lite0", "alexnet", "cnn"],
                   help="the independent domain classifier (auto: one that shares nothing with the run's backbone)")
    p.add_argument("--inception-weights", default=None,
                   help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth (else "
                        "$DEEPCASCADE_INCEPTION_WEIGHTS, the torch hub cache, a download)")
    p.add_argument("--alexnet-weights", default=None,
                   help="torchvision's alexnet-owt-7be5be79.pth for LPIPS (else $DEEPCASCADE_ALEXNET_WEIGHTS, the "
                        "torch hub cache, a download)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID: number of random subsets")
    p.add_argument("--kid-subset-size", type=int, default=1000,
                   help="KID: subset size (lowered to the smaller image set's size)")
    p.add_argument("--fid-bootstrap", type=int, default=10, help="FID spread: bootstrap resamples (0: none)")
    p.add_argument("--html-rows", type=int, default=50, help="nearest-neighbour strips shown per direction")
    p.add_argument("--no-cache", action="store_true", help="do not keep features and embeddings in OUT/cache")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="with --run: precision of the translations scored; "
                        + PRECISION_HELP_OPTIMIZE.split(": ", 1)[1] + " (the measures themselves always run in fp32)")
    p.add_argument("--optimize", action="store_true",
                   help="with --run: the translations it scores go through the fast path; " + OPTIMIZE_HELP)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a metrics.json / index.html in --out that deepcascade did not write (never an "
                        "input file)")


REPORT_FILES = ("metrics.json", "index.html")


def _run_inputs(run: Path) -> dict:
    """What ``evaluate --run`` reads: the run's models and statistics, its feature cache, its data folders."""
    from ..rundir import RunDir

    rd = RunDir(run)
    inputs = {"--run (config.yaml)": rd.config_file, "--run (models/)": rd.models,
              "--run (normalization)": rd.normalization_file, "--run (feature cache)": rd.cache_dir}
    cfg = rd.stored_config()
    if cfg is not None:
        d = cfg.data
        inputs.update({"data.test_a": d.test_a or None, "data.test_b": d.test_b or None,
                       "data.domain_a": d.domain_a or None, "data.domain_b": d.domain_b or None})
    return inputs


def _ours(path: Path) -> bool:
    """True for a report file an earlier ``deepcascade evaluate`` wrote (so it may be rewritten)."""
    import json

    from ..outputs.html import is_our_page

    if path.suffix == ".html":
        return is_our_page(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        return isinstance(data, dict) and "format" in data and "protocol" in data
    except (OSError, ValueError):
        return False


def claim_output(out: Path, inputs: dict, overwrite: bool):
    """Refuse an ``--out`` where the report would replace an input or a file deepcascade did not write; return
    the folder lock to hold while writing."""
    from ..errors import UserError
    from ..fileio import check_output_location, folder_lock

    check_output_location(out, inputs, None)  # any overlap: a report inside an image folder pollutes it
    foreign = [out / f for f in REPORT_FILES if (out / f).exists() and not _ours(out / f)]
    if foreign and not overwrite:
        raise UserError(f"{foreign[0]} exists and was not written by deepcascade evaluate; pass --overwrite to "
                        f"replace it, or choose another --out")
    return folder_lock(out, "output folder")


def run(args) -> int:
    from ..errors import UserError
    from ..evaluation.report import summary_lines
    from ..evaluation.entry_points import evaluate_folders, evaluate_run
    from ..evaluation.plan import Options, parse_metrics

    if bool(args.run) == bool(args.fake):
        raise UserError("give either --run RUN, or --fake DIR with --real DIR (and optionally --source DIR)")
    for name in ("batch_size", "kid_subsets", "kid_subset_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.fid_bootstrap < 0 or args.html_rows < 0:
        raise UserError("--fid-bootstrap and --html-rows must be >= 0")
    if args.optimize and not args.run:
        raise UserError("--optimize is for --run (it compiles the run's networks for the translations evaluate "
                        "makes); --fake images are scored as they are")
    opts = Options(metrics=parse_metrics(args.metrics), device=args.device, batch_size=args.batch_size,
                   precision=args.precision, optimize=args.optimize,
                   inception_weights=args.inception_weights, alexnet_weights=args.alexnet_weights,
                   classifier=args.classifier, kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                   fid_bootstrap=args.fid_bootstrap, html_rows=args.html_rows, cache=not args.no_cache)
    if args.run:
        if not Path(args.run).is_dir():
            raise UserError(f"--run {args.run} is not a folder")
        out = Path(args.out or Path(args.run) / "eval")
        with claim_output(out, _run_inputs(Path(args.run)), args.overwrite):
            metrics = evaluate_run(args.run, out, args.direction or "both", args.reference, opts)
    else:
        if not args.real:
            raise UserError("--fake needs --real DIR (real images of the target domain)")
        if args.direction == "both":
            raise UserError("--direction both needs --run; with --fake give a2b or b2a")
        if args.image_size is not None and args.image_size < 16:
            raise UserError(f"--image-size must be >= 16, got {args.image_size}")
        out = Path(args.out or "eval_out")
        inputs = {"--fake": args.fake, "--real": args.real, "--source": args.source, "--train-a": args.train_a,
                  "--train-b": args.train_b}
        with claim_output(out, inputs, args.overwrite):
            metrics = evaluate_folders(args.fake, args.real, out, args.source, args.direction or "a2b",
                                       args.train_a, args.train_b, args.image_size, opts)
    for line in summary_lines(metrics):
        print(line)
    print(f"wrote {out / 'metrics.json'}; open {out / 'index.html'}")
    return 0
