"""``prepare cats-dogs | afhq | drit | folders`` on trees laid out as the downloads: usable images copied byte
for byte into the layout, unreadable ones named, counted and never copied, deterministic splits."""

import json
from pathlib import Path

import pytest

from _prepare_trees import afhq_tree, drit_tree, petimages_tree, photo, save_jpeg
from deepcascade.cli import main
from deepcascade.data.prepare.split import held_out_keys, split_key


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def files(out: Path, folder: str) -> list[str]:
    return sorted(p.relative_to(out / folder).as_posix() for p in (out / folder).rglob("*") if p.is_file())


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cats_dogs_petimages(tmp_path, capsys, caplog):
    pet = petimages_tree(tmp_path / "kaggle")
    out = tmp_path / "cat2dog"
    code, printed, _ = run(capsys, "prepare", "cats-dogs", "--src", pet, "--out", out)
    assert code == 0
    # 14 good cats (+ zero-byte 666, truncated 835, Thumbs.db), 12 good dogs (+ zero-byte 11702, Thumbs.db).
    cats, dogs = files(out, "trainA") + files(out, "testA"), files(out, "trainB") + files(out, "testB")
    assert sorted(cats) == sorted(f"{i}.jpg" for i in range(14))
    assert sorted(dogs) == sorted(f"{i}.jpg" for i in range(12))
    assert (len(files(out, "testA")), len(files(out, "testB"))) == (1, 1)  # round(0.1 * 14), round(0.1 * 12)
    assert set(files(out, "testA")) == held_out_keys([f"{i}.jpg" for i in range(14)], 0.1, 0)
    for name in files(out, "trainA"):  # byte for byte
        assert (out / "trainA" / name).read_bytes() == (pet / "Cat" / name).read_bytes()
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["skipped"] == {"cat": {"unreadable": 2, "not_an_image": 1}, "dog": {"unreadable": 1,
                                                                                     "not_an_image": 1}}
    named = {str(Path(u["file"]).relative_to(pet)): u["reason"] for u in meta["skipped_files"]}
    assert set(named) == {"Cat/666.jpg", "Cat/835.jpg", "Cat/Thumbs.db", "Dog/11702.jpg", "Dog/Thumbs.db"}
    assert "empty file" in named["Cat/666.jpg"] and "truncated" in named["Cat/835.jpg"]
    assert "Cat/666.jpg" in caplog.text and "Dog/11702.jpg" in caplog.text  # named in the log as they are met
    assert "unreadable 2" in printed and "5 skipped file(s)" in printed
    assert {r["class"] for r in records(out) if r["domain"] == "A"} == {"cat"}
    # Deterministic: the parent folder and another run give the same split; another seed another one.
    code, _, _ = run(capsys, "prepare", "cats-dogs", "--src", pet.parent, "--out", tmp_path / "again")
    assert code == 0 and files(tmp_path / "again", "testA") == files(out, "testA")
    run(capsys, "prepare", "cats-dogs", "--src", pet, "--out", tmp_path / "s", "--seed", "5", "--test-fraction",
        "0.5")
    assert len(files(tmp_path / "s", "testA")) == 7
    assert set(files(tmp_path / "s", "testA")) == held_out_keys([f"{i}.jpg" for i in range(14)], 0.5, 5)


def test_cats_dogs_kaggle_competition_layout(tmp_path, capsys):
    train = tmp_path / "kaggle" / "train"
    for i in range(5):
        save_jpeg(photo(i, 64, 48), train / f"cat.{i}.jpg")
        save_jpeg(photo(50 + i, 64, 48), train / f"dog.{i}.jpg")
    (train / "dog.9.jpg").write_bytes(b"")
    code, _, _ = run(capsys, "prepare", "cats-dogs", "--src", train.parent, "--out", tmp_path / "out",
                     "--test-fraction", "0.2")
    out = tmp_path / "out"
    assert code == 0
    assert files(out, "trainA") + files(out, "testA") != [] and all(
        n.startswith("cat.") for n in files(out, "trainA") + files(out, "testA"))
    assert sorted(files(out, "trainB") + files(out, "testB")) == [f"dog.{i}.jpg" for i in range(5)]
    assert json.loads((out / "prepare.json").read_text())["skipped"]["dog"]["unreadable"] == 1


@pytest.mark.parametrize("test_name", ["val", "test"])  # AFHQ, AFHQ-v2
def test_afhq(tmp_path, capsys, test_name):
    afhq = afhq_tree(tmp_path, test_name=test_name)
    out = tmp_path / "afhq-cat2dog"
    code, _, _ = run(capsys, "prepare", "afhq", "--src", afhq, "--domains", "cat,dog", "--out", out)
    assert code == 0
    ext = "png" if test_name == "test" else "jpg"
    assert files(out, "trainA") == [f"flickr_cat_{i:06d}.{ext}" for i in range(4)]
    assert files(out, "trainB") == [f"flickr_dog_{i:06d}.{ext}" for i in range(4)]
    assert files(out, "testA") == [f"flickr_cat_{i:06d}.{ext}" for i in range(2)]
    assert (out / "testB" / f"flickr_dog_000001.{ext}").read_bytes() == (
        afhq / test_name / "dog" / f"flickr_dog_000001.{ext}").read_bytes()
    # Other classes, domain order as given.
    code, _, _ = run(capsys, "prepare", "afhq", "--src", afhq, "--domains", "wild,cat", "--out", tmp_path / "w")
    assert code == 0 and files(tmp_path / "w", "trainA")[0].startswith("flickr_wild")
    code, _, err = run(capsys, "prepare", "afhq", "--src", afhq, "--domains", "cat,fox", "--out", tmp_path / "x")
    assert code == 2 and "'fox'" in err and "available: cat, dog, wild" in err and len(err.splitlines()) == 1


def test_drit(tmp_path, capsys):
    c2d = drit_tree(tmp_path / "download")
    (c2d / "trainB" / "0105.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "faces"
    code, _, _ = run(capsys, "prepare", "drit", "--src", c2d.parent, "--out", out)  # the folder holding cat2dog/
    assert code == 0
    for folder, n in (("trainA", 5), ("trainB", 5), ("testA", 2), ("testB", 3)):
        assert files(out, folder) == sorted(p.name for p in (c2d / folder).iterdir() if p.name != "0105.jpg")
        assert len(files(out, folder)) == n
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["domains"] == {"A": "cat", "B": "dog"} and meta["skipped"]["dog"]["unreadable"] == 1
    (c2d / "testB").rename(c2d / "test_B")
    code, _, err = run(capsys, "prepare", "drit", "--src", c2d, "--out", tmp_path / "x")
    assert code == 2 and "missing: testB/" in err


def test_folders_split_is_exact_and_deterministic(tmp_path, capsys):
    a, b = tmp_path / "horses", tmp_path / "zebras"
    for i in range(20):
        save_jpeg(photo(i, 48, 48), a / ("sub" if i % 2 else "") / f"h{i}.jpg")
    for i in range(9):
        save_jpeg(photo(100 + i, 48, 48), b / f"z{i}.jpg")
    out = tmp_path / "h2z"
    code, _, _ = run(capsys, "prepare", "folders", "--a", a, "--b", b, "--test-fraction", "0.25", "--out", out)
    assert code == 0
    rel_a = [p.relative_to(a).as_posix() for p in sorted(a.rglob("*.jpg"))]
    assert files(out, "testA") == sorted(held_out_keys(rel_a, 0.25, 0)) and len(files(out, "testA")) == 5
    assert len(files(out, "testB")) == 2 and len(files(out, "trainB")) == 7  # round(2.25)
    assert sorted(files(out, "trainA") + files(out, "testA")) == sorted(rel_a)  # sub-folders kept
    # The held-out files are those with the smallest split keys.
    keys = sorted(rel_a, key=lambda k: split_key(k, 0))
    assert set(files(out, "testA")) == set(keys[:5])
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["domains"] == {"A": "horses", "B": "zebras"}
    code, _, err = run(capsys, "prepare", "folders", "--a", a, "--b", a / "sub", "--out", tmp_path / "x")
    assert code == 2 and "overlap" in err


def test_empty_or_missing_source_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.jpg").write_bytes(b"")
    save_jpeg(photo(0, 32, 32), tmp_path / "ok" / "0.jpg")
    code, _, err = run(capsys, "prepare", "folders", "--a", tmp_path / "empty", "--b", tmp_path / "ok", "--out",
                       tmp_path / "o")
    assert code == 2 and "--a" in err and "no usable image" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, "prepare", "folders", "--a", tmp_path / "ok", "--b", tmp_path / "bad", "--out",
                       tmp_path / "o")
    assert code == 2 and "1 unreadable" in err
    code, _, err = run(capsys, "prepare", "cats-dogs", "--src", tmp_path / "empty", "--out", tmp_path / "o")
    assert code == 2 and "neither the PetImages layout" in err
    code, _, err = run(capsys, "prepare", "afhq", "--src", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert code == 2 and "folder not found" in err
    assert not (tmp_path / "o").exists()
