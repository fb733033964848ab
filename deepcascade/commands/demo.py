"""``deepcascade demo``: generate data, train every stage, translate, write an HTML page."""

from pathlib import Path

HELP = ("run the whole method on built-in synthetic zebra-like/giraffe-like data with the preset cpu-fast "
        "(~10 min on 2 idle CPU cores)")


def add_arguments(p):
    p.add_argument("--out", default="demo_out", help="output folder (data, run, translations, index.html; --long "
                                                     "and --quick write their pages to OUT/long and OUT/quick); "
                                                     "files the demo did not write are never replaced")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a tiny version (under a minute), for tests")
    size.add_argument("--long", action="store_true",
                      help="the quality setting, preset cpu-quality: twice the data at 96 px (about 45 CPU "
                           "minutes)")
    p.add_argument("--device", default="auto", help="'auto' (GPU when available), 'cpu', 'cuda'")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")


def run(args) -> int:
    from ..apps.demo import pages_dir, run_demo
    from ..domains import DIRECTIONS, DOMAINS

    mode = "quick" if args.quick else "long" if args.long else "demo"
    report = run_demo(args.out, mode=mode, device=args.device, seed=args.seed)
    out = Path(args.out)
    for d, (src, dst) in DIRECTIONS.items():
        r = report[d]
        print(f"{d}: {r['translated_share_target']:.0%} of {r['images']} translated {src.upper()} images look like {dst.upper()} "
              f"by silhouette (untranslated reconstructions: {r['reconstruction_share_target']:.0%}, "
              f"sources: {r['source_share_target']:.0%})")
    print(f"both directions: {report['balanced_translated']:.0%} of translations classified as their target "
          f"domain, against {report['balanced_reconstruction']:.0%} for untranslated reconstructions")
    ratios = [report["synthesis"][d]["collapse_ratio"] for d in DOMAINS]
    print("synthesis panel: collapse ratio " + ", ".join(
        f"{d.upper()} {'not computed' if r is None else f'{r:.2f}'}" for d, r in zip("ab", ratios))
          + " (1 = as varied as real images; the page says what it means)")
    print(f"done in {report['total_seconds'] / 60:.1f} min. Open {pages_dir(out, mode) / 'index.html'}")
    return 0
