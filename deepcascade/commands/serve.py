"""``deepcascade serve``: a local web page (gradio) to translate images with a run and sample its deepVAEs.

Listens on 127.0.0.1 unless ``--host`` says otherwise; requests queue, ``--concurrency`` at a time. Nothing is
written into the run directory (with ``--optimize``, only torch.compile's cache in ``RUN/cache/compiled``).
Needs ``pip install 'deepcascade[serve]'``. docs/deployment.md shows the page.
"""

from __future__ import annotations

import signal

from ..precision import OPTIMIZE_HELP, PRECISION_HELP_OPTIMIZE, PRECISIONS

HELP = "a local web page to translate images with a run (gradio; 127.0.0.1 by default)"


def add_arguments(p):
    p.add_argument("--run", required=True, help="run directory trained by `deepcascade train`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0: every network interface, with no login)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on")
    p.add_argument("--concurrency", type=int, default=1, help="requests computed at a time (others queue)")
    p.add_argument("--eval", default=None,
                   help="folder of the run's `deepcascade evaluate` report to show (default RUN/eval; the demo's: "
                        "OUT/eval)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--precision", default=None, choices=PRECISIONS, help=PRECISION_HELP_OPTIMIZE)
    p.add_argument("--optimize", action="store_true",
                   help=OPTIMIZE_HELP + "; both directions are compiled before the page is served")


def run(args) -> int:
    from ..apps.web import build_app, import_gradio, launch, ServeSession
    from ..errors import UserError

    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    if args.concurrency < 1:
        raise UserError(f"--concurrency must be >= 1, got {args.concurrency}")
    import_gradio()  # a missing extra is named before the run's networks load
    session = ServeSession(args.run, device=args.device, eval_dir=args.eval, precision=args.precision,
                           optimize=args.optimize)
    app = build_app(session, concurrency=args.concurrency)
    url = launch(app, args.host, args.port)
    print(f"serving {args.run} at {url} (Ctrl-C to stop)", flush=True)
    signal.signal(signal.SIGTERM, _stop)  # `kill` stops it like Ctrl-C: the session's temporary folder goes too
    try:
        app.block_thread()
    finally:
        app.close()
    return 0


def _stop(signum, frame):
    raise KeyboardInterrupt
