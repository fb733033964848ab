"""``deepcascade synthesize``: new images of one domain from a run's deepVAE; writes a grid and an HTML page.

Layout of ``--out``: ``sample_0000.png`` ... (one per image), ``grid.png`` (all of them), ``_levels/`` the
per-level strips I_5 | I_4 | I_3 with ``--save-levels``, ``interpolation.png`` with ``--interpolate``,
``index.html``. The same ``--seed`` writes the same files.
"""

from __future__ import annotations

HELP = "synthesize new images of one domain with a run's deepVAE (train --stage synth); writes index.html"


def add_arguments(p):
    p.add_argument("--run", required=True, help="run directory trained by `deepcascade train --stage synth`")
    p.add_argument("--domain", required=True, choices=["a", "b"], help="which domain's deepVAE to sample")
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent codes: the same seed, the same images")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="scale of the latent codes (below 1: more typical, less varied samples)")
    p.add_argument("--final-level", type=int, default=None, choices=[1, 2, 3, 4, 5],
                   help="shallowest level to synthesize (default: the deepest trained down to synth.final_level)")
    p.add_argument("--save-levels", action="store_true",
                   help="also write a strip per image: I_5(level 5) | I_4(level 4) | I_3(level 3)")
    p.add_argument("--interpolate", type=int, nargs="?", const=8, default=0, metavar="STEPS",
                   help="also write interpolation.png: 4 rows, each walking in STEPS (default 8) steps between "
                        "the latent codes of two samples")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")


def run(args) -> int:
    from pathlib import Path

    import torch

    from ..data.transforms import to_pil
    from ..errors import UserError
    from ..inference.synthesizer import Synthesizer
    from ..outputs.grids import save_grid, save_image_atomic
    from ..outputs.html import write_index

    if args.n < 1:
        raise UserError(f"--n must be >= 1, got {args.n}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.interpolate == 1 or args.interpolate < 0:
        raise UserError(f"--interpolate needs at least 2 steps, got {args.interpolate}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file; give a folder")
    synth = Synthesizer.from_run(args.run, device=args.device)
    images, levels = synth.sample(args.n, args.domain, args.seed, args.temperature, args.final_level,
                                  return_levels=True, as_tensor=True, batch_size=args.batch_size)
    rows = []

    def write(image: torch.Tensor, path: Path) -> Path:
        try:
            save_image_atomic(to_pil(image), path)
        except OSError as e:
            raise UserError(f"cannot write {path}: {type(e).__name__}: {e}") from None
        return path

    for i, image in enumerate(images):
        name = f"sample_{i:04d}.png"
        row = {"name": name, "sample": write(image, out / name)}
        if args.save_levels:
            strip = torch.cat([levels[l][i] for l in sorted(levels, reverse=True)], dim=2)
            row["levels"] = write(strip, out / "_levels" / name)
        rows.append(row)
    per_row = max(1, round(len(images) ** 0.5))
    pad = (-len(images)) % per_row
    tiles = torch.cat([images, torch.ones(pad, *images.shape[1:])]) if pad else images
    save_grid(list(tiles.view(-1, per_row, *images.shape[1:]).unbind(1)), out / "grid.png")
    extra = [{"name": f"grid of all {len(images)}", "sample": out / "grid.png"}]
    if args.interpolate:
        walk = synth.interpolate(4, args.interpolate, args.domain, args.seed, args.temperature, args.final_level)
        save_grid(list(walk.unbind(1)), out / "interpolation.png")
        extra.append({"name": "interpolation (row r: sample 2r -> sample 2r+1)", "sample": out / "interpolation.png"})
    final = min(levels)  # the final level always has its inversion network (decode checks it)
    notes = [f"run: {Path(args.run).resolve()}; domain {args.domain.upper()}; seed {args.seed}; temperature "
             f"{args.temperature:g}; {len(images)} image(s) from z_5 -> G_5 -> ... -> G_{final} -> I_{final}."]
    if args.save_levels:
        notes.append("levels: " + " | ".join(f"I_{l}(synthesized level {l})" for l in sorted(levels, reverse=True)))
    columns = ["sample"] + (["levels"] if args.save_levels else [])
    write_index(out, f"deepcascade synthesis: domain {args.domain.upper()}", columns, extra + rows, notes)
    print(f"synthesized {len(images)} image(s) of domain {args.domain.upper()} -> {out}")
    print(f"open {out / 'index.html'}")
    return 0
