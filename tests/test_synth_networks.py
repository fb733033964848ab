"""deepVAE networks (supplementary section 6, Tables 4-5): parameter counts from the tables, shapes at other
sizes, the output range, the conditional generator's noise input; stage names and the synth stage plan."""

from __future__ import annotations

import pytest
import torch

from deepcascade.config import build_config
from deepcascade.rundir import parse_stage, parse_stage_name, stage_name
from deepcascade.errors import UserError
from deepcascade.models import NETWORKS, synth_nets
from deepcascade.networks import SynthesisModel, SynthGenerator, VAEDecoder, VAEEncoder, latent_grid


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# Tables 4-5 at 224 px: C = 512 channels at conv_5_1 (14x14), a 7x7 latent grid, nz = 512.
C, NZ, GRID = 512, 512, 7
CONV = C * C * 3 * 3 + C  # 3x3 conv C->C with bias
GN = 2 * C  # GroupNorm affine weight and bias


def test_encoder_parameter_count_follows_table_4():
    # conv s2 GN lrelu, four conv s1 GN lrelu, linear 7*7*512 -> 2*nz
    expected = 5 * (CONV + GN) + (GRID * GRID * C * 2 * NZ + 2 * NZ)
    assert expected == 37_495_296
    assert n_params(VAEEncoder(channels=C, size=14, nz=NZ)) == expected


def test_decoder_parameter_count_follows_table_5():
    # linear nz -> 7*7*512, conv (after 2x upsampling) GN lrelu, four more conv GN lrelu
    table = (NZ * GRID * GRID * C + GRID * GRID * C) + 5 * (CONV + GN)
    assert table == 24_674_304
    g = VAEDecoder(nz=NZ, channels=C, size=14)
    projection = C * C + C  # our 1x1 conv into the normalized range (then tanh)
    assert n_params(g) == table + projection
    assert n_params(g) - n_params(g.project) == table


@pytest.mark.parametrize("size, grid", [(14, 7), (7, 4), (4, 2), (3, 2), (2, 1), (1, 1)])
def test_latent_grid_and_shapes_follow_the_level_size(size, grid):
    assert latent_grid(size) == grid
    torch.manual_seed(0)
    e, g = VAEEncoder(channels=16, size=size, nz=8, gn_groups=4), VAEDecoder(nz=8, channels=16, size=size, gn_groups=4)
    assert e.linear.in_features == grid * grid * 16 and g.linear.out_features == grid * grid * 16
    mu, logvar = e(torch.randn(3, 16, size, size))
    assert mu.shape == logvar.shape == (3, 8)
    out = g(torch.randn(3, 8) * 10)  # far outside the prior: still inside the normalized range
    assert out.shape == (3, 16, size, size)
    assert out.abs().max() <= 1.0


def test_encoder_refuses_features_of_another_size():
    with pytest.raises(ValueError, match=r"expects \(N, 16, 4, 4\)"):
        VAEEncoder(channels=16, size=4, nz=8, gn_groups=4)(torch.randn(2, 16, 5, 5))


def test_conditional_generator_doubles_the_size_and_uses_its_noise():
    torch.manual_seed(0)
    g = SynthGenerator(in_channels=32, out_channels=16, nz=8, width=32)
    deeper = torch.randn(2, 32, 3, 3)
    z = torch.randn(2, 8)
    a, b = g(deeper, z), g(deeper, torch.randn(2, 8))
    assert a.shape == (2, 16, 6, 6) and a.abs().max() < 1
    assert torch.equal(a, g(deeper, z))
    assert (a - b).abs().mean() > 1e-3  # the noise changes the output from the first step on


def test_synthesis_model_chains_the_levels():
    torch.manual_seed(0)
    dec = VAEDecoder(nz=8, channels=32, size=2, gn_groups=4)
    gens = {4: SynthGenerator(32, 16, nz=4, width=16), 3: SynthGenerator(16, 8, nz=6, width=16)}
    model = SynthesisModel(dec, gens)
    assert model.final_level == 3 and model.code_sizes == {5: 8, 4: 4, 3: 6}
    codes = {5: torch.randn(2, 8), 4: torch.randn(2, 4), 3: torch.randn(2, 6)}
    out = model(codes)
    assert {l: tuple(v.shape) for l, v in out.items()} == {5: (2, 32, 2, 2), 4: (2, 16, 4, 4), 3: (2, 8, 8, 8)}
    assert set(model(codes, final_level=4)) == {5, 4}
    with pytest.raises(ValueError, match="not trained"):
        model(codes, final_level=2)


def test_synth_nets_follow_the_backbone_and_are_snapshot_buildable():
    import types

    bb = types.SimpleNamespace(channels={3: 256, 4: 512, 5: 512}, strides={3: 4, 4: 8, 5: 16})  # VGG-19
    five = synth_nets(bb, 5, 224, nz=512)
    assert n_params(five["E"]) == 37_495_296
    four = synth_nets(bb, 4, 224, nz_level=64, critic_width=64)
    assert four["D"].in_channels == 512 + 512 and four["D"].in_size == 28  # conditional: level 4 + upsampled 5
    three = synth_nets(bb, 3, 224, critic_width=64, conditional_critic=False)
    assert three["D"].in_channels == 256 and three["G"].translator.out_channels == 256
    for nets in (five, four, three):
        for net in nets.values():  # rebuilt from the stored arguments alone, as a snapshot is
            assert net.arch["kind"] in NETWORKS
            again = NETWORKS[net.arch["kind"]](**net.arch["args"])
            assert n_params(again) == n_params(net)


def test_stage_names_of_the_deepvae():
    assert stage_name("synth", 5, "a") == "synth_a5" and stage_name("synth", 3, "b") == "synth_b3"
    assert parse_stage("synth_b4") == ("synth", 4, "b") and parse_stage_name("synth_b4") == ("synth", 4)
    # the existing names do not change
    assert [stage_name(k, l) for k, l in (("invert", 5), ("deep", 5), ("cascade", 4))] == ["invert5", "deep",
                                                                                         "cascade4"]
    assert parse_stage("deep") == ("deep", 5, None) and parse_stage("cascade4") == ("cascade", 4, None)
    for bad in ("synth5", "synth_c5", "synth_a", "cascade_a4", "deep5"):
        with pytest.raises(ValueError):
            parse_stage(bad)
    with pytest.raises(ValueError):
        stage_name("synth", 5)
    with pytest.raises(ValueError):
        stage_name("cascade", 4, "a")


def test_plan_trains_one_deepvae_per_domain_and_all_only_when_enabled():
    from deepcascade.stages.pipeline import plan

    cfg = build_config(extra={"invert": {"levels": [5, 4, 3]}})
    assert plan(cfg, "synth") == [("synth", l, d) for d in "ab" for l in (5, 4, 3)]
    assert plan(cfg, "synth", domain="b", level=4) == [("synth", 4, "b")]
    assert all(kind != "synth" for kind, _, _ in plan(cfg, "all"))
    on = build_config(extra={"synth": {"enabled": True, "final_level": 4}})
    steps = plan(on, "all")
    assert steps[-4:] == [("synth", 5, "a"), ("synth", 4, "a"), ("synth", 5, "b"), ("synth", 4, "b")]
    assert steps[:-4] == plan(cfg, "all")  # the translation stages first, unchanged
    with pytest.raises(UserError, match="--domain applies"):
        plan(cfg, "deep", domain="a")
    with pytest.raises(UserError, match="--level 2"):
        plan(cfg, "synth", level=2)


def test_enabled_synthesis_needs_an_inversion_network_at_its_final_level():
    with pytest.raises(UserError, match="synth.final_level"):
        build_config(extra={"invert": {"levels": [5, 4]}, "cascade": {"final_level": 4},
                            "synth": {"enabled": True, "final_level": 3}})
    build_config(extra={"invert": {"levels": [5, 4]}, "cascade": {"final_level": 4},
                        "synth": {"enabled": True, "final_level": 4}})
