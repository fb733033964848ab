"""Per-level normalization (docs/method.md section 1): streaming statistics and the normalize/denormalize pair."""

import pytest
import torch

from deepcascade.errors import UserError
from deepcascade.features.normalization import Normalizer, RunningStats


def _batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    # Different batch sizes and spatial sizes, a large mean offset: stresses the merge formula.
    return [torch.randn(n, 5, h, h, generator=g, dtype=torch.float64) * 3.0 + 1000.0 + torch.arange(5).view(1, 5, 1, 1)
            for n, h in ((3, 4), (1, 7), (6, 2), (2, 5))]


def _one_pass(batches):
    flat = torch.cat([b.permute(1, 0, 2, 3).reshape(5, -1) for b in batches], dim=1)
    return flat.mean(dim=1), flat.var(dim=1, correction=0), flat.shape[1]


def test_streaming_equals_one_pass():
    batches = _batches()
    s = RunningStats(5)
    for b in batches:
        s.update(b)
    mean, var, count = _one_pass(batches)
    assert s.count == count
    torch.testing.assert_close(s.mean, mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(s.var, var, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(s.std, var.sqrt(), rtol=1e-8, atol=1e-8)


def test_chunked_update_equals_whole():
    """An update larger than the float64 chunk is split internally; the result must not change."""
    b = torch.cat(_batches()[:1] * 4)
    whole, chunked = RunningStats(5), RunningStats(5)
    whole.update(b)
    chunked.chunk_elements = 5 * 16  # one image per chunk
    chunked.update(b)
    torch.testing.assert_close(chunked.mean, whole.mean, rtol=0, atol=1e-9)
    torch.testing.assert_close(chunked.var, whole.var, rtol=1e-9, atol=1e-9)


def test_merge_of_halves_equals_whole():
    batches = _batches(1)
    a, b, whole = RunningStats(5), RunningStats(5), RunningStats(5)
    for x in batches[:2]:
        a.update(x)
    for x in batches[2:]:
        b.update(x)
    for x in batches:
        whole.update(x)
    a.merge(b)
    assert a.count == whole.count
    torch.testing.assert_close(a.mean, whole.mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(a.var, whole.var, rtol=1e-8, atol=1e-8)
    # merging an empty accumulator changes nothing; the state dict round-trips
    a.merge(RunningStats(5))
    c = RunningStats.from_state_dict(a.state_dict())
    torch.testing.assert_close(c.var, whole.var, rtol=1e-8, atol=1e-8)


def test_float32_input_accumulates_in_float64():
    x = (torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2)) + 1e4).float()
    s = RunningStats(3)
    s.update(x)
    ref = x.double().permute(1, 0, 2, 3).reshape(3, -1)
    torch.testing.assert_close(s.mean, ref.mean(1), rtol=0, atol=1e-9)
    torch.testing.assert_close(s.var, ref.var(1, correction=0), rtol=1e-9, atol=1e-9)


def _normalizer(scheme, k=3.0):
    mean = {5: torch.tensor([1.0, -2.0, 0.5]), 4: torch.tensor([0.0, 10.0])}
    std = {5: torch.tensor([2.0, 0.5, 1.0]), 4: torch.tensor([1.0, 0.0])}  # a dead channel (sigma = 0)
    return Normalizer(mean, std, scheme, k)


@pytest.mark.parametrize("scheme", ["clamp", "tanh"])
def test_denormalize_inverts_normalize_where_not_clamped(scheme):
    norm = _normalizer(scheme)
    g = torch.Generator().manual_seed(0)
    mu, sigma = norm.mean_5.view(1, 3, 1, 1), norm.std_5.view(1, 3, 1, 1)
    z = torch.rand(2, 3, 6, 6, generator=g) * 1.8 - 0.9  # |z| < 1: nothing clamped
    f = mu + 3.0 * sigma * z
    n = norm.normalize(f, 5)
    assert n.abs().max() <= 1.0
    torch.testing.assert_close(norm.denormalize(n, 5), f, rtol=1e-5, atol=1e-5)
    expected = z.clamp(-1, 1) if scheme == "clamp" else torch.tanh(z)
    torch.testing.assert_close(n, expected, rtol=1e-5, atol=1e-5)


def test_tanh_denormalize_is_finite_at_the_bounds():
    norm = _normalizer("tanh")
    out = norm.denormalize(torch.tensor([-1.0, 1.0, 1.0]).view(1, 3, 1, 1), 5)
    assert torch.isfinite(out).all()


def test_clamped_fraction_and_sigma_guard():
    norm = _normalizer("clamp", k=1.0)
    # level 4, channel 0: mu 0, sigma 1 -> z = f; values 0.5, 2, -3, 1 -> two of four beyond |1|
    f = torch.tensor([0.5, 2.0, -3.0, 1.0]).view(1, 1, 2, 2)
    f = torch.cat([f, torch.full_like(f, 10.0)], dim=1)  # dead channel at its mean: z = 0, not nan
    assert norm.clamped_fraction(f, 4) == pytest.approx(2 / 8)
    assert torch.isfinite(norm.normalize(f + 1.0, 4)).all()


def test_autocast_and_low_precision_inputs():
    norm = _normalizer("clamp")
    f = torch.randn(2, 3, 4, 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        n = norm.normalize(f, 5)
    assert n.dtype == torch.float32
    torch.testing.assert_close(n, norm.normalize(f.float(), 5))


def test_save_load_roundtrip(tmp_path):
    norm = _normalizer("tanh", k=2.5)
    norm.meta = {"backbone": "vgg19", "weights": "random:x"}
    path = tmp_path / "normalization.safetensors"
    norm.save(path)
    back = Normalizer.load(path)
    assert (back.scheme, back.k, back.levels, back.meta) == ("tanh", 2.5, [4, 5], norm.meta)
    for l in (4, 5):
        torch.testing.assert_close(getattr(back, f"mean_{l}"), getattr(norm, f"mean_{l}"))
        torch.testing.assert_close(getattr(back, f"std_{l}"), getattr(norm, f"std_{l}"))
    d = Normalizer.from_dict(norm.to_dict())
    torch.testing.assert_close(d.std_5, norm.std_5)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError):
        Normalizer.load(tmp_path / "bad.safetensors")


def test_from_stats_and_device_move():
    s = RunningStats(3)
    s.update(torch.randn(2, 3, 4, 4))
    norm = Normalizer.from_stats({5: s})
    torch.testing.assert_close(norm.mean_5, s.mean.float())
    moved = norm.to(torch.float64)  # buffers follow .to() like any module
    assert moved.mean_5.dtype == torch.float64
