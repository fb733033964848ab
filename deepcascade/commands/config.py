"""``deepcascade config``: print a complete, commented YAML configuration."""

from ..config import PRESETS, build_config, to_commented_yaml

HELP = "print a complete, commented YAML configuration (every field with its default)"


def add_arguments(p):
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="named preset to start from")
    p.add_argument("--config", default=None, help="YAML file to apply on top of the preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one field (value parsed as YAML); repeatable")


def run(args) -> int:
    cfg = build_config(args.config, args.overrides, preset=args.preset)
    print(to_commented_yaml(cfg))
    return 0
