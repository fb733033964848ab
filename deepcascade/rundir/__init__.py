"""The run-directory format: its layout and stage names (:mod:`.layout`) and the trained networks loaded back
from its snapshots (:mod:`.snapshots`). Training writes it (deepcascade.engine, deepcascade.stages); inference
and evaluation read it through :func:`open_run`."""

from .layout import RunDir, config_diff, parse_stage, parse_stage_name, stage_name
from .snapshots import RunModels, TrainedRun, load_snapshot, open_run, run_compat

__all__ = ["RunDir", "RunModels", "TrainedRun", "config_diff", "load_snapshot", "open_run", "parse_stage",
           "parse_stage_name", "run_compat", "stage_name"]
