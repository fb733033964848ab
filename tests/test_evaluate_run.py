"""``deepcascade evaluate --run`` on a tiny trained run: the appearance figures with the run's own floor."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from deepcascade.evaluation import appearance as app


def test_run_appearance_has_the_reconstruction_floor_and_chance(tiny_run, tmp_path, dc, monkeypatch):
    from deepcascade.data.transforms import to_pil, to_tensor
    from deepcascade.inference.translator import Translator

    monkeypatch.setenv("DEEPCASCADE_OFFLINE", "1")
    root, _, run = tiny_run
    out = tmp_path / "eval"
    r = dc("evaluate", "--run", run, "--metrics", "appearance,layout", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    t = Translator.from_run(run, device="cpu")
    for name, src in (("a2b", "A"), ("b2a", "B")):
        a = m[name]["appearance"]
        sources = sorted((root / "data" / f"test{src}").glob("*.png"))
        recs = sorted((out / "reconstructions" / src).glob("*.png"))
        assert [p.name for p in recs] == [p.name for p in sources]  # one untranslated reconstruction per source
        # the floor, recomputed here: I_5(e_5(x)) of each source, 8-bit, against the source
        x = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in sources])
        want = np.mean([np.linalg.norm(app.frame_colour(Image.open(p)) - app.frame_colour(to_pil(y)))
                        for p, y in zip(sources, t.reconstruct_tensor(x))])
        assert a["frame_colour_error_floor"] == pytest.approx(want, abs=2 / 255)
        assert a["frame_colour_error"] is not None and a["frame_colour_error_chance"] > 0
        assert a["frame_colour_error_progress"] == pytest.approx(
            (a["frame_colour_error_chance"] - a["frame_colour_error"])
            / (a["frame_colour_error_chance"] - a["frame_colour_error_floor"]))
        assert a["background_colour_error_floor"] is not None and a["background_images"] == 3
        lay = m[name]["layout"]
        assert {"ground_shift", "ground_shift_floor", "ground_shift_chance", "centre_shift_chance"} <= set(lay)
    assert not any(nc["metric"].startswith("appearance") for nc in m["not_computed"])
    assert "reconstructions" in m["protocol"]
    page = (out / "index.html").read_text()
    assert "From chance to the floor" in page and "background colour error" in page
