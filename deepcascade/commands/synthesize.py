"""``deepcascade synthesize``: new images of one domain from a run's deepVAE; writes a grid and an HTML page.

Layout of ``--out``: ``sample_0000.png`` ... (one per image), ``grid.png`` (the first 64), ``_levels/`` the
per-level strips I_5 | I_4 | I_3 with ``--save-levels``, ``interpolation.png`` with ``--interpolate``,
``index.html`` (the first 64 samples), ``synthesis.json`` (every sample's name). The same ``--seed`` writes the
same files. Samples are written ``--batch-size`` at a time: memory does not grow with ``--n``.
"""

from __future__ import annotations

from pathlib import Path

from ..precision import PRECISION_HELP, PRECISIONS

HELP = "synthesize new images of one domain with a run's deepVAE (train --stage synth); writes index.html"


def add_arguments(p):
    p.add_argument("--run", required=True, help="run directory trained by `deepcascade train --stage synth`")
    p.add_argument("--domain", required=True, choices=["a", "b"], help="which domain's deepVAE to sample")
    p.add_argument("--n", type=int, default=64,
                   help="number of images (written batch by batch; the grid and the page show the first 64)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent codes: the same seed, the same images")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="scale of the latent codes (below 1: more typical, less varied samples)")
    p.add_argument("--final-level", type=int, default=None, choices=[1, 2, 3, 4, 5],
                   help="shallowest level to synthesize (default: the deepest trained down to synth.final_level)")
    p.add_argument("--save-levels", action="store_true",
                   help="also write a strip per image: I_5(level 5) | I_4(level 4) | I_3(level 3)")
    p.add_argument("--interpolate", type=int, nargs="?", const=8, default=0, metavar="STEPS",
                   help="also write interpolation.png: 4 rows, each walking in STEPS (2 to 64, default 8) steps "
                        "between the latent codes of two samples")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--overwrite", action="store_true",
                   help="replace output files that already exist (never an input file); without it a folder that "
                        "holds any of them is refused, so that one folder never mixes two seeds")


def run(args) -> int:
    from ..inference.synthesize_folder import synthesize_folder

    summary = synthesize_folder(args.run, args.out, args.domain, args.n, args.seed, args.temperature,
                                args.final_level, args.save_levels, args.interpolate, args.batch_size, args.device,
                                args.overwrite, precision=args.precision)
    print(f"synthesized {summary['written']} image(s) of domain {args.domain.upper()} -> {args.out}")
    print(f"open {Path(args.out) / 'index.html'}")
    return 0
