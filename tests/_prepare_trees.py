"""Small trees laid out exactly as the original downloads, for the ``prepare`` tests (tiny images)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 200, 160  # every COCO test photo


def photo(seed: int, w: int = W, h: int = H) -> Image.Image:
    """Smooth random colours (JPEG keeps them well) with a per-image offset, so that crops are recognisable."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)


def save_jpeg(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=92)


def truncated_jpeg(path: Path, seed: int = 99, w: int = 80, h: int = 64) -> None:
    buf = io.BytesIO()
    photo(seed, w, h).save(buf, "JPEG", quality=92)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


CATEGORIES = [  # COCO's ids for these
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "animal", "id": 22, "name": "elephant"},
    {"supercategory": "animal", "id": 24, "name": "zebra"},
    {"supercategory": "animal", "id": 25, "name": "giraffe"},
]
ZEBRA, GIRAFFE, ELEPHANT, PERSON = 24, 25, 22, 1


def _annotation(ann_id, image_id, cat, bbox, crowd=0):
    x, y, w, h = bbox
    seg = ({"counts": [0, 5, 10], "size": [H, W]} if crowd else [[x, y, x + w, y, x + w, y + h, x, y + h]])
    return {"segmentation": seg, "area": float(w * h), "iscrowd": crowd, "image_id": image_id,
            "bbox": list(map(float, bbox)), "category_id": cat, "id": ann_id}


def _write_instances(path: Path, images: list[dict], annotations: list[dict]) -> None:
    """Key order as in COCO's files: info, licenses, images, annotations, categories (last)."""
    data = {"info": {"description": "COCO 2017 Dataset (test tree)", "year": 2017},
            "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution"}],
            "images": images, "annotations": annotations, "categories": CATEGORIES}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _image(image_id, w=W, h=H):
    return {"license": 4, "file_name": f"{image_id:012d}.jpg", "coco_url": "", "height": h, "width": w,
            "date_captured": "2013-11-14 16:28:13", "flickr_url": "", "id": image_id}


# The cases (train2017). Expected crop boxes are worked out by hand in the tests.
TRAIN_ANNOTATIONS = [
    _annotation(101, 1, ZEBRA, (50, 40, 80, 64)),           # plain zebra
    _annotation(102, 1, ZEBRA, (10, 10, 100, 100), crowd=1),  # crowd
    _annotation(103, 1, PERSON, (0, 0, 20, 40)),             # another category: ignored
    _annotation(201, 2, GIRAFFE, (140, 20, 64, 100)),        # box at the right border: padded
    _annotation(202, 2, GIRAFFE, (10, 10, 30, 80)),          # tiny: shorter side 30 < 64
    _annotation(301, 3, ZEBRA, (20, 20, 70, 70)),            # both categories in one image
    _annotation(302, 3, GIRAFFE, (100, 20, 70, 100)),
    _annotation(401, 4, ZEBRA, (30, 30, 90, 90)),            # image id 4 missing on disk
    _annotation(501, 5, GIRAFFE, (20, 30, 64, 100)),         # shorter side exactly 64: kept; left border
    _annotation(601, 6, ZEBRA, (20, 20, 80, 80)),            # truncated JPEG
    _annotation(701, 7, ZEBRA, (20, 10, 64, 64)),            # photo smaller on disk than annotated
    _annotation(801, 999, ZEBRA, (20, 20, 80, 80)),          # image id not in the images table
    _annotation(901, 8, ELEPHANT, (20, 20, 100, 100)),       # elephant only
    _annotation(902, 8, ELEPHANT, (120, 20, 70, 90)),
]
VAL_ANNOTATIONS = [
    _annotation(1101, 11, ZEBRA, (40, 40, 100, 80)),
    _annotation(1201, 12, GIRAFFE, (60, 20, 70, 120)),
]


def coco_tree(root: Path) -> dict:
    """``root/annotations/instances_{train,val}2017.json``, ``root/train2017/``, ``root/val2017/``."""
    train_ids = [1, 2, 3, 4, 5, 6, 7, 8]
    _write_instances(root / "annotations" / "instances_train2017.json", [_image(i) for i in train_ids],
                     TRAIN_ANNOTATIONS)
    _write_instances(root / "annotations" / "instances_val2017.json", [_image(11), _image(12)], VAL_ANNOTATIONS)
    for i in train_ids:
        path = root / "train2017" / f"{i:012d}.jpg"
        if i == 4:
            continue  # missing on disk
        if i == 6:
            truncated_jpeg(path)
        elif i == 7:
            save_jpeg(photo(i, W // 2, H // 2), path)
        else:
            save_jpeg(photo(i), path)
    for i in (11, 12):
        save_jpeg(photo(i), root / "val2017" / f"{i:012d}.jpg")
    return {"annotations": root / "annotations" / "instances_train2017.json", "images": root / "train2017",
            "val_annotations": root / "annotations" / "instances_val2017.json", "val_images": root / "val2017"}


def petimages_tree(root: Path, n_cat: int = 14, n_dog: int = 12) -> Path:
    """``root/PetImages/{Cat,Dog}/N.jpg`` with Kaggle's known defects: zero-byte files (Cat/666.jpg,
    Dog/11702.jpg), a truncated JPEG, and a Thumbs.db per folder."""
    pet = root / "PetImages"
    for cls, n, seed in (("Cat", n_cat, 0), ("Dog", n_dog, 1000)):
        for i in range(n):
            save_jpeg(photo(seed + i, 96, 80), pet / cls / f"{i}.jpg")
        (pet / cls / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
    (pet / "Cat" / "666.jpg").write_bytes(b"")
    (pet / "Dog" / "11702.jpg").write_bytes(b"")
    truncated_jpeg(pet / "Cat" / "835.jpg")
    return pet


def afhq_tree(root: Path, test_name: str = "val", n_train: int = 4, n_test: int = 2) -> Path:
    """``root/afhq/{train,val}/{cat,dog,wild}/flickr_<class>_NNNNNN.jpg`` (AFHQ-v2: ``test/``, PNG)."""
    afhq = root / "afhq"
    for split, n in (("train", n_train), (test_name, n_test)):
        for c, cls in enumerate(("cat", "dog", "wild")):
            for i in range(n):
                img = photo(100 * c + i + (50 if split != "train" else 0), 64, 64)
                if test_name == "test":
                    (afhq / split / cls).mkdir(parents=True, exist_ok=True)
                    img.save(afhq / split / cls / f"flickr_{cls}_{i:06d}.png")
                else:
                    save_jpeg(img, afhq / split / cls / f"flickr_{cls}_{i:06d}.jpg")
    return afhq


def drit_tree(root: Path, counts=(5, 6, 2, 3)) -> Path:
    """``root/cat2dog/{trainA,trainB,testA,testB}/*.jpg``."""
    c2d = root / "cat2dog"
    for (folder, n), base in zip(zip(("trainA", "trainB", "testA", "testB"), counts), (0, 100, 200, 300)):
        for i in range(n):
            save_jpeg(photo(base + i, 72, 72), c2d / folder / f"{base + i:04d}.jpg")
    return c2d
