"""``deepcascade train``: train one stage, or every stage in order with ``--stage all``."""

from pathlib import Path

from ..config import build_config

HELP = "train a stage (or --stage all) into a run directory; resumable"


def add_arguments(p):
    from ..stages.registry import KINDS

    p.add_argument("config", help="YAML config file (see `deepcascade config`)")
    p.add_argument("--stage", required=True, choices=list(KINDS) + ["all"],
                   help="what to train; 'all' runs every stage in order, skipping finished ones: "
                        + "; ".join(f"{k.name}: {k.help}" for k in KINDS.values()))
    p.add_argument("--level", type=int, default=None, help="train only this level of the stage")
    p.add_argument("--domain", choices=["a", "b"], default=None,
                   help="per-domain stages (synth): train only this domain's model (default: both)")
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                   help="continue from the latest checkpoint of the stage, or from PATH")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config field (value parsed as YAML); repeatable")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and the plan, train nothing")


def run(args) -> int:
    from ..stages.pipeline import run_training

    cfg = build_config(args.config, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / cfg.name
    results = run_training(cfg, run_dir, args.stage, args.level, resume=args.resume, dry_run=args.dry_run,
                           domain=args.domain)
    for name, status in results.items():
        print(f"{name}: {status}")
    if results:
        print(f"run directory: {run_dir}")
    return 0
