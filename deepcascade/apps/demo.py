"""``deepcascade demo``: the whole method on built-in synthetic zebra-like / giraffe-like domains.

Generates the data, trains every stage (statistics and cache, inversion I_5..I_3, level-5 translation,
cascade levels 4 and 3) at a small size with a step budget of about 13 CPU minutes (one thread),
translates the test images both ways with per-level strips, measures how far the translations moved toward
the target domain, trains a small deepVAE per domain and shows a grid of its samples (the synthesis panel), and
writes ``OUT/index.html`` (``OUT/long/index.html`` for ``--long``).

Backbone: VGG-19 ImageNet weights when they can be had (hub cache, ``DEEPCASCADE_VGG19_WEIGHTS``, or a
download), else the EfficientNet-Lite0 ImageNet weights that ship inside a pip package, cut at stride 16
(``efficientnet_lite0_s16``); the demo says which.
Measurement: :func:`deepcascade.data.synthetic.domain_score` estimates the animal's bounding-box aspect ratio
(height / width) from pixels; zebra-like A is below 1, giraffe-like B above. The demo reports the share of
translations scored as the target domain, beside the same share for the untranslated sources.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError

log = logging.getLogger("deepcascade")


@dataclass
class DemoPlan:
    """Sizes and step budgets of one demo variant."""

    n_train: int
    n_test: int
    image_size: int
    invert_steps: int  # per level (I_5, I_4, I_3)
    deep_steps: int
    cascade_steps: int  # per level (4, 3)
    batch_size: int
    invert_final_steps: int = 0  # I_3, which makes the translations (0: invert_steps); B->A judged A: 38 % after
    # 300 steps, 85 % after 1000 (without its PatchGAN term, docs/measurements.md)


# load_size == image_size: one training crop per image (flips are the only augmentation), the cheapest cache.
# Level 5 must be at least 4x4 for the translators to keep the layout (deep.min_bottleneck): the backbones run
# with level 5 at stride 16 (VGG-19's conv_5_1, EfficientNet-Lite0 cut at block 10), 4x4 at the demo's 64 px.
# Modes: "quick" (the tests' under-a-minute run), "demo" (about 13 CPU minutes; v5's steps, I_3 1000, level 5
# 1000, cascade 300 per level, cut by 30-40 % once the data placed both domains' animals alike: every measure
# kept its target), "long" (``demo --long``, the quality setting: twice the data at 96 px, level 5 6x6; fewer
# steps than its 64-px predecessor (I_5 and I_4 300 instead of 600, level 5 1000 instead of 2500, cascade 300
# instead of 600 per level, I_3 800 instead of 1000) to stay within 40-45 CPU minutes. B->A's centre shift fell
# from 0.053 to 0.036-0.039, A->B's stayed at 0.07-0.08 over four training seeds; more I_3, level-5 or cascade
# steps did not lower it by more than the seeds' spread).
# Budgets and figures: docs/measurements.md.
PLANS = {
    "quick": DemoPlan(12, 4, 64, 3, 3, 3, 4),
    "demo": DemoPlan(300, 40, 64, 300, 700, 200, 8, invert_final_steps=600),
    "long": DemoPlan(600, 100, 96, 300, 1000, 300, 8, invert_final_steps=800),
}
MODES = ("quick", "demo", "long")
# What the demo changes from the paper's defaults so that a few hundred steps show something: narrower
# critics and AdaIN predictors (512 channels in the paper), higher learning rates (1e-4 in the paper: after
# 200 steps the inversion is still a blur and the translators have collapsed to one output per domain, see
# tests/test_deep_stage.py), the PatchGAN term only for I_3, whose output is the translation (it took B->A's
# judge share from 88 % to 100 % and the zebra reconstructions' centre shift from 0.082 to 0.034), with a
# discriminator half pix2pix's width (32: an I_3 step costs 0.3 s instead of 0.67 s), inversion networks at
# least 128 wide (EfficientNet-Lite0's levels are 24-112 channels: see invert.width), and the cascade's
# up-consistency term (cascade.lambda_up: the translated level pushed through the backbone must give back the
# deeper translation it came from; A->B silhouette share of the level-4 output 85 % -> 97 %) with 64-wide cascade
# critics (level 3's step 40 % cheaper, the figures within the noise of 40 test images). The layout terms
# (deep/cascade.lambda_layout) stay off: on data whose domains place their animals alike they made every measure
# worse (docs/measurements.md). I_3's edge term (invert.lambda_gradient 1: real giraffes' legs survive the
# inversion, the silhouette it moves fell from 0.043 to 0.020 of the side at 96 px) and a moving average of the
# translators' weights (ema_decay 0.99: over four training seeds of `demo --long`, A->B's centre shift
# 0.074 +- 0.003 instead of 0.078 +- 0.007) cost no measurable time.
DEMO_OVERRIDES = {"invert": {"lr": 1e-3, "width": 128, "adv_levels": "final", "disc_width": 32,
                             "lambda_gradient": 1.0},
                  "deep": {"critic_width": 256, "lr": 5e-4, "ema_decay": 0.99},
                  "cascade": {"critic_width": 64, "predictor_width": 128, "lr": 5e-4, "lambda_up": 100.0,
                              "ema_decay": 0.99}}


@dataclass
class DemoSynth:
    """Budget of the demo's synthesis panel: one deepVAE per domain (levels 5, 4, 3), trained after translation."""

    vae_steps: int  # level 5 (the VAE: cheap steps, and where the animal's shape and place are decided)
    steps: int  # per conditional level (4, 3): each is n_critic critic updates and a generator update
    batch_size: int
    samples: int  # per domain, shown as a grid on the demo's page


# Under a minute of the full demo on 2 CPU cores, 30 s of --quick at most (docs/measurements.md, deepVAE).
SYNTH_PLANS = {"demo": DemoSynth(200, 50, 8, 16), "long": DemoSynth(600, 200, 8, 16), "quick": DemoSynth(3, 2, 4, 16)}
# Narrower critics and z-mappings than the defaults (256), two critic updates per generator update instead of
# four, and the demo's higher learning rate: a few dozen steps per level, not the paper's thousands.
SYNTH_SETTINGS = {"critic_width": 128, "mapping_width": 128, "n_critic": 2, "lr": 5e-4}


def choose_backbone() -> tuple[str, str]:
    """'vgg19' when VGG-19 ImageNet weights load, else 'efficientnet_lite0_s16' (the packaged EfficientNet-Lite0
    weights, cut at stride 16 so that level 5 is 4x4 at the demo's 64 px), with a sentence saying which."""
    from ..backbones import build_backbone

    try:
        build_backbone("vgg19", "imagenet")
        return "vgg19", "VGG-19 with ImageNet weights"
    except UserError as e:
        log.info("VGG-19 ImageNet weights not available (%s)", str(e).split(". Put")[0])
    build_backbone("efficientnet_lite0_s16", "imagenet")
    return "efficientnet_lite0_s16", ("EfficientNet-Lite0 with its packaged ImageNet weights, cut at stride 16 "
                                      "(VGG-19 weights were not found: see the README to add them)")


def demo_config(plan: DemoPlan, backbone: str, data_dir: Path, device: str, synth: DemoSynth | None = None):
    from ..config import build_config

    return build_config(extra={
        "name": "demo",
        "data": {"root": str(data_dir), "image_size": plan.image_size, "load_size": plan.image_size, "workers": 2},
        "backbone": {"name": backbone, "weights": "imagenet"},
        "engine": {"device": device, "checkpoint_every": 100, "log_every": 25, "sample_every": 100},
        "invert": {"levels": [5, 4, 3], "steps": plan.invert_steps, "final_steps": plan.invert_final_steps,
                   "batch_size": plan.batch_size,
                   **DEMO_OVERRIDES["invert"]},
        "deep": {"steps": plan.deep_steps, "batch_size": plan.batch_size, **DEMO_OVERRIDES["deep"]},
        "cascade": {"final_level": 3, "steps": plan.cascade_steps, "batch_size": plan.batch_size,
                    **DEMO_OVERRIDES["cascade"]},
        **({"synth": {"enabled": True, "final_level": 3, "vae_steps": synth.vae_steps, "steps": synth.steps,
                      "batch_size": synth.batch_size, **SYNTH_SETTINGS}} if synth else {}),
    })


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


def run_demo(out: str | Path, mode: str = "demo", device: str = "auto", seed: int = 0) -> dict:
    """Run the demo (``mode`` in :data:`MODES`) into ``out``; returns the measurements (also written to
    ``out/demo.json``)."""
    from ..data.synthetic import VERSION, is_complete, read_meta, same_params, write_dataset
    from ..inference.translate_folder import translate_folder
    from ..inference.translator import Translator
    from ..outputs.html import write_index
    from ..stages.pipeline import run_training

    t_start = time.time()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file; give a directory")
    backbone, said = choose_backbone()
    print(f"backbone: {said}")
    if mode not in MODES:
        raise UserError(f"demo mode must be one of {', '.join(MODES)}, got {mode!r}")
    plan = PLANS[mode]
    # each mode keeps its own data and run, so one --out can hold the demo and its --long version
    suffix = "" if mode == "demo" else f"-{mode}"
    data_dir = out / f"data{suffix}"
    meta = read_meta(data_dir)
    # its run was trained on other images: nothing to reuse (checked before write_dataset, which would refuse too
    # but point to an --overwrite that demo does not have)
    if meta is not None and not same_params(meta, seed, plan.image_size):
        raise UserError(f"{out} holds a demo trained on other synthetic images (data version {meta.get('version')}, "
                        f"{meta.get('size')} px, seed {meta.get('seed')}; this demo writes version {VERSION}, "
                        f"{plan.image_size} px, seed {seed}); delete {out} or give another --out")
    if not is_complete(data_dir, n=plan.n_train, size=plan.image_size, seed=seed, n_test=plan.n_test):
        print(f"writing synthetic data ({plan.n_train} training + {plan.n_test} test images per domain) to {data_dir}")
        write_dataset(data_dir, n=plan.n_train, size=plan.image_size, seed=seed, n_test=plan.n_test, progress=False)
    synth_plan = SYNTH_PLANS[mode]
    cfg = demo_config(plan, backbone, data_dir, device, synth_plan)
    run_dir = out / f"run{suffix}"
    pages = pages_dir(out, mode)
    print(f"training every stage into {run_dir} (re-running the demo resumes where it stopped)")
    run_training(cfg, run_dir, "all")
    t_train = time.time() - t_start

    translator = Translator.from_run(run_dir, device=device)
    report = {"backbone": backbone, "mode": mode, "image_size": plan.image_size, "train_seconds": round(t_train, 1)}
    rows = []
    for direction, src, target in (("a2b", "testA", "B"), ("b2a", "testB", "A")):
        res = translate_folder(run_dir, data_dir / src, pages / direction, direction=direction, save_levels=True,
                               translator=translator, overwrite=True)  # its own outputs of a previous run
        report[direction] = measure(translator, res["rows"], target)
        rows += [{**r, "name": f"{direction}: {r['name']}"} for r in res["rows"]]
    report["balanced_translated"] = (report["a2b"]["translated_share_target"]
                                     + report["b2a"]["translated_share_target"]) / 2
    report["balanced_reconstruction"] = (report["a2b"]["reconstruction_share_target"]
                                         + report["b2a"]["reconstruction_share_target"]) / 2
    report["evaluation"] = _evaluate(run_dir, pages / "eval", device, translator)
    report["synthesis"], synth_rows = synthesis_panel(run_dir, pages, data_dir, translator, device, seed,
                                                      synth_plan.samples)
    report["total_seconds"] = round(time.time() - t_start, 1)
    (pages / "demo.json").write_text(json.dumps(report, indent=2))
    notes = [f"Backbone: {said}. Image size {plan.image_size} px; cascade 5 -> 4 -> 3; trained in "
             f"{t_train / 60:.1f} min.",
             "levels: source | I_5(translated conv_5_1) | I_4(translated level 4) | I_3(translated level 3) "
             "- the coarse-to-fine strips of the paper's figures 15-16.",
             *(f"{d}: {report[d]['translated_share_target']:.0%} of translations look like the target domain by "
               f"silhouette aspect ratio (untranslated reconstructions: {report[d]['reconstruction_share_target']:.0%}, "
               f"sources: {report[d]['source_share_target']:.0%})" for d in ("a2b", "b2a")),
             f"Both directions together: {report['balanced_translated']:.0%} of translations vs "
             f"{report['balanced_reconstruction']:.0%} of reconstructions classified as the target (50% = chance).",
             *synthesis_notes(report["synthesis"]),
             "Per-direction pages: a2b/index.html, b2a/index.html; synthesis: synth_a/index.html, "
             f"synth_b/index.html. Training samples: {os.path.relpath(run_dir / 'samples', pages)}/.",
             "deepcascade evaluate (eval/index.html, eval/metrics.json; see docs/evaluation.md):",
             *report["evaluation"]["summary"]]
    write_index(pages, "deepcascade demo: zebra-like (A) <-> giraffe-like (B)", ["source", "result", "levels"],
                rows + synth_rows, notes)
    _summary_png(rows, pages / "summary.png")
    return report


def _evaluate(run_dir: Path, out: Path, device: str, translator) -> dict:
    """``deepcascade evaluate`` on the demo's run: every measure that can be computed here, printed."""
    from ..evaluation.report import summary_lines
    from ..evaluation.run import Options, evaluate_run

    print(f"evaluating the run into {out}")
    metrics = evaluate_run(run_dir, out, opts=Options(device=device), translator=translator)
    lines = summary_lines(metrics)
    for line in lines:
        print(f"  {line}")
    keys = ("target_share", "real_accuracy", "silhouette_target_share", "collapse_ratio", "centre_shift")
    return {**{d: {k: metrics[d][k] for k in keys} for d in ("a2b", "b2a")}, "summary": lines}


def synthesis_panel(run_dir: Path, out: Path, data_dir: Path, translator, device: str, seed: int, n: int
                    ) -> tuple[dict, list[dict]]:
    """``n`` deepVAE samples of each domain into ``out/synth_a`` and ``out/synth_b`` (``deepcascade synthesize``'s
    folder: images, grid, level strips, page). Returns the share of samples whose silhouette aspect is their own
    domain's, beside the same share for the I_3 reconstructions of the domain's test images (the inversion's
    blur alone moves the aspect estimate), and one row per domain for the demo's page: the grid, and the strip
    I_5 | I_4 | I_3 of the first sample."""
    import torch

    from ..data.transforms import to_pil, to_tensor
    from ..inference.synthesize_folder import synthesize_folder
    from ..inference.synthesizer import Synthesizer

    print("synthesizing new images of each domain with its deepVAE")
    synth = Synthesizer.from_run(run_dir, device=device)
    report, rows = {}, []
    for d in ("a", "b"):
        res = synthesize_folder(run_dir, out / f"synth_{d}", d, n, seed, save_levels=True, overwrite=True,
                                synthesizer=synth)  # overwrite: its own outputs of a previous demo run
        images = [Image.open(r["sample"]).convert("RGB") for r in res["rows"]]
        real = sorted((data_dir / f"test{d.upper()}").glob("*.png"))[:n]
        recon = translator.reconstruct_tensor(torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in real]))
        report[d] = {"images": len(images), "share_own_domain": target_share(images, d.upper()),
                     "reconstruction_share_own_domain": target_share([to_pil(t) for t in recon], d.upper())}
        rows.append({"name": f"synthesized {d.upper()} (deepVAE, {n} samples; levels: the first)",
                     "result": res["grid"], "levels": res["rows"][0]["levels"]})
    return report, rows


def synthesis_notes(report: dict) -> list[str]:
    return [f"Synthesis (deepVAE of each domain, z_5 -> G_5 -> G_4 -> G_3 -> I_3; docs/method.md section 6): "
            + "; ".join(f"{report[d]['share_own_domain']:.0%} of the {report[d]['images']} samples of {d.upper()} "
                        f"have {d.upper()}'s silhouette aspect (I_3 reconstructions of real {d.upper()} test images: "
                        f"{report[d]['reconstruction_share_own_domain']:.0%})" for d in ("a", "b")) + "."]


def _summary_png(rows: list[dict], path: Path, per_direction: int = 3) -> None:
    """A small picture for the README: a few strips of each direction stacked."""
    from ..outputs.grids import save_image_atomic

    picks = []
    for d in ("a2b", "b2a"):
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
