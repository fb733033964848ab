"""What an evaluation scores and with which options: the directions' image sets, the measures asked for, and
the check of every measure's needs before any expensive work starts.

A measure that cannot be computed (weights missing, too few images, data without known objects) is listed in
``not_computed`` with the reason; when the user named it in ``--metrics``, that is an error (exit 2) instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..backbones.weights import MissingWeights
from ..domains import DIRECTIONS
from ..errors import UserError
from .fidelity import EXTRACTOR, FID_BOOTSTRAP, KID_SUBSET_SIZE, KID_SUBSETS, resolve_inception_weights
from .images import ImageSet
from .perceptual import resolve_alexnet_weights

METRICS = ("kid", "fid", "classifier", "nn", "collapse", "layout", "appearance")
#: direction -> (source, target), as the data folders name the domains
DOMAINS = {d: (s.upper(), t.upper()) for d, (s, t) in DIRECTIONS.items()}
MIN_IMAGE_SIZE = 16  # the smallest evaluation size (and --image-size) a measure is meaningful at


@dataclass
class Direction:
    """What one direction's measures read. ``pairs[i]`` is the index in ``sources`` of fake i's source."""

    name: str
    fakes: ImageSet
    reals: ImageSet  # real target images: KID/FID, collapse and chance-level reference, classifier check
    sources: ImageSet | None = None  # the sources as the translator saw them
    pairs: list = field(default_factory=list)
    held_out_sources: ImageSet | None = None  # real held-out source-domain images (classifier check)
    held_out_targets: ImageSet | None = None  # real held-out target-domain images (classifier check)
    nn_reference: ImageSet | None = None  # the target domain's training images
    meta: dict | None = None  # synthetic.json of the built-in synthetic data
    reconstructions: ImageSet | None = None  # I_final(e_final(source)), same order as ``sources`` (runs only)

    @property
    def target(self) -> str:
        return DOMAINS[self.name][1]

    def paired(self) -> list[int]:
        """Indices of the fakes whose source is known."""
        return [i for i in range(len(self.fakes)) if self.pairs and self.pairs[i] is not None]


@dataclass
class Options:
    metrics: tuple | None = None  # explicit --metrics; None = everything that can be computed
    device: str = "auto"
    batch_size: int = 16
    precision: str | None = None  # of the run's translations only (None: fp32, auto with optimize); measures: fp32
    optimize: bool = False  # the run's translations through the compiled fast path (deepcascade.inference.fast)
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
    seed: int = 0  # the classifier's and the chance levels' random draws


def parse_metrics(text: str | None) -> tuple | None:
    if not text:
        return None
    names = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise UserError(f"--metrics: unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(METRICS)}")
    return names


class Plan:
    """Which measures run, and the not-computed list (a UserError for a measure asked for explicitly)."""

    def __init__(self, metrics: tuple | None, directions=()):
        self.explicit = set(metrics or ())
        self.wanted = set(metrics or METRICS)
        self.directions = set(directions)
        self.skipped: dict[str, set] = {}  # measure -> the directions it is not computed for
        self.not_computed: list[dict] = []

    def drop(self, names, reason: str, missing: MissingWeights | None = None, direction: str | None = None):
        """Do not compute ``names`` (for ``direction`` only, when given); an error for a name asked for."""
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
            skipped = self.skipped.setdefault(n, set())
            skipped.update([direction] if direction else self.directions)
            if direction is None or skipped >= self.directions:
                self.wanted.discard(n)

    def note(self, name: str, reason: str, direction: str | None = None) -> None:
        """Record a figure that came out undefined once computed (never an error: the work is done)."""
        entry = {"metric": name, "reason": reason}
        if direction:
            entry["direction"] = direction
        self.not_computed.append(entry)

    def __contains__(self, name: str) -> bool:
        return name in self.wanted

    def wants(self, name: str, direction: str) -> bool:
        """``name`` is computed for ``direction``."""
        return name in self.wanted and direction not in self.skipped.get(name, ())


def check_needs(plan: Plan, directions: list[Direction], train_a, train_b, opts: Options):
    """Resolve the inputs and weights of every wanted measure before any expensive work; drop what cannot run
    (a UserError for a measure asked for explicitly). Returns (Inception path, AlexNet path, why AlexNet is
    missing)."""
    for d in directions:
        if len(d.fakes) < 2 or len(d.reals) < 2:
            plan.drop(["kid", "fid", "collapse"], f"KID, FID and the collapse ratio need at least 2 images on each "
                      f"side, got {len(d.fakes)} {d.fakes.what} and {len(d.reals)} {d.reals.what}",
                      direction=d.name)
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
        if "layout" in plan and (reason := layout_unavailable(d)):
            plan.drop(["layout"], reason, direction=d.name)
        if "appearance" in plan and (reason := appearance_unavailable(d)):
            plan.drop(["appearance"], reason, direction=d.name)
    return inception, alexnet, alexnet_missing


def appearance_unavailable(d: Direction) -> str | None:
    if d.sources is None:
        return "the appearance measure compares each translation with its source: give the sources (--source)"
    if not d.paired():
        return "no translation has a source of the same file name (--source)"
    return None


def layout_unavailable(d: Direction) -> str | None:
    from .layout import synthetic_problem

    if d.meta is None:
        return "the layout measure needs the built-in synthetic data (no synthetic.json beside the sources)"
    if d.sources is None:
        return "the layout measure needs the sources (--source)"
    return synthetic_problem(d.meta)
