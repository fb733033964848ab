"""One evaluation, from images to ``metrics.json`` and ``index.html``.

:func:`evaluate_run` translates a run's test split (``data.test_a`` / ``data.test_b``) and scores it;
:func:`evaluate_folders` scores any method's outputs (CycleGAN's, CUT's) with the same protocol. Both end in
:func:`evaluate`, which resolves what each measure needs first (weights, training images, synthetic data), lists
what cannot be computed (or stops with exit 2 when it was asked for explicitly), then computes each measure.
"""

from __future__ import annotations

import logging
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..backbones.weights import MissingWeights
from ..errors import UserError
from ..inference.synthesis_manifest import MANIFEST, synthesis_samples
from ..inference.translate_folder import translation_files
from . import classifier as clf
from .diversity import collapse_ratio
from .fidelity import (EXTRACTOR, FID_BOOTSTRAP, KID_SUBSET_SIZE, KID_SUBSETS, FidelityFeatures, fid, kid,
                       resolve_inception_weights)
from .images import RESIZE, ImageSet
from .layout import find_meta, layout_measure
from .lpips_nn import nearest_neighbours
from .perceptual import BackboneEmbedding, LpipsEmbedding, resolve_alexnet_weights
from .report import nn_strip, write_metrics, write_page

log = logging.getLogger("deepcascade")

METRICS = ("kid", "fid", "classifier", "nn", "collapse", "layout")
DOMAINS = {"a2b": ("A", "B"), "b2a": ("B", "A")}


@dataclass
class Direction:
    """What one direction's measures read. ``pairs[i]`` is the index in ``sources`` of fake i's source."""

    name: str
    fakes: ImageSet
    reals: ImageSet  # real target images: KID/FID and collapse reference, classifier check
    sources: ImageSet | None = None  # the sources as the translator saw them
    pairs: list = field(default_factory=list)
    held_out_sources: ImageSet | None = None  # real held-out source-domain images (classifier check)
    held_out_targets: ImageSet | None = None  # real held-out target-domain images (classifier check)
    nn_reference: ImageSet | None = None  # the target domain's training images
    meta: dict | None = None  # synthetic.json of the built-in synthetic data

    @property
    def target(self) -> str:
        return DOMAINS[self.name][1]


@dataclass
class Options:
    metrics: tuple | None = None  # explicit --metrics; None = everything that can be computed
    device: str = "auto"
    batch_size: int = 16
    precision: str = "fp32"  # of the run's translations only; the measures run in fp32
    inception_weights: str | None = None
    alexnet_weights: str | None = None
    classifier: str = "auto"
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    fid_bootstrap: int = FID_BOOTSTRAP
    k: int = 3
    html_rows: int = 50
    cache: bool = True
    feature_extractor: str = EXTRACTOR  # a torch-fidelity registry name; tests register a stand-in
    seed: int = 0


def parse_metrics(text: str | None) -> tuple | None:
    if not text:
        return None
    names = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise UserError(f"--metrics: unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(METRICS)}")
    return names


class _Plan:
    """Which measures run, and the not-computed list (a UserError for a measure asked for explicitly)."""

    def __init__(self, metrics: tuple | None):
        self.explicit = set(metrics or ())
        self.wanted = set(metrics or METRICS)
        self.not_computed: list[dict] = []

    def drop(self, names, reason: str, missing: MissingWeights | None = None, direction: str | None = None):
        names = [n for n in names if n in self.wanted]
        asked = [n for n in names if n in self.explicit]
        if asked:
            raise UserError(f"--metrics {','.join(asked)}: {reason}")
        for n in names:
            entry = {"metric": n, "reason": reason.split(". Put ")[0] if missing else reason}
            if direction:
                entry["direction"] = direction
            if missing is not None:
                entry.update(missing_file=missing.filename, folder=str(missing.folder), how=missing.how())
            self.not_computed.append(entry)
            if direction is None:
                self.wanted.discard(n)

    def __contains__(self, name: str) -> bool:
        return name in self.wanted


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "torch-fidelity", "lpips", "numpy", "Pillow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def evaluate(directions: list[Direction], train_a: ImageSet | None, train_b: ImageSet | None, out: str | Path,
             opts: Options, run_backbone: str | None = None, protocol: dict | None = None,
             title: str = "deepcascade evaluate") -> dict:
    """Compute every measure for ``directions``; write ``out/metrics.json`` and ``out/index.html``."""
    from ..device import resolve_device

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = _Context(out, out / "cache" if opts.cache else None, resolve_device(opts.device), opts,
                   _Plan(opts.metrics), {"deepcascade": __version__, "libraries": _versions()})
    ctx.proto.update(device=str(ctx.device), image_size=directions[0].fakes.size, resize=RESIZE, **(protocol or {}))
    inception, alexnet, alexnet_missing = _check_needs(ctx.plan, directions, train_a, train_b, opts)
    results = {d.name: {"images": {"fake": len(d.fakes), "real": len(d.reals),
                                   "source": len(d.sources) if d.sources is not None else 0,
                                   "nn_reference": len(d.nn_reference) if d.nn_reference is not None else 0},
                        "target_share": None, "real_accuracy": None, "classifier": None,
                        "collapse_ratio": None, "collapse": None, "centre_shift": None, "layout": None,
                        "silhouette_target_share": None, "kid": None, "fid": None, "nearest_neighbours": None}
               for d in directions}
    if "kid" in ctx.plan or "fid" in ctx.plan:
        _fidelity(ctx, directions, results, inception)
    strips = _perceptual(ctx, directions, results, alexnet) if ("nn" in ctx.plan or "collapse" in ctx.plan) else {}
    if "classifier" in ctx.plan:
        _classify(ctx, directions, results, train_a, train_b, run_backbone, alexnet)
    if "layout" in ctx.plan:
        _layout(ctx, directions, results)
    # both directions are always keys (null when not evaluated), so scripts can read them unconditionally
    metrics = {"format": 1, "a2b": results.get("a2b"), "b2a": results.get("b2a"),
               "not_computed": ctx.plan.not_computed, "protocol": ctx.proto}
    write_metrics(out, metrics)
    write_page(out, metrics, strips, title)
    return metrics


@dataclass
class _Context:
    out: Path
    cache_dir: Path | None
    device: torch.device
    opts: Options
    plan: _Plan
    proto: dict


def _check_needs(plan: _Plan, directions: list[Direction], train_a, train_b, opts: Options):
    """Resolve weights and inputs of every wanted measure before any expensive work; drop what cannot run
    (a UserError for a measure asked for explicitly). Returns (Inception path, AlexNet path, why AlexNet is
    missing)."""
    inception = None
    if "kid" in plan or "fid" in plan:
        try:
            inception = (resolve_inception_weights(opts.inception_weights)
                         if opts.feature_extractor == EXTRACTOR else None)
        except MissingWeights as e:
            plan.drop(["kid", "fid"], str(e), e)
    alexnet, alexnet_missing = None, None
    if "nn" in plan or "collapse" in plan or ("classifier" in plan and opts.classifier in ("auto", "alexnet")):
        try:
            alexnet = resolve_alexnet_weights(opts.alexnet_weights)
        except MissingWeights as e:
            alexnet_missing = e
            plan.drop(["nn"], str(e), e)  # the collapse ratio falls back to another distance, the classifier too
    if "classifier" in plan:
        if train_a is None or train_b is None:
            plan.drop(["classifier"], "the domain classifier needs the training images of both domains "
                                      "(--train-a and --train-b)")
        elif opts.classifier == "alexnet" and alexnet is None:
            plan.drop(["classifier"], f"--classifier alexnet: {alexnet_missing}", alexnet_missing)
    for d in directions:
        if "nn" in plan and d.nn_reference is None:
            plan.drop(["nn"], f"nearest neighbours need the target domain's training images "
                              f"(--train-{d.target.lower()})", direction=d.name)
        if "layout" in plan and (reason := _layout_unavailable(d)):
            plan.drop(["layout"], reason, direction=d.name)
    return inception, alexnet, alexnet_missing


def _layout_unavailable(d: Direction) -> str | None:
    if d.meta is None:
        return "the layout measure needs the built-in synthetic data (no synthetic.json beside the sources)"
    if int(d.meta.get("version", -1)) != _synthetic_version():
        return (f"the synthetic data was written by generator version {d.meta.get('version')}, this deepcascade "
                f"renders version {_synthetic_version()}: regenerate it")
    if d.sources is None:
        return "the layout measure needs the sources (--source)"
    return None


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
        f_fake = ext.features(d.fakes, opts.batch_size, ctx.cache_dir)
        f_real = ext.features(d.reals, opts.batch_size, ctx.cache_dir)
        for name, fn in (("kid", lambda: kid(f_fake, f_real, opts.kid_subsets, opts.kid_subset_size)),
                         ("fid", lambda: fid(f_fake, f_real, opts.fid_bootstrap))):
            if name in ctx.plan:
                try:
                    results[d.name][name] = fn()
                except ValueError as e:  # fewer than 2 images
                    ctx.plan.drop([name], str(e), direction=d.name)


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
        e_fake = emb.embed(d.fakes, opts.batch_size, ctx.cache_dir)
        if "collapse" in ctx.plan:
            c = collapse_ratio(e_fake, emb.embed(d.reals, opts.batch_size, ctx.cache_dir))
            c["distance"] = emb.name
            results[d.name]["collapse"], results[d.name]["collapse_ratio"] = c, c["value"]
        if "nn" in ctx.plan and d.nn_reference is not None and isinstance(emb, LpipsEmbedding):
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
    """Silhouette centre shift and silhouette target share on the built-in synthetic data."""
    for d in directions:
        if _layout_unavailable(d):
            continue
        paired = [i for i in range(len(d.fakes)) if d.pairs[i] is not None]
        names = [d.sources.name(d.pairs[i]) for i in paired]
        try:
            lay = layout_measure(names, lambda j: d.sources.pil(d.pairs[paired[j]]),
                                 lambda j: d.fakes.pil(paired[j]), d.meta, d.fakes.size, d.target)
        except ValueError as e:  # no source name the generator wrote
            ctx.plan.drop(["layout"], str(e), direction=d.name)
            continue
        results[d.name].update(layout=lay, centre_shift=lay["centre_shift"],
                               silhouette_target_share=lay["silhouette_target_share"])


def _synthetic_version() -> int:
    from ..data.synthetic import VERSION

    return VERSION


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


# ------------------------------------------------------------------------------------------------------------
# entry points

def _run_config(run: Path):
    import yaml

    from ..config import config_from_dict

    f = run / "config.yaml"
    if not f.is_file():
        raise UserError(f"{run} is not a deepcascade run directory (no config.yaml)")
    return config_from_dict(yaml.safe_load(f.read_text(encoding="utf-8")) or {})


def _optional_set(folder: str, size: int, what: str) -> ImageSet | None:
    return ImageSet.from_folder(folder, size, what) if folder and Path(folder).is_dir() else None


def evaluate_run(run: str | Path, out: str | Path, direction: str = "both", reference: str = "test",
                 opts: Options | None = None, translator=None) -> dict:
    """Translate the run's test split (both directions by default) into ``out/translations/`` and score it."""
    from ..inference.translate_folder import translate_folder

    opts = opts or Options()
    run, out = Path(run), Path(out)
    cfg = _run_config(run)
    d = cfg.data
    size = d.image_size
    names = ["a2b", "b2a"] if direction == "both" else [direction]
    tests = {"A": d.test_a, "B": d.test_b}
    for name in names:
        src = DOMAINS[name][0]
        if not tests[src] or not Path(tests[src]).is_dir():
            raise UserError(f"{run}: data.test_{src.lower()} ({tests[src] or 'not set'}) is not a folder of test "
                            f"images; evaluate needs the test split (or use --fake/--real/--source)")
    if reference == "test":
        for name in names:
            tgt = DOMAINS[name][1]
            if not tests[tgt] or not Path(tests[tgt]).is_dir():
                raise UserError(f"{run}: data.test_{tgt.lower()} is not a folder: the reference split 'test' needs "
                                f"it (or use --reference train)")
    train_a = _optional_set(d.domain_a, size, "training images A")
    train_b = _optional_set(d.domain_b, size, "training images B")
    trains = {"A": train_a, "B": train_b}
    held = {k: _optional_set(v, size, f"test images {k}") for k, v in tests.items()}
    if translator is None:
        from ..inference.translator import Translator

        translator = Translator.from_run(run, device=opts.device, precision=opts.precision)
    directions = []
    for name in names:
        src, tgt = DOMAINS[name]
        # overwrite: the evaluation owns OUT/translations, and a retrained run must not be scored on old files
        res = translate_folder(run, tests[src], out / "translations" / name, direction=name,
                               batch_size=opts.batch_size, translator=translator, overwrite=True)
        rows = res["rows"]
        fakes = ImageSet([r["result"] for r in rows], size, f"translations {name}", out / "translations" / name)
        sources = ImageSet([Path(tests[src]) / r["name"] for r in rows], size, f"sources {name}", Path(tests[src]))
        reals = held[tgt] if reference == "test" else trains[tgt]
        directions.append(Direction(name, fakes, reals, sources, list(range(len(rows))), held[src], held[tgt],
                                    trains[tgt], find_meta(tests[src])))
    protocol = {"mode": "run", "run": str(run.resolve()), "run_backbone": cfg.backbone.name,
                "reference_split": f"{reference} split of the target domain",
                "fakes": "the run's test split translated and written as PNG (8 bit), then read back",
                "translation_precision": getattr(translator, "precision", "fp32")}
    return evaluate(directions, train_a, train_b, out, opts, cfg.backbone.name, protocol,
                    f"deepcascade evaluate: {run.name}")


_SUFFIX = re.compile(r"_(fake|real)(_[AB])?$")


def _stem_key(name: str) -> str:
    """Pairing key: the relative name without extension and without CycleGAN's ``_fake_B``/``_real_A`` suffix."""
    p = Path(name)
    return str(p.with_name(_SUFFIX.sub("", p.stem)))


def _decodable(files: list[Path], what: str) -> list[Path]:
    """``files`` that decode; the others are named in the log (as for any folder of images)."""
    from ..data.images import ScanReport

    rep = ScanReport().check(files)
    rep.log_skipped(what)
    if not rep.good:
        raise UserError(f"{what}: no usable image")
    return rep.good


def evaluate_folders(fake: str, real: str, out: str | Path, source: str | None = None, direction: str = "a2b",
                     train_a: str | None = None, train_b: str | None = None, image_size: int | None = None,
                     opts: Options | None = None) -> dict:
    """Score a folder of translations ``fake`` (any method) against real target images ``real``."""
    from ..data.images import list_images, load_image

    opts = opts or Options()
    if direction not in DOMAINS:
        raise UserError(f"--direction must be a2b or b2a with --fake, got {direction!r}")
    # Our own output folders are read without the pictures made beside the results: a `deepcascade synthesize`
    # folder's samples alone (never grid.png, interpolation.png or _levels/), a `deepcascade translate` folder's
    # translations alone (never _sources/ or _levels/). Any other folder is read whole.
    is_dir = Path(fake).is_dir()
    samples = synthesis_samples(fake) if is_dir else None
    listed = samples if samples is not None else translation_files(fake) if is_dir else None
    what = "synthesized images" if samples is not None else "translations"
    if image_size is None:
        files = listed or (list_images(fake) if is_dir else [])
        if not files:
            raise UserError(f"--fake {fake}: no image files")
        image_size = min(load_image(files[0]).size)
    if listed is None:
        fakes = ImageSet.from_folder(fake, image_size, f"{what} {direction}")
    else:
        log.info("--fake %s: a deepcascade %s folder; reading its %d %s alone, not the pictures beside them",
                 fake, "synthesize" if samples is not None else "translate", len(listed), what)
        fakes = ImageSet(_decodable(listed, f"{what} ({fake})"), image_size, f"{what} {direction}", fake)
    reals = ImageSet.from_folder(real, image_size, "real target images")
    sources = ImageSet.from_folder(source, image_size, "sources") if source else None
    pairs = [None] * len(fakes)
    if sources is not None:
        by_key = {_stem_key(sources.name(i)): i for i in range(len(sources))}
        pairs = [by_key.get(_stem_key(fakes.name(i))) for i in range(len(fakes))]
        missing = sum(p is None for p in pairs)
        if missing:
            log.warning("%d of %d translations have no source of the same name in %s", missing, len(fakes), source)
    ta = ImageSet.from_folder(train_a, image_size, "training images A") if train_a else None
    tb = ImageSet.from_folder(train_b, image_size, "training images B") if train_b else None
    src, tgt = DOMAINS[direction]
    d = Direction(direction, fakes, reals, sources, pairs, sources, reals, {"A": ta, "B": tb}[tgt],
                  find_meta(source) if source else None)
    protocol = {"mode": "folders", "fake": str(Path(fake).resolve()), "real": str(Path(real).resolve()),
                "source": str(Path(source).resolve()) if source else None,
                "reference_split": f"--real {real}",
                "fakes": (f"the samples named by {MANIFEST} (synthesize)" if samples is not None else
                          "read as given" if listed is None else "the translations of a translate folder, not "
                          "its _sources/ and _levels/")}
    return evaluate([d], ta, tb, out, opts, None, protocol, f"deepcascade evaluate: {Path(fake).name}")


__all__ = ["METRICS", "Direction", "Options", "evaluate", "evaluate_folders", "evaluate_run", "parse_metrics"]
