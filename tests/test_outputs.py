"""Outputs never replace inputs (issue 17, items 1 and 6).

`translate` refuses an --out that is, lies inside, or contains its --input, and `prepare` one where an output
could land on an input file (exit 2, naming both); an existing output file is replaced only with --overwrite (else it is
kept and counted); a second process writing into the same output folder is refused (lock). After every refused
or completed run the inputs' checksums are unchanged.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from deepcascade.data import synthetic as syn
from deepcascade.errors import UserError
from deepcascade.fileio import check_output_location, folder_lock


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "deepcascade", *map(str, args)], capture_output=True, text=True,
                          **kw)


def checksums(folder: Path) -> dict:
    folder = Path(folder)
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".lock")
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def assert_refused(r, *words):
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    for w in words:
        assert str(w) in r.stderr, (w, r.stderr)


@pytest.fixture
def photos(tiny_run, tmp_path):
    """A user's folder: three photos (one in a subfolder) and a note."""
    root, _, _ = tiny_run
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    src = sorted((root / "data" / "testA").glob("*.png"))
    Image.open(src[0]).save(d / "a.png")
    Image.open(src[1]).convert("RGB").save(d / "b.jpg", quality=90)
    Image.open(src[2]).save(d / "sub" / "c.png")
    (d / "notes.txt").write_text("mine")
    return d


# ---------------------------------------------------------------------------------------------- the check
def test_check_output_location_relations(tmp_path):
    inp = tmp_path / "in"
    (inp / "deep").mkdir(parents=True)
    (inp / "x.png").write_bytes(b"x")
    (inp / "deep" / "y.png").write_bytes(b"y")
    # same folder, an output on an input file
    with pytest.raises(UserError, match=r"is the input --input .*would|is the input --input .*could"):
        check_output_location(inp, {"--input": inp}, [inp / "x.png"])
    # inside, with outputs landing on an input file
    with pytest.raises(UserError, match=r"lies inside the input --input .*deep.y\.png"):
        check_output_location(inp / "deep", {"--input": inp}, [inp / "deep" / "y.png"])
    # contains
    with pytest.raises(UserError, match="contains the input --data"):
        check_output_location(tmp_path, {"--data": inp}, [inp / "x.png"])
    # folders whose every file may be written
    with pytest.raises(UserError, match="could replace 1 input file"):
        check_output_location(tmp_path, {"--data": inp}, [], output_folders=[inp / "deep"])
    # unknown outputs: any overlap is refused
    with pytest.raises(UserError, match="does not overlap"):
        check_output_location(inp / "new", {"--input": inp}, None)
    # overlapping but no collision: allowed
    check_output_location(inp, {"--input": inp}, [inp / "x.png.out.png", inp / "new" / "x.png"])
    check_output_location(inp / "new", {"--input": inp}, None if False else [inp / "new" / "x.png"])
    # no overlap: allowed even with outputs unknown; None inputs are ignored
    check_output_location(tmp_path / "elsewhere", {"--input": inp, "--other": None}, None)
    # an input that is a file inside --out
    with pytest.raises(UserError, match="contains the input --input"):
        check_output_location(inp, {"--input": inp / "x.png"}, [inp / "x.png"])
    # --out an existing file
    with pytest.raises(UserError, match="is an existing file"):
        check_output_location(inp / "x.png", {}, [])


def test_check_follows_symbolic_links(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "x.png").write_bytes(b"x")
    (tmp_path / "alias").symlink_to(inp)
    with pytest.raises(UserError, match="is the input"):
        check_output_location(tmp_path / "alias", {"--input": inp}, [tmp_path / "alias" / "x.png"])


# ------------------------------------------------------------------------------------------------ translate
def test_translate_into_its_own_input_folder_is_refused(tiny_run, photos, dc):
    cli = dc
    _, _, run = tiny_run
    before = checksums(photos)
    r = cli("translate", "--run", run, "--input", photos, "--out", photos)
    assert_refused(r, f"--out {photos} is the input --input {photos}", "choose an --out that does not overlap")
    r = cli("translate", "--run", run, "--input", photos, "--out", photos, "--overwrite")  # never an input
    assert_refused(r, "is the input")
    # one file as input, its own folder as output
    r = cli("translate", "--run", run, "--input", photos / "a.png", "--out", photos)
    assert_refused(r, "contains the input --input", photos / "a.png")
    assert checksums(photos) == before
    assert not (photos / "index.html").exists() and not (photos / "_sources").exists()


def test_translate_output_containing_the_input_is_refused(tiny_run, tmp_path, dc):
    cli = dc
    """--input d/in, --out d: d/in/in/x.png would be written to d/in/x.png, an input file."""
    root, _, run = tiny_run
    d = tmp_path / "d"
    (d / "in" / "in").mkdir(parents=True)
    src = sorted((root / "data" / "testA").glob("*.png"))[0]
    for p in (d / "in" / "x.png", d / "in" / "in" / "x.png"):
        p.write_bytes(src.read_bytes())
    before = checksums(d)
    r = cli("translate", "--run", run, "--input", d / "in", "--out", d)
    assert_refused(r, f"--out {d} contains the input --input {d / 'in'}")
    assert checksums(d) == before


def test_translate_inside_the_input_is_refused_even_without_collision(tiny_run, photos, dc):
    """Translations written below --input would be read back as data by training, evaluate and the next
    translate: any overlap is refused, as evaluate does."""
    cli = dc
    _, _, run = tiny_run
    before = checksums(photos)
    out = photos / "translated"
    r = cli("translate", "--run", run, "--input", photos, "--out", out)
    assert_refused(r, f"--out {out} lies inside the input --input {photos}")
    assert checksums(photos) == before and not out.exists()


def test_existing_outputs_are_kept_unless_overwrite(tiny_run, photos, tmp_path, dc):
    cli = dc
    _, _, run = tiny_run
    before = checksums(photos)
    out = tmp_path / "out"
    r = cli("translate", "--run", run, "--input", photos, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    (out / "a.png").write_bytes(b"an older result the user edited")
    first = checksums(out)
    r = cli("translate", "--run", run, "--input", photos, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "translated 0 image(s)" in r.stdout
    assert "kept 3 existing translation(s)" in r.stdout and "--overwrite" in r.stdout
    assert {k: v for k, v in checksums(out).items() if not k.endswith("index.html")} == \
        {k: v for k, v in first.items() if not k.endswith("index.html")}
    index = (out / "index.html").read_text()
    assert "sub/c.png" in index and "3 kept from before" in index
    # a new input image is translated, the others kept
    Image.open(photos / "a.png").save(photos / "d.png")
    before["" + str(photos / "d.png")] = checksums(photos / "d.png")[str(photos / "d.png")]
    r = cli("translate", "--run", run, "--input", photos, "--out", out)
    assert "translated 1 image(s)" in r.stdout and "kept 3" in r.stdout
    assert (out / "a.png").read_bytes() == b"an older result the user edited"
    r = cli("translate", "--run", run, "--input", photos, "--out", out, "--overwrite")
    assert r.returncode == 0 and "translated 4 image(s)" in r.stdout
    assert Image.open(out / "a.png").size == (32, 32)
    assert checksums(photos) == before


def test_a_foreign_index_html_is_not_replaced(tiny_run, photos, tmp_path, dc):
    cli = dc
    _, _, run = tiny_run
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("<html>my own page</html>")
    r = cli("translate", "--run", run, "--input", photos, "--out", out)
    assert_refused(r, out / "index.html", "not written by deepcascade", "--overwrite")
    assert (out / "index.html").read_text() == "<html>my own page</html>"
    r = cli("translate", "--run", run, "--input", photos, "--out", out, "--overwrite")
    assert r.returncode == 0 and "deepcascade translation" in (out / "index.html").read_text()


# ----------------------------------------------------------------------------------- two processes (item 6)
HOLD = """
import sys, time
from deepcascade.fileio import folder_lock
with folder_lock(sys.argv[1], "output folder"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_translate_into_the_same_folder_is_refused(tiny_run, photos, tmp_path, dc):
    """While one process writes an output folder, another translate into it exits 2 naming the lock."""
    _, _, run = tiny_run
    cli = dc
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = cli("translate", "--run", run, "--input", photos, "--out", out)
        assert_refused(r, f"output folder {out} is in use by another deepcascade process", out / ".lock")
        assert not (out / "index.html").exists() and not (out / "a.png").exists()
    finally:
        holder.kill()
        holder.wait()
    r = cli("translate", "--run", run, "--input", photos, "--out", out)  # the lock died with its holder
    assert r.returncode == 0, r.stderr[-2000:]


def test_two_concurrent_translates_leave_complete_files(tiny_run, photos, tmp_path):
    """Started together: each either finishes (exit 0) or is refused (exit 2, the lock); the files are whole."""
    _, _, run = tiny_run
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "deepcascade", "translate", "--run", str(run), "--input", str(photos), "--out",
           str(out), "--overwrite"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
    for rc, _, err in results:
        assert rc in (0, 2) and "Traceback" not in err, err[-2000:]
        assert rc == 0 or "is in use by another deepcascade process" in err
    assert any(rc == 0 for rc, _, _ in results)
    for name in ("a.png", "b.jpg", "sub/c.png", "_sources/a.png", "_sources/b.jpg.png", "_sources/sub/c.png"):
        with Image.open(out / name) as im:
            im.load()  # raises on a truncated file
            assert im.size == (32, 32)
    assert (out / "index.html").read_text().rstrip().endswith("</html>")
    assert not list(out.rglob(".*"))  # no temporary file left, and the lock is gone


# ------------------------------------------------------------------------------------------------- prepare
def test_prepare_synthetic_keeps_what_is_there_and_refuses_to_mix(tmp_path, dc):
    cli = dc
    out = tmp_path / "data"
    r = cli("prepare", "synthetic", "--out", out, "--n", "2", "--n-test", "1", "--size", "32", "--seed", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    first = checksums(out)
    (out / "trainA" / "A_train_000001.png").unlink()  # as if interrupted before it was written
    r = cli("prepare", "synthetic", "--out", out, "--n", "2", "--n-test", "1", "--size", "32", "--seed", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"kept 5 existing synthetic image(s) of the same seed and size in {out}" in r.stderr
    assert checksums(out) == first  # the missing image rendered again, identical
    # another seed: refused, nothing touched
    r = cli("prepare", "synthetic", "--out", out, "--n", "2", "--n-test", "1", "--size", "32", "--seed", "4")
    assert_refused(r, "made with other parameters", "seed 3", "--overwrite")
    assert checksums(out) == first
    # fewer images than there are: refused (the extra ones would be mixed in)
    r = cli("prepare", "synthetic", "--out", out, "--n", "1", "--n-test", "1", "--size", "32", "--seed", "3")
    assert_refused(r, "beyond the requested counts")
    assert checksums(out) == first
    r = cli("prepare", "synthetic", "--out", out, "--n", "1", "--n-test", "1", "--size", "32", "--seed", "4",
            "--overwrite")
    assert r.returncode == 0 and len(list((out / "trainA").glob("*.png"))) == 1


def test_interrupted_synthetic_dataset_is_not_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = syn.writer.render

    def render(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(syn.writer, "render", render)
    with pytest.raises(KeyboardInterrupt):
        syn.write_dataset(tmp_path, n=2, size=32, seed=0, n_test=1, progress=False)
    assert not syn.is_complete(tmp_path, n=2, size=32, seed=0, n_test=1)
    assert not [p for p in tmp_path.rglob(".*")]  # no half-written image under a temporary name
    monkeypatch.setattr(syn.writer, "render", real)
    syn.write_dataset(tmp_path, n=2, size=32, seed=0, n_test=1, progress=False)
    assert syn.is_complete(tmp_path, n=2, size=32, seed=0, n_test=1)


def test_folder_lock_is_exclusive_and_cleaned_up(tmp_path):
    with folder_lock(tmp_path / "o", "output folder") as lock:
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(UserError, match="in use by another deepcascade process"):
            with folder_lock(tmp_path / "o", "output folder"):
                pass
    assert not lock.exists()
    with folder_lock(tmp_path / "o", "output folder"):  # free again
        pass


# ------------------------------------------------------------------------------------------------- evaluate
def test_evaluate_refuses_an_out_overlapping_an_input(tiny_run, tmp_path, dc):
    root, _, run = tiny_run
    data = root / "data"
    before = {**checksums(data), **checksums(run / "models")}
    folder_args = ["--fake", data / "testA", "--real", data / "testB", "--source", data / "testA"]
    for out, words in ((data / "testA", ["is the input --fake"]),
                       (data / "testA" / "report", ["lies inside the input --fake"]),
                       (data, ["contains the input --fake"])):
        r = dc("evaluate", *folder_args, "--out", out)
        assert_refused(r, f"--out {out}", *words)
    for out, words in ((run, ["contains the input --run (config.yaml)"]),
                       (run / "models", ["is the input --run (models/)"]),
                       (data / "testB" / "eval", ["lies inside the input data.test_b"])):
        r = dc("evaluate", "--run", run, "--out", out, "--overwrite")
        assert_refused(r, f"--out {out}", *words)
    assert {**checksums(data), **checksums(run / "models")} == before
    assert not (data / "testA" / "metrics.json").exists() and not (run / "index.html").exists()


def test_evaluate_keeps_a_foreign_report_and_rewrites_its_own(tiny_run, tmp_path, dc):
    root, _, run = tiny_run
    data = root / "data"
    before = checksums(data)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": 1}')
    args = ["evaluate", "--fake", data / "testA", "--real", data / "testB", "--source", data / "testA",
            "--metrics", "layout", "--out", out]
    r = dc(*args)
    assert_refused(r, out / "metrics.json", "not written by deepcascade evaluate", "--overwrite")
    assert (out / "metrics.json").read_text() == '{"mine": 1}'
    r = dc(*args, "--overwrite")
    assert r.returncode == 0, r.stderr[-2000:]
    first = json.loads((out / "metrics.json").read_text())
    assert first["a2b"]["layout"] is not None
    r = dc(*args)  # its own report: rewritten without --overwrite
    assert r.returncode == 0, r.stderr[-2000:]
    assert checksums(data) == before
    with folder_lock(out, "output folder"):  # another process writing the folder
        assert_refused(dc(*args), f"output folder {out} is in use")
