"""The ``deepcascade`` command line. Each subcommand lives in ``deepcascade/commands/<name>.py`` and
defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; it is listed when its module exists.

User errors (bad flag, bad config, missing file) exit with code 2 and one message, never a traceback.

Closed or broken standard streams end no command with a traceback: when stdout's reader goes away
(``deepcascade config | head``) the command stops quietly with exit code 141 (128 + SIGPIPE, like other Unix
tools); a closed or broken stderr only silences the messages, the command goes on; a stream closed before the
start (``>&-``, ``2>&-``) is replaced by ``/dev/null`` so that no file the command opens takes its descriptor.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import pkgutil
import sys

from . import commands
from .version import __version__
from .errors import TrainingStopped, UserError
from .progress import ENV as PROGRESS_ENV


EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE: what a Unix tool killed by a closed pipe reports


class _StdoutClosed(BaseException):
    """stdout's reader went away: nothing more can be shown, so the command stops (caught in :func:`main`)."""


def _broken(e: BaseException) -> bool:
    return isinstance(e, BrokenPipeError) or (isinstance(e, OSError) and e.errno in (errno.EPIPE, errno.EBADF))


def _devnull_onto(stream) -> None:
    """Point ``stream``'s descriptor at /dev/null, so that its buffered bytes (flushed at exit) go nowhere."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


class _Guarded:
    """A text stream that survives its reader: on a broken pipe or closed file it switches to /dev/null and,
    for stdout, raises :class:`_StdoutClosed` once."""

    def __init__(self, stream, is_stdout: bool):
        self._stream = stream if stream is not None else open(os.devnull, "w")
        self._is_stdout = is_stdout
        self.closed_by_reader = False

    def _failed(self, e: BaseException) -> None:
        if _broken(e):
            _devnull_onto(self._stream)
        self._stream = open(os.devnull, "w")
        if self._is_stdout and not self.closed_by_reader:
            self.closed_by_reader = True
            raise _StdoutClosed() from None

    def write(self, text):
        try:
            return self._stream.write(text)
        except (OSError, ValueError) as e:
            self._failed(e)
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except (OSError, ValueError) as e:
            self._failed(e)

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _reserve_standard_fds() -> None:
    """Descriptors 0-2 closed at start (``>&-``) would be handed to the next file opened (a checkpoint, a lock)
    and anything written to "stdout" or "stderr" would land in it: give them /dev/null first."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


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
    parser.add_argument("--progress-every", type=float, default=None, metavar="SECONDS",
                        help="when stderr is not a terminal: seconds between progress lines (0: none; default "
                             f"${PROGRESS_ENV} or 30)")
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
    _reserve_standard_fds()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Guarded(sys.stdout, True), _Guarded(sys.stderr, False)
    try:
        try:
            rc = _main(argv)
        except SystemExit as e:  # argparse: --help, --version, usage errors
            sys.stdout.flush()
            raise
        sys.stdout.flush()
        return rc
    except _StdoutClosed:
        return EXIT_STDOUT_CLOSED
    finally:
        sys.stdout, sys.stderr = saved


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if args.progress_every is not None:
        if args.progress_every < 0:
            parser.error(f"--progress-every must be >= 0, got {args.progress_every}")
        os.environ[PROGRESS_ENV] = str(args.progress_every)
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
