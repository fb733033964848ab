"""Benchmark of translation: deepcascade's translate path against CycleGAN's ResNet-9 generator, same images, same
process, interleaved.

    python benchmarks/bench_translate.py                               # 128 and 224 px, batch 10, fp32 and bf16
    python benchmarks/bench_translate.py --sizes 128 --repeats 2 --precisions fp32
    python benchmarks/bench_translate.py --device cuda --batch 64

Per image at 224 px both cost about the same work (deepcascade to level 3 about 39 GMAC, ResNet-9 about 38), so
the throughput ratio says which implementation turns the same arithmetic into images faster.

deepcascade's translate path is composed exactly as :meth:`deepcascade.Translator.translate_tensor` runs it:
one VGG-19 pass to conv_5_1 for levels 3..5, the per-level normalization, ``CascadeModel.translate`` (T_5, then
M_4/T_4 and M_3/T_3) and the level-3 inversion network I_3, under the same autocast and memory-format choice
(:mod:`deepcascade.precision`). Networks come from the builders training uses (:mod:`deepcascade.models`) with
RANDOM weights (throughput does not depend on the weights); the normalization statistics are those of the
benchmark's own images. ResNet-9 is the published CycleGAN generator, written below.

Printed per size and precision: images/s of both (median of ``--repeats`` timed batches after a warm-up batch,
the two alternating batch by batch), their ratio (> 1: deepcascade faster), deepcascade's achieved GFLOP/s
(FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``) against the best 3x3 convolution GFLOP/s measured
in the same run and precision, and the PSNR of the bf16 (fp16) outputs against the fp32 ones (with the
outputs' standard deviation: random weights give low-contrast images, on which a PSNR is easier to reach than on
a trained run's; tests/test_precision.py checks the bound on a trained run). With ``--layouts
both`` the deepcascade path is also timed in channels_last. With ``--optimize`` the deepcascade path is also
timed after graph-level optimization, ResNet-9 staying the eager PyTorch the published code runs: ``jit``
(``torch.jit.trace`` + ``torch.jit.freeze`` + ``torch.jit.optimize_for_inference``: oneDNN conv + ReLU fusion,
prepacked weights) and ``compile`` (``torch.compile``, inductor with ``freezing``: constant weights prepacked for
oneDNN, pointwise ops fused into the convolutions; needs a C++ compiler; the compile time is printed). The PSNR
column then also says how far the optimized graph's output is from plain fp32's. ``--optimize onnxruntime``
times the same path exported to ONNX (as ``deepcascade export`` builds it, float NCHW in and out here) and run by
onnxruntime's CPU provider with as many threads as torch (fp32 only; needs ``pip install 'deepcascade[export]'``;
the export time is printed). ``--optimize fast`` is the product's fast path (``translate --optimize``,
:mod:`deepcascade.inference.fast`): on the CPU the wide 3x3 convolutions by Winograd's F(2x2, 3x3) and every
network and input in channels_last, then compiled as ``compile``. The best-conv column is the fastest direct 3x3 convolution, eager or compiled, NCHW or
channels_last; a Winograd path's GFLOP/s count the direct convolution's FLOPs (what it computes, not what it
multiplies), so it can exceed 100 %. At the end: the process's peak RSS.

The table of docs/benchmarks.md (one per machine kind), with 2 threads on an otherwise idle machine:

    python benchmarks/bench_translate.py --sizes 224 --precisions fp32 bf16 --optimize none compile fast onnxruntime
"""

from __future__ import annotations

import argparse
import copy
import platform
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcascade.backbones import build_backbone  # noqa: E402
from deepcascade.features.normalization import Normalizer  # noqa: E402
from deepcascade.models import deep_nets, inversion_nets, level_nets  # noqa: E402
from deepcascade.networks import CascadeModel  # noqa: E402
from deepcascade.networks.deep import bottleneck_downsamplings  # noqa: E402
from deepcascade.inference.fast import compile_graph, cpu_copy  # noqa: E402
from deepcascade.precision import _cpu_bf16_features, inference_autocast  # noqa: E402

FINAL_LEVEL = 3


# ---------------------------------------------------------------------------------------------- CycleGAN ResNet-9
class ResidualBlock(nn.Module):
    """R256: two 3x3 convs with reflection padding and instance norm, ReLU between, identity skip."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
                                  nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

    def forward(self, x):
        return x + self.body(x)


class ResNet9Generator(nn.Module):
    """CycleGAN's generator (Zhu et al. 2017, appendix 7.2): c7s1-64, d128, d256, R256 x 9, u128, u64, c7s1-3;
    instance norm (no affine, as in the reference code), reflection padding, tanh output."""

    def __init__(self, ngf: int = 64, blocks: int = 9):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for m in (1, 2):  # d128, d256
            layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ngf * m * 2),
                       nn.ReLU(True)]
        layers += [ResidualBlock(ngf * 4) for _ in range(blocks)]
        for m in (4, 2):  # u128, u64
            layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ngf * m // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):  # images in [0, 1] -> [0, 1], like the translate path
        return (self.model(x * 2 - 1) + 1) / 2


# ---------------------------------------------------------------------------------------------- deepcascade
class TranslatePath(nn.Module):
    """Translator.translate_tensor's computation: backbone (levels 3..5, one pass) -> normalize -> cascade -> I_3."""

    def __init__(self, size: int, calibration: torch.Tensor):
        super().__init__()
        self.backbone = build_backbone("vgg19", "random", seed=0)
        b = self.backbone
        deep = deep_nets(b.channels[5], size // b.strides[5])
        levels = {l: level_nets(b, l, size) for l in range(4, FINAL_LEVEL - 1, -1)}
        self.cascade = CascadeModel(deep, levels)
        self.inversion = inversion_nets(b.channels[FINAL_LEVEL], b.strides[FINAL_LEVEL], adversarial=False)["I"]
        with torch.no_grad():
            feats = b(calibration, range(FINAL_LEVEL, 6))
        self.normalizer = Normalizer({l: f.mean((0, 2, 3)) for l, f in feats.items()},
                                     {l: f.std((0, 2, 3)) for l, f in feats.items()})
        self.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, x):
        raw = self.backbone(x, range(FINAL_LEVEL, 6))
        feats = {l: self.normalizer.normalize(f, l) for l, f in raw.items()}
        out = self.cascade.translate(feats, "a2b", FINAL_LEVEL)
        return (self.inversion(out[FINAL_LEVEL]).float() + 1) / 2


# ---------------------------------------------------------------------------------------------- measuring
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random images in [0, 1] (blobs, not pixel noise, so the PSNR compares image-like outputs)."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, size // 8, size // 8, generator=g), size=(size, size), mode="bicubic",
                         align_corners=False).clamp(0, 1)


def run_once(net, x, device, precision, channels_last):
    xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    sync(device)
    t = time.perf_counter()
    with torch.no_grad(), inference_autocast(device, precision):
        y = net(xin).float()
    sync(device)
    return time.perf_counter() - t, y


def optimized(net, x, how: str):
    """``net`` (eval, no grad) after graph-level optimization ``how``: 'none', 'jit', 'compile', 'fast' or
    'onnxruntime'."""
    if how == "none":
        return net
    if how == "onnxruntime":
        return onnxruntime_net(net, x)
    t = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
        if how == "jit":
            out = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, x, check_trace=False)))
        elif how == "compile":
            out = compile_graph(net)
        elif how == "fast":  # as deepcascade.inference.fast prepares a translator's networks
            out = compile_graph(cpu_copy(net)[0] if x.device.type == "cpu" else net)
        else:
            raise SystemExit(f"unknown --optimize {how!r}")
        out(x)  # traces / compiles
    print(f"     {how}: prepared in {time.perf_counter() - t:.1f} s", flush=True)
    return out


def onnxruntime_net(net, x):
    """``net`` exported to ONNX in memory and run by onnxruntime's CPU provider, as a torch -> torch callable."""
    import io

    import onnxruntime as ort

    from deepcascade.inference.onnx_export import OPSET, traceable

    t = time.perf_counter()
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape checks (constants for a fixed size)
        torch.onnx.export(traceable(net), (x.float().cpu(),), buf, dynamo=False, opset_version=OPSET,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    print(f"     onnxruntime: exported in {time.perf_counter() - t:.1f} s ({len(buf.getvalue()) / 1e6:.0f} MB)",
          flush=True)

    def run(inp):
        return torch.from_numpy(session.run(None, {"x": inp.float().contiguous().cpu().numpy()})[0])
    return run


def flops(net, x) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x)
    return fc.get_total_flops()


def best_conv_gflops(device, precision, batch, repeats, compiled: bool) -> tuple[float, str]:
    """The fastest direct 3x3 stride-1 conv among the shapes that dominate the translate path (VGG conv4/conv5, T
    and M layers), NCHW and channels_last, eager and (``compiled``) compiled with freezing like the fast path:
    the ceiling for the method's dominant operation on this machine."""
    best, where = 0.0, ""
    for c, s in ((512, 28), (512, 14), (256, 56)):
        conv = nn.Conv2d(c, c, 3, padding=1).to(device).eval().requires_grad_(False)
        x = torch.randn(batch, c, s, s, device=device)
        work = 2 * c * c * 9 * s * s * batch
        for cl in (False, True):
            for how in ("eager", "compiled") if compiled else ("eager",):
                net = copy.deepcopy(conv).to(memory_format=torch.channels_last if cl else torch.contiguous_format)
                if how == "compiled":
                    net = compile_graph(net)
                times = [run_once(net, x, device, precision, cl)[0] for _ in range(repeats + 1)][1:]
                rate = work / min(times) / 1e9
                if rate > best:
                    best, where = rate, f"{c}->{c} at {s}x{s}{' channels_last' if cl else ''}, {how}"
    return best, where


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="image sizes (multiples of 16)")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="timed batches per model (after one warm-up batch)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"],
                    help="the first is the reference of the PSNR column")
    ap.add_argument("--layouts", default="nchw", choices=["nchw", "both"],
                    help="'both': also time the translate path in channels_last")
    ap.add_argument("--optimize", nargs="+", default=["none"],
                    choices=["none", "jit", "compile", "fast", "onnxruntime"],
                    help="graph-level optimizations of the deepcascade path to time (ResNet-9 stays eager); fast: "
                         "the product's fast path (translate --optimize); onnxruntime: the exported graph (fp32, "
                         "CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch._dynamo.config.recompile_limit = 64  # every compiled conv and path row is a graph of the same forward
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}; threads {torch.get_num_threads()}; cpu {cpu_name()}, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {', '.join(_cpu_bf16_features()) or 'no'}; "
          f"torch {torch.__version__}; batch {args.batch}; repeats {args.repeats}")
    if device.type == "cuda":
        print(f"gpu {torch.cuda.get_device_name(device)}")
    header = (f"{'size':>4} {'prec':>4} {'layout':>6} {'graph':>11} {'deepcascade img/s':>17} {'ResNet-9 img/s':>14} "
              f"{'ratio':>5} {'GFLOP/s':>8} {'best conv':>9} {'% conv':>6} {'PSNR dB':>7} {'out std':>7}")
    rows = []
    for size in args.sizes:
        x = images(args.batch, size, seed=size).to(device)
        ours = TranslatePath(size, images(8, size, seed=1)).to(device)
        theirs = ResNet9Generator().to(device).eval().requires_grad_(False)
        f_ours, f_theirs = flops(ours, x), flops(theirs, x)
        print(f"\n{size} px: deepcascade {f_ours / args.batch / 2e9:.1f} GMAC/image (T_5 with "
              f"{bottleneck_downsamplings(size // 16)} down-samplings), ResNet-9 {f_theirs / args.batch / 2e9:.1f}")
        print(header)
        reference = None
        for precision in args.precisions:
            conv, conv_where = best_conv_gflops(device, precision, args.batch, args.repeats,
                                                compiled=bool({"compile", "fast"} & set(args.optimize)))
            for cl, how in [(cl, how) for cl in ([False, True] if args.layouts == "both" else [False])
                            for how in args.optimize]:
                if how == "onnxruntime" and (precision != "fp32" or cl or device.type != "cpu"):
                    continue  # the exported graph computes fp32 NCHW on the CPU provider
                if how == "fast" and device.type == "cpu" and not cl:  # the fast path's layout is channels_last
                    if args.layouts == "both":
                        continue
                    cl = True
                ours.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
                with inference_autocast(device, precision):
                    net = optimized(ours, x.contiguous(memory_format=torch.channels_last) if cl else x, how)
                t_ours, t_theirs = [], []
                for i in range(args.repeats + 1):  # interleaved; batch 0 is the warm-up
                    dt, y = run_once(net, x, device, precision, cl)
                    dt2, _ = run_once(theirs, x, device, precision, False)
                    if i:
                        t_ours.append(dt)
                        t_theirs.append(dt2)
                if reference is None:
                    reference = y.cpu()
                quality = psnr(y.cpu().clamp(0, 1), reference.clamp(0, 1))
                ips_ours = args.batch / statistics.median(t_ours)
                ips_theirs = args.batch / statistics.median(t_theirs)
                gf = f_ours / statistics.median(t_ours) / 1e9
                layout = "NHWC" if cl else "NCHW"
                row = (f"{size:>4} {precision:>4} {layout:>6} {how:>11} {ips_ours:>17.2f} {ips_theirs:>14.2f} "
                       f"{ips_ours / ips_theirs:>5.2f} {gf:>8.0f} {conv:>9.0f} {100 * gf / conv:>5.0f}% "
                       f"{quality:>7.1f} {float(y.std()):>7.3f}")
                print(row, flush=True)
                rows.append(row)
                del net
            print(f"     best {precision} 3x3 conv: {conv_where}")
        ours.to(memory_format=torch.contiguous_format)
        del ours, theirs
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak RSS {rss:.0f} MiB")
    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
