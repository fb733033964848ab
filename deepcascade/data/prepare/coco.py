"""MSCOCO object crops (the paper's zebra <-> giraffe and zebra <-> elephant; docs/method.md section 7).

The paper does not say how its COCO crops were made; these rules are ours, each an option (defaults in
``docs/datasets.md``):

- an instance is used when it is not a crowd (``iscrowd == 0``) and its box's shorter side is at least
  ``min_box`` (64) px;
- images holding an annotation (any, crowd included) of both categories are skipped: the crop of one animal
  would show the other;
- the crop is the square of side ``crop_scale`` (1.2) x the box's longer side, centred on the box centre, in
  source pixels (no EXIF rotation: COCO's boxes refer to the stored pixel grid); parts outside the image are
  padded (``pad``: constant black, edge or reflect); it is resized to ``size`` x ``size`` (Lanczos) unless
  ``size`` is 0;
- the first category is domain A, the second B; ``train2017`` gives train; ``val2017`` gives test when its
  annotations and images are given, otherwise a held-out fraction of train2017's *images* is the test split,
  chosen by image id (``split.in_test``), so that all crops of one photo fall on the same side.

Every instance of the two categories is counted once: written, or skipped under its first failing reason
(``crowd``, ``small_box``, ``both_categories``, ``unknown_image_id``, ``missing_image``, ``unreadable_image``,
``size_mismatch``). The counts are printed and stored in ``prepare.json``; ``manifest.jsonl`` names, per crop,
the source file, image id, annotation id, COCO box ``[x, y, w, h]`` and crop box ``[left, top, right, bottom]``.

The annotation file is read with the standard ``json`` decoder through :mod:`.jsonstream`, not pycocotools:
``COCO()`` loads the whole file into memory (several GB of Python objects for train2017, nearly all of it
segmentation polygons), while a crop needs five numbers per annotation. The file is read twice in 4 MB windows:
once for the category table (stored last in COCO's files), once for the images and the two categories'
annotations. What stays in memory is one small tuple per image and one per instance of the two categories.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import UserError
from ..images import to_rgb
from .jsonstream import JSONStreamError, stream_object
from .output import PreparedOutput, folder_of
from .split import in_test

log = logging.getLogger("deepcascade")

REASONS = ("crowd", "small_box", "both_categories", "unknown_image_id", "missing_image", "unreadable_image",
           "size_mismatch")
PADS = ("constant", "edge", "reflect")
FORMATS = {"png": "PNG", "jpg": "JPEG"}


@dataclass(frozen=True)
class Rules:
    min_box: float = 64.0
    crop_scale: float = 1.2
    pad: str = "constant"
    size: int = 256
    format: str = "png"


@dataclass
class Instance:
    ann_id: int
    image_id: int
    category: str
    box: tuple  # COCO [x, y, w, h], floats
    crowd: bool


def crop_box(box, scale: float) -> tuple[int, int, int, int]:
    """Square ``[left, top, right, bottom)`` of side ``round(scale * max(w, h))`` centred on the box centre.

    Rounding is half-up (not Python's half-to-even), so the result does not depend on the parity of a value."""
    x, y, w, h = box
    side = max(1, math.floor(scale * max(w, h) + 0.5))
    left = math.floor(x + w / 2 - side / 2 + 0.5)
    top = math.floor(y + h / 2 - side / 2 + 0.5)
    return left, top, left + side, top + side


def cut(img: Image.Image, box: tuple[int, int, int, int], pad: str) -> Image.Image:
    """``img`` cut to ``box``, which may reach outside it; outside parts are padded by ``pad``."""
    left, top, right, bottom = box
    inner = (max(left, 0), max(top, 0), min(right, img.width), min(bottom, img.height))
    if inner == box:
        return img.crop(box)
    if inner[0] >= inner[2] or inner[1] >= inner[3] or pad == "constant":
        return img.crop(box)  # PIL fills what lies outside the image with black
    arr = np.asarray(img.crop(inner))
    widths = ((inner[1] - top, bottom - inner[3]), (inner[0] - left, right - inner[2]), (0, 0))
    return Image.fromarray(np.pad(arr, widths, mode=pad))


def _load_categories(path: Path) -> dict[int, str]:
    found = []
    keys = stream_object(path, {}, on_value={"categories": found.append})
    if not found:
        raise UserError(f"{path} has no 'categories' table (top-level keys: {', '.join(keys) or 'none'}); give "
                        f"an instances_*.json file")
    try:
        return {int(c["id"]): str(c["name"]) for c in found[0]}
    except (TypeError, KeyError, ValueError):
        raise UserError(f"{path}: malformed 'categories' table (each entry needs an id and a name)") from None


def read_annotations(path: Path, wanted: list[str], flag: str):
    """(images {id: (file_name, width, height)}, instances of ``wanted``, {image id: categories present})."""
    if not path.is_file():
        raise UserError(f"{flag}: annotation file not found: {path}")
    try:
        categories = _load_categories(path)
        by_name = {name: cid for cid, name in categories.items()}
        unknown = [w for w in wanted if w not in by_name]
        if unknown:
            raise UserError(f"--categories: unknown category {unknown[0]!r} in {path}; available: "
                            f"{', '.join(sorted(by_name))}")
        ids = {by_name[w]: w for w in wanted}
        images: dict[int, tuple[str, int, int]] = {}
        instances: list[Instance] = []
        present: dict[int, set] = defaultdict(set)

        def on_image(im):
            images[int(im["id"])] = (str(im["file_name"]), int(im["width"]), int(im["height"]))

        def on_annotation(a):
            name = ids.get(a["category_id"])
            if name is None:
                return
            present[int(a["image_id"])].add(name)
            instances.append(Instance(int(a["id"]), int(a["image_id"]), name,
                                      tuple(float(v) for v in a["bbox"]), bool(a.get("iscrowd", 0))))

        stream_object(path, {"images": on_image, "annotations": on_annotation})
    except JSONStreamError as e:
        raise UserError(f"{flag}: {path} is not valid JSON ({e}); download it again") from None
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{flag}: {path}: malformed image or annotation entry ({type(e).__name__}: {e})") from None
    return images, instances, present


def _open(path: Path) -> Image.Image:
    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    with Image.open(path) as img:
        img.load()
        return to_rgb(img)


def _progress(total: int, desc: str):
    from ...progress import progress

    return progress(total=total, desc=desc, unit="img", disable=None, leave=False)


def crop_split(prep: PreparedOutput, annotations: Path, images_dir: Path, flag: str, categories: list[str],
               rules: Rules, split_of, skipped: dict, skipped_files: list) -> None:
    """Write the crops of one annotation file. ``split_of(image_id)`` -> "train" / "test"."""
    images, instances, present = read_annotations(annotations, categories, flag)
    domain = {categories[0]: "A", categories[1]: "B"}
    by_image: dict[int, list[Instance]] = defaultdict(list)
    for inst in sorted(instances, key=lambda i: (i.image_id, i.ann_id)):
        counts = skipped[inst.category]
        if inst.crowd:
            counts["crowd"] += 1
        elif min(inst.box[2], inst.box[3]) < rules.min_box:
            counts["small_box"] += 1
        elif len(present[inst.image_id]) > 1:
            counts["both_categories"] += 1
        elif inst.image_id not in images:
            counts["unknown_image_id"] += 1
        else:
            by_image[inst.image_id].append(inst)
    ext = rules.format
    bar = _progress(len(by_image), f"cropping {images_dir.name}")
    for image_id, group in by_image.items():
        file_name, width, height = images[image_id]
        src = images_dir / file_name
        split = split_of(image_id)
        planned = []
        for inst in group:
            dest = f"{folder_of(split, domain[inst.category])}/{inst.category}_{image_id:012d}_{inst.ann_id}.{ext}"
            box = crop_box(inst.box, rules.crop_scale)
            record = {"split": split, "domain": domain[inst.category], "category": inst.category,
                      "source": file_name, "images": str(images_dir), "image_id": image_id,
                      "annotation_id": inst.ann_id, "box": list(inst.box), "crop_box": list(box),
                      "padded": box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height}
            planned.append((inst, dest, box, record))
        bar.update(1)
        if all(prep.exists(dest) for _, dest, _, _ in planned):  # resuming: no need to decode the photo
            for _, dest, _, record in planned:
                prep.write(dest, record, None)
            continue
        reason = None
        if not src.is_file():
            reason, why = "missing_image", "file not found"
        else:
            try:
                img = _open(src)
                if img.size != (width, height):
                    reason, why = "size_mismatch", (f"{img.width}x{img.height} on disk, {width}x{height} in "
                                                    f"{annotations.name}")
            except Exception as e:  # PIL raises many types for corrupt input
                reason, why = "unreadable_image", f"{type(e).__name__}: {e}".splitlines()[0][:200]
        if reason is not None:
            for inst, *_ in planned:
                skipped[inst.category][reason] += 1
            skipped_files.append({"file": str(src), "reason": why, "instances": len(planned)})
            log.warning("skipped %s (%d instance(s)): %s", src, len(planned), why)
            continue
        for inst, dest, box, record in planned:
            crop = cut(img, box, rules.pad)
            if rules.size:
                crop = crop.resize((rules.size, rules.size), Image.Resampling.LANCZOS)
            prep.write(dest, record, lambda tmp, crop=crop: crop.save(tmp, FORMATS[ext], **(
                {"quality": 95} if ext == "jpg" else {"compress_level": 3})))
    bar.close()


def prepare(annotations, images, out, categories: list[str], val_annotations=None, val_images=None,
            test_fraction: float | None = None, seed: int = 0, rules: Rules = Rules()) -> dict:
    if len(categories) != 2 or categories[0] == categories[1]:
        raise UserError(f"--categories needs two different COCO category names separated by a comma (e.g. "
                        f"zebra,giraffe), got {','.join(categories)!r}")
    if (val_annotations is None) != (val_images is None):
        raise UserError("--val-annotations and --val-images go together: give both (val2017 as the test split) "
                        "or neither (a held-out part of train2017, --test-fraction)")
    if val_annotations is not None and test_fraction:
        raise UserError("give either --val-annotations/--val-images (val2017 is the test split) or "
                        "--test-fraction (a held-out part of train2017), not both")
    if val_annotations is None and test_fraction is None:
        test_fraction = 0.1
    if rules.pad not in PADS or rules.format not in FORMATS:
        raise UserError(f"--pad must be one of {PADS} and --format one of {tuple(FORMATS)}")
    inputs = {"--annotations": Path(annotations), "--images": Path(images)}
    if val_annotations is not None:
        inputs.update({"--val-annotations": Path(val_annotations), "--val-images": Path(val_images)})
    for flag, p in inputs.items():
        if flag.endswith("annotations") and not p.is_file():
            raise UserError(f"{flag}: annotation file not found: {p} (COCO's annotations_trainval2017.zip "
                            f"holds annotations/instances_train2017.json and instances_val2017.json)")
        if flag.endswith("images") and not p.is_dir():
            raise UserError(f"{flag}: image folder not found: {p}")
    options = {flag.lstrip("-").replace("-", "_"): str(p.resolve()) for flag, p in inputs.items()}
    options.update({"categories": list(categories), "test_fraction": test_fraction or 0.0, "seed": seed,
                    "min_box": rules.min_box, "crop_scale": rules.crop_scale, "pad": rules.pad,
                    "size": rules.size, "format": rules.format})
    with PreparedOutput(out, "coco", options, inputs) as prep:
        if not prep.start():
            return prep.meta
        skipped = {c: {r: 0 for r in REASONS} for c in categories}
        skipped_files: list[dict] = []
        if val_annotations is None:
            crop_split(prep, Path(annotations), Path(images), "--annotations", categories, rules,
                       lambda image_id: "test" if in_test(image_id, test_fraction, seed) else "train",
                       skipped, skipped_files)
        else:
            crop_split(prep, Path(annotations), Path(images), "--annotations", categories, rules,
                       lambda image_id: "train", skipped, skipped_files)
            crop_split(prep, Path(val_annotations), Path(val_images), "--val-annotations", categories, rules,
                       lambda image_id: "test", skipped, skipped_files)
        for c in categories:
            if not any(r["category"] == c for r in prep.records.values()):
                raise UserError(f"no usable '{c}' instance in {annotations} (skipped: "
                                f"{', '.join(f'{k} {v}' for k, v in skipped[c].items() if v) or 'none found'}); "
                                f"check --images and the rules (--min-box)")
        return prep.finish({"A": categories[0], "B": categories[1]}, skipped, skipped_files)
