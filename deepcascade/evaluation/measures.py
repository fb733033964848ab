"""One evaluation, from the directions' image sets to ``metrics.json`` and ``index.html``.

:func:`evaluate` checks what each measure needs first (``plan.py``: weights, image counts, sources, synthetic
data), lists what cannot be computed (or stops with exit 2 when it was asked for explicitly), then computes each
measure in turn and writes the report. The entry points that build the image sets are in ``entry_points.py``.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..version import __version__
from . import classifier as clf
from .appearance import appearance_measure
from .diversity import collapse_ratio
from .fidelity import FidelityFeatures, fid, kid
from .images import RESIZE, ImageSet
from .layout import generator_mask, layout_measure, parse_name
from .lpips_nn import nearest_neighbours
from .perceptual import BackboneEmbedding, LpipsEmbedding
from .plan import DOMAINS, Direction, Options, Plan, check_needs, layout_unavailable
from .report import nn_strip, write_metrics, write_page

log = logging.getLogger("deepcascade")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "torch-fidelity", "lpips", "numpy", "Pillow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _empty_result(d: Direction) -> dict:
    """Every figure's key, null until computed: scripts read them unconditionally."""
    return {"images": {"fake": len(d.fakes), "real": len(d.reals),
                       "source": len(d.sources) if d.sources is not None else 0,
                       "nn_reference": len(d.nn_reference) if d.nn_reference is not None else 0},
            "target_share": None, "real_accuracy": None, "classifier": None,
            "collapse_ratio": None, "collapse": None, "centre_shift": None, "layout": None,
            "silhouette_target_share": None, "appearance": None, "kid": None, "fid": None,
            "nearest_neighbours": None}


def evaluate(directions: list[Direction], train_a: ImageSet | None, train_b: ImageSet | None, out: str | Path,
             opts: Options, run_backbone: str | None = None, protocol: dict | None = None,
             title: str = "deepcascade evaluate") -> dict:
    """Compute every measure for ``directions``; write ``out/metrics.json`` and ``out/index.html``."""
    from ..device import resolve_device

    out = Path(out)
    plan = Plan(opts.metrics, [d.name for d in directions])
    inception, alexnet, _ = check_needs(plan, directions, train_a, train_b, opts)  # before any work or file
    out.mkdir(parents=True, exist_ok=True)
    ctx = _Context(out, out / "cache" if opts.cache else None, resolve_device(opts.device), opts, plan,
                   {"deepcascade": __version__, "libraries": _versions()})
    ctx.proto.update(device=str(ctx.device), image_size=directions[0].fakes.size, resize=RESIZE, **(protocol or {}))
    results = {d.name: _empty_result(d) for d in directions}
    if "kid" in plan or "fid" in plan:
        _fidelity(ctx, directions, results, inception)
    strips = _perceptual(ctx, directions, results, alexnet) if ("nn" in plan or "collapse" in plan) else {}
    if "classifier" in plan:
        _classify(ctx, directions, results, train_a, train_b, run_backbone, alexnet)
    if "layout" in plan:
        _layout(ctx, directions, results)
    if "appearance" in plan:
        _appearance(ctx, directions, results)
    # both directions are always keys (null when not evaluated), so scripts can read them unconditionally
    metrics = {"format": 1, "a2b": results.get("a2b"), "b2a": results.get("b2a"),
               "not_computed": plan.not_computed, "protocol": ctx.proto}
    write_metrics(out, metrics)
    write_page(out, metrics, strips, title)
    return metrics


@dataclass
class _Context:
    out: Path
    cache_dir: Path | None
    device: torch.device
    opts: Options
    plan: Plan
    proto: dict


def _fidelity(ctx: _Context, directions: list[Direction], results: dict, inception) -> None:
    """KID and FID of each direction's translations against its real target images."""
    opts = ctx.opts
    ext = FidelityFeatures(ctx.device, opts.feature_extractor, inception)
    ctx.proto["inception"] = ext.protocol()
    ctx.proto["kid"] = {"subsets": opts.kid_subsets, "subset_size": f"min({opts.kid_subset_size}, n_fake, n_real)",
                        "scale": "raw (not x100)", "kernel": "polynomial (x.y/d + 1)^3",
                        "estimator": "unbiased MMD^2", "library": "torch-fidelity kid_features_to_metric"}
    ctx.proto["fid"] = {"spread": f"std over {opts.fid_bootstrap} bootstrap resamples",
                        "library": "torch-fidelity fid_statistics_to_metric"}
    for d in directions:
        if not (ctx.plan.wants("kid", d.name) or ctx.plan.wants("fid", d.name)):
            continue
        f_fake = ext.features(d.fakes, opts.batch_size, ctx.cache_dir)
        f_real = ext.features(d.reals, opts.batch_size, ctx.cache_dir)
        if ctx.plan.wants("kid", d.name):
            results[d.name]["kid"] = kid(f_fake, f_real, opts.kid_subsets, opts.kid_subset_size)
        if ctx.plan.wants("fid", d.name):
            results[d.name]["fid"] = fid(f_fake, f_real, opts.fid_bootstrap)


def _perceptual(ctx: _Context, directions: list[Direction], results: dict, alexnet) -> dict[str, list]:
    """Collapse ratio and LPIPS nearest neighbours; returns the page's strips per direction."""
    opts, strips = ctx.opts, {}
    if alexnet is not None:
        emb = LpipsEmbedding(alexnet).to(ctx.device)
    else:
        from ..backbones import build_backbone

        emb = BackboneEmbedding(build_backbone("efficientnet_lite0", "imagenet"), "efficientnet_lite0").to(ctx.device)
        log.info("collapse measure: AlexNet weights missing, using %s", emb.name)
    ctx.proto["perceptual_distance"] = emb.protocol()
    for d in directions:
        want_nn = ctx.plan.wants("nn", d.name) and isinstance(emb, LpipsEmbedding)
        if not (want_nn or ctx.plan.wants("collapse", d.name)):
            continue
        e_fake = emb.embed(d.fakes, opts.batch_size, ctx.cache_dir)
        if ctx.plan.wants("collapse", d.name):
            c = collapse_ratio(e_fake, emb.embed(d.reals, opts.batch_size, ctx.cache_dir))
            c["distance"] = emb.name
            results[d.name]["collapse"], results[d.name]["collapse_ratio"] = c, c["value"]
            if c["value"] is None:
                ctx.plan.note("collapse", f"the real target images do not differ from each other ({emb.name} "
                              f"distance 0): there is no diversity to compare with", d.name)
        if want_nn:
            e_ref = emb.embed(d.nn_reference, opts.batch_size, ctx.cache_dir)
            idx, dist = nearest_neighbours(e_fake, e_ref, opts.k, ctx.device, f"nearest neighbours {d.name}")
            results[d.name]["nearest_neighbours"] = [
                {"translation": d.fakes.name(i),
                 "source": d.sources.name(d.pairs[i]) if d.sources is not None and d.pairs[i] is not None else None,
                 "neighbours": [{"file": d.nn_reference.name(int(j)), "distance": float(dd)}
                                for j, dd in zip(idx[i], dist[i])]} for i in range(len(d.fakes))]
            strips[d.name] = _write_strips(ctx.out, d, idx, dist, opts.html_rows)
    if "nn" in ctx.plan:
        ctx.proto["nearest_neighbours"] = {"k": opts.k, "search": "exhaustive over cached LPIPS embeddings",
                                           "reference": "the target domain's training images"}
    return strips


def _classify(ctx: _Context, directions: list[Direction], results: dict, train_a: ImageSet, train_b: ImageSet,
              run_backbone: str | None, alexnet) -> None:
    """The independent classifier's target share per direction, with its accuracy on real held-out images."""
    kind, why, independent = clf.choose(ctx.opts.classifier, run_backbone, alexnet is not None)
    if not independent:
        log.warning("domain classifier: %s", why)
    judge = clf.DomainClassifier(kind, ctx.device, ctx.opts.batch_size, ctx.cache_dir, alexnet, ctx.opts.seed)
    judge.fit(train_a, train_b)
    ctx.proto["classifier"] = {**judge.protocol(), "why": why, "independent": independent,
                               "trained_on": f"{len(train_a)} + {len(train_b)} training images of A and B",
                               "trust_threshold": clf.TRUST_ACCURACY}
    probs: dict[int, np.ndarray] = {}  # id(ImageSet) -> P(B): each held-out set is classified once

    def prob(images: ImageSet) -> np.ndarray:
        if id(images) not in probs:
            probs[id(images)] = judge.prob_b(images)
        return probs[id(images)]

    for d in directions:
        src, tgt = DOMAINS[d.name]
        acc = {}
        if d.held_out_targets is not None:
            acc[tgt] = clf.accuracy(prob(d.held_out_targets), tgt == "B")
        if d.held_out_sources is not None:
            acc[src] = clf.accuracy(prob(d.held_out_sources), src == "B")
        known = [v for v in acc.values() if v is not None]
        real_acc = float(np.mean(known)) if known else None  # balanced over the domains
        share = clf.accuracy(prob(d.fakes), tgt == "B")
        results[d.name].update(target_share=share, real_accuracy=real_acc)
        results[d.name]["classifier"] = {
            "kind": kind, "target_share": share, "real_accuracy": real_acc,
            "real_accuracy_by_domain": acc, "balanced": len(known) == 2,
            "trustworthy": real_acc is not None and real_acc >= clf.TRUST_ACCURACY,
            "held_out_images": sum(len(x) for x in (d.held_out_targets, d.held_out_sources) if x is not None)}


def _layout(ctx: _Context, directions: list[Direction], results: dict) -> None:
    """Silhouette ground and centre shifts, their floors and chance levels, and the silhouette target share on
    the built-in synthetic data."""
    for d in directions:
        if not ctx.plan.wants("layout", d.name):
            continue
        paired = d.paired()
        names = [d.sources.name(d.pairs[i]) for i in paired]
        try:
            lay = layout_measure(names, lambda j: d.sources.pil(d.pairs[paired[j]]),
                                 lambda j: d.fakes.pil(paired[j]), d.meta, d.fakes.size, d.target,
                                 len(d.reals), d.reals.pil, ctx.opts.seed)
        except ValueError as e:  # no source name the generator wrote
            ctx.plan.drop(["layout"], str(e), direction=d.name)
            continue
        results[d.name].update(layout=lay, centre_shift=lay["centre_shift"],
                               silhouette_target_share=lay["silhouette_target_share"])


def _appearance(ctx: _Context, directions: list[Direction], results: dict) -> None:
    """Frame (and, with known objects, background) colour error against its floor and chance level."""
    for d in directions:
        if not ctx.plan.wants("appearance", d.name):
            continue
        paired = d.paired()
        src = [d.pairs[i] for i in paired]
        rec = (lambda j: d.reconstructions.pil(src[j])) if d.reconstructions is not None else None
        masks = _source_masks(d, src) if layout_unavailable(d) is None else None
        app = appearance_measure(len(paired), lambda j: d.sources.pil(src[j]), lambda j: d.fakes.pil(paired[j]),
                                 rec, len(d.reals), d.reals.pil, masks, ctx.opts.seed)
        results[d.name]["appearance"] = app
        if rec is None:
            ctx.plan.note("appearance.frame_colour_error_floor", "the floor is the run's untranslated "
                          "reconstruction of each source: evaluate a run (--run) to have it", d.name)
        if masks is None:
            ctx.plan.note("appearance.background_colour_error", "needs the objects' true masks (the built-in "
                          "synthetic data): the frame colour error stands in for it", d.name)


def _source_masks(d: Direction, src: list[int]):
    """``mask(j)``: the true object mask of the j-th paired source, None for a name the generator did not write."""
    def mask(j: int):
        parsed = parse_name(d.sources.name(src[j]), d.meta)
        return None if parsed is None else generator_mask(*parsed, d.meta, d.fakes.size)
    return mask


def _write_strips(out: Path, d: Direction, idx: np.ndarray, dist: np.ndarray, rows: int) -> list[dict]:
    """The first ``rows`` source | translation | NN1..NNk strips of a direction, for the page."""
    strips = []
    for i in range(min(rows, len(d.fakes))):
        src = d.sources.pil(d.pairs[i]) if d.sources is not None and d.pairs[i] is not None else None
        imgs = [src, d.fakes.pil(i)] + [d.nn_reference.pil(int(j)) for j in idx[i]]
        path = out / "nearest" / d.name / f"{i:05d}.png"
        nn_strip(imgs, d.fakes.size, path)
        strips.append({"path": path, "translation": d.fakes.name(i),
                       "neighbours": [(d.nn_reference.name(int(j)), float(dd)) for j, dd in zip(idx[i], dist[i])]})
    return strips
