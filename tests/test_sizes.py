"""Every size is checked against the chosen backbone before any work starts (issue 17, item 7).

The check (:meth:`BackboneSpec.size_problem`, used by the config and by ``features --image-size``) is compared
here with what each backbone really computes: for every backbone and image sides below, between and at multiples
of its deepest stride, a side passes the check exactly when the pipeline works at it: the real features of every
level have the size the spec says, each cascade translator turns the real features of level l+1 into the
shape of level l, and each inversion network gives back an image of that side.
"""

import dataclasses

import pytest
import torch

from deepcascade.backbones import build_backbone
from deepcascade.backbones.specs import SPECS
from deepcascade.config import build_config
from deepcascade.errors import UserError
from deepcascade.features.extract import extract
from deepcascade.models import build, deep_nets, inversion_nets, level_nets, upsampling
from deepcascade.networks.deep import bottleneck_downsamplings


class Networks:
    """Every network of the pipeline at small widths for one backbone, built once per shape they depend on (the
    cascade translators' resizing, the level-5 translator's down-samplings); critics are built per side."""

    def __init__(self, backbone, spec):
        self.backbone, self.spec, self.levels = backbone, spec, sorted(spec.levels)
        self.inversions = {l: inversion_nets(backbone.channels[l], backbone.strides[l], adversarial=False,
                                             trim=spec.levels[l].trim)["I"] for l in self.levels}
        self.cascade, self.deep = {}, {}

    def cascade_level(self, level, size):
        key = (level, tuple(sorted(upsampling(self.backbone, level, size).items())))  # ValueError off the grid
        if key not in self.cascade:
            self.cascade[key] = level_nets(self.backbone, level, size, None, predictor_width=8)
        return self.cascade[key]

    def deep_translator(self, channels, side):
        key = bottleneck_downsamplings(side)
        if key not in self.deep:
            self.deep[key] = deep_nets(channels, side, gn_groups=8, critic_width=8)["T_AB"]
        return self.deep[key]


def pipeline_works(nets: Networks, size: int) -> bool:
    backbone, spec, levels = nets.backbone, nets.spec, nets.levels
    try:
        with torch.no_grad():
            feats = extract(backbone, torch.rand(1, 3, size, size), levels)
            for l in levels:
                if tuple(feats[l].shape[2:]) != (spec.feature_size(l, size),) * 2 or feats[l].shape[-1] < 1:
                    return False
                if nets.inversions[l](feats[l]).shape[2:] != (size, size):
                    return False
                build("FeatureCritic", in_channels=backbone.channels[l], in_size=feats[l].shape[-1],
                      width=8)(feats[l])
            top = feats[levels[-1]]
            if nets.deep_translator(backbone.channels[levels[-1]], top.shape[-1])(top).shape != top.shape:
                return False
            for l in levels[:-1]:
                t = nets.cascade_level(l, size)
                if t["T_AB"](feats[l + 1], t["M_AB"](feats[l])).shape != feats[l].shape:
                    return False
    except (RuntimeError, ValueError):  # a shape the networks cannot take
        return False
    return True


@pytest.mark.parametrize("name", sorted(SPECS))
def test_size_check_agrees_with_every_backbone(name):
    torch.manual_seed(0)
    spec = SPECS[name]
    backbone = build_backbone(name, "random", False, 0).eval()
    nets = Networks(backbone, spec)
    m = spec.size_multiple
    verdicts = {}
    # below the stride, half-stride multiples, other multiples of 8, and multiples (the issue's 144 for m = 32)
    for size in sorted({m // 2, m - 8, m, m + 8, m + m // 2, 2 * m, 3 * m, 9 * m // 2} - {0}):
        check = spec.size_problem(size, "data.image_size") is None
        verdicts[size] = (check, pipeline_works(nets, size))
    assert all(a == b for a, b in verdicts.values()), {s: v for s, v in verdicts.items() if v[0] != v[1]}
    # everything else is refused (AlexNet's levels 3..5 are empty at 16 px: it starts at 32)
    assert [s for s, (a, _) in verdicts.items() if a] == [s for s in (m, 2 * m, 3 * m) if s >= spec.min_size]


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("field", ["image_size", "load_size"])
def test_config_refuses_a_size_the_backbone_cannot_take_and_names_sizes_that_work(name, field):
    m = SPECS[name].size_multiple
    good = 2 * m
    bad = good + 8
    other = {"image_size": good, "load_size": 3 * m}
    other[field] = bad
    if field == "image_size":
        other["load_size"] = 4 * m
    sets = [f"backbone.name={name}", *(f"data.{k}={v}" for k, v in other.items())]
    with pytest.raises(UserError) as e:
        build_config(None, sets)
    msg = str(e.value)
    assert f"data.{field}" in msg and str(bad) in msg and name in msg
    suggested = [int(t) for t in msg.rsplit("e.g.", 1)[1].replace("or", " ").split()]
    assert suggested and all(SPECS[name].size_problem(s, "x") is None for s in suggested)
    other[field] = suggested[0]
    if field == "image_size":
        other["load_size"] = max(other["load_size"], suggested[0])
    cfg = build_config(None, [f"backbone.name={name}", *(f"data.{k}={v}" for k, v in other.items())])
    assert getattr(cfg.data, field) == suggested[0]


def test_the_issue_case_is_refused_before_any_work(tmp_path, dc):
    """efficientnet_lite0 at image_size 128, load_size 144 crashed while building the cache (level 5 gave 5x5,
    4x4 expected): now exit 2 naming data.load_size, nothing created."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{root: {tmp_path}, image_size: 128, load_size: 144}}\n"
                   "backbone: {name: efficientnet_lite0, weights: random}\n")
    r = dc("train", cfg, "--stage", "all", "--run-dir", tmp_path / "run")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "data.load_size" in r.stderr and "144" in r.stderr and "160" in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_features_image_size_is_checked_against_the_backbone(name, tmp_path, dc):
    m = SPECS[name].size_multiple
    r = dc("features", "--backbone", name, "--weights", "random", "--images", tmp_path, "--image-size", m + 8,
           "--out", tmp_path / "f.safetensors")
    assert r.returncode == 2 and "--image-size" in r.stderr and str(m) in r.stderr and "Traceback" not in r.stderr


def test_every_size_field_of_the_config_is_checked():
    """The sizes in the config are data.image_size and data.load_size; every other integer field is a count,
    a width or a step number (the per-level sizes follow from image_size and the backbone's strides)."""
    from deepcascade.config import Config

    sizes = [f"{s.name}.{f.name}" for s in dataclasses.fields(Config) if dataclasses.is_dataclass(s.type)
             or hasattr(getattr(Config(), s.name), "__dataclass_fields__")
             for f in dataclasses.fields(getattr(Config(), s.name)) if "size" in f.name and "batch" not in f.name]
    assert sorted(sizes) == ["data.image_size", "data.load_size"], sizes
