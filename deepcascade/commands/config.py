"""``deepcascade config``: print a complete, commented YAML configuration, or list the presets."""

from ..config import build_config, to_commented_yaml, without_root_paths
from ..presets import PRESET_NOTES, PRESETS, preset_header

HELP = "print a complete, commented YAML configuration (every field with its default); --list-presets"


def add_arguments(p):
    p.add_argument("--preset", default="default", choices=sorted(PRESETS),
                   help="named preset to start from: one per experiment of the paper and its variants, and cpu-fast / "
                        "cpu-quality for your own folders on a CPU (see --list-presets)")
    p.add_argument("--list-presets", action="store_true",
                   help="list the presets with what each reproduces and the prepare command of its data")
    p.add_argument("--config", default=None, help="YAML file to apply on top of the preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one field (value parsed as YAML); repeatable")


def run(args) -> int:
    if args.list_presets:
        for name in PRESETS:
            summary, command, _ = PRESET_NOTES[name]
            print(f"{name}\n    {summary}")
            if command:
                print(f"    data: {command}")
        return 0
    cfg = build_config(args.config, args.overrides, preset=args.preset)
    print(to_commented_yaml(without_root_paths(cfg), header=preset_header(args.preset)))
    return 0
