"""`deepcascade serve`: the page's functions through gradio_client on a launched app (127.0.0.1), and a real
browser (Playwright driving the system Chromium) that uploads an image and waits for its translation.

The run: the demo's backbone (EfficientNet-Lite0 cut at stride 16) with random weights at 32 px, I_5, the
level-5 translators and a level-5 deepVAE per domain (a few steps each).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="needs the serve extra: pip install 'deepcascade[serve]'")
gradio_client = pytest.importorskip("gradio_client", reason="needs the serve extra: pip install 'deepcascade[serve]'")

from deepcascade.apps.web import ServeSession, build_app, launch  # noqa: E402

# gradio's queue calls pandas options that pandas 3 deprecates: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and Path(p).is_file()), None)


@pytest.fixture(scope="module")
def served_run(module_tmp, tiny_config, synthetic_data):
    root = module_tmp("serve_run")
    (root / "data").symlink_to(synthetic_data(n=4, size=32, seed=1, n_test=3))
    cfg = tiny_config(root / "cfg.yaml", root / "data", name="tinyserve", engine={"checkpoint_every": 1000},
                      backbone={"name": "efficientnet_lite0_s16", "weights": "random"},
                      invert={"levels": [5], "steps": 1, "batch_size": 2, "lambda_adv": 0},
                      deep={"steps": 1, "batch_size": 2, "critic_width": 16, "gn_groups": 8},
                      cascade={"final_level": 5},
                      synth={"enabled": True, "final_level": 5, "steps": 1, "vae_steps": 1, "batch_size": 2,
                             "n_critic": 1, "nz": 16, "nz_level": 8, "mapping_width": 16, "critic_width": 16,
                             "gn_groups": 8})
    run = root / "run"
    r = subprocess.run([sys.executable, "-m", "deepcascade", "train", str(cfg), "--stage", "all", "--run-dir",
                        str(run)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    (run / "eval").mkdir()  # what `deepcascade evaluate` leaves: metrics.json and figures
    (run / "eval" / "metrics.json").write_text(json.dumps({"a2b": {"target_share": 0.75, "kid": 0.0123}}))
    Image.new("RGB", (40, 20), (200, 30, 30)).save(run / "eval" / "strip.png")
    return root, run


def _state(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(served_run):
    root, run = served_run
    before = _state(run)
    session = ServeSession(run, device="cpu")
    gradio_app = build_app(session, concurrency=1)
    url = launch(gradio_app, "127.0.0.1", _free_port())
    yield root, run, session, url
    gradio_app.close()
    assert _state(run) == before, "the app wrote into the run directory"


@pytest.fixture(scope="module")
def client(app):
    return gradio_client.Client(app[3], verbose=False, download_files=False)


def _path(file) -> str:
    """A file in the client's answer: a path, or (files not downloaded) a dict holding the server's path."""
    return file["path"] if isinstance(file, dict) else file


def _local(item: dict) -> str:
    return _path(item["image"])


def test_listens_on_loopback_only(app):
    assert app[3].startswith("http://127.0.0.1:")


def test_translate_uploads_through_the_client(app, client, tmp_path, capfd):
    from deepcascade import Translator

    root, run, session, _ = app
    src = sorted((root / "data" / "testA").glob("*.png"))[0]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 6000)).save(huge)  # 48 megapixels: refused from its header
    gallery, downloads, message = client.predict(
        [gradio_client.handle_file(str(p)) for p in (src, corrupt, text, huge)], [], "a2b", api_name="/translate")
    assert len(gallery) == 1 and len(downloads) == 1
    assert "Translated 1 image(s) a2b" in message
    for name in ("corrupt.png", "notes.png"):
        assert f"**{name}**: not translated" in message
    assert "**huge.png**: not translated, too large (8000x6000 pixels" in message
    assert "Traceback" not in capfd.readouterr().err
    got = np.asarray(Image.open(_path(downloads[0]))).astype(int)
    want = np.asarray(Translator.from_run(run, device="cpu").translate(Image.open(src))).astype(int)
    assert np.abs(got - want).max() <= 1  # the same networks; another batch may pick other kernels
    # the gallery's picture: translation | white gap | source | I_5 (level 5 is this run's final level)
    row = np.asarray(Image.open(_local(gallery[0]))).astype(int)
    assert row.shape == (32, 32 + 4 + 2 * 32, 3) and "source | I_5(level 5)" in gallery[0]["caption"]
    assert np.array_equal(row[:, :32], got) and (row[:, 32:36] == 255).all()
    assert np.array_equal(row[:, 36:68], np.asarray(Image.open(src).convert("RGB")))


def test_translate_the_runs_test_images_both_ways(app, client):
    _, _, session, _ = app
    assert "testA/A_test_000000.png" in session.picks and "testB/B_test_000001.png" in session.picks
    gallery, downloads, message = client.predict(None, ["testB/B_test_000001.png", "testB/B_test_000002.png"],
                                                 "b2a", api_name="/translate")
    assert len(gallery) == 2 and len(downloads) == 2 and "2 image(s) b2a" in message
    assert all(Path(_path(d)).name.endswith("_b2a.png") for d in downloads)


def test_nothing_given_is_a_message(client):
    gallery, downloads, message = client.predict(None, [], "a2b", api_name="/translate")
    assert gallery == [] and not downloads and "Upload an image" in message


def test_synthesis_tab_samples_by_seed(app, client):
    assert app[2].synth_domains == ["a", "b"]
    first, note = client.predict("a", 3, 2, api_name="/synthesize")
    again, _ = client.predict("a", 3, 2, api_name="/synthesize")
    other, _ = client.predict("a", 4, 2, api_name="/synthesize")
    assert len(first) == 2 and "seed 3" in note
    pixels = [[np.asarray(Image.open(_local(i))) for i in g] for g in (first, again, other)]
    assert all(np.array_equal(a, b) for a, b in zip(pixels[0], pixels[1]))
    assert not np.array_equal(pixels[0][0], pixels[2][0])


def test_evaluation_figures_are_read_from_the_run(app):
    lines, figures = app[2].evaluation()
    assert "target_share=75" in lines and [Path(f).name for f in figures] == ["strip.png"]


def test_serve_refuses_a_missing_run_a_taken_port_and_names_a_missing_extra(tmp_path, dc, monkeypatch, served_run):
    r = dc("serve", "--run", tmp_path / "nope")
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr
    r = dc("serve", "--run", served_run[1], "--eval", tmp_path)
    assert r.returncode == 2 and "holds no metrics.json" in r.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = dc("serve", "--run", served_run[1], "--port", port)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
    monkeypatch.setitem(sys.modules, "gradio", None)
    r = dc("serve", "--run", served_run[1])
    assert r.returncode == 2 and "pip install 'deepcascade[serve]'" in r.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install chromium); Playwright's own "
                                             "browser download does not work here")
def test_a_real_browser_uploads_an_image_and_sees_its_translation(app, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    root, _, _, url = app
    src = sorted((root / "data" / "testA").glob("*.png"))[1]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(url, timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(str(src))
            page.get_by_role("button", name="Translate").click()
            images = page.locator("#translations img")
            images.first.wait_for(state="visible", timeout=120_000)
            assert images.count() >= 1
            assert page.get_by_text("Translated 1 image(s) a2b").is_visible()
            if os.environ.get("DEEPCASCADE_SCREENSHOT"):  # docs/serve.png is taken this way
                page.screenshot(path=os.environ["DEEPCASCADE_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
