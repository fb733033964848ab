"""``engine.precision: auto``: bf16 where the device computes it natively, else fp32, decided once at the
experiment's setup (before the feature caches, which are keyed on the precision), logged with the reason, and
used by every stage; ``config.yaml`` keeps ``auto``. The native-bf16 detection is replaced both ways."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from conftest import TINY, merge
from deepcascade import precision as precision_mod
from deepcascade.config import build_config
from deepcascade.errors import UserError
from deepcascade.stages.pipeline import run_training


pytestmark = pytest.mark.usefixtures("one_thread")


def test_config_accepts_auto_and_still_refuses_other_values():
    assert build_config(None, extra={"engine": {"precision": "auto"}}).engine.precision == "auto"
    assert build_config(None).engine.precision == "fp32"  # the default stays fp32 (reproducible everywhere)
    with pytest.raises(UserError):
        build_config(None, extra={"engine": {"precision": "bf17"}})


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "emulated-bf16"])
def test_auto_resolves_once_at_setup_and_reaches_caches_and_stages(native, monkeypatch, tmp_path, synthetic_data,
                                                                   caplog):
    caplog.set_level(logging.INFO, logger="deepcascade")  # log.txt gets the INFO lines, as under the CLI
    monkeypatch.setattr(precision_mod, "_cpu_bf16_features", lambda: ["AVX512-BF16"] if native else [])
    chosen = "bf16" if native else "fp32"
    calls = []
    resolve = precision_mod.resolve_precision

    def counting(name, device, optimize=False):
        calls.append(name)
        return resolve(name, device, optimize)

    import deepcascade.stages.experiment as experiment

    monkeypatch.setattr(experiment, "resolve_precision", counting)
    seen = {}
    from deepcascade.engine import trainer

    context = trainer.TrainContext

    class Spy(context):
        def __init__(self, device, precision, optimizers):
            seen["precision"] = precision
            super().__init__(device, precision, optimizers)

    monkeypatch.setattr(trainer, "TrainContext", Spy)

    cfg = build_config(None, extra=merge(TINY, {"data": {"root": str(synthetic_data(n=4))},
                                                "engine": {"precision": "auto"},
                                                "invert": {"steps": 1}}))
    run = tmp_path / "run"
    assert run_training(cfg, run, "invert") == {"invert3": "done"}

    assert calls == ["auto"]  # the experiment's setup decides, once
    assert seen["precision"] == chosen  # the stage's autocast is the experiment's decision
    log = (run / "log.txt").read_text()
    if native:
        assert "training precision bf16 (auto: this CPU computes bf16 natively: AVX512-BF16)" in log
    else:
        assert "training precision fp32 (auto: bf16 would be emulated on this" in log
    assert f"stage invert3: training steps 1..1, batch 4 per rank x 1 rank(s), cpu, {chosen}" in log
    metas = [json.loads(p.read_text()) for p in (run / "cache").glob("*/meta.json")]
    assert metas and {m["precision"] for m in metas} == {chosen}  # the caches are keyed on the resolved value
    assert yaml.safe_load((run / "config.yaml").read_text())["engine"]["precision"] == "auto"
