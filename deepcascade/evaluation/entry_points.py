"""The two ways into an evaluation: a trained run, or any method's output folders.

:func:`evaluate_run` translates a run's test split (``data.test_a`` / ``data.test_b``), reconstructs its sources
untranslated (the appearance floor), and scores both; :func:`evaluate_folders` scores any method's outputs
(CycleGAN's, CUT's) with the same protocol. Both build the directions' image sets and hand them to
:func:`~deepcascade.evaluation.measures.evaluate`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..data.synthetic import find_meta
from ..errors import UserError
from ..inference.synthesis_manifest import MANIFEST, synthesis_samples
from ..inference.translate_folder import png_name, translation_files
from ..rundir import RunDir
from .images import ImageSet
from .measures import evaluate
from .plan import DOMAINS, MIN_IMAGE_SIZE, Direction, Options

log = logging.getLogger("deepcascade")


def _optional_set(folder: str, size: int, what: str) -> ImageSet | None:
    return ImageSet.from_folder(folder, size, what) if folder and Path(folder).is_dir() else None


def _wants(opts: Options, metric: str) -> bool:
    return opts.metrics is None or metric in opts.metrics


def reconstruct(translator, sources: ImageSet, folder: Path, batch_size: int) -> ImageSet:
    """I_final(e_final(x)) of every source (the untranslated baseline of the appearance floor), written under
    ``folder`` as 8-bit PNG like the translations and read back the same way; same order as ``sources``."""
    from ..data.transforms import to_pil
    from ..outputs.grids import save_image_atomic

    files = []
    for start, batch in sources.batches(batch_size, f"reconstruct {sources.what}"):
        for k, img in enumerate(translator.reconstruct_tensor(batch.float() / 255.0)):
            path = folder / png_name(Path(sources.name(start + k)))
            save_image_atomic(to_pil(img), path)
            files.append(path)
    return ImageSet(files, sources.size, f"reconstructions of the {sources.what}", folder)


def evaluate_run(run: str | Path, out: str | Path, direction: str = "both", reference: str = "test",
                 opts: Options | None = None, translator=None) -> dict:
    """Translate the run's test split (both directions by default) into ``out/translations/`` and score it."""
    from ..inference.translate_folder import translate_folder

    opts = opts or Options()
    run, out = Path(run), Path(out)
    cfg = RunDir(run).config()
    d = cfg.data
    size = d.image_size
    names = list(DOMAINS) if direction == "both" else [direction]
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

        translator = Translator.from_run(run, device=opts.device, precision=opts.precision, optimize=opts.optimize)
    directions = []
    for name in names:
        src, tgt = DOMAINS[name]
        # overwrite: the evaluation owns OUT/translations, and a retrained run must not be scored on old files
        res = translate_folder(run, tests[src], out / "translations" / name, direction=name,
                               batch_size=opts.batch_size, translator=translator, overwrite=True)
        rows = res["rows"]
        fakes = ImageSet([r["result"] for r in rows], size, f"translations {name}", out / "translations" / name)
        sources = ImageSet([Path(tests[src]) / r["name"] for r in rows], size, f"sources {name}", Path(tests[src]))
        recon = (reconstruct(translator, sources, out / "reconstructions" / src, opts.batch_size)
                 if _wants(opts, "appearance") else None)
        reals = held[tgt] if reference == "test" else trains[tgt]
        directions.append(Direction(name, fakes, reals, sources, list(range(len(rows))), held[src], held[tgt],
                                    trains[tgt], find_meta(tests[src]), recon))
    protocol = {"mode": "run", "run": str(run.resolve()), "run_backbone": cfg.backbone.name,
                "reference_split": f"{reference} split of the target domain",
                "fakes": "the run's test split translated and written as PNG (8 bit), then read back",
                "reconstructions": "each source's I_final(e_final(x)), untranslated, written as PNG (8 bit) under "
                                   "OUT/reconstructions/, then read back",
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


def _evaluation_size(first: Path, fake: str) -> int:
    """The shorter side of the first decodable translation, refused below ``MIN_IMAGE_SIZE``."""
    from PIL import Image

    try:
        with Image.open(first) as img:
            side = min(img.size)
    except Exception as e:  # it decoded a moment ago: changed on disk since
        raise UserError(f"--fake {fake}: cannot read {first}: {type(e).__name__}: {e}") from None
    if side < MIN_IMAGE_SIZE:
        raise UserError(f"--fake {fake}: the evaluation size is taken from the first translation, {first}, whose "
                        f"shorter side is {side} px (below {MIN_IMAGE_SIZE}); pass --image-size N with N >= "
                        f"{MIN_IMAGE_SIZE}")
    return side


def evaluate_folders(fake: str, real: str, out: str | Path, source: str | None = None, direction: str = "a2b",
                     train_a: str | None = None, train_b: str | None = None, image_size: int | None = None,
                     opts: Options | None = None) -> dict:
    """Score a folder of translations ``fake`` (any method) against real target images ``real``."""
    from ..data.images import scan_images

    opts = opts or Options()
    if direction not in DOMAINS:
        raise UserError(f"--direction must be a2b or b2a with --fake, got {direction!r}")
    if image_size is not None and image_size < MIN_IMAGE_SIZE:
        raise UserError(f"--image-size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
    if not Path(fake).is_dir():
        raise UserError(f"--fake {fake}: folder not found")
    # Our own output folders are read without the pictures made beside the results: a `deepcascade synthesize`
    # folder's samples alone (never grid.png, interpolation.png or _levels/), a `deepcascade translate` folder's
    # translations alone (never _sources/ or _levels/). Any other folder is read whole.
    samples = synthesis_samples(fake)
    listed = samples if samples is not None else translation_files(fake)
    what = "synthesized images" if samples is not None else "translations"
    if listed is None:
        files = scan_images(fake, f"{what} {direction}").good
    else:
        log.info("--fake %s: a deepcascade %s folder; reading its %d %s alone, not the pictures beside them",
                 fake, "synthesize" if samples is not None else "translate", len(listed), what)
        files = _decodable(listed, f"{what} ({fake})")
    if image_size is None:  # the first file that decodes: an unreadable one is skipped above, never opened here
        image_size = _evaluation_size(files[0], fake)
    fakes = ImageSet(files, image_size, f"{what} {direction}", fake)
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


__all__ = ["evaluate_folders", "evaluate_run", "reconstruct"]
