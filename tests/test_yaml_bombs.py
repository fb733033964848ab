"""Hostile YAML: every command that reads a config refuses a "billion laughs" file (nested aliases) and a
5,000-deep nesting with exit 2 and one short line, and no error message quotes more than a cut excerpt of a
value. Through files given on the command line, ``--set`` values, and a run directory's ``config.yaml``."""

import subprocess
import sys
import time

import pytest
from PIL import Image

from deepcascade.config import build_config, load_yaml
from deepcascade.errors import UserError
from deepcascade.safe_yaml import MAX_NODES, excerpt, load

# 9 ** 9 = 387 million leaves in 306 bytes; PyYAML builds it in microseconds as shared lists, and any walk of
# the result (repr, deep copy, comparison) expands it
LAUGHS = "lol0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
# the same as the value of a real field: the error message used to print it with repr
LAUGHS_IN_FIELD = LAUGHS.replace("lol8:", "invert: {levels: ") .rstrip("\n") + "}\n"
DEEP = "data: " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_BLOCK = "".join("  " * i + f"k{i}:\n" for i in range(5000)) + "  " * 5000 + "v\n"


def _poisoned_run(path, text):
    path.mkdir()
    (path / "config.yaml").write_text(text)
    return path


def _commands(tmp_path, text, tag):
    """argv of every command that reads a config, each fed ``text``."""
    f = tmp_path / f"{tag}.yaml"
    f.write_text(text)
    run = _poisoned_run(tmp_path / f"run-{tag}", text)
    imgs = tmp_path / "imgs"
    imgs.mkdir(exist_ok=True)
    Image.new("RGB", (32, 32)).save(imgs / "x.png")
    return {
        "config --config": ["config", "--config", str(f)],
        "train --dry-run": ["train", str(f), "--stage", "all", "--dry-run", "--run-dir", str(tmp_path / "r")],
        "finetune": ["finetune", str(f), "--run-dir", str(tmp_path / "ft")],
        "translate --run": ["translate", "--run", str(run), "--input", str(imgs), "--out", str(tmp_path / "t")],
        "evaluate --run": ["evaluate", "--run", str(run), "--out", str(tmp_path / "e")],
        "synthesize --run": ["synthesize", "--run", str(run), "--domain", "a", "--out", str(tmp_path / "s")],
        "train on the poisoned run": ["train", str(tmp_path / "ok.yaml"), "--stage", "invert", "--run-dir",
                                      str(run)],
    }


@pytest.mark.parametrize("tag, text", [("laughs", LAUGHS), ("deep", DEEP)], ids=["laughs", "deep"])
def test_every_config_reader_refuses_hostile_yaml(tmp_path, tag, text):
    (tmp_path / "ok.yaml").write_text("backbone: {weights: random}\ndata: {image_size: 32, load_size: 32}\n")
    for name, argv in _commands(tmp_path, text, tag).items():
        # A bomb that went off would run for minutes and take gigabytes; a refusal costs the command's start
        # (torch's import included), a few CPU seconds: the timeout only leaves room for a loaded machine.
        r = subprocess.run([sys.executable, "-m", "deepcascade", *argv], capture_output=True, text=True,
                           timeout=120)
        err = r.stderr.strip()
        assert r.returncode == 2, (name, r.returncode, err[-2000:])
        assert "Traceback" not in err and len(err.splitlines()) == 1 and len(err) < 300, (name, err[:2000])
        assert "YAML" in err and "config" in err, (name, err)


@pytest.mark.parametrize("text", [LAUGHS_IN_FIELD, DEEP_BLOCK], ids=["laughs-in-a-field", "deep-block"])
def test_other_hostile_shapes(tmp_path, text):
    """The bomb as the value of a real field (the message used to repr it), and block-style deep nesting."""
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(UserError) as e:
        build_config(f)
    assert str(f) in str(e.value) and len(str(e.value)) < 300 and "\n" not in str(e.value)


def test_set_values_are_bounded_too():
    assert build_config(None, ["cache.levels=[&five 5, *five]"]).cache.levels == [5, 5]
    nested = "[" * 200 + "]" * 200
    with pytest.raises(UserError, match="nested more than"):
        build_config(None, [f"invert.levels={nested}"])
    laughs = "[" + ", ".join(["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]) + "]"
    with pytest.raises(UserError, match="expands to more than") as e:
        build_config(None, [f"invert.levels={laughs}"])
    assert len(str(e.value)) < 300


def test_aliases_within_the_bound_still_work(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("invert: {lr: &lr 0.001, levels: &lv [5, 4, 3]}\ndeep: {lr: *lr}\ncache: {levels: *lv}\n")
    cfg = build_config(f)
    assert cfg.invert.lr == cfg.deep.lr == 0.001 and cfg.cache.levels == [5, 4, 3]
    # the bound counts every use of an alias: just under it loads, just over it is refused
    wide = "[" + ", ".join(["&a [" + ", ".join(["1"] * 99) + "]"] + ["*a"] * 98) + "]"
    assert len(load(wide, "x")) == 99
    over = "[" + ", ".join(["&a [" + ", ".join(["1"] * 99) + "]"] + ["*a"] * 101) + "]"
    with pytest.raises(UserError, match=f"more than {MAX_NODES}"):
        load(over, "x")


def test_error_messages_quote_a_cut_excerpt(tmp_path):
    """A wrong value is quoted, but never more than a short excerpt, however large or deep it is."""
    f = tmp_path / "big.yaml"
    f.write_text("data: {root: " + "[" + ", ".join(["x" * 1000] * 3000) + "]}\n")
    t0 = time.process_time()
    with pytest.raises(UserError) as e:
        build_config(f)
    assert "data.root" in str(e.value) and len(str(e.value)) < 200, str(e.value)[:500]
    assert time.process_time() - t0 < 60  # not a timing claim: a guard against a walk of the whole value
    assert len(excerpt(list(range(10 ** 6)))) <= 80 and len(excerpt("x" * 10 ** 6)) <= 80
    deep: list = []
    for _ in range(10_000):  # deeper than Python's recursion limit: repr() itself would fail
        deep = [deep]
    assert excerpt(deep).startswith("[[[")


@pytest.mark.parametrize("text, said", [
    (b"\xff\xfe data: 1", "UTF-8"),
    (b"data: [1, 2\nengine: 3", "line 2"),
    (b"- just\n- a list\n", "mapping"),
])
def test_malformed_files_are_one_line(tmp_path, text, said):
    f = tmp_path / "bad.yaml"
    f.write_bytes(text)
    with pytest.raises(UserError) as e:
        load_yaml(f)
    assert said in str(e.value) and str(f) in str(e.value) and "\n" not in str(e.value)


def test_library_entry_points_read_through_the_bounded_loader(tmp_path):
    """evaluate_run and Translator.from_run (the demo and scripts call them without the CLI's checks)."""
    from deepcascade.evaluation.entry_points import evaluate_run
    from deepcascade.inference.translator import Translator

    run = _poisoned_run(tmp_path / "run", LAUGHS)
    for call in (lambda: evaluate_run(run, tmp_path / "e"), lambda: Translator.from_run(run, device="cpu")):
        with pytest.raises(UserError, match="expands to more than"):
            call()


def test_a_run_directory_config_names_the_file(tmp_path):
    from deepcascade.rundir import RunDir

    run = _poisoned_run(tmp_path / "run", "data: {image_size: seven}\n")
    with pytest.raises(UserError) as e:
        RunDir(run).stored_config()
    assert "config.yaml" in str(e.value) and "data.image_size" in str(e.value)
    (run / "config.yaml").write_bytes(b"data: [\x80")
    with pytest.raises(UserError, match="UTF-8"):
        RunDir(run).stored_config()
