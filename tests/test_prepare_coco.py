"""``deepcascade prepare coco``: object crops from a COCO tree laid out as the download (instances JSON with
categories last, train2017/, val2017/), every rule and skip reason checked on hand-worked boxes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _prepare_trees import W, H, coco_tree
from deepcascade.cli import main
from deepcascade.data.prepare import coco
from deepcascade.data.prepare.jsonstream import stream_object
from deepcascade.data.prepare.split import in_test


def cli(*args):
    return subprocess.run([sys.executable, "-m", "deepcascade", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def tree(module_tmp):
    return coco_tree(module_tmp("coco"))


def manifest(out: Path) -> dict:
    return {r["annotation_id"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def expected_crop(src: Path, box, pad="constant") -> np.ndarray:
    """The crop worked out independently: numpy slicing of the decoded photo, padding by numpy."""
    arr = np.asarray(Image.open(src).convert("RGB"))
    left, top, right, bottom = box
    pl, pt, pr, pb = max(0, -left), max(0, -top), max(0, right - arr.shape[1]), max(0, bottom - arr.shape[0])
    inner = arr[max(top, 0):min(bottom, arr.shape[0]), max(left, 0):min(right, arr.shape[1])]
    if pad == "constant":
        return np.pad(inner, ((pt, pb), (pl, pr), (0, 0)))
    return np.pad(inner, ((pt, pb), (pl, pr), (0, 0)), mode=pad)


def test_crops_boxes_and_skip_reasons(tree, tmp_path, capsys):
    out = tmp_path / "z2g"
    assert main(["prepare", "coco", "--annotations", str(tree["annotations"]), "--images", str(tree["images"]),
                 "--val-annotations", str(tree["val_annotations"]), "--val-images", str(tree["val_images"]),
                 "--categories", "zebra,giraffe", "--size", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    m = manifest(out)
    # Usable: 101 (zebra), 201 and 501 (giraffe), val 1101 and 1201. Nothing else.
    assert sorted(m) == [101, 201, 501, 1101, 1201]
    assert {k: (r["split"], r["domain"], r["category"]) for k, r in m.items()} == {
        101: ("train", "A", "zebra"), 201: ("train", "B", "giraffe"), 501: ("train", "B", "giraffe"),
        1101: ("test", "A", "zebra"), 1201: ("test", "B", "giraffe")}
    # Hand-worked: side = round(1.2 * longer side), centred on the box centre.
    assert m[101]["crop_box"] == [42, 24, 138, 120] and not m[101]["padded"]    # 80x64 at (50,40): side 96
    assert m[201]["crop_box"] == [112, 10, 232, 130] and m[201]["padded"]       # past the right border (W=200)
    assert m[501]["crop_box"] == [-8, 20, 112, 140] and m[501]["padded"]        # past the left border
    assert m[1101]["crop_box"] == [30, 20, 150, 140]
    assert m[101]["box"] == [50.0, 40.0, 80.0, 64.0] and m[101]["image_id"] == 1
    assert m[101]["source"] == "000000000001.jpg" and m[1101]["source"] == "000000000011.jpg"
    assert m[101]["file"] == "trainA/zebra_000000000001_101.png"
    for ann, image_dir in ((101, tree["images"]), (201, tree["images"]), (501, tree["images"]),
                           (1101, tree["val_images"]), (1201, tree["val_images"])):
        r = m[ann]
        got = np.asarray(Image.open(out / r["file"]))
        want = expected_crop(image_dir / r["source"], r["crop_box"])
        assert got.shape == want.shape and np.array_equal(got, want), ann
    border = np.asarray(Image.open(out / m[201]["file"]))
    assert border[:, 200 - 112:].max() == 0 and border[:, : 200 - 112].max() > 0  # black beyond the border
    # Every instance of the two categories is counted once: written or skipped with its reason.
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["complete"] is True
    assert meta["counts"] == {"trainA": 1, "trainB": 2, "testA": 1, "testB": 1}
    assert meta["skipped"]["zebra"] == {"crowd": 1, "small_box": 0, "both_categories": 1, "unknown_image_id": 1,
                                        "missing_image": 1, "unreadable_image": 1, "size_mismatch": 1}
    assert meta["skipped"]["giraffe"] == {"crowd": 0, "small_box": 1, "both_categories": 1,
                                          "unknown_image_id": 0, "missing_image": 0, "unreadable_image": 0,
                                          "size_mismatch": 0}
    named = {Path(u["file"]).name: u["reason"] for u in meta["skipped_files"]}
    assert set(named) == {"000000000004.jpg", "000000000006.jpg", "000000000007.jpg"}
    assert "not found" in named["000000000004.jpg"] and "truncated" in named["000000000006.jpg"]
    assert "100x80 on disk, 200x160" in named["000000000007.jpg"]
    assert "small_box 1" in printed and "both_categories 1" in printed and "trainB        2" in printed
    # The input trees are untouched (nothing written beside the originals).
    assert sorted(p.name for p in tree["images"].iterdir()) == [f"{i:012d}.jpg" for i in (1, 2, 3, 5, 6, 7, 8)]


def test_resize_reflect_jpeg_and_other_categories(tree, tmp_path):
    out = tmp_path / "z2e"
    coco.prepare(tree["annotations"], tree["images"], out, ["zebra", "elephant"], tree["val_annotations"],
                 tree["val_images"], rules=coco.Rules(pad="reflect", size=128, format="jpg"))
    m = manifest(out)
    # Elephants: image 8 has two; zebra 101 is usable; image 3 (zebra + giraffe) is not mixed here.
    assert {k: m[k]["category"] for k in m} == {101: "zebra", 301: "zebra", 901: "elephant", 902: "elephant",
                                               1101: "zebra"}
    for r in m.values():
        assert r["file"].endswith(".jpg")
        with Image.open(out / r["file"]) as im:
            assert im.size == (128, 128) and im.format == "JPEG"
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["domains"] == {"A": "zebra", "B": "elephant"} and meta["counts"]["testB"] == 0
    # Reflect padding at native size: the padded band mirrors the image.
    out2 = tmp_path / "reflect"
    coco.prepare(tree["annotations"], tree["images"], out2, ["zebra", "giraffe"], tree["val_annotations"],
                 tree["val_images"], rules=coco.Rules(pad="reflect", size=0))
    r = manifest(out2)[201]
    got = np.asarray(Image.open(out2 / r["file"]))
    assert np.array_equal(got, expected_crop(tree["images"] / r["source"], r["crop_box"], pad="reflect"))
    assert got[:, 200 - 112:].max() > 0


def test_held_out_split_is_by_image_id(tree, tmp_path):
    out = tmp_path / "held"
    meta = coco.prepare(tree["annotations"], tree["images"], out, ["zebra", "elephant"], test_fraction=0.5,
                        seed=3)
    m = manifest(out)
    assert meta["options"]["test_fraction"] == 0.5 and sorted(m) == [101, 301, 901, 902]
    for r in m.values():
        assert r["split"] == ("test" if in_test(r["image_id"], 0.5, 3) else "train")
        assert r["file"].startswith(r["split"])
    assert m[901]["split"] == m[902]["split"]  # both elephants of image 8 on the same side
    splits = {image_id: in_test(image_id, 0.5, 3) for image_id in range(1, 2001)}
    assert 0.45 < sum(splits.values()) / len(splits) < 0.55  # the threshold split holds out about the fraction


def test_bad_inputs_exit_2_with_one_line(tree, tmp_path, capsys):
    base = ["prepare", "coco", "--images", tree["images"], "--out", tmp_path / "o"]
    r = cli(*base, "--annotations", tmp_path / "nope.json", "--categories", "zebra,giraffe")  # the real CLI
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "annotation file not found" in r.stderr and "nope.json" in r.stderr

    def error(*args):
        code = main([*map(str, base), *map(str, args)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        return err

    err = error("--annotations", tree["annotations"], "--categories", "zebra,unicorn")
    assert "'unicorn'" in err and "available: elephant, giraffe, person, zebra" in err
    assert "two different COCO category names" in error("--annotations", tree["annotations"], "--categories",
                                                        "zebra")
    broken = tmp_path / "broken.json"
    broken.write_text(tree["annotations"].read_text()[:-300])
    assert "not valid JSON" in error("--annotations", broken, "--categories", "zebra,giraffe")
    captions = tmp_path / "captions_train2017.json"
    captions.write_text(json.dumps({"info": {}, "images": [], "annotations": [{"caption": "a zebra"}]}))
    assert "no 'categories' table" in error("--annotations", captions, "--categories", "zebra,giraffe")
    assert "go together" in error("--annotations", tree["annotations"], "--categories", "zebra,giraffe",
                                  "--val-images", tree["val_images"])
    assert "image folder not found" in error("--annotations", tree["annotations"], "--categories",
                                             "zebra,giraffe", "--images", tmp_path / "no_images")
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_stream_reader_matches_json_load_across_window_edges(tmp_path):
    """Every element decodes exactly as json.load would, whatever window size cuts through it."""
    data = {"info": {"a": [1, 2.5e-3, None, True], "s": "caf\u00e9 \"q\" \\ ,]}"}, "empty": [],
            "images": [{"id": i, "name": f"{i}\u00e9", "v": [i * 0.1] * (i % 7)} for i in range(300)],
            "n": 12345678901234567890, "annotations": [[1, [2, {"x": "]"}]], 7, -1.5e+30, "z"]}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    for chunk in (1, 7, 64, 1 << 20):
        got = {"images": [], "annotations": []}
        values = {}
        keys = stream_object(path, {k: got[k].append for k in got},
                             on_value={"info": lambda v: values.setdefault("info", v),
                                       "n": lambda v: values.setdefault("n", v)}, chunk=chunk)
        assert keys == list(data)
        assert got["images"] == data["images"] and got["annotations"] == data["annotations"]
        assert values == {"info": data["info"], "n": data["n"]}
