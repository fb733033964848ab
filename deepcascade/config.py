"""Typed configuration: dataclasses are the schema, YAML and ``--set`` override them.

Resolution order: dataclass defaults -> preset -> YAML file -> ``--set section.key=value`` (values parsed
as YAML, so ``--set invert.levels=[5,4]`` works). Every field carries a help text (used for the commented
YAML of ``deepcascade config``) and, where it matters, the allowed values or range, which validation
checks, naming the offending field. Every YAML text is read through :mod:`deepcascade.safe_yaml`.

Length: the schema (each field with its help, range and [paper]/[ours] mark) is most of this module; it stays
in one file so that one read shows every option.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .safe_yaml import excerpt, load as load_yaml_text
from .backbones.specs import SPECS
from .presets import PRESETS, fit_preset_size


def _f(default, help: str, *, choices=None, min=None, max=None, factory=False):
    meta = {"help": help, "choices": choices, "min": min, "max": max}
    if factory:
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    root: str = _f("", "CycleGAN-layout folder with trainA/ trainB/ testA/ testB; fills the four paths below "
                       "that are left empty")
    domain_a: str = _f("", "folder of domain A training images (searched recursively)")
    domain_b: str = _f("", "folder of domain B training images (searched recursively)")
    test_a: str = _f("", "folder of domain A test images (optional)")
    test_b: str = _f("", "folder of domain B test images (optional)")
    image_size: int = _f(224, "training/inference crop size in pixels; a multiple of the backbone's deepest "
                               "stride (16 for vgg19, efficientnet_lite0_s16 and alexnet (at least 32), 32 for "
                               "efficientnet_lite0)",
                         min=16)
    load_size: int = _f(256, "shorter image side is resized to this before cropping; >= image_size, same "
                             "multiple", min=16)
    workers: int = _f(2, "data-loading worker processes (0 = load in the main process)", min=0)


@dataclass
class BackboneConfig:
    name: str = _f("vgg19", "frozen feature extractor", choices=list(SPECS))
    weights: str = _f("imagenet", "'imagenet' (torch hub cache, or download when online), 'random' (tests "
                                  "only) or a path to a torchvision-format state dict")
    relu: bool = _f(False, "take each level after its ReLU instead of before")
    seed: int = _f(0, "seed of the 'random' weights")


@dataclass
class NormalizationConfig:
    scheme: str = _f("clamp", "n = clamp((f-mu)/(k*sigma), -1, 1), or tanh((f-mu)/(k*sigma))",
                     choices=["clamp", "tanh"])
    k: float = _f(3.0, "how many standard deviations map to +-1", min=1e-3)


@dataclass
class CacheConfig:
    enabled: bool = _f(True, "cache frozen-backbone features on disk (float16 memory maps)")
    levels: list = _f([5, 4, 3], "levels kept in the cache; other levels are computed from images on the fly",
                      factory=True)
    dir: str = _f("", "cache folder; empty = RUN_DIR/cache; ~ and $VARIABLES are expanded. Several nodes: a "
                      "shared folder is built once (rank 0), a node-local one (e.g. $TMPDIR/cache) once per node")
    crops: int = _f(4, "training crops cached per image (random offsets; the first is centred), each also "
                       "mirrored; every cached feature is exactly the backbone's output on its crop. 1 crop when "
                       "load_size == image_size. Disk: crops x 2 x the features of one image_size image per level",
                    min=1)


@dataclass
class EngineConfig:
    device: str = _f("auto", "'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'")
    seed: int = _f(0, "global seed: data order, initialisation, sample grids", min=0)
    precision: str = _f("fp32", "autocast precision; auto: bf16 where the device computes it natively (a CUDA GPU "
                                "with bf16, a CPU with AVX512-BF16 or AMX), else fp32, decided once per run at "
                                "setup (log.txt says which and why)", choices=["fp32", "bf16", "fp16", "auto"])
    channels_last: bool = _f(False, "use the channels_last memory format for convolutions")
    fused_optimizer: bool = _f(True, "Adam with fused=True (the same update in one native kernel per group; "
                                     "1.05-1.6x training steps/s on CPU, docs/benchmarks.md); a resumed "
                                     "checkpoint keeps the kind it was written with")
    checkpoint_every: int = _f(500, "write a full-state checkpoint every N steps (and at the end)", min=1)
    keep_checkpoints: int = _f(3, "how many of a stage's newest checkpoints to keep", min=1)
    log_every: int = _f(50, "one-line status in log.txt and a record in stats.jsonl every N steps", min=1)
    sample_every: int = _f(500, "fixed-seed sample grid every N steps (and at the end)", min=1)
    batch_per_rank: bool = _f(False, "false: batch sizes are global and split over torchrun ranks; "
                                     "true: every rank uses the full batch size")


@dataclass
class InvertConfig:
    levels: list = _f([5, 4, 3], "levels whose inversion network I_l is trained", factory=True)
    steps: int = _f(20000, "optimizer steps per level", min=1)
    batch_size: int = _f(25, "batch size [paper]", min=1)
    lr: float = _f(1e-4, "Adam learning rate [paper]", min=0.0)
    lambda_pixel: float = _f(1.0, "weight of the L1 pixel loss", min=0.0)
    lambda_perceptual: float = _f(1.0, "weight of the perceptual loss (backbone features of output vs input)",
                                  min=0.0)
    lambda_gradient: float = _f(0.0, "weight of the L1 loss on the image's finite differences (edges: keeps thin "
                                     "structures sharp) [ours]", min=0.0)
    lambda_adv: float = _f(0.05, "weight of the LSGAN loss of the PatchGAN discriminator", min=0.0)
    disc_width: int = _f(64, "channels of the PatchGAN discriminator's first conv (then 2x, 4x, 8x) [pix2pix]",
                         min=1)
    adv_levels: str = _f("all", "inversion networks trained with the PatchGAN term: all, or only that of "
                                "cascade.final_level, whose output is the translation [ours]",
                         choices=["all", "final"])
    final_steps: int = _f(0, "optimizer steps of the inversion network of cascade.final_level, whose output is "
                             "the translation (0: invert.steps); the others only show the coarser levels", min=0)
    width: int = _f(0, "floor of the width of I_l's first three convs (0: the level's channel count, the "
                       "paper's rule); for backbones with narrow levels [ours]", min=0)


@dataclass
class DeepConfig:
    steps: int = _f(20000, "generator steps of the level-5 translators", min=1)
    batch_size: int = _f(10, "batch size [paper]", min=1)
    n_critic: int = _f(4, "critic updates per generator update [paper]", min=1)
    lr: float = _f(1e-4, "Adam learning rate [paper]", min=0.0)
    lambda_gp: float = _f(10.0, "WGAN-GP gradient-penalty weight [paper]", min=0.0)
    lambda_cycle: float = _f(100.0, "cycle-consistency weight [paper]", min=0.0)
    lambda_identity: float = _f(100.0, "identity weight [paper]", min=0.0)
    norm: str = _f("l1", "distance of the cycle and identity terms", choices=["l1", "l2"])
    gn_groups: int = _f(32, "GroupNorm groups of the translators", min=1)
    critic_width: int = _f(512, "channels of the level-5 critic's convs", min=1)
    lambda_layout: float = _f(0.0, "weight of the layout term: the centre of the translation's feature energy must "
                                   "stay at the source's (losses.layout_loss) [ours]", min=0.0)
    ema_decay: float = _f(0.0, "decay of the moving average of the translators' weights that the inference "
                               "snapshot holds (engine/ema.py); 0 = the last iterate, as in the paper [ours]",
                          min=0.0, max=0.9999)
    min_bottleneck: int = _f(4, "smallest side of the translators' bottleneck: Table 1's two stride-2 convs keep "
                                "stride 2 only while the map stays at least this wide (both at the paper's 14x14, "
                                "none at 4x4) [ours]; 1 = always both, as in the paper", min=1)


@dataclass
class CascadeConfig:
    final_level: int = _f(3, "shallowest level the cascade translates to (5 = deepest translation only)",
                          min=1, max=5)
    steps: int = _f(20000, "generator steps per level", min=1)
    batch_size: int = _f(10, "batch size", min=1)
    n_critic: int = _f(4, "critic updates per generator update", min=1)
    lr: float = _f(1e-4, "Adam learning rate", min=0.0)
    lambda_gp: float = _f(10.0, "WGAN-GP gradient-penalty weight", min=0.0)
    lambda_rec: float = _f(100.0, "teacher-forced reconstruction weight", min=0.0)
    lambda_up: float = _f(0.0, "up-consistency weight through the frozen backbone slice l -> l+1", min=0.0)
    lambda_layout: float = _f(0.0, "weight of the layout term against the source's level-l features "
                                   "(losses.layout_loss) [ours]", min=0.0)
    critic_width: int = _f(256, "channels of the level-l critics' convs", min=1)
    predictor_width: int = _f(512, "channels of the AdaIN predictors' strided convs (512 in Table 2)", min=1)
    ema_decay: float = _f(0.0, "decay of the moving average of T^l's and M^l's weights that the inference "
                               "snapshot holds (engine/ema.py); 0 = the last iterate [ours]", min=0.0, max=0.9999)


@dataclass
class SynthConfig:
    enabled: bool = _f(False, "train the deepVAE with `--stage all` (`--stage synth` trains it either way)")
    final_level: int = _f(3, "shallowest synthesized level; images come from I_final (3 [paper]: G_2 adds "
                             "little); needs an inversion network there", min=1, max=5)
    steps: int = _f(20000, "optimizer steps per level (VAE steps at level 5, generator steps below)", min=1)
    vae_steps: int = _f(0, "optimizer steps of the level-5 VAE when they should differ from `steps` (0: `steps`); "
                           "a VAE step costs a fraction of a generator step with its critic updates", min=0)
    batch_size: int = _f(10, "batch size [paper]", min=1)
    lr: float = _f(1e-4, "Adam learning rate [paper]", min=0.0)
    nz: int = _f(512, "size of the VAE's latent code z_5 [paper]", min=1)
    kl_weight: float = _f(1.0, "weight of the KL term of equation 1 (1 [paper])", min=0.0)
    decoder_sigma: float = _f(0.0, "standard deviation of the Gaussian decoder behind the l2 term of equation 1: "
                                   "it sets how many nats of KL a unit of squared error is worth; 0 = its "
                                   "maximum-likelihood value, the root of the batch's mean squared error", min=0.0)
    gn_groups: int = _f(32, "GroupNorm groups of E_5 and G_5", min=1)
    nz_level: int = _f(64, "size of the noise code z_l of each conditional generator G_l", min=1)
    mapping_width: int = _f(256, "hidden width of the MLP that turns z_l into G_l's AdaIN parameters", min=1)
    n_critic: int = _f(4, "critic updates per generator update [paper]", min=1)
    lambda_gp: float = _f(10.0, "WGAN-GP gradient-penalty weight of equation 2 [paper]", min=0.0)
    critic_width: int = _f(256, "channels of the level-l critics' convs", min=1)
    conditional_critic: bool = _f(True, "the critic also sees the level-(l+1) features G_l was given "
                                        "(false: equation 2 as printed, level-l features only)")


@dataclass
class FinetuneConfig:
    epochs: int = _f(50, "passes over the training images of both domains [paper]", min=1)
    batch_size: int = _f(25, "batch size [paper]", min=1)
    lr: float = _f(0.01, "SGD learning rate [paper]", min=0.0)
    momentum: float = _f(0.9, "SGD momentum [ours]", min=0.0, max=1.0)


@dataclass
class Config:
    name: str = _f("experiment", "experiment name, shown in logs and reports")
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    invert: InvertConfig = field(default_factory=InvertConfig)
    deep: DeepConfig = field(default_factory=DeepConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)



_SECTION_HELP = {
    "data": "Unpaired two-domain image folders and image geometry",
    "backbone": "Frozen feature extractor (levels 1..5)",
    "normalization": "Per-level feature normalization (docs/method.md section 1)",
    "cache": "On-disk cache of frozen-backbone features",
    "engine": "Training engine: device, precision, checkpoints, logging",
    "invert": "Feature-inversion networks I_l (docs/method.md section 2)",
    "deep": "Deepest-level (conv_5_1) translators, WGAN-GP (docs/method.md section 3)",
    "cascade": "Coarse-to-fine conditional translators, levels 4..1 (docs/method.md section 4)",
    "synth": "deepVAE: unconditional synthesis of one domain, one model per domain (docs/method.md section 6)",
    "finetune": "`deepcascade finetune`: VGG-19 fine-tuned as a classifier of the two domains (docs/method.md "
                "section 1)",
}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_value(path: str, f: dataclasses.Field, value: Any) -> Any:
    """Type-check and range-check one value; returns the (possibly coerced) value."""
    tp = f.type if not isinstance(f.type, str) else {"str": str, "int": int, "float": float, "bool": bool,
                                                     "list": list}[f.type]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if tp is float and isinstance(value, str):  # PyYAML reads '1e-3' (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    ok = isinstance(value, tp) and not (tp in (int, float) and isinstance(value, bool))
    if not ok:
        raise UserError(f"config field '{path}' must be of type {_type_name(tp)}, got {excerpt(value)} "
                        f"({type(value).__name__})")
    meta = f.metadata
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise UserError(f"config field '{path}' must be one of {meta['choices']}, got {excerpt(value)}")
    if meta.get("min") is not None and value < meta["min"]:
        raise UserError(f"config field '{path}' must be >= {meta['min']}, got {excerpt(value)}")
    if meta.get("max") is not None and value > meta["max"]:
        raise UserError(f"config field '{path}' must be <= {meta['max']}, got {excerpt(value)}")
    return value


def _apply(obj, overrides: dict, prefix: str = "") -> None:
    if not isinstance(overrides, dict):
        raise UserError(f"config section '{prefix.rstrip('.') or '<top>'}' must be a mapping, got "
                        f"{excerpt(overrides)}")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise UserError(f"unknown config field {excerpt(path)}; allowed here: {', '.join(fields)}")
        f = fields[key]
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, prefix=f"{path}.")
        else:
            setattr(obj, key, _check_value(path, f, value))


def _validate(cfg: Config) -> None:
    d = cfg.data
    spec = SPECS[cfg.backbone.name]  # the name was checked against the choices
    for name, size in (("data.image_size", d.image_size), ("data.load_size", d.load_size)):
        problem = spec.size_problem(size, f"config field '{name}'")
        if problem:
            raise UserError(problem)
    if d.load_size < d.image_size:
        raise UserError(f"config field 'data.load_size' ({d.load_size}) must be >= data.image_size "
                        f"({d.image_size})")
    for name, levels in (("invert.levels", cfg.invert.levels), ("cache.levels", cfg.cache.levels)):
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5 for v in levels):
            raise UserError(f"config field '{name}' must be a list of levels from 1 to 5, got {excerpt(levels)}")
    if not cfg.invert.levels:
        raise UserError("config field 'invert.levels' must name at least one level")
    if cfg.cascade.final_level not in cfg.invert.levels:
        raise UserError(f"config field 'cascade.final_level' ({cfg.cascade.final_level}) needs an inversion "
                        f"network: add it to invert.levels (now {cfg.invert.levels})")
    if cfg.synth.enabled and cfg.synth.final_level not in cfg.invert.levels:
        raise UserError(f"config field 'synth.final_level' ({cfg.synth.final_level}) needs an inversion network "
                        f"to turn synthesized features into images: add it to invert.levels (now "
                        f"{cfg.invert.levels}) or set synth.enabled: false")
    dev = cfg.engine.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise UserError(f"config field 'engine.device' must be 'auto', 'cpu', 'cuda' or 'cuda:N', got "
                        f"{excerpt(dev)}")
    # CycleGAN layout fills the empty folders.
    if d.root:
        for key, sub in ROOT_FOLDERS.items():
            if not getattr(d, key) and (sub.startswith("train") or (Path(d.root) / sub).is_dir()):
                setattr(d, key, str(Path(d.root) / sub))


ROOT_FOLDERS = {"domain_a": "trainA", "domain_b": "trainB", "test_a": "testA", "test_b": "testB"}


def without_root_paths(cfg: Config) -> Config:
    """A copy whose data folders that ``data.root`` filled are empty again, for printing a config to edit: a
    file that pins ``data.domain_a: ROOT/trainA`` would not follow a later change of ``data.root``."""
    out = config_from_dict(cfg.to_dict())
    d = out.data
    for key, sub in ROOT_FOLDERS.items():
        if d.root and getattr(d, key) == str(Path(d.root) / sub):
            setattr(d, key, "")
    return out


def parse_set(items: typing.Iterable[str]) -> dict:
    """Turn ``["a.b=1", "c.d=[5,4]"]`` into a nested override dict (values parsed as YAML)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects section.key=value, got {excerpt(item)}")
        key, raw = item.split("=", 1)
        value = load_yaml_text(raw, f"--set {excerpt(key.strip())}: the value") if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {excerpt(key)}: {excerpt(p)} is both a value and a section")
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict:
    """A config file's sections, read through :func:`deepcascade.safe_yaml.load` (bounded nesting and alias
    expansion); any problem is a one-line :class:`UserError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"config file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise UserError(f"cannot read config file {path}: {e.strerror or type(e).__name__}") from None
    data = load_yaml_text(text, f"config file {path}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def build_config(path: str | Path | None = None, overrides: typing.Iterable[str] = (), preset: str = "default",
                 extra: dict | None = None) -> Config:
    """Defaults -> preset -> YAML file -> ``extra`` dict -> ``--set`` strings, then validate."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    cfg = Config()
    _apply(cfg, PRESETS[preset])
    if path is not None:
        _apply(cfg, load_yaml(path))
    if extra:
        _apply(cfg, extra)
    _apply(cfg, parse_set(overrides))
    fit_preset_size(preset, cfg)
    _validate(cfg)
    return cfg


def config_from_dict(d: dict) -> Config:
    """Rebuild a config stored as plain types (in a run directory or checkpoint)."""
    cfg = Config()
    _apply(cfg, d)
    _validate(cfg)
    return cfg


def config_from_file(path: str | Path) -> Config:
    """A complete config stored as YAML (a run directory's ``config.yaml``); every problem names the file."""
    data = load_yaml(path)
    try:
        return config_from_dict(data)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def to_commented_yaml(cfg: Config, header: typing.Iterable[str] = ()) -> str:
    """The complete config as YAML, every field preceded by its help text; ``header`` lines (a preset's notes)
    are printed first as comments."""
    lines = [f"# {line}".rstrip() for line in header]
    lines += ["# deepcascade configuration. Every field is shown with its value and meaning.",
              "# Override with a YAML file and/or --set section.key=value.", ""]

    def dump_value(v):
        return yaml.safe_dump(v, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()

    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"# {_SECTION_HELP.get(f.name, f.name)}")
            lines.append(f"{f.name}:")
            for sf in dataclasses.fields(value):
                meta = sf.metadata
                extra = ""
                if meta.get("choices"):
                    extra = f" [one of: {', '.join(map(str, meta['choices']))}]"
                elif meta.get("min") is not None or meta.get("max") is not None:
                    extra = f" [range: {meta.get('min', '')}..{meta.get('max') if meta.get('max') is not None else ''}]"
                lines.append(f"  # {meta.get('help', '')}{extra}")
                lines.append(f"  {sf.name}: {dump_value(getattr(value, sf.name))}")
            lines.append("")
        else:
            lines.append(f"# {f.metadata.get('help', '')}")
            lines.append(f"{f.name}: {dump_value(value)}")
            lines.append("")
    return "\n".join(lines)
