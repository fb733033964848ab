"""``deepcascade finetune``: VGG-19 fine-tuned as a classifier of the config's two domains (supplementary
section 1.3), written as a weights file that ``backbone.weights: PATH`` loads."""

from pathlib import Path

from ..config import build_config

HELP = "fine-tune VGG-19 as a classifier of the two domains; writes RUN/vgg19-finetuned.pth for backbone.weights"


def add_arguments(p):
    p.add_argument("config", help="YAML config file (see `deepcascade config`); backbone.weights is the base "
                                  "(torchvision's whole VGG-19), the finetune section the schedule")
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/<config name>-finetune)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                   help="continue from the latest checkpoint, or from PATH")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config field (value parsed as YAML); repeatable")


def run(args) -> int:
    from ..stages.finetune import run_finetune

    cfg = build_config(args.config, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{cfg.name}-finetune"
    record = run_finetune(cfg, run_dir, resume=args.resume)
    if record is not None:  # rank 0
        acc = record["held_out_accuracy"]
        weights = run_dir / record["weights_file"]
        print(f"finetune: {record['status']}; held-out accuracy "
              + (f"{100 * acc['accuracy']:.1f}% on {acc['n']} test images" if acc else "not measured (no test split)"))
        print(f"weights: {weights} (lineage: {run_dir / 'finetune.json'})")
        print(f"use them with: --set backbone.weights={weights}")
    return 0
