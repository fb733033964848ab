"""``deepcascade demo``: the whole method on built-in synthetic zebra-like / giraffe-like domains.

Generates the data, trains every stage with the preset ``cpu-fast`` (``--long``: ``cpu-quality``; the presets
are the one source of the recipe, :mod:`deepcascade.presets`), translates the test images both ways with
per-level strips, measures how far the translations moved toward the target domain, evaluates the run, trains a
small deepVAE per domain and shows a grid of its samples with their collapse ratio (the synthesis panel), and
writes ``OUT/index.html`` (``OUT/long/index.html`` for ``--long``, ``OUT/quick/`` for ``--quick``).

It only ever replaces files it wrote itself (:func:`claim_pages`): a page folder holding a file of the user's
is refused before any work.

Measurement: :func:`deepcascade.data.synthetic.domain_score` estimates the animal's bounding-box aspect ratio
(height / width) from pixels; zebra-like A is below 1, giraffe-like B above. The demo reports the share of
translations scored as the target domain, beside the same share for the untranslated sources.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..domains import DIRECTIONS, DOMAINS
from ..errors import UserError

log = logging.getLogger("deepcascade")


@dataclass(frozen=True)
class DemoMode:
    """One demo variant: the preset it trains, the synthetic data it writes, and its own changes (``--quick``)."""

    preset: str
    n_train: int  # synthetic images per domain
    n_test: int
    overrides: dict = field(default_factory=dict)  # on top of the preset: only --quick's tiny step counts


# "quick": the tests' under-a-minute run (every stage a few steps); "demo": cpu-fast on 300 images per domain;
# "long" (``demo --long``, the quality setting): cpu-quality on twice the data at 96 px.
MODES = {
    "quick": DemoMode("cpu-fast", 12, 4, {"invert": {"steps": 3, "final_steps": 0, "batch_size": 4},
                                          "deep": {"steps": 3, "batch_size": 4},
                                          "cascade": {"steps": 3, "batch_size": 4},
                                          "synth": {"vae_steps": 3, "steps": 2, "batch_size": 4}}),
    "demo": DemoMode("cpu-fast", 300, 40),
    "long": DemoMode("cpu-quality", 600, 100),
}
SYNTH_SAMPLES = 16  # per domain, shown as a grid on the demo's page
COLLAPSE_TARGET = 0.5  # a panel below it is called too small a budget on the page
REAL_SAMPLES_PRESET = "synthetic-synth"  # the preset whose deepVAE makes varied samples (docs/measurements.md)
BACKBONE_SAID = {"efficientnet_lite0_s16": "EfficientNet-Lite0 with its packaged ImageNet weights, cut at stride 16",
                 "vgg19": "VGG-19 with ImageNet weights"}


def demo_config(mode: str, data_dir: Path, device: str = "auto"):
    """The preset of ``mode`` with the demo's data folder and device (and ``--quick``'s step counts)."""
    from ..config import build_config

    m = MODES[mode]
    return build_config(preset=m.preset, extra={"data": {"root": str(data_dir)}, "engine": {"device": device},
                                                **m.overrides})


def target_share(images: list[Image.Image], target: str) -> float:
    """Share of images whose estimated silhouette aspect puts them in domain ``target``."""
    from ..data.synthetic import ASPECT_THRESHOLD, domain_score

    scores = np.array([domain_score(im) for im in images])
    hits = scores > ASPECT_THRESHOLD if target == "B" else scores <= ASPECT_THRESHOLD
    return float(hits.mean()) if len(scores) else float("nan")


def measure(translator, rows: list[dict], target: str) -> dict:
    """Share scored as ``target`` for the sources, their untranslated reconstructions I_final(e_final(source))
    (same inversion artefacts, no translation) and the translations. A blurred or empty image has a low
    aspect and scores as A, so read a direction against its reconstruction baseline, and both directions
    together: the balanced figure is the mean over directions."""
    import torch

    from ..data.transforms import to_pil, to_tensor

    sources = [Image.open(r["source"]).convert("RGB") for r in rows]
    recon = translator.reconstruct_tensor(torch.stack([to_tensor(s) for s in sources]))
    return {"images": len(rows), "source_share_target": target_share(sources, target),
            "reconstruction_share_target": target_share([to_pil(t) for t in recon], target),
            "translated_share_target": target_share([Image.open(r["result"]).convert("RGB") for r in rows], target)}


def pages_dir(out: Path, mode: str) -> Path:
    """Where a mode writes its pages, translations, evaluation and ``demo.json``: ``out`` for the demo, ``out/long``
    and ``out/quick`` for the others, so that one ``--out`` holds every mode's results (data and runs sit beside
    them as ``data-long``, ``run-long``...)."""
    return out if mode == "demo" else out / mode


PAGE_FOLDERS = ("a2b", "b2a", "eval", "synth_a", "synth_b", "eval_synth_a", "eval_synth_b")


def _our_report(path: Path) -> bool:
    """True for a ``demo.json`` a demo wrote."""
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("mode") in MODES and {"backbone", "balanced_translated"} <= set(data)


def claim_pages(pages: Path) -> None:
    """Refuse a page folder where the demo would replace a file it did not write, before any work.

    The demo's own files are recognised as ``translate`` and ``evaluate`` recognise theirs: its pages carry
    deepcascade's generator mark (:func:`~deepcascade.outputs.html.is_our_page`), ``demo.json`` its own keys;
    ``summary.png`` is the demo's only beside its ``demo.json``, and each sub-folder (translations, evaluation,
    synthesis) is the demo's only when its ``index.html`` is a deepcascade page. The steps below then replace
    their own earlier outputs (overwrite) and nothing else."""
    from ..outputs.html import is_our_page

    report_ours = _our_report(pages / "demo.json")
    foreign = []
    if (pages / "index.html").exists() and not is_our_page(pages / "index.html"):
        foreign.append(pages / "index.html")
    if (pages / "demo.json").exists() and not report_ours:
        foreign.append(pages / "demo.json")
    if (pages / "summary.png").exists() and not report_ours:
        foreign.append(pages / "summary.png")
    for name in PAGE_FOLDERS:
        folder = pages / name
        if folder.exists() and not folder.is_dir():
            foreign.append(folder)
        elif folder.is_dir() and any(folder.iterdir()) and not is_our_page(folder / "index.html"):
            foreign.append(folder)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise UserError(f"{foreign[0]}{more} was not written by deepcascade demo, which never replaces a file it "
                        f"did not write; move it away, or give another --out")


def run_demo(out: str | Path, mode: str = "demo", device: str = "auto", seed: int = 0) -> dict:
    """Run the demo (``mode`` in :data:`MODES`) into ``out``; returns the measurements (also written to
    ``demo.json`` beside its page)."""
    from ..data.synthetic import is_complete, read_meta, same_params, write_dataset
    from ..data.synthetic.animals import VERSION
    from ..inference.translate_folder import translate_folder
    from ..inference.translator import Translator
    from ..outputs.html import write_index
    from ..stages.pipeline import run_training

    t_start = time.time()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file; give a directory")
    if mode not in MODES:
        raise UserError(f"demo mode must be one of {', '.join(MODES)}, got {mode!r}")
    m = MODES[mode]
    pages = pages_dir(out, mode)
    claim_pages(pages)
    # each mode keeps its own data and run, so one --out can hold the demo and its --long version
    suffix = "" if mode == "demo" else f"-{mode}"
    data_dir, run_dir = out / f"data{suffix}", out / f"run{suffix}"
    cfg = demo_config(mode, data_dir, device)
    size = cfg.data.image_size
    said = BACKBONE_SAID.get(cfg.backbone.name, cfg.backbone.name)
    print(f"preset {m.preset}{' (steps cut to a few for --quick)' if m.overrides else ''}; backbone: {said}")
    meta = read_meta(data_dir)
    # its run was trained on other images: nothing to reuse (checked before write_dataset, which would refuse too
    # but point to an --overwrite that demo does not have)
    if meta is not None and not same_params(meta, seed, size):
        raise UserError(f"{out} holds a demo trained on other synthetic images (data version {meta.get('version')}, "
                        f"{meta.get('size')} px, seed {meta.get('seed')}; this demo writes version {VERSION}, "
                        f"{size} px, seed {seed}); delete {out} or give another --out")
    if not is_complete(data_dir, n=m.n_train, size=size, seed=seed, n_test=m.n_test):
        print(f"writing synthetic data ({m.n_train} training + {m.n_test} test images per domain) to {data_dir}")
        write_dataset(data_dir, n=m.n_train, size=size, seed=seed, n_test=m.n_test, progress=False)
    cfg = demo_config(mode, data_dir, device)  # again, now that data.root's test folders exist to be filled in
    print(f"training every stage into {run_dir} (re-running the demo resumes where it stopped)")
    run_training(cfg, run_dir, "all")
    t_train = time.time() - t_start

    translator = Translator.from_run(run_dir, device=device)
    report = {"backbone": cfg.backbone.name, "mode": mode, "preset": m.preset, "image_size": size,
              "train_seconds": round(t_train, 1)}
    rows = []
    for direction, src, target in (("a2b", "testA", "B"), ("b2a", "testB", "A")):
        # overwrite: claim_pages found the folder empty or the demo's own
        res = translate_folder(run_dir, data_dir / src, pages / direction, direction=direction, save_levels=True,
                               translator=translator, overwrite=True)
        report[direction] = measure(translator, res["rows"], target)
        rows += [{**r, "name": f"{direction}: {r['name']}"} for r in res["rows"]]
    report["balanced_translated"] = (report["a2b"]["translated_share_target"]
                                     + report["b2a"]["translated_share_target"]) / 2
    report["balanced_reconstruction"] = (report["a2b"]["reconstruction_share_target"]
                                         + report["b2a"]["reconstruction_share_target"]) / 2
    report["evaluation"] = _evaluate(run_dir, pages / "eval", device, translator)
    report["synthesis"], synth_rows = synthesis_panel(run_dir, pages, data_dir, translator, device, seed,
                                                      SYNTH_SAMPLES)
    report["total_seconds"] = round(time.time() - t_start, 1)
    (pages / "demo.json").write_text(json.dumps(report, indent=2))
    notes = [f"Preset {m.preset}; backbone: {said}. Image size {size} px; cascade 5 -> 4 -> 3; trained in "
             f"{t_train / 60:.1f} min.",
             "levels: source | I_5(translated conv_5_1) | I_4(translated level 4) | I_3(translated level 3) "
             "- the coarse-to-fine strips of the paper's figures 15-16.",
             *(f"{d}: {report[d]['translated_share_target']:.0%} of translations look like the target domain by "
               f"silhouette aspect ratio (untranslated reconstructions: {report[d]['reconstruction_share_target']:.0%}, "
               f"sources: {report[d]['source_share_target']:.0%})" for d in DIRECTIONS),
             f"Both directions together: {report['balanced_translated']:.0%} of translations vs "
             f"{report['balanced_reconstruction']:.0%} of reconstructions classified as the target (50% = chance).",
             *synthesis_notes(report["synthesis"], cfg),
             "Per-direction pages: a2b/index.html, b2a/index.html; synthesis: synth_a/index.html, "
             f"synth_b/index.html. Training samples: {os.path.relpath(run_dir / 'samples', pages)}/.",
             f"To ship or show the run: deepcascade export --run {run_dir} --direction a2b (one ONNX file that runs "
             f"without torch), deepcascade serve --run {run_dir} --eval {pages / 'eval'} (a local page); "
             f"docs/deployment.md.",
             "deepcascade evaluate (eval/index.html, eval/metrics.json; see docs/evaluation.md):",
             *report["evaluation"]["summary"]]
    write_index(pages, "deepcascade demo: zebra-like (A) <-> giraffe-like (B)", ["source", "result", "levels"],
                rows + synth_rows, notes)
    _summary_png(rows, pages / "summary.png")
    return report


def _evaluate(run_dir: Path, out: Path, device: str, translator) -> dict:
    """``deepcascade evaluate`` on the demo's run: every measure that can be computed here, printed."""
    from ..evaluation.report import summary_lines
    from ..evaluation.entry_points import evaluate_run
    from ..evaluation.plan import Options

    print(f"evaluating the run into {out}")
    metrics = evaluate_run(run_dir, out, opts=Options(device=device), translator=translator)
    lines = summary_lines(metrics)
    for line in lines:
        print(f"  {line}")
    keys = ("target_share", "real_accuracy", "silhouette_target_share", "collapse_ratio", "centre_shift")
    return {**{d: {k: metrics[d][k] for k in keys} for d in DIRECTIONS}, "summary": lines}


def synthesis_panel(run_dir: Path, out: Path, data_dir: Path, translator, device: str, seed: int, n: int
                    ) -> tuple[dict, list[dict]]:
    """``n`` deepVAE samples of each domain into ``out/synth_a`` and ``out/synth_b`` (``deepcascade synthesize``'s
    folder: images, grid, level strips, page), and their measures: the share of samples whose silhouette aspect
    is their own domain's, beside the same share for the I_3 reconstructions of the domain's test images (the
    inversion's blur alone moves the aspect estimate); and the samples' collapse ratio against the domain's test
    images, as ``deepcascade evaluate --fake`` computes it (its report in ``out/eval_synth_a``, ``_b``). Returns
    them with one row per domain for the demo's page: the grid, and the strip I_5 | I_4 | I_3 of the first
    sample."""
    import torch

    from ..data.transforms import to_pil, to_tensor
    from ..evaluation.entry_points import evaluate_folders
    from ..evaluation.plan import Options
    from ..inference.synthesize_folder import synthesize_folder
    from ..inference.synthesizer import Synthesizer

    print("synthesizing new images of each domain with its deepVAE")
    synth = Synthesizer.from_run(run_dir, device=device)
    report, rows = {}, []
    for d in DOMAINS:
        res = synthesize_folder(run_dir, out / f"synth_{d}", d, n, seed, save_levels=True, overwrite=True,
                                synthesizer=synth)  # overwrite: claim_pages found the folder empty or the demo's
        images = [Image.open(r["sample"]).convert("RGB") for r in res["rows"]]
        test = data_dir / f"test{d.upper()}"
        real = sorted(test.glob("*.png"))[:n]
        recon = translator.reconstruct_tensor(torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in real]))
        direction = "b2a" if d == "a" else "a2b"  # the samples are scored as images of domain d
        metrics = evaluate_folders(str(out / f"synth_{d}"), str(test), out / f"eval_synth_{d}", direction=direction,
                                   opts=Options(metrics=("collapse",), device=device))
        report[d] = {"images": len(images), "share_own_domain": target_share(images, d.upper()),
                     "reconstruction_share_own_domain": target_share([to_pil(t) for t in recon], d.upper()),
                     "collapse_ratio": metrics[direction]["collapse_ratio"],
                     "collapse_reals": metrics[direction]["images"]["real"]}
        rows.append({"name": f"synthesized {d.upper()} (deepVAE, {n} samples; levels: the first)",
                     "result": res["grid"], "levels": res["rows"][0]["levels"]})
    return report, rows


def synthesis_notes(report: dict, cfg) -> list[str]:
    """The synthesis panel's lines on the demo's page: what the samples are, their measures, and whether the
    budget made varied samples (collapse ratio >= :data:`COLLAPSE_TARGET` in both domains)."""
    s = cfg.synth
    lines = [f"Synthesis (deepVAE of each domain, z_5 -> G_5 -> G_4 -> G_3 -> I_3; docs/method.md section 6; "
             f"{s.vae_steps} VAE steps, {s.steps} steps per level): "
             + "; ".join(f"{report[d]['share_own_domain']:.0%} of the {report[d]['images']} samples of {d.upper()} "
                         f"have {d.upper()}'s silhouette aspect (I_3 reconstructions of real {d.upper()} test images: "
                         f"{report[d]['reconstruction_share_own_domain']:.0%})" for d in DOMAINS) + "."]
    ratios = {d: report[d]["collapse_ratio"] for d in DOMAINS}
    shown = "; ".join(f"{d.upper()} {'not computed' if r is None else f'{r:.2f}'}" for d, r in ratios.items())
    lines.append(f"Collapse ratio of the samples (their diversity / that of the {report['a']['collapse_reals']} real "
                 f"test images of the domain; 1 = as varied as real images, 0 = one image repeated; "
                 f"eval_synth_a/, eval_synth_b/): {shown}.")
    if all(r is not None and r >= COLLAPSE_TARGET for r in ratios.values()):
        lines.append(f"Both at least {COLLAPSE_TARGET}: the samples are not one image repeated; they vary less "
                     f"than real images do (1.0).")
    else:
        lines.append(f"Below {COLLAPSE_TARGET}: this budget is too small for varied samples; the panel shows "
                     f"what each domain's deepVAE learned first, its typical layout. The preset "
                     f"{REAL_SAMPLES_PRESET} makes real samples (collapse ratio 0.55 and 0.63, about 46 CPU "
                     f"minutes: docs/measurements.md, deepVAE).")
    return lines


def _summary_png(rows: list[dict], path: Path, per_direction: int = 3) -> None:
    """A small picture for the README: a few strips of each direction stacked."""
    from ..outputs.grids import save_image_atomic

    picks = []
    for d in DIRECTIONS:
        picks += [r["levels"] for r in rows if r["name"].startswith(d)][:per_direction]
    strips = [Image.open(p).convert("RGB") for p in picks]
    if not strips:
        return
    w, h = max(s.width for s in strips), sum(s.height for s in strips) + 2 * (len(strips) - 1)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    y = 0
    for s in strips:
        canvas.paste(s, (0, y))
        y += s.height + 2
    save_image_atomic(canvas, path)
