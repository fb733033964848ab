"""The ``deepcascade`` command line. Each subcommand lives in ``deepcascade/commands/<name>.py`` and
defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; it is listed when its module exists.

User errors (bad flag, bad config, missing file) exit with code 2 and one message, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import __version__, commands
from .errors import TrainingStopped, UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deepcascade", formatter_class=_Formatter,
                     description="Cross-domain cascaded deep translation (Katzir et al., ECCV 2020).")
    parser.add_argument("--version", action="version", version=f"deepcascade {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        p = sub.add_parser(info.name.replace("_", "-"), help=mod.HELP, description=mod.HELP,
                           formatter_class=_Formatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def setup_logging(verbose: bool = False) -> None:
    root = logging.getLogger("deepcascade")
    if not any(getattr(h, "_deepcascade", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._deepcascade = True
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        print(f"deepcascade {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except TrainingStopped as e:
        print(f"deepcascade {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
