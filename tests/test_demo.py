"""`deepcascade demo --quick` runs end to end and writes a page whose images all exist."""

import json
import os
import re
import subprocess
import sys
from urllib.parse import unquote

import pytest
from PIL import Image


def test_demo_quick(tmp_path):
    root = tmp_path / "demo out"
    out = root / "quick"  # --quick's pages; its data and run sit beside them in root
    env = {**os.environ, "DEEPCASCADE_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")}  # no VGG weights
    env.pop("DEEPCASCADE_PROGRESS_EVERY", None)
    log = tmp_path / "demo.log"  # stdout and stderr to a file, as with nohup or a batch job
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "deepcascade", "demo", "--quick", "--out", str(root)],
                            stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    text = log.read_text()
    r = subprocess.CompletedProcess([], rc, text, text)
    assert r.returncode == 0, r.stderr[-3000:]
    # progress for files: no carriage-return frames, no escape codes, a few lines per stage
    assert "\r" not in text and "\x1b" not in text
    stages = re.findall(r"^stage (\w+): training steps.*?^stage \1: finished", text, re.S | re.M)
    assert len(stages) == 12, text  # invert 5-3, deep, cascade 4-3, and the deepVAE of A and of B (5-3)
    for block in re.findall(r"^stage \w+: training steps.*?^stage \w+: finished", text, re.S | re.M):
        lines = block.splitlines()
        status = [l for l in lines if re.match(r"^\w+: \d+/\d+ it ", l)]
        elapsed = [int(m[1]) * 60 + int(m[2]) for l in status if (m := re.search(r"(\d+):(\d\d) elapsed", l))]
        # one status line per 30 s (the default) and a last one; besides them, the stage's own log lines
        assert len(status) <= (max(elapsed) // 30 + 1 if elapsed else 0), block
        assert len(lines) - len(status) <= 4, block
    assert "EfficientNet-Lite0" in r.stdout  # says which backbone it used
    assert f"Open {out / 'index.html'}" in r.stdout
    # the default demo's page in the same --out stays its own; the run beside the pages is linked from them
    assert not (root / "index.html").exists() and (root / "run-quick" / "samples").is_dir()
    html = (out / "index.html").read_text()
    refs = [unquote(h) for h in re.findall(r"src='([^']+)'", html)]
    # source, result, strip for 4 test images per direction; a grid and a strip per domain's synthesis panel
    assert len(refs) == 3 * 2 * 4 + 2 * 2
    for ref in refs:  # 64 px images and strips; the synthesis grids hold 4 x 4 of them (2 px padding)
        assert Image.open(out / ref).size[1] == (4 * 66 + 2 if ref.endswith("grid.png") else 64), ref
    for d in ("a2b", "b2a", "synth_a", "synth_b"):
        assert (out / d / "index.html").is_file()
    report = json.loads((out / "demo.json").read_text())
    assert report["backbone"] == "efficientnet_lite0_s16"
    for d in ("a2b", "b2a"):
        for k in ("source_share_target", "reconstruction_share_target", "translated_share_target"):
            assert 0.0 <= report[d][k] <= 1.0
        assert report[d]["source_share_target"] == 0.0  # sources are cleanly the other domain
    assert (out / "summary.png").is_file()
    for d in ("a", "b"):  # the synthesis panel: 16 deepVAE samples of each domain, strips I_5 | I_4 | I_3
        assert len(list((out / f"synth_{d}").glob("sample_*.png"))) == 16
        assert Image.open(out / f"synth_{d}" / "_levels" / "sample_0000.png").size == (3 * 64, 64)
        syn = report["synthesis"][d]
        assert syn["images"] == 16 and 0.0 <= syn["share_own_domain"] <= 1.0
        assert 0.0 <= syn["reconstruction_share_own_domain"] <= 1.0
    assert "synth_a/grid.png" in html and "Synthesis (deepVAE" in html
    # the panel's collapse ratio, by evaluate's collapse measure against the domain's test images, on the page
    for d in ("a", "b"):
        ratio = report["synthesis"][d]["collapse_ratio"]
        panel = json.loads((out / f"eval_synth_{d}" / "metrics.json").read_text())
        direction = "b2a" if d == "a" else "a2b"
        assert ratio == panel[direction]["collapse_ratio"] and ratio >= 0.0
        assert panel[direction]["images"] == {**panel[direction]["images"], "fake": 16, "real": 4}
    shown = "; ".join(f"{d.upper()} {report['synthesis'][d]['collapse_ratio']:.2f}" for d in ("a", "b"))
    assert f"0 = one image repeated; eval_synth_a/, eval_synth_b/): {shown}." in html
    if min(report["synthesis"][d]["collapse_ratio"] for d in ("a", "b")) < 0.5:  # 3 VAE steps: always so here
        assert "this budget is too small for varied samples" in html and "synthetic-synth" in html
    assert "synthesis panel: collapse ratio" in r.stdout
    # every file it wrote is recognised as its own: a second run may replace them (and nothing else)
    from deepcascade.apps.demo import claim_pages

    claim_pages(out)
    assert "Training samples: ../run-quick/samples/" in html
    # the demo evaluates its run: metrics.json, its page, and the figures on the demo's page
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    for d in ("a2b", "b2a"):
        assert metrics[d]["images"]["fake"] == 4
        assert metrics[d]["collapse_ratio"] is not None and metrics[d]["centre_shift"] is not None
        assert metrics[d]["real_accuracy"] is not None
        assert report["evaluation"][d]["collapse_ratio"] == metrics[d]["collapse_ratio"]
    assert {nc["metric"] for nc in metrics["not_computed"]} >= {"kid", "fid"}  # no Inception weights offline
    assert (out / "eval" / "index.html").is_file()
    assert "eval/index.html" in html and "collapse_ratio=" in html


@pytest.mark.parametrize("field", ["version", "size", "seed"])
def test_demo_refuses_a_folder_of_other_data(tmp_path, field):
    """A demo folder whose data another generator version, image size or seed drew: its run, trained on those
    images, cannot be resumed; the message names the folder and what differs (``write_dataset``'s own refusal
    would point to an ``--overwrite`` that ``demo`` does not have)."""
    from deepcascade.apps.demo import run_demo
    from deepcascade.data.synthetic import animals as synthetic
    from deepcascade.errors import UserError

    other = {"version": synthetic.VERSION - 1, "size": 32, "seed": 5}[field]
    meta = {"generator": "deepcascade.data.synthetic", "version": synthetic.VERSION, "seed": 0, "size": 64}
    data = tmp_path / "out" / "data-quick"
    data.mkdir(parents=True)
    (data / "synthetic.json").write_text(json.dumps({**meta, field: other}))
    try:
        run_demo(tmp_path / "out", mode="quick", device="cpu")
    except UserError as e:
        said = {"version": f"version {other}", "size": f"{other} px", "seed": f"seed {other}"}[field]
        assert said in str(e) and "another --out" in str(e)
    else:
        raise AssertionError(f"run_demo accepted data of another {field}")
    assert not (tmp_path / "out" / "run-quick").exists()


@pytest.mark.parametrize("mine", ["index.html", "eval/metrics.json", "summary.png", "demo.json",
                                  "synth_a/sample_0000.png"])
def test_demo_never_replaces_a_users_files(tmp_path, mine):
    """A file of the user's where the demo would write its page, report, picture, evaluation or samples: refused
    before any work, the file unchanged (the demo used to call translate, evaluate and synthesize with overwrite
    forced on)."""
    from deepcascade.apps.demo import run_demo
    from deepcascade.errors import UserError

    user = tmp_path / "out" / "quick" / mine
    user.parent.mkdir(parents=True)
    user.write_bytes(b"<html>the user's own page</html>" if mine.endswith(".html") else b"the user's own bytes")
    before = user.read_bytes()
    with pytest.raises(UserError) as e:
        run_demo(tmp_path / "out", mode="quick", device="cpu")
    named = user if "/" not in mine else user.parent
    assert str(named) in str(e.value) and "another --out" in str(e.value)
    assert user.read_bytes() == before
    assert not (tmp_path / "out" / "run-quick").exists() and not (tmp_path / "out" / "data-quick").exists()


def test_demo_config_is_the_preset():
    """One source of truth: the demo trains cpu-fast (--long: cpu-quality) with its data folder set, nothing else;
    --quick only cuts the step counts."""
    from pathlib import Path

    from deepcascade.apps.demo import MODES, demo_config
    from deepcascade.config import build_config

    data = Path("somewhere") / "data"
    for mode, preset in (("demo", "cpu-fast"), ("long", "cpu-quality")):
        assert MODES[mode].preset == preset and not MODES[mode].overrides
        assert demo_config(mode, data).to_dict() == build_config(None, [f"data.root={data}"], preset=preset).to_dict()
    quick, fast = demo_config("quick", data, "cpu").to_dict(), build_config(
        None, [f"data.root={data}", "engine.device=cpu"], preset="cpu-fast").to_dict()
    changed = {(sec, k) for sec, vals in quick.items() if isinstance(vals, dict)
               for k, v in vals.items() if fast[sec][k] != v}
    assert changed and all(k.endswith("steps") or k == "batch_size" for _, k in changed), changed
