"""Benchmark of the deepest-level (conv_5_1) translation stage: WGAN-GP generator iterations per second by image
size, precision and where the level-5 features come from.

    python benchmarks/bench_deep.py                          # default: a few minutes on a 2-core CPU
    python benchmarks/bench_deep.py --sizes 224 --steps 10 --batch 10 --device cuda

One generator iteration is what the engine runs per step of the ``deep`` stage: ``DeepStage.next_batch``
(n_critic + 1 fresh batches per domain) and ``DeepStage.train_step`` (n_critic WGAN-GP critic updates with the
gradient penalty, then one update of both translators with adversarial, cycle and identity losses), on a real
:class:`Experiment` built by ``setup_experiment`` with the engine's :class:`TrainContext`.

Variants, each printed beside the fp32 "images" baseline of the same size measured in the same run (ratio =
variant / baseline, > 1 is faster):

- precision: ``fp32`` or ``bf16`` autocast (``engine.precision``);
- features: ``images`` recomputes the VGG-19 conv_5_1 features of every batch from the image crops
  (``cache.levels: []``), ``cache`` reads them from the float16 feature cache (the default).

``img/s`` counts the source images whose features one iteration consumes: 2 domains x (n_critic + 1) x batch.
Uses RANDOM VGG-19 weights (speed does not depend on the weights) and tiny synthetic data in a temporary
folder. Shares its table and timing code with ``bench_invert.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_invert import common_arguments, make_experiment, prepare_run, run_table  # noqa: E402

import torch  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common_arguments(p, batch=4)
    p.add_argument("--n-critic", type=int, default=4, help="critic updates per generator update [paper: 4]")
    p.add_argument("--critic-width", type=int, default=512, help="deep.critic_width")
    args = p.parse_args(argv)
    prepare_run(args)

    from deepcascade.stages.deep import DeepStage

    def build(data, run_dir, size, precision, features):
        exp = make_experiment(data, run_dir, size, 5, precision, features, args.device,
                              {"deep": {"batch_size": args.batch, "n_critic": args.n_critic,
                                        "critic_width": args.critic_width}})
        torch.manual_seed(0)
        return DeepStage(exp), 2 * (args.n_critic + 1) * args.batch

    run_table(f"deep (level 5) WGAN-GP, {args.n_critic} critic updates per generator iteration", build, args,
              unit="iters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
