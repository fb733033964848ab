"""The training loop every stage runs through.

A :class:`Stage` is data -> networks -> losses -> optimizer steps. :func:`train_stage` drives it and owns
what is common: resume, full-state checkpoints, the generators' weight averages (engine/ema.py), log line and
``stats.jsonl``, progress (deepcascade/progress.py), fixed-seed sample grids, SIGINT/SIGTERM, non-finite losses,
devices, autocast precision, grad scalers and the gradient all-reduce of distributed runs.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import signal
import time
import zlib
from pathlib import Path

import torch
from ..progress import progress

from ..errors import Interrupted, NonFiniteLoss, TrainingStopped, UserError
from ..precision import resolve_precision
from . import checkpoint as ckpt_io
from . import distributed, ema
from .optim import fused_adam

log = logging.getLogger("deepcascade")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def stage_seed(seed: int, stage: str) -> int:
    """A stable per-stage seed, so that every stage's initialisation and data order is reproducible."""
    return (seed * 1_000_003 + zlib.crc32(stage.encode())) % (2**63)


class TrainContext:
    """Device, precision and optimizer stepping handed to ``Stage.train_step``."""

    def __init__(self, device: torch.device, precision: str, optimizers: dict):
        self.device = device
        self.precision = precision
        self.optimizers = optimizers
        use_scaler = precision == "fp16"
        self.scalers = {name: torch.amp.GradScaler(device.type, enabled=use_scaler) for name in optimizers}

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """zero_grad, (scaled) backward, all-reduce over ranks, (unscaled) optimizer step."""
        opt, scaler = self.optimizers[name], self.scalers[name]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        distributed.all_reduce_grads([p for g in opt.param_groups for p in g["params"]])
        scaler.step(opt)
        scaler.update()


class Stage(abc.ABC):
    """One trainable unit. Subclasses set the attributes below and implement the three methods."""

    name: str = ""
    steps: int = 0
    batch_size: int = 1  # per rank (see ``per_rank_batch``)
    nets: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    #: what a checkpoint must match to be resumed (backbone, weights hash, image size, level, ...)
    compat: dict
    #: networks whose weights are averaged (engine/ema.py) and decay; the inference snapshot holds the averages
    ema_nets: tuple[str, ...] = ()
    ema_decay: float = 0.0

    @abc.abstractmethod
    def next_batch(self, generator: torch.Generator):
        """Draw the next training batch using ``generator`` only (so resume draws the same batches)."""

    @abc.abstractmethod
    def train_step(self, batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        """One training step (all its optimizer updates); returns the losses to log."""

    @abc.abstractmethod
    def sample(self, path: Path) -> None:
        """Write a fixed-input sample grid to ``path`` (PNG)."""

    def on_start(self, step: int) -> None:
        """Called once before the first step with the number of steps already done (0, or where a resume
        continues). Stages whose batches follow the step (epochs, as in fine-tuning) keep it; others ignore it."""



def per_rank_batch(batch_size: int, per_rank: bool) -> int:
    """``engine.batch_per_rank`` false: the configured batch is global and split over ranks."""
    n = distributed.world_size()
    if per_rank or n == 1:
        return batch_size
    if batch_size % n:
        raise UserError(f"batch size {batch_size} is not divisible by the {n} torchrun processes; "
                        f"change it or set engine.batch_per_rank: true")
    return batch_size // n


@contextlib.contextmanager
def _stop_signals():
    """SIGINT/SIGTERM set a flag; the loop writes a checkpoint at the end of the step and stops."""
    flag = {"signal": None}

    def handler(signum, frame):
        flag["signal"] = signal.Signals(signum).name

    old = {}
    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, handler)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _snapshot(stage: Stage, config: dict, averages: dict) -> dict:
    """The inference snapshot: every network's weights (the averaged ones where the stage keeps averages) and
    constructor arguments (``net.arch``, set by :func:`deepcascade.models.build`), so that it loads without the
    config."""
    return {**ckpt_io.base_record(stage.name, stage.compat, config),
            "nets": {k: (averages[k].module if k in averages else v).state_dict() for k, v in stage.nets.items()},
            "arch": {k: getattr(v, "arch", None) for k, v in stage.nets.items()}}


def _state(stage: Stage, ctx: TrainContext, step: int, generator, config: dict, averages: dict) -> dict:
    rec = ckpt_io.base_record(stage.name, stage.compat, config)
    rec.update(step=step, steps=stage.steps,
               nets={k: v.state_dict() for k, v in stage.nets.items()},
               ema={k: v.state_dict() for k, v in averages.items()},
               optimizers={k: v.state_dict() for k, v in stage.optimizers.items()},
               scalers={k: v.state_dict() for k, v in ctx.scalers.items()},
               rng=ckpt_io.rng_state(generator))
    return rec


def _restore(stage: Stage, ctx: TrainContext, state: dict, generator, path: Path, averages: dict) -> int:
    for k, net in stage.nets.items():
        ckpt_io.load_state(net, state["nets"].get(k, {}), path, k)
    for k, avg in averages.items():
        if k in state.get("ema", {}):
            ckpt_io.load_state(avg, state["ema"][k], path, f"average of {k}")
        else:  # written without an average (ema_decay 0): it starts at the restored weights
            log.warning("%s holds no weight average of %s; the average starts at its step %d", path, k, state["step"])
    for k, opt in stage.optimizers.items():
        ckpt_io.load_state(opt, state["optimizers"][k], path, f"optimizer {k}")
    for k, sc in ctx.scalers.items():
        if state["scalers"].get(k):
            sc.load_state_dict(state["scalers"][k])
    ckpt_io.set_rng_state(state["rng"], generator)
    return int(state["step"])


def _find_resume(run, stage: Stage, resume) -> tuple[Path, dict] | None:
    if isinstance(resume, (str, Path)) and resume not in ("", True):
        path = Path(resume)
        found = (path, ckpt_io.load_file(path))
    else:
        found = ckpt_io.latest_loadable(run.checkpoints, stage.name)
        if found is None and ckpt_io.list_checkpoints(run.checkpoints, stage.name):
            log.warning("no loadable checkpoint of stage %s; starting it from scratch", stage.name)
    if found is not None:
        ckpt_io.check_compatible(found[1], found[0], stage.name, stage.compat)
    return found


def train_stage(run, stage: Stage, cfg, device: torch.device, resume=False) -> str:
    """Train ``stage`` to ``stage.steps``; returns 'done', or 'skipped' when it had already finished.

    ``run``: the opened run directory (a :class:`deepcascade.rundir.RunDir`; the engine uses its paths and
    ``append_stats`` only, so it does not import the run-directory format).
    ``resume``: False (refuse if the stage has checkpoints), True (latest loadable checkpoint, if any), or
    a checkpoint path.
    """
    eng = cfg.engine
    main = distributed.is_main()
    existing = ckpt_io.list_checkpoints(run.checkpoints, stage.name)
    if not resume and (existing or run.finished(stage.name)):
        raise UserError(f"stage '{stage.name}' already has checkpoints in {run.checkpoints}; pass --resume to "
                        f"continue it, or use another --run-dir")
    for net in stage.nets.values():
        net.to(device)
        if eng.channels_last:
            net.to(memory_format=torch.channels_last)
        distributed.broadcast_module(net)
    if eng.fused_optimizer:
        for name, opt in list(stage.optimizers.items()):  # the dict the checkpoints save and the steps use
            stage.optimizers[name] = fused_adam(opt)
    # engine.precision with 'auto' resolved: the experiment's decision (setup_experiment), else here
    exp = getattr(stage, "exp", None)
    precision = getattr(exp, "precision", None) or resolve_precision(eng.precision, device)
    ctx = TrainContext(device, precision, stage.optimizers)
    averages = ema.averaged_copies(stage.nets, stage.ema_nets, stage.ema_decay)
    generator = torch.Generator().manual_seed(stage_seed(eng.seed, stage.name) + distributed.rank())
    start = 0
    found = _find_resume(run, stage, resume) if resume else None
    if found is not None:
        start = _restore(stage, ctx, found[1], generator, found[0], averages)
        log.info("stage %s: resumed from %s (step %d of %d)", stage.name, found[0], start, stage.steps)
    stage.on_start(start)
    if start >= stage.steps:
        if main and not run.finished(stage.name):
            ckpt_io.atomic_save(_snapshot(stage, cfg.to_dict(), averages), run.snapshot_path(stage.name))
        log.info("stage %s: already finished (%d steps)", stage.name, start)
        return "skipped"

    log.info("stage %s: training steps %d..%d, batch %d per rank x %d rank(s), %s, %s", stage.name, start + 1,
             stage.steps, stage.batch_size, distributed.world_size(), device, precision)
    config = cfg.to_dict()
    window = {"n": 0, "wait": 0.0, "total": 0.0, "losses": {}}
    bar = progress(total=stage.steps, initial=start, desc=stage.name, disable=not main, dynamic_ncols=True,
               leave=False)
    last_ckpt = None
    try:
        with _stop_signals() as stop:
            for step in range(start + 1, stage.steps + 1):
                t0 = time.perf_counter()
                batch = stage.next_batch(generator)
                t1 = time.perf_counter()
                losses = {k: float(v) for k, v in stage.train_step(batch, ctx).items()}
                for net in stage.nets.values():  # BatchNorm running statistics: averaged, so ranks stay equal
                    distributed.sync_buffers(net)
                ema.update(averages, stage.nets)
                t2 = time.perf_counter()
                bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
                # Every rank must take the same decision, or the others would hang in the next all-reduce.
                any_bad, any_stop = distributed.any_true([bool(bad), bool(stop["signal"])], device)
                if any_stop and not stop["signal"]:
                    stop["signal"] = "signal on another rank"
                if any_bad:
                    bad = bad or {"(on another rank)": float("nan")}
                    where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
                    raise NonFiniteLoss(f"stage '{stage.name}' step {step}: non-finite loss "
                                        f"{', '.join(f'{k}={v}' for k, v in bad.items())}; stopped ({where})")
                window["n"] += 1
                window["wait"] += t1 - t0
                window["total"] += t2 - t0
                for k, v in losses.items():
                    window["losses"][k] = window["losses"].get(k, 0.0) + v
                bar.update(1)
                if step % eng.log_every == 0 or step == stage.steps:
                    n = window["n"]
                    avg = distributed.all_reduce_means({k: v / n for k, v in window["losses"].items()}, device)
                    ips = n * stage.batch_size * distributed.world_size() / max(window["total"], 1e-9)
                    wait = window["wait"] / max(window["total"], 1e-9)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in list(avg.items())[:4]})
                    log.info("%s step %d/%d  %s  %.1f img/s  data-wait %.0f%%", stage.name, step, stage.steps,
                             "  ".join(f"{k}={v:.4g}" for k, v in avg.items()), ips, 100 * wait)
                    run.append_stats({"stage": stage.name, "step": step, **avg, "images_per_s": ips,
                                      "data_wait": wait})
                    window = {"n": 0, "wait": 0.0, "total": 0.0, "losses": {}}
                if main and (step % eng.sample_every == 0 or step == stage.steps):
                    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                        stage.sample(run.samples / f"{stage.name}-{step:07d}.png")
                if step % eng.checkpoint_every == 0 or step == stage.steps or stop["signal"]:
                    if main:
                        path = ckpt_io.checkpoint_path(run.checkpoints, stage.name, step)
                        try:
                            ckpt_io.atomic_save(_state(stage, ctx, step, generator, config, averages), path)
                        except OSError as e:
                            raise TrainingStopped(
                                f"stage '{stage.name}' step {step}: cannot write checkpoint {path} "
                                f"({type(e).__name__}: {e}); previous checkpoint intact: {last_ckpt}") from None
                        last_ckpt = path
                        ckpt_io.rotate(run.checkpoints, stage.name, eng.keep_checkpoints)
                    distributed.barrier()
                if stop["signal"]:
                    raise Interrupted(f"{stop['signal']}: stage '{stage.name}' stopped at step {step}; "
                                      f"checkpoint {last_ckpt}; continue with --resume")
    finally:
        bar.close()
    if main:
        ckpt_io.atomic_save(_snapshot(stage, config, averages), run.snapshot_path(stage.name))
    log.info("stage %s: finished", stage.name)
    return "done"
