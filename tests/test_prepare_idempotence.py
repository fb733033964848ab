"""Every ``prepare`` kind (the real-data ones and ``synthetic``): a re-run over a finished output does nothing and says so; a run killed
mid-write is not taken as complete and the next run completes it to exactly what an uninterrupted run writes;
an ``--out`` overlapping an input is refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _prepare_trees import coco_tree, petimages_tree
from deepcascade.cli import main

ROOT = Path(__file__).resolve().parents[1]

# Runs the CLI with PreparedOutput.write patched so that the process SIGKILLs itself while writing its
# KILL_AT-th image: after the image went to its temporary file, before the rename (the worst moment).
KILLING_CLI = """
import os, signal, sys
from deepcascade.data.prepare import output
original, count = output.PreparedOutput.write, [0]
def write(self, dest, record, writer):
    count[0] += 1
    if count[0] == int(os.environ["KILL_AT"]):
        def dying(tmp):
            writer(tmp)
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, dest, record, dying)
    return original(self, dest, record, writer)
output.PreparedOutput.write = write
from deepcascade.cli import main
sys.exit(main(sys.argv[1:]))
"""


def snapshot(out: Path) -> dict:
    """Every file under ``out`` (hidden ones included) -> its bytes; prepare.json without machine details."""
    snap = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    meta = json.loads(snap.pop("prepare.json"))
    return {**snap, "prepare.json": json.dumps({k: v for k, v in meta.items() if k != "options"}, sort_keys=True)}


@pytest.fixture(scope="module")
def trees(module_tmp):
    root = module_tmp("sources")
    return {"coco": coco_tree(root / "coco"), "pet": petimages_tree(root / "kaggle", n_cat=8, n_dog=8)}


def commands(trees, out: Path) -> dict[str, list[str]]:
    c = trees["coco"]
    return {
        "coco": ["prepare", "coco", "--annotations", str(c["annotations"]), "--images", str(c["images"]),
                 "--categories", "zebra,giraffe", "--test-fraction", "0.5", "--size", "64", "--out", str(out)],
        "cats-dogs": ["prepare", "cats-dogs", "--src", str(trees["pet"]), "--out", str(out)],
        "synthetic": ["prepare", "synthetic", "--pair", "mugs-bottles", "--n", "3", "--n-test", "2", "--size", "32",
                      "--out", str(out)],
    }


@pytest.mark.parametrize("kind", ["coco", "cats-dogs", "synthetic"])
def test_rerun_does_nothing_and_says_so(trees, tmp_path, capsys, kind):
    out = tmp_path / "out"
    assert main(commands(trees, out)[kind]) == 0
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main(commands(trees, out)[kind]) == 0
    printed = capsys.readouterr().out
    assert "already prepared" in printed and "nothing to do" in printed and "trainA" in printed
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # not one file touched
    # The same folder with other options is refused, naming the option.
    cmd = commands(trees, out)[kind] + (["--seed", "1"])
    assert main(cmd) == 2
    said = "made with other parameters (pair mugs-bottles; seed 0;" if kind == "synthetic" else \
        "other options (seed: 0 there, 1 now)"
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("kind,kill_at", [("coco", 2), ("cats-dogs", 5), ("synthetic", 4)])
def test_killed_run_is_not_complete_and_is_completed(trees, tmp_path, kind, kill_at):
    out, fresh = tmp_path / "killed", tmp_path / "fresh"
    env = {**os.environ, "KILL_AT": str(kill_at), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", KILLING_CLI, *commands(trees, out)[kind]], env=env, cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == -9, r.stderr
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["complete"] is False and not (out / "manifest.jsonl").exists()
    images = [p for p in out.rglob("*") if p.is_file() and p.parent != out]
    hidden = [p for p in images if p.name.startswith(".")]
    assert len(hidden) == 1 and len(images) == kill_at  # kill_at - 1 whole images and the temporary file
    # Not complete: a re-run completes it (keeping the whole files) instead of saying "nothing to do".
    r = subprocess.run([sys.executable, "-m", "deepcascade", *commands(trees, out)[kind]], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "completing an interrupted preparation" in r.stderr and f"{kill_at - 1} kept" in r.stdout
    assert main(commands(trees, fresh)[kind]) == 0
    assert snapshot(out) == snapshot(fresh)  # byte-identical to an uninterrupted run, temporary file gone


def test_out_overlapping_an_input_is_refused(trees, tmp_path, capsys):
    pet = trees["pet"]
    for out, relation in ((pet, "is"), (pet / "Cat" / "out", "lies inside"), (pet.parent, "contains")):
        assert main(["prepare", "cats-dogs", "--src", str(pet), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--out {out} {relation} the input --src {pet}" in err and len(err.splitlines()) == 1
    assert not (pet / "Cat" / "out").exists() and not (pet / "prepare.json").exists()
    c = trees["coco"]
    assert main(["prepare", "coco", "--annotations", str(c["annotations"]), "--images", str(c["images"]),
                 "--categories", "zebra,giraffe", "--out", str(c["annotations"].parent)]) == 2
    assert f"contains the input --annotations {c['annotations']}" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["prepare", "cats-dogs", "--src", str(pet), "--out", str(foreign)]) == 2
    assert "not empty and holds no prepare.json" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_folder_being_prepared_is_locked(trees, tmp_path, capsys):
    """A second process on the same --out is refused at its first write; the lock goes with the run."""
    from deepcascade.fileio import folder_lock

    out = tmp_path / "out"
    cmd = commands(trees, out)["cats-dogs"]
    with folder_lock(out, "prepare output"):  # as a running prepare holds it
        assert main(cmd) == 2
        assert "in use by another deepcascade process" in capsys.readouterr().err
    assert main(cmd) == 0 and not (out / ".lock").exists()
    assert json.loads((out / "prepare.json").read_text())["complete"] is True
